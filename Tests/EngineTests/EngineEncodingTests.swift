import BinaryAnalysis
import Planning
import SondeABI
import XCTest

@testable import Engine

/// The bytes the Engine writes for the BPF program (bpf/sonde_abi.h), and the pre-flight checks.
final class EngineEncodingTests: XCTestCase {
    func testOpsEncodeAsSondeOpStructs() {
        func bytes(_ op: FetchOp, captureIndex: [Int: Int]) -> [UInt8] {
            withUnsafeBytes(of: RecordLayout.encode(op, captureIndex: captureIndex)) { Array($0) }
        }
        XCTAssertEqual(
            bytes(.readGoString(into: 24, maxLength: 128), captureIndex: [24: 1]),
            [7, 0, 24, 0, 128, 0, 1, 0] + [UInt8](repeating: 0, count: 8))
        XCTAssertEqual(
            bytes(.readStringRegisters(pointer: .rdi, length: .rsi, into: 0, maxLength: 200), captureIndex: [0: 0]),
            [10, 5, 0, 0, 200, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0])
        XCTAssertEqual(bytes(.setObject, captureIndex: [:]), [11] + [UInt8](repeating: 0, count: 15))
        XCTAssertEqual(
            bytes(.readCString(into: 40, maxLength: 255), captureIndex: [40: 2]),
            [12, 0, 40, 0, 255, 0, 2, 0] + [UInt8](repeating: 0, count: 8))
        XCTAssertEqual(
            bytes(.findInList(linkOffset: 40, keyOffset: 8, keySize: 1, equals: 67), captureIndex: [:]),
            [13, 1, 40, 0, 8, 0, 0, 0, 67] + [UInt8](repeating: 0, count: 7), "key size in reg, link in out, key offset in len")
        XCTAssertEqual(bytes(.add(-8), captureIndex: [:]), [4, 0, 0, 0, 0, 0, 0, 0, 0xf8] + [UInt8](repeating: 0xff, count: 7))
        XCTAssertEqual(
            bytes(.expectAddress(0x85_eca0, meaning: "t"), captureIndex: [:]),
            [6, 0, 0, 0, 0, 0, 0, 0, 0xa0, 0xec, 0x85, 0, 0, 0, 0, 0])
    }

    func testLoadsAndAddsFoldIntoTheMemoryOpThatFollows() {
        func encoded(_ program: [FetchOp]) -> [[UInt8]] {
            RecordLayout.encode(program, captureIndex: [24: 1, 232: 2]).map { op in withUnsafeBytes(of: op) { Array($0) } }
        }
        func op(_ code: UInt8, reg: UInt8 = 0, out: UInt16 = 0, len: UInt16 = 0, capture: UInt8 = 0, imm: Int64 = 0) -> [UInt8] {
            [code, reg, UInt8(out & 0xff), UInt8(out >> 8), UInt8(len & 0xff), UInt8(len >> 8), capture, 0]
                + withUnsafeBytes(of: imm.littleEndian) { Array($0) }
        }
        // A request's URL path: *(RDI + 16) is the URL, whose Path string is at +56.
        XCTAssertEqual(
            encoded([.loadRegister(.rdi), .add(16), .dereference, .add(56), .readGoString(into: 24, maxLength: 128)]),
            [op(5, reg: 0x85, imm: 16), op(7, out: 24, len: 128, capture: 1, imm: 56)])
        XCTAssertEqual(
            encoded([.loadRegister(.rdi), .add(200), .add(8), .readInteger(size: 8, into: 232)]),
            [op(8, reg: 0x85, out: 232, len: 8, capture: 2, imm: 208)], "adds sum")
        XCTAssertEqual(
            encoded([.loadRegister(.rax), .readCString(into: 24, maxLength: 64)]),
            [op(12, reg: 0x80, out: 24, len: 64, capture: 1)], "RAX is register 0: the flag tells it from the working value")
        XCTAssertEqual(
            encoded([.loadRegister(.rbx), .add(8), .save(slot: 1), .loadSaved(slot: 1), .add(-8), .storeValue(into: 232)]),
            [op(1, reg: 3, imm: 8), op(3, reg: 1), op(2, reg: 1), op(4, imm: -8), op(9, out: 232, capture: 2)],
            "before any other op, a load keeps its adds and adds stay ops")
        XCTAssertEqual(
            encoded([.loadRegister(.rdi), .add(64), .expectAddress(0x85_eca0, meaning: "t"), .add(8), .loadRegister(.rsi)]),
            [op(1, reg: 5, imm: 64), op(6, imm: 0x85_eca0), op(1, reg: 4)],
            "an add a load overwrites is dropped; what ends the program is emitted")
    }

    func testConfigHeaderAndLimits() throws {
        let config = try RecordLayout.encodeConfig(
            role: .startSpan, spanSlot: 3, keyMode: .goroutine, skipFlagsMask: 0x41, siteAddress: 0x62_9184,
            samplingThreshold: TraceSampler(ratio: 0.1).threshold, program: [.loadRegister(.rdi)], captureSlots: [])
        XCTAssertEqual(config.count, 816)
        XCTAssertEqual(Array(config[0..<32]), [1, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0x41, 0, 0, 0, 0, 0, 0, 0, 0x84, 0x91, 0x62, 0, 0, 0, 0, 0])
        XCTAssertEqual(Array(config[32..<40]), [0xff, 0, 0, 0, 0, 0, 0, 0], "no object key")
        XCTAssertEqual(Array(config[40..<48]), [0x00, 0xcd, 0xcc, 0xcc, 0xcc, 0xcc, 0xcc, 0x0c], "sampling_threshold: 0.1 × 2^63")
        XCTAssertEqual(Array(config[48..<56]), [0, 0, 0, 0, 0, 0, 0, 0], "no guard")
        XCTAssertEqual(Array(config[56..<58]), [1, 5], "the first op")
        let guarded = try RecordLayout.encodeConfig(
            role: .endSpan, spanSlot: 3, keyMode: .thread, skipFlagsMask: 0, siteAddress: 0, guarded: SiteGuard(register: .rax, test: .zero),
            program: [], captureSlots: [])
        XCTAssertEqual(Array(guarded[48..<50]), [1, 0], "guard: only when RAX (0) is zero")
        let guardedNonZero = try RecordLayout.encodeConfig(
            role: .enrich, spanSlot: 3, keyMode: .thread, skipFlagsMask: 0, siteAddress: 0, guarded: SiteGuard(register: .rdx, test: .nonZero),
            program: [], captureSlots: [])
        XCTAssertEqual(Array(guardedNonZero[48..<50]), [2, 1], "guard: only when RDX (1) is not zero")
        let keyed = try RecordLayout.encodeConfig(
            role: .endObjectSpan, spanSlot: 3, keyMode: .goroutine, skipFlagsMask: 0, siteAddress: 0x62_9184, objectRegister: .rax,
            program: [], captureSlots: [])
        XCTAssertEqual(Array(keyed[0..<4]), [6, 0, 0, 0])
        XCTAssertEqual(Array(keyed[32..<40]), [0, 0, 0, 0, 0, 0, 0, 0], "RAX is register 0")
        let prefetch = Prefetch(register: .rdi, length: 216, reads: 5)
        let prefetching = try RecordLayout.encodeConfig(
            role: .startSpan, spanSlot: 3, keyMode: .goroutine, skipFlagsMask: 0, siteAddress: 0, program: [], captureSlots: [], prefetch: prefetch)
        XCTAssertEqual(Array(prefetching[36..<40]), [216, 0, 5, 0], "prefetch_length 216, prefetch_register RDI (5)")
        XCTAssertEqual(Array(prefetching[50..<54]), [0, 0, 0, 0], "no second block")
        let objectPrefetch = Prefetch(
            register: .rbx, length: 64, reads: 6, object: Prefetch.ObjectBlock(pointerOffset: 16, length: 112, reads: 4))
        let prefetchingObject = try RecordLayout.encodeConfig(
            role: .startSpan, spanSlot: 3, keyMode: .goroutine, skipFlagsMask: 0, siteAddress: 0, program: [], captureSlots: [],
            prefetch: objectPrefetch)
        XCTAssertEqual(Array(prefetchingObject[36..<40]), [64, 0, 3, 0], "prefetch_length 64, prefetch_register RBX (3)")
        XCTAssertEqual(Array(prefetchingObject[50..<54]), [16, 0, 112, 0], "112 bytes at the pointer 16 bytes into the block")
        let returning = try RecordLayout.encodeConfig(
            role: .endSpan, spanSlot: 3, keyMode: .goroutine, skipFlagsMask: 0, siteAddress: 0, program: [], captureSlots: [], prefetch: prefetch)
        XCTAssertEqual(Array(returning[36..<40]), [0, 0, 0, 0], "only a span's entry prefetches, and this end is not a RET")
        XCTAssertEqual(Array(returning[40..<48]), [0, 0, 0, 0, 0, 0, 0, 0x80], "by default every trace is recorded: 2^63")
        let atReturn = try RecordLayout.encodeConfig(
            role: .endSpan, spanSlot: 3, keyMode: .goroutine, skipFlagsMask: 0, siteAddress: 0, returnSite: .retInstruction, program: [], captureSlots: [])
        XCTAssertEqual(Array(atReturn[36..<40]), [0, 0, 0, 1], "at_return: a RET instruction")
        let afterReturn = try RecordLayout.encodeConfig(
            role: .endSpan, spanSlot: 3, keyMode: .thread, skipFlagsMask: 0, siteAddress: 0, returnSite: .afterReturn, program: [], captureSlots: [])
        XCTAssertEqual(Array(afterReturn[36..<40]), [0, 0, 0, 2], "at_return: after a return probe")
        let afterEndSpan = try RecordLayout.encodeConfig(
            role: .endSpan, spanSlot: 3, keyMode: .goroutine, skipFlagsMask: 0, siteAddress: 0, returnSite: .retAfterEndSpan, program: [], captureSlots: [])
        XCTAssertEqual(Array(afterEndSpan[36..<40]), [0, 0, 0, 4], "at_return: a RET its end-span probe may have passed first")
        XCTAssertThrowsError(try RecordLayout.encodeConfig(
            role: .endSpan, spanSlot: 0, keyMode: .thread, skipFlagsMask: 0, siteAddress: 0,
            program: Array(repeating: .dereference, count: 33), captureSlots: [])) { error in
            XCTAssertEqual("\(error)", "a fetch program has 33 ops; the BPF program runs at most 32 for this probe. Capture fewer values, or reach them by shorter paths")
        }
        XCTAssertEqual(RecordLayout.recordSize, 928)
        XCTAssertEqual(RecordLayout.ringHeaderLength, 80, "the ring buffer carries the fields user space reads, then the captures")
    }

    /// go/runtime's hand-off: the new goroutine in RBX, the creator g0.m.curg in two fused reads,
    /// the first of them (g0.m, the thread's M) kept per thread.
    func testHandOffConfigReachesTheCreatorInTwoReads() throws {
        let creator: [FetchOp] = [.loadRegister(.r14), .add(48), .dereferencePerThread, .add(192), .dereference]
        let config = try RecordLayout.encodeConfig(
            role: .handoff, spanSlot: 0, keyMode: .thread, skipFlagsMask: 0, siteAddress: 0x44_17a0, objectRegister: .rbx,
            program: creator, captureSlots: [])
        XCTAssertEqual(Array(config[0..<4]), [3, 0, 0, 0], "role HANDOFF")
        XCTAssertEqual(Array(config[12..<16]), [2, 0, 0, 0], "two ops")
        XCTAssertEqual(Array(config[32..<36]), [3, 0, 0, 0], "the new goroutine in RBX (3)")
        // DEREFERENCE_PER_THREAD (14) of R14 (0x80 | 14) + 48, then DEREFERENCE (5) of that + 192; 16 bytes per op, imm at +8.
        XCTAssertEqual(Array(config[56..<58]) + Array(config[64..<72]), [14, 0x8e, 48, 0, 0, 0, 0, 0, 0, 0])
        XCTAssertEqual(Array(config[72..<74]) + Array(config[80..<88]), [5, 0, 192, 0, 0, 0, 0, 0, 0, 0])
        XCTAssertEqual(Array(config[88..<90]), [0, 0], "no third op")
        XCTAssertThrowsError(try RecordLayout.encodeConfig(
            role: .handoff, spanSlot: 0, keyMode: .thread, skipFlagsMask: 0, siteAddress: 0, objectRegister: .rbx,
            program: creator + [.add(48), .dereference], captureSlots: [])) { error in
            XCTAssertEqual("\(error)", "a fetch program has 7 ops; the BPF program runs at most 6 for this probe. Capture fewer values, or reach them by shorter paths")
        }
    }

    func testRecordsDecodeIntoOneReusedEventWhileAKeptEventKeepsItsCaptures() {
        func recordBytes(spanID: UInt64, firstByte: UInt8) -> [UInt8] {
            var record = sonde_span_record()
            record.span_id = spanID
            record.tgid = 4242
            record.captured = 0b101
            record.data.0 = firstByte
            return withUnsafeBytes(of: record) { Array($0[RecordLayout.ringRecordStart...]) }
        }
        var event = SpanEvent(
            traceIDHigh: 9, traceIDLow: 9, spanID: 9, parentSpanID: 9, startMonotonicNanos: 9, endMonotonicNanos: 9, callKey: 9, processID: 9,
            spanSlot: 9, failedReads: 9, stoppedEarly: true, capturedMask: 9, data: [])

        XCTAssertTrue(recordBytes(spanID: 1, firstByte: 0xaa).withUnsafeBytes { RecordLayout.decodeRecord($0, into: &event) })
        let kept = event
        XCTAssertTrue(recordBytes(spanID: 2, firstByte: 0xbb).withUnsafeBytes { RecordLayout.decodeRecord($0, into: &event) })

        XCTAssertEqual([kept.spanID, event.spanID], [1, 2])
        XCTAssertEqual([kept.data.first, event.data.first], [0xaa, 0xbb], "the kept event's captures are its own")
        XCTAssertEqual(event.data.count, RecordLayout.dataLength)
        XCTAssertEqual(event.processID, 4242)
        XCTAssertEqual(event.capturedMask, 0b101)
        XCTAssertFalse(event.stoppedEarly)
        // The ring buffer's records end with their last capture.
        let cut = Array(recordBytes(spanID: 3, firstByte: 0xcc).prefix(RecordLayout.ringHeaderLength + 3))
        XCTAssertTrue(cut.withUnsafeBytes { RecordLayout.decodeRecord($0, into: &event) })
        XCTAssertEqual(event.spanID, 3)
        XCTAssertEqual(event.data, [0xcc, 0, 0])
        XCTAssertEqual(kept.data.count, RecordLayout.dataLength, "the kept event's buffer is not the reused one")

        XCTAssertFalse([UInt8](repeating: 0, count: RecordLayout.ringHeaderLength - 1).withUnsafeBytes { RecordLayout.decodeRecord($0, into: &event) })
        let longest = RecordLayout.recordSize - RecordLayout.ringRecordStart
        XCTAssertFalse([UInt8](repeating: 0, count: longest + 1).withUnsafeBytes { RecordLayout.decodeRecord($0, into: &event) })
        XCTAssertEqual(event.spanID, 3, "a record without its fixed fields, or longer than a record, leaves the event as it was")
    }

    func testMissingCapabilitiesAreListed() {
        XCTAssertEqual(
            KernelCapabilities.missing(
                procStatus: "CapEff:\t0000000000000000\n", kernelRelease: "5.10.0-28-amd64", uprobePMUExists: false, hasUprobeMultiLinks: { false }),
            [
                "privileges: run as root, or grant CAP_BPF and CAP_PERFMON (e.g. setcap cap_bpf,cap_perfmon+ep sonde)",
                "uprobes: the kernel has no uprobe event source (/sys/bus/event_source/devices/uprobe); it needs CONFIG_UPROBE_EVENTS",
                "kernel: 5.10.0-28-amd64 is older than 5.17, which the BPF program needs (bpf_loop, BPF cookies, ring buffer)",
            ])
        XCTAssertEqual(
            KernelCapabilities.missing(
                procStatus: "CapEff:\t000000c000000000\n", kernelRelease: "6.18.4", uprobePMUExists: false, hasUprobeMultiLinks: { true }), [],
            "multi-links need no uprobe event source")
        XCTAssertEqual(
            KernelCapabilities.missing(
                procStatus: "CapEff:\t0000000000200000\n", kernelRelease: "6.1.0", uprobePMUExists: true, hasUprobeMultiLinks: { false }), [])
    }

    /// Outgoing trace context needs BPF writes to process memory: lockdown, a missing
    /// CAP_SYS_ADMIN or a kernel that refuses the helper each turn it off, with the reason.
    func testWhyTraceContextCannotBeWritten() {
        let root = "CapEff:\t000001ffffffffff\n"
        XCTAssertEqual(
            KernelCapabilities.traceContextInjectionBlocker(procStatus: root, lockdown: "none [integrity] confidentiality\n", helperAvailable: { true }),
            "kernel lockdown is 'integrity', which forbids BPF writes to process memory")
        XCTAssertEqual(
            KernelCapabilities.traceContextInjectionBlocker(procStatus: "CapEff:\t000000c000000000\n", lockdown: "[none] integrity confidentiality\n", helperAvailable: { true }),
            "Sonde lacks CAP_SYS_ADMIN, which BPF writes to process memory need")
        XCTAssertEqual(
            KernelCapabilities.traceContextInjectionBlocker(procStatus: root, lockdown: nil, helperAvailable: { false }),
            "the kernel refuses BPF writes to process memory (bpf_probe_write_user); kernel lockdown is the usual reason"
                + " (mount securityfs and read /sys/kernel/security/lockdown)")
        XCTAssertNil(KernelCapabilities.traceContextInjectionBlocker(procStatus: root, lockdown: "[none] integrity confidentiality\n", helperAvailable: { true }))
    }

    /// A trace-context program: its path ops, its action and header names in the fixed layout the
    /// BPF program reads.
    func testTraceContextProgramsEncode() throws {
        let traceState = CaptureSlot(name: CaptureSlot.traceStateName, type: .goString, offset: 232, maxLength: 96, ifZero: nil, origin: "DWARF")
        let extract = try RecordLayout.encodeContext(
            [.loadRegister(.rdi), .add(56), .dereference],
            .extract(HeaderExtraction(layout: .goMap(.swiss), traceparent: "Traceparent", tracestate: "Tracestate", traceState: traceState, setsCarrier: true)),
            captureIndex: [0: 0, 232: 1])
        XCTAssertEqual([extract.op_count, extract.action, extract.carrier, extract.sets_carrier], [1, 1, 2, 1], "one folded op: *(RDI + 56)")
        let path = withUnsafeBytes(of: extract.ops) { Array($0.prefix(16)) }
        XCTAssertEqual(path, [5, 0x85, 0, 0, 0, 0, 0, 0, 56, 0, 0, 0, 0, 0, 0, 0])
        XCTAssertEqual([extract.element_size, extract.trace_state_out, extract.trace_state_length], [24, 232, 96])
        XCTAssertEqual([extract.traceparent_length, extract.tracestate_length, extract.trace_state_capture], [11, 10, 1])
        let literals = withUnsafeBytes(of: extract.literals) { Array($0) }
        XCTAssertEqual(literals, Array("Traceparent".utf8) + [0, 0, 0, 0, 0] + Array("Tracestate".utf8) + [0, 0, 0, 0, 0, 0])

        let grpc = try RecordLayout.encodeContext(
            [.loadRegister(.rbx), .add(8)],
            .extract(HeaderExtraction(layout: .fieldSlice(stride: 40), traceparent: "traceparent", tracestate: "tracestate", traceState: nil)),
            captureIndex: [:])
        XCTAssertEqual([UInt16(grpc.carrier), grpc.element_size, UInt16(grpc.tracestate_length)], [3, 40, 10], "looked for, for the span that continues it")
        XCTAssertEqual([grpc.trace_state_out, grpc.trace_state_length], [0, 0], "no record to keep a tracestate in")

        let continuing = try RecordLayout.encodeContext([], .keepRemoteTraceState(traceState), captureIndex: [0: 0, 8: 1, 232: 2])
        XCTAssertEqual([continuing.op_count, continuing.action, continuing.tracestate_length, continuing.trace_state_capture], [0, 0, 0, 2])
        XCTAssertEqual([continuing.trace_state_out, continuing.trace_state_length], [232, 96])

        let inject = try RecordLayout.encodeContext(
            [.loadRegister(.rcx)], .injectHeaderLine(name: "Traceparent", bufferOffset: 16, usedOffset: 40), captureIndex: [:])
        XCTAssertEqual([inject.action, inject.traceparent_length], [2, 11])
        XCTAssertEqual([inject.buffer_offset, inject.used_offset], [16, 40])
        XCTAssertThrowsError(try RecordLayout.encodeContext([], .injectHeaderLine(name: "X-Very-Long-Traceparent", bufferOffset: 0, usedOffset: 0), captureIndex: [:])) {
            XCTAssertEqual("\($0)", "a probe compares or writes the header names [\"X-Very-Long-Traceparent\"]; the BPF program holds at most 2 names of 1 to 15 bytes")
        }
    }
}

/// OTEL_TRACES_SAMPLER and its argument, as the BPF program's threshold.
final class TraceSamplerTests: XCTestCase {
    func testSamplersAndTheirThresholds() throws {
        XCTAssertEqual(try TraceSampler.fromEnvironment([:]), .alwaysOn, "the default is parentbased_always_on")
        XCTAssertEqual(try TraceSampler.fromEnvironment(["OTEL_TRACES_SAMPLER": " "]), .alwaysOn)
        XCTAssertEqual(try TraceSampler.fromEnvironment(["OTEL_TRACES_SAMPLER": "always_off"]), .alwaysOff)
        XCTAssertEqual(try TraceSampler.fromEnvironment(["OTEL_TRACES_SAMPLER": "parentbased_always_off"]), .alwaysOff)
        XCTAssertEqual(try TraceSampler.fromEnvironment(["OTEL_TRACES_SAMPLER": "traceidratio"]), .alwaysOn, "no argument: ratio 1")
        let tenth = try TraceSampler.fromEnvironment(["OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.1"])
        XCTAssertEqual(tenth.ratio, 0.1)
        XCTAssertEqual(tenth.description, "10.0% of traces")
        XCTAssertEqual(tenth.threshold, 922_337_203_685_477_632)  // 0.1 × 2^63, as the Go SDK computes it
        XCTAssertEqual(TraceSampler.alwaysOn.threshold, 1 << 63)
        XCTAssertEqual(TraceSampler.alwaysOff.threshold, 0)
    }

    func testBadSamplerSettingsSayWhatToSet() {
        func error(_ environment: [String: String]) -> String {
            do {
                _ = try TraceSampler.fromEnvironment(environment)
                return "no error"
            } catch {
                return error.description
            }
        }
        XCTAssertEqual(
            error(["OTEL_TRACES_SAMPLER": "jaeger_remote"]),
            "OTEL_TRACES_SAMPLER 'jaeger_remote' is not a sampler sonde knows; use always_on, always_off, traceidratio, "
                + "parentbased_always_on, parentbased_always_off or parentbased_traceidratio")
        XCTAssertEqual(
            error(["OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "1.5"]),
            "OTEL_TRACES_SAMPLER_ARG '1.5' is not a sampling ratio: give a number from 0 to 1, e.g. 0.1 for 10%")
        XCTAssertEqual(
            error(["OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "ten percent"]),
            "OTEL_TRACES_SAMPLER_ARG 'ten percent' is not a sampling ratio: give a number from 0 to 1, e.g. 0.1 for 10%")
    }
}
