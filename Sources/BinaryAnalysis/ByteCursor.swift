/// Reads DWARF's little-endian values one after another from bytes it does not own. Running out of
/// bytes throws ``End``, which a reader of a section that is still being inflated takes as "wait for
/// more", and any other reader as "cut short".
struct ByteCursor {
    /// The bytes ended inside the value being read.
    struct End: Error {}

    let bytes: UnsafeRawBufferPointer
    /// Where the next value starts, from the start of `bytes`.
    private(set) var offset = 0

    init(_ bytes: UnsafeRawBufferPointer) {
        self.bytes = bytes
    }

    var isAtEnd: Bool { offset == bytes.count }

    mutating func byte() throws -> UInt8 {
        guard offset < bytes.count else { throw End() }
        defer { offset += 1 }
        return bytes[offset]
    }

    /// An unsigned integer of `size` bytes, 1 to 8.
    mutating func unsigned(size: Int) throws -> UInt64 {
        guard size <= bytes.count - offset else { throw End() }
        defer { offset += size }
        return (0..<size).reversed().reduce(0) { $0 << 8 | UInt64(bytes[offset + $1]) }
    }

    /// A two's complement integer of `size` bytes, 1 to 8.
    mutating func signed(size: Int) throws -> Int64 {
        let unusedBits = UInt64(64 - 8 * size)
        return Int64(bitPattern: try unsigned(size: size) << unusedBits) >> unusedBits
    }

    /// ULEB128; bits beyond the 64th are dropped.
    mutating func unsignedLEB128() throws -> UInt64 {
        try leb128().value
    }

    /// SLEB128; bits beyond the 64th are dropped.
    mutating func signedLEB128() throws -> Int64 {
        let (value, bitCount, lastByte) = try leb128()
        let isNegative = lastByte & 0x40 != 0
        return Int64(bitPattern: isNegative && bitCount < 64 ? value | ~0 << bitCount : value)
    }

    /// The next `count` bytes.
    mutating func bytes(count: UInt64) throws -> UnsafeRawBufferPointer {
        guard count <= UInt64(bytes.count - offset) else { throw End() }
        defer { offset += Int(count) }
        return UnsafeRawBufferPointer(rebasing: bytes[offset..<offset + Int(count)])
    }

    private mutating func leb128() throws -> (value: UInt64, bitCount: UInt64, lastByte: UInt8) {
        var value: UInt64 = 0
        var bitCount: UInt64 = 0
        while true {
            let byte = try self.byte()
            // A shift of 64 or more gives 0 in Swift: the dropped bits.
            value |= UInt64(byte & 0x7f) << bitCount
            bitCount += 7
            if byte & 0x80 == 0 { return (value, bitCount, byte) }
        }
    }
}
