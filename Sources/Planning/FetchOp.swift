import BinaryAnalysis

/// One step of a fetch program, interpreted by the generic BPF program (bpf/sonde_abi.h).
/// A program keeps one working value; reads write into the span record's data area.
public enum FetchOp: Sendable, Equatable, CustomStringConvertible {
    case loadRegister(Register)
    /// A value saved at entry, for use at return when registers no longer hold arguments.
    case loadSaved(slot: Int)
    case save(slot: Int)
    case add(Int64)
    case dereference
    /// Stops the program unless the value is this link-time address (relocated for PIE).
    case expectAddress(UInt64, meaning: String)
    case readGoString(into: Int, maxLength: Int)
    case readStringRegisters(pointer: Register, length: Register, into: Int, maxLength: Int)
    case readInteger(size: Int, into: Int)
    case storeValue(into: Int)
    /// At a span's return: the span stays open under this object (see `outlives-call`).
    case setObject

    public var description: String {
        switch self {
        case .loadRegister(let register): return "load \(register)"
        case .loadSaved(let slot): return "load saved[\(slot)]"
        case .save(let slot): return "save to saved[\(slot)]"
        case .add(let offset): return "add \(offset)"
        case .dereference: return "dereference"
        case .expectAddress(let address, let meaning): return "expect 0x\(String(address, radix: 16)) (\(meaning))"
        case .readGoString(let offset, let maxLength): return "read go-string (max \(maxLength)) into data[\(offset)]"
        case .readStringRegisters(let pointer, let length, let offset, let maxLength):
            return "read string \(pointer):\(length) (max \(maxLength)) into data[\(offset)]"
        case .readInteger(let size, let offset): return "read \(size)-byte integer into data[\(offset)]"
        case .storeValue(let offset): return "store value into data[\(offset)]"
        case .setObject: return "keep the span open under this object"
        }
    }
}
