import CLibBPF
import Foundation
import SondeABI

extension BPFEngine {
    /// Why ``wait(timeoutMilliseconds:)`` returned before its timeout.
    public struct WakeReasons: OptionSet, Sendable {
        public let rawValue: UInt32
        public init(rawValue: UInt32) { self.rawValue = rawValue }

        /// Unread spans filled a quarter of the ring buffer: drain it now.
        public static let spans = WakeReasons(rawValue: 1 << 0)
        /// A process started or ended since the ring of process events was last read
        /// (``watchProcesses()``): read it now.
        public static let processEvents = WakeReasons(rawValue: 1 << 1)
        /// Someone rang ``waker``.
        public static let waker = WakeReasons(rawValue: 1 << 2)
    }

    /// Rings the session's loop out of ``wait(timeoutMilliseconds:)`` from any thread.
    public var waker: Waker { waitSet.waker }

    /// Sleeps until the BPF side has something that cannot wait (see ``WakeReasons``), the
    /// ``waker`` rings, or `timeoutMilliseconds` pass: one system call, however many sources.
    ///
    /// Spans below a quarter of the ring buffer do not wake the reader; they wait for
    /// ``drainSpans()`` on the caller's timer. Each wakeup of the reader costs it a context
    /// switch and cold caches: draining more spans per wakeup costs less per span (issue 7).
    public func wait(timeoutMilliseconds: Int32) -> WakeReasons {
        waitSet.wait(timeoutMilliseconds: timeoutMilliseconds)
    }
}

/// Wakes a thread in ``BPFEngine/wait(timeoutMilliseconds:)``, e.g. for a stop request, which
/// then need not wait for the timeout. Safe from any thread and from signal handlers' queues.
public final class Waker: Sendable {
    fileprivate let descriptor: Int32

    fileprivate init() throws {
        descriptor = eventfd(0, Int32(EFD_NONBLOCK | EFD_CLOEXEC))
        guard descriptor >= 0 else { throw EngineError.bpfLoadFailed(step: "creating the loop's waker (eventfd)", errno: errno) }
    }

    public func wake() {
        var one: UInt64 = 1
        _ = write(descriptor, &one, MemoryLayout<UInt64>.size)
    }

    /// Takes back every ring so far: the descriptor is readable until then.
    fileprivate func reset() {
        var count: UInt64 = 0
        _ = read(descriptor, &count, MemoryLayout<UInt64>.size)
    }

    deinit { close(descriptor) }
}

/// One epoll set of everything the session's loop sleeps on. The ring buffers are watched
/// edge-triggered: they are readable whenever they hold a record, so a level-triggered watch
/// would return at once while spans wait for their drain.
final class WaitSet {
    private let descriptor: Int32
    let waker: Waker

    init() throws {
        descriptor = epoll_create1(Int32(EPOLL_CLOEXEC))
        guard descriptor >= 0 else { throw EngineError.bpfLoadFailed(step: "creating the loop's epoll set", errno: errno) }
        do {
            waker = try Waker()
            try watch(waker.descriptor, as: .waker, edgeTriggered: false)
        } catch {
            close(descriptor)
            throw error
        }
    }

    deinit { close(descriptor) }

    /// Adds a descriptor; one already watched stays as it is.
    func watch(_ watched: Int32, as reason: BPFEngine.WakeReasons, edgeTriggered: Bool = true) throws {
        var event = epoll_event()
        event.events = EPOLLIN.rawValue | (edgeTriggered ? EPOLLET.rawValue : 0)
        event.data.u32 = reason.rawValue
        guard epoll_ctl(descriptor, EPOLL_CTL_ADD, watched, &event) == 0 || errno == EEXIST else {
            throw EngineError.bpfLoadFailed(step: "watching descriptor \(watched) for the loop", errno: errno)
        }
    }

    func wait(timeoutMilliseconds: Int32) -> BPFEngine.WakeReasons {
        var events = [epoll_event](repeating: epoll_event(), count: 3)
        let count = epoll_wait(descriptor, &events, Int32(events.count), timeoutMilliseconds)
        var reasons: BPFEngine.WakeReasons = []
        for event in events.prefix(Int(max(count, 0))) { reasons.insert(BPFEngine.WakeReasons(rawValue: event.data.u32)) }
        if reasons.contains(.waker) { waker.reset() }
        return reasons
    }
}
