import CLibELF

extension ELFImage {
    /// Functions among `names` found in Go's pclntab (what survives -s -w), as ELFSymbols with isFunction = true,
    /// address = entry (link-time virtual address) and size = next function's entry - entry.
    ///
    /// The size runs to the next function's entry, so it includes the alignment padding after the
    /// function's last instruction. Empty for pclntab layouts before Go 1.18, for files that are not Go
    /// programs, and for tables too damaged to read; a table damaged part way yields what precedes the damage.
    func goFunctions(named names: Set<String>) -> [String: ELFSymbol] {
        guard !names.isEmpty else { return [:] }
        return lookUpGoFunctions(named: names) ?? [:]
    }

    /// As ``goFunctions(named:)``, but nil when the file has no Go function table that can be read at
    /// all, which in a Go program means the table is damaged.
    func lookUpGoFunctions(named names: Set<String>) -> [String: ELFSymbol]? {
        goFunctionTable()?.functions(named: names)
    }

    /// Go's linker puts the table in a section of its own, `.gopclntab`, or `.data.rel.ro.gopclntab` in
    /// position-independent builds. An external linker merges the latter into `.data.rel.ro` (Go 1.19–1.25;
    /// Go ≥ 1.26 keep `.gopclntab`), so there the header has to be searched for.
    private func goFunctionTable() -> GoFunctionTable? {
        if let section = section(named: ".gopclntab") ?? section(named: ".data.rel.ro.gopclntab") {
            return fileBytes(of: section).flatMap { goFunctionTable($0, address: section.address) }
        }
        guard let section = section(named: ".data.rel.ro"), let bytes = fileBytes(of: section) else { return nil }
        // Go aligns the header to 32 bytes (its size rounded down to amd64's maximum alignment, cmd/link
        // symalign); stepping by the 8 its words need finds it too.
        let first = Int((8 - section.address % 8) % 8)
        for offset in stride(from: first, to: bytes.count, by: 8) {
            guard let magic = bytes.littleEndianUInt32(at: offset),
                  magic == GoFunctionTable.go118Magic || magic == GoFunctionTable.go120Magic,
                  let table = goFunctionTable(
                      UnsafeRawBufferPointer(rebasing: bytes[offset...]), address: section.address &+ UInt64(offset)),
                  table.isPlausible
            else { continue }
            return table
        }
        return nil
    }

    private func goFunctionTable(_ bytes: UnsafeRawBufferPointer, address: UInt64) -> GoFunctionTable? {
        GoFunctionTable(
            bytes, address: address,
            textStartRelocation: { self.relativeRelocationAddend(at: address &+ GoFunctionTable.textStartOffset) },
            moduleData: section(named: ".go.module").flatMap(fileBytes(of:)),
            textSectionAddress: section(named: ".text")?.address)
    }

    /// The value an `R_X86_64_RELATIVE` relocation in `.rela.dyn` stores at `address` (before the load
    /// bias is added), if there is one.
    private func relativeRelocationAddend(at address: UInt64) -> UInt64? {
        guard let section = section(named: ".rela.dyn"), let bytes = fileBytes(of: section) else { return nil }
        // Elf64_Rela: r_offset u64, r_info u64 (type in the low 32 bits), r_addend i64.
        let entrySize = 24, relative: UInt64 = 8
        for entry in stride(from: 0, through: bytes.count - entrySize, by: entrySize)
        where bytes.littleEndianUInt64(at: entry) == address
            && bytes.littleEndianUInt64(at: entry + 8).map({ $0 & 0xffff_ffff }) == relative {
            return bytes.littleEndianUInt64(at: entry + 16)
        }
        return nil
    }

    private func fileBytes(of section: Section) -> UnsafeRawBufferPointer? {
        section.type == UInt32(SHT_NOBITS) ? nil : bytes(atFileOffset: section.fileOffset, count: section.size)
    }
}

/// Go's pclntab as the Go ≥ 1.18 linker writes it (runtime/symtab.go `pcHeader`, cmd/link/internal/ld/pcln.go):
/// a header of offsets to the tables that follow it, among them the function name table and the
/// function table, sorted by entry, of `{entryOff u32, funcOff u32}` pairs ended by the end-of-text offset.
/// Valid only while the image whose bytes it reads lives.
private struct GoFunctionTable {
    /// Go 1.18 and 1.19.
    static let go118Magic: UInt32 = 0xffff_fff0
    /// Go 1.20 and later.
    static let go120Magic: UInt32 = 0xffff_fff1
    private static let pointerSize = 8
    /// magic, two pad bytes, minLC, ptrSize; then eight pointer-sized words.
    private static let headerSize = 8 + 8 * pointerSize
    /// Where the header's third word, the text start, lies in it.
    static let textStartOffset: UInt64 = 8 + 2 * UInt64(pointerSize)
    private static let functionTableEntrySize = 8
    private static let plausibilityEntries = 256

    private let bytes: UnsafeRawBufferPointer
    private let textStart: UInt64
    private let functionCount: Int
    private let functionNamesOffset: Int
    private let functionTableOffset: Int

    /// Nil unless `bytes`, the table linked at `address`, starts with a Go 1.18+ x86-64 header (minLC 1,
    /// ptrSize 8) whose offsets lie inside it. When the header holds 0 as the text start, it comes from
    /// `textStartRelocation`, `moduleData` (the `.go.module` section, Go ≥ 1.26) or `textSectionAddress`.
    init?(
        _ bytes: UnsafeRawBufferPointer, address: UInt64, textStartRelocation: () -> UInt64?,
        moduleData: UnsafeRawBufferPointer?, textSectionAddress: UInt64?
    ) {
        guard bytes.count >= Self.headerSize,
              let magic = bytes.littleEndianUInt32(at: 0),
              magic == Self.go118Magic || magic == Self.go120Magic,
              bytes[4] == 0, bytes[5] == 0, bytes[6] == 1, Int(bytes[7]) == Self.pointerSize
        else { return nil }
        func word(_ index: Int) -> UInt64 {
            bytes.littleEndianUInt64(at: 8 + index * Self.pointerSize) ?? .max
        }
        // Words: nfunc, nfiles, textStart, funcnameOffset, cuOffset, filetabOffset, pctabOffset, pclnOffset.
        let size = UInt64(bytes.count)
        let functionCount = word(0)
        let functionNamesOffset = word(3)
        let functionTableOffset = word(7)
        guard functionNamesOffset < size, functionTableOffset < size,
              // The pairs and the end-of-text offset must fit after the table's start.
              functionCount < (size - functionTableOffset) / UInt64(Self.functionTableEntrySize),
              let firstEntryOffset = bytes.littleEndianUInt32(at: Int(functionTableOffset))
        else { return nil }
        guard let textStart = Self.textStart(
            headerValue: word(2), relocation: textStartRelocation, pcHeaderAddress: address,
            firstEntryOffset: firstEntryOffset, moduleData: moduleData, textSectionAddress: textSectionAddress)
        else { return nil }
        self.bytes = bytes
        self.textStart = textStart
        self.functionCount = Int(functionCount)
        self.functionNamesOffset = Int(functionNamesOffset)
        self.functionTableOffset = Int(functionTableOffset)
    }

    /// The address entry offsets count from: `runtime.text`.
    ///
    /// Go 1.18–1.25 store it in the header. In position-independent builds a relative relocation
    /// sets it; Go's linker and GNU ld also write its link-time value in the file, but lld leaves 0
    /// there, so the relocation's addend is the value. Go ≥ 1.26 store 0 there; their linker puts
    /// the module data (`runtime.firstmoduledata`) in a section of its own, whose `text` field holds it.
    /// Failing these, take the start of `.text` as Go's own tools do (cmd/internal/objfile): that is
    /// `runtime.text` when Go links the program itself, but C start-up code precedes it when an
    /// external linker does.
    private static func textStart(
        headerValue: UInt64, relocation: () -> UInt64?, pcHeaderAddress: UInt64, firstEntryOffset: UInt32,
        moduleData: UnsafeRawBufferPointer?, textSectionAddress: UInt64?
    ) -> UInt64? {
        if headerValue != 0 { return headerValue }
        if let relocated = relocation(), relocated != 0 { return relocated }
        // runtime.moduledata begins pcHeader, six slices, findfunctab, minpc, maxpc, text (Go 1.19 through 1.27).
        if let moduleData,
           moduleData.littleEndianUInt64(at: 0) == pcHeaderAddress,
           let minPC = moduleData.littleEndianUInt64(at: 20 * pointerSize),
           let text = moduleData.littleEndianUInt64(at: 22 * pointerSize),
           text != 0, minPC == text &+ UInt64(firstEntryOffset) {
            return text
        }
        return textSectionAddress.flatMap { $0 == 0 ? nil : $0 }
    }

    /// Whether the table reads as one, which bytes that merely start like a header seldom do: it has
    /// functions, their first entries do not decrease, and the first one's record and name are in place.
    /// Only the first ``plausibilityEntries`` entries are compared, so that a section full of bytes that
    /// start like headers costs time in proportion to its size, not to its square.
    var isPlausible: Bool {
        guard functionCount > 0 else { return false }
        var previous: UInt32 = 0
        for index in 0...min(functionCount, Self.plausibilityEntries) {
            guard let entry = bytes.littleEndianUInt32(at: functionTableOffset + index * Self.functionTableEntrySize),
                  entry >= previous
            else { return false }
            previous = entry
        }
        guard let firstRecord = bytes.littleEndianUInt32(at: functionTableOffset + 4).map({ functionTableOffset + Int($0) }),
              bytes.littleEndianUInt32(at: firstRecord) == bytes.littleEndianUInt32(at: functionTableOffset),
              let nameOffset = bytes.littleEndianUInt32(at: firstRecord + 4),
              let name = name(at: functionNamesOffset + Int(nameOffset), longest: 1024)
        else { return false }
        return !name.isEmpty
    }

    func functions(named names: Set<String>) -> [String: ELFSymbol] {
        // A name is read only as far as the longest one asked for, and made a String only when its length
        // matches one asked for: most names are not wanted, and a damaged table may lack terminators.
        let wantedLengths = Set(names.map(\.utf8.count))
        let longest = wantedLengths.max() ?? 0
        var found: [String: ELFSymbol] = [:]
        for index in 0..<functionCount {
            if found.count == names.count { break }
            let pair = functionTableOffset + index * Self.functionTableEntrySize
            guard let entryOffset = bytes.littleEndianUInt32(at: pair),
                  let functionOffset = bytes.littleEndianUInt32(at: pair + 4),
                  let nextEntryOffset = bytes.littleEndianUInt32(at: pair + Self.functionTableEntrySize)
            else { break }
            // The _func record repeats the entry offset; a mismatch means the table is not what it seems.
            let record = functionTableOffset + Int(functionOffset)
            guard bytes.littleEndianUInt32(at: record) == entryOffset,
                  let nameOffset = bytes.littleEndianUInt32(at: record + 4).map({ Int(Int32(bitPattern: $0)) }),
                  nameOffset >= 0,
                  let nameBytes = name(at: functionNamesOffset + nameOffset, longest: longest),
                  wantedLengths.contains(nameBytes.count),
                  nextEntryOffset >= entryOffset
            else { continue }
            let name = String(decoding: nameBytes, as: UTF8.self)
            guard names.contains(name), found[name] == nil else { continue }
            let (address, overflow) = textStart.addingReportingOverflow(UInt64(entryOffset))
            guard !overflow else { continue }
            found[name] = ELFSymbol(
                name: name, address: address, size: UInt64(nextEntryOffset - entryOffset), isFunction: true)
        }
        return found
    }

    /// The bytes of the NUL-terminated name at `offset`; nil when it is out of bounds or longer than `longest`.
    private func name(at offset: Int, longest: Int) -> Slice<UnsafeRawBufferPointer>? {
        guard offset >= 0, offset < bytes.count,
              let end = bytes[offset..<min(bytes.count, offset + longest + 1)].firstIndex(of: 0)
        else { return nil }
        return bytes[offset..<end]
    }
}

private extension UnsafeRawBufferPointer {
    func littleEndianUInt32(at offset: Int) -> UInt32? {
        guard offset >= 0, offset <= count - 4 else { return nil }
        return UInt32(littleEndian: loadUnaligned(fromByteOffset: offset, as: UInt32.self))
    }

    func littleEndianUInt64(at offset: Int) -> UInt64? {
        guard offset >= 0, offset <= count - 8 else { return nil }
        return UInt64(littleEndian: loadUnaligned(fromByteOffset: offset, as: UInt64.self))
    }
}
