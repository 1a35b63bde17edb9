import Dispatch
import Engine
import Exporters
import Foundation
import Planning
import Spans
import Synchronization
import Tracing

/// One `sonde run`: attaches a plan, turns ring-buffer events into spans, exports them,
/// and detaches cleanly on SIGINT/SIGTERM or when the traced process exits.
public final class TraceSession: Sendable {
    public enum Target: Sendable, Equatable {
        case process(Int32)
        case executable
    }

    /// What the run did, printed when it ends; nothing is lost without being counted here.
    public struct Summary: Sendable, Equatable, CustomStringConvertible {
        public var export: ExportStatistics
        public var engine: BPFEngine.Counters
        public var unassembled: Int
        /// Spans whose call or stream had not ended when tracing stopped.
        public var openAtExit: Int

        public var description: String {
            var parts = ["\(export.summary)"]
            parts.append("lost in kernel (ring buffer full): \(engine.spansLostRingFull)")
            parts.append("returns without a seen entry: \(engine.returnsWithoutEntry)")
            if engine.entriesNotRecorded > 0 { parts.append("entries not recorded: \(engine.entriesNotRecorded)") }
            if engine.objectSpansReplaced > 0 { parts.append("stream spans never ended (object reused): \(engine.objectSpansReplaced)") }
            if engine.objectSpansFull > 0 { parts.append("stream spans not kept (too many open): \(engine.objectSpansFull)") }
            if openAtExit > 0 { parts.append("spans still open at exit: \(openAtExit)") }
            if unassembled > 0 { parts.append("events of unknown probes: \(unassembled)") }
            return parts.joined(separator: "; ")
        }
    }

    private let stopRequested = Atomic<Bool>(false)

    public init() {}

    /// Asks a running session to detach and flush; safe from any thread.
    public func stop() {
        stopRequested.store(true, ordering: .relaxed)
    }

    /// Runs until stopped. `log` receives status lines (stderr in the CLI).
    public func run(
        plan: AttachPlan, target: Target, exporter: some SpanExporter, processorConfiguration: BatchingSpanProcessor.Configuration = .init(),
        log: @escaping @Sendable (String) -> Void
    ) throws -> Summary {
        let missing = KernelCapabilities.missing()
        guard missing.isEmpty else { throw EngineError.missingCapabilities(missing) }
        for skipped in plan.skipped { log("skipped \(skipped)") }

        let engine = try BPFEngine()
        let processor = BatchingSpanProcessor(exporter: exporter, configuration: processorConfiguration)
        let assembler = SpanAssembler(plan: plan, clock: .now(), resource: Self.resource(executable: plan.binaryPath))
        var unassembled = 0
        try engine.onSpan { event in
            if let span = assembler.assemble(event) {
                processor.submit(span)
            } else {
                unassembled += 1
            }
        }
        let engineTarget: BPFEngine.Target
        switch target {
        case .process(let pid): engineTarget = .process(pid)
        case .executable: engineTarget = .allProcesses
        }
        let report = try engine.attach(plan: plan, target: engineTarget)
        report.failures.forEach { log("could not attach \($0)") }
        log("attached \(report.attachedSites) probe sites for \(plan.probes.count) probes in \(plan.binaryPath); Ctrl-C to stop")

        let signals = watchTerminationSignals()
        var lastReported = 0
        while !stopRequested.load(ordering: .relaxed) {
            engine.poll(timeoutMilliseconds: 100)
            if case .process(let pid) = target, kill(pid, 0) != 0, errno == ESRCH {
                log("process \(pid) exited")
                break
            }
            let counters = engine.counters()
            let statistics = processor.statistics
            let dropped = statistics.droppedQueueFull + statistics.droppedExportFailed
                + Int(counters.spansLostRingFull + counters.entriesNotRecorded + counters.objectSpansReplaced + counters.objectSpansFull)
            if dropped > lastReported {
                log("dropped \(dropped - lastReported) spans (\(statistics.summary))")
                lastReported = dropped
            }
        }
        signals.forEach { $0.cancel() }
        engine.detach()
        let openAtExit = engine.openCalls()
        let flushed = Self.waitFor { await processor.shutdown(timeout: .seconds(10)) }
        if !flushed { log("the exporter did not finish within 10 s; unsent spans are counted as dropped") }
        return Summary(export: processor.statistics, engine: engine.counters(), unassembled: unassembled, openAtExit: openAtExit)
    }

    private func watchTerminationSignals() -> [DispatchSourceSignal] {
        [SIGINT, SIGTERM].map { signalNumber in
            signal(signalNumber, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: signalNumber, queue: .global())
            source.setEventHandler { [weak self] in self?.stop() }
            source.resume()
            return source
        }
    }

    /// The resource of every span from one traced process.
    static func resource(executable: String) -> @Sendable (Int32) -> Resource {
        let name = URL(fileURLWithPath: executable).lastPathComponent
        return { pid in
            Resource(attributes: [
                "service.name": name,
                "process.pid": String(pid),
                "process.executable.path": executable,
                "telemetry.distro.name": "sonde",
            ])
        }
    }

    /// Bridges one async call into this synchronous loop.
    private static func waitFor(_ operation: @escaping @Sendable () async -> Bool) -> Bool {
        let result = Atomic<Bool>(false)
        let done = DispatchSemaphore(value: 0)
        Task {
            result.store(await operation(), ordering: .relaxed)
            done.signal()
        }
        done.wait()
        return result.load(ordering: .relaxed)
    }
}
