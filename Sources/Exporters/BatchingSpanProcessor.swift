import Spans
import Synchronization

/// What happened to the spans handed to a `BatchingSpanProcessor`. Spans still queued are
/// `submitted` minus the other three.
public struct ExportStatistics: Sendable, Equatable {
    public var submitted = 0
    public var exported = 0
    /// Spans refused because the queue was full: the exporter could not keep up.
    public var droppedQueueFull = 0
    /// Spans the exporter failed to deliver, after retries, or that the backend rejected.
    public var droppedExportFailed = 0

    public init(submitted: Int = 0, exported: Int = 0, droppedQueueFull: Int = 0, droppedExportFailed: Int = 0) {
        self.submitted = submitted
        self.exported = exported
        self.droppedQueueFull = droppedQueueFull
        self.droppedExportFailed = droppedExportFailed
    }

    /// One line for the end of a run, e.g. `12 spans submitted, 10 exported, 2 dropped (queue full: 2, export failed: 0)`.
    public var summary: String {
        "\(submitted) spans submitted, \(exported) exported, \(droppedQueueFull + droppedExportFailed) dropped "
            + "(queue full: \(droppedQueueFull), export failed: \(droppedExportFailed))"
    }
}

/// How often and how patiently a batch is retried after a retryable failure.
public struct RetryPolicy: Sendable, Equatable {
    /// Attempts per batch, the first included.
    public var maxAttempts: Int
    /// The wait after the first failed attempt; it doubles after each further one.
    public var initialBackoff: Duration

    public init(maxAttempts: Int = 3, initialBackoff: Duration = .milliseconds(500)) {
        self.maxAttempts = maxAttempts
        self.initialBackoff = initialBackoff
    }

    func backoff(afterAttempt attempt: Int) -> Duration {
        initialBackoff * (1 << (attempt - 1))
    }
}

/// Decouples span production from export: the runtime hands spans over with `submit(_:)`, which
/// never blocks, and a background task sends them to a `SpanExporter` in batches.
///
/// Under overload it sheds spans (counted in `statistics`) rather than slowing the ring-buffer
/// reader or growing memory without bound. Call `shutdown(timeout:)` before discarding it, or
/// spans still queued are lost.
public final class BatchingSpanProcessor: Sendable {
    public struct Configuration: Sendable, Equatable {
        /// Spans held while waiting for export; more are dropped.
        public var queueCapacity: Int
        /// Spans per export call; a full batch is exported without waiting for `scheduleDelay`.
        public var maxBatchSize: Int
        /// The longest a span waits in the queue when traffic is light.
        public var scheduleDelay: Duration
        public var retry: RetryPolicy

        public init(
            queueCapacity: Int = 2048, maxBatchSize: Int = 512, scheduleDelay: Duration = .seconds(1),
            retry: RetryPolicy = RetryPolicy()
        ) {
            self.queueCapacity = queueCapacity
            self.maxBatchSize = maxBatchSize
            self.scheduleDelay = scheduleDelay
            self.retry = retry
        }
    }

    private let pipeline: ExportPipeline
    private let exportTask: Task<Void, Never>
    private let timerTask: Task<Void, Never>

    public init(exporter: some SpanExporter, configuration: Configuration = Configuration()) {
        precondition(configuration.queueCapacity > 0 && configuration.maxBatchSize > 0, "queue and batch sizes must be positive")
        precondition(configuration.scheduleDelay > .zero && configuration.retry.maxAttempts > 0, "schedule delay and attempts must be positive")
        let (wakeups, wakeupContinuation) = AsyncStream.makeStream(of: ExportPipeline.Wakeup.self)
        let pipeline = ExportPipeline(exporter: exporter, configuration: configuration, wakeups: wakeupContinuation)
        self.pipeline = pipeline
        exportTask = Task { await pipeline.run(wakeups) }
        timerTask = Task {
            while !Task.isCancelled {
                try? await Task.sleep(for: configuration.scheduleDelay)
                pipeline.wake(.scheduleDelayPassed)
            }
        }
    }

    deinit {
        timerTask.cancel()
        exportTask.cancel()
        pipeline.wakeups.finish()
    }

    /// Queues a finished span for export, or drops and counts it when the queue is full.
    /// Never blocks and never waits for the network. Ignored after `shutdown(timeout:)`.
    public func submit(_ span: Span) {
        pipeline.submit(span)
    }

    public var statistics: ExportStatistics {
        pipeline.state.withLock { $0.statistics }
    }

    /// Why the most recent failed export failed, to tell the user what to fix; nil if none failed.
    public var lastExportFailure: String? {
        pipeline.state.withLock { $0.lastExportFailure }
    }

    /// Exports every span queued now. Returns false if that did not finish within `timeout`;
    /// the export carries on in the background.
    @discardableResult
    public func flush(timeout: Duration = .seconds(30)) async -> Bool {
        await pipeline.flush(timeout: timeout)
    }

    /// Stops accepting spans, exports those queued within `timeout`, and stops the background
    /// tasks. Spans still queued at the deadline are dropped and counted as failed exports.
    /// Returns whether everything queued was handled in time.
    @discardableResult
    public func shutdown(timeout: Duration = .seconds(30)) async -> Bool {
        guard pipeline.stopAcceptingSpans() else { return pipeline.state.withLock { $0.queue.isEmpty } }
        timerTask.cancel()
        let flushed = await pipeline.flush(timeout: timeout)
        pipeline.wakeups.finish()
        if flushed {
            await exportTask.value
        } else {
            exportTask.cancel()
            pipeline.dropQueuedSpans(reason: "export did not finish before the shutdown deadline")
        }
        return flushed
    }
}

/// The state shared by `submit` (any thread), the export task and flush callers. It is separate
/// from `BatchingSpanProcessor` so the background tasks do not keep the processor alive.
private final class ExportPipeline: Sendable {
    enum Wakeup: Sendable, Hashable {
        /// Export the full batches queued; a partial one waits for the schedule delay.
        case batchFilled
        /// Export everything queued.
        case scheduleDelayPassed
        /// Export everything queued, then report to the flush waiter with this id.
        case flush(id: Int)
    }

    struct FlushWaiter {
        var continuation: CheckedContinuation<Bool, Never>
        var deadline: Task<Void, Never>?
    }

    struct State {
        var queue: [Span] = []
        var statistics = ExportStatistics()
        var lastExportFailure: String?
        var acceptsSpans = true
        /// Wakeups on their way to the export loop; sending one again would only repeat it.
        var pendingWakeups: Set<Wakeup> = []
        var flushWaiters: [Int: FlushWaiter] = [:]
        var nextFlushID = 0
    }

    let state = Mutex(State())
    let exporter: any SpanExporter
    let configuration: BatchingSpanProcessor.Configuration
    let wakeups: AsyncStream<Wakeup>.Continuation

    init(exporter: any SpanExporter, configuration: BatchingSpanProcessor.Configuration, wakeups: AsyncStream<Wakeup>.Continuation) {
        self.exporter = exporter
        self.configuration = configuration
        self.wakeups = wakeups
    }

    func submit(_ span: Span) {
        let batchFilled = state.withLock { state in
            guard state.acceptsSpans else { return false }
            state.statistics.submitted += 1
            guard state.queue.count < configuration.queueCapacity else {
                state.statistics.droppedQueueFull += 1
                return false
            }
            state.queue.append(span)
            return state.queue.count >= configuration.maxBatchSize
        }
        if batchFilled { wake(.batchFilled) }
    }

    /// Wakes the export loop if spans are waiting and the same wakeup is not already on its way.
    func wake(_ wakeup: Wakeup) {
        let shouldWake = state.withLock { state in
            !state.queue.isEmpty && state.pendingWakeups.insert(wakeup).inserted
        }
        if shouldWake { wakeups.yield(wakeup) }
    }

    /// The export loop: one wakeup at a time, so batches leave in submission order.
    func run(_ wakeups: AsyncStream<Wakeup>) async {
        for await wakeup in wakeups {
            state.withLock { _ = $0.pendingWakeups.remove(wakeup) }
            switch wakeup {
            case .batchFilled:
                await exportQueuedSpans(fullBatchesOnly: true)
            case .scheduleDelayPassed:
                await exportQueuedSpans(fullBatchesOnly: false)
            case .flush(let id):
                await exportQueuedSpans(fullBatchesOnly: false)
                finishFlush(id: id, completed: true)
            }
        }
    }

    /// Exports the spans queued when called, not those arriving meanwhile, so a flush finishes
    /// even under a steady stream of spans.
    private func exportQueuedSpans(fullBatchesOnly: Bool) async {
        var remaining = state.withLock { $0.queue.count }
        while remaining > 0, !Task.isCancelled {
            let batch: [Span]? = state.withLock { state in
                let batchSize = min(remaining, configuration.maxBatchSize, state.queue.count)
                guard batchSize > 0, !fullBatchesOnly || batchSize == configuration.maxBatchSize else { return nil }
                defer { state.queue.removeFirst(batchSize) }
                return Array(state.queue.prefix(batchSize))
            }
            guard let batch else { return }
            remaining -= batch.count
            await exportWithRetries(batch)
        }
    }

    private func exportWithRetries(_ batch: [Span]) async {
        var attempt = 1
        while true {
            do {
                try await exporter.export(batch)
                state.withLock { $0.statistics.exported += batch.count }
                return
            } catch let error as SpanExportError where error.isRetryable && attempt < configuration.retry.maxAttempts && !Task.isCancelled {
                try? await Task.sleep(for: configuration.retry.backoff(afterAttempt: attempt))
                attempt += 1
            } catch {
                let dropped = (error as? SpanExportError)?.droppedSpanCount(ofBatchSize: batch.count) ?? batch.count
                state.withLock { state in
                    state.statistics.exported += batch.count - dropped
                    state.statistics.droppedExportFailed += dropped
                    state.lastExportFailure = attempt > 1 ? "\(error) (after \(attempt) attempts)" : "\(error)"
                }
                return
            }
        }
    }

    /// Stops `submit` from queueing; returns false if it was already stopped.
    func stopAcceptingSpans() -> Bool {
        state.withLock { state in
            defer { state.acceptsSpans = false }
            return state.acceptsSpans
        }
    }

    func dropQueuedSpans(reason: String) {
        state.withLock { state in
            guard !state.queue.isEmpty else { return }
            state.statistics.droppedExportFailed += state.queue.count
            state.lastExportFailure = "\(state.queue.count) spans dropped: \(reason)"
            state.queue.removeAll()
        }
    }

    func flush(timeout: Duration) async -> Bool {
        await withCheckedContinuation { continuation in
            let id = state.withLock { state in
                let id = state.nextFlushID
                state.nextFlushID += 1
                state.flushWaiters[id] = FlushWaiter(continuation: continuation)
                return id
            }
            if case .terminated = wakeups.yield(.flush(id: id)) {
                finishFlush(id: id, completed: state.withLock { $0.queue.isEmpty })
                return
            }
            let deadline = Task {
                guard (try? await Task.sleep(for: timeout)) != nil else { return }  // cancelled: flush done
                self.finishFlush(id: id, completed: false)
            }
            let waiting = state.withLock { state in
                state.flushWaiters[id]?.deadline = deadline
                return state.flushWaiters[id] != nil
            }
            if !waiting { deadline.cancel() }
        }
    }

    /// Resumes a flush caller once: whichever of the export loop and the deadline comes first.
    private func finishFlush(id: Int, completed: Bool) {
        guard let waiter = state.withLock({ $0.flushWaiters.removeValue(forKey: id) }) else { return }
        waiter.deadline?.cancel()
        waiter.continuation.resume(returning: completed)
    }
}
