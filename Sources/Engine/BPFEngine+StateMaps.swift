import CLibBPF
import Foundation
import SondeABI

/// What the BPF program keeps in its maps: the counters of what it lost, the calls and streams
/// still open, and the reclaiming of those that can no longer end.
extension BPFEngine {
    /// Losses and anomalies counted on the BPF side.
    public struct Counters: Sendable, Equatable {
        public var spansLostRingFull: UInt64 = 0
        public var returnsWithoutEntry: UInt64 = 0
        /// Calls not traced because the map of calls in flight was full.
        public var entriesNotRecorded: UInt64 = 0
        public var hitsWithoutConfig: UInt64 = 0
        /// Spans kept open under an object (a stream) that a later span for the same object replaced.
        public var objectSpansReplaced: UInt64 = 0
        /// Spans that could not stay open under their object: the map of open streams was full.
        public var objectSpansFull: UInt64 = 0
        /// Calls whose goroutine or thread unwound past them without returning (panic, Goexit).
        public var callsUnwound: UInt64 = 0
        /// Calls not traced: nested deeper than ``BPFEngine/maximumNestedCalls`` in calls of the
        /// same probe on their goroutine or thread (recursion).
        public var callsNested: UInt64 = 0
        /// Trace contexts (parent links, goroutine hand-offs) not kept: their map was full.
        public var contextsNotKept: UInt64 = 0
        /// Root spans the sampler did not record: nothing of their traces is emitted, by design.
        public var tracesSampledOut: UInt64 = 0
        /// Incoming traceparent headers that were malformed, so their spans started new traces.
        public var malformedTraceparents: UInt64 = 0
        /// Spans not recorded because the traceparent they continue says its trace is not sampled.
        public var parentsNotSampled: UInt64 = 0
        /// Trace contexts not written into a request: its buffer had no room for the header line.
        public var injectionsWithoutRoom: UInt64 = 0
        /// Client spans whose trace context was never written into their request (HTTP/2, or a
        /// request that failed before it was sent).
        public var contextsNotInjected: UInt64 = 0
        /// Client spans whose trace context could not wait to be written: the injections map was full.
        public var injectionsFull: UInt64 = 0
        /// Header maps too large to search whole: a traceparent in them may have been missed.
        public var headerMapsTooLarge: UInt64 = 0

        public init() {}

        /// Spans these counters say were lost: started but never emitted.
        public var spansLost: UInt64 {
            spansLostRingFull + entriesNotRecorded + objectSpansReplaced + objectSpansFull + callsUnwound + callsNested
        }
    }

    /// What ``reclaim(olderThan:isProcessAlive:)`` removed, each a span that can no longer end.
    public struct Reclaimed: Sendable, Equatable {
        /// Calls and open streams of processes that exited.
        public var ofExitedProcesses = 0
        /// Calls and open streams older than the maximum age.
        public var pastMaximumAge = 0
        /// Trace context entries of live processes that named a span already ended, or none:
        /// bookkeeping, not spans.
        public var staleContexts = 0
        /// Records of ended calls, kept for the next call of their probe on their goroutine or
        /// thread, that their process left (it exited) or that stayed idle for ``BPFEngine/idleRecordAge``:
        /// bookkeeping, not spans.
        public var idleRecords = 0
        public init() {}
        /// Spans lost.
        public var total: Int { ofExitedProcesses + pastMaximumAge }
    }

    /// One counter summed over the CPUs: a system call.
    func counterTotal(_ counter: sonde_counter) -> UInt64 {
        let fd = bpf_object__find_map_fd_by_name(object, SONDE_MAP_COUNTERS)
        var key = counter.rawValue
        var values = [UInt64](repeating: 0, count: Int(max(libbpf_num_possible_cpus(), 1)))
        guard bpf_map_lookup_elem(fd, &key, &values) == 0 else { return 0 }
        return values.reduce(0, &+)
    }

    public func counters() -> Counters {
        let total = counterTotal
        var counters = Counters()
        counters.spansLostRingFull = total(SONDE_COUNTER_RING_FULL)
        counters.returnsWithoutEntry = total(SONDE_COUNTER_ORPHAN_RETURN)
        counters.entriesNotRecorded = total(SONDE_COUNTER_STATE_FULL)
        counters.hitsWithoutConfig = total(SONDE_COUNTER_MISSING_CONFIG)
        counters.objectSpansReplaced = total(SONDE_COUNTER_OBJECT_SPAN_REPLACED)
        counters.objectSpansFull = total(SONDE_COUNTER_OBJECT_SPANS_FULL)
        counters.callsUnwound = total(SONDE_COUNTER_CALL_UNWOUND)
        counters.callsNested = total(SONDE_COUNTER_CALL_NESTED)
        counters.contextsNotKept = total(SONDE_COUNTER_CONTEXTS_FULL)
        counters.tracesSampledOut = total(SONDE_COUNTER_SAMPLED_OUT)
        counters.malformedTraceparents = total(SONDE_COUNTER_BAD_TRACEPARENT)
        counters.parentsNotSampled = total(SONDE_COUNTER_PARENT_NOT_SAMPLED)
        counters.injectionsWithoutRoom = total(SONDE_COUNTER_INJECT_NO_ROOM)
        counters.contextsNotInjected = total(SONDE_COUNTER_NOT_INJECTED)
        counters.injectionsFull = total(SONDE_COUNTER_INJECTIONS_FULL)
        counters.headerMapsTooLarge = total(SONDE_COUNTER_MAP_TOO_LARGE)
        return counters
    }

    /// How many calls of one probe the BPF program records open inside its outermost call on one
    /// goroutine or thread; deeper ones are counted in ``Counters/callsNested``.
    public static let maximumNestedCalls = Int(SONDE_MAX_NESTED_CALLS)

    /// How long the record of an ended call waits for the next call of its probe on its goroutine
    /// or thread before Engine removes it (nanoseconds): a goroutine or thread that went away
    /// leaves its records behind, and they would fill the map of calls.
    public static let idleRecordAge: UInt64 = 10_000_000_000

    /// Calls whose span has not ended: functions still running, and streams still open.
    public func openCalls() -> Int {
        heldEntries(inMap: SONDE_MAP_CALLS, as: sonde_call_key.self, sonde_span_record(), spanID: \.span_id)
            + keys(inMap: SONDE_MAP_OBJECT_SPANS).count
    }

    /// Goroutines and threads with a trace context active: the entries of the map of trace
    /// contexts that hold one (the BPF program keeps an emptied entry for the next one).
    public func activeContexts() -> Int {
        heldEntries(inMap: SONDE_MAP_ACTIVE_CONTEXTS, as: sonde_context_key.self, sonde_trace_context(), spanID: \.span_id)
    }

    /// Entries of `calls` or `active_contexts` whose span id is an owner's (see
    /// SONDE_SPAN_CLAIMED): the others are kept free for the next call or context.
    private func heldEntries<Key: BitwiseCopyable, Value: BitwiseCopyable>(
        inMap name: String, as keyType: Key.Type, _ empty: Value, spanID: KeyPath<Value, UInt64>
    ) -> Int {
        let fd = mapDescriptor(named: name)
        return keys(inMap: name, as: keyType).count { key in
            var value = empty
            return lookup(fd, key, into: &value) && sonde_span_id_held(value[keyPath: spanID]) != 0
        }
    }

    /// Removes the calls and open streams that can no longer end: those of processes that exited
    /// and those older than `maximumAge` (a call unwound on a goroutine that never ran a probe
    /// again); the records of ended calls left idle; and the trace contexts and waiting injections
    /// of exited processes and of the calls removed. Each removed call or
    /// stream is a span lost, which the result counts. A call is claimed through the BPF object's
    /// claim program, with the compare-and-swap the probes end it with, and a stream's record by
    /// deleting it, as the probes do, so a span is either emitted or counted here, never both. A
    /// live process's context entries go, claimed the same way, when they name nothing that can
    /// still be a parent (see `isStale`), so the map empties at idle; one the goroutine set again
    /// since it was read stays.
    /// - Parameters:
    ///   - maximumAge: Nanoseconds of CLOCK_MONOTONIC after which an open call or stream is given up.
    ///   - isProcessAlive: Whether a traced process (tgid) still runs.
    public func reclaim(olderThan maximumAge: UInt64, isProcessAlive: (UInt32) -> Bool) -> Reclaimed {
        var reclaimed = Reclaimed()
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        let nowNanos = UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
        func older(since start: UInt64, than age: UInt64) -> Bool { nowNanos > start && nowNanos - start > age }
        var alive: [UInt32: Bool] = [:]
        func isAlive(_ tgid: UInt32) -> Bool {
            if let known = alive[tgid] { return known }
            let answer = isProcessAlive(tgid)
            alive[tgid] = answer
            return answer
        }
        let injections = bpf_object__find_map_fd_by_name(object, SONDE_MAP_INJECTIONS)
        func given(up record: sonde_span_record, exited: Bool) {
            if exited { reclaimed.ofExitedProcesses += 1 } else { reclaimed.pastMaximumAge += 1 }
            if record.carrier != 0 {
                _ = delete(injections, sonde_call_key(key: record.carrier, tgid: record.tgid, span_slot: record.span_slot))
            }
        }
        let calls = bpf_object__find_map_fd_by_name(object, SONDE_MAP_CALLS)
        for key in keys(inMap: SONDE_MAP_CALLS) {
            var record = sonde_span_record()
            guard lookup(calls, key, into: &record), record.span_id != SONDE_SPAN_CLAIMED else { continue }
            let exited = !isAlive(key.tgid)
            guard sonde_span_id_held(record.span_id) != 0 else {
                let idle = older(since: max(record.start_ns, record.end_ns), than: Self.idleRecordAge)
                if exited || idle, claim(key, spanID: 0) { reclaimed.idleRecords += 1 }
                continue
            }
            if exited || older(since: record.start_ns, than: maximumAge), claim(key, spanID: record.span_id) {
                given(up: record, exited: exited)
            }
        }
        let streams = bpf_object__find_map_fd_by_name(object, SONDE_MAP_OBJECT_SPANS)
        for key in keys(inMap: SONDE_MAP_OBJECT_SPANS) {
            var record = sonde_span_record()
            guard lookup(streams, key, into: &record) else { continue }
            let exited = !isAlive(record.tgid)
            guard exited || older(since: record.start_ns, than: maximumAge) else { continue }
            var claimed = sonde_span_record()
            guard lookupAndDelete(streams, key, into: &claimed) else { continue }
            guard claimed.span_id == record.span_id else {
                // A new stream took the key between the two reads: it stays.
                _ = withUnsafeBytes(of: key) { key in
                    withUnsafeBytes(of: claimed) { bpf_map_update_elem(streams, key.baseAddress, $0.baseAddress, UInt64(BPF_NOEXIST)) }
                }
                continue
            }
            given(up: claimed, exited: exited)
        }
        for key in keys(inMap: SONDE_MAP_INJECTIONS, as: sonde_call_key.self) where !isAlive(key.tgid) {
            _ = delete(injections, key)
        }
        let contexts = bpf_object__find_map_fd_by_name(object, SONDE_MAP_ACTIVE_CONTEXTS)
        for key in keys(inMap: SONDE_MAP_ACTIVE_CONTEXTS, as: sonde_context_key.self) {
            var context = sonde_trace_context()
            guard lookup(contexts, key, into: &context), context.span_id != SONDE_SPAN_CLAIMED else { continue }
            let exited = !isAlive(key.tgid)
            guard exited || isStale(context, of: key, contexts: contexts, calls: calls) else { continue }
            // Claimed only if the goroutine has not set another context since it was read.
            let entry = sonde_call_key(key: key.key, tgid: key.tgid, span_slot: 0)
            if claim(entry, spanID: context.span_id, in: SONDE_CLAIM_CONTEXTS), !exited { reclaimed.staleContexts += 1 }
        }
        return reclaimed
    }

    /// Whether a live process's context names nothing that can still be a parent, so no probe
    /// would use it: none (an entry kept for the next one), a span whose call has ended, or the copy of a marker (an unsampled root's, a
    /// remote parent's) that a goroutine was handed and that its own goroutine no longer holds.
    /// Such contexts stay on goroutines that make no probe entry again (a connection's read loop);
    /// a marker on its own goroutine is left to the BPF side, which alone knows its call's depth.
    private func isStale(_ context: sonde_trace_context, of key: sonde_context_key, contexts: Int32, calls: Int32) -> Bool {
        if context.span_id == 0 { return true }   // none active: an entry left for the next one
        if context.flags & (SONDE_CONTEXT_UNSAMPLED | SONDE_CONTEXT_REMOTE) != 0 {
            guard context.owner != key.key else { return false }
            var root = sonde_trace_context()
            let rootKey = sonde_context_key(key: context.owner, tgid: key.tgid, pad: 0)
            return !lookup(contexts, rootKey, into: &root) || root.flags != context.flags || root.span_id != context.span_id
        }
        var call = sonde_span_record()
        let callKey = sonde_call_key(key: context.owner, tgid: key.tgid, span_slot: context.span_slot)
        return !lookup(calls, callKey, into: &call) || call.span_id != context.span_id
    }

    /// Takes the entry under `key` (for a context: its key and tgid) from the probes when its span
    /// id is still `spanID` (0: an entry free for the next call or context), and deletes it;
    /// whether it was taken.
    func claim(_ key: sonde_call_key, spanID: UInt64, in map: sonde_claim_map = SONDE_CLAIM_CALLS) -> Bool {
        var request = sonde_claim(key: key, span_id: spanID, map: map.rawValue, pad: 0)
        return withUnsafeMutableBytes(of: &request) { bytes in
            var options = bpf_test_run_opts()
            options.sz = MemoryLayout<bpf_test_run_opts>.size
            options.ctx_in = UnsafeRawPointer(bytes.baseAddress)
            options.ctx_size_in = UInt32(bytes.count)
            return bpf_prog_test_run_opts(claimProgram, &options) == 0 && options.retval == 1
        }
    }

    private func lookupAndDelete<Key: BitwiseCopyable, Value: BitwiseCopyable>(_ fd: Int32, _ key: Key, into value: inout Value) -> Bool {
        withUnsafeBytes(of: key) { keyBytes in
            withUnsafeMutableBytes(of: &value) { bpf_map_lookup_and_delete_elem(fd, keyBytes.baseAddress, $0.baseAddress) == 0 }
        }
    }

    /// The descriptor of one of the object's maps (names in bpf/sonde_abi.h).
    func mapDescriptor(named name: String) -> Int32 {
        bpf_object__find_map_fd_by_name(object, name)
    }

    private func lookup<Key: BitwiseCopyable, Value: BitwiseCopyable>(_ fd: Int32, _ key: Key, into value: inout Value) -> Bool {
        withUnsafeBytes(of: key) { keyBytes in
            withUnsafeMutableBytes(of: &value) { bpf_map_lookup_elem(fd, keyBytes.baseAddress, $0.baseAddress) == 0 }
        }
    }

    private func delete<Key: BitwiseCopyable>(_ fd: Int32, _ key: Key) -> Bool {
        withUnsafeBytes(of: key) { bpf_map_delete_elem(fd, $0.baseAddress) == 0 }
    }

    private func keys(inMap name: String) -> [sonde_call_key] {
        keys(inMap: name, as: sonde_call_key.self)
    }

    /// Every key of a map, each once. A walk that meets concurrent deletes may restart (the
    /// kernel's get-next-key of a missing key returns the first), so it stops after twice the
    /// map's capacity.
    private func keys<Key: BitwiseCopyable>(inMap name: String, as: Key.Type) -> [Key] {
        guard let map = bpf_object__find_map_by_name(object, name) else { return [] }
        let fd = bpf_map__fd(map)
        let steps = 2 * Int(bpf_map__max_entries(map))
        var keys: [Key] = []
        var seen = Set<[UInt8]>()
        var previous: Key?
        let next = UnsafeMutableRawPointer.allocate(byteCount: MemoryLayout<Key>.size, alignment: MemoryLayout<Key>.alignment)
        defer { next.deallocate() }
        for _ in 0..<steps {
            let status = if let previous {
                withUnsafeBytes(of: previous) { bpf_map_get_next_key(fd, $0.baseAddress, next) }
            } else {
                bpf_map_get_next_key(fd, nil, next)
            }
            guard status == 0 else { break }
            let key = next.load(as: Key.self)
            if seen.insert(withUnsafeBytes(of: key) { Array($0) }).inserted { keys.append(key) }
            previous = key
        }
        return keys
    }
}
