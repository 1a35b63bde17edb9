import Foundation
import Services

/// The shared libraries a process has mapped, found by the names programs link them by.
enum SharedLibraries {
    /// Each mapped file whose name is a soname or a versioned name of one (`libpq.so.5.15`
    /// answers for `libpq.so.5` and `libpq.so`), by soname, as a path through the process's
    /// root (`/proc/PID/root/usr/lib/…`): the process's own file, also in another mount namespace.
    static func mapped(byProcess pid: Int32, procRoot: String = "/proc") -> [String: String] {
        guard let maps = procText(atPath: "\(procRoot)/\(pid)/maps") else { return [:] }
        var libraries: [String: String] = [:]
        for line in maps.split(separator: "\n") {
            // address perms offset dev inode path: the path is the sixth field, and may hold spaces.
            let fields = line.split(separator: " ", maxSplits: 5, omittingEmptySubsequences: true)
            guard fields.count == 6 else { continue }
            let path = String(fields[5].drop { $0 == " " })
            guard path.hasPrefix("/") else { continue }
            let name = path.split(separator: "/").last.map(String.init) ?? ""
            for soname in sonames(ofFileNamed: name) where libraries[soname] == nil {
                libraries[soname] = "\(procRoot)/\(pid)/root\(path)"
            }
        }
        return libraries
    }

    /// `libpq.so.5.15` → `libpq.so`, `libpq.so.5`, `libpq.so.5.15`.
    static func sonames(ofFileNamed name: String) -> [String] {
        let parts = name.split(separator: ".", omittingEmptySubsequences: false)
        guard let so = parts.firstIndex(of: "so"), so > 0 else { return [] }
        return (so..<parts.count).map { parts[...$0].joined(separator: ".") }
    }
}
