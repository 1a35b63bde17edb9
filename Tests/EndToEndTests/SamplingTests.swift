import Engine
import Foundation
import TestSupport
import XCTest

/// Head sampling in the kernel (OTEL_TRACES_SAMPLER): decided once per root span, followed by its
/// children and by the goroutines it starts; every root is either exported or counted.
final class SamplingTests: XCTestCase {
    override func setUpWithError() throws {
        try TracingTestSetup.requireKernelCapabilities()
    }

    private func demoServer() throws -> String { try TracingTestSetup.demoServer() }

    /// "traces not sampled: N" from sonde's summary, 0 when absent.
    private func sampledOut(_ summary: String) throws -> Int {
        guard let range = summary.range(of: "traces not sampled: ") else { return 0 }
        return try XCTUnwrap(Int(summary[range.upperBound...].prefix { $0.isNumber }), summary)
    }

    /// /proxy and /proxy-async each make a server span and a client span (the async one from a
    /// goroutine) for an inner /hello request, itself a root: 4 roots per pair of requests.
    private func trace(sampler: [String: String], pairs: Int) async throws -> (spans: [[String: Any]], summary: String) {
        let traced = try TracedDemoServer(binary: try demoServer(), sondeEnvironment: sampler)
        defer { _ = try? traced.server.stop(signal: SIGKILL) }
        let paths = Array(repeating: "/proxy", count: pairs) + Array(repeating: "/proxy-async", count: pairs)
        let statuses = try await sendRequests(paths.shuffled(), port: traced.port, concurrency: 4)
        XCTAssertEqual(statuses, Array(repeating: 200, count: 2 * pairs))
        XCTAssertEqual(try traced.sonde.stop(signal: SIGINT), 0, traced.sonde.text)
        return (try traced.spans(), traced.sonde.text)
    }

    func testAlwaysOffRecordsNothingAndCountsEveryRoot() async throws {
        let (spans, summary) = try await trace(sampler: ["OTEL_TRACES_SAMPLER": "always_off"], pairs: 5)
        XCTAssertEqual(spans.count, 0, summary)
        XCTAssertEqual(try sampledOut(summary), 20, summary)
        XCTAssertTrue(summary.contains("recording no trace (OTEL_TRACES_SAMPLER)"), summary)
        XCTAssertTrue(summary.contains("returns without a seen entry: 0"), summary)
    }

    /// Which traces are kept is random, but every root is kept or counted, a kept trace is kept
    /// whole (its client span, made on a goroutine or not), a dropped one leaves nothing, and the
    /// decision is the OpenTelemetry SDKs' on the trace id.
    func testTraceIDRatioKeepsWholeTracesAndCountsTheRest() async throws {
        let sampler = ["OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.5"]
        let (spans, summary) = try await trace(sampler: sampler, pairs: 20)
        let servers = spans.filter { $0["kind"] as? String == "SPAN_KIND_SERVER" }
        let clients = spans.filter { $0["kind"] as? String == "SPAN_KIND_CLIENT" }
        XCTAssertEqual(servers.count + clients.count, spans.count)
        XCTAssertEqual(servers.count + (try sampledOut(summary)), 80, summary)
        XCTAssertTrue(summary.contains("returns without a seen entry: 0"), summary)

        let outer = servers.filter { ["/proxy", "/proxy-async"].contains(attributes($0)["url.path"] as? String) }
        XCTAssertEqual(Set(clients.compactMap { $0["parent_span_id"] as? String }), Set(outer.compactMap { $0["span_id"] as? String }))
        XCTAssertEqual(clients.count, outer.count)
        for span in spans {
            let traceID = try XCTUnwrap(span["trace_id"] as? String)
            let low = try XCTUnwrap(UInt64(traceID.suffix(16), radix: 16))
            XCTAssertLessThan(low >> 1, 1 << 62, "trace \(traceID) is not one a 0.5 TraceIdRatioBased sampler keeps")
        }
        XCTAssertTrue((1..<40).contains(outer.count), "with 40 traces at 0.5, some are kept and some not: \(outer.count)")
    }

    func testUnknownSamplerIsRefusedBeforeAttaching() throws {
        let result = try runSonde(["run", "--exe", try demoServer()], environment: ["OTEL_TRACES_SAMPLER": "sometimes"])
        XCTAssertEqual(result.exit, 1)
        XCTAssertTrue(
            result.output.contains(
                "OTEL_TRACES_SAMPLER 'sometimes' is not a sampler sonde knows; use always_on, always_off, traceidratio, parentbased_always_on, parentbased_always_off or parentbased_traceidratio"),
            result.output)
        XCTAssertFalse(result.output.contains("attached"), result.output)
    }
}
