import Planning

/// `sonde plan`'s text: every site with its instruction and cost class, every fetch program.
public enum PlanReport {
    public static func render(_ plan: AttachPlan) -> String {
        var lines: [String] = []
        let build = plan.goVersion.map { "Go \($0)" } ?? "not Go"
        let kind = plan.sharedLibrary.map { "shared library \($0)" } ?? (plan.isPositionIndependent ? "PIE" : "non-PIE")
        lines.append("attach plan for \(plan.binaryPath) (\(build), \(kind))")
        for (pack, note) in plan.experimentalPacks.sorted(by: { $0.key < $1.key }) { lines.append("experimental pack \(pack): \(note)") }
        for probe in plan.probes {
            lines.append("")
            lines.append("probe \(probe.qualifiedID) (\(probe.probe.source)): \(probe.probe.function)")
            let effect = Self.effect(of: probe)
            // A hand-off keys nothing: it reads both goroutines where it stands.
            let keying = probe.handoffChild == nil ? ", calls keyed by \(probe.keyMode == .goroutine ? "goroutine" : "thread")" : ""
            lines.append("  \(effect)\(keying)")
            for site in probe.entries + probe.returns + probe.resultBranches {
                lines.append("  " + render(site))
            }
            if let caller = probe.probe.calledFrom { lines.append("  acts where \(caller) calls it (called-from), not at its entry") }
            if let guarded = probe.resultBranchGuard, !probe.resultBranches.isEmpty {
                lines.append("  ends at the branch after its call \(guarded), reading the call's results; otherwise at a RET")
            }
            if let guarded = probe.entryGuard { lines.append("  \(probe.entry.role == .returnProbe ? "acts at the return" : "acts") \(guarded)") }
            if let guarded = probe.returnGuard { lines.append("  ends at the return \(guarded); otherwise when an end-span probe ends it") }
            if probe.returnsOnlyOnFailure, case .afterFailedCall(let call)? = probe.probe.span?.endsAtReturn, let register = probe.failureReturns?.register {
                lines.append("  ends at these RETs only after its call of \(call.function) failed (\(register) not zero); otherwise when an end-span probe ends it")
            }
            lines.append("  per call: \(TrapCost(perCallOf: probe))")
            if let prefetch = probe.prefetch { lines.append("  \(prefetch)") }
            lines.append("  entry program:")
            lines += probe.entryProgram.map { "    \($0)" }
            lines.append("  return program:")
            lines += probe.returnProgram.map { "    \($0)" }
            if let action = probe.contextAction {
                lines.append("  trace-context program:")
                lines += probe.contextProgram.map { "    \($0)" } + ["    \(action)"]
            }
            if probe.writesTargetMemory {
                lines.append("  WRITES TO THE TRACED PROCESS'S MEMORY (outgoing trace context; off with --no-inject-trace-context)")
            }
            lines.append("  captures:")
            // An enricher's slots are its target's followed by its own; a target's are its own followed by its enrichers'.
            let ownCount = probe.probe.captures.count
            for slot in probe.probe.enrichment == nil ? probe.captureSlots.prefix(ownCount) : probe.captureSlots.suffix(ownCount) {
                let length = slot.type.isText ? " max \(slot.maxLength)" : ""
                lines.append("    \(slot.name): \(slot.type.rawValue)\(length) at data[\(slot.offset)], offsets from \(slot.origin)")
            }
        }
        if !plan.probes.isEmpty {
            let total = TrapCost(perRequestOf: plan.probes)
            lines.append("")
            lines.append("per request, if each probed function runs once: \(total)")
        }
        if !plan.notes.isEmpty {
            lines.append("")
            lines.append("notes:")
            lines += plan.notes.map { "  \($0)" }
        }
        if !plan.skipped.isEmpty {
            lines.append("")
            lines.append("skipped probes:")
            lines += plan.skipped.map { "  \($0)" }
        }
        return lines.joined(separator: "\n")
    }

    /// What the probe does, in words.
    private static func effect(of probe: PlannedProbe) -> String {
        if let span = probe.probe.span {
            return "\(span.kind.rawValue) span" + (span.outlivesCall == nil ? "" : " that stays open under the object its return program keeps")
        }
        if let enrichment = probe.probe.enrichment {
            switch enrichment.ends {
            case .object?: return "adds to and ends the \(enrichment.target) span of the object in \(probe.objectKey.map(String.init(describing:)) ?? "")"
            case .openCall?: return "adds to and ends the open \(enrichment.target) span"
            case nil: return "adds to the open \(enrichment.target) span"
            }
        }
        if let injection = probe.probe.injection { return "writes the trace context of the \(injection.target) span into its request" }
        if let extraction = probe.probe.extraction {
            return "reads the incoming trace context for the \(extraction.span) span, started in the code this function runs"
        }
        let child = probe.handoffChild.map { " in \($0)" } ?? ""
        return "carries trace context to the new goroutine\(child) from its creator, the *g the entry program reaches"
    }

    static func render(_ site: ProbeSite) -> String {
        let role = switch site.role {
        case .entry: "entry "
        case .return: "return"
        case .call: "call  "
        case .resultBranch: "ends  "
        case .returnProbe: "return"
        }
        let hooked = site.kernelEmulates ? "emulated (cheap)" : "single-stepped (costly)"
        let cost = site.role == .returnProbe ? "hook \(hooked), return through the kernel (cheap)" : hooked
        var text = "\(role) 0x\(hex(site.address)) file offset 0x\(hex(site.fileOffset))  \(site.instruction)  [\(cost)]"
        if site.skipFlagsMask != 0 { text += " skipped when branching to morestack" }
        return text
    }

    private static func hex(_ value: UInt64) -> String { String(value, radix: 16) }
}
