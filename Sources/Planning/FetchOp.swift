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
    /// A dereference whose result is the same whenever the running thread reads that address (the
    /// running goroutine's `g.m`, the thread's M): read once, then kept per thread (hand-offs).
    case dereferencePerThread
    /// Stops the program unless the value is this link-time address (relocated for PIE).
    case expectAddress(UInt64, meaning: String)
    case readGoString(into: Int, maxLength: Int)
    case readStringRegisters(pointer: Register, length: Register, into: Int, maxLength: Int)
    /// The value is a C `char *`: copies the NUL-terminated string it points at.
    case readCString(into: Int, maxLength: Int)
    /// The working value is a linked list's first node: walk it to the first node whose
    /// `keySize`-byte member at `keyOffset` equals `equals` (through the pointer at `linkOffset`).
    case findInList(linkOffset: Int, keyOffset: Int, keySize: Int, equals: Int64)
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
        case .dereferencePerThread: return "dereference (once per thread)"
        case .expectAddress(let address, let meaning): return "expect 0x\(String(address, radix: 16)) (\(meaning))"
        case .readGoString(let offset, let maxLength): return "read go-string (max \(maxLength)) into data[\(offset)]"
        case .readStringRegisters(let pointer, let length, let offset, let maxLength):
            return "read string \(pointer):\(length) (max \(maxLength)) into data[\(offset)]"
        case .readCString(let offset, let maxLength): return "read c-string (max \(maxLength)) into data[\(offset)]"
        case .findInList(let link, let key, let size, let value):
            return "find the list node whose \(size)-byte +\(key) is \(value) (next at +\(link))"
        case .readInteger(let size, let offset): return "read \(size)-byte integer into data[\(offset)]"
        case .storeValue(let offset): return "store value into data[\(offset)]"
        case .setObject: return "keep the span open under this object"
        }
    }
}

/// What a trace-context program does once its ops have reached a request's headers (the value
/// they leave): one fixed step, which the BPF program runs outside its op loop.
public enum TraceContextAction: Sendable, Equatable, CustomStringConvertible {
    /// Reads the traceparent (a remote parent, when valid) and tracestate the headers carry.
    case extract(HeaderExtraction)
    /// Appends `name: <traceparent>\r\n` to the buffered writer the value points at, whose byte
    /// slice and count of bytes used are at these offsets, when it fits.
    case injectHeaderLine(name: String, bufferOffset: Int, usedOffset: Int)
    /// Nothing to read here: the span takes a remote parent from the context an
    /// `extract-trace-context` probe set, and keeps its tracestate in this slot.
    case keepRemoteTraceState(CaptureSlot)

    public var description: String {
        switch self {
        case .extract(let extraction): return extraction.description
        case .keepRemoteTraceState(let slot):
            return "under a remote parent another probe extracted: keep its tracestate (into data[\(slot.offset)])"
        case .injectHeaderLine(let name, let buffer, let used):
            return "WRITE TO THE TRACED PROCESS: append \"\(name): <traceparent>\" to the writer's buffer at +\(buffer) (bytes used at +\(used))"
        }
    }
}

/// Where the incoming trace context is, and where it goes.
public struct HeaderExtraction: Sendable, Equatable, CustomStringConvertible {
    public var layout: HeaderLayout
    /// The header names, as the carrier spells them.
    public var traceparent: String
    public var tracestate: String
    /// Where a remote parent's tracestate goes in the record; nil when it is not kept.
    public var traceState: CaptureSlot?
    /// A client span's own context waits under these headers (a map pointer) for an
    /// `inject-trace-context` probe.
    public var setsCarrier: Bool

    public init(layout: HeaderLayout, traceparent: String, tracestate: String, traceState: CaptureSlot?, setsCarrier: Bool = false) {
        self.layout = layout
        self.traceparent = traceparent
        self.tracestate = tracestate
        self.traceState = traceState
        self.setsCarrier = setsCarrier
    }

    public var description: String {
        let kept = traceState.map { " and \"\(tracestate)\" (into data[\($0.offset)])" } ?? ""
        let carrier = setsCarrier ? "; the span's own context waits under these headers to be sent" : ""
        return "find \"\(traceparent)\"\(kept) in the \(layout): a valid traceparent is the remote parent\(carrier)"
    }
}

/// How a request's headers are stored.
public enum HeaderLayout: Sendable, Equatable, CustomStringConvertible {
    /// A Go map[string][]string; the first value of a key counts.
    case goMap(GoMapLayout)
    /// A Go slice of {Name, Value string, ...} fields this many bytes apart (hpack.HeaderField).
    case fieldSlice(stride: Int)

    /// golang.org/x/net/http2/hpack.HeaderField: Name, Value string; Sensitive bool (padded).
    public static let hpackHeaderFieldSize = 40

    public var description: String {
        switch self {
        case .goMap(let layout): return "Go map (\(layout))"
        case .fieldSlice(let stride): return "slice of header fields (\(stride) bytes each)"
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
