/// What the kernel's uprobe traps cost a traced call, by the classes of its sites: the figures
/// measured on the project's machines (Linux 6.18, x86-64 VM; docs/architecture.md, "What a probe costs").
/// The BPF program's own run time comes on top.
public struct TrapCost: Sendable, Equatable, CustomStringConvertible {
    /// Microseconds per hit on an instruction the kernel emulates (nop, push, jmp, jcc, call).
    public static let emulatedMicroseconds = 0.65
    /// Microseconds per hit on an instruction the kernel single-steps out of line (cmp, mov, ret, …).
    public static let singleSteppedMicroseconds = 9.5

    public var emulatedHits = 0
    public var singleSteppedHits = 0

    public init(emulatedHits: Int = 0, singleSteppedHits: Int = 0) {
        self.emulatedHits = emulatedHits
        self.singleSteppedHits = singleSteppedHits
    }

    /// One call of the probe's function: its entry site, and one of its return sites (a call leaves
    /// through exactly one RET), or the result branch where it usually ends instead; none when
    /// only failed calls reach its return sites.
    /// A return probe costs its hook at the function's first instruction, shared with an entry
    /// site there, and its return, which the kernel makes without a single-step (Linux 6.11+).
    public init(perCallOf probe: PlannedProbe) {
        self.init()
        add(probe.entry)
        if let branch = probe.resultBranches.first {
            add(branch)
        } else if !probe.returnsOnlyOnFailure, let exit = probe.returns.first {
            // Return sites differ only when a RET is emulated, which x86's never is; count the costliest.
            let costliest = probe.returns.first { !$0.kernelEmulates } ?? exit
            if costliest.role == .returnProbe {
                if costliest.address != probe.entry.address { addHit(emulated: costliest.kernelEmulates) }
                addHit(emulated: true)
            } else {
                add(costliest)
            }
        }
    }

    /// One request that runs each probed function once: a site several probes share traps once,
    /// and so does a return probe's hook where an entry site is.
    public init(perRequestOf probes: [PlannedProbe]) {
        self.init()
        var breakpoints: [UInt64: Bool] = [:]  // file offset: emulated
        var returnProbes = Set<UInt64>()
        for probe in probes {
            let returns = probe.returnsOnlyOnFailure ? [] : probe.returns
            let usualEnd = probe.resultBranches.first ?? returns.first { !$0.kernelEmulates } ?? returns.first
            for site in [probe.entry] + (usualEnd.map { [$0] } ?? []) {
                breakpoints[site.fileOffset] = site.kernelEmulates
                if site.role == .returnProbe { returnProbes.insert(site.fileOffset) }
            }
        }
        breakpoints.values.forEach { addHit(emulated: $0) }
        returnProbes.forEach { _ in addHit(emulated: true) }
    }

    private mutating func add(_ site: ProbeSite) {
        addHit(emulated: site.kernelEmulates)
        if site.role == .returnProbe { addHit(emulated: true) }  // an `at: return` probe's only site: hook and return
    }

    private mutating func addHit(emulated: Bool) {
        if emulated { emulatedHits += 1 } else { singleSteppedHits += 1 }
    }

    public static func + (left: TrapCost, right: TrapCost) -> TrapCost {
        TrapCost(emulatedHits: left.emulatedHits + right.emulatedHits, singleSteppedHits: left.singleSteppedHits + right.singleSteppedHits)
    }

    public var microseconds: Double {
        Double(emulatedHits) * Self.emulatedMicroseconds + Double(singleSteppedHits) * Self.singleSteppedMicroseconds
    }

    public var description: String {
        let total = (microseconds * 100).rounded() / 100
        return "\(emulatedHits) emulated + \(singleSteppedHits) single-stepped hits ≈ \(total) µs of traps"
    }
}
