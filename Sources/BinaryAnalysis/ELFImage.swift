import CLibELF
#if canImport(Glibc)
import Glibc
#endif

/// An x86-64 ELF file opened read-only through libelf. The file stays mapped while the image
/// lives, so section and instruction bytes are read in place instead of copied.
final class ELFImage {
    struct LoadSegment {
        var virtualAddress: UInt64
        var fileOffset: UInt64
        var fileSize: UInt64
        var isWritable: Bool
        var isExecutable: Bool
    }

    struct Section {
        var name: String
        var type: UInt32
        /// Link-time virtual address (`sh_addr`); 0 for sections not loaded.
        var address: UInt64
        var fileOffset: UInt64
        var size: UInt64
        /// Section header index of the associated section (for symbol tables: their string table).
        var link: UInt32
        var entrySize: UInt64
        var handle: OpaquePointer
    }

    let path: String
    /// libelf's `Elf *`, for libdw.
    let elf: OpaquePointer
    let isPositionIndependent: Bool
    let loadSegments: [LoadSegment]
    let sections: [Section]
    /// The whole file as libelf mapped it.
    let fileBytes: UnsafeRawBufferPointer
    private let fileDescriptor: Int32

    init(path: String) throws {
        self.path = path
        elf_version(UInt32(EV_CURRENT))
        fileDescriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard fileDescriptor >= 0 else {
            throw BinaryAnalysisError.cannotOpen(path: path, reason: String(cString: strerror(errno)))
        }
        guard let elf = elf_begin(fileDescriptor, ELF_C_READ_MMAP, nil) else {
            let reason = Self.libelfError()
            close(fileDescriptor)
            throw BinaryAnalysisError.cannotOpen(path: path, reason: reason)
        }
        self.elf = elf
        // From here on deinit releases elf and the descriptor, so every property must be set before throwing.
        var header = GElf_Ehdr()
        var rawSize = 0
        let raw = elf_rawfile(elf, &rawSize)
        fileBytes = UnsafeRawBufferPointer(start: raw, count: raw == nil ? 0 : rawSize)
        let isELF = elf_kind(elf) == ELF_K_ELF && gelf_getehdr(elf, &header) != nil
        isPositionIndependent = isELF && Int32(header.e_type) == ET_DYN
        loadSegments = isELF ? Self.readLoadSegments(elf) : []
        sections = isELF ? Self.readSections(elf) : []

        guard isELF else { throw BinaryAnalysisError.notELF(path: path) }
        guard gelf_getclass(elf) == ELFCLASS64, Int32(header.e_machine) == EM_X86_64 else {
            throw BinaryAnalysisError.unsupportedArchitecture(path: path, machine: Int(header.e_machine))
        }
        guard raw != nil else { throw BinaryAnalysisError.malformed(path: path, reason: Self.libelfError()) }
    }

    deinit {
        elf_end(elf)
        close(fileDescriptor)
    }

    func section(named name: String) -> Section? {
        sections.first { $0.name == name }
    }

    /// Where `address` lies in the file, through the loaded segment that maps it; nil when no
    /// segment maps it from the file (e.g. `.bss`).
    func fileOffset(ofAddress address: UInt64) -> UInt64? {
        loadSegments.first { address >= $0.virtualAddress && address - $0.virtualAddress < $0.fileSize }
            .map { address - $0.virtualAddress + $0.fileOffset }
    }

    /// The file's bytes in `[offset, offset + count)`, or nil when the range runs past the end of the file.
    func bytes(atFileOffset offset: UInt64, count: UInt64) -> UnsafeRawBufferPointer? {
        guard offset <= UInt64(fileBytes.count), count <= UInt64(fileBytes.count) - offset else { return nil }
        return UnsafeRawBufferPointer(rebasing: fileBytes[Int(offset)..<Int(offset + count)])
    }

    private static func readLoadSegments(_ elf: OpaquePointer) -> [LoadSegment] {
        var count = 0
        guard elf_getphdrnum(elf, &count) == 0 else { return [] }
        return (0..<Int32(count)).compactMap { index in
            var header = GElf_Phdr()
            guard gelf_getphdr(elf, index, &header) != nil, header.p_type == UInt32(PT_LOAD) else { return nil }
            return LoadSegment(
                virtualAddress: header.p_vaddr, fileOffset: header.p_offset, fileSize: header.p_filesz,
                isWritable: header.p_flags & UInt32(PF_W) != 0, isExecutable: header.p_flags & UInt32(PF_X) != 0)
        }
    }

    private static func readSections(_ elf: OpaquePointer) -> [Section] {
        var namesIndex = 0
        guard elf_getshdrstrndx(elf, &namesIndex) == 0 else { return [] }
        var sections: [Section] = []
        var handle = elf_nextscn(elf, nil)
        while let scn = handle {
            var header = GElf_Shdr()
            if gelf_getshdr(scn, &header) != nil {
                let name = elf_strptr(elf, namesIndex, Int(header.sh_name)).map { String(cString: $0) } ?? ""
                sections.append(Section(
                    name: name, type: header.sh_type, address: header.sh_addr, fileOffset: header.sh_offset,
                    size: header.sh_size, link: header.sh_link, entrySize: header.sh_entsize, handle: scn))
            }
            handle = elf_nextscn(elf, scn)
        }
        return sections
    }

    static func libelfError() -> String {
        elf_errmsg(-1).map { String(cString: $0) } ?? "unknown libelf error"
    }
}
