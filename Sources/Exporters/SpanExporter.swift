import Spans

/// Somewhere finished spans go: an OTLP backend, the console, a test double.
/// `BatchingSpanProcessor` calls `export` from one task at a time, with batches in submission order.
public protocol SpanExporter: Sendable {
    /// Delivers one batch. Throw `SpanExportError` so the processor knows whether a retry can help;
    /// any other error is treated as permanent. An export should end soon after its task is
    /// cancelled: the default `export(_:within:)` cancels one that passes `OTEL_BSP_EXPORT_TIMEOUT`.
    func export(_ spans: [Span]) async throws

    /// Delivers one batch, giving up after `limit` (what `OTEL_BSP_EXPORT_TIMEOUT` leaves the
    /// batch). By default `export(_:)` races a timer and is abandoned when the timer wins; an
    /// exporter that can bound its own waits does it here instead, without the timer's two tasks
    /// per export (issue 7: 40% of the agent's context switches, 8–10% of its CPU).
    func export(_ spans: [Span], within limit: Duration) async throws

    /// Where `BatchingSpanProcessor` runs its export loop: an exporter that blocks a thread of
    /// its own names it, so that a batch is exported on the thread that wakes for it (issue 7);
    /// nil, the default, for Swift's shared pool.
    var exportExecutor: (any TaskExecutor)? { get }

    /// How full `BatchingSpanProcessor`'s queue is after a submission (0...1), and 1 when it shuts
    /// down and what is queued must go now: an exporter with a thread of its own lets it yield the
    /// CPU while the queue keeps up. The default ignores it.
    func exportBacklog(_ fill: Double)
}

extension SpanExporter {
    public var exportExecutor: (any TaskExecutor)? { nil }

    public func exportBacklog(_ fill: Double) {}

    public func export(_ spans: [Span], within limit: Duration) async throws {
        try await withTimeLimit(limit) { try await self.export(spans) }
    }
}

/// Why an export did not fully succeed, classified for the retry decision.
public enum SpanExportError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The backend is unreachable, overloaded or throttling: the same batch may succeed later,
    /// after `retryAfter` when the backend said how long to wait (HTTP `Retry-After`).
    case retryable(reason: String, retryAfter: Duration? = nil)
    /// The backend refused the batch (e.g. HTTP 400), or TLS or the URL is wrong: sending it
    /// again would fail the same way.
    case rejected(reason: String)
    /// The backend accepted the batch except for `count` spans (OTLP partial success).
    case partiallyRejected(count: Int, reason: String)

    public var isRetryable: Bool {
        if case .retryable = self { return true }
        return false
    }

    /// How long the backend asked to wait before the next attempt, if it said.
    public var retryAfter: Duration? {
        if case .retryable(_, let retryAfter) = self { return retryAfter }
        return nil
    }

    /// How many spans of a batch of `batchSize` this failure lost.
    func droppedSpanCount(ofBatchSize batchSize: Int) -> Int {
        if case .partiallyRejected(let count, _) = self { return min(count, batchSize) }
        return batchSize
    }

    public var description: String {
        switch self {
        case .retryable(let reason, _), .rejected(let reason): return reason
        case .partiallyRejected(let count, let reason):
            return "\(count) spans rejected" + (reason.isEmpty ? "" : ": \(reason)")
        }
    }
}
