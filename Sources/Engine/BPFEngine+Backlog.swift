import CLibBPF
import Foundation
import SondeABI

extension BPFEngine {
    /// A view of the span ring buffer's backlog for a thread other than the one that drains it:
    /// one that must notice when the reader is kept from draining (see ``SpanBacklog``).
    public func spanBacklog() throws -> SpanBacklog {
        guard let map = bpf_object__find_map_by_name(object, SONDE_MAP_SPANS), case let descriptor = bpf_map__fd(map), descriptor >= 0 else {
            throw EngineError.bpfLoadFailed(step: "finding the span ring buffer", errno: ENOENT)
        }
        return try SpanBacklog(ringDescriptor: descriptor, ringBytes: UInt64(bpf_map__max_entries(map)))
    }
}

/// How far the reader of the span ring buffer is behind the probes, read from the positions the
/// kernel shares with user space (two pages mapped read-only: no system call per reading), and a
/// wait that returns at each of the BPF program's wakeups (a quarter of the ring unread, then
/// each further quarter written while the reader lags). ``read()`` may be called from any thread,
/// ``wait(timeoutMilliseconds:)`` from one at a time.
public final class SpanBacklog: @unchecked Sendable {
    public struct Reading: Sendable, Equatable {
        /// Bytes written and not yet consumed, record headers included.
        public var unreadBytes: UInt64
        public var ringBytes: UInt64

        public var unreadFraction: Double { Double(unreadBytes) / Double(ringBytes) }
    }

    /// The consumer's page, then the producer's: each begins with that side's position.
    private let positionPages: UnsafeRawPointer
    private let pageSize: Int
    private let ringBytes: UInt64
    private let waitSet: WaitSet

    /// Ends a ``wait(timeoutMilliseconds:)`` in progress, from any thread.
    public var waker: Waker { waitSet.waker }

    fileprivate init(ringDescriptor: Int32, ringBytes: UInt64) throws {
        let pageSize = Int(sysconf(Int32(_SC_PAGESIZE)))
        // The kernel lays the ring out as the consumer's page, the producer's page, then the data;
        // read-only, the first two map as one.
        let pages = mmap(nil, 2 * pageSize, PROT_READ, MAP_SHARED, ringDescriptor, 0)
        guard let pages, pages != MAP_FAILED else {
            throw EngineError.bpfLoadFailed(step: "mapping the span ring buffer's positions", errno: errno)
        }
        do {
            let set = try WaitSet()
            try set.watch(ringDescriptor, as: .spans)
            waitSet = set
        } catch {
            munmap(pages, 2 * pageSize)
            throw error
        }
        positionPages = UnsafeRawPointer(pages)
        self.pageSize = pageSize
        self.ringBytes = ringBytes
    }

    deinit {
        munmap(UnsafeMutableRawPointer(mutating: positionPages), 2 * pageSize)
    }

    public func read() -> Reading {
        // The consumer's position first: it never passes the producer's, read after it.
        let consumed = positionPages.load(as: UInt64.self)
        let produced = positionPages.load(fromByteOffset: pageSize, as: UInt64.self)
        return Reading(unreadBytes: produced &- consumed, ringBytes: ringBytes)
    }

    /// Sleeps until the BPF program wakes the ring buffer's readers, ``waker`` rings, or the
    /// timeout passes; whether the BPF program woke it.
    public func wait(timeoutMilliseconds: Int32) -> Bool {
        waitSet.wait(timeoutMilliseconds: timeoutMilliseconds).contains(.spans)
    }
}
