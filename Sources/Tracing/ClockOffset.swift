import Foundation

/// Converts the BPF side's CLOCK_MONOTONIC timestamps to wall-clock Unix time, as OTLP wants.
/// One offset is right only until the wall clock steps; `WallClock` re-samples it.
public struct ClockOffset: Sendable, Equatable {
    /// Wall-clock nanoseconds minus monotonic nanoseconds, sampled together.
    public var realtimeMinusMonotonic: Int64

    public init(realtimeMinusMonotonic: Int64) {
        self.realtimeMinusMonotonic = realtimeMinusMonotonic
    }

    /// The offset between the two clocks of `reading`.
    public init(_ reading: ClockReading) {
        realtimeMinusMonotonic = reading.realtimeNanos - Int64(bitPattern: reading.monotonicNanos)
    }

    /// Nanoseconds since the Unix epoch; 0 for a time the offset would put before it.
    public func wallClock(monotonic: UInt64) -> UInt64 {
        let wallClock = Int64(bitPattern: monotonic) &+ realtimeMinusMonotonic
        return wallClock > 0 ? UInt64(wallClock) : 0
    }
}

/// Both clocks read back to back.
public struct ClockReading: Sendable, Equatable {
    /// CLOCK_MONOTONIC, the clock `bpf_ktime_get_ns` reads, in nanoseconds.
    public var monotonicNanos: UInt64
    /// CLOCK_REALTIME in nanoseconds since the Unix epoch.
    public var realtimeNanos: Int64

    public init(monotonicNanos: UInt64, realtimeNanos: Int64) {
        self.monotonicNanos = monotonicNanos
        self.realtimeNanos = realtimeNanos
    }
}

/// Where `WallClock` reads the clocks: the system, or a test's scripted clocks.
public protocol ClockSource: Sendable {
    func read() -> ClockReading
}

/// The system's clocks. Two `clock_gettime` calls, which the vDSO answers without a system call
/// on x86-64 and arm64.
public struct SystemClock: ClockSource {
    public init() {}

    public func read() -> ClockReading {
        var monotonic = timespec()
        var realtime = timespec()
        clock_gettime(CLOCK_MONOTONIC, &monotonic)
        clock_gettime(CLOCK_REALTIME, &realtime)
        return ClockReading(
            monotonicNanos: UInt64(Self.nanoseconds(monotonic)), realtimeNanos: Self.nanoseconds(realtime))
    }

    private static func nanoseconds(_ time: timespec) -> Int64 {
        Int64(time.tv_sec) * 1_000_000_000 + Int64(time.tv_nsec)
    }
}
