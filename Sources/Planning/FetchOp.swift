import BinaryAnalysis
import ProbePacks

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
    /// Trace-context programs: the new client span's context waits under this value (its
    /// request's header map) for an `inject-trace-context` probe.
    case setCarrier
    /// The value is a Go map[string][]string: it becomes the address of the first string stored
    /// under `key` (kept in the probe's literal slot `literalSlot`), or the capture is absent.
    case findInGoMap(key: String, literalSlot: Int, layout: GoMapLayout, elementSize: Int)
    /// Trace-context programs: the value points at a Go string holding a W3C traceparent, which
    /// becomes the span's remote parent when valid.
    case parseTraceparent
    /// Trace-context programs: appends `name: <traceparent>\r\n` to the buffered writer the value
    /// points at (its byte slice and used count at these offsets) when it fits.
    case writeHeaderLine(name: String, literalSlot: Int, bufferOffset: Int, usedOffset: Int)

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
        case .setCarrier: return "the span's trace context waits under this value"
        case .findInGoMap(let key, _, let layout, _): return "find \"\(key)\" in the Go map (\(layout))"
        case .parseTraceparent: return "parse a W3C traceparent: the remote parent"
        case .writeHeaderLine(let name, _, let buffer, let used):
            return "WRITE TO TARGET: append \"\(name): <traceparent>\" to the buffer at +\(buffer) (used count at +\(used))"
        }
    }
}

/// How a Go map stores its entries: the runtime changed it in Go 1.24.
public enum GoMapLayout: String, Sendable, Equatable, CustomStringConvertible {
    /// Go 1.17-1.23 (and 1.24-1.25 built with GOEXPERIMENT=noswissmap): hmap buckets.
    case buckets
    /// Go 1.24 on: internal/runtime/maps, Swiss tables.
    case swiss

    /// The layout a binary built by this Go release uses, from its version string
    /// (`go1.24.1`, `go1.24.1 X:noswissmap`).
    public init?(goVersion: String) {
        guard let version = Version(parsing: goVersion) else { return nil }
        let isSwiss = version >= Version(parsing: "1.24")! && !goVersion.contains("noswissmap")
        self = isSwiss ? .swiss : .buckets
    }

    public var description: String { self == .swiss ? "Go 1.24+ swiss tables" : "Go <= 1.23 buckets" }
}
