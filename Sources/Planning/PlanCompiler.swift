import BinaryAnalysis
import ProbePacks

/// Turns probe packs and the facts of one binary into an attach plan. Every probe either
/// gets planned or gets a one-line reason; one probe's problem never stops the others.
public enum PlanCompiler {
    /// The functions the packs hook, so binary analysis decodes only those.
    public static func functionsNeeded(by packs: [ProbePack]) -> [String] {
        Array(Set(packs.flatMap { $0.probes.map(\.function) })).sorted()
    }

    public static func compile(packs: [ProbePack], facts: BinaryFacts) -> AttachPlan {
        var planned: [PlannedProbe] = []
        var skipped: [SkippedProbe] = []
        for pack in packs {
            let packProblem = applicability(of: pack, to: facts)
            for probe in pack.probes {
                do {
                    if let packProblem { throw PlanProblem(packProblem) }
                    var probePlan = try compile(probe: probe, facts: facts)
                    probePlan.pack = pack.name
                    probePlan.packVersion = pack.library.versions.description
                    probePlan.spanSlot = UInt32(planned.count)
                    planned.append(probePlan)
                } catch let problem as PlanProblem {
                    skipped.append(SkippedProbe(pack: pack.name, probe: probe.id, reason: problem.reason))
                } catch {
                    skipped.append(SkippedProbe(pack: pack.name, probe: probe.id, reason: "\(error)"))
                }
            }
        }
        return AttachPlan(
            binaryPath: facts.path, isPositionIndependent: facts.isPositionIndependent, goVersion: facts.goBuild?.goVersion,
            probes: planned, skipped: skipped)
    }

    /// Why a whole pack does not apply to this binary, or nil when it does.
    static func applicability(of pack: ProbePack, to facts: BinaryFacts) -> String? {
        guard pack.language == .go else { return nil }
        guard let build = facts.goBuild else { return "not a Go program (no Go build info in \(facts.path))" }
        let version: String
        if pack.library.module == "std" {
            version = build.goVersion
        } else if let module = build.dependencies.first(where: { $0.path == pack.library.module }) {
            version = module.version
        } else {
            // GOPATH builds record no module versions: the symbols decide.
            return nil
        }
        guard let parsed = Version(parsing: version) else { return nil }
        guard pack.library.versions.contains(parsed) else {
            return "\(pack.library.module) \(version) is outside the pack's range \(pack.library.versions)"
        }
        return nil
    }

    static func compile(probe: Probe, facts: BinaryFacts) throws -> PlannedProbe {
        guard let function = facts.functions[probe.function] else {
            throw PlanProblem("no symbol \(probe.function) in \(facts.path)")
        }
        guard facts.hasDWARF else {
            throw PlanProblem("the binary has no DWARF (built with -ldflags=-s -w?), so argument locations and field offsets are unknown")
        }
        guard let parameters = function.parameters else {
            throw PlanProblem("DWARF describes no parameters for \(probe.function)")
        }
        var programs = CaptureCompiler(
            function: probe.function, parameters: parameters,
            results: function.results.map { GoRegisterABI.assigningRegisters(to: $0, types: facts.types) }, types: facts.types)
        var captureSlots: [CaptureSlot] = []
        let keyMode: CallKeyMode
        if let handoff = probe.goroutineHandoff {
            try programs.compile(handoff: handoff)
            // Goroutines are created on the system stack, where R14 is g0: key by thread.
            keyMode = .thread
        } else {
            captureSlots = try programs.compile(entry: probe.onEntry, return: probe.onReturn)
            keyMode = facts.goBuild == nil ? .thread : .goroutine
        }
        var preserved = programs.registersReadAtEntry
        if keyMode == .goroutine { preserved.insert(.r14) }
        let entry = try SiteSelector.entrySite(of: function, preserving: preserved)
        let returns = SiteSelector.returnSites(of: function)
        guard !returns.isEmpty else { throw PlanProblem("no return instruction found in \(probe.function)") }
        return PlannedProbe(
            pack: "", packVersion: "", probe: probe, spanSlot: 0, keyMode: keyMode, entry: entry, returns: returns,
            entryProgram: programs.entryProgram, returnProgram: programs.returnProgram, captureSlots: captureSlots)
    }
}

/// A reason a probe cannot be planned, phrased for the user.
struct PlanProblem: Error {
    let reason: String
    init(_ reason: String) { self.reason = reason }
}
