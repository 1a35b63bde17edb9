import SondeABI

/// One finished call as the BPF program reports it (struct sonde_span_record): what the
/// Engine hands to span assembly, with times still on the monotonic clock.
public struct SpanEvent: Sendable, Equatable {
    public var traceIDHigh: UInt64
    public var traceIDLow: UInt64
    public var spanID: UInt64
    public var parentSpanID: UInt64
    public var startMonotonicNanos: UInt64
    public var endMonotonicNanos: UInt64
    /// Goroutine (g pointer) or thread id.
    public var callKey: UInt64
    public var processID: Int32
    public var spanSlot: UInt32
    /// Memory reads that failed while capturing: those captures are empty.
    public var failedReads: UInt32
    /// A dynamic-type check failed, so captures after it were not taken.
    public var stoppedEarly: Bool
    /// Bit i set: capture i (in `PlannedProbe.captureSlots` order) was read.
    public var capturedMask: UInt32
    /// The `capturedMask` bit set when an `end-span` probe ended the span.
    public static let endedByObjectProbe = UInt32(SONDE_ENDED_BY_OBJECT_PROBE)
    /// The parent is another process's span, named by the traceparent the request carried.
    public var parentIsRemote: Bool
    /// The record's capture area, laid out by the probe's `CaptureSlot`s.
    public var data: [UInt8]

    public init(
        traceIDHigh: UInt64, traceIDLow: UInt64, spanID: UInt64, parentSpanID: UInt64, startMonotonicNanos: UInt64,
        endMonotonicNanos: UInt64, callKey: UInt64, processID: Int32, spanSlot: UInt32, failedReads: UInt32, stoppedEarly: Bool,
        capturedMask: UInt32, parentIsRemote: Bool = false, data: [UInt8]
    ) {
        self.parentIsRemote = parentIsRemote
        self.traceIDHigh = traceIDHigh
        self.traceIDLow = traceIDLow
        self.spanID = spanID
        self.parentSpanID = parentSpanID
        self.startMonotonicNanos = startMonotonicNanos
        self.endMonotonicNanos = endMonotonicNanos
        self.callKey = callKey
        self.processID = processID
        self.spanSlot = spanSlot
        self.failedReads = failedReads
        self.stoppedEarly = stoppedEarly
        self.capturedMask = capturedMask
        self.data = data
    }
}
