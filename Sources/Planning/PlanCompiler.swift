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
        // Enrichers go last: their captures extend the layout of a span probe planned before them.
        let probes = packs.flatMap { pack in pack.probes.map { (pack, $0) } }
        let ordered = probes.filter { $0.1.enrichment == nil } + probes.filter { $0.1.enrichment != nil }
        for (pack, probe) in ordered {
            do {
                if let packProblem = applicability(of: pack, to: facts) { throw PlanProblem(packProblem) }
                if let enrichment = probe.enrichment {
                    guard let targetIndex = planned.firstIndex(where: { $0.qualifiedID == enrichment.target && $0.probe.span != nil }) else {
                        throw PlanProblem("it enriches \(enrichment.target), which is not planned for this binary")
                    }
                    planned.append(try compile(enricher: probe, of: pack, target: &planned[targetIndex], facts: facts))
                } else {
                    var probePlan = try compile(probe: probe, facts: facts)
                    probePlan.pack = pack.name
                    probePlan.packVersion = pack.library.versions.description
                    probePlan.spanSlot = UInt32(planned.count)
                    planned.append(probePlan)
                }
            } catch let problem as PlanProblem {
                skipped.append(SkippedProbe(pack: pack.name, probe: probe.id, reason: problem.reason))
            } catch {
                skipped.append(SkippedProbe(pack: pack.name, probe: probe.id, reason: "\(error)"))
            }
        }
        return AttachPlan(
            binaryPath: facts.path, isPositionIndependent: facts.isPositionIndependent, goVersion: facts.goBuild?.goVersion,
            probes: planned, skipped: skipped)
    }

    /// Plans an enrich probe: its captures land after the target's in the target's record, and
    /// the target's span learns the attributes and name they give.
    static func compile(enricher probe: Probe, of pack: ProbePack, target: inout PlannedProbe, facts: BinaryFacts) throws -> PlannedProbe {
        let dataOffset = target.captureSlots.map(\.alignedEnd).max() ?? 0
        var plan = try compile(probe: probe, facts: facts, dataOffset: dataOffset)
        guard target.captureSlots.count + plan.captureSlots.count <= CaptureCompiler.maxCaptures else {
            throw PlanProblem("\(target.qualifiedID) and its enrichers would have more than \(CaptureCompiler.maxCaptures) captures")
        }
        let known = Set((target.captureSlots + plan.captureSlots).map(\.name))
        for name in probe.enrichment?.rename?.captureNames ?? [] where !known.contains(name) {
            throw PlanProblem("enrich.name uses '\(name)', a capture neither this probe nor \(target.qualifiedID) has")
        }
        plan.pack = pack.name
        plan.packVersion = pack.library.versions.description
        target.captureSlots += plan.captureSlots
        target.enrichments.append(EnrichmentRule(source: plan.qualifiedID, attributes: probe.attributes, rename: probe.enrichment?.rename))
        plan.captureSlots = target.captureSlots
        plan.spanSlot = target.spanSlot
        plan.keyMode = target.keyMode
        return plan
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

    static func compile(probe: Probe, facts: BinaryFacts, dataOffset: Int = 0) throws -> PlannedProbe {
        guard let function = facts.functions[probe.function] else {
            if facts.goBuild != nil, !facts.hasDWARF, facts.functions.isEmpty {
                throw PlanProblem(
                    "\(facts.path) is stripped (built with -ldflags=-s -w: no symbol table, no DWARF); Sonde cannot locate \(probe.function) in it yet. Trace a build without -s -w")
            }
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
            results: function.results.map { GoRegisterABI.assigningRegisters(to: $0, types: facts.types) }, types: facts.types,
            dataOffset: dataOffset)
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
        let entry = try SiteSelector.entrySite(of: function, preserving: preserved, isGo: facts.goBuild != nil)
        // Enrichers act at entry only, so they cost one cheap hit and no return probe.
        let returns = probe.enrichment == nil ? SiteSelector.returnSites(of: function) : []
        guard !returns.isEmpty || probe.enrichment != nil else { throw PlanProblem("no return instruction found in \(probe.function)") }
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
