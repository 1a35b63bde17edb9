#!/usr/bin/env bash
# Sets up, builds Sonde and the demo Go server, then traces the server with the console
# exporter while a few requests are sent (/proxy and /proxy-async make outgoing calls: their
# CLIENT spans are children of the SERVER span). Needs root (eBPF).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
swift build --product sonde
work=$(mktemp -d)
trap 'kill $server_pid 2>/dev/null || true; rm -rf "$work"' EXIT

(cd demo/go-http-server && GO111MODULE=off GOPATH=/usr/share/gocode GOCACHE="$work/gocache" go build -o "$work/demo-server" .)
"$work/demo-server" -port-file "$work/port" 2>"$work/server.log" &
server_pid=$!
for _ in $(seq 50); do [[ -s "$work/port" ]] && break; sleep 0.1; done
port=$(cat "$work/port")

echo "== attach plan (no root needed) =="
.build/debug/sonde plan --exe "$work/demo-server" --pack go/net-http --pack go/runtime
echo
echo "== tracing the demo server (pid $server_pid, port $port) =="
.build/debug/sonde run --pid "$server_pid" --pack go/net-http --pack go/runtime --exporter console &
sonde_pid=$!
sleep 2
for path in /hello /created /fail /no/such/page "/slow?ms=120" /proxy /proxy-async; do
  curl -s -o /dev/null "http://127.0.0.1:$port$path"
done
sleep 1.5
kill -INT $sonde_pid
wait $sonde_pid
