import Foundation
import TestSupport
import XCTest

/// Calls of one probe nested in each other on one goroutine — net/http client requests sent from
/// inside another request's proxy lookup (the demo's /nested) — become spans nested in each other
/// with their own timing. Calls that unwind inside are counted, and calls nested past the BPF
/// program's bound are counted and never taken for the end of a recorded one.
final class NestedCallTests: XCTestCase {
    override func setUpWithError() throws {
        try TracingTestSetup.requireKernelCapabilities()
    }

    func testGo119NestedClientCalls() async throws {
        try await checkNestedClientCalls(go: GoToolchain.debian, variant: "go119")
    }

    /// A newer register ABI and stack layout: the depths that tell nested calls apart still match.
    func testGo127NestedClientCalls() async throws {
        try await checkNestedClientCalls(go: GoToolchain.goBin(minor: "1.27"), variant: "go127")
    }

    private func checkNestedClientCalls(go toolchain: GoToolchain, variant: String) async throws {
        let binary = try GoToolchains.build("demo/go-http-server", with: toolchain.installed(), name: "demo-\(variant)")
        let traced = try TracedDemoServer(binary: binary, sondeArguments: ["--pack", "go/net-http"])
        defer { _ = try? traced.server.stop(signal: SIGKILL) }
        // Three requests: two lookups nested in a request; three, whose two innermost calls
        // unwind (the innermost lookup panics, the call above recovers); nine, two past the bound.
        let requests: [(path: String, recorded: [Int])] = [
            ("/nested?depth=2", [2, 1, 0]),
            ("/nested?depth=3&panic=1", [3, 2]),
            ("/nested?depth=9", Array((2...9).reversed())),
        ]
        for request in requests {
            let statuses = try await sendRequests([request.path], port: traced.port, concurrency: 1)
            XCTAssertEqual(statuses, [200])
        }
        XCTAssertEqual(try traced.sonde.stop(signal: SIGINT), 0, traced.sonde.text)
        let spans = try traced.spans()
        func isServer(_ span: [String: Any], path: String) -> Bool {
            span["kind"] as? String == "SPAN_KIND_SERVER" && attributes(span)["url.path"] as? String == path
        }
        let servers = spans.filter { isServer($0, path: "/nested") }
        XCTAssertEqual(servers.count, requests.count, traced.sonde.text)
        for (server, request) in zip(servers, requests) {
            let clients = spans.filter { $0["kind"] as? String == "SPAN_KIND_CLIENT" && $0["trace_id"] as? String == server["trace_id"] as? String }
            // The chain of parents from the server span down: each call the child of the one it is nested in.
            var chain: [[String: Any]] = []
            var parent = server
            while let child = clients.first(where: { $0["parent_span_id"] as? String == parent["span_id"] as? String }) {
                chain.append(child)
                parent = child
            }
            XCTAssertEqual(chain.count, clients.count, "\(request.path): every client span is on the one chain: \(clients)")
            XCTAssertEqual(
                chain.map { attributes($0)["url.full"] as? String },
                request.recorded.map { "http://127.0.0.1:\(traced.port)/hello?level=\($0)" }, request.path)
            XCTAssertEqual(chain.map { attributes($0)["http.response.status_code"] as? Int }, request.recorded.map { _ in 200 }, request.path)
            for (outer, inner) in zip([server] + chain, chain) {
                let (outerStart, outerEnd) = try interval(outer)
                let (innerStart, innerEnd) = try interval(inner)
                XCTAssertTrue(outerStart < innerStart && innerEnd < outerEnd, "\(request.path): \(inner) lies within \(outer)")
            }
        }
        // Every request sent was served: 3 + 2 (the unwound two never sent theirs) + 10.
        XCTAssertEqual(spans.filter { isServer($0, path: "/hello") }.count, 15, traced.sonde.text)
        let summary = traced.sonde.text
        XCTAssertTrue(summary.contains("; calls that unwound without returning (panic, Goexit): 2;"), summary)
        XCTAssertTrue(summary.contains("; calls nested deeper than 7 in calls of the same probe (not traced): 2"), summary)
        XCTAssertTrue(summary.contains("; returns without a seen entry: 0;"), summary)
    }

    private func interval(_ span: [String: Any]) throws -> (UInt64, UInt64) {
        (try XCTUnwrap(span["start_time_unix_nano"] as? UInt64), try XCTUnwrap(span["end_time_unix_nano"] as? UInt64))
    }
}
