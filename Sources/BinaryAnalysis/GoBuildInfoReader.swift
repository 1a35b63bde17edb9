/// Reads the build info the Go linker embeds (what `go version -m` prints), Go ≥ 1.18 layout.
enum GoBuildInfoReader {
    enum Failure: Error {
        case preGo118Layout
        /// What is wrong with a build info header that is there.
        case damaged(String)
    }

    /// `\xff Go buildinf:`, at the start of `.go.buildinfo`.
    static let magic: [UInt8] = [0xff] + Array(" Go buildinf:".utf8)
    private static let headerSize = 32
    /// The header is 16-byte aligned within its segment.
    private static let alignment = 16
    /// Header flag: version and module info follow the header inline (Go ≥ 1.18).
    private static let inlineStringsFlag: UInt8 = 0x2

    /// The build info of `image`, nil when it is not a Go binary.
    ///
    /// - Throws: `BinaryAnalysisError.corruptGoBuildInfo` when the file has a `.go.buildinfo`
    ///   section that cannot be read: only the Go linker writes one, so this is a damaged Go program,
    ///   not some other kind of program.
    static func read(from image: ELFImage) throws -> GoBuildInfo? {
        do {
            if let section = image.section(named: ".go.buildinfo"),
               let bytes = image.bytes(atFileOffset: section.fileOffset, count: section.size) {
                guard bytes.count >= headerSize else {
                    throw Failure.damaged("it is \(bytes.count) bytes long, too short for its \(headerSize)-byte header")
                }
                guard bytes.starts(with: magic) else {
                    throw Failure.damaged(#"no "\xff Go buildinf:" header at its start"#)
                }
                guard let info = try parse(bytes) else {
                    throw Failure.damaged("its Go version is missing or runs past its end")
                }
                return info
            }
            // Without section headers, look where the linker puts it: the writable data segment.
            for segment in image.loadSegments where segment.isWritable && !segment.isExecutable {
                guard let bytes = image.bytes(atFileOffset: segment.fileOffset, count: segment.fileSize),
                      let start = alignedMagicOffset(in: bytes)
                else { continue }
                return try parse(UnsafeRawBufferPointer(rebasing: bytes[start...]))
            }
            return nil
        } catch Failure.preGo118Layout {
            throw BinaryAnalysisError.unsupportedGoBuildInfo(path: image.path)
        } catch Failure.damaged(let reason) {
            throw BinaryAnalysisError.corruptGoBuildInfo(path: image.path, reason: reason)
        }
    }

    /// Parses build info starting at its header; nil when `bytes` does not start with one.
    static func parse(_ bytes: UnsafeRawBufferPointer) throws -> GoBuildInfo? {
        guard bytes.count >= headerSize, bytes.starts(with: magic) else { return nil }
        guard bytes[magic.count + 1] & inlineStringsFlag != 0 else { throw Failure.preGo118Layout }
        var cursor = headerSize
        guard let version = readLengthPrefixed(bytes, at: &cursor), !version.isEmpty else { return nil }
        let moduleInfo = readLengthPrefixed(bytes, at: &cursor).map { String(decoding: stripSentinels($0), as: UTF8.self) }
        let (mainModule, dependencies) = parseModuleInfo(moduleInfo ?? "")
        return GoBuildInfo(goVersion: String(decoding: version, as: UTF8.self), mainModule: mainModule, dependencies: dependencies)
    }

    /// Reads the `mod`, `dep` and `=>` lines of module info (what `go version -m` prints after the version).
    /// A replaced dependency keeps the path it is imported by, which is what its symbols are named after,
    /// and takes the version of the replacement, which is the code actually linked.
    static func parseModuleInfo(_ text: String) -> (mainModule: String, dependencies: [GoModule]) {
        var mainModule = ""
        var dependencies: [GoModule] = []
        var lastLineWasDependency = false
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: "\t", omittingEmptySubsequences: false).map(String.init)
            guard fields.count >= 2 else { continue }
            let version = fields.count >= 3 ? fields[2] : ""
            switch fields[0] {
            case "mod":
                mainModule = fields[1]
            case "dep":
                dependencies.append(GoModule(path: fields[1], version: version))
            case "=>" where lastLineWasDependency:
                dependencies[dependencies.count - 1].version = version
            default:
                break
            }
            lastLineWasDependency = fields[0] == "dep"
        }
        return (mainModule, dependencies)
    }

    /// Go wraps module info in 16-byte binary sentinels so it can find it in memory; they are not text.
    private static func stripSentinels(_ moduleInfo: Slice<UnsafeRawBufferPointer>) -> Slice<UnsafeRawBufferPointer> {
        guard moduleInfo.count >= 33, moduleInfo[moduleInfo.endIndex - 17] == UInt8(ascii: "\n") else { return moduleInfo }
        return moduleInfo.dropFirst(16).dropLast(16)
    }

    private static func alignedMagicOffset(in bytes: UnsafeRawBufferPointer) -> Int? {
        stride(from: 0, to: bytes.count - headerSize, by: alignment).first { offset in
            bytes[offset...].starts(with: magic)
        }
    }

    /// Reads a uvarint length followed by that many bytes; nil when it would run past the end.
    private static func readLengthPrefixed(_ bytes: UnsafeRawBufferPointer, at cursor: inout Int) -> Slice<UnsafeRawBufferPointer>? {
        var length: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            guard cursor < bytes.count, shift < 64 else { return nil }
            let byte = bytes[cursor]
            cursor += 1
            length |= UInt64(byte & 0x7f) << shift
            if byte & 0x80 == 0 { break }
            shift += 7
        }
        guard length <= UInt64(bytes.count - cursor) else { return nil }
        let end = cursor + Int(length)
        defer { cursor = end }
        return bytes[cursor..<end]
    }
}
