#!/usr/bin/env bash
# Soak (issue 11): the two-service demo (demo/two-service), both services traced by sonde with every
# shipped pack, exporting OTLP to an independent receiver (scripts/otlp-sink), under a constant load
# (scripts/soak-load) of GET /api/items/7, /api/health/backend and /api/async/7 in turn. Prints one
# table: requests sent and answered; spans expected and spans received at the receiver, which must
# be equal exactly; each sonde's spans submitted, exported and dropped; its RSS at the middle and at
# the end of the load and the growth over the second half (must stay under 5%); and the entries
# left in the BPF maps of calls, open streams, waiting injections and trace contexts once the load
# has stopped (must be 0). Exits 1 when a check fails. Needs root.
#
# Each request makes three spans: /api/items/7 the front's server span, its HTTP client span and
# the back's server span; /api/health/backend the front's server span, its gRPC client span and the
# back's gRPC server span; /api/async/7 the front's server span, the HTTP client span of the
# goroutine it starts, and the back's server span. The script checks this on one request per route
# before the load starts.
#
# Usage: scripts/soak.sh [--minutes N] [--rate N] [--no-setup] [--keep]
#   defaults: 10 minutes at 5000 requests/s; --keep leaves the work folder in /tmp.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

minutes=10 rate=5000 run_setup=1 keep=0 connections=64
while (($#)); do
  case $1 in
    --minutes) minutes=$2; shift ;;
    --rate) rate=$2; shift ;;
    --no-setup) run_setup=0 ;;
    --keep) keep=1 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "soak: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
((EUID == 0)) || { echo "soak: needs root (uprobes, BPF)" >&2; exit 1; }
say() { echo "soak: $*" >&2; }
source scripts/harness.sh
for variable in "${!OTEL_@}"; do unset "$variable"; done

work=$(mktemp -d /tmp/sonde-soak.XXXXXX)
sonde_pids=()
cleanup() {
  set +e
  local pid
  for pid in "${sonde_pids[@]}"; do kill -TERM "$pid" 2>/dev/null; done
  for _ in $(seq 150); do
    local alive=0
    for pid in "${sonde_pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    ((alive)) || break
    sleep 0.1
  done
  kill_children
  if ((keep)); then say "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

# ---------------------------------------------------------------------------------------------
if ((run_setup)); then bash scripts/setup.sh >&2; fi
command -v bpftool >/dev/null || { say "bpftool is missing: run scripts/setup.sh"; exit 1; }
sonde=$(build_sonde_release)
say "building the demo, the receiver and the load generator"
go_build demo/two-service/front "$work/front"
go_build demo/two-service/back "$work/back"
go_build scripts/otlp-sink "$work/otlp-sink"
go_build scripts/soak-load "$work/soak-load"

start_sink

"$work/back" -port-file "$work/back.port" 2>"$work/back.log" &
back_pid=$!
wait_for_file "$work/back.port"
read -r http_port grpc_port <"$work/back.port"
"$work/front" -back-http "127.0.0.1:$http_port" -back-grpc "127.0.0.1:$grpc_port" -port-file "$work/front.port" 2>"$work/front.log" &
front_pid=$!
wait_for_file "$work/front.port"
front_url=http://127.0.0.1:$(cat "$work/front.port")

services=(front back)
pids=("$front_pid" "$back_pid")
for index in 0 1; do
  OTEL_EXPORTER_OTLP_ENDPOINT=$sink_url OTEL_SERVICE_NAME=${services[$index]} \
    "$sonde" run --pid "${pids[$index]}" >/dev/null 2>"$work/sonde.$index.log" &
  sonde_pids+=($!)
done
for index in 0 1; do
  wait_attached "$index" "${sonde_pids[$index]}" && continue
  say "sonde did not attach to ${services[$index]}: $(tail -1 "$work/sonde.$index.log")"
  exit 1
done

# The receiver's count once it has not moved for 3 s (both sondes export at least every second).
settled_count() { until_steady 3 120 sink_count; }

paths=(/api/items/7 /api/health/backend /api/async/7)
spans_per_request=3
say "checking $spans_per_request spans per request on each route"
for path in "${paths[@]}"; do
  before=$(settled_count)
  curl -sf -o /dev/null "$front_url$path"
  made=$(($(settled_count) - before))
  ((made == spans_per_request)) || { say "GET $path made $made spans, not $spans_per_request"; exit 1; }
done
baseline=$(sink_count)

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
say "load: $rate requests/s for $minutes min"
"$work/soak-load" -url "$front_url" -paths "$(IFS=,; echo "${paths[*]}")" -rate "$rate" \
  -duration "${minutes}m" -connections "$connections" >"$work/load.out" 2>"$work/load.err" &
load_pid=$!
half=$((minutes * 30))
sleep "$half"
middle=("$(rss_kib "${sonde_pids[0]}")" "$(rss_kib "${sonde_pids[1]}")")
wait "$load_pid"
end=("$(rss_kib "${sonde_pids[0]}")" "$(rss_kib "${sonde_pids[1]}")")
received=$(($(settled_count) - baseline))

# Entries left in the state maps of each sonde's BPF object, found through the sonde's fds.
map_entries() { # pid name
  local id
  for id in $(grep -h '^map_id:' /proc/"$1"/fdinfo/* 2>/dev/null | awk '{ print $2 }' | sort -u); do
    if [[ $(bpftool --json map show id "$id" | python3 -c 'import json, sys; print(json.load(sys.stdin)["name"])') == "$2" ]]; then
      bpftool --json map dump id "$id" | python3 -c 'import json, sys; print(len(json.load(sys.stdin)))'
      return
    fi
  done
  echo "?"
}
sleep 16   # sonde removes records idle for 10 s and contexts that name ended spans, in reclaim passes every 5 s
declare -A left
for index in 0 1; do
  for map in calls object_spans injections active_contexts; do
    left[$index.$map]=$(map_entries "${sonde_pids[$index]}" "$map")
  done
done

for pid in "${sonde_pids[@]}"; do kill -TERM "$pid"; done
for pid in "${sonde_pids[@]}"; do wait "$pid" || true; done
sonde_pids=()

read -r _ sent answered failed seconds < <(grep '^total ' "$work/load.out")
expected=$((answered * spans_per_request))
failures=()
((received == expected)) || failures+=("received $received spans, expected $expected")
((failed == 0)) || failures+=("$failed requests failed")

printf '\n%-44s %s\n' "soak: two-service demo, both traced" "$minutes min at $rate requests/s asked"
printf '%-44s %s\n' "requests sent / answered / failed" "$sent / $answered / $failed in ${seconds} s ($((sent / ${seconds%.*})) per s)"
printf '%-44s %s\n' "spans expected ($spans_per_request per request)" "$expected"
printf '%-44s %s\n' "spans received at the receiver" "$received"
for index in 0 1; do
  service=${services[$index]}
  summary=$(grep -o '[0-9]* spans submitted, [0-9]* exported, [0-9]* dropped ([^)]*)' "$work/sonde.$index.log" | tail -1)
  printf '%-44s %s\n' "sonde ($service)" "$summary"
  growth=$(awk -v a="${middle[$index]}" -v b="${end[$index]}" 'BEGIN { printf "%.1f", (b - a) * 100 / a }')
  printf '%-44s %s\n' "  RSS at half time / at the end / growth" "$((middle[$index] / 1024)) MiB / $((end[$index] / 1024)) MiB / $growth%"
  awk -v g="$growth" 'BEGIN { exit !(g < 5) }' || failures+=("$service: RSS grew $growth% over the second half")
  printf '%-44s %s\n' "  BPF entries at idle: calls, object_spans" "${left[$index.calls]}, ${left[$index.object_spans]}"
  printf '%-44s %s\n' "  injections, active_contexts" \
    "${left[$index.injections]}, ${left[$index.active_contexts]}"
  for map in calls object_spans injections active_contexts; do
    [[ ${left[$index.$map]} == 0 ]] || failures+=("$service: $map holds ${left[$index.$map]} entries at idle")
  done
done
if ((${#failures[@]})); then
  printf 'FAILED: %s\n' "${failures[@]}"
  exit 1
fi
echo "passed"
