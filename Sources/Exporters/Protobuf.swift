/// Protobuf wire format (https://protobuf.dev/programming-guides/encoding/) for the few message
/// shapes OTLP needs, written into an `OutputSpan` of exactly the message's size.
///
/// A nested message's length comes before its fields, so each message is sized before it is
/// written: each `write…` below has a `Protobuf.…Size` that says how many bytes it writes,
/// arithmetic on lengths the values already know. The bytes then go once into storage allocated
/// once (filling lengths in afterwards moved each span's body, and appending to an array checked
/// its uniqueness at every byte: issue 7). Writing past the size traps, as `OutputSpan.append`
/// does; `OTLPEncodingTests` compare the bytes with swift-protobuf's. Fields of the default value
/// are left out, as proto3 writers do, except where a caller writes a message or oneof member
/// explicitly.
enum Protobuf {
    enum WireType: UInt8 {
        case varint = 0, fixed64 = 1, lengthDelimited = 2, fixed32 = 5
    }

    @inline(__always)
    static func varintSize(_ value: UInt64) -> Int {
        max(1, (64 - value.leadingZeroBitCount + 6) / 7)
    }

    @inline(__always)
    static func tagSize(_ field: Int) -> Int {
        varintSize(UInt64(field) << 3)
    }

    /// What `writeMessageHeader(field, length:)` and the `length` bytes after it take.
    @inline(__always)
    static func messageFieldSize(_ field: Int, length: Int) -> Int {
        tagSize(field) + varintSize(UInt64(length)) + length
    }

    @inline(__always)
    static func varintFieldSize(_ field: Int, _ value: UInt64) -> Int {
        value == 0 ? 0 : tagSize(field) + varintSize(value)
    }

    @inline(__always)
    static func fixed64FieldSize(_ field: Int, _ value: UInt64) -> Int {
        value == 0 ? 0 : tagSize(field) + 8
    }

    @inline(__always)
    static func fixed32FieldSize(_ field: Int, _ value: UInt32) -> Int {
        value == 0 ? 0 : tagSize(field) + 4
    }

    /// O(1): a native string knows its UTF-8 length.
    @inline(__always)
    static func stringFieldSize(_ field: Int, _ value: String) -> Int {
        value.isEmpty ? 0 : messageFieldSize(field, length: value.utf8.count)
    }

    @inline(__always)
    static func idFieldSize(_ field: Int, _ first: UInt64, _ second: UInt64? = nil) -> Int {
        messageFieldSize(field, length: second == nil ? 8 : 16)
    }
}

extension OutputSpan where Element == UInt8 {
    @inline(__always)
    mutating func writeVarint(_ value: UInt64) {
        var value = value
        while value >= 0x80 {
            append(UInt8(truncatingIfNeeded: value) | 0x80)
            value >>= 7
        }
        append(UInt8(value))
    }

    /// `value`'s bytes, least significant first.
    @inline(__always)
    mutating func writeLittleEndian<Integer: FixedWidthInteger>(_ value: Integer) {
        for shift in stride(from: 0, to: Integer.bitWidth, by: 8) {
            append(UInt8(truncatingIfNeeded: value >> shift))
        }
    }

    /// The length, then the UTF-8 bytes, read in place: a copy of the string (to reach its
    /// bytes through `withUTF8`) retained and released it for every string of every span.
    mutating func writeString(_ value: borrowing String) {
        let utf8 = value.utf8.span
        writeVarint(UInt64(utf8.count))
        // One copy, not a bounds check per byte; out of room traps, as `append` does.
        utf8.withUnsafeBufferPointer { bytes in
            withUnsafeMutableBufferPointer { buffer, initialized in
                let end = initialized + bytes.count
                precondition(end <= buffer.count, "protobuf message sized too small")
                _ = buffer[initialized..<end].initialize(fromContentsOf: bytes)
                initialized = end
            }
        }
    }

    @inline(__always)
    mutating func writeTag(_ field: Int, _ wireType: Protobuf.WireType) {
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
        writeLittleEndian(value)
    }

    /// A `fixed32` field; zero is left out.
    mutating func writeFixed32Field(_ field: Int, _ value: UInt32) {
        guard value != 0 else { return }
        writeTag(field, .fixed32)
        writeLittleEndian(value)
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
        writeLittleEndian(first.byteSwapped)
        if let second {
            writeLittleEndian(second.byteSwapped)
        }
    }

    /// Starts a message field, written even when empty, of `length` bytes (its size): its fields
    /// are written next.
    @inline(__always)
    mutating func writeMessageHeader(_ field: Int, length: Int) {
        writeTag(field, .lengthDelimited)
        writeVarint(UInt64(length))
    }
}
