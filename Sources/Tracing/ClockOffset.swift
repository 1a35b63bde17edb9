import Foundation

/// Converts the BPF side's CLOCK_MONOTONIC timestamps to wall-clock Unix time, as OTLP wants.
public struct ClockOffset: Sendable, Equatable {
    /// Wall-clock nanoseconds minus monotonic nanoseconds, sampled together.
    public var realtimeMinusMonotonic: Int64

    public init(realtimeMinusMonotonic: Int64) {
        self.realtimeMinusMonotonic = realtimeMinusMonotonic
    }

    /// Samples both clocks now.
    public static func now() -> ClockOffset {
        var monotonic = timespec()
        var realtime = timespec()
        clock_gettime(CLOCK_MONOTONIC, &monotonic)
        clock_gettime(CLOCK_REALTIME, &realtime)
        return ClockOffset(realtimeMinusMonotonic: nanoseconds(realtime) - nanoseconds(monotonic))
    }

    public func wallClock(monotonic: UInt64) -> UInt64 {
        UInt64(Int64(monotonic) + realtimeMinusMonotonic)
    }

    private static func nanoseconds(_ time: timespec) -> Int64 {
        Int64(time.tv_sec) * 1_000_000_000 + Int64(time.tv_nsec)
    }
}
