import Foundation
import Spans
import Synchronization
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

private func currentThreadName() -> String {
    threadName(in: "/proc/thread-self") ?? ""
}

/// Threads of this process with `name`, as the kernel lists them.
private func threadsNamed(_ name: String) -> Int {
    let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task")) ?? []
    return tasks.count { threadName(in: "/proc/self/task/\($0)") == name }
}

/// The kernel's name of the thread whose /proc directory is `directory`.
private func threadName(in directory: String) -> String? {
    (try? String(contentsOfFile: "\(directory)/comm", encoding: .utf8))?.trimmingCharacters(in: .newlines)
}
