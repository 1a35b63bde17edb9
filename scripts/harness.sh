# Sourced by scripts/bench.sh and scripts/soak.sh: building what they run, starting the counting
# OTLP sink, and waiting for files. Expects $repo, $work (a scratch folder) and a say function.

# Builds the sonde of a checkout (default: this one) in release mode under its .build-release and
# prints the binary's path; exits on failure.
build_sonde_release() {
  local checkout=${1:-$repo}
  local log=$work/swift-build.$(basename "$checkout").log
  say "building sonde (release, $checkout/.build-release)"
  (cd "$checkout" && swift build -c release --scratch-path .build-release --product sonde) >"$log" 2>&1 || {
    tail -30 "$log" >&2
    say "swift build failed (if others are editing Sources/, retry in a few minutes)"
    exit 1
  }
  echo "$checkout/.build-release/release/sonde"
}

# Builds a Go package of this repository with Debian's Go 1.19 in GOPATH mode, as
# Tests/EndToEndTests/Support.swift builds them.
go=/usr/lib/go-1.19/bin/go
go_build() { # package dir, output
  (cd "$1" && GO111MODULE=off GOPATH=/usr/share/gocode GOTOOLCHAIN=local GOFLAGS= GOCACHE="$work/gocache" \
    "$go" build -o "$2" .)
}

wait_for_file() { for _ in $(seq 100); do [[ -s $1 ]] && return 0; sleep 0.05; done; say "$1 never appeared"; return 1; }

# Starts scripts/otlp-sink (built as $work/otlp-sink) for the whole run; sets sink_pid and sink_url.
start_sink() {
  "$work/otlp-sink" -port-file "$work/sink.port" 2>"$work/sink.log" &
  sink_pid=$!
  wait_for_file "$work/sink.port"
  sink_url=http://127.0.0.1:$(cat "$work/sink.port")
}
sink_count() { curl -sf "$sink_url/count"; }

# Kills this shell's children that still run (reaped ones are no longer jobs).
kill_children() {
  local pid
  for pid in $(jobs -p); do kill -KILL "$pid" 2>/dev/null; done
  wait 2>/dev/null
}

# Waits until the sonde whose stderr is $work/sonde.INDEX.log says it attached; returns 1 when
# that process exits first or 60 s pass.
wait_attached() { # index pid
  for _ in $(seq 600); do
    grep -q '^attached' "$work/sonde.$1.log" && return 0
    kill -0 "$2" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

# Runs a command every INTERVAL seconds until two results in a row agree, at most TRIES times;
# prints the last result.
until_steady() { # interval tries command...
  local interval=$1 tries=$2 before after
  shift 2
  before=$("$@")
  after=$before
  for _ in $(seq "$tries"); do
    sleep "$interval"
    after=$("$@")
    [[ $after == "$before" ]] && break
    before=$after
  done
  echo "$after"
}
