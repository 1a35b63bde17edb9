import Foundation

/// The executable a run analyses and attaches to, and the path its spans report.
///
/// Uprobes are set on a file, which must be the very file the process runs: a relative name
/// would be looked up in `$PATH` by libbpf, and the path `/proc/PID/exe` reads back is wrong in
/// another mount namespace (a container) and ends in " (deleted)" once the file is replaced.
/// `/proc/PID/exe` itself opens the process's own file in every one of those cases.
public struct TargetExecutable: Sendable, Equatable {
    /// What binary analysis reads and the uprobes are attached through.
    public var attachPath: String
    /// The executable as the user knows it, for span resources and messages.
    public var displayPath: String

    /// The executable of a running process, through its `/proc/PID/exe` link.
    /// - Throws: ``TargetError`` when there is no such process or its executable cannot be read.
    public static func ofProcess(_ pid: Int32, procRoot: String = "/proc") throws(TargetError) -> TargetExecutable {
        let link = "\(procRoot)/\(pid)/exe"
        guard let shown = try? FileManager.default.destinationOfSymbolicLink(atPath: link) else {
            throw TargetError("no process \(pid) whose executable can be read (is it running? are you root?)")
        }
        return TargetExecutable(attachPath: link, displayPath: shown.trimmingSuffix(" (deleted)"))
    }

    /// An executable named on the command line, made absolute against `currentDirectory`, so the
    /// uprobes land on that file and no other (the kernel follows symbolic links to the file itself).
    /// - Throws: ``TargetError`` when the path names nothing.
    public static func atPath(
        _ path: String, currentDirectory: String = FileManager.default.currentDirectoryPath
    ) throws(TargetError) -> TargetExecutable {
        let absolute = URL(fileURLWithPath: path.hasPrefix("/") ? path : "\(currentDirectory)/\(path)").standardized.path
        guard access(absolute, F_OK) == 0 else {
            throw TargetError("cannot use --exe \(path): \(String(cString: strerror(errno))) (\(absolute))")
        }
        return TargetExecutable(attachPath: absolute, displayPath: absolute)
    }
}

/// Why the executable to trace could not be found.
public struct TargetError: Error, CustomStringConvertible, Equatable {
    public let description: String
    init(_ description: String) { self.description = description }
}

extension String {
    fileprivate func trimmingSuffix(_ suffix: String) -> String {
        hasSuffix(suffix) ? String(dropLast(suffix.count)) : self
    }
}
