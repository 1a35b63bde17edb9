import CLibELF

/// A section stored deflated with zlib: SHF_COMPRESSED (an `Elf64_Chdr` first; what Go writes
/// for its `.debug_*`), or GNU's older `.zdebug_*` ("ZLIB" and the big-endian inflated size first).
struct CompressedSection {
    var name: String
    /// GNU's `.zdebug_*`, which libelf inflates with `elf_compress_gnu` rather than `elf_compress`.
    var isGNUStyle: Bool
    /// What the section inflates to, as its header says.
    var inflatedSize: UInt64
    /// The zlib stream after the header, in the mapped file.
    var zlibStream: UnsafeRawBufferPointer

    /// zlib's largest inflation ratio (RFC 1950/1951: 258 bytes from a 2-bit code, with block
    /// overhead), which bounds what a compressed section may claim to hold.
    private static let maximumInflation: UInt64 = 1032
    private static let gnuMagic = Array("ZLIB".utf8)

    /// Nil when the section is stored as it is.
    ///
    /// - Throws: ``DWARFReader/Unreadable`` when its header is cut short, names another compression
    ///   than zlib, or claims more inflated bytes than its compressed bytes can hold.
    init?(_ section: ELFImage.Section, in image: ELFImage) throws {
        let isGNUStyle = section.name.hasPrefix(".zdebug_")
        guard isGNUStyle || section.flags & UInt64(SHF_COMPRESSED) != 0 else { return nil }
        let headerSize = isGNUStyle ? Self.gnuMagic.count + 8 : MemoryLayout<Elf64_Chdr>.size
        guard section.size >= headerSize, let bytes = image.bytes(atFileOffset: section.fileOffset, count: section.size)
        else {
            throw DWARFReader.Unreadable(
                reason: "\(section.name) ends inside its \(headerSize)-byte compression header")
        }
        var header = ByteCursor(bytes)
        let inflatedSize: UInt64
        if isGNUStyle {
            guard try header.bytes(count: UInt64(Self.gnuMagic.count)).elementsEqual(Self.gnuMagic) else {
                throw DWARFReader.Unreadable(
                    reason: "\(section.name) does not start with \"ZLIB\", as a .zdebug_ section must")
            }
            inflatedSize = try header.unsigned(size: 8).byteSwapped
        } else {
            let type = try header.unsigned(size: 4)
            guard type == ELFCOMPRESS_ZLIB else {
                throw DWARFReader.Unreadable(
                    reason: "\(section.name) is compressed with type \(type), not zlib (\(ELFCOMPRESS_ZLIB))")
            }
            _ = try header.unsigned(size: 4)  // ch_reserved
            inflatedSize = try header.unsigned(size: 8)
        }
        guard inflatedSize / Self.maximumInflation <= section.size else {
            throw DWARFReader.Unreadable(
                reason: "\(section.name) claims more inflated bytes than its \(section.size) compressed bytes can hold")
        }
        self.init(
            name: section.name, isGNUStyle: isGNUStyle, inflatedSize: inflatedSize,
            zlibStream: UnsafeRawBufferPointer(rebasing: bytes[headerSize...]))
    }

    init(name: String, isGNUStyle: Bool, inflatedSize: UInt64, zlibStream: UnsafeRawBufferPointer) {
        self.name = name
        self.isGNUStyle = isGNUStyle
        self.inflatedSize = inflatedSize
        self.zlibStream = zlibStream
    }
}
