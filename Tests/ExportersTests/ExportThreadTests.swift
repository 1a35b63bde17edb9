import Foundation
import Spans
import Synchronization
import TestSupport
import XCTest

@testable import Exporters

final class ExportThreadTests: XCTestCase {
    func testJobsRunOnTheNamedThreadUntilItIsStopped() async {
        let thread = ExportThread(name: "sonde-test-jobs")

        let ranOn = await withTaskExecutorPreference(thread) { currentThreadName() }

        XCTAssertEqual(ranOn, "sonde-test-jobs")
        XCTAssertEqual(threadsNamed("sonde-test-jobs"), 1)
        thread.stop()
        await waitUntil { threadsNamed("sonde-test-jobs") == 0 }
    }

    func testTheExportLoopRunsOnTheExportersThreadAndAnExporterWithoutOneOnTheSharedPool() async {
        let thread = ExportThread(name: "sonde-test-loop")
        defer { thread.stop() }
        let ownThread = ThreadRecordingExporter(thread: thread)
        let sharedPool = ThreadRecordingExporter(thread: nil)
        for exporter in [ownThread, sharedPool] {
            let processor = BatchingSpanProcessor(
                exporter: exporter, configuration: BatchingSpanProcessor.Configuration(maxBatchSize: 2, scheduleDelay: .seconds(3600)))
            makeNumberedSpans(5).forEach(processor.submit)
            await processor.shutdown()
        }

        XCTAssertEqual(ownThread.threadNames, ["sonde-test-loop", "sonde-test-loop", "sonde-test-loop"])
        XCTAssertEqual(sharedPool.threadNames.count, 3)
        XCTAssertFalse(sharedPool.threadNames.contains("sonde-test-loop"))
    }

    /// The thread takes idle CPU time only until its queue has no room for what the reader hands
    /// over; it takes its share again then, and yields once more when it has kept up.
    func testTheThreadYieldsTheCPUUntilItFallsBehind() async {
        let thread = ExportThread(name: "sonde-test-yield")
        defer { thread.stop() }
        await waitUntil { thread.threadID != 0 }

        XCTAssertEqual(sched_getscheduler(thread.threadID), ExportThread.idleSchedulingPolicy)
        thread.exportBacklog(0.9)
        XCTAssertEqual(sched_getscheduler(thread.threadID), ExportThread.idleSchedulingPolicy, "room left: still idle")
        thread.exportBacklog(1)
        XCTAssertEqual(sched_getscheduler(thread.threadID), Int32(SCHED_OTHER), "behind: the normal class")
        thread.exportBacklog(0)
        XCTAssertEqual(sched_getscheduler(thread.threadID), Int32(SCHED_OTHER), "not a calm period yet")
    }

    func testTheYieldPolicyWaitsForACalmPeriodThatDoublesWhenTheThreadRelapses() {
        let start = ContinuousClock.now
        func at(_ milliseconds: Int) -> ContinuousClock.Instant { start + .milliseconds(milliseconds) }
        var policy = ExportYieldPolicy()
        XCTAssertEqual(policy.current, .idle)
        XCTAssertNil(policy.observe(fill: 0.99, at: at(0)))
        XCTAssertEqual(policy.observe(fill: 1, at: at(100)), .normal)
        XCTAssertEqual(policy.calmPeriod, .seconds(1))
        XCTAssertNil(policy.observe(fill: 1, at: at(300)), "behind again: the calm period starts over")
        XCTAssertNil(policy.observe(fill: 0.2, at: at(1_299)))
        XCTAssertEqual(policy.observe(fill: 0.2, at: at(1_300)), .idle)
        XCTAssertEqual(policy.observe(fill: 1, at: at(2_000)), .normal, "behind 0.7 s after yielding")
        XCTAssertEqual(policy.calmPeriod, .seconds(2))
        XCTAssertNil(policy.observe(fill: 0, at: at(3_999)))
        XCTAssertEqual(policy.observe(fill: 0, at: at(4_000)), .idle)
        XCTAssertEqual(policy.observe(fill: 1, at: at(7_000)), .normal, "behind 3 s after yielding: kept up longer than the calm period")
        XCTAssertEqual(policy.calmPeriod, .seconds(1))
        var behind = 7_000
        for _ in 1...7 {
            let yielded = behind + Int(policy.calmPeriod.components.seconds) * 1_000
            XCTAssertNil(policy.observe(fill: 0, at: at(yielded - 1)))
            XCTAssertEqual(policy.observe(fill: 0, at: at(yielded)), .idle)
            behind = yielded + 10
            XCTAssertEqual(policy.observe(fill: 1, at: at(behind)), .normal)
        }
        XCTAssertEqual(policy.calmPeriod, .seconds(64), "1 s doubled six times, then no longer")
    }

    /// What the processor tells its exporter: the queue's fill after each submission, 1 when it
    /// has no room for what a reader would hand over, and 1 when it shuts down.
    func testTheProcessorTellsItsExporterHowFullTheQueueIs() async {
        let exporter = BacklogRecordingExporter()
        let processor = BatchingSpanProcessor(
            exporter: exporter, configuration: BatchingSpanProcessor.Configuration(queueCapacity: 4, maxBatchSize: 4, scheduleDelay: .seconds(3600)))
        processor.submit(contentsOf: makeNumberedSpans(1))
        processor.submit(contentsOf: makeNumberedSpans(2))
        XCTAssertTrue(processor.hasRoom(for: 1))
        XCTAssertFalse(processor.hasRoom(for: 2))
        await processor.shutdown()

        XCTAssertEqual(exporter.backlog, [0.25, 0.75, 1, 1])
    }

    func testTheOTLPExporterGivesTheExportLoopItsSendersThread() {
        let exporter = OTLPHTTPExporter(configuration: OTLPExporterConfiguration())

        XCTAssertNotNil(exporter.exportExecutor as? ExportThread)
    }
}

/// Records the name of the thread each batch is exported on. It keeps to the export timeout
/// itself, as the OTLP exporter does: the default `export(_:within:)` runs the export in a task
/// of its own, on the shared pool.
private final class ThreadRecordingExporter: SpanExporter {
    let exportExecutor: (any TaskExecutor)?
    private let names = Mutex<[String]>([])

    init(thread: ExportThread?) {
        exportExecutor = thread
    }

    var threadNames: [String] { names.withLock { $0 } }

    func export(_ spans: [Span]) async {
        let name = currentThreadName()
        names.withLock { $0.append(name) }
    }

    func export(_ spans: [Span], within limit: Duration) async {
        await export(spans)
    }
}

/// Records what the processor says of its queue.
private final class BacklogRecordingExporter: SpanExporter {
    private let fills = Mutex<[Double]>([])

    var backlog: [Double] { fills.withLock { $0 } }

    func export(_ spans: [Span]) async {}

    func exportBacklog(_ fill: Double) {
        fills.withLock { $0.append(fill) }
    }
}
