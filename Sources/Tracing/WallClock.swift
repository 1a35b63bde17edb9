import Synchronization

/// Converts monotonic timestamps to wall-clock time with an offset that follows the wall clock.
///
/// One offset sampled at start goes wrong when the wall clock steps afterwards (NTP correcting
/// the time after boot, a VM resuming from suspend): every later span would be shifted by the step.
/// So the offset is re-sampled once `resampleInterval` of monotonic time has passed, which
/// bounds how long spans carry a stale offset to about that interval.
///
/// The per-span cost is one atomic load and a comparison: whether a re-sample is due is judged
/// from the span's own end timestamp, which the ring buffer delivers shortly after it was taken,
/// so no clock is read per span. A re-sample costs one ``ClockSource/read()``.
public final class WallClock: Sendable {
    private let source: any ClockSource
    private let resampleIntervalNanos: UInt64
    private let offsetNanos: Atomic<Int64>
    /// The monotonic time from which the next span triggers a re-sample; `UInt64.max` while one
    /// is under way and for a fixed offset.
    private let nextSampleAt: Atomic<UInt64>

    /// Samples `source` now and again whenever `resampleInterval` has passed.
    public init(source: some ClockSource = SystemClock(), resampleInterval: Duration = .seconds(1)) {
        precondition(resampleInterval > .zero, "the re-sample interval must be positive")
        self.source = source
        let components = resampleInterval.components
        resampleIntervalNanos =
            UInt64(components.seconds) * 1_000_000_000 + UInt64(components.attoseconds / 1_000_000_000)
        let reading = source.read()
        offsetNanos = Atomic(ClockOffset(reading).realtimeMinusMonotonic)
        nextSampleAt = Atomic(reading.monotonicNanos &+ resampleIntervalNanos)
    }

    /// Always `offset`, never re-sampled: for tests and replays of recorded events.
    public init(fixed offset: ClockOffset) {
        source = SystemClock()
        resampleIntervalNanos = 0
        offsetNanos = Atomic(offset.realtimeMinusMonotonic)
        nextSampleAt = Atomic(UInt64.max)
    }

    /// The system clocks, sampled now and re-sampled every second.
    public static func now() -> WallClock {
        WallClock()
    }

    /// The offset to convert the timestamps of a span that ended at monotonic time `monotonicNow`,
    /// re-sampled first if it is due. Use one offset for both ends of a span so that its
    /// duration is never distorted by a re-sample.
    public func offset(atMonotonic monotonicNow: UInt64) -> ClockOffset {
        let due = nextSampleAt.load(ordering: .acquiring)
        if monotonicNow >= due,
           nextSampleAt.compareExchange(expected: due, desired: UInt64.max, ordering: .relaxed).exchanged {
            let reading = source.read()
            offsetNanos.store(ClockOffset(reading).realtimeMinusMonotonic, ordering: .relaxed)
            nextSampleAt.store(reading.monotonicNanos &+ resampleIntervalNanos, ordering: .releasing)
        }
        return ClockOffset(realtimeMinusMonotonic: offsetNanos.load(ordering: .relaxed))
    }
}
