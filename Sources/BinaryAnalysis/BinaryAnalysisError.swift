/// Why a binary could not be analysed; each message names the file, the problem and what to do.
public enum BinaryAnalysisError: Error, Equatable, CustomStringConvertible {
    /// The file could not be opened or read (missing, no permission…).
    case cannotOpen(path: String, reason: String)
    /// The path names a directory, a FIFO, a device or a socket: nothing Sonde can read an executable from.
    /// `kind` says which, with its article ("a directory").
    case notRegularFile(path: String, kind: String)
    /// The file is not an ELF object at all (a script, a text file, a Mach-O binary…).
    case notELF(path: String)
    /// The file is ELF but not for x86-64, the only architecture whose instructions Sonde decodes.
    case unsupportedArchitecture(path: String, machine: Int)
    /// The ELF file's headers are inconsistent with the file: truncated or corrupt. `reason` names
    /// the header, table or section at fault and where it lies.
    case malformed(path: String, reason: String)
    /// The file has a Go build info section whose contents cannot be read.
    case corruptGoBuildInfo(path: String, reason: String)
    /// A Go binary whose build info predates Go 1.18, the oldest toolchain Sonde reads.
    case unsupportedGoBuildInfo(path: String)
    /// The installed capstone library cannot decode x86-64; no file would do better.
    case disassemblerUnavailable(reason: String)

    public var description: String {
        switch self {
        case .cannotOpen(let path, let reason):
            return "cannot open \(path): \(reason)"
        case .notRegularFile(let path, let kind):
            return "\(path) is \(kind), not an executable file; give the path of the program's executable"
        case .notELF(let path):
            return "\(path): not an ELF file; give the path of the executable itself, not a script or wrapper that starts it"
        case .unsupportedArchitecture(let path, let machine):
            return "\(path): ELF machine \(machine) is not x86-64; Sonde only instruments x86-64 executables"
        case .malformed(let path, let reason):
            return "\(path): truncated or corrupt ELF file: \(reason); "
                + "the file may be damaged or still being written: copy or build the executable again"
        case .corruptGoBuildInfo(let path, let reason):
            return "\(path): the Go build info (.go.buildinfo) is damaged: \(reason); "
                + "the file may be corrupt: copy or build the executable again"
        case .unsupportedGoBuildInfo(let path):
            return "\(path): built by Go older than 1.18, whose build info Sonde does not read; rebuild it with Go 1.18 or newer"
        case .disassemblerUnavailable(let reason):
            return "cannot decode x86-64 instructions: capstone says \"\(reason)\"; install a libcapstone built with x86 support (Debian: libcapstone4)"
        }
    }
}
