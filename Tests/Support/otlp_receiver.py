#!/usr/bin/env python3
"""A minimal OTLP/HTTP trace receiver for tests, independent of Sonde's own protobuf types.

It decodes each request with the official `opentelemetry-proto` Python package, so a test
that reads its output checks what Sonde really put on the wire.

Usage:
    otlp_receiver.py --port 0 --out spans.jsonl [--host 127.0.0.1]
                     [--fail-first N] [--fail-status 503] [--retry-after S] [--reject-spans N]
                     [--delay-ms N]

    --port 0          pick a free port; the chosen port is printed alone on stdout's first line
    --out FILE        append one JSON line per received span (flushed after every request)
    --fail-first N    answer the first N POSTs with --fail-status (default 503) and record nothing
    --retry-after S   send "Retry-After: S" with those failures
    --delay-ms N      wait N ms before answering each POST: a slow collector
    --reject-spans N  accept every request but report N rejected spans (OTLP partial success)

It accepts protobuf POSTs (Content-Type: application/x-protobuf, optionally gzip-encoded) on
any path and answers 200 with an empty ExportTraceServiceResponse. It runs until SIGTERM/SIGINT
or until its parent process exits, so a crashed test leaves no receiver behind.
One request log line per POST goes to stderr.

Each JSON line describes one span:
    {
      "trace_id": "32 hex", "span_id": "16 hex", "parent_span_id": "16 hex or empty",
      "trace_state": "W3C tracestate or empty", "flags": 769 (SpanFlags: trace flags, remote parent bits),
      "name": "GET /hello", "kind": "SPAN_KIND_SERVER",
      "start_time_unix_nano": 1700000000000000000, "end_time_unix_nano": ...,
      "attributes": {"http.request.method": "GET", "http.response.status_code": 200, ...},
      "status": {"code": "STATUS_CODE_ERROR", "message": "..."},
      "resource": {"service.name": "hello", ...},
      "scope": {"name": "go/net-http", "version": "1"},
      "request": {"index": 0, "path": "/v1/traces", "headers": {"content-type": "...", ...}}
    }
Attribute values keep their OTLP type: strings, ints, floats, bools, lists (array_value),
objects (kvlist_value) and hex strings (bytes_value). Header names are lower-cased.
"request.index" counts the POSTs this receiver has answered, starting at 0;
"request.received_unix_nano" is when this one arrived and "request.last_failure_unix_nano"
when the latest --fail-first answer was sent (0 if none).
"""

import argparse
import gzip
import json
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status


def any_value_to_json(value):
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [any_value_to_json(item) for item in value.array_value.values]
    if kind == "kvlist_value":
        return key_values_to_json(value.kvlist_value.values)
    if kind == "bytes_value":
        return value.bytes_value.hex()
    return getattr(value, kind) if kind else None


def key_values_to_json(key_values):
    return {kv.key: any_value_to_json(kv.value) for kv in key_values}


def span_records(request, request_info):
    for resource_spans in request.resource_spans:
        resource = key_values_to_json(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            scope = {"name": scope_spans.scope.name, "version": scope_spans.scope.version}
            for span in scope_spans.spans:
                yield {
                    "trace_id": span.trace_id.hex(),
                    "span_id": span.span_id.hex(),
                    "parent_span_id": span.parent_span_id.hex(),
                    "trace_state": span.trace_state,
                    "flags": span.flags,
                    "name": span.name,
                    "kind": Span.SpanKind.Name(span.kind),
                    "start_time_unix_nano": span.start_time_unix_nano,
                    "end_time_unix_nano": span.end_time_unix_nano,
                    "attributes": key_values_to_json(span.attributes),
                    "status": {
                        "code": Status.StatusCode.Name(span.status.code),
                        "message": span.status.message,
                    },
                    "resource": resource,
                    "scope": scope,
                    "request": request_info,
                }


class Receiver:
    """State shared by the handler threads: the output file and the request counter."""

    def __init__(self, out_path, fail_first, fail_status, reject_spans):
        self.out_path = out_path
        self.failures_left = fail_first
        self.fail_status = fail_status
        self.reject_spans = reject_spans
        self.requests_answered = 0
        self.last_failure_unix_nano = 0
        self.lock = threading.Lock()

    def next_request(self):
        """Returns (request index, status to fail with or None, when the last failure was answered)."""
        with self.lock:
            index = self.requests_answered
            self.requests_answered += 1
            if self.failures_left > 0:
                self.failures_left -= 1
                self.last_failure_unix_nano = time.time_ns()
                return index, self.fail_status, self.last_failure_unix_nano
            return index, None, self.last_failure_unix_nano

    def record(self, records):
        with self.lock, open(self.out_path, "a", encoding="utf-8") as out:
            for record in records:
                out.write(json.dumps(record, sort_keys=True) + "\n")


def make_handler(receiver, retry_after, delay_ms):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            received_unix_nano = time.time_ns()
            time.sleep(delay_ms / 1000)
            index, fail_status, last_failure_unix_nano = receiver.next_request()
            if fail_status is not None:
                extra = {"Retry-After": str(retry_after)} if retry_after is not None else {}
                return self.reply(fail_status, b"", "text/plain", extra)
            content_type = self.headers.get("Content-Type", "")
            if content_type.split(";")[0].strip() != "application/x-protobuf":
                return self.reply(415, b"only application/x-protobuf is supported", "text/plain")
            if self.headers.get("Content-Encoding", "").lower() == "gzip":
                body = gzip.decompress(body)
            request = ExportTraceServiceRequest()
            try:
                request.ParseFromString(body)
            except Exception as error:  # noqa: BLE001 - any decode failure is the sender's bug
                return self.reply(400, f"undecodable request: {error}".encode(), "text/plain")
            request_info = {
                "index": index,
                "received_unix_nano": received_unix_nano,
                "last_failure_unix_nano": last_failure_unix_nano,
                "path": self.path,
                "headers": {name.lower(): value for name, value in self.headers.items()},
            }
            receiver.record(span_records(request, request_info))
            response = ExportTraceServiceResponse()
            if receiver.reject_spans:
                response.partial_success.rejected_spans = receiver.reject_spans
                response.partial_success.error_message = "rejected by --reject-spans"
            self.reply(200, response.SerializeToString(), "application/x-protobuf")

        def reply(self, status, body, content_type, extra_headers=None):
            self.send_response(status)
            for name, value in (extra_headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format, *args):
            sys.stderr.write("otlp_receiver: " + (format % args) + "\n")

    return Handler


def exit_when_orphaned():
    """Stops the receiver once the test that started it is gone."""
    parent = os.getppid()
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(0)


def main():
    parser = argparse.ArgumentParser(description="OTLP/HTTP trace receiver for tests")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--out", required=True)
    parser.add_argument("--fail-first", type=int, default=0)
    parser.add_argument("--fail-status", type=int, default=503)
    parser.add_argument("--retry-after", type=int, default=None)
    parser.add_argument("--reject-spans", type=int, default=0)
    parser.add_argument("--delay-ms", type=int, default=0)
    options = parser.parse_args()

    # Launchers may hand us SIGTERM ignored or blocked; whoever started us must be able to stop us.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT})
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    threading.Thread(target=exit_when_orphaned, daemon=True).start()

    open(options.out, "a").close()  # the file exists as soon as the port is printed
    receiver = Receiver(options.out, options.fail_first, options.fail_status, options.reject_spans)
    server = ThreadingHTTPServer((options.host, options.port), make_handler(receiver, options.retry_after, options.delay_ms))
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
