import CLibELF
#if canImport(Glibc)
import Glibc
#endif

/// An x86-64 ELF file opened read-only through libelf. The file stays mapped while the image
/// lives, so section and instruction bytes are read in place instead of copied.
///
/// Opening checks the file's header tables, load segments and sections against its size
/// (ELFImage+Layout.swift), so every offset and size kept here lies inside the file.
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
        var flags: UInt64
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
        fileDescriptor = try Self.openRegularFile(path)
        elf_version(UInt32(EV_CURRENT))
        guard let elf = elf_begin(fileDescriptor, ELF_C_READ_MMAP, nil) else {
            let error = Self.beginError(fileDescriptor, path: path)
            close(fileDescriptor)
            throw error
        }
        self.elf = elf
        // From here on deinit releases elf and the descriptor, so every property must be set before throwing.
        var header = GElf_Ehdr()
        var rawSize = 0
        let raw = elf_rawfile(elf, &rawSize)
        fileBytes = UnsafeRawBufferPointer(start: raw, count: raw == nil ? 0 : rawSize)
        let isELF = elf_kind(elf) == ELF_K_ELF && gelf_getehdr(elf, &header) != nil
        let isSupported = isELF && gelf_getclass(elf) == ELFCLASS64 && Int32(header.e_machine) == EM_X86_64
        // libelf quietly drops headers that lie past the end of the file; say which ones do instead.
        let layoutProblem = isSupported && raw != nil ? Self.layoutProblem(of: header, in: fileBytes) : nil
        let isReadable = isSupported && raw != nil && layoutProblem == nil
        isPositionIndependent = isELF && Int32(header.e_type) == ET_DYN
        loadSegments = isReadable ? Self.readLoadSegments(elf) : []
        sections = isReadable ? Self.readSections(elf) : []

        guard isELF else { throw BinaryAnalysisError.notELF(path: path) }
        guard isSupported else {
            throw BinaryAnalysisError.unsupportedArchitecture(path: path, machine: Int(header.e_machine))
        }
        guard raw != nil else { throw BinaryAnalysisError.malformed(path: path, reason: Self.libelfError()) }
        if let layoutProblem { throw BinaryAnalysisError.malformed(path: path, reason: layoutProblem) }
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
        guard
            let segment = loadSegments.first(where: {
                address >= $0.virtualAddress && address - $0.virtualAddress < $0.fileSize
            })
        else { return nil }
        // Cannot overflow once the layout check has passed (offset + size within the file); checked all the same.
        let (offset, overflow) = segment.fileOffset.addingReportingOverflow(address - segment.virtualAddress)
        return overflow ? nil : offset
    }

    /// Where the code in `addresses` lies in the file, when one executable segment maps all of it
    /// from the file; nil otherwise.
    func fileOffset(ofCode addresses: Range<UInt64>) -> UInt64? {
        loadSegments.lazy.filter(\.isExecutable).compactMap { segment -> UInt64? in
            guard addresses.lowerBound >= segment.virtualAddress,
                addresses.upperBound - segment.virtualAddress <= segment.fileSize
            else { return nil }
            let (offset, overflow) = segment.fileOffset.addingReportingOverflow(
                addresses.lowerBound - segment.virtualAddress)
            return overflow ? nil : offset
        }.first
    }

    /// Hands the file's pages read so far back to the page cache (MADV_PAGEOUT, which never
    /// changes what the mapping holds): a later read faults them in again. Keeps the symbol and
    /// function tables a scan touched (megabytes) out of the agent's peak memory.
    func releaseReadPages() {
        guard let start = fileBytes.baseAddress else { return }
        _ = madvise(UnsafeMutableRawPointer(mutating: start), fileBytes.count, MADV_PAGEOUT)
    }

    /// The file's bytes in `[offset, offset + count)`, or nil when the range runs past the end of the file.
    func bytes(atFileOffset offset: UInt64, count: UInt64) -> UnsafeRawBufferPointer? {
        guard offset <= UInt64(fileBytes.count), count <= UInt64(fileBytes.count) - offset else { return nil }
        return UnsafeRawBufferPointer(rebasing: fileBytes[Int(offset)..<Int(offset + count)])
    }

    /// Opens `path` read-only once it is known to be a regular file: opening a FIFO would wait for
    /// a writer, reading a device need never end, and a directory holds no program.
    private static func openRegularFile(_ path: String) throws -> Int32 {
        var status = stat()
        guard stat(path, &status) == 0 else {
            throw BinaryAnalysisError.cannotOpen(path: path, reason: String(cString: strerror(errno)))
        }
        try requireRegularFile(status, path: path)
        // O_NONBLOCK: should the path have been replaced by a FIFO since, open still returns at once.
        let descriptor = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard descriptor >= 0 else {
            throw BinaryAnalysisError.cannotOpen(path: path, reason: String(cString: strerror(errno)))
        }
        do {
            guard fstat(descriptor, &status) == 0 else {
                throw BinaryAnalysisError.cannotOpen(path: path, reason: String(cString: strerror(errno)))
            }
            try requireRegularFile(status, path: path)
        } catch {
            close(descriptor)
            throw error
        }
        return descriptor
    }

    private static func requireRegularFile(_ status: stat, path: String) throws {
        let kinds: [mode_t: String] = [
            S_IFDIR: "a directory", S_IFIFO: "a FIFO (named pipe)", S_IFCHR: "a character device",
            S_IFBLK: "a block device", S_IFSOCK: "a socket",
        ]
        let type = status.st_mode & S_IFMT
        guard type == S_IFREG else {
            throw BinaryAnalysisError.notRegularFile(path: path, kind: kinds[type] ?? "not a regular file")
        }
    }

    /// Why libelf could not start reading the file: an ELF file too short for its own header is
    /// truncated, not unopenable.
    private static func beginError(_ descriptor: Int32, path: String) -> BinaryAnalysisError {
        let reason = libelfError()
        var status = stat()
        var magic = [UInt8](repeating: 0, count: 4)
        guard fstat(descriptor, &status) == 0, pread(descriptor, &magic, magic.count, 0) == magic.count,
            magic == [0x7f, UInt8(ascii: "E"), UInt8(ascii: "L"), UInt8(ascii: "F")]
        else { return .cannotOpen(path: path, reason: reason) }
        let headerSize = MemoryLayout<Elf64_Ehdr>.size
        guard status.st_size >= headerSize else {
            let reason = "the file ends after \(status.st_size) bytes, inside its \(headerSize)-byte ELF header"
            return .malformed(path: path, reason: reason)
        }
        return .malformed(path: path, reason: "libelf cannot read it: \(reason)")
    }

    private static func readLoadSegments(_ elf: OpaquePointer) -> [LoadSegment] {
        var count = 0
        guard elf_getphdrnum(elf, &count) == 0 else { return [] }
        return (0..<count).compactMap { index in
            var header = GElf_Phdr()
            guard let index = Int32(exactly: index), gelf_getphdr(elf, index, &header) != nil,
                header.p_type == UInt32(PT_LOAD)
            else { return nil }
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
                sections.append(
                    Section(
                        name: name, type: header.sh_type, flags: header.sh_flags, address: header.sh_addr,
                        fileOffset: header.sh_offset, size: header.sh_size, link: header.sh_link,
                        entrySize: header.sh_entsize,
                        handle: scn))
            }
            handle = elf_nextscn(elf, scn)
        }
        return sections
    }

    static func libelfError() -> String {
        elf_errmsg(-1).map { String(cString: $0) } ?? "unknown libelf error"
    }
}
