import Spans
import Synchronization

/// The state shared by `submit` (any thread), the export task and flush callers. It is separate
/// from `BatchingSpanProcessor` so the background tasks do not keep the processor alive.
final class ExportPipeline: Sendable {
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
        /// The spans waiting for export, cut into export batches as they arrive (only the last
        /// may be partial), so the export loop takes a batch by moving one array rather than
        /// copying its spans out of a single queue (issue 7).
        var batches: [[Span]] = []
        var queuedCount = 0
        var statistics = ExportStatistics()
        var acceptsSpans = true
        /// Wakeups on their way to the export loop; sending one again would only repeat it.
        var pendingWakeups: Set<Wakeup> = []
        var flushWaiters: [Int: FlushWaiter] = [:]
        var nextFlushID = 0

        /// Queues `spans`: they top up the last batch if it has room, and what is left becomes
        /// the next batch as it is, without its spans being copied (a copy retains each string
        /// of a span; issue 7). Returns whether that filled a batch.
        mutating func append(_ spans: inout [Span], batchSize: Int) -> Bool {
            queuedCount += spans.count
            var filled = false
            if let last = batches.last, last.count < batchSize {
                let room = min(batchSize - last.count, spans.count)
                batches[batches.count - 1].append(contentsOf: spans.prefix(room))
                spans.removeFirst(room)
                filled = batches[batches.count - 1].count == batchSize
            }
            while !spans.isEmpty {
                var batch: [Span] = []
                if spans.count > batchSize {
                    batch.reserveCapacity(batchSize)
                    batch.append(contentsOf: spans.prefix(batchSize))
                    spans.removeFirst(batchSize)
                } else {
                    swap(&batch, &spans)
                }
                filled = filled || batch.count == batchSize
                batches.append(batch)
            }
            return filled
        }
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

    /// Queues `spans` under one lock; those beyond the queue's capacity are dropped and counted.
    func submit(_ spans: consuming [Span]) {
        var spans = spans
        let (batchFilled, queued) = state.withLock { state in
            guard state.acceptsSpans else { return (false, state.queuedCount) }
            state.statistics.submitted += spans.count
            let accepted = min(spans.count, configuration.queueCapacity - state.queuedCount)
            state.statistics.droppedQueueFull += spans.count - accepted
            spans.removeLast(spans.count - accepted)
            return (state.append(&spans, batchSize: configuration.maxBatchSize), state.queuedCount)
        }
        exporter.exportBacklog(Double(queued) / Double(configuration.queueCapacity))
        if batchFilled { wake(.batchFilled) }
    }

    /// Wakes the export loop if spans are waiting and the same wakeup is not already on its way.
    func wake(_ wakeup: Wakeup) {
        let shouldWake = state.withLock { state in
            state.queuedCount > 0 && state.pendingWakeups.insert(wakeup).inserted
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

    /// Exports the batches queued when called, not those begun meanwhile, so a flush finishes
    /// even under a steady stream of spans. A batch held through an outage is at the head of the
    /// queue again, and is tried until it is delivered or the loop is cancelled.
    private func exportQueuedSpans(fullBatchesOnly: Bool) async {
        var remaining = state.withLock { $0.batches.count }
        while remaining > 0, !Task.isCancelled {
            let batch: [Span]? = state.withLock { state in
                guard let first = state.batches.first,
                      !fullBatchesOnly || first.count == configuration.maxBatchSize else { return nil }
                state.queuedCount -= first.count
                return state.batches.removeFirst()
            }
            guard let batch else { return }
            if await exportWithRetries(batch) { remaining -= 1 }
        }
    }

    /// Exports `batch` until it is delivered or `RetryPolicy` says to stop, within the export
    /// timeout, and accounts for the outcome. Returns false when the batch is held (see
    /// ``hold(_:after:attempts:)``) rather than delivered or dropped.
    private func exportWithRetries(_ batch: [Span]) async -> Bool {
        let deadline = configuration.exportTimeout.map { ContinuousClock.now + $0 }
        var attempt = 1
        while true {
            let failure: SpanExportError
            do {
                try await exportOnce(batch, deadline: deadline)
                state.withLock { $0.statistics.exported += batch.count }
                return true
            } catch is TimeLimitExceeded {
                let timeout = SpanExportError.rejected(
                    reason: "export did not finish within \(exportTimeoutText) (OTEL_BSP_EXPORT_TIMEOUT)")
                recordFailure(of: batch, timeout, attempts: attempt)
                return true
            } catch let error as SpanExportError {
                failure = error
            } catch {
                failure = .rejected(reason: "\(error)")
            }
            let decision = configuration.retry.decision(
                after: failure, attempt: attempt, timeLeft: deadline.map { $0 - ContinuousClock.now },
                randomFraction: Double.random(in: 0..<1))
            switch decision {
            case .retry(let wait) where !Task.isCancelled:
                try? await Task.sleep(for: wait)
                attempt += 1
            case .retry:
                recordFailure(of: batch, failure, attempts: attempt)
                return true
            case .stop where failure.isRetryable && !Task.isCancelled && state.withLock({ $0.acceptsSpans }):
                await hold(batch, after: failure, attempts: attempt)
                return false
            case .stop:
                recordFailure(of: batch, failure, attempts: attempt)
                return true
            }
        }
    }

    /// An outage: the backend is unreachable or keeps answering 429/5xx after a batch's retries.
    /// The batch goes back to the head of the queue and the loop waits (the backend's
    /// `Retry-After`, or the longest backoff) before trying it again; spans keep queuing meanwhile
    /// up to the queue's capacity, the bound of what an outage holds, and those beyond it are
    /// dropped and counted. Nothing is lost to an outage the queue can hold. Shutting down ends
    /// the wait: the batch gets one more round of attempts, then is dropped if they fail.
    private func hold(_ batch: [Span], after failure: SpanExportError, attempts: Int) async {
        state.withLock { state in
            state.batches.insert(batch, at: 0)
            state.queuedCount += batch.count
            state.statistics.lastFailure = "\(failure) (after \(attempts) attempts; \(state.queuedCount) spans held for the next try)"
        }
        let retry = configuration.retry
        let wait = failure.retryAfter.map { min(max($0, .zero), retry.maxRetryAfter) } ?? retry.maxBackoff
        let end = ContinuousClock.now + wait
        while ContinuousClock.now < end, !Task.isCancelled, state.withLock({ $0.acceptsSpans }) {
            try? await Task.sleep(for: min(end - ContinuousClock.now, Self.shutdownCheckInterval))
        }
    }

    /// How soon a hold notices that the processor is shutting down.
    static let shutdownCheckInterval = Duration.milliseconds(100)

    /// One attempt, cut off at `deadline`.
    private func exportOnce(_ batch: [Span], deadline: ContinuousClock.Instant?) async throws {
        guard let deadline else { return try await exporter.export(batch) }
        try await exporter.export(batch, within: deadline - ContinuousClock.now)
    }

    private var exportTimeoutText: String {
        configuration.exportTimeout.map(\.readable) ?? "no limit"
    }

    /// Counts the spans of `batch` that `failure` lost and keeps its reason for the summary.
    private func recordFailure(of batch: [Span], _ failure: SpanExportError, attempts: Int) {
        let reason = failure.description + (attempts > 1 ? " (after \(attempts) attempts)" : "")
        let dropped = failure.droppedSpanCount(ofBatchSize: batch.count)
        state.withLock { state in
            state.statistics.exported += batch.count - dropped
            state.statistics.droppedExportFailed += dropped
            state.statistics.lastFailure = reason
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
            guard state.queuedCount > 0 else { return }
            state.statistics.droppedExportFailed += state.queuedCount
            state.statistics.lastFailure = "\(state.queuedCount) spans dropped: \(reason)"
            state.batches.removeAll()
            state.queuedCount = 0
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
                finishFlush(id: id, completed: state.withLock { $0.queuedCount == 0 })
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
