import CLibELF

extension BinaryAnalyzer {
    /// The function that the first method slot of `path`'s itab for (`interfaceType`,
    /// `dynamicType`) points at, by symbol name; both given as runtime type descriptor addresses.
    /// Nil when the binary has no such static itab or no symbol for the slot.
    ///
    /// Offset tables record this for reference builds: unlike a type descriptor's address, the
    /// method's name carries over to any build, stripped ones included.
    public static func itabFirstMethod(path: String, interfaceType: UInt64, dynamicType: UInt64) throws -> String? {
        let image = try ELFImage(path: path)
        // itab: interface type, dynamic type, hash (4 bytes + padding), then the method slots.
        let firstMethodOffset = 24
        for segment in image.loadSegments where !segment.isExecutable {
            guard let bytes = image.bytes(atFileOffset: segment.fileOffset, count: segment.fileSize), bytes.count >= firstMethodOffset + 8 else {
                continue
            }
            let misalignment = Int((8 - segment.virtualAddress % 8) % 8)
            for offset in stride(from: misalignment, through: bytes.count - firstMethodOffset - 8, by: 8)
            where bytes.loadUnaligned(fromByteOffset: offset, as: UInt64.self) == interfaceType
                && bytes.loadUnaligned(fromByteOffset: offset + 8, as: UInt64.self) == dynamicType {
                let method = bytes.loadUnaligned(fromByteOffset: offset + firstMethodOffset, as: UInt64.self)
                if let symbol = image.functionSymbol(at: method) { return symbol.name }
            }
        }
        return nil
    }
}
