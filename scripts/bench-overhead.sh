#!/usr/bin/env bash
# Measures what tracing costs a Go net/http server: the same server and load with and
# without Sonde attached, side by side in one run. Needs root (eBPF); installs wrk.
# Usage: scripts/bench-overhead.sh [seconds per run, default 10]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-10}
bash scripts/setup.sh
command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
swift build -c release --product sonde >/dev/null
work=$(mktemp -d)
trap 'kill $server_pid $sonde_pid 2>/dev/null || true; rm -rf "$work"' EXIT
sonde_pid=""

(cd demo/go-http-server && GO111MODULE=off GOPATH=/usr/share/gocode GOCACHE="$work/gocache" go build -o "$work/demo-server" .)
"$work/demo-server" -port-file "$work/port" 2>/dev/null &
server_pid=$!
for _ in $(seq 50); do [[ -s "$work/port" ]] && break; sleep 0.1; done
url="http://127.0.0.1:$(cat "$work/port")/hello"

requests_per_second() {
  wrk -t1 -c16 -d"${seconds}s" "$url" | awk '/Requests\/sec/ { print $2 }'
}

wrk -t1 -c16 -d2s "$url" >/dev/null   # warm up
unprobed=$(requests_per_second)
.build/release/sonde run --pid "$server_pid" --exporter console >/dev/null 2>"$work/sonde.log" &
sonde_pid=$!
for _ in $(seq 100); do grep -q attached "$work/sonde.log" && break; sleep 0.1; done
probed=$(requests_per_second)
kill -INT "$sonde_pid"; wait "$sonde_pid" || true
sonde_pid=""

echo "net/http server, wrk 1 thread 16 connections, ${seconds}s each, $(nproc) cores"
printf '%-28s %12s req/s\n' "unprobed" "$unprobed" "traced by sonde" "$probed"
awk -v u="$unprobed" -v p="$probed" 'BEGIN {
  printf "%-28s %12.1f %%\n", "throughput kept", 100 * p / u
  printf "%-28s %12.2f µs\n", "added time per request", (1e6 / p - 1e6 / u)
}'
echo "sonde: $(grep '^sonde:' "$work/sonde.log" | sed 's/^sonde: //')"
