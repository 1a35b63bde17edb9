import BinaryAnalysis
import Planning

/// Byte layouts shared with bpf/sonde_abi.h: the probe configuration written to the
/// `probe_configs` map and the span record read from the ring buffer.
enum RecordLayout {
    static let maxOps = 32
    static let dataSize = 512
    static let maxString = 255
    static let savedSlots = 4
    static let opSize = 16
    /// sizeof(struct call_key): the call's goroutine, thread or object, tgid and span slot.
    static let callKeySize = 16
    static let configSize = 40 + maxOps * opSize
    /// `object_register` of a site that keys nothing by object.
    static let noObjectRegister: UInt32 = 0xff
    static let dataOffset = 96 + 8 * savedSlots
    /// sizeof(struct sonde_span_record): the data area plus slack, rounded up to 8.
    static let recordSize = (dataOffset + dataSize + maxString + 2 + 7) / 8 * 8

    enum Role: UInt32 {
        case startSpan = 1
        case endSpan = 2
        case startHandoff = 3
        case endHandoff = 4
        case enrich = 5
        case endObjectSpan = 6
    }

    /// Encodes one probe configuration; throws when the program is longer than the BPF side runs.
    static func encodeConfig(
        role: Role, spanSlot: UInt32, keyMode: CallKeyMode, skipFlagsMask: UInt64, siteAddress: UInt64, objectRegister: Register? = nil,
        program: [FetchOp], captureSlots: [CaptureSlot]
    ) throws -> [UInt8] {
        guard program.count <= maxOps else {
            throw EngineError.programTooLong(ops: program.count, limit: maxOps)
        }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(configSize)
        append(role.rawValue, to: &bytes)
        append(spanSlot, to: &bytes)
        append(keyMode.rawValue, to: &bytes)
        append(UInt32(program.count), to: &bytes)
        append(skipFlagsMask, to: &bytes)
        append(siteAddress, to: &bytes)
        append(objectRegister.map { UInt32($0.rawValue) } ?? noObjectRegister, to: &bytes)
        append(UInt32(0), to: &bytes)
        let captureIndex = Dictionary(uniqueKeysWithValues: captureSlots.enumerated().map { ($1.offset, $0) })
        for op in program { bytes += encode(op, captureIndex: captureIndex) }
        bytes += [UInt8](repeating: 0, count: configSize - bytes.count)
        return bytes
    }

    /// `captureIndex` maps a data offset to the capture stored there, whose bit the op sets.
    static func encode(_ op: FetchOp, captureIndex: [Int: Int]) -> [UInt8] {
        let (code, register, out, length, immediate): (UInt8, UInt8, UInt16, UInt16, Int64)
        switch op {
        case .loadRegister(let reg): (code, register, out, length, immediate) = (1, UInt8(reg.rawValue), 0, 0, 0)
        case .loadSaved(let slot): (code, register, out, length, immediate) = (2, UInt8(slot), 0, 0, 0)
        case .save(let slot): (code, register, out, length, immediate) = (3, UInt8(slot), 0, 0, 0)
        case .add(let offset): (code, register, out, length, immediate) = (4, 0, 0, 0, offset)
        case .dereference: (code, register, out, length, immediate) = (5, 0, 0, 0, 0)
        case .expectAddress(let address, _): (code, register, out, length, immediate) = (6, 0, 0, 0, Int64(bitPattern: address))
        case .readGoString(let into, let maxLength): (code, register, out, length, immediate) = (7, 0, UInt16(into), UInt16(maxLength), 0)
        case .readInteger(let size, let into): (code, register, out, length, immediate) = (8, 0, UInt16(into), UInt16(size), 0)
        case .storeValue(let into): (code, register, out, length, immediate) = (9, 0, UInt16(into), 0, 0)
        case .readStringRegisters(let pointer, let lengthRegister, let into, let maxLength):
            (code, register, out, length, immediate) = (10, UInt8(pointer.rawValue), UInt16(into), UInt16(maxLength), Int64(lengthRegister.rawValue))
        case .setObject: (code, register, out, length, immediate) = (11, 0, 0, 0, 0)
        }
        var bytes = [code, register]
        append(out, to: &bytes)
        append(length, to: &bytes)
        bytes += [UInt8(captureIndex[Int(out)] ?? 0), 0]
        append(immediate, to: &bytes)
        return bytes
    }

    static func decodeRecord(_ raw: UnsafeRawBufferPointer) -> SpanEvent? {
        guard raw.count >= recordSize else { return nil }
        func word(_ offset: Int) -> UInt64 { raw.loadUnaligned(fromByteOffset: offset, as: UInt64.self) }
        func half(_ offset: Int) -> UInt32 { raw.loadUnaligned(fromByteOffset: offset, as: UInt32.self) }
        return SpanEvent(
            traceIDHigh: word(0), traceIDLow: word(8), spanID: word(16), parentSpanID: word(24),
            startMonotonicNanos: word(32), endMonotonicNanos: word(40), callKey: word(48),
            processID: Int32(bitPattern: half(64)), spanSlot: half(68), failedReads: half(72), stoppedEarly: half(76) != 0,
            capturedMask: half(80),
            data: Array(raw[dataOffset..<(dataOffset + dataSize + maxString + 2)]))
    }

    private static func append<T: FixedWidthInteger>(_ value: T, to bytes: inout [UInt8]) {
        withUnsafeBytes(of: value.littleEndian) { bytes += $0 }
    }
}
