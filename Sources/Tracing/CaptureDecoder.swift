import Planning
import ProbePacks
import SondeABI
import Spans

/// Reads capture values out of a span record's data area.
enum CaptureDecoder {
    /// Values of the captures the BPF side actually wrote; absent ones are left out.
    static func decode(_ event: SpanEvent, layouts: [CaptureLayout], names: [String]) -> CapturedValues {
        let values = event.data.withUnsafeBytes { data in
            layouts.indices.map { index -> AttributeValue? in
                let slot = layouts[index]
                guard index < 32, event.capturedMask & (1 << UInt32(index)) != 0 else {
                    return slot.ifAbsent.map(AttributeValue.int)
                }
                // A record ends with its last capture: a string's slot ends with its bytes.
                guard slot.offset + (slot.type.isText ? 2 : slot.size) <= data.count else { return nil }
                func integer<T: FixedWidthInteger>(_: T.Type) -> T {
                    T(littleEndian: data.loadUnaligned(fromByteOffset: slot.offset, as: T.self))
                }
                switch slot.type {
                case .goString, .cString, .stdString, .rustStr, .rustString:
                    // Bytes that are not UTF-8 become U+FFFD; a string cut at its bound ends in "…".
                    let stored = integer(UInt16.self)
                    let length = min(Int(stored & ~UInt16(SONDE_STRING_TRUNCATED)), slot.maxLength)
                    let start = slot.offset + 2
                    guard start + length <= data.count else { return nil }
                    let text = String(decoding: data[start..<(start + length)], as: UTF8.self)
                    return .string(stored & UInt16(SONDE_STRING_TRUNCATED) != 0 ? text + Self.truncationMark : text)
                case .int: return intValue(integer(Int64.self), slot)
                case .int32: return intValue(Int64(integer(Int32.self)), slot)
                case .uint16: return intValue(Int64(integer(UInt16.self)), slot)
                case .bool: return .bool(integer(UInt8.self) != 0)
                case .nonNil: return .bool(integer(UInt64.self) != 0)
                }
            }
        }
        return CapturedValues(names: names, values: values)
    }

    /// Ends a string the BPF program cut at its capture's `max-length`.
    static let truncationMark = "…"

    private static func intValue(_ value: Int64, _ slot: CaptureLayout) -> AttributeValue {
        .int(value == 0 ? slot.ifZero ?? 0 : value)
    }
}

/// Where and how one capture is stored: a `CaptureSlot` without its strings, so that reading
/// a record copies plain values and retains nothing.
struct CaptureLayout: Sendable {
    var type: ValueType
    var offset: Int
    var maxLength: Int
    var size: Int
    var ifZero: Int64?
    var ifAbsent: Int64?

    init(_ slot: CaptureSlot) {
        type = slot.type
        offset = slot.offset
        maxLength = slot.maxLength
        size = slot.size
        ifZero = slot.ifZero
        ifAbsent = slot.ifAbsent
    }
}

/// One record's capture values, in the order of the probe's capture slots.
///
/// A probe has a handful of captures, so finding one by name is a short scan of names that are
/// mostly small strings (compared as two words), cheaper than hashing into a dictionary built
/// per span.
struct CapturedValues {
    /// The captures' names, one per slot.
    var names: [String]
    /// Nil where a capture was not read.
    var values: [AttributeValue?]

    /// The last `host[:port]` and the last gRPC method path parsed, so that the expressions of a
    /// span that read one capture (hostname and port; rpc.service, rpc.method and the span name)
    /// parse it once.
    var hostPortParsed: (index: Int, value: HostPort?)? = nil
    var methodPathParsed: (index: Int, value: GRPCMethodPath?)? = nil

    subscript(name: String) -> AttributeValue? {
        self[names.firstIndex(of: name)]
    }

    /// Nil for a capture that was not read, or is not one of the probe's.
    subscript(index: Int?) -> AttributeValue? {
        guard let index else { return nil }
        return values[index]
    }

    /// The string capture at `index` read as `host[:port]`; nil when it is absent or not a host.
    mutating func hostPort(at index: Int?) -> HostPort? {
        Self.parsed(self[index], at: index, cache: &hostPortParsed, HostPort.init)
    }

    /// The string capture at `index` read as `/package.Service/Method`; nil when it is absent or empty.
    mutating func methodPath(at index: Int?) -> GRPCMethodPath? {
        Self.parsed(self[index], at: index, cache: &methodPathParsed, GRPCMethodPath.init)
    }

    private static func parsed<Value>(
        _ capture: AttributeValue?, at index: Int?, cache: inout (index: Int, value: Value?)?, _ parse: (String) -> Value?
    ) -> Value? {
        guard let index else { return nil }
        if let cache, cache.index == index { return cache.value }
        guard case .string(let text)? = capture else { return nil }
        let value = parse(text)
        cache = (index, value)
        return value
    }
}
