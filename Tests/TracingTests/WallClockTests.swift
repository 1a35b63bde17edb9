import Planning
import Spans
import Synchronization
import XCTest

@testable import Tracing

/// Clocks a test moves by hand; counts how often they are read.
final class ScriptedClock: ClockSource {
    private let state: Mutex<(reading: ClockReading, reads: Int)>

    init(monotonicNanos: UInt64, realtimeNanos: Int64) {
        state = Mutex((ClockReading(monotonicNanos: monotonicNanos, realtimeNanos: realtimeNanos), 0))
    }

    var reads: Int { state.withLock { $0.reads } }

    func read() -> ClockReading {
        state.withLock { state in
            state.reads += 1
            return state.reading
        }
    }

    /// Both clocks move on by `nanoseconds`; the wall clock also jumps by `step`.
    func advance(by nanoseconds: UInt64, wallClockStep step: Int64 = 0) {
        state.withLock { state in
            state.reading.monotonicNanos += nanoseconds
            state.reading.realtimeNanos += Int64(nanoseconds) + step
        }
    }
}

final class WallClockTests: XCTestCase {
    private let second: UInt64 = 1_000_000_000
    private let bootWallClock: Int64 = 1_700_000_000_000_000_000

    func testFixedOffsetConvertsMonotonicTimestamps() {
        let clock = WallClock(fixed: ClockOffset(realtimeMinusMonotonic: 1_000))

        XCTAssertEqual(clock.offset(atMonotonic: 5).wallClock(monotonic: 5), 1_005)
        XCTAssertEqual(clock.offset(atMonotonic: .max - 1), ClockOffset(realtimeMinusMonotonic: 1_000))
    }

    func testWallClockStepIsPickedUpWithinTheResampleInterval() {
        let source = ScriptedClock(monotonicNanos: 10 * second, realtimeNanos: bootWallClock)
        let clock = WallClock(source: source, resampleInterval: .seconds(1))
        XCTAssertEqual(clock.offset(atMonotonic: 10 * second).wallClock(monotonic: 10 * second), UInt64(bootWallClock))

        // NTP steps the wall clock forward by 5 s, half a second after the start.
        source.advance(by: second / 2, wallClockStep: 5_000_000_000)
        let beforeInterval = clock.offset(atMonotonic: 10 * second + second / 2)
        XCTAssertEqual(beforeInterval.wallClock(monotonic: 10 * second), UInt64(bootWallClock), "not due yet")

        source.advance(by: second / 2)
        let afterInterval = clock.offset(atMonotonic: 11 * second)
        XCTAssertEqual(afterInterval.wallClock(monotonic: 11 * second), UInt64(bootWallClock) + second + 5 * second)
        XCTAssertEqual(source.reads, 2)
    }

    func testClocksAreReadOncePerIntervalNotPerSpan() {
        let source = ScriptedClock(monotonicNanos: second, realtimeNanos: bootWallClock)
        let clock = WallClock(source: source, resampleInterval: .seconds(1))

        for span in 0..<1_000 { _ = clock.offset(atMonotonic: second + UInt64(span) * 1_000) }
        XCTAssertEqual(source.reads, 1, "only the initial sample")

        source.advance(by: 2 * second)
        for span in 0..<1_000 { _ = clock.offset(atMonotonic: 3 * second + UInt64(span) * 1_000) }
        XCTAssertEqual(source.reads, 2, "one re-sample for the first span past the interval")
    }

    func testSpanTimesFollowAStepOfTheWallClock() throws {
        let source = ScriptedClock(monotonicNanos: 0, realtimeNanos: bootWallClock)
        let plan = try SpanAssemblerTests.makePlan()
        let assembler = SpanAssembler(plan: plan, clock: WallClock(source: source))

        var early = SpanAssemblerTests.event(method: "GET", path: "/", host: "h", status: 200)
        (early.startMonotonicNanos, early.endMonotonicNanos) = (100, 200)
        XCTAssertEqual(try XCTUnwrap(assembler.assemble(early)).startTimeUnixNano, UInt64(bootWallClock) + 100)

        // A VM resumes: the monotonic clock moved 2 s, the wall clock 1 hour.
        source.advance(by: 2 * second, wallClockStep: 3_600 * Int64(second))
        var late = SpanAssemblerTests.event(method: "GET", path: "/", host: "h", status: 200)
        (late.startMonotonicNanos, late.endMonotonicNanos) = (2 * second, 2 * second + 500)
        let span = try XCTUnwrap(assembler.assemble(late))
        XCTAssertEqual(span.startTimeUnixNano, UInt64(bootWallClock) + 3_602 * second)
        XCTAssertEqual(span.endTimeUnixNano - span.startTimeUnixNano, 500)
    }
}
