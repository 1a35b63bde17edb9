/// Writes protobuf wire format (https://protobuf.dev/programming-guides/encoding/) into one
/// growing byte array, for the few message shapes OTLP needs.
///
/// A nested message is written in place and its length filled in afterwards: one byte is kept
/// for the length, and the body moves up when the length needs more, so nothing is sized twice
/// and no message is built as a value first. Fields of the default value are left out, as
/// proto3 writers do, except where a caller writes a message or oneof member explicitly.
struct ProtobufWriter {
    private(set) var bytes: [UInt8] = []

    enum WireType: UInt8 {
        case varint = 0, fixed64 = 1, lengthDelimited = 2, fixed32 = 5
    }

    init(capacity: Int) {
        bytes.reserveCapacity(capacity)
    }

    mutating func writeVarint(_ value: UInt64) {
        var value = value
        while value >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: value) | 0x80)
            value >>= 7
        }
        bytes.append(UInt8(value))
    }

    mutating func writeFixed64(_ value: UInt64) {
        withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
    }

    /// The length, then the UTF-8 bytes.
    mutating func writeString(_ value: String) {
        var value = value
        value.withUTF8 { utf8 in
            writeVarint(UInt64(utf8.count))
            bytes.append(contentsOf: utf8)
        }
    }

    mutating func writeTag(_ field: Int, _ wireType: WireType) {
        writeVarint(UInt64(field) << 3 | UInt64(wireType.rawValue))
    }

    /// An `int64`, `uint64`, `bool` or enum field; zero is left out.
    mutating func writeVarintField(_ field: Int, _ value: UInt64) {
        guard value != 0 else { return }
        writeTag(field, .varint)
        writeVarint(value)
    }

    /// A `fixed64` or `double` field (its bit pattern); zero is left out.
    mutating func writeFixed64Field(_ field: Int, _ value: UInt64) {
        guard value != 0 else { return }
        writeTag(field, .fixed64)
        writeFixed64(value)
    }

    /// A `fixed32` field; zero is left out.
    mutating func writeFixed32Field(_ field: Int, _ value: UInt32) {
        guard value != 0 else { return }
        writeTag(field, .fixed32)
        withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
    }

    /// A `string` field; empty is left out.
    mutating func writeStringField(_ field: Int, _ value: String) {
        guard !value.isEmpty else { return }
        writeTag(field, .lengthDelimited)
        writeString(value)
    }

    /// A `bytes` field of `first`, then `second` if given, big-endian: how OTLP writes span ids
    /// (8 bytes) and trace ids (16 bytes).
    mutating func writeIDField(_ field: Int, _ first: UInt64, _ second: UInt64? = nil) {
        writeTag(field, .lengthDelimited)
        writeVarint(second == nil ? 8 : 16)
        withUnsafeBytes(of: first.bigEndian) { bytes.append(contentsOf: $0) }
        if let second {
            withUnsafeBytes(of: second.bigEndian) { bytes.append(contentsOf: $0) }
        }
    }

    /// Starts a message field, written even when empty, whose fields are written next;
    /// `endMessageField` with what this returns fills in its length. Not a closure taking the
    /// body: capturing a span in one copied it, retaining each of its strings (issue 7).
    mutating func beginMessageField(_ field: Int) -> Int {
        writeTag(field, .lengthDelimited)
        bytes.append(0)
        return bytes.count - 1
    }

    mutating func endMessageField(_ lengthIndex: Int) {
        let length = bytes.count - lengthIndex - 1
        let lengthSize = Self.varintSize(UInt64(length))
        if lengthSize > 1 {
            bytes.insert(contentsOf: repeatElement(0, count: lengthSize - 1), at: lengthIndex + 1)
        }
        var value = UInt64(length)
        for index in lengthIndex..<(lengthIndex + lengthSize) {
            bytes[index] = UInt8(truncatingIfNeeded: value) | (value >= 0x80 ? 0x80 : 0)
            value >>= 7
        }
    }

    static func varintSize(_ value: UInt64) -> Int {
        max(1, (64 - value.leadingZeroBitCount + 6) / 7)
    }
}
