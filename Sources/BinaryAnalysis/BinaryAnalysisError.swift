/// Why a binary could not be analysed; each message names the file, the problem and what to do.
public enum BinaryAnalysisError: Error, Equatable, CustomStringConvertible {
    /// The file could not be opened or read (missing, a directory, no permission…).
    case cannotOpen(path: String, reason: String)
    /// The file is not an ELF object at all (a script, a text file, a Mach-O binary…).
    case notELF(path: String)
    /// The file is ELF but not for x86-64, the only architecture whose instructions Sonde decodes.
    case unsupportedArchitecture(path: String, machine: Int)
    /// libelf rejected the file: truncated or corrupt.
    case malformed(path: String, reason: String)
    /// A Go binary whose build info predates Go 1.18, the oldest toolchain Sonde reads.
    case unsupportedGoBuildInfo(path: String)
    /// The installed capstone library cannot decode x86-64; no file would do better.
    case disassemblerUnavailable(reason: String)

    public var description: String {
        switch self {
        case .cannotOpen(let path, let reason):
            return "cannot open \(path): \(reason)"
        case .notELF(let path):
            return "\(path): not an ELF file; give the path of the executable itself, not a script or wrapper that starts it"
        case .unsupportedArchitecture(let path, let machine):
            return "\(path): ELF machine \(machine) is not x86-64; Sonde only instruments x86-64 executables"
        case .malformed(let path, let reason):
            return "\(path): malformed ELF file (\(reason)); the file may be truncated or still being written"
        case .unsupportedGoBuildInfo(let path):
            return "\(path): built by Go older than 1.18, whose build info Sonde does not read; rebuild it with Go 1.18 or newer"
        case .disassemblerUnavailable(let reason):
            return "cannot decode x86-64 instructions: capstone says \"\(reason)\"; install a libcapstone built with x86 support (Debian: libcapstone4)"
        }
    }
}
