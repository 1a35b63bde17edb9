import Spans

/// Decouples span production from export: the runtime hands spans over with `submit(_:)`, which
/// never blocks, and a background task sends them to a `SpanExporter` in batches.
///
/// Under overload it sheds spans (counted in `statistics`) rather than slowing the ring-buffer
/// reader or growing memory without bound; a reader that checks ``hasRoom(for:)`` first can
/// leave them in the ring buffer instead. Call `shutdown(timeout:)` before discarding it, or
/// spans still queued are lost.
public final class BatchingSpanProcessor: Sendable {
    public struct Configuration: Sendable, Equatable {
        /// Spans held while waiting for export, during a collector outage too; more are dropped.
        public var queueCapacity: Int
        /// Spans per export call; a full batch is exported without waiting for `scheduleDelay`.
        public var maxBatchSize: Int
        /// The longest a span waits in the queue when traffic is light.
        public var scheduleDelay: Duration
        public var retry: RetryPolicy
        /// How long one batch's attempts may take, their waits included: an attempt still running
        /// then is given up and its spans counted as dropped, while a batch the backend keeps
        /// refusing as overloaded or unreachable is held for later (see `ExportPipeline`); nil for
        /// no limit.
        public var exportTimeout: Duration?

        /// The defaults are the OpenTelemetry SDK's, except `scheduleDelay` (1 s rather than 5 s,
        /// so spans show up while one watches).
        public init(
            queueCapacity: Int = 2048, maxBatchSize: Int = 512, scheduleDelay: Duration = .seconds(1),
            retry: RetryPolicy = RetryPolicy(), exportTimeout: Duration? = .seconds(30)
        ) {
            self.queueCapacity = queueCapacity
            self.maxBatchSize = maxBatchSize
            self.scheduleDelay = scheduleDelay
            self.retry = retry
            self.exportTimeout = exportTimeout
        }
    }

    private let pipeline: ExportPipeline
    private let exportTask: Task<Void, Never>
    private let timerTask: Task<Void, Never>

    public init(exporter: some SpanExporter, configuration: Configuration = Configuration()) {
        precondition(configuration.queueCapacity > 0 && configuration.maxBatchSize > 0, "queue and batch sizes must be positive")
        precondition(configuration.scheduleDelay > .zero && configuration.retry.maxAttempts > 0, "schedule delay and attempts must be positive")
        precondition(configuration.exportTimeout.map { $0 > .zero } ?? true, "an export timeout must be positive")
        let (wakeups, wakeupContinuation) = AsyncStream.makeStream(of: ExportPipeline.Wakeup.self)
        let pipeline = ExportPipeline(exporter: exporter, configuration: configuration, wakeups: wakeupContinuation)
        self.pipeline = pipeline
        // On the exporter's own thread when it has one: a batch is then exported where its wakeup lands.
        exportTask = Task(executorPreference: exporter.exportExecutor) { await pipeline.run(wakeups) }
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
        pipeline.submit([span])
    }

    /// Queues finished spans for export under one lock, as `submit(_:)` does each: a reader
    /// that hands over what one poll produced takes the lock once, not once per span (issue 7).
    ///
    /// An array handed over whole (`consume`) becomes an export batch as it is when it fits one.
    public func submit(contentsOf spans: consuming [Span]) {
        pipeline.submit(spans)
    }

    /// Whether `count` more spans fit in the queue now. A reader that can leave spans where they
    /// are (the kernel's ring buffer) waits for room instead of having them dropped here: the
    /// exporter falling behind for a moment then loses nothing.
    public func hasRoom(for count: Int) -> Bool {
        let room = pipeline.state.withLock { $0.queuedCount + count <= pipeline.configuration.queueCapacity }
        if !room { pipeline.exporter.exportBacklog(1) }   // export is behind: spans wait in the ring buffer
        return room
    }

    /// What happened to the spans so far, with the reason of the last failed export.
    public var statistics: ExportStatistics {
        pipeline.state.withLock { $0.statistics }
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
        guard pipeline.stopAcceptingSpans() else { return pipeline.state.withLock { $0.queuedCount == 0 } }
        pipeline.exporter.exportBacklog(1)   // what is queued must go now, whatever else wants the CPU
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
