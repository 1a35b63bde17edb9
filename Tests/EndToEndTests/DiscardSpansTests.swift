import Foundation
import TestSupport
import XCTest

/// `--discard-spans`, the benchmark's kernel-side-only mode: every span the BPF program writes
/// is read and dropped before decoding, and each is counted in the summary.
final class DiscardSpansTests: XCTestCase {
    override func setUpWithError() throws {
        try TracingTestSetup.requireKernelCapabilities()
    }

    /// /hello makes one server span; /proxy three (its server span, its client span, and the
    /// inner /hello's server span): 3 × 1 + 3 × 3 spans written, none exported, all counted.
    func testEverySpanIsDroppedUnreadAndCounted() async throws {
        let traced = try TracedDemoServer(binary: try TracingTestSetup.demoServer(), sondeArguments: TracedDemoServer.packs + ["--discard-spans"])
        defer { _ = try? traced.server.stop(signal: SIGKILL) }
        let statuses = try await sendRequests(["/hello", "/proxy", "/hello", "/proxy", "/hello", "/proxy"], port: traced.port, concurrency: 2)
        XCTAssertEqual(statuses, Array(repeating: 200, count: 6))
        XCTAssertEqual(try traced.sonde.stop(signal: SIGINT), 0, traced.sonde.text)
        XCTAssertEqual(try traced.receiver.spans().count, 0, traced.sonde.text)
        XCTAssertTrue(traced.sonde.text.contains("--discard-spans: every span is dropped as it is read"), traced.sonde.text)
        XCTAssertTrue(traced.sonde.text.contains("sonde: 0 spans submitted, 0 exported, 0 dropped"), traced.sonde.text)
        XCTAssertTrue(traced.sonde.text.contains("; spans discarded unread (--discard-spans): 12"), traced.sonde.text)
        XCTAssertTrue(traced.sonde.text.contains("returns without a seen entry: 0"), traced.sonde.text)
    }
}
