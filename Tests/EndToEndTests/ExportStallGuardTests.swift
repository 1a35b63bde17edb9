import Engine
import Exporters
import Foundation
import Spans
import Synchronization
import TestSupport
import XCTest

@testable import SondeKit

/// The guard that rescues an export thread stalled in the idle scheduling class runs as a thread
/// of its own for as long as a trace session: it must say nothing while the reader keeps up, and
/// end with the session.
final class ExportStallGuardTests: XCTestCase {
    func testTheGuardSaysNothingWhileTheRingBufferIsEmptyAndEndsWhenStopped() throws {
        let missing = KernelCapabilities.missing()
        if !missing.isEmpty { throw TestEnvironment.missingKernelCapability(missing) }
        let engine = try BPFEngine()
        let exporter = BehindCountingExporter()
        let before = threadsNamed("sonde-guard")

        let stallGuard = ExportStallGuard(watching: try engine.spanBacklog(), exporter: exporter)
        let deadline = ContinuousClock.now + .seconds(10)
        while threadsNamed("sonde-guard") == before && ContinuousClock.now < deadline { usleep(1_000) }
        XCTAssertEqual(threadsNamed("sonde-guard"), before + 1, "the guard runs as a thread of its own")
        stallGuard.stop()

        XCTAssertEqual(threadsNamed("sonde-guard"), before, "stop() returns once the thread has ended")
        XCTAssertEqual(exporter.timesBehind.load(ordering: .relaxed), 0, "an empty ring buffer is no stall")
        XCTAssertEqual(ExportStallGuard.behindUnreadFraction, 0.5)
    }
}

/// Counts the times it is told the export is behind.
private final class BehindCountingExporter: SpanExporter {
    let timesBehind = Atomic<Int>(0)

    func export(_ spans: [Span]) async {}

    func exportBacklog(_ fill: Double) {
        timesBehind.add(1, ordering: .relaxed)
    }
}
