import Dispatch
import Engine
import Exporters
import Foundation
import Planning
import ProbePacks
import Services
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
        public var reclaimed: BPFEngine.Reclaimed
        public var unassembled: Int
        /// Spans whose call or stream had not ended when tracing stopped.
        public var openAtExit: Int
        /// Spans submitted but neither exported nor counted as dropped when the flush ended: a
        /// second signal, or the flush deadline, cut it short.
        public var abandonedAtExit: Int
        /// Spans read and dropped before decoding (`discardsSpans`).
        public var discardedUnread: Int

        public var description: String {
            var parts = ["\(export.summary)"]
            parts.append("lost in kernel (ring buffer full): \(engine.spansLostRingFull)")
            parts.append("returns without a seen entry: \(engine.returnsWithoutEntry)")
            if engine.entriesNotRecorded > 0 { parts.append("calls not traced (calls map full): \(engine.entriesNotRecorded)") }
            if engine.callsUnwound > 0 { parts.append("calls that unwound without returning (panic, Goexit): \(engine.callsUnwound)") }
            if engine.callsNested > 0 {
                parts.append("calls nested deeper than \(BPFEngine.maximumNestedCalls) in calls of the same probe (not traced): \(engine.callsNested)")
            }
            if engine.contextsNotKept > 0 { parts.append("trace contexts not kept (contexts map full): \(engine.contextsNotKept)") }
            if engine.tracesSampledOut > 0 { parts.append("traces not sampled: \(engine.tracesSampledOut)") }
            if engine.parentsNotSampled > 0 { parts.append("spans not recorded (their caller did not sample the trace): \(engine.parentsNotSampled)") }
            if engine.malformedTraceparents > 0 { parts.append("malformed incoming traceparent headers (ignored): \(engine.malformedTraceparents)") }
            if engine.headerMapsTooLarge > 0 { parts.append("header maps too large to search for traceparent: \(engine.headerMapsTooLarge)") }
            if engine.injectionsWithoutRoom > 0 { parts.append("traceparent not sent (request buffer full): \(engine.injectionsWithoutRoom)") }
            if engine.contextsNotInjected > 0 { parts.append("client spans whose traceparent was not sent (HTTP/2 or failed early): \(engine.contextsNotInjected)") }
            if engine.injectionsFull > 0 { parts.append("traceparent not sent (injections map full): \(engine.injectionsFull)") }
            if engine.objectSpansReplaced > 0 { parts.append("stream spans never ended (object reused): \(engine.objectSpansReplaced)") }
            if engine.objectSpansFull > 0 { parts.append("stream spans not kept (too many open): \(engine.objectSpansFull)") }
            if reclaimed.ofExitedProcesses > 0 { parts.append("open spans of exited processes: \(reclaimed.ofExitedProcesses)") }
            if reclaimed.pastMaximumAge > 0 { parts.append("open spans given up after \(TraceSession.maximumCallAge): \(reclaimed.pastMaximumAge)") }
            if openAtExit > 0 { parts.append("spans still open at exit: \(openAtExit)") }
            if abandonedAtExit > 0 { parts.append("spans abandoned unsent at exit: \(abandonedAtExit)") }
            if unassembled > 0 { parts.append("events of unknown probes: \(unassembled)") }
            if discardedUnread > 0 { parts.append("spans discarded unread (--discard-spans): \(discardedUnread)") }
            return parts.joined(separator: "; ")
        }
    }

    /// Sizes of the BPF state maps.
    public typealias Capacities = BPFEngine.Capacities
    /// Which traces the BPF program records.
    public typealias Sampler = TraceSampler
    public typealias UprobeLinks = UprobeLinkKind

    /// How long a call or stream may stay open before its span is given up and counted: long
    /// enough for streaming RPCs and long polls, short enough that leaked state is freed.
    public static let maximumCallAge: Duration = .seconds(3600)
    /// How often the state of exited processes and expired calls is reclaimed.
    static let reclaimInterval: Duration = .seconds(5)
    /// How often dropped spans are looked for and reported while tracing.
    static let dropReportInterval: Duration = .seconds(1)
    /// How long spans may wait in the ring buffer when too few come to wake the reader (a
    /// quarter of the buffer), and how long the loop sleeps when nothing wakes it: each wakeup
    /// costs a context switch and cold caches, and one every 100 ms cost a fifth of the CPU per
    /// span at 5,000 spans/s (issue 7). Stop requests and process starts wake it at once.
    static let drainInterval: Duration = .milliseconds(500)
    /// The loop's sleep while a drain waits for room in the export queue.
    static let pausedDrainRetry: Duration = .milliseconds(100)
    /// How long the exporter may take to send what is queued when tracing stops.
    static let flushDeadline: Duration = .seconds(10)

    private let stopRequested = Atomic<Bool>(false)
    /// Signalled by a signal that comes after tracing was asked to stop: the final flush, running
    /// or still to come once the probes are detached, ends at once.
    private let flushAbandoned = DispatchSemaphore(value: 0)

    /// Multi-links where the kernel has them unless this says otherwise (tests of older kernels' path).
    private let uprobeLinks: UprobeLinkKind?
    /// Spans are dropped as they are read, before decoding: what the kernel side alone costs the
    /// traced programs, for the benchmark that tells it from the agent's work.
    private let discardsSpans: Bool

    public init(uprobeLinks: UprobeLinkKind? = nil, discardsSpans: Bool = false) {
        self.uprobeLinks = uprobeLinks
        self.discardsSpans = discardsSpans
    }

    /// Asks a running session to detach and flush; safe from any thread.
    public func stop() {
        stopRequested.store(true, ordering: .relaxed)
    }

    /// Runs until stopped (SIGINT, SIGTERM, SIGHUP, or the traced process exiting).
    /// - Parameters:
    ///   - plan: What to attach; its `binaryPath` is what the uprobes are set on.
    ///   - executablePath: The executable as spans report it (`/proc/PID/exe` resolves elsewhere).
    ///   - capacities: Sizes of the BPF state maps.
    ///   - replan: Under `.executable`, analyses the file at the path with the same packs when a
    ///     deploy replaces it, so that its processes are traced too; nil leaves them untraced.
    ///   - libraryPlans: Under `.process`, plans for shared libraries the process maps.
    ///   - log: Receives status lines (stderr in the CLI).
    public func run(
        plan: AttachPlan, executablePath: String, target: Target, exporter: some SpanExporter,
        processorConfiguration: BatchingSpanProcessor.Configuration = .init(), capacities: Capacities = .init(),
        sampler: Sampler = .alwaysOn, injectTraceContext: Bool = true, replan: ((String) throws -> AttachPlan)? = nil,
        libraryPlans: [AttachPlan] = [], log: @escaping @Sendable (String) -> Void
    ) throws -> Summary {
        try Self.checkCapabilities()
        // Functions a binary lacks are normal (other versions, unused code): one line for them all.
        let skippedProbes = ([plan] + libraryPlans).flatMap(\.skipped)
        for skipped in skippedProbes where !skipped.isFunctionAbsent { log("skipped \(skipped)") }
        let absent = skippedProbes.filter(\.isFunctionAbsent).map { "\($0.pack)/\($0.probe)" }
        if !absent.isEmpty { log("not probed, their functions are not in this binary: \(absent.joined(separator: ", "))") }
        ([plan] + libraryPlans).flatMap(\.notes).forEach { log("note: \($0)") }

        // Said once, at start: the rest of tracing works the same without it.
        var plan = plan
        if plan.injectsTraceContext {
            let blocker = injectTraceContext ? KernelCapabilities.traceContextInjectionBlocker() : "--no-inject-trace-context"
            if let blocker {
                log("outgoing trace context propagation is off: \(blocker); incoming traceparent headers are still continued")
                plan = plan.droppingTraceContextInjection()
            }
        }
        let targets = SingleTarget(
            plan: plan, executablePath: executablePath, target: target, sampler: sampler, clock: .now(), replan: replan,
            libraryPlans: libraryPlans)
        return try trace(targets, exporter: exporter, processorConfiguration: processorConfiguration, capacities: capacities, log: log)
    }

    /// Runs until stopped (SIGINT, SIGTERM, SIGHUP), tracing every process of the machine that
    /// a service of `config` claims, from its start to its exit.
    /// - Parameter packs: Every pack available; each service enables its own among them.
    public func run(
        services config: ServiceConfig, packs: [ProbePack], placement: SitePlacement = .costAware, exporter: some SpanExporter,
        processorConfiguration: BatchingSpanProcessor.Configuration = .init(), capacities: Capacities = .init(),
        sampler: Sampler = .alwaysOn, log: @escaping @Sendable (String) -> Void
    ) throws -> Summary {
        try Self.checkCapabilities()
        var injectionAllowed = true
        if config.services.contains(where: \.injectTraceContext), let blocker = KernelCapabilities.traceContextInjectionBlocker() {
            log("outgoing trace context propagation is off: \(blocker); incoming traceparent headers are still continued")
            injectionAllowed = false
        }
        let targets = try ServiceTracker(
            config: config, packs: packs, placement: placement, injectionAllowed: injectionAllowed, sampler: sampler, clock: .now())
        return try trace(targets, exporter: exporter, processorConfiguration: processorConfiguration, capacities: capacities, log: log)
    }

    private static func checkCapabilities() throws {
        let missing = KernelCapabilities.missing()
        guard missing.isEmpty else { throw EngineError.missingCapabilities(missing) }
    }

    /// The loop both kinds of run share: attach, turn ring-buffer events into spans, export,
    /// reclaim, report drops; then detach and flush.
    private func trace(
        _ targets: some TracedTargets, exporter: some SpanExporter, processorConfiguration: BatchingSpanProcessor.Configuration,
        capacities: Capacities, log: @escaping @Sendable (String) -> Void
    ) throws -> Summary {
        let engine = try BPFEngine(capacities: capacities, injectsTraceContext: targets.injectsTraceContext, uprobeLinks: uprobeLinks)
        let processor = BatchingSpanProcessor(exporter: exporter, configuration: processorConfiguration)
        var unassembled = 0
        // Spans are handed to the processor an export batch at a time, one lock per batch rather
        // than per span, and each array becomes the batch as it is, its spans not copied; what a
        // drain leaves short of a batch is handed over after it, or with the next drain while
        // spans keep coming (issue 7). A group the processor has no room for waits, and so does
        // the drain: the ring buffer holds the spans meanwhile, where the processor would drop
        // them.
        let groupSize = processorConfiguration.maxBatchSize
        var assembled: [Span] = []
        assembled.reserveCapacity(groupSize)
        func submitAssembled() {
            var group: [Span] = []
            group.reserveCapacity(groupSize)
            swap(&group, &assembled)
            processor.submit(contentsOf: consume group)
        }
        /// Whether the assembled spans were handed over; when stopping, they are whatever the room.
        func submitAssembledIfRoom() -> Bool {
            guard processor.hasRoom(for: min(assembled.count, groupSize)) || stopRequested.load(ordering: .relaxed) else { return false }
            submitAssembled()
            return true
        }
        if discardsSpans {
            log("--discard-spans: every span is dropped as it is read, and counted; none is exported")
            try engine.discardSpans()
        } else {
            try engine.onSpan { event in
                if let span = targets.assemble(event) {
                    assembled.append(span)
                } else {
                    unassembled += 1
                }
                return assembled.count < groupSize || submitAssembledIfRoom()
            }
        }
        let stallGuard = ExportStallGuard(watching: try engine.spanBacklog(), exporter: exporter)
        defer { stallGuard.stop() }
        let signals = watchTerminationSignals(waking: engine.waker)
        try targets.start(engine: engine, shouldStop: { stopRequested.load(ordering: .relaxed) }, log: log)

        var lastReported = 0
        var reclaimed = BPFEngine.Reclaimed()
        var nextReclaim = ContinuousClock.now + Self.reclaimInterval
        var nextDropCheck = ContinuousClock.now
        var nextDrain = ContinuousClock.now + Self.drainInterval
        var drainPaused = false
        while !stopRequested.load(ordering: .relaxed) {
            let sleep = drainPaused ? Self.pausedDrainRetry : max(nextDrain - ContinuousClock.now, .zero)
            let woken = engine.wait(timeoutMilliseconds: Self.milliseconds(sleep))
            if woken.contains(.spans) || drainPaused || ContinuousClock.now >= nextDrain,
               assembled.count < groupSize || submitAssembledIfRoom() {
                drainPaused = engine.drainSpans() == .paused
                if !drainPaused {
                    nextDrain = ContinuousClock.now + Self.drainInterval
                    // What is short of a group waits for the next drain when the BPF program asked
                    // for this one (more spans are coming), so that every group becomes an export
                    // batch as it is: the processor tops a short batch up with copies of the next
                    // group's spans, each string retained and released again (issue 7: 3 % of the
                    // agent's perf samples under load). After a drain on the timer it is handed
                    // over now.
                    if !assembled.isEmpty && !woken.contains(.spans) { _ = submitAssembledIfRoom() }
                }
            }
            guard targets.refresh(engine: engine, log: log) else { break }
            if ContinuousClock.now >= nextReclaim {
                let removed = engine.reclaim(olderThan: Self.nanoseconds(Self.maximumCallAge), isProcessAlive: Self.isAlive)
                reclaimed.ofExitedProcesses += removed.ofExitedProcesses
                reclaimed.pastMaximumAge += removed.pastMaximumAge
                nextReclaim = ContinuousClock.now + Self.reclaimInterval
            }
            // Reading the kernel's counters is a system call per CPU: once a second, not every poll.
            if ContinuousClock.now >= nextDropCheck {
                let statistics = processor.statistics
                let dropped = statistics.droppedQueueFull + statistics.droppedExportFailed + Int(engine.counters().spansLost) + reclaimed.total
                if dropped > lastReported {
                    log("dropped \(dropped - lastReported) spans (\(statistics.summary))")
                    lastReported = dropped
                }
                nextDropCheck = ContinuousClock.now + Self.dropReportInterval
            }
        }
        stopRequested.store(true, ordering: .relaxed)   // from here on, any signal ends the flush
        engine.detach()
        submitAssembled()  // what detaching drained from the ring buffer
        let openAtExit = engine.openCalls()
        let deadline = Self.flushDeadline
        log("probes detached; exporting what is queued for up to \(deadline) (a second signal ends it now)")
        switch Self.waitFor(orAbandonedBy: flushAbandoned, { await processor.shutdown(timeout: deadline) }) {
        case .finished(true): break
        case .finished(false): log("the exporter did not finish within \(deadline); what it had not sent is counted as abandoned")
        case .abandoned: log("a second signal ended the flush; what was not sent is counted as abandoned")
        }
        signals.forEach { $0.cancel() }
        let statistics = processor.statistics
        let abandoned = statistics.submitted - statistics.exported - statistics.droppedQueueFull - statistics.droppedExportFailed
        return Summary(
            export: statistics, engine: engine.counters(), reclaimed: reclaimed, unassembled: unassembled, openAtExit: openAtExit,
            abandonedAtExit: max(abandoned, 0), discardedUnread: engine.spansDiscarded)
    }

    /// SIGINT, SIGTERM and SIGHUP (a closed terminal) stop tracing and flush; one more signal
    /// during the flush ends it at once. SIGHUP ignored when sonde started (`nohup`) stays
    /// ignored; SIGINT is always handled, as a shell's background jobs start with it ignored and
    /// `kill -INT` is how scripts stop them.
    private func watchTerminationSignals(waking waker: Waker) -> [DispatchSourceSignal] {
        [SIGINT, SIGTERM, SIGHUP].filter { $0 != SIGHUP || !Self.isIgnored($0) }.map { signalNumber in
            signal(signalNumber, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: signalNumber, queue: .global())
            source.setEventHandler { [weak self] in
                guard let self else { return }
                if stopRequested.exchange(true, ordering: .relaxed) { flushAbandoned.signal() }
                waker.wake()
            }
            source.resume()
            return source
        }
    }

    private static func isIgnored(_ signalNumber: Int32) -> Bool {
        var current = sigaction()
        guard sigaction(signalNumber, nil, &current) == 0, let handler = current.__sigaction_handler.sa_handler else { return false }
        return unsafeBitCast(handler, to: Int.self) == unsafeBitCast(SIG_IGN, to: Int.self)
    }

    private static func isAlive(_ processID: UInt32) -> Bool {
        kill(pid_t(bitPattern: processID), 0) == 0 || errno != ESRCH
    }

    private static func nanoseconds(_ duration: Duration) -> UInt64 {
        UInt64(duration.components.seconds) * 1_000_000_000 + UInt64(duration.components.attoseconds / 1_000_000_000)
    }

    /// Rounded up, so that a wait ends after its deadline rather than a turn before it.
    private static func milliseconds(_ duration: Duration) -> Int32 {
        Int32(clamping: (nanoseconds(duration) + 999_999) / 1_000_000)
    }

    private enum FlushOutcome {
        case finished(Bool)
        case abandoned
    }

    /// Bridges one async call into this synchronous loop, or gives up on it when `abandon` is signalled.
    private static func waitFor(orAbandonedBy abandon: DispatchSemaphore, _ operation: @escaping @Sendable () async -> Bool) -> FlushOutcome {
        let result = Atomic<Int>(0)   // 0: running, 1: false, 2: true
        Task {
            result.store(await operation() ? 2 : 1, ordering: .relaxed)
            abandon.signal()
        }
        abandon.wait()
        switch result.load(ordering: .relaxed) {
        case 0: return .abandoned
        case let value: return .finished(value == 2)
        }
    }
}
