import CLibBPF
import Foundation

/// Checks, before anything is loaded, that this kernel and process can run Sonde's probes,
/// so the user reads one list of what is missing instead of a libbpf error.
public enum KernelCapabilities {
    /// Linux capability numbers (linux/capability.h).
    static let capSysAdmin = 21
    static let capPerfmon = 38
    static let capBPF = 39

    /// bpf_loop (5.17) is the newest kernel feature the program needs; uprobe multi-links (6.6)
    /// are used where the kernel has them.
    static let minimumKernel = (major: 5, minor: 17)

    /// Human-readable problems; empty when tracing can start.
    public static func missing(
        procStatus: String? = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
        kernelRelease: String = currentKernelRelease(),
        uprobePMUExists: Bool = FileManager.default.fileExists(atPath: "/sys/bus/event_source/devices/uprobe/type"),
        hasUprobeMultiLinks: () -> Bool = hasUprobeMultiLinks
    ) -> [String] {
        var problems: [String] = []
        let capabilities = effectiveCapabilities(procStatus ?? "")
        let hasBPF = capabilities.contains(capBPF) && capabilities.contains(capPerfmon)
        if !hasBPF && !capabilities.contains(capSysAdmin) {
            problems.append("privileges: run as root, or grant CAP_BPF and CAP_PERFMON (e.g. setcap cap_bpf,cap_perfmon+ep sonde)")
        }
        // Single uprobe links are perf events; multi-links need no event source.
        if !uprobePMUExists && !hasUprobeMultiLinks() {
            problems.append("uprobes: the kernel has no uprobe event source (/sys/bus/event_source/devices/uprobe); it needs CONFIG_UPROBE_EVENTS")
        }
        let version = kernelRelease.split(whereSeparator: { !$0.isNumber }).prefix(2).compactMap { Int($0) }
        if version.count == 2, (version[0], version[1]) < minimumKernel {
            problems.append("kernel: \(kernelRelease) is older than \(minimumKernel.major).\(minimumKernel.minor), which the BPF program needs (bpf_loop, BPF cookies, ring buffer)")
        }
        return problems
    }

    /// Why this kernel refuses BPF programs that write into a process's memory
    /// (bpf_probe_write_user), which outgoing trace context needs; nil when it allows them.
    public static func traceContextInjectionBlocker(
        procStatus: String? = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
        lockdown: String? = try? String(contentsOfFile: "/sys/kernel/security/lockdown", encoding: .utf8),
        helperAvailable: () -> Bool = canLoadWritingProgram
    ) -> String? {
        // "none [integrity] confidentiality": the bracketed mode is in force.
        if let lockdown, let open = lockdown.firstIndex(of: "["), let close = lockdown.firstIndex(of: "]"), open < close {
            let mode = lockdown[lockdown.index(after: open)..<close]
            if mode != "none" { return "kernel lockdown is '\(mode)', which forbids BPF writes to process memory" }
        }
        if !effectiveCapabilities(procStatus ?? "").contains(capSysAdmin) {
            return "Sonde lacks CAP_SYS_ADMIN, which BPF writes to process memory need"
        }
        if !helperAvailable() {
            return "the kernel refuses BPF writes to process memory (bpf_probe_write_user); kernel lockdown is the usual reason"
                + " (mount securityfs and read /sys/kernel/security/lockdown)"
        }
        return nil
    }

    /// Whether the kernel has uprobe multi-links (Linux 6.6), asked as libbpf does: a multi-link
    /// on a directory is refused for being no file (EBADF) by a kernel that has them, for its
    /// attach type (EINVAL) by one that has not; no uprobe is set either way.
    public static func hasUprobeMultiLinks() -> Bool {
        // r0 = 0; exit
        let program = loadProbeProgram(
            [(0xb7, 0x00, 0, 0), (0x95, 0x00, 0, 0)], name: "sonde_multi",
            expectedAttachType: bpf_attach_type(rawValue: UInt32(SONDE_BPF_TRACE_UPROBE_MULTI)))
        guard program >= 0 else { return false }
        defer { close(program) }
        let offsets: [UInt] = [0]
        let cookies: [UInt64] = [0]
        let link = sonde_attach_uprobe_multi(program, "/", offsets, cookies, 1, 0, false)
        if link >= 0 { close(link) }
        return link == -EBADF
    }

    /// Whether the kernel loads a uprobe program that calls bpf_probe_write_user. libbpf's own
    /// helper probe takes the refusal under lockdown ("cannot use helper") for support.
    public static func canLoadWritingProgram() -> Bool {
        // *(u64 *)(r10 - 8) = 0; r1 = 0; r2 = r10; r2 += -8; r3 = 8; call bpf_probe_write_user; r0 = 0; exit
        let descriptor = loadProbeProgram(
            [
                (0x7a, 0x0a, -8, 0), (0xb7, 0x01, 0, 0), (0xbf, 0xa2, 0, 0), (0x07, 0x02, 0, -8), (0xb7, 0x03, 0, 8),
                (0x85, 0x00, 0, Int32(BPF_FUNC_probe_write_user.rawValue)), (0xb7, 0x00, 0, 0), (0x95, 0x00, 0, 0),
            ], name: "sonde_can_write")
        guard descriptor >= 0 else { return false }
        close(descriptor)
        return true
    }

    /// Loads a few hand-assembled instructions as a uprobe program, to ask the kernel what it
    /// accepts. Returns the program's descriptor (the caller closes it), or a negative value.
    private static func loadProbeProgram(
        _ instructions: [(code: UInt8, registers: UInt8, offset: Int16, immediate: Int32)], name: String,
        expectedAttachType: bpf_attach_type? = nil
    ) -> Int32 {
        var bytes: [UInt8] = []
        for instruction in instructions {
            bytes += [instruction.code, instruction.registers]
            withUnsafeBytes(of: instruction.offset.littleEndian) { bytes += $0 }
            withUnsafeBytes(of: instruction.immediate.littleEndian) { bytes += $0 }
        }
        var options = bpf_prog_load_opts()
        options.sz = MemoryLayout<bpf_prog_load_opts>.size
        if let expectedAttachType { options.expected_attach_type = expectedAttachType }
        return bytes.withUnsafeBytes { raw in
            bpf_prog_load(
                BPF_PROG_TYPE_KPROBE, name, "GPL", raw.baseAddress!.assumingMemoryBound(to: bpf_insn.self), instructions.count, &options)
        }
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
