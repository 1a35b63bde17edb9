import BinaryAnalysis
import Planning
import SondeABI

/// Encodes probe configurations for the `probe_configs` map and decodes span records from the
/// ring buffer, through the C structs of bpf/sonde_abi.h: sizes, offsets and op codes come from
/// the header, never restated here.
enum RecordLayout {
    static let configSize = MemoryLayout<sonde_probe_config>.size
    static let recordSize = MemoryLayout<sonde_span_record>.size

    /// What a probe site does to tracing state (`enum sonde_role`).
    enum Role {
        case startSpan, endSpan, handoff, enrich, endObjectSpan, inject, extract

        var rawValue: UInt32 {
            switch self {
            case .startSpan: SONDE_ROLE_START_SPAN.rawValue
            case .endSpan: SONDE_ROLE_END_SPAN.rawValue
            case .handoff: SONDE_ROLE_HANDOFF.rawValue
            case .enrich: SONDE_ROLE_ENRICH.rawValue
            case .endObjectSpan: SONDE_ROLE_END_OBJECT_SPAN.rawValue
            case .inject: SONDE_ROLE_INJECT.rawValue
            case .extract: SONDE_ROLE_EXTRACT.rawValue
            }
        }
    }

    /// Where an end site runs, for the BPF side to tell nested calls apart by stack depth
    /// (`enum sonde_return_site`).
    enum ReturnSite {
        /// An end-span probe's site in another function: depth unknown.
        case elsewhere
        /// A RET of the span's own function: the stack is as deep as at its entry site.
        case retInstruction
        /// A return probe: the call has returned, its return address popped.
        case afterReturn
        /// A result branch in the body of the span's own Go function: its depth is its frame's.
        case insideGoFrame
        /// A RET of the span's own function that its end-span probe may have passed first: only a
        /// call entered at this depth ends there, and none left is no error.
        case retAfterEndSpan

        var rawValue: UInt8 {
            switch self {
            case .elsewhere: UInt8(SONDE_NOT_AT_RETURN.rawValue)
            case .retInstruction: UInt8(SONDE_AT_RET_INSTRUCTION.rawValue)
            case .afterReturn: UInt8(SONDE_AFTER_RETURN.rawValue)
            case .insideGoFrame: UInt8(SONDE_IN_GO_FRAME.rawValue)
            case .retAfterEndSpan: UInt8(SONDE_AT_RET_AFTER_END_SPAN.rawValue)
            }
        }
    }

    /// Encodes one probe configuration; throws when the program is longer than the BPF side runs
    /// (Planning refuses such probes first, so this guards the encoder alone).
    static func encodeConfig(
        role: Role, spanSlot: UInt32, keyMode: CallKeyMode, skipFlagsMask: UInt64, siteAddress: UInt64, returnSite: ReturnSite = .elsewhere,
        samplingThreshold: UInt64 = SONDE_SAMPLE_ALL, objectRegister: Register? = nil, guarded: SiteGuard? = nil,
        program: [FetchOp], captureSlots: [CaptureSlot], contextProgram: [FetchOp] = [], contextAction: TraceContextAction? = nil,
        prefetch: Prefetch? = nil
    ) throws -> [UInt8] {
        let opLimit = Int(role == .handoff ? SONDE_MAX_CREATOR_OPS : SONDE_MAX_OPS)
        guard program.count <= opLimit else {
            throw EngineError.programTooLong(ops: program.count, limit: opLimit)
        }
        guard contextProgram.count <= Int(SONDE_MAX_CONTEXT_OPS) else {
            throw EngineError.programTooLong(ops: contextProgram.count, limit: Int(SONDE_MAX_CONTEXT_OPS))
        }
        let captureIndex = Dictionary(uniqueKeysWithValues: captureSlots.enumerated().map { ($1.offset, $0) })
        let ops = encode(program, captureIndex: captureIndex)
        var config = sonde_probe_config()
        config.role = role.rawValue
        config.span_slot = spanSlot
        config.key_mode = keyMode.rawValue
        config.op_count = UInt32(ops.count)
        config.skip_flags_mask = skipFlagsMask
        config.site_address = siteAddress
        config.at_return = returnSite.rawValue
        config.sampling_threshold = samplingThreshold
        if let guarded {
            config.guard = UInt8((guarded.test == .zero ? SONDE_GUARD_ZERO : SONDE_GUARD_NON_ZERO).rawValue)
            config.guard_register = UInt8(guarded.register.rawValue)
        }
        config.object_register = objectRegister.map { UInt32($0.rawValue) } ?? UInt32(SONDE_NO_OBJECT_REGISTER)
        if let prefetch, role == .startSpan {
            config.prefetch_register = UInt8(prefetch.register.rawValue)
            config.prefetch_length = UInt16(min(prefetch.length, Prefetch.maxLength))
            if let object = prefetch.object {
                config.object_prefetch_offset = UInt16(object.pointerOffset)
                config.object_prefetch_length = UInt16(min(object.length, Prefetch.maxLength))
            }
        }
        withUnsafeMutableBytes(of: &config.ops) { slots in
            // A homogeneous tuple of sonde_op is already bound to sonde_op.
            let typed = UnsafeMutableBufferPointer(start: slots.baseAddress!.assumingMemoryBound(to: sonde_op.self), count: Int(SONDE_MAX_OPS))
            for (index, op) in ops.enumerated() { typed[index] = op }
        }
        if let contextAction {
            config.context = try encodeContext(contextProgram, contextAction, captureIndex: captureIndex)
        }
        return withUnsafeBytes(of: config) { Array($0) }
    }

    /// A trace-context program: the ops reaching the headers, the action there, the header names.
    static func encodeContext(_ program: [FetchOp], _ action: TraceContextAction, captureIndex: [Int: Int]) throws -> sonde_context_program {
        var context = sonde_context_program()
        let ops = encode(program, captureIndex: [:])
        context.op_count = UInt8(ops.count)
        withUnsafeMutableBytes(of: &context.ops) { slots in
            let typed = UnsafeMutableBufferPointer(start: slots.baseAddress!.assumingMemoryBound(to: sonde_op.self), count: Int(SONDE_MAX_CONTEXT_OPS))
            for (index, op) in ops.enumerated() { typed[index] = op }
        }
        /// A remote parent's tracestate goes into this slot of the record.
        func keepTraceState(in slot: CaptureSlot) {
            context.trace_state_out = UInt16(slot.offset)
            context.trace_state_length = UInt16(slot.maxLength)
            context.trace_state_capture = UInt8(captureIndex[slot.offset] ?? 0)
        }
        let names: [String]
        switch action {
        case .extract(let extraction):
            context.action = UInt8(SONDE_CONTEXT_EXTRACT.rawValue)
            switch extraction.layout {
            case .goMap(let layout):
                context.carrier = UInt8((layout == .swiss ? SONDE_CARRIER_GO_MAP_SWISS : SONDE_CARRIER_GO_MAP_BUCKETS).rawValue)
                context.element_size = UInt16(goStringSliceSize)
            case .fieldSlice(let stride):
                context.carrier = UInt8(SONDE_CARRIER_FIELD_SLICE.rawValue)
                context.element_size = UInt16(stride)
            }
            context.sets_carrier = extraction.setsCarrier ? 1 : 0
            // The tracestate is looked for even where this probe does not keep it: a remote
            // parent carries it to the span that does.
            names = [extraction.traceparent, extraction.tracestate]
            if let slot = extraction.traceState { keepTraceState(in: slot) }
        case .injectHeaderLine(let name, let bufferOffset, let usedOffset):
            context.action = UInt8(SONDE_CONTEXT_INJECT.rawValue)
            context.buffer_offset = UInt16(bufferOffset)
            context.used_offset = UInt16(usedOffset)
            names = [name]
        case .keepRemoteTraceState(let slot):
            keepTraceState(in: slot)
            return context
        }
        let slotSize = Int(SONDE_LITERAL_SLOT_SIZE)
        guard names.allSatisfy({ !$0.isEmpty && $0.utf8.count < slotSize }) else {
            throw EngineError.literalsTooLong(names, slots: Int(SONDE_LITERAL_SLOTS), bytes: slotSize - 1)
        }
        context.traceparent_length = UInt8(names[0].utf8.count)
        context.tracestate_length = names.count > 1 ? UInt8(names[1].utf8.count) : 0
        withUnsafeMutableBytes(of: &context.literals) { bytes in
            for (slot, name) in names.enumerated() {
                for (index, byte) in name.utf8.enumerated() { bytes[slot * slotSize + index] = byte }
            }
        }
        return context
    }

    /// A Go []string: data, length, capacity.
    static let goStringSliceSize = 24

    /// A program's ops, each load of a register and each add folded into the memory op that
    /// follows it (see `SONDE_OP_FROM_REGISTER`): the BPF loop pays a call per op, and a capture
    /// such as `load RDI; add 16; dereference; add 56; read go-string` becomes two ops. The
    /// working value after each folded op is what the unfolded ones would have left.
    static func encode(_ program: [FetchOp], captureIndex: [Int: Int]) -> [sonde_op] {
        var encoded: [sonde_op] = []
        var loaded: Register?   // a load not emitted yet
        var offset: Int64 = 0   // adds not emitted yet, after that load or on the working value
        func emitPending() {
            if let loaded {
                var load = encode(.loadRegister(loaded), captureIndex: captureIndex)
                load.imm = offset
                encoded.append(load)
            } else if offset != 0 {
                encoded.append(encode(.add(offset), captureIndex: captureIndex))
            }
            loaded = nil
            offset = 0
        }
        for op in program {
            switch op {
            case .loadRegister(let register):
                loaded = register
                offset = 0
            case .add(let added):
                offset &+= added
            case .dereference, .dereferencePerThread, .readGoString, .readInteger, .readCString:
                var memoryOp = encode(op, captureIndex: captureIndex)
                if let loaded { memoryOp.reg = UInt8(SONDE_OP_FROM_REGISTER) | UInt8(loaded.rawValue) }
                memoryOp.imm = offset
                encoded.append(memoryOp)
                loaded = nil
                offset = 0
            default:
                emitPending()
                encoded.append(encode(op, captureIndex: captureIndex))
            }
        }
        emitPending()
        return encoded
    }

    /// `captureIndex` maps a data offset to the capture stored there, whose bit the op sets.
    static func encode(_ op: FetchOp, captureIndex: [Int: Int]) -> sonde_op {
        var encoded = sonde_op()
        func set(_ code: sonde_op_code, register: UInt8 = 0, out: Int = 0, length: Int = 0, immediate: Int64 = 0) {
            encoded.code = UInt8(code.rawValue)
            encoded.reg = register
            encoded.out = UInt16(out)
            encoded.len = UInt16(length)
            encoded.imm = immediate
        }
        switch op {
        case .loadRegister(let register): set(SONDE_OP_LOAD_REGISTER, register: UInt8(register.rawValue))
        case .loadSaved(let slot): set(SONDE_OP_LOAD_SAVED, register: UInt8(slot))
        case .save(let slot): set(SONDE_OP_SAVE, register: UInt8(slot))
        case .add(let offset): set(SONDE_OP_ADD, immediate: offset)
        case .dereference: set(SONDE_OP_DEREFERENCE)
        case .dereferencePerThread: set(SONDE_OP_DEREFERENCE_PER_THREAD)
        case .expectAddress(let address, _): set(SONDE_OP_EXPECT_ADDRESS, immediate: Int64(bitPattern: address))
        case .readGoString(let into, let maxLength): set(SONDE_OP_READ_GO_STRING, out: into, length: maxLength)
        case .readInteger(let size, let into): set(SONDE_OP_READ_INTEGER, out: into, length: size)
        case .storeValue(let into): set(SONDE_OP_STORE_VALUE, out: into)
        case .readStringRegisters(let pointer, let lengthRegister, let into, let maxLength):
            set(SONDE_OP_READ_STRING_REGISTERS, register: UInt8(pointer.rawValue), out: into, length: maxLength, immediate: Int64(lengthRegister.rawValue))
        case .setObject: set(SONDE_OP_SET_OBJECT)
        case .readCString(let into, let maxLength): set(SONDE_OP_READ_C_STRING, out: into, length: maxLength)
        case .findInList(let link, let key, let size, let value):
            set(SONDE_OP_FIND_IN_LIST, register: UInt8(size), out: link, length: key, immediate: value)
        }
        encoded.capture = UInt8(captureIndex[Int(encoded.out)] ?? 0)
        return encoded
    }

    /// The capture area of a record: the data array and its slack.
    static let dataOffset = MemoryLayout<sonde_span_record>.offset(of: \.data)!
    static let dataLength = MemoryLayout.size(ofValue: sonde_span_record().data)
    /// Where the ring buffer's copy of a record starts: the probes' own state before it stays in the kernel.
    static let ringRecordStart = MemoryLayout<sonde_span_record>.offset(of: \.trace_id_high)!
    /// The fixed fields of a ring buffer record, before its captures.
    static let ringHeaderLength = dataOffset - ringRecordStart

    /// Overwrites `event` with the ring buffer record in `raw`, copying the capture area into the
    /// event's own buffer: the ring-buffer reader decodes every record into one event, so a record
    /// allocates nothing once that buffer exists (issue 7). A ring buffer record is the record from
    /// `trace_id_high` to its last capture (`data_length`). Returns false, leaving `event` as it
    /// was, when `raw` is shorter than a record's fixed fields or longer than a whole record.
    static func decodeRecord(_ raw: UnsafeRawBufferPointer, into event: inout SpanEvent) -> Bool {
        guard raw.count >= ringHeaderLength, raw.count <= recordSize - ringRecordStart else { return false }
        var record = sonde_span_record()
        withUnsafeMutableBytes(of: &record) {
            UnsafeMutableRawBufferPointer(rebasing: $0[ringRecordStart..<dataOffset])
                .copyMemory(from: UnsafeRawBufferPointer(rebasing: raw[..<ringHeaderLength]))
        }
        var data: [UInt8] = []
        swap(&data, &event.data)  // the buffer stays uniquely referenced, so it is written in place
        data.removeAll(keepingCapacity: true)
        data.append(contentsOf: UnsafeRawBufferPointer(rebasing: raw[ringHeaderLength..<min(raw.count, ringHeaderLength + dataLength)]))
        event = SpanEvent(
            traceIDHigh: record.trace_id_high, traceIDLow: record.trace_id_low, spanID: record.span_id, parentSpanID: record.parent_span_id,
            startMonotonicNanos: record.start_ns, endMonotonicNanos: record.end_ns, callKey: record.key,
            processID: Int32(bitPattern: record.tgid), spanSlot: record.span_slot, failedReads: record.failed_reads,
            stoppedEarly: record.stopped != 0, capturedMask: record.captured,
            parentIsRemote: record.context_flags & SONDE_PARENT_REMOTE != 0, data: data)
        return true
    }
}
