/// What happened to the spans handed to a `BatchingSpanProcessor`. Spans still queued are
/// `submitted` minus `exported` and the two kinds of drop.
public struct ExportStatistics: Sendable, Equatable {
    public var submitted = 0
    public var exported = 0
    /// Spans refused because the queue was full: the exporter could not keep up.
    public var droppedQueueFull = 0
    /// Spans the exporter failed to deliver, after retries, or that the backend rejected.
    public var droppedExportFailed = 0
    /// Why the most recent failed export failed, to tell the user what to fix
    /// (e.g. `HTTP 401 from http://…: invalid token`); nil while none has failed.
    public var lastFailure: String?

    public init(
        submitted: Int = 0, exported: Int = 0, droppedQueueFull: Int = 0, droppedExportFailed: Int = 0,
        lastFailure: String? = nil
    ) {
        self.submitted = submitted
        self.exported = exported
        self.droppedQueueFull = droppedQueueFull
        self.droppedExportFailed = droppedExportFailed
        self.lastFailure = lastFailure
    }

    /// One line for the end of a run and for the running drop reports, e.g. `12 spans submitted,
    /// 10 exported, 2 dropped (queue full: 0, export failed: 2); last failure: HTTP 503 from http://…`.
    public var summary: String {
        "\(submitted) spans submitted, \(exported) exported, \(droppedQueueFull + droppedExportFailed) dropped "
            + "(queue full: \(droppedQueueFull), export failed: \(droppedExportFailed))"
            + (lastFailure.map { "; last failure: \($0)" } ?? "")
    }
}
