#!/usr/bin/env bash
# Measures what tracing costs Go services, every mode side by side in one run (issue 7):
#   workloads  http         demo/go-http-server, GET /hello, all shipped packs
#              two-service  demo/two-service front (gorilla/mux, HTTP client, gRPC client) and back
#                           (net/http, gRPC server), both traced: GET /api/items/7, /api/health/backend,
#                           /api/async/7 in turn (--paths "/api/health/backend" to load one route,
#                           here one unary gRPC call per request)
#   modes      untraced; sonde with the console exporter to /dev/null; sonde with OTLP to
#              scripts/otlp-sink; sonde with conventional placement (--sites conventional, when this
#              sonde has it); the placement floor (bare tracefs uprobe events at exactly the sites
#              `sonde plan` lists: no BPF program, no agent); sonde reading and discarding every span
#              (--discard-spans, when this sonde has it: the kernel side alone, so that the gap to the
#              floor is told apart from the agent's work on the spans); sonde with OTLP at 10% sampling (when
#              this sonde reads OTEL_TRACES_SAMPLER); on two-service, one sonde for both services
#              (sonde.yaml, as one sonde per machine runs) with OTLP; with --baseline, another build of sonde with
#              OTLP, interleaved with the rest, so that a change is measured before and after in
#              the same rounds.
# Modes are interleaved in rounds (a new order each round, fresh servers for every mode) and the
# table gives the median and the min–max over rounds. Servers run on CPU 0, `wrk -t1 -c16` on
# CPU 1, sonde and the sink unpinned. Needs root (eBPF, tracefs, bpf_stats). Progress goes to
# stderr, the table to stdout.
#
# Usage: scripts/bench.sh [--quick] [--seconds N] [--rounds N] [--workload http|two-service|all]
#                         [--no-setup] [--keep] [--baseline DIR] [--paths "PATH..."]
#   defaults: 3 rounds of 10 s per mode; --quick: 1 round of 3 s (a smoke run); --no-setup skips
#   scripts/setup.sh; --keep leaves the work folder (binaries, plans, logs, results.tsv) in /tmp;
#   --baseline DIR: another checkout of sonde (e.g. `git worktree add /tmp/before HEAD~1`), built
#   in release mode there; the floor probes this checkout's sites, so compare builds that plan the same.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

seconds=10 rounds=3 warmup=1 bpf_seconds=2 workloads=(http two-service) run_setup=1 keep=0 baseline=""
front_paths="/api/items/7 /api/health/backend /api/async/7"
server_cpu=0 load_cpu=1 connections=16
while (($#)); do
  case $1 in
    --quick) seconds=3 rounds=1 ;;
    --seconds) seconds=$2; shift ;;
    --rounds) rounds=$2; shift ;;
    --workload) [[ $2 == all ]] && workloads=(http two-service) || workloads=("$2"); shift ;;
    --no-setup) run_setup=0 ;;
    --keep) keep=1 ;;
    --baseline) baseline=$(cd "$2" && pwd) || exit 2; shift ;;
    --paths) front_paths=$2; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
for workload in "${workloads[@]}"; do
  [[ $workload == http || $workload == two-service ]] || { echo "bench: no workload $workload" >&2; exit 2; }
done
((EUID == 0)) || { echo "bench: needs root (uprobes, BPF, tracefs, bpf_stats)" >&2; exit 1; }
(($(nproc) >= 2)) || { echo "bench: needs 2 cores (server on one, load on the other)" >&2; exit 1; }

say() { echo "bench: $*" >&2; }
source scripts/harness.sh
# Each mode sets the OTEL_* variables it means; none comes from the caller's environment.
for variable in "${!OTEL_@}"; do unset "$variable"; done

# ---------------------------------------------------------------------------------------------
# Cleanup: every process started here, the tracefs events and mount, bpf_stats.
work=$(mktemp -d /tmp/sonde-bench.XXXXXX)
: >"$work/floor.classes" # "s<N> class" of each floor event
tracing=/sys/kernel/tracing
instance=$tracing/instances/sonde_bench
sonde_pids=()         # sonde processes of the current mode
floor_events=()       # uprobe events currently defined
mounted_tracefs=0
bpf_stats_before=""

remove_floor_events() {
  if [[ -d $instance ]]; then
    echo 0 >"$instance/events/sonde_bench/enable" 2>/dev/null || true
    rmdir "$instance" 2>/dev/null || say "could not remove $instance"
  fi
  local event
  for event in "${floor_events[@]}"; do
    echo "-:sonde_bench/$event" >>"$tracing/uprobe_events" 2>/dev/null || say "could not remove uprobe event $event"
  done
  floor_events=()
  : >"$work/floor.classes"
}

cleanup() {
  set +e
  local pid
  for pid in "${sonde_pids[@]}"; do kill -TERM "$pid" 2>/dev/null; done
  for _ in $(seq 30); do
    alive=0
    for pid in "${sonde_pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    ((alive)) || break
    sleep 0.1
  done
  kill_children
  remove_floor_events
  [[ -n $bpf_stats_before ]] && sysctl -qw kernel.bpf_stats_enabled="$bpf_stats_before"
  ((mounted_tracefs)) && umount "$tracing"
  if ((keep)); then say "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

# ---------------------------------------------------------------------------------------------
# Build: sonde (release, own scratch path), the demo programs and the sink (Debian's Go 1.19,
# GOPATH mode, as Tests/EndToEndTests/Support.swift builds them).
if ((run_setup)); then bash scripts/setup.sh >&2; fi
for tool in wrk bpftool taskset; do
  command -v "$tool" >/dev/null || { say "$tool is missing: run scripts/setup.sh"; exit 1; }
done
sonde=$(build_sonde_release)
if [[ -n $baseline ]]; then
  baseline_sonde=$(build_sonde_release "$baseline")
  baseline_revision=$(git -C "$baseline" rev-parse --short HEAD 2>/dev/null || echo "$baseline")
fi
say "building the demo programs and the OTLP sink with $("$go" version | cut -d' ' -f3)"
go_build demo/go-http-server "$work/demo-server"
go_build demo/two-service/front "$work/front"
go_build demo/two-service/back "$work/back"
go_build scripts/otlp-sink "$work/otlp-sink"

# front's routes in turn (by default: HTTP client call, gRPC unary call, HTTP client call from a goroutine)
lua_paths=$(printf '"%s", ' $front_paths)
cat >"$work/two-service.lua" <<EOF
local paths = { ${lua_paths%, } }
local turn = 0
request = function()
  turn = turn % #paths + 1
  return wrk.format("GET", paths[turn])
end
EOF

# What this sonde can do.
hidden_help=$("$sonde" run --help-hidden 2>&1; "$sonde" plan --help-hidden 2>&1)
has_conventional=0
if grep -q -- '--sites' <<<"$hidden_help" &&
  "$sonde" plan --exe "$work/demo-server" --sites conventional >/dev/null 2>&1; then
  has_conventional=1
fi
has_sampler=0
grep -qa OTEL_TRACES_SAMPLER "$sonde" && has_sampler=1
has_trace_context=0
grep -q -- '--no-trace-context' <<<"$hidden_help" && has_trace_context=1
has_discard=0
grep -q -- '--discard-spans' <<<"$hidden_help" && has_discard=1

# Sites sonde attaches, from `sonde plan` lines such as
#   entry  0x629b89 file offset 0x229b89  jbe 0x629ee3  [emulated (cheap)] ...
#   return 0x629eb9 file offset 0x229eb9  ret  [single-stepped (costly)]
# written as "binary offset class" lines, class "single-stepped", "emulated" or "?".
plan_sites() { # binary [extra plan arguments]; writes $work/sites.<name>
  local binary=$1 name=$2
  shift 2
  "$sonde" plan --exe "$binary" "$@" >"$work/plan.$name" 2>&1 || say "sonde plan --exe $binary $*: $(tail -1 "$work/plan.$name")"
  awk -v binary="$binary" '
    match($0, /file offset 0x[0-9a-fA-F]+/) {
      offset = substr($0, RSTART + 12, RLENGTH - 12)
      class = /single-stepped/ ? "single-stepped" : /emulated/ ? "emulated" : "?"
      print binary, offset, class
    }' "$work/plan.$name" >"$work/sites.$name"
}
for binary in demo-server front back; do
  plan_sites "$work/$binary" "$binary"
  if ((has_conventional)); then plan_sites "$work/$binary" "$binary-conventional" --sites conventional; fi
done
binaries_of() { case $1 in http) echo demo-server ;; two-service) echo front back ;; esac; }
# One sonde for both services of two-service, as a machine's sonde finds them: by their executables.
printf 'services:\n' >"$work/sonde.yaml"
for binary in front back; do printf '  - name: %s\n    match: { executable: "%s" }\n' "$binary" "$work/$binary" >>"$work/sonde.yaml"; done
printf 'unmatched: ignore\n' >>"$work/sonde.yaml"

# ---------------------------------------------------------------------------------------------
# The sink (one for the whole run: counts are read before and after each mode).
start_sink
sink_requests() { curl -sf "$sink_url/stats" | awk '{ print $4 }'; }

# tracefs (for the placement floor) and bpf_stats (for BPF ns per run), both undone by cleanup.
# bpf_stats stays off but in the window that measures BPF time (see measure).
if ! mountpoint -q "$tracing"; then
  mount -t tracefs nodev "$tracing"
  mounted_tracefs=1
fi
bpf_stats_before=$(sysctl -n kernel.bpf_stats_enabled)
sysctl -qw kernel.bpf_stats_enabled=0

# ---------------------------------------------------------------------------------------------
# One measurement.
target_pids=()
start_targets() { # workload; sets target_pids, load_url, load_args
  rm -f "$work"/*.port
  case $1 in
    http)
      taskset -c "$server_cpu" "$work/demo-server" -port-file "$work/http.port" 2>>"$work/targets.log" &
      target_pids=($!)
      wait_for_file "$work/http.port"
      load_url="http://127.0.0.1:$(cat "$work/http.port")/hello" load_args=()
      ;;
    two-service)
      taskset -c "$server_cpu" "$work/back" -port-file "$work/back.port" 2>>"$work/targets.log" &
      target_pids=($!)
      wait_for_file "$work/back.port"
      read -r http_port grpc_port <"$work/back.port"
      taskset -c "$server_cpu" "$work/front" -back-http "127.0.0.1:$http_port" -back-grpc "127.0.0.1:$grpc_port" \
        -port-file "$work/front.port" 2>>"$work/targets.log" &
      target_pids=($! "${target_pids[@]}") # front first, like binaries_of
      wait_for_file "$work/front.port"
      load_url="http://127.0.0.1:$(cat "$work/front.port")" load_args=(-s "$work/two-service.lua")
      ;;
  esac
}

stop_targets() {
  local pid
  for pid in "${target_pids[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  target_pids=()
}

load() { # seconds output
  taskset -c "$load_cpu" wrk -t1 -c"$connections" -d"$1s" "${load_args[@]}" "$load_url" >"$2" 2>&1
}

cpu_ticks() { # pid: utime+stime in clock ticks (fields 14 and 15 of /proc/PID/stat), 0 once it has exited
  { cat "/proc/$1/stat" 2>/dev/null || true; } | sed 's/.*) //' | awk '{ print $12 + $13 }'
}
sonde_cpu() { local total=0 pid; for pid in "${sonde_pids[@]}"; do total=$((total + $(cpu_ticks "$pid"))); done; echo $total; }
target_cpu() { local total=0 pid; for pid in "${target_pids[@]}"; do total=$((total + $(cpu_ticks "$pid"))); done; echo $total; }

# BPF run time and count of the programs the current sonde processes hold (found through their fds).
bpf_stats() {
  local pid id ns=0 count=0 json
  for pid in "${sonde_pids[@]}"; do
    for id in $(grep -h '^prog_id:' /proc/"$pid"/fdinfo/* 2>/dev/null | awk '{ print $2 }' | sort -u); do
      json=$(bpftool --json prog show id "$id" 2>/dev/null) || continue
      ns=$((ns + $(grep -o '"run_time_ns":[0-9]*' <<<"$json" | cut -d: -f2 || echo 0)))
      count=$((count + $(grep -o '"run_cnt":[0-9]*' <<<"$json" | cut -d: -f2 || echo 0)))
    done
  done
  echo "$ns $count"
}

start_sondes() { # mode; starts one sonde per target, returns 1 (with a reason in $failure) if one fails
  local mode=$1 pid index=0 environment=() arguments=() binary=$sonde
  case $mode in
    console) arguments=(--exporter console) ;;
    otlp) environment=(OTEL_EXPORTER_OTLP_ENDPOINT="$sink_url") arguments=(--exporter otlp) ;;
    baseline) environment=(OTEL_EXPORTER_OTLP_ENDPOINT="$sink_url") arguments=(--exporter otlp) binary=$baseline_sonde ;;
    conventional) environment=(OTEL_EXPORTER_OTLP_ENDPOINT="$sink_url") arguments=(--exporter otlp --sites conventional) ;;
    sampled) environment=(OTEL_EXPORTER_OTLP_ENDPOINT="$sink_url" OTEL_TRACES_SAMPLER=traceidratio
      OTEL_TRACES_SAMPLER_ARG=0.1) arguments=(--exporter otlp) ;;
    no-trace-context) environment=(OTEL_EXPORTER_OTLP_ENDPOINT="$sink_url") arguments=(--exporter otlp --no-trace-context) ;;
    discarded) environment=(OTEL_EXPORTER_OTLP_ENDPOINT="$sink_url") arguments=(--exporter otlp --discard-spans) ;;
    machine) environment=(OTEL_EXPORTER_OTLP_ENDPOINT="$sink_url") ;;
  esac
  sonde_pids=()
  if [[ $mode == machine ]]; then
    env "${environment[@]}" "$binary" run --config "$work/sonde.yaml" >/dev/null 2>"$work/sonde.0.log" &
    sonde_pids=($!)
    for pid in "${target_pids[@]}"; do
      wait_traced "${sonde_pids[0]}" "$pid" && continue
      failure="sonde did not trace pid $pid: $(tail -1 "$work/sonde.0.log")"
      return 1
    done
    return 0
  fi
  for pid in "${target_pids[@]}"; do
    # Emptied here as well as by the redirection, which the child may make after wait_attached's first
    # look: the previous mode's "attached" line would start the load before this sonde had attached.
    : >"$work/sonde.$index.log"
    env "${environment[@]}" "$binary" run --pid "$pid" "${arguments[@]}" >/dev/null 2>"$work/sonde.$index.log" &
    sonde_pids+=($!)
    index=$((index + 1))
  done
  for index in "${!sonde_pids[@]}"; do
    wait_attached "$index" "${sonde_pids[$index]}" && continue
    failure="sonde did not attach: $(grep -v '^skipped' "$work/sonde.$index.log" | tail -1)"
    return 1
  done
}

# Waits until the sonde with sonde.yaml (stderr in $work/sonde.0.log) traces the process; returns 1
# when the sonde exits first or 60 s pass.
wait_traced() { # sonde-pid target-pid
  for _ in $(seq 600); do
    grep -q "^tracing pid $2 " "$work/sonde.0.log" && return 0
    kill -0 "$1" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

# Waits until the sonde processes stop using CPU (the ring buffer and export queue drained).
drain_sondes() { until_steady 0.25 40 sonde_cpu >/dev/null; }

# Detaches the sondes and sets summary to "submitted exported dropped", summed over their exit lines
# "sonde: N spans submitted, M exported, K dropped (...)". SIGTERM, not SIGINT: a background job
# starts with SIGINT ignored, and sonde leaves it so. A sonde still there after 30 s (it flushes for
# at most 10) is killed and the mode fails.
stop_sondes() {
  local pid index
  for pid in "${sonde_pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${sonde_pids[@]}"; do
    for _ in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      kill -KILL "$pid"
      status=failed failure="sonde did not exit within 30 s of SIGTERM"
    fi
    wait "$pid" 2>/dev/null || true
  done
  summary=$(for index in "${!sonde_pids[@]}"; do
    grep -o '[0-9]* spans submitted, [0-9]* exported, [0-9]* dropped' "$work/sonde.$index.log" | tail -1 || true
  done | awk '{ s += $1; e += $4; d += $6 } END { print s + 0, e + 0, d + 0 }')
  sonde_pids=()
}

# Defines "p:sonde_bench/s<N> BINARY:0xOFFSET" for every site of the sites files and enables them
# in a tracefs instance of their own (the global trace buffer is left alone). Returns 1 if there
# is no site.
add_floor_events() { # sites files
  local file binary offset class
  for file; do
    while read -r binary offset class; do
      echo "p:sonde_bench/s${#floor_events[@]} $binary:$offset" >>"$tracing/uprobe_events"
      echo "s${#floor_events[@]} $class" >>"$work/floor.classes"
      floor_events+=("s${#floor_events[@]}")
    done <"$file"
  done
  ((${#floor_events[@]})) || return 1
  mkdir "$instance"
  echo 1 >"$instance/events/sonde_bench/enable"
}
# "hits single-stepped-hits" of the floor's events so far (tracefs uprobe_profile: file, event, hits).
floor_hits() {
  awk 'FNR == NR { class[$1] = $2; next }
    $1 ~ /sonde-bench/ && ($2 in class) { hits += $3; if (class[$2] == "single-stepped") stepped += $3 }
    END { print hits + 0, stepped + 0 }' "$work/floor.classes" "$tracing/uprobe_profile"
}

# Appends one line to results.tsv:
# workload mode round status rps requests errors sonde_cpu_us submitted exported dropped received
# bpf_ns bpf_runs rss_kb hits stepped_hits sink_cpu_us sink_requests server_cpu_us bpf_requests ring_peak note
measure() { # workload mode round
  local workload=$1 mode=$2 round=$3 binary pid index
  local status=ok rps=0 requests=0 errors=0 cpu=0 received=0 bpf="0 0" rss=0 hits="0 0" sink_cpu=0
  local cpu0 bpf0 sink0 sinkcpu0 sinkrequests0 hits0 targetcpu0 sink_requests=0 targets_cpu=0 bpf_requests=0 ring_peak=0 samplers
  failure="" summary="0 0 0"
  say "round $round/$rounds  $workload  $mode"
  start_targets "$workload"
  load "$warmup" "$work/warmup.out"
  case $mode in
    untraced) ;;
    floor | floor-conventional)
      add_floor_events $(for binary in $(binaries_of "$workload"); do echo "$work/sites.$binary${mode#floor}"; done) ||
        status=failed failure="sonde plan listed no site"
      ;;
    *) start_sondes "$mode" || status=failed ;;
  esac
  if [[ $status == ok ]]; then
    cpu0=$(sonde_cpu) hits0=$(floor_hits) targetcpu0=$(target_cpu)
    sink0=$(sink_count) sinkrequests0=$(sink_requests) sinkcpu0=$(cpu_ticks "$sink_pid")
    load "$seconds" "$work/load.out"
    targets_cpu=$((($(target_cpu) - targetcpu0) * 1000000 / $(getconf CLK_TCK)))
    rps=$(awk '/^Requests\/sec/ { print $2 }' "$work/load.out")
    requests=$(awk '/requests in/ { print $1 }' "$work/load.out")
    errors=$(awk '/Non-2xx/ { n += $NF }
      /Socket errors/ { gsub(/[^0-9 ]/, ""); n += $1 + $2 + $3 + $4 }
      END { print n + 0 }' "$work/load.out")
    hits=$(awk -v a="$(floor_hits)" -v b="$hits0" 'BEGIN { split(a, x, " "); split(b, y, " "); print x[1] - y[1], x[2] - y[2] }')
    for index in "${!sonde_pids[@]}"; do
      kill -0 "${sonde_pids[$index]}" 2>/dev/null ||
        status=failed failure="sonde exited during the load: $(tail -1 "$work/sonde.$index.log")"
    done
    if [[ $status == ok ]] && ((${#sonde_pids[@]})); then
      # BPF time in a window of its own, after the load window: kernel.bpf_stats_enabled makes
      # every run read the clock twice, 65 ns a run on the 2-core VM where this was written (1.9% of
      # net/http's req/s), a cost of measuring that the load window must not pay, as users do not.
      # Sonde's CPU and spans are counted over both windows. The span ring buffer's fill is sampled
      # there too (scripts/span-ring-fill.py, every 5 ms): how close the reader came to losing spans.
      sysctl -qw kernel.bpf_stats_enabled=1
      bpf0=$(bpf_stats)
      samplers=()
      for index in "${!sonde_pids[@]}"; do
        python3 scripts/span-ring-fill.py "${sonde_pids[$index]}" "$bpf_seconds" >"$work/ring.$index" 2>&1 &
        samplers+=($!)
      done
      load "$bpf_seconds" "$work/bpf-load.out"
      wait "${samplers[@]}" || true
      # -1 when a sampler printed no figure; its error is said.
      ring_peak=$(awk 'FNR == 1 { files++ } $1 ~ /^[0-9.]+$/ { read++; if ($1 > p) p = $1 }
        END { print read == files ? p + 0 : -1 }' "$work"/ring.*)
      [[ $ring_peak != -1 ]] || say "  span-ring-fill.py: $(grep -hv '^[0-9.]* ' "$work"/ring.* | tail -1)"
      rm -f "$work"/ring.*
      bpf=$(awk -v a="$(bpf_stats)" -v b="$bpf0" 'BEGIN { split(a, x, " "); split(b, y, " "); print x[1] - y[1], x[2] - y[2] }')
      sysctl -qw kernel.bpf_stats_enabled=0
      bpf_requests=$(awk '/requests in/ { print $1 }' "$work/bpf-load.out")
      drain_sondes
      cpu=$((($(sonde_cpu) - cpu0) * 1000000 / $(getconf CLK_TCK)))
      for pid in "${sonde_pids[@]}"; do
        rss=$(awk -v r="$rss" '/^VmHWM/ { print ($2 > r ? $2 : r) }' "/proc/$pid/status")
      done
      stop_sondes
      sleep 0.2
      received=$(($(sink_count) - sink0)) sink_requests=$(($(sink_requests) - sinkrequests0))
      sink_cpu=$((($(cpu_ticks "$sink_pid") - sinkcpu0) * 1000000 / $(getconf CLK_TCK)))
    fi
    [[ -n $rps && -n $requests ]] || { status=failed failure="wrk: $(tail -1 "$work/load.out")"; }
  fi
  if ((${#sonde_pids[@]})); then stop_sondes; fi
  remove_floor_events
  stop_targets
  printf '%s\t' "$workload" "$mode" "$round" "$status" "${rps:-0}" "${requests:-0}" "$errors" "$cpu" $summary \
    "$received" $bpf "$rss" $hits "$sink_cpu" "$sink_requests" "$targets_cpu" "${bpf_requests:-0}" "$ring_peak" >>"$work/results.tsv"
  printf '%s\n' "${failure//$'\t'/ }" >>"$work/results.tsv"
  [[ -z $failure ]] || say "  failed: $failure"
}

# ---------------------------------------------------------------------------------------------
modes=(untraced console otlp)
((has_conventional)) && modes+=(conventional)
modes+=(floor)
((has_conventional)) && modes+=(floor-conventional)
((has_sampler)) && modes+=(sampled)
((has_trace_context)) && modes+=(no-trace-context)
((has_discard)) && modes+=(discarded)
[[ -n $baseline ]] && modes+=(baseline)
modes+=(machine)   # two-service only: the http workload has one process

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
started_at=$(date +%s)
: >"$work/results.tsv"
for round in $(seq "$rounds"); do
  for workload in "${workloads[@]}"; do
    # A new order every round, so no mode always follows the same one.
    count=${#modes[@]}
    for i in $(seq 0 $((count - 1))); do
      mode=${modes[$(((i + round - 1) % count))]}
      [[ $mode == machine && $workload != two-service ]] || measure "$workload" "$mode" "$round"
    done
  done
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
elapsed=$(($(date +%s) - started_at))

# ---------------------------------------------------------------------------------------------
# The report.
revision=unknown
if revision=$(git rev-parse --short HEAD 2>/dev/null); then
  git diff --quiet HEAD -- Sources bpf probe-packs || revision="$revision + uncommitted changes"
fi
echo "Sonde overhead benchmark: sonde $revision, kernel $(uname -r), $(nproc) cores"
echo "$rounds round(s) x ${seconds}s per mode (modes interleaved, fresh servers each), ${warmup}s warm-up untraced;"
echo "servers on CPU $server_cpu, wrk -t1 -c$connections on CPU $load_cpu, sonde and sink unpinned; $elapsed s in all"
echo "load average before: $load_before, after: $load_after (other work on the machine adds noise)"
echo "figures: median (min-max) over rounds; kept = req/s / untraced req/s of the same round"

for workload in "${workloads[@]}"; do
  sites=$(for binary in $(binaries_of "$workload"); do cat "$work/sites.$binary"; done)
  total_sites=$(grep -c . <<<"$sites" || true)
  stepped_sites=$(grep -c single-stepped <<<"$sites" || true)
  go_version=$(grep -o 'Go go[0-9.]*' "$work/plan.$(binaries_of "$workload" | cut -d' ' -f1)" | head -1)
  echo
  case $workload in
    http) echo "== net/http demo server (demo/go-http-server, $go_version), GET /hello, all shipped packs ==" ;;
    two-service) echo "== two-service demo (front: mux + HTTP client + gRPC client; back: net/http + gRPC server; $go_version)," \
      "both traced, $front_paths ==" ;;
  esac
  echo "sonde's sites: $total_sites ($stepped_sites single-stepped, the rest emulated); the floor probes the same sites"
  if ((has_conventional)); then
    sites=$(for binary in $(binaries_of "$workload"); do cat "$work/sites.$binary-conventional"; done)
    echo "conventional placement's sites: $(grep -c . <<<"$sites" || true) ($(grep -c single-stepped <<<"$sites" || true)" \
      "single-stepped); its floor probes those"
  fi
  awk -F'\t' -v workload="$workload" -v has_conventional="$has_conventional" -v has_sampler="$has_sampler" \
    -v has_trace_context="$has_trace_context" -v has_discard="$has_discard" -v baseline="${baseline_revision:-}" '
    function sort(a, n,    i, j, t) {
      for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j - 1] > a[j]; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
    }
    function met(condition) { return condition ? "met" : "not met" }
    function median(v, n,    s, i) {
      for (i = 1; i <= n; i++) s[i] = v[i]
      sort(s, n)
      return n % 2 ? s[(n + 1) / 2] : (s[n / 2] + s[n / 2 + 1]) / 2
    }
    # "median (min-max)" of the values v[1..n], each printed with format f.
    function spread(v, n, f,    s, i, m) {
      if (n == 0) return "-"
      for (i = 1; i <= n; i++) s[i] = v[i]
      sort(s, n)
      m = median(v, n)
      if (n == 1) return sprintf(f, m)
      return sprintf(f " (" f "-" f ")", m, s[1], s[n])
    }
    $1 == workload {
      key = $2 SUBSEP $3
      status[key] = $4; rps[key] = $5; requests[key] = $6; errors[key] = $7; cpu[key] = $8
      submitted[key] = $9; exported[key] = $10; dropped[key] = $11; received[key] = $12
      bpfns[key] = $13; bpfruns[key] = $14; rss[key] = $15; hits[key] = $16; stepped[key] = $17
      sinkcpu[key] = $18; sinkrequests[key] = $19; servercpu[key] = $20; bpfrequests[key] = $21; ringpeak[key] = $22; note[key] = $23
      if ($3 > rounds) rounds = $3
    }
    # Mode a against mode b in each round both succeeded, into v: the req/s of a over those of b, or (added)
    # the us per request a adds to b. Returns how many rounds.
    function per_round(a, b, added, v,    r, m, x, y) {
      split("", v)
      for (r = 1; r <= rounds; r++) {
        x = a SUBSEP r; y = b SUBSEP r
        if (status[x] != "ok" || status[y] != "ok" || rps[y] <= 0 || added && rps[x] <= 0) continue
        v[++m] = added ? 1e6 / rps[x] - 1e6 / rps[y] : rps[x] / rps[y]
      }
      return m + 0
    }
    # Per-round values of one mode, into the global arrays (n = rounds that succeeded).
    function collect(mode,    r, k, u, fl) {
      n = 0; split("", v_rps); split("", v_kept); split("", v_added); split("", v_floor); split("", v_cpu)
      split("", v_bpf); split("", v_runs); split("", v_bpfreq); split("", v_hits); split("", v_spr); split("", v_sink)
      split("", v_batch); split("", v_server); split("", v_stepped)
      t_sub = t_exp = t_drop = t_recv = t_req = t_err = max_rss = max_ring = ring_unknown = measured = 0; fails = ""
      for (r = 1; r <= rounds; r++) {
        k = mode SUBSEP r
        if (!(k in status)) continue
        measured++
        if (status[k] != "ok") { fails = fails " round " r ": " note[k] ";"; continue }
        n++
        v_rps[n] = rps[k]; u = rps["untraced" SUBSEP r]; fl = rps["floor" SUBSEP r]
        if (mode == "conventional") fl = rps["floor-conventional" SUBSEP r]
        v_kept[n] = u > 0 ? rps[k] / u : 0
        v_added[n] = u > 0 && rps[k] > 0 ? 1e6 / rps[k] - 1e6 / u : 0
        v_floor[n] = fl > 0 ? rps[k] / fl : 0
        v_cpu[n] = submitted[k] > 0 ? cpu[k] / submitted[k] : 0
        v_bpf[n] = bpfruns[k] > 0 ? bpfns[k] / bpfruns[k] : 0
        v_runs[n] = bpfrequests[k] > 0 ? bpfruns[k] / bpfrequests[k] : 0
        v_bpfreq[n] = bpfrequests[k] > 0 ? bpfns[k] / bpfrequests[k] / 1000 : 0
        v_hits[n] = requests[k] > 0 ? hits[k] / requests[k] : 0
        v_stepped[n] = requests[k] > 0 ? stepped[k] / requests[k] : 0
        v_spr[n] = requests[k] + bpfrequests[k] > 0 ? submitted[k] / (requests[k] + bpfrequests[k]) : 0
        v_sink[n] = received[k] > 0 ? sinkcpu[k] / received[k] : 0
        v_server[n] = requests[k] > 0 ? servercpu[k] / requests[k] : 0
        v_batch[n] = sinkrequests[k] > 0 ? received[k] / sinkrequests[k] : 0
        t_sub += submitted[k]; t_exp += exported[k]; t_drop += dropped[k]; t_recv += received[k]
        t_req += requests[k]; t_err += errors[k]
        if (rss[k] > max_rss) max_rss = rss[k]
        if (ringpeak[k] > max_ring) max_ring = ringpeak[k]
        if (ringpeak[k] < 0) ring_unknown = 1
      }
    }
    END {
      split("untraced console otlp machine baseline no-trace-context discarded conventional floor floor-conventional sampled", order, " ")
      label["untraced"] = "untraced"
      label["console"] = "sonde, console > /dev/null"
      label["otlp"] = "sonde, OTLP > local sink"
      label["conventional"] = "sonde, conventional placement"
      label["floor"] = "placement floor (tracefs)"
      label["floor-conventional"] = "floor, conventional sites"
      label["sampled"] = "sonde, OTLP, 10% sampling"
      label["no-trace-context"] = "sonde, OTLP, no trace context"
      label["discarded"] = "sonde, spans discarded unread"
      label["baseline"] = "baseline " baseline ", OTLP"
      label["machine"] = "sonde.yaml: one sonde, OTLP"
      printf "%-31s %-24s %-18s %-21s %-18s %-20s %s\n", "mode", "req/s", "kept", "us added/request", "vs floor",
        "server CPU us/req", "probe hits/req (single-stepped)"
      for (i = 1; i in order; i++) {
        mode = order[i]
        if (mode == "conventional" && !has_conventional) {
          printf "%-31s %s\n", label[mode], "conventional placement: not available in this sonde"
          continue
        }
        if (mode == "floor-conventional" && !has_conventional) continue
        if (mode == "no-trace-context" && !has_trace_context || mode == "discarded" && !has_discard) continue
        if (mode == "baseline" && baseline == "" || mode == "machine" && workload != "two-service") continue
        if (mode == "sampled" && !has_sampler) {
          printf "%-31s %s\n", label[mode], "not available (this sonde does not read OTEL_TRACES_SAMPLER)"
          continue
        }
        collect(mode)
        if (n == 0) { printf "%-31s %s\n", label[mode], measured ? "failed:" fails : "not measured"; continue }
        traced = mode != "untraced" && mode !~ /^floor/
        printf "%-31s %-24s %-18s %-21s %-18s %-20s %s\n", label[mode], spread(v_rps, n, "%.0f"),
          mode == "untraced" ? "1.00" : spread(v_kept, n, "%.2f"),
          mode == "untraced" ? "-" : spread(v_added, n, "%.1f"),
          traced ? spread(v_floor, n, "%.2f") : "-", spread(v_server, n, "%.1f"),
          mode ~ /^floor/ ? sprintf("%.1f (%.1f)", median(v_hits, n), median(v_stepped, n)) : "-"
        if (t_err) printf "%-31s   !! %d non-2xx responses or socket errors\n", "", t_err
        if (fails != "") printf "%-31s   !! failed:%s\n", "", fails
      }
      if (has_conventional) {
        # Sonde against the peer design (conventional placement), round by round.
        m = per_round("otlp", "conventional", 0, v_peer)
        if (m) printf "sonde (OTLP) vs conventional placement: %s x the req/s\n", spread(v_peer, m, "%.2f")
      }
      if (has_trace_context) {
        # What trace context (reading the incoming traceparent, sending one) adds, round by round.
        m = per_round("otlp", "no-trace-context", 1, v_tc)
        if (m) printf "trace context (OTLP vs OTLP without it): %s us added per request (issue 8: <= 1)\n", spread(v_tc, m, "%.2f")
      }
      if (has_discard) {
        # What the work of the agent on the spans (decoding, assembly, export) costs, round by round.
        m = per_round("otlp", "discarded", 0, v_agent)
        if (m) printf "the agent at work on the spans (OTLP vs spans discarded unread): %s x the req/s\n", spread(v_agent, m, "%.3f")
      }
      if (baseline != "") {
        # This build against the baseline, round by round.
        m = per_round("otlp", "baseline", 0, v_base)
        if (m) printf "sonde (OTLP) vs baseline %s (OTLP): %s x the req/s\n", baseline, spread(v_base, m, "%.3f")
      }
      print ""
      printf "%-31s %-19s %-19s %-17s %-19s %-10s %-10s %-17s %s\n", "agent", "CPU us/span", "BPF ns/run", "runs/req", "BPF us/req", "peak RSS", "ring peak", "spans/req",
        "spans submitted / exported / dropped / received at sink"
      for (i = 1; i in order; i++) {
        mode = order[i]
        if (mode == "untraced" || mode ~ /^floor/ || mode == "discarded") continue
        if (mode == "conventional" && !has_conventional || mode == "sampled" && !has_sampler) continue
        if (mode == "baseline" && baseline == "") continue
        collect(mode)
        if (n == 0) continue
        printf "%-31s %-19s %-19s %-17s %-19s %-10s %-10s %-17s %d / %d / %d / %s\n", label[mode], spread(v_cpu, n, "%.1f"),
          spread(v_bpf, n, "%.0f"), spread(v_runs, n, "%.1f"), spread(v_bpfreq, n, "%.2f"), sprintf("%.1f MiB", max_rss / 1024),
          ring_unknown ? "?" : sprintf("%.0f%%", max_ring * 100),
          spread(v_spr, n, "%.2f"),
          t_sub, t_exp, t_drop, mode == "console" ? "-" : t_recv
        if (mode != "console" && t_recv != t_exp) printf "%-31s   !! %d spans exported but not received\n", "", t_exp - t_recv
      }
      collect("otlp")
      if (n) {
        kept = median(v_kept, n); vs = median(v_floor, n); c = median(v_cpu, n); b = median(v_bpf, n)
        lost = t_sub - t_recv + t_drop
        printf "issue 7 targets (OTLP, medians%s): kept >= 0.85 or >= 0.95 x floor: %s (%.2f, %.2f x floor);\n",
          n < 3 ? " of " n " round(s), indicative only" : "", met(kept >= 0.85 || vs >= 0.95), kept, vs
        printf "  CPU <= 2 us/span: %s (%.1f); BPF <= 400 ns/run: %s (%.0f); peak RSS <= 40 MiB: %s (%.1f); ",
          met(c <= 2), c, met(b <= 400), b, met(max_rss <= 40 * 1024), max_rss / 1024
        printf "0 spans lost: %s (%d)\n", met(lost == 0), lost
      }
      if (n) printf "OTLP sink: %s us CPU per span received, %s spans per export request\n", spread(v_sink, n, "%.2f"),
        spread(v_batch, n, "%.0f")
    }' "$work/results.tsv"
done
echo
echo "CPU us/span: sonde utime+stime over the load and BPF windows (then drained) / spans submitted; BPF ns/run"
echo "and runs/req: kernel.bpf_stats_enabled run_time_ns/run_cnt of sonde's program in a ${bpf_seconds} s load window"
echo "after the one measuring req/s, which runs with bpf_stats off (BPF us/req: its run time per request; a site"
echo "doing the work of two raises ns/run, not us/req); peak RSS: largest VmHWM of a sonde process; ring peak:"
echo "the largest share of the span ring buffer written and not yet read, sampled every 5 ms in the BPF window"
echo "(scripts/span-ring-fill.py; the reader drains at 25%, spans are lost at 100%);"
echo "vs floor: req/s / placement-floor req/s of the same round (conventional: its own sites' floor);"
echo "spans discarded unread: sonde --discard-spans, which drops each span record as it reads it, before"
echo "decoding (the BPF program and the ring buffer without the agent's work on the spans);"
echo "server CPU us/req: the traced programs' utime+stime over the load window / requests (less sensitive than"
echo "req/s to other work sharing the server's core); probe hits/req: tracefs uprobe_profile hits / requests"
echo "(medians; in brackets the hits on sites sonde plan marks single-stepped)."
