#!/usr/bin/env bash
# Sets up the machine and runs every test, the eBPF end-to-end ones included (they need root).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
swift build --build-tests
swift test --skip-build
