import Foundation
import Spans
import XCTest

@testable import Exporters

final class BatchingSpanProcessorTests: XCTestCase {
    /// No timer-driven exports during a test unless it asks for them.
    private func configuration(
        queueCapacity: Int = 2048, maxBatchSize: Int = 512, scheduleDelay: Duration = .seconds(3600), maxAttempts: Int = 3
    ) -> BatchingSpanProcessor.Configuration {
        BatchingSpanProcessor.Configuration(
            queueCapacity: queueCapacity, maxBatchSize: maxBatchSize, scheduleDelay: scheduleDelay,
            retry: RetryPolicy(maxAttempts: maxAttempts, initialBackoff: .milliseconds(1)))
    }

    func testFlushExportsEverythingInOrderInBatchesOfMaxSize() async {
        let exporter = RecordingExporter()
        let processor = BatchingSpanProcessor(exporter: exporter, configuration: configuration(maxBatchSize: 2))
        let spans = makeNumberedSpans(5)

        spans.forEach(processor.submit)
        let flushed = await processor.flush()

        XCTAssertTrue(flushed)
        let batches = await exporter.batches
        XCTAssertEqual(batches.map { $0.map(\.name) }, [["span 1", "span 2"], ["span 3", "span 4"], ["span 5"]])
        XCTAssertEqual(processor.statistics, ExportStatistics(submitted: 5, exported: 5))
        await processor.shutdown()
    }

    func testFullBatchIsExportedWithoutWaitingForTheScheduleDelay() async {
        let exporter = RecordingExporter()
        let processor = BatchingSpanProcessor(exporter: exporter, configuration: configuration(maxBatchSize: 2))

        makeNumberedSpans(3).forEach(processor.submit)

        await waitUntil { await exporter.batches.count == 1 }
        let batches = await exporter.batches
        XCTAssertEqual(batches.map { $0.map(\.name) }, [["span 1", "span 2"]])
        await processor.shutdown()
    }

    func testScheduleDelayExportsAPartialBatch() async {
        let exporter = RecordingExporter()
        let processor = BatchingSpanProcessor(exporter: exporter, configuration: configuration(scheduleDelay: .milliseconds(20)))

        processor.submit(makeServerSpan())

        await waitUntil { await exporter.exportedSpans.count == 1 }
        await processor.shutdown()
    }

    func testQueueFullDropsAreCountedExactly() async {
        let exporter = GatedExporter()
        let processor = BatchingSpanProcessor(exporter: exporter, configuration: configuration(queueCapacity: 3, maxBatchSize: 1))
        let spans = makeNumberedSpans(6)

        processor.submit(spans[0])
        await waitUntil { await exporter.batches.count == 1 }  // the exporter now holds span 1 and hangs
        spans[1...].forEach(processor.submit)

        XCTAssertEqual(processor.statistics, ExportStatistics(submitted: 6, droppedQueueFull: 2))
        await exporter.open()
        await processor.flush()
        let exportedNames = await exporter.batches.flatMap { $0.map(\.name) }
        XCTAssertEqual(exportedNames, ["span 1", "span 2", "span 3", "span 4"])
        XCTAssertEqual(processor.statistics, ExportStatistics(submitted: 6, exported: 4, droppedQueueFull: 2))
        await processor.shutdown()
    }

    func testSpansSubmittedTogetherAreCutIntoBatchesAndCountedLikeSpansSubmittedOneByOne() async {
        let exporter = GatedExporter()
        let processor = BatchingSpanProcessor(exporter: exporter, configuration: configuration(queueCapacity: 5, maxBatchSize: 2))
        let spans = makeNumberedSpans(9)

        processor.submit(contentsOf: Array(spans[0..<2]))
        await waitUntil { await exporter.batches.count == 1 }  // the exporter now holds spans 1 and 2 and hangs
        processor.submit(contentsOf: Array(spans[2..<5]))
        processor.submit(contentsOf: Array(spans[5...]))  // two fit the queue, two are dropped

        XCTAssertEqual(processor.statistics, ExportStatistics(submitted: 9, droppedQueueFull: 2))
        await exporter.open()
        await processor.flush()
        let batches = await exporter.batches
        XCTAssertEqual(batches.map { $0.map(\.name) }, [["span 1", "span 2"], ["span 3", "span 4"], ["span 5", "span 6"], ["span 7"]])
        XCTAssertEqual(processor.statistics, ExportStatistics(submitted: 9, exported: 7, droppedQueueFull: 2))
        await processor.shutdown()
    }

    func testAGroupThatFillsABatchExportsItWithoutWaitingForTheScheduleDelay() async {
        let exporter = RecordingExporter()
        let processor = BatchingSpanProcessor(exporter: exporter, configuration: configuration(maxBatchSize: 2))

        processor.submit(contentsOf: [makeNumberedSpans(1)[0]])
        processor.submit(contentsOf: Array(makeNumberedSpans(3)[1...]))

        await waitUntil { await exporter.batches.count == 1 }
        let batches = await exporter.batches
        XCTAssertEqual(batches.map { $0.map(\.name) }, [["span 1", "span 2"]])
        await processor.shutdown()
        XCTAssertEqual(processor.statistics, ExportStatistics(submitted: 3, exported: 3))
    }

    func testRetryableFailuresAreRetriedUntilSuccess() async {
        let exporter = RecordingExporter(failingWith: [
            SpanExportError.retryable(reason: "HTTP 503"), SpanExportError.retryable(reason: "HTTP 503"),
        ])
        let processor = BatchingSpanProcessor(exporter: exporter, configuration: configuration(maxAttempts: 3))

        processor.submit(makeServerSpan())
        await processor.flush()

        let attempts = await exporter.attempts
        XCTAssertEqual(attempts, 3)
        XCTAssertEqual(processor.statistics, ExportStatistics(submitted: 1, exported: 1))
        XCTAssertNil(processor.statistics.lastFailure)
        await processor.shutdown()
    }

    /// A backend down past a batch's attempts: the batch is held, tried again after the longest
    /// backoff, and delivered once the backend is back; nothing is dropped.
    func testBatchHeldThroughAnOutageIsDeliveredWhenTheBackendRecovers() async {
        let exporter = RecordingExporter(failingWith: Array(repeating: SpanExportError.retryable(reason: "HTTP 503"), count: 5))
        var configuration = configuration(maxAttempts: 3)
        configuration.retry.maxBackoff = .milliseconds(20)
        let processor = BatchingSpanProcessor(exporter: exporter, configuration: configuration)

        makeNumberedSpans(2).forEach(processor.submit)
        let flushed = await processor.flush(timeout: .seconds(10))

        XCTAssertTrue(flushed)
        let attempts = await exporter.attempts
        XCTAssertEqual(attempts, 6, "3 attempts, held, then 2 failing and the sixth delivered")
        XCTAssertEqual(
            processor.statistics,
            ExportStatistics(submitted: 2, exported: 2, lastFailure: "HTTP 503 (after 3 attempts; 2 spans held for the next try)"))
        await processor.shutdown()
    }

    /// The queue is what an outage holds: spans beyond it are dropped and counted, those it holds
    /// are delivered after the outage, in order.
    func testOutageHoldsWhatTheQueueHoldsAndCountsTheRest() async {
        let exporter = RecordingExporter(failingWith: Array(repeating: SpanExportError.retryable(reason: "unreachable"), count: 7))
        var configuration = configuration(queueCapacity: 4, maxBatchSize: 2, maxAttempts: 2)
        configuration.retry.maxBackoff = .milliseconds(20)
        let processor = BatchingSpanProcessor(exporter: exporter, configuration: configuration)

        processor.submit(contentsOf: makeNumberedSpans(10))
        let flushed = await processor.flush(timeout: .seconds(10))

        XCTAssertTrue(flushed)
        let batches = await exporter.batches
        XCTAssertEqual(batches.map { $0.map(\.name) }, [["span 1", "span 2"], ["span 3", "span 4"]])
        XCTAssertEqual(processor.statistics, ExportStatistics(
            submitted: 10, exported: 4, droppedQueueFull: 6, lastFailure: "unreachable (after 2 attempts; 4 spans held for the next try)"))
        await processor.shutdown()
    }

    /// Shutting down while the backend is still down ends the hold: one more round of attempts,
    /// then the held spans are dropped and counted, with the backend's failure as the reason.
    func testShutdownDuringAnOutageRetriesOnceMoreThenCountsTheHeldSpans() async {
        let exporter = RecordingExporter(failingWith: Array(repeating: SpanExportError.retryable(reason: "unreachable"), count: 1000))
        var configuration = configuration(maxAttempts: 2)
        configuration.retry.maxBackoff = .seconds(3600)
        let processor = BatchingSpanProcessor(exporter: exporter, configuration: configuration)

        makeNumberedSpans(3).forEach(processor.submit)
        let flushed = await processor.flush(timeout: .milliseconds(300))
        let attemptsBeforeShutdown = await exporter.attempts
        let completed = await processor.shutdown(timeout: .seconds(10))

        XCTAssertFalse(flushed, "the batch is held, and its hold outlasts the flush")
        XCTAssertEqual(attemptsBeforeShutdown, 2)
        XCTAssertTrue(completed)
        let attempts = await exporter.attempts
        XCTAssertEqual(attempts, 4)
        XCTAssertEqual(processor.statistics, ExportStatistics(submitted: 3, droppedExportFailed: 3, lastFailure: "unreachable (after 2 attempts)"))
    }

    func testNonRetryableFailuresAreDroppedAtOnce() async {
        let exporter = RecordingExporter(failingWith: [SpanExportError.rejected(reason: "HTTP 400"), CancellationError()])
        let processor = BatchingSpanProcessor(exporter: exporter, configuration: configuration(maxBatchSize: 2))

        makeNumberedSpans(5).forEach(processor.submit)
        await processor.flush()

        let attempts = await exporter.attempts
        let exportedNames = await exporter.exportedSpans.map(\.name)
        XCTAssertEqual(attempts, 3)
        XCTAssertEqual(exportedNames, ["span 5"])
        XCTAssertEqual(
            processor.statistics, ExportStatistics(submitted: 5, exported: 1, droppedExportFailed: 4, lastFailure: "CancellationError()"))
        await processor.shutdown()
    }

    func testPartiallyRejectedSpansCountAsDropped() async {
        let exporter = RecordingExporter(failingWith: [SpanExportError.partiallyRejected(count: 2, reason: "bad attributes")])
        let processor = BatchingSpanProcessor(exporter: exporter, configuration: configuration())

        makeNumberedSpans(5).forEach(processor.submit)
        await processor.flush()

        XCTAssertEqual(
            processor.statistics,
            ExportStatistics(submitted: 5, exported: 3, droppedExportFailed: 2, lastFailure: "2 spans rejected: bad attributes"))
        await processor.shutdown()
    }

    func testFlushGivesUpAtItsDeadline() async {
        let exporter = GatedExporter()
        let processor = BatchingSpanProcessor(exporter: exporter, configuration: configuration())

        processor.submit(makeServerSpan())
        let flushed = await processor.flush(timeout: .milliseconds(50))

        XCTAssertFalse(flushed)
        await exporter.open()
        let flushedAfterOpening = await processor.flush()
        XCTAssertTrue(flushedAfterOpening)
        XCTAssertEqual(processor.statistics, ExportStatistics(submitted: 1, exported: 1))
        await processor.shutdown()
    }

    func testShutdownExportsQueuedSpansThenIgnoresNewOnes() async {
        let exporter = RecordingExporter()
        let processor = BatchingSpanProcessor(exporter: exporter, configuration: configuration())

        makeNumberedSpans(3).forEach(processor.submit)
        let completed = await processor.shutdown()
        processor.submit(makeServerSpan())

        XCTAssertTrue(completed)
        let exportedCount = await exporter.exportedSpans.count
        XCTAssertEqual(exportedCount, 3)
        XCTAssertEqual(processor.statistics, ExportStatistics(submitted: 3, exported: 3))
        let flushedAfterShutdown = await processor.flush()
        XCTAssertTrue(flushedAfterShutdown)
    }

    func testShutdownDeadlineDropsWhatIsStillQueued() async {
        let exporter = GatedExporter()
        let processor = BatchingSpanProcessor(exporter: exporter, configuration: configuration(maxBatchSize: 1))

        makeNumberedSpans(3).forEach(processor.submit)
        await waitUntil { await exporter.batches.count == 1 }
        let completed = await processor.shutdown(timeout: .milliseconds(50))

        XCTAssertFalse(completed)
        XCTAssertEqual(processor.statistics, ExportStatistics(
            submitted: 3, droppedExportFailed: 2,
            lastFailure: "2 spans dropped: export did not finish before the shutdown deadline"))
        await exporter.open()
        await waitUntil { processor.statistics.exported == 1 }
    }

    func testSummaryNamesTheLastFailure() async {
        let failure = SpanExportError.retryable(reason: "HTTP 503 from http://collector:4318/v1/traces")
        let exporter = RecordingExporter(failingWith: [failure, failure, SpanExportError.rejected(reason: "HTTP 400 from http://collector:4318/v1/traces")])
        let processor = BatchingSpanProcessor(exporter: exporter, configuration: configuration(maxAttempts: 3))

        processor.submit(makeServerSpan())
        await processor.flush()

        XCTAssertEqual(
            processor.statistics.summary,
            "1 spans submitted, 0 exported, 1 dropped (queue full: 0, export failed: 1); "
                + "last failure: HTTP 400 from http://collector:4318/v1/traces (after 3 attempts)")
        await processor.shutdown()
    }

    func testExportTimeoutGivesUpOnAHangingExport() async {
        let exporter = GatedExporter()
        var configuration = configuration()
        configuration.exportTimeout = .milliseconds(50)
        let processor = BatchingSpanProcessor(exporter: exporter, configuration: configuration)

        processor.submit(makeServerSpan())
        let flushed = await processor.flush(timeout: .seconds(5))

        XCTAssertTrue(flushed)
        XCTAssertEqual(processor.statistics, ExportStatistics(
            submitted: 1, droppedExportFailed: 1, lastFailure: "export did not finish within 50 ms (OTEL_BSP_EXPORT_TIMEOUT)"))
        await exporter.open()
        await processor.shutdown()
    }

    func testRetryAfterFromTheBackendSetsTheWait() async {
        let exporter = RecordingExporter(failingWith: [SpanExportError.retryable(reason: "HTTP 429", retryAfter: .milliseconds(30))])
        var configuration = configuration()
        configuration.retry.initialBackoff = .seconds(3600)
        let processor = BatchingSpanProcessor(exporter: exporter, configuration: configuration)

        processor.submit(makeServerSpan())
        let flushed = await processor.flush(timeout: .seconds(5))

        XCTAssertTrue(flushed, "the backoff of an hour was used instead of Retry-After")
        XCTAssertEqual(processor.statistics, ExportStatistics(submitted: 1, exported: 1))
        await processor.shutdown()
    }

    func testSummary() {
        let statistics = ExportStatistics(submitted: 12, exported: 9, droppedQueueFull: 2, droppedExportFailed: 1)

        XCTAssertEqual(statistics.summary, "12 spans submitted, 9 exported, 3 dropped (queue full: 2, export failed: 1)")
    }
}
