import CLibBPF
import Foundation
import SondeABI
import TestSupport
import XCTest

@testable import Engine

/// The kernel maps of calls, open streams and trace contexts are plain hashes that nothing
/// evicts: what can no longer end is reclaimed by Engine and counted. Runs against the real
/// loaded BPF object.
final class StateReclaimTests: XCTestCase {
    private var engine: BPFEngine!

    override func setUpWithError() throws {
        let missing = KernelCapabilities.missing()
        if !missing.isEmpty { throw TestEnvironment.missingKernelCapability(missing) }
        var capacities = BPFEngine.Capacities()
        capacities.calls = 8
        engine = try BPFEngine(capacities: capacities)
    }

    func testTheSpanRingBufferHasTheConfiguredSize() throws {
        let spans = try XCTUnwrap(bpf_object__find_map_by_name(engine.object, SONDE_MAP_SPANS))
        XCTAssertEqual(Int(bpf_map__max_entries(spans)), BPFEngine.Capacities().spanBufferBytes)
        var capacities = BPFEngine.Capacities()
        capacities.spanBufferBytes = 1 << 20
        let smaller = try BPFEngine(capacities: capacities)
        let smallerSpans = try XCTUnwrap(bpf_object__find_map_by_name(smaller.object, SONDE_MAP_SPANS))
        XCTAssertEqual(bpf_map__max_entries(smallerSpans), 1 << 20)
    }

    /// What a thread other than the reader sees of the span ring buffer: nothing unread before any
    /// probe ran, out of the configured size, and no wakeup to wait for.
    func testTheSpanBacklogReadsTheRingBuffersPositions() throws {
        let backlog = try engine.spanBacklog()
        XCTAssertEqual(backlog.read(), SpanBacklog.Reading(unreadBytes: 0, ringBytes: UInt64(BPFEngine.Capacities().spanBufferBytes)))
        XCTAssertEqual(backlog.read().unreadFraction, 0)
        XCTAssertFalse(backlog.wait(timeoutMilliseconds: 0))
        backlog.waker.wake()
        let start = ContinuousClock.now
        XCTAssertFalse(backlog.wait(timeoutMilliseconds: 10_000), "the waker ends the wait; it is no wakeup of the BPF program's")
        XCTAssertLessThan(ContinuousClock.now - start, .seconds(5), "the waker, not the timeout, ended the wait")
    }

    /// Uprobe multi-links from Linux 6.6, found by asking the kernel, not by its version.
    func testMultiLinksWhereTheKernelHasThem() throws {
        let version = KernelCapabilities.currentKernelRelease().split { !$0.isNumber }.prefix(2).compactMap { Int($0) }
        XCTAssertEqual(engine.uprobeLinks, version.lexicographicallyPrecedes([6, 6]) ? .single : .multi)
        XCTAssertEqual(try BPFEngine(uprobeLinks: .single).uprobeLinks, .single)
    }

    /// The pid of a process that has exited (and been reaped).
    private func exitedProcessID() throws -> UInt32 {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/true")
        try process.run()
        process.waitUntilExit()
        return UInt32(process.processIdentifier)
    }

    private func monotonicNow() -> UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
    }

    private func insert<Key, Value>(_ key: Key, _ value: Value, into map: String) {
        var key = key
        var value = value
        XCTAssertEqual(bpf_map_update_elem(engine.mapDescriptor(named: map), &key, &value, UInt64(BPF_ANY)), 0, map)
    }

    private func record(tgid: UInt32, startedAt start: UInt64, spanID: UInt64, endedAt end: UInt64 = 0) -> sonde_span_record {
        var record = sonde_span_record()
        record.tgid = tgid
        record.start_ns = start
        record.end_ns = end
        record.span_id = spanID
        return record
    }

    private func callRecordCount() -> Int {
        var count = 0
        var previous: sonde_call_key?
        var next = sonde_call_key()
        let calls = engine.mapDescriptor(named: SONDE_MAP_CALLS)
        while (previous.map { var key = $0; return bpf_map_get_next_key(calls, &key, &next) } ?? bpf_map_get_next_key(calls, nil, &next)) == 0 {
            count += 1
            previous = next
        }
        return count
    }

    func testStateOfExitedProcessesAndExpiredCallsIsRemovedAndCounted() throws {
        let exited = try exitedProcessID()
        let alive = UInt32(getpid())
        let now = monotonicNow()
        // A call and a stream of an exited process; a call of a live one past the maximum age of 1 s; a fresh call.
        insert(sonde_call_key(key: 0x1000, tgid: exited, span_slot: 0), record(tgid: exited, startedAt: now, spanID: 1), into: SONDE_MAP_CALLS)
        insert(sonde_call_key(key: 0x2000, tgid: exited, span_slot: 3), record(tgid: exited, startedAt: now, spanID: 2), into: SONDE_MAP_OBJECT_SPANS)
        insert(sonde_call_key(key: 0x3000, tgid: alive, span_slot: 0), record(tgid: alive, startedAt: now - 2_000_000_000, spanID: 3), into: SONDE_MAP_CALLS)
        insert(sonde_call_key(key: 0x4000, tgid: alive, span_slot: 1), record(tgid: alive, startedAt: now, spanID: 4), into: SONDE_MAP_CALLS)
        // Records of ended calls (span id 0), kept for the next call: one of the exited process,
        // one of a live process idle for 20 s, and one that ended a moment ago.
        insert(sonde_call_key(key: 0x1000, tgid: exited, span_slot: 1), record(tgid: exited, startedAt: now, spanID: 0, endedAt: now), into: SONDE_MAP_CALLS)
        let idleStart = now - 21_000_000_000
        insert(sonde_call_key(key: 0x8000, tgid: alive, span_slot: 0), record(tgid: alive, startedAt: idleStart, spanID: 0, endedAt: idleStart + 1_000_000_000), into: SONDE_MAP_CALLS)
        insert(sonde_call_key(key: 0x9000, tgid: alive, span_slot: 0), record(tgid: alive, startedAt: now - 1_000, spanID: 0, endedAt: now), into: SONDE_MAP_CALLS)
        // Contexts: one whose span is still open, one whose call is gone, one of the exited process.
        let open = sonde_trace_context(trace_id_high: 9, trace_id_low: 9, span_id: 4, owner: 0x4000, span_slot: 1, flags: 0, stack_depth: 0, trace_state_data: 0, trace_state_length: 0)
        let ended = sonde_trace_context(trace_id_high: 9, trace_id_low: 9, span_id: 3, owner: 0x3000, span_slot: 0, flags: 0, stack_depth: 0, trace_state_data: 0, trace_state_length: 0)
        insert(sonde_context_key(key: 0x4000, tgid: alive, pad: 0), open, into: SONDE_MAP_ACTIVE_CONTEXTS)
        insert(sonde_context_key(key: 0x5000, tgid: alive, pad: 0), ended, into: SONDE_MAP_ACTIVE_CONTEXTS)
        insert(sonde_context_key(key: 0x1000, tgid: exited, pad: 0), open, into: SONDE_MAP_ACTIVE_CONTEXTS)
        // An entry whose goroutine has no context active any more (span id 0), kept by the BPF side.
        var none = ended
        none.span_id = 0
        insert(sonde_context_key(key: 0xa000, tgid: alive, pad: 0), none, into: SONDE_MAP_ACTIVE_CONTEXTS)
        // Markers: an unsampled root's on its own goroutine, the copy it handed a goroutine it
        // started, and a copy of a root marker that is gone (its request ended).
        let marker = sonde_trace_context(
            trace_id_high: 7, trace_id_low: 7, span_id: 70, owner: 0x6000, span_slot: 0, flags: SONDE_CONTEXT_UNSAMPLED, stack_depth: 96,
            trace_state_data: 0, trace_state_length: 0)
        var endedMarker = marker
        endedMarker.owner = 0x7000
        insert(sonde_context_key(key: 0x6000, tgid: alive, pad: 0), marker, into: SONDE_MAP_ACTIVE_CONTEXTS)
        insert(sonde_context_key(key: 0x6001, tgid: alive, pad: 0), marker, into: SONDE_MAP_ACTIVE_CONTEXTS)
        insert(sonde_context_key(key: 0x7001, tgid: alive, pad: 0), endedMarker, into: SONDE_MAP_ACTIVE_CONTEXTS)
        XCTAssertEqual(engine.openCalls(), 4)
        XCTAssertEqual(engine.activeContexts(), 6, "the entry with no context is not one")

        let reclaimed = engine.reclaim(olderThan: 1_000_000_000) { $0 != exited }
        var expected = BPFEngine.Reclaimed()
        expected.ofExitedProcesses = 2
        expected.pastMaximumAge = 1
        expected.staleContexts = 3
        expected.idleRecords = 2
        XCTAssertEqual(reclaimed, expected)
        XCTAssertEqual(engine.openCalls(), 1, "only the fresh call of the live process stays")
        XCTAssertEqual(callRecordCount(), 2, "and the record of the call that ended a moment ago")
        // Contexts that can still be a parent stay: the open span's, the root marker and its copy.
        var left: [UInt64] = []
        var previous: sonde_context_key?
        var next = sonde_context_key()
        let contexts = engine.mapDescriptor(named: SONDE_MAP_ACTIVE_CONTEXTS)
        while (previous.map { var key = $0; return bpf_map_get_next_key(contexts, &key, &next) } ?? bpf_map_get_next_key(contexts, nil, &next)) == 0 {
            left.append(next.key)
            previous = next
        }
        XCTAssertEqual(left.sorted(), [0x4000, 0x6000, 0x6001])
    }

    /// Engine takes a call or a trace context from the probes only while it is the one Engine
    /// read: a probe that ended it (span id 0) or set a new one (another id) in between keeps it.
    func testAClaimTakesOnlyTheEntryItNames() {
        let now = monotonicNow()
        let key = sonde_call_key(key: 0x1000, tgid: 1, span_slot: 0)
        insert(key, record(tgid: 1, startedAt: now, spanID: 5), into: SONDE_MAP_CALLS)
        XCTAssertFalse(engine.claim(key, spanID: 4))
        XCTAssertFalse(engine.claim(key, spanID: 0))
        XCTAssertEqual(engine.openCalls(), 1)
        XCTAssertTrue(engine.claim(key, spanID: 5))
        XCTAssertEqual(callRecordCount(), 0)
        XCTAssertFalse(engine.claim(key, spanID: 5), "already taken")
        // A nested call's record (level 1) is taken by deleting it.
        let nested = sonde_call_key(key: 0x1000, tgid: 1, span_slot: 1 << SONDE_NESTING_SHIFT)
        insert(nested, record(tgid: 1, startedAt: now, spanID: 6), into: SONDE_MAP_CALLS)
        XCTAssertFalse(engine.claim(nested, spanID: 7))
        XCTAssertTrue(engine.claim(nested, spanID: 6))
        XCTAssertEqual(callRecordCount(), 0)
        // A trace context entry, under its goroutine and process.
        let context = sonde_trace_context(trace_id_high: 1, trace_id_low: 2, span_id: 8, owner: 0x1000, span_slot: 0, flags: 0, stack_depth: 0, trace_state_data: 0, trace_state_length: 0)
        insert(sonde_context_key(key: 0x1000, tgid: 1, pad: 0), context, into: SONDE_MAP_ACTIVE_CONTEXTS)
        XCTAssertFalse(engine.claim(key, spanID: 8), "no call under that key")
        XCTAssertFalse(engine.claim(key, spanID: 9, in: SONDE_CLAIM_CONTEXTS))
        XCTAssertEqual(engine.activeContexts(), 1)
        XCTAssertTrue(engine.claim(key, spanID: 8, in: SONDE_CLAIM_CONTEXTS))
        XCTAssertEqual(engine.activeContexts(), 0)
    }

    /// The map of calls holds exactly its capacity: a plain hash, not an LRU that would evict
    /// early and lose calls without a count. The BPF side counts what does not fit.
    func testCallsMapHoldsItsWholeCapacity() {
        let now = monotonicNow()
        for index in 0..<8 {
            insert(sonde_call_key(key: UInt64(index), tgid: 1, span_slot: 0), record(tgid: 1, startedAt: now, spanID: 1), into: SONDE_MAP_CALLS)
        }
        var key = sonde_call_key(key: 99, tgid: 1, span_slot: 0)
        var value = record(tgid: 1, startedAt: now, spanID: 1)
        XCTAssertEqual(bpf_map_update_elem(engine.mapDescriptor(named: SONDE_MAP_CALLS), &key, &value, UInt64(BPF_ANY)), -E2BIG)
        XCTAssertEqual(engine.openCalls(), 8)
    }
}
