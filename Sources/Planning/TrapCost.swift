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
    /// through exactly one RET).
    public init(perCallOf probe: PlannedProbe) {
        self.init()
        add(probe.entry)
        if let exit = probe.returns.first {
            // Return sites differ only when a RET is emulated, which x86's never is; count the costliest.
            add(probe.returns.first { !$0.kernelEmulates } ?? exit)
        }
    }

    private mutating func add(_ site: ProbeSite) {
        if site.kernelEmulates { emulatedHits += 1 } else { singleSteppedHits += 1 }
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
