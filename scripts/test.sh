#!/usr/bin/env bash
# Sets up the machine and runs every test, the eBPF end-to-end ones included (they need root).
# With CI=true a skipped test fails the run: on a machine that scripts/setup.sh prepared, only a
# kernel capability the machine lacks may stop a test ("kernel capability missing: …", the one
# allowance, named in Tests/TestSupport/TestEnvironment.swift); such skips are listed.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
swift build --build-tests

log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
swift test --skip-build 2>&1 | tee "$log" || status=$?

# XCTest prints "FILE:LINE: Class.test : Test skipped - REASON" for each skip.
skipped=$(grep -aE ' : Test skipped - ' "$log" || true)
allowed=$(grep -F ' : Test skipped - kernel capability missing: ' <<<"$skipped" || true)
refused=$(grep -vF ' : Test skipped - kernel capability missing: ' <<<"$skipped" || true)
if [[ -n "$allowed" ]]; then
  echo "skipped for a kernel capability this machine lacks (allowed):"
  sed -E 's/^.*: ([^ ]+) : Test skipped - /  \1: /' <<<"$allowed"
fi
if [[ -n "$refused" ]]; then
  echo "skipped for something scripts/setup.sh should have installed:"
  sed -E 's/^.*: ([^ ]+) : Test skipped - /  \1: /' <<<"$refused"
  if [[ "${CI:-}" == "true" ]]; then
    echo "CI: $(wc -l <<<"$refused") test(s) skipped without a kernel-capability reason; failing the run"
    status=1
  fi
fi
exit "$status"
