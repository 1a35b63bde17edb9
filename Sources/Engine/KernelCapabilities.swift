import Foundation

/// Checks, before anything is loaded, that this kernel and process can run Sonde's probes,
/// so the user reads one list of what is missing instead of a libbpf error.
public enum KernelCapabilities {
    /// Linux capability numbers (linux/capability.h).
    static let capSysAdmin = 21
    static let capPerfmon = 38
    static let capBPF = 39

    /// bpf_loop (5.17) is the newest kernel feature the generic program uses.
    static let minimumKernel = (major: 5, minor: 17)

    /// Human-readable problems; empty when tracing can start.
    public static func missing(
        procStatus: String? = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
        kernelRelease: String = currentKernelRelease(),
        uprobePMUExists: Bool = FileManager.default.fileExists(atPath: "/sys/bus/event_source/devices/uprobe/type")
    ) -> [String] {
        var problems: [String] = []
        let capabilities = effectiveCapabilities(procStatus ?? "")
        let hasBPF = capabilities.contains(capBPF) && capabilities.contains(capPerfmon)
        if !hasBPF && !capabilities.contains(capSysAdmin) {
            problems.append("privileges: run as root, or grant CAP_BPF and CAP_PERFMON (e.g. setcap cap_bpf,cap_perfmon+ep sonde)")
        }
        if !uprobePMUExists {
            problems.append("uprobes: the kernel has no uprobe event source (/sys/bus/event_source/devices/uprobe); it needs CONFIG_UPROBE_EVENTS")
        }
        let version = kernelRelease.split(whereSeparator: { !$0.isNumber }).prefix(2).compactMap { Int($0) }
        if version.count == 2, (version[0], version[1]) < minimumKernel {
            problems.append("kernel: \(kernelRelease) is older than \(minimumKernel.major).\(minimumKernel.minor), which the BPF program needs (bpf_loop, BPF cookies, ring buffer)")
        }
        return problems
    }

    static func effectiveCapabilities(_ status: String) -> Set<Int> {
        guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix("CapEff:") }),
              let mask = UInt64(line.dropFirst("CapEff:".count).trimmingCharacters(in: .whitespaces), radix: 16)
        else { return [] }
        return Set((0..<64).filter { mask & (1 << UInt64($0)) != 0 })
    }

    public static func currentKernelRelease() -> String {
        var name = utsname()
        uname(&name)
        return withUnsafeBytes(of: &name.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
    }
}
