import CLibELF

extension ELFImage {
    /// The first header, segment or section of the file that lies outside it, said for the user;
    /// nil when everything the ELF header points at is in the file.
    ///
    /// libelf clamps a table that runs past the end of the file to what is there, so a file cut
    /// short reads as one with fewer headers (a Go program then looks like no Go program at all).
    /// The tables are read from the file's bytes here (`<elf.h>` `Elf64_Ehdr`, `Elf64_Phdr`,
    /// `Elf64_Shdr`), with every sum and product checked, because every number in them is the file's.
    static func layoutProblem(of header: GElf_Ehdr, in file: UnsafeRawBufferPointer) -> String? {
        let layout = FileLayout(file: file)
        let pastTheEnd = "past the end of the \(file.count)-byte file"

        // gABI extended numbering: counts too large for the ELF header are in section header 0.
        let sectionZero =
            header.e_shoff == 0 ? nil : layout.table(at: header.e_shoff, count: 1, entrySize: sectionHeaderSize)
        var programHeaderCount = UInt64(header.e_phnum)
        if header.e_phnum == UInt16(PN_XNUM) {
            guard let sectionZero else {
                return "the program header count is in section header 0, which lies \(pastTheEnd)"
            }
            programHeaderCount = layout.value(at: sectionZero + 44, size: 4)  // sh_info
        }
        if programHeaderCount > 0 {
            guard UInt64(header.e_phentsize) == programHeaderSize else {
                return "program headers are \(header.e_phentsize) bytes long, not \(programHeaderSize)"
            }
            guard let table = layout.table(at: header.e_phoff, count: programHeaderCount, entrySize: programHeaderSize)
            else {
                return
                    "the program header table (\(programHeaderCount) entries of \(programHeaderSize) bytes at file offset "
                    + "0x\(hex(header.e_phoff))) runs \(pastTheEnd)"
            }
            for index in 0..<programHeaderCount {
                let entry = table + Int(index) * Int(programHeaderSize)
                guard layout.value(at: entry, size: 4) == UInt64(PT_LOAD) else { continue }
                let fileOffset = layout.value(at: entry + 8, size: 8)
                let virtualAddress = layout.value(at: entry + 16, size: 8)
                let fileSize = layout.value(at: entry + 32, size: 8)
                let memorySize = layout.value(at: entry + 40, size: 8)
                guard layout.contains(offset: fileOffset, size: fileSize) else {
                    return "program header \(index) (PT_LOAD) takes 0x\(hex(fileSize)) bytes from file offset "
                        + "0x\(hex(fileOffset)), \(pastTheEnd)"
                }
                guard fileSize <= memorySize, !virtualAddress.addingReportingOverflow(memorySize).overflow else {
                    return "program header \(index) (PT_LOAD) maps 0x\(hex(fileSize)) file bytes into "
                        + "0x\(hex(memorySize)) bytes at 0x\(hex(virtualAddress)), which do not fit"
                }
            }
        }

        guard header.e_shoff != 0 else { return nil }
        guard let sectionZero else {
            return "the section header table (at file offset 0x\(hex(header.e_shoff))) lies \(pastTheEnd)"
        }
        guard UInt64(header.e_shentsize) == sectionHeaderSize else {
            return "section headers are \(header.e_shentsize) bytes long, not \(sectionHeaderSize)"
        }
        let sectionCount = header.e_shnum == 0 ? layout.value(at: sectionZero + 32, size: 8) : UInt64(header.e_shnum)
        guard let table = layout.table(at: header.e_shoff, count: sectionCount, entrySize: sectionHeaderSize) else {
            return "the section header table (\(sectionCount) entries of \(sectionHeaderSize) bytes at file offset "
                + "0x\(hex(header.e_shoff))) runs \(pastTheEnd)"
        }
        guard sectionCount > 0 else { return nil }
        let namesIndex =
            header.e_shstrndx == UInt16(SHN_XINDEX)
            ? layout.value(at: sectionZero + 40, size: 4) : UInt64(header.e_shstrndx)
        guard namesIndex < sectionCount else {
            return
                "the section name table is said to be section \(namesIndex), but there are only \(sectionCount) sections"
        }
        func section(_ index: UInt64) -> (name: UInt64, type: UInt64, offset: UInt64, size: UInt64) {
            let entry = table + Int(index) * Int(sectionHeaderSize)
            return (
                layout.value(at: entry, size: 4), layout.value(at: entry + 4, size: 4),
                layout.value(at: entry + 24, size: 8), layout.value(at: entry + 32, size: 8)
            )
        }
        let names = section(namesIndex)
        let namesAreReadable =
            names.type != UInt64(SHT_NOBITS) && layout.contains(offset: names.offset, size: names.size)
        for index in 1..<sectionCount {
            let entry = section(index)
            guard entry.type != UInt64(SHT_NOBITS), entry.type != UInt64(SHT_NULL),
                !layout.contains(offset: entry.offset, size: entry.size)
            else { continue }
            let name = namesAreReadable ? layout.string(at: names.offset, index: entry.name, limit: names.size) : nil
            return "section \(index)\(name.map { " (\($0))" } ?? "") holds 0x\(hex(entry.size)) bytes from file offset "
                + "0x\(hex(entry.offset)), \(pastTheEnd)"
        }
        return nil
    }

    private static let programHeaderSize: UInt64 = 56
    private static let sectionHeaderSize: UInt64 = 64

    private static func hex(_ value: some BinaryInteger) -> String { String(value, radix: 16) }
}

/// Bounds-checked little-endian reads of a file's bytes by file-controlled offsets.
private struct FileLayout {
    let file: UnsafeRawBufferPointer

    /// Whether `[offset, offset + size)` lies in the file.
    func contains(offset: UInt64, size: UInt64) -> Bool {
        offset <= UInt64(file.count) && size <= UInt64(file.count) - offset
    }

    /// Where a table of `count` entries of `entrySize` bytes at `offset` starts, when all of it is in the file.
    func table(at offset: UInt64, count: UInt64, entrySize: UInt64) -> Int? {
        let (size, overflow) = count.multipliedReportingOverflow(by: entrySize)
        return !overflow && contains(offset: offset, size: size) ? Int(offset) : nil
    }

    /// The `size`-byte little-endian value at `offset`, which the caller has bounds-checked.
    func value(at offset: Int, size: Int) -> UInt64 {
        (0..<size).reduce(0) { $0 | UInt64(file[offset + $1]) << (8 * UInt64($1)) }
    }

    /// The NUL-terminated string at `index` in the string table at `tableOffset` (`limit` bytes long).
    func string(at tableOffset: UInt64, index: UInt64, limit: UInt64) -> String? {
        guard index < limit else { return nil }
        let start = Int(tableOffset + index)
        let end = Int(tableOffset + limit)
        guard let terminator = file[start..<end].firstIndex(of: 0) else { return nil }
        return String(decoding: file[start..<terminator], as: UTF8.self)
    }
}
