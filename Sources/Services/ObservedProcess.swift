import Foundation

/// What Sonde reads of one running process to decide which service it is (from `/proc`).
public struct ObservedProcess: Sendable, Equatable {
    public var pid: Int32
    /// Clock ticks after boot at which the process started (`/proc/PID/stat` field 22): with the
    /// pid, it names one process even after the pid is reused.
    public var startTime: UInt64
    /// The executable's path as the process sees it (`/proc/PID/exe`), " (deleted)" removed.
    public var executable: String
    /// The executable file (device and inode) the process runs, to tell an exec or a replaced
    /// file from the same program.
    public var executableFile: FileIdentity
    public var name: String
    /// The arguments joined by spaces.
    public var commandLine: String
    /// The cgroup v2 path (`0::` line of `/proc/PID/cgroup`); empty when unreadable.
    public var cgroup: String

    public init(
        pid: Int32, startTime: UInt64, executable: String, executableFile: FileIdentity, name: String, commandLine: String, cgroup: String
    ) {
        self.pid = pid
        self.startTime = startTime
        self.executable = executable
        self.executableFile = executableFile
        self.name = name
        self.commandLine = commandLine
        self.cgroup = cgroup
    }

    /// The process now; nil when it has exited, is a kernel thread (no executable) or cannot be read.
    public static func read(pid: Int32, procRoot: String = "/proc") -> ObservedProcess? {
        let base = "\(procRoot)/\(pid)"
        guard let executable = try? FileManager.default.destinationOfSymbolicLink(atPath: "\(base)/exe"),
            let file = FileIdentity(path: "\(base)/exe"),
            let stat = try? String(contentsOfFile: "\(base)/stat", encoding: .utf8),
            let startTime = startTime(stat: stat)
        else { return nil }
        let name = (try? String(contentsOfFile: "\(base)/comm", encoding: .utf8))?.trimmingCharacters(in: .newlines) ?? ""
        let arguments = (try? Data(contentsOf: URL(fileURLWithPath: "\(base)/cmdline"))) ?? Data()
        let commandLine = arguments.split(separator: 0, omittingEmptySubsequences: false).dropLast(arguments.last == 0 ? 1 : 0)
            .map { String(decoding: $0, as: UTF8.self) }.joined(separator: " ")
        let cgroup = cgroup(pid: pid, procRoot: procRoot)
        let deleted = " (deleted)"
        return ObservedProcess(
            pid: pid, startTime: startTime, executable: executable.hasSuffix(deleted) ? String(executable.dropLast(deleted.count)) : executable,
            executableFile: file, name: name, commandLine: commandLine, cgroup: cgroup)
    }

    /// The process's cgroup v2 path (the `0::` line of `/proc/PID/cgroup`) from the hierarchy's
    /// root; empty when unreadable.
    public static func cgroup(pid: Int32, procRoot: String = "/proc") -> String {
        let cgroups = (try? String(contentsOfFile: "\(procRoot)/\(pid)/cgroup", encoding: .utf8)) ?? ""
        guard let line = cgroups.split(separator: "\n").first(where: { $0.hasPrefix("0::") }) else { return "" }
        // Read from inside a cgroup namespace (sonde in a container), another container's path
        // starts by climbing out of sonde's own ("/../../kubepods.slice/…"): the same path from the root.
        var path = line.dropFirst(3)
        while path.hasPrefix("/..") && (path.count == 3 || path.dropFirst(3).hasPrefix("/")) { path = path.dropFirst(3) }
        return path.isEmpty ? "/" : String(path)
    }

    /// How long ago the process started, in seconds.
    public var age: Double {
        let uptime = (try? String(contentsOfFile: "/proc/uptime", encoding: .utf8))?.split(separator: " ").first.flatMap { Double($0) } ?? 0
        return max(uptime - Double(startTime) / Double(sysconf(Int32(_SC_CLK_TCK))), 0)
    }

    /// When the process started, or nil when it has exited.
    public static func startTime(pid: Int32, procRoot: String = "/proc") -> UInt64? {
        (try? String(contentsOfFile: "\(procRoot)/\(pid)/stat", encoding: .utf8)).flatMap { startTime(stat: $0) }
    }

    /// Field 22 of `/proc/PID/stat`, counted after the name, which may itself hold spaces and parentheses.
    static func startTime(stat: String) -> UInt64? {
        guard let nameEnd = stat.lastIndex(of: ")") else { return nil }
        let fields = stat[stat.index(after: nameEnd)...].split(separator: " ")
        // fields[0] is field 3 (state), so field 22 is fields[19].
        return fields.count > 19 ? UInt64(fields[19]) : nil
    }

    /// The pids of every process now, in no particular order.
    public static func allPIDs(procRoot: String = "/proc") -> [Int32] {
        ((try? FileManager.default.contentsOfDirectory(atPath: procRoot)) ?? []).compactMap { Int32($0) }
    }

    /// The TCP ports the process listens on (IPv4 and IPv6), from its network namespace's socket
    /// tables and the sockets it holds open. Read only when a selector asks for a port.
    public static func listeningPorts(pid: Int32, procRoot: String = "/proc") -> Set<Int> {
        let base = "\(procRoot)/\(pid)"
        var portsByInode: [String: Int] = [:]
        for table in ["tcp", "tcp6"] {
            let text = procText(atPath: "\(base)/net/\(table)") ?? ""
            for line in text.split(separator: "\n").dropFirst() {
                let fields = line.split(separator: " ")
                // sl local_address rem_address st … inode: state 0A is LISTEN.
                guard fields.count > 9, fields[3] == "0A", let colon = fields[1].lastIndex(of: ":"),
                    let port = Int(fields[1][fields[1].index(after: colon)...], radix: 16)
                else { continue }
                portsByInode[String(fields[9])] = port
            }
        }
        guard !portsByInode.isEmpty else { return [] }
        let descriptors = (try? FileManager.default.contentsOfDirectory(atPath: "\(base)/fd")) ?? []
        var ports: Set<Int> = []
        for descriptor in descriptors {
            guard let target = try? FileManager.default.destinationOfSymbolicLink(atPath: "\(base)/fd/\(descriptor)"),
                target.hasPrefix("socket:["), target.hasSuffix("]")
            else { continue }
            if let port = portsByInode[String(target.dropFirst(8).dropLast())] { ports.insert(port) }
        }
        return ports
    }
}

/// Which file a path names now (device and inode).
public struct FileIdentity: Sendable, Hashable {
    public let device: UInt64
    public let inode: UInt64

    /// Nil when nothing is at `path`.
    public init?(path: String) {
        var status = stat()
        guard stat(path, &status) == 0 else { return nil }
        device = UInt64(status.st_dev)
        inode = UInt64(status.st_ino)
    }
}

/// A /proc file's whole text. Those files report a size of 0, and Foundation's
/// `String(contentsOfFile:)` then stops after its first read (4 KiB): a socket table or a
/// process's maps are often longer.
public func procText(atPath path: String) -> String? {
    guard let handle = FileHandle(forReadingAtPath: path) else { return nil }
    defer { try? handle.close() }
    guard let data = try? handle.readToEnd() else { return nil }
    return String(decoding: data, as: UTF8.self)
}
