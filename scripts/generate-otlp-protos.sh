#!/usr/bin/env bash
# Regenerates the committed OTLP trace types in Tests/ExportersTests/OTLP/*.pb.swift, which the
# tests decode the exporter's request bodies with (the agent writes and reads OTLP by hand).
#
# The .proto sources are not vendored: the PyPI package opentelemetry-proto embeds the
# official serialized FileDescriptorProtos, so we rebuild a FileDescriptorSet from it and
# hand that to protoc. protoc-gen-swift is built from swift-protobuf at the version the
# package depends on, so generated code and runtime library match.
#
# Needs: python3 (PyPI reachable if opentelemetry-proto is not installed), protoc, swift, git.
# Environment overrides:
#   SWIFT_PROTOBUF_VERSION  tag of swift-protobuf to build the plugin from (default 1.39.0)
#   PROTOC_GEN_SWIFT        path of an existing protoc-gen-swift (skips the build)
#   SONDE_PROTOGEN_WORKDIR  where to keep the plugin build between runs
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
output_dir="$repo_root/Tests/ExportersTests/OTLP"
swift_protobuf_version="${SWIFT_PROTOBUF_VERSION:-1.39.0}"
workdir="${SONDE_PROTOGEN_WORKDIR:-${TMPDIR:-/tmp}/sonde-otlp-protogen}"
proto_files=(
    opentelemetry/proto/common/v1/common.proto
    opentelemetry/proto/resource/v1/resource.proto
    opentelemetry/proto/trace/v1/trace.proto
    opentelemetry/proto/collector/trace/v1/trace_service.proto
)
mkdir -p "$workdir"

build_protoc_gen_swift() {
    local checkout="$workdir/swift-protobuf-$swift_protobuf_version"
    if [[ ! -d "$checkout" ]]; then
        git clone --quiet https://github.com/apple/swift-protobuf.git "$checkout"
        git -C "$checkout" checkout --quiet "$swift_protobuf_version"
    fi
    echo "building protoc-gen-swift $swift_protobuf_version (takes a few minutes the first time)" >&2
    (cd "$checkout" && swift build -c release --product protoc-gen-swift >&2)
    echo "$checkout/.build/release/protoc-gen-swift"
}

python_with_otlp_protos() {
    if python3 -c 'import opentelemetry.proto.collector.trace.v1.trace_service_pb2' 2>/dev/null; then
        return
    fi
    echo "opentelemetry-proto not importable; installing it into $workdir/python" >&2
    python3 -m pip install --quiet --target "$workdir/python" opentelemetry-proto >&2
    export PYTHONPATH="$workdir/python${PYTHONPATH:+:$PYTHONPATH}"
}

write_descriptor_set() {
    python3 - "$1" "${proto_files[@]}" <<'PY'
import importlib, sys
from google.protobuf import descriptor_pb2

output_path, proto_names = sys.argv[1], sys.argv[2:]
descriptor_set = descriptor_pb2.FileDescriptorSet()
for proto_name in proto_names:  # already in dependency order
    module = importlib.import_module(proto_name.removesuffix(".proto").replace("/", ".") + "_pb2")
    descriptor_set.file.add().ParseFromString(module.DESCRIPTOR.serialized_pb)
with open(output_path, "wb") as output:
    output.write(descriptor_set.SerializeToString())
PY
}

plugin="${PROTOC_GEN_SWIFT:-$(build_protoc_gen_swift)}"
python_with_otlp_protos
descriptor_set="$workdir/otlp-trace.protoset"
write_descriptor_set "$descriptor_set"

rm -rf "$output_dir"
mkdir -p "$output_dir"
protoc --plugin=protoc-gen-swift="$plugin" \
    --descriptor_set_in="$descriptor_set" \
    --swift_opt=Visibility=Internal \
    --swift_opt=FileNaming=DropPath \
    --swift_out="$output_dir" \
    "${proto_files[@]}"
echo "generated:" >&2
(cd "$repo_root" && find "${output_dir#$repo_root/}" -name '*.pb.swift' | sort) >&2
