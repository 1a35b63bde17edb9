import BinaryAnalysis
import ProbePacks
import SondeABI

/// Turns probe packs and the facts of one binary into an attach plan. Every probe either
/// gets planned or gets a one-line reason; one probe's problem never stops the others.
public enum PlanCompiler {
    /// Probes one plan may hold: the BPF program keeps SONDE_CONFIGS_PER_PROBE configurations for
    /// each (entry, returns, result branches).
    public static let maxProbes = Int(SONDE_MAX_PROBE_CONFIGS / SONDE_CONFIGS_PER_PROBE)

    /// The functions the packs hook, those whose calls they probe or end spans after, and those
    /// their offset tables' type checks compare against, so binary analysis decodes only those.
    public static func functionsNeeded(by packs: [ProbePack], offsetTables: [String: OffsetTable] = [:]) -> [String] {
        // A pattern is expanded on its own; the other functions a pattern probe names are plain names.
        let hooked = packs.flatMap { $0.probes.flatMap { probe in probe.functionsRead.filter { !probe.functionIsPattern || $0 != probe.function } } }
        let typeCheckMethods = offsetTables.values.flatMap { table in
            table.entries.flatMap { $0.types.values.flatMap { $0.itabFirstMethods?.values.map { $0 } ?? [] } }
        }
        return Array(Set(hooked + typeCheckMethods)).sorted()
    }

    /// The `function: { pattern: … }` of the packs' probes, which binary analysis expands.
    public static func functionPatterns(in packs: [ProbePack]) -> [String] {
        Array(Set(packs.flatMap { $0.probes.filter(\.functionIsPattern).map(\.function) })).sorted()
    }

    /// `offsetTables`, by pack name, stand in for DWARF when the binary has none; `unusableTables`
    /// says, by pack name, why a pack's table could not be read; `placement` is where entry sites go.
    public static func compile(
        packs: [ProbePack], facts: BinaryFacts, offsetTables: [String: OffsetTable] = [:], unusableTables: [String: String] = [:],
        placement: SitePlacement = .costAware
    ) -> AttachPlan {
        var planned: [PlannedProbe] = []
        var skipped: [SkippedProbe] = []
        // Enrichers go last: their captures extend the layout of a span probe planned before them.
        let probes = packs.flatMap { pack in pack.probes.flatMap { probe in instances(of: probe, in: facts).map { (pack, $0) } } }
        func targetsSpan(_ probe: Probe) -> Bool { probe.enrichment != nil || probe.injection != nil || probe.extraction != nil }
        let ordered = probes.filter { !targetsSpan($0.1) } + probes.filter { targetsSpan($0.1) }
        /// The planned span probe `name` that a probe adds to, or why that probe is left out.
        func plannedSpan(_ name: String, or problem: String) throws -> Int {
            guard let index = planned.firstIndex(where: { $0.qualifiedID == name && $0.probe.span != nil }) else {
                throw PlanProblem(problem)
            }
            return index
        }
        for (pack, probe) in ordered {
            do {
                if let packProblem = applicability(of: pack, to: facts) {
                    var problem = PlanProblem(packProblem)
                    // Another file's probes (a shared library's) are not in this one, like absent functions.
                    problem.isFunctionAbsent = pack.library.soname.map { $0 != facts.soname } ?? false
                    throw problem
                }
                if !facts.hasDWARF, let unusable = unusableTables[pack.name] {
                    let dwarf = facts.unreadableDWARF.map { "the binary's DWARF is unreadable (\($0))" } ?? "the binary has no DWARF"
                    throw PlanProblem("\(dwarf) and the pack's offset table is unusable: \(unusable)")
                }
                if probe.functionIsPattern { throw unexpandedPattern(probe.function, in: facts) }
                if let injection = probe.injection {
                    _ = try function(probe.function, in: facts)
                    let targetIndex = try plannedSpan(
                        injection.target, or: "it sends the trace context of \(injection.target), which is not planned for this binary")
                    var injector = try compile(
                        injector: probe, of: pack, target: &planned[targetIndex], facts: facts, table: offsetTables[pack.name])
                    injector.pack = pack.name
                    injector.packVersion = pack.library.versions.description
                    planned.append(injector)
                } else if let extraction = probe.extraction {
                    _ = try function(probe.function, in: facts)
                    let targetIndex = try plannedSpan(
                        extraction.span, or: "its trace context is continued by \(extraction.span), which is not planned for this binary")
                    var extractor = try compile(probe: probe, of: pack, facts: facts, table: offsetTables[pack.name])
                    try keepRemoteTraceState(in: &planned[targetIndex])
                    extractor.pack = pack.name
                    extractor.packVersion = pack.library.versions.description
                    planned.append(extractor)
                } else if let enrichment = probe.enrichment {
                    // A function the binary lacks says more than its target's absence.
                    _ = try function(probe.function, in: facts)
                    let targetIndex = try plannedSpan(enrichment.target, or: "it adds to \(enrichment.target), which is not planned for this binary")
                    planned.append(try compile(
                        enricher: probe, of: pack, target: &planned[targetIndex], facts: facts, table: offsetTables[pack.name]))
                } else {
                    var probePlan = try compile(probe: probe, of: pack, facts: facts, table: offsetTables[pack.name])
                    probePlan.pack = pack.name
                    probePlan.packVersion = pack.library.versions.description
                    // The functions one pattern matched make one span: their calls share its slot.
                    let sibling = planned.first { $0.qualifiedID == probePlan.qualifiedID && $0.probe.span != nil }
                    probePlan.spanSlot = sibling?.spanSlot ?? UInt32(planned.count)
                    planned.append(probePlan)
                }
            } catch let problem as PlanProblem {
                skipped.append(SkippedProbe(pack: pack.name, probe: probe.id, reason: problem.reason, isFunctionAbsent: problem.isFunctionAbsent))
            } catch {
                skipped.append(SkippedProbe(pack: pack.name, probe: probe.id, reason: "\(error)"))
            }
        }
        // Past the BPF program's capacity the rest are left out (enrichers, planned last, first).
        for probe in planned.dropFirst(maxProbes) {
            skipped.append(SkippedProbe(
                pack: probe.pack, probe: probe.probe.id,
                reason: "\(probe.probe.source): the plan already has \(maxProbes) probes, the most the BPF program holds; "
                    + "enable fewer packs (--pack)"))
        }
        planned = Array(planned.prefix(maxProbes))
        // A span kept open under an object ends only through its end-span probe; without that
        // probe it would never be emitted, so it and whatever adds to it are left out.
        let ended = Set(planned.compactMap { $0.probe.enrichment?.ends?.object == nil ? nil : $0.probe.enrichment?.target })
        // The same for a span that ends at its return only when its result says so (ends-at-return).
        let endedOnItsThread = Set(planned.compactMap { $0.probe.enrichment?.ends == .openCall ? $0.probe.enrichment?.target : nil })
        // (A Go span with ends-at-return after a failed call just ends at every RET then.)
        let neverEnding = Set(planned.filter {
            ($0.probe.span?.outlivesCall != nil && !ended.contains($0.qualifiedID))
                || ($0.probe.span?.endsAtReturn?.isResultTest == true && !endedOnItsThread.contains($0.qualifiedID))
        }.map(\.spanSlot))
        for probe in planned where neverEnding.contains(probe.spanSlot) {
            let reason = probe.probe.span.map { span in
                if case .result(let test)? = span.endsAtReturn {
                    "its span ends at its return only when the result is \(test == .zero ? "zero" : "not zero") (ends-at-return), "
                        + "and no end-span probe for it is planned to end it otherwise"
                } else {
                    "its span outlives the call, but no end-span probe for it is planned, so it would never end"
                }
            } ?? "it adds to \(probe.probe.enrichment?.target ?? ""), which is left out"
            skipped.append(SkippedProbe(pack: probe.pack, probe: probe.probe.id, reason: reason))
        }
        planned.removeAll { neverEnding.contains($0.spanSlot) }
        // The peers' design ends every span at its function's RETs.
        if placement == .conventional { planned.removeAll { $0.probe.enrichment?.ends == .openCall } }
        // A span that end-span probes end on its own goroutine/thread needs no probe on its RETs.
        let endedBeforeReturn = Set(planned.compactMap { $0.probe.enrichment?.ends == .openCall ? $0.probe.enrichment?.target : nil })
        for index in planned.indices where planned[index].probe.span != nil && endedBeforeReturn.contains(planned[index].qualifiedID) {
            switch planned[index].probe.span?.endsAtReturn {
            case .result(let test)?:
                planned[index].returnGuard = SiteGuard(register: .rax, test: test)
            case .afterFailedCall?:
                // Without the failure's RETs (endSiteProblem says why) every RET keeps its probe.
                planned[index].returnsAfterEndSpan = true
                if let failing = planned[index].failureReturns { planned[index].returns = failing.sites }
            case nil:
                planned[index].returns = []
                planned[index].resultBranches = []
                planned[index].endSiteProblem = nil
            }
        }
        if placement == .conventional {
            // A hand-off's site is a call where the new goroutine is an argument; no other place has it.
            for index in planned.indices where planned[index].handoffChild == nil {
                guard let function = facts.functions[planned[index].probe.function],
                      let first = try? SiteSelector.firstInstructionSite(of: function) else { continue }
                planned[index].entry = first
                planned[index].extraEntries = []
                if !planned[index].resultBranches.isEmpty {
                    planned[index].resultBranches = []
                    planned[index].returns = SiteSelector.returnSites(of: function)
                }
            }
        }
        var plan = AttachPlan(
            binaryPath: facts.path, isPositionIndependent: facts.isPositionIndependent, goVersion: facts.goBuild?.goVersion,
            probes: planned, skipped: skipped)
        plan.sharedLibrary = facts.soname.map { soname in facts.libraryVersion.map { "\(soname) \($0)" } ?? soname }
        for probe in planned {
            let id = probe.qualifiedID, function = probe.probe.function
            if case .afterFailedCall(let call)? = probe.probe.span?.endsAtReturn {
                if !endedBeforeReturn.contains(id) {
                    guard placement == .costAware else { continue }   // the peers' design ends at every RET
                    plan.notes.append(
                        "\(id): no end-span probe for it is planned, so its span ends at every RET of \(function) "
                            + "(single-stepped) rather than only where a failed call returns (span.ends-at-return)")
                } else if let problem = probe.endSiteProblem {
                    plan.notes.append(
                        "\(id): every RET of \(function) keeps its probe, not only those after its call of \(call.function) failed "
                            + "(span.ends-at-return): \(problem)")
                }
            } else if let problem = probe.endSiteProblem {
                plan.notes.append("\(id): its span ends at every RET of \(function), not after its call (span.ends-after-call): \(problem)")
            }
        }
        for probe in planned {
            guard let function = facts.functions[probe.probe.function], function.namesakes > 0 else { continue }
            plan.notes.append(
                "\(probe.qualifiedID): \(function.namesakes + 1) functions are named \(function.name); only the first in the symbol table, "
                    + "at 0x\(String(function.address, radix: 16)), is probed")
        }
        for pack in packs {
            for probe in pack.probes {
                guard probe.functionIsPattern, let matched = facts.patternMatches[probe.function], matched.count > 1,
                      planned.contains(where: { $0.pack == pack.name && $0.probe.id == probe.id }) else { continue }
                plan.notes.append("\(pack.name)/\(probe.id): the pattern \(probe.function) matches \(matched.count) functions, each probed: "
                    + matched.joined(separator: "; "))
            }
        }
        let plannedPacks = Set(planned.map(\.pack))
        for pack in packs where plannedPacks.contains(pack.name) { plan.experimentalPacks[pack.name] = pack.experimental }
        return plan
    }

    /// Plans an enrich probe: its captures land after the target's in the target's record, and
    /// the target's span learns the attributes and name they give.
    static func compile(
        enricher probe: Probe, of pack: ProbePack, target: inout PlannedProbe, facts: BinaryFacts, table: OffsetTable?
    ) throws -> PlannedProbe {
        switch probe.enrichment?.ends {
        case .object?:
            if target.probe.span?.outlivesCall == nil {
                throw PlanProblem("it ends \(target.qualifiedID), whose span has no outlives-call and so ends when its call returns")
            }
        case .openCall?:
            if target.probe.span?.outlivesCall != nil {
                throw PlanProblem(
                    "it ends the open call of \(target.qualifiedID), whose span outlives the call under an object; "
                        + "name that object (end-span.object) to end it")
            }
            // With ends-at-return they are read where a failed call returns.
            if target.probe.span?.endsAtReturn == nil, !target.probe.onReturn.isEmpty {
                throw PlanProblem(
                    "it ends \(target.qualifiedID) before that function returns, so its on-return captures would never be read; "
                        + "capture them here, on entry")
            }
        case nil:
            break
        }
        let dataOffset = target.captureSlots.map(\.alignedEnd).max() ?? 0
        var plan = try compile(probe: probe, of: pack, facts: facts, table: table, dataOffset: dataOffset)
        if let trigger = probe.enrichment?.atReturn {
            try moveToReturn(&plan, trigger: trigger, language: pack.language, facts: facts)
        }
        guard target.captureSlots.count + plan.captureSlots.count <= CaptureCompiler.maxCaptures else {
            throw PlanProblem("\(target.qualifiedID) and its enrichers would have more than \(CaptureCompiler.maxCaptures) captures")
        }
        // Attributes and conditions find captures by name, so a name may hold one slot only.
        if let reused = plan.captureSlots.first(where: { slot in target.captureSlots.contains { $0.name == slot.name } }) {
            throw PlanProblem(
                "its capture '\(reused.name)' has the name of a capture of \(target.qualifiedID) or of another probe adding to it; rename it")
        }
        let known = Set((target.captureSlots + plan.captureSlots).map(\.name))
        for name in probe.enrichment?.rename?.captureNames ?? [] where !known.contains(name) {
            throw PlanProblem("enrich.name uses '\(name)', a capture neither this probe nor \(target.qualifiedID) has")
        }
        plan.pack = pack.name
        plan.packVersion = pack.library.versions.description
        target.captureSlots += plan.captureSlots
        target.enrichments.append(EnrichmentRule(
            source: plan.qualifiedID, attributes: probe.attributes, rename: probe.enrichment?.rename, errorWhen: probe.enrichment?.errorWhen ?? [],
            endsSpan: probe.enrichment?.ends?.object != nil))
        plan.captureSlots = target.captureSlots
        plan.spanSlot = target.spanSlot
        plan.keyMode = target.keyMode
        return plan
    }

    /// An `at: return` enricher: its one site is its function's return probe, whose program reads
    /// the results, and which acts only when the first result passes the probe's test.
    static func moveToReturn(_ plan: inout PlannedProbe, trigger: ReturnTrigger, language: Language, facts: BinaryFacts) throws {
        let probe = plan.probe
        guard language != .go else {
            throw PlanProblem(
                "\(probe.source): at: return needs a return probe, which Sonde puts on native code only (Go's stack walker would meet its swapped return address)")
        }
        if let argument = probe.onReturn.first(where: { if case .argument = $0.origin { true } else { false } }) {
            throw PlanProblem("capture '\(argument.name)' (\(argument.source)): at: return reads the function's results only; its arguments are gone")
        }
        plan.entry = try SiteSelector.returnProbeSite(of: function(probe.function, in: facts))
        plan.returns = []
        plan.entryProgram = plan.returnProgram
        plan.returnProgram = []
        plan.entryGuard = trigger.whenResult.map { SiteGuard(register: .rax, test: $0) }
    }

    /// Ties a planned `inject-trace-context` probe to the client span it writes for: its slot, and
    /// the header name in the target's spelling; the target's context then waits under its headers.
    static func compile(
        injector probe: Probe, of pack: ProbePack, target: inout PlannedProbe, facts: BinaryFacts, table: OffsetTable?
    ) throws -> PlannedProbe {
        guard let headers = target.probe.traceContext, case .extract(var extraction)? = target.contextAction,
              case .goMap = extraction.layout else {
            throw PlanProblem("\(target.probe.id) has no trace-context headers in a Go map: say where its request keeps them")
        }
        var planned = try compile(probe: probe, of: pack, facts: facts, table: table)
        guard case .injectHeaderLine(_, let bufferOffset, let usedOffset)? = planned.contextAction else {
            preconditionFailure("an inject-trace-context probe writes a header line")
        }
        planned.contextAction = .injectHeaderLine(name: headers.nameCase.traceparent, bufferOffset: bufferOffset, usedOffset: usedOffset)
        planned.spanSlot = target.spanSlot
        planned.keyMode = target.keyMode
        extraction.setsCarrier = true
        target.contextAction = .extract(extraction)
        return planned
    }

    /// An `inject-trace-context` probe on its own: a site at the function's entry whose program
    /// writes the context waiting under the headers being written.
    static func compile(
        injection: TraceContextInjection, of probe: Probe, function: FunctionFacts, signature: ProbeSignature, facts: BinaryFacts
    ) throws -> PlannedProbe {
        var programs = CaptureCompiler(
            function: probe.function, signature: signature, functionAddresses: facts.functions.mapValues(\.address))
        let carrier = try programs.mapRegister(injection.headers, context: "inject-trace-context.headers")
        let writer = try programs.bufferedWriter(injection.writer)
        var planned = try entryOnly(probe, function: function, preserving: programs.registersReadAtEntry, facts: facts)
        planned.carrierRegister = carrier
        planned.contextProgram = writer.ops
        planned.contextAction = .injectHeaderLine(
            name: TraceContextHeaders.NameCase.canonical.traceparent, bufferOffset: writer.bufferOffset, usedOffset: writer.usedOffset)
        try checkContextProgram(planned.contextProgram, of: probe)
        return planned
    }

    /// The span an `extract-trace-context` probe names keeps the remote parent's tracestate, in a
    /// slot after its own captures (and its enrichers' so far), unless its own headers give it one.
    static func keepRemoteTraceState(in target: inout PlannedProbe) throws {
        guard target.contextAction == nil else { return }
        guard target.captureSlots.count < CaptureCompiler.maxCaptures else {
            throw PlanProblem("\(target.qualifiedID) has no capture left for the incoming tracestate; capture less there")
        }
        var slots = CaptureCompiler(
            function: target.probe.function,
            signature: ProbeSignature(parameters: [], results: nil, types: TypeCatalog([:]), origin: "trace context"),
            dataOffset: target.captureSlots.map(\.alignedEnd).max() ?? 0)
        let slot = try slots.traceStateSlot()
        target.captureSlots.append(slot)
        target.contextAction = .keepRemoteTraceState(slot)
    }

    /// An `extract-trace-context` probe: a site at the function's entry whose program makes an
    /// incoming traceparent the goroutine's context while the function runs.
    static func compile(
        extraction headers: TraceContextHeaders, of probe: Probe, function: FunctionFacts, signature: ProbeSignature, facts: BinaryFacts
    ) throws -> PlannedProbe {
        var programs = CaptureCompiler(function: probe.function, signature: signature)
        let (program, action) = try compile(traceContext: headers, into: &programs, facts: facts, keepingTraceState: false)
        var planned = try entryOnly(probe, function: function, preserving: programs.registersReadAtEntry, facts: facts)
        planned.contextProgram = program
        planned.contextAction = action
        try checkContextProgram(program, of: probe)
        return planned
    }

    /// A probe with one site, at entry, and no captures.
    private static func entryOnly(_ probe: Probe, function: FunctionFacts, preserving registers: Set<Register>, facts: BinaryFacts) throws
        -> PlannedProbe
    {
        let (site, keyMode) = try entry(of: function, preserving: registers, facts: facts)
        return PlannedProbe(
            pack: "", packVersion: "", probe: probe, spanSlot: 0, keyMode: keyMode, entry: site, returns: [],
            entryProgram: [], returnProgram: [], captureSlots: [])
    }

    /// How this binary's calls are keyed (Go: by goroutine, whose g is in R14), and the entry site
    /// before anything overwrites `registers` or that g.
    private static func entry(of function: FunctionFacts, preserving registers: Set<Register>, facts: BinaryFacts) throws
        -> (site: ProbeSite, keyMode: CallKeyMode)
    {
        let keyMode: CallKeyMode = facts.goBuild == nil ? .thread : .goroutine
        var preserved = registers
        if keyMode == .goroutine { preserved.insert(.r14) }
        return (try SiteSelector.entrySite(of: function, preserving: preserved, isGo: facts.goBuild != nil), keyMode)
    }

    /// A trace-context program that reaches the headers and extracts what they carry; a span
    /// probe keeps the tracestate in a capture slot of its record.
    static func compile(traceContext headers: TraceContextHeaders, into programs: inout CaptureCompiler, facts: BinaryFacts, keepingTraceState: Bool)
        throws -> (program: [FetchOp], action: TraceContextAction)
    {
        let layout: HeaderLayout
        switch headers.carrier {
        case .goHeaderMap:
            guard let goVersion = facts.goBuild?.goVersion, let mapLayout = GoMapLayout(goVersion: goVersion) else {
                throw PlanProblem("trace-context: a go-header-map needs the binary's Go version, which its build info does not give")
            }
            layout = .goMap(mapLayout)
        case .hpackHeaderFields:
            layout = .fieldSlice(stride: HeaderLayout.hpackHeaderFieldSize)
        }
        let program = try programs.headers(headers)
        let traceState = keepingTraceState ? try programs.traceStateSlot() : nil
        let extraction = HeaderExtraction(
            layout: layout, traceparent: headers.nameCase.traceparent, tracestate: headers.nameCase.tracestate, traceState: traceState)
        return (program, .extract(extraction))
    }

    /// A trace-context program runs in a loop of its own, shorter than a fetch program's.
    static func checkContextProgram(_ program: [FetchOp], of probe: Probe) throws {
        guard program.count <= Int(SONDE_MAX_CONTEXT_OPS) else {
            throw PlanProblem(
                "\(probe.source): its trace-context program has \(program.count) ops; the BPF program runs at most "
                    + "\(SONDE_MAX_CONTEXT_OPS). Use a shorter path to the headers")
        }
    }

    /// Why a whole pack does not apply to this binary, or nil when it does.
    static func applicability(of pack: ProbePack, to facts: BinaryFacts) -> String? {
        guard pack.language == .go else { return nativeApplicability(of: pack, to: facts) }
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

    /// A C, C++ or Rust pack that names a shared library applies to that library's file, at a
    /// version its file name gives.
    static func nativeApplicability(of pack: ProbePack, to facts: BinaryFacts) -> String? {
        if facts.goBuild != nil { return "\(facts.path) is a Go program; \(pack.name) probes \(pack.language.rawValue) code" }
        if pack.language == .rust {
            let crate = pack.library.module
            guard let text = facts.crateVersions[crate], let version = Version(parsing: text) else {
                if crate == "std" { return "\(facts.path) has no rustc version in its .comment section; the pack covers \(pack.library.versions)" }
                return "\(facts.path) names no \(crate)-VERSION/src/ folder in its panic locations, so the \(crate) it was built with is unknown; "
                    + "the pack covers \(pack.library.versions)"
            }
            guard pack.library.versions.contains(version) else { return "\(crate) \(text) is outside the pack's range \(pack.library.versions)" }
            return nil
        }
        guard let soname = pack.library.soname else { return nil }
        guard facts.soname == soname else {
            let actual = facts.soname.map { "its soname is \($0)" } ?? "it is not a shared library"
            return "\(pack.name) probes \(soname), and \(facts.path) is not that library (\(actual))"
        }
        guard let text = facts.libraryVersion, let version = Version(parsing: text) else {
            return "the name of \(facts.path) does not say which version of \(soname) it is; the pack covers \(pack.library.versions)"
        }
        guard pack.library.versions.contains(version) else {
            return "\(soname) \(text) is outside the pack's range \(pack.library.versions)"
        }
        return nil
    }

    static func compile(probe: Probe, of pack: ProbePack, facts: BinaryFacts, table: OffsetTable?, dataOffset: Int = 0) throws -> PlannedProbe {
        try compile(probe: probe, facts: facts, dataOffset: dataOffset) { name in
            if pack.language != .go { return try ProbeSignature.native(of: probe, in: pack, function: facts.functions[name], facts: facts) }
            return try ProbeSignature.resolve(function(name, in: facts), of: pack, facts: facts, table: table)
        }
    }

    /// `signature` gives the signature of one of the probe's ``Probe/signatureFunctions`` by name.
    static func compile(
        probe: Probe, facts: BinaryFacts, dataOffset: Int = 0, signature: (String) throws -> ProbeSignature
    ) throws -> PlannedProbe {
        var planned = try compileAtEntry(probe: probe, facts: facts, dataOffset: dataOffset, signature: signature)
        if let caller = probe.calledFrom {
            // Its other call sites take the configuration slots of returns and result branches.
            guard planned.returns.isEmpty, planned.resultBranches.isEmpty else {
                throw PlanProblem("called-from is for probes that act at entry only; this one also acts at its function's returns")
            }
            // The call instructions hold the same argument registers the entry site would read.
            let sites = try SiteSelector.callSites(to: try function(probe.function, in: facts), in: try function(caller, in: facts))
            guard sites.count <= Int(SONDE_CONFIGS_PER_PROBE) else {
                throw PlanProblem(
                    "\(caller) calls \(probe.function) \(sites.count) times directly; a probe holds at most \(SONDE_CONFIGS_PER_PROBE) call sites")
            }
            planned.entry = sites[0]
            planned.extraEntries = Array(sites.dropFirst())
        }
        return planned
    }

    private static func compileAtEntry(
        probe: Probe, facts: BinaryFacts, dataOffset: Int, signature: (String) throws -> ProbeSignature
    ) throws -> PlannedProbe {
        let function = try function(probe.function, in: facts)
        if let handoff = probe.goroutineHandoff {
            return try compile(handoff: handoff, of: probe, in: function, facts: facts, signature: signature)
        }
        if let injection = probe.injection {
            return try compile(injection: injection, of: probe, function: function, signature: signature(probe.function), facts: facts)
        }
        if let extraction = probe.extraction {
            return try compile(
                extraction: extraction.headers, of: probe, function: function, signature: signature(probe.function), facts: facts)
        }
        var planned = try compile(probe: probe, function: function, signature: signature(probe.function), facts: facts, dataOffset: dataOffset)
        if case .afterFailedCall(let call)? = probe.span?.endsAtReturn {
            do {
                let callee = try self.function(call.function, in: facts)
                let register = try CaptureCompiler(function: callee.name, signature: try signature(callee.name).assigningResultRegisters())
                    .nilTestRegister(.result(call.result), context: "span.ends-at-return.when-not-nil")
                planned.failureReturns = FailureReturns(
                    sites: try SiteSelector.failureReturns(after: callee, in: function, testing: register), register: register)
            } catch let problem as PlanProblem {
                planned.endSiteProblem = problem.reason
            }
        }
        return planned
    }

    /// The probe once per function its `function` pattern matched, when it is a span probe (their
    /// calls are one span's); otherwise the probe itself, for a name or a pattern matching one.
    static func instances(of probe: Probe, in facts: BinaryFacts) -> [Probe] {
        guard probe.functionIsPattern, let matched = facts.patternMatches[probe.function],
              matched.count == 1 || (matched.count > 1 && probe.span != nil)
        else {
            return [probe]
        }
        return matched.map { name in
            var instance = probe
            instance.function = name
            instance.functionIsPattern = false
            return instance
        }
    }

    /// Why a pattern probe stayed one probe (``instances(of:in:)``): it matched no function, or
    /// several for a probe that is not a span probe.
    static func unexpandedPattern(_ pattern: String, in facts: BinaryFacts) -> PlanProblem {
        let matched = facts.patternMatches[pattern] ?? []
        guard !matched.isEmpty else {
            var absent = PlanProblem("no function in the symbol table of \(facts.path) matches the pattern \(pattern)")
            absent.isFunctionAbsent = true
            return absent
        }
        return PlanProblem(
            "\(pattern) matches \(matched.count) functions (\(matched.prefix(3).joined(separator: "; "))\(matched.count > 3 ? "; …" : "")); "
                + "only a span probe may probe several: write a pattern that matches one")
    }

    static func function(_ name: String, in facts: BinaryFacts) throws -> FunctionFacts {
        if let rejection = facts.rejectedFunctions[name] { throw PlanProblem(rejection) }
        guard let function = facts.functions[name] else {
            let tables = facts.hasDWARF ? "symbol table" : "symbol table or Go function table (.gopclntab)"
            var absent = PlanProblem("no function \(name) in the \(tables) of \(facts.path)")
            absent.isFunctionAbsent = true
            throw absent
        }
        return function
    }

    static func compile(probe: Probe, function: FunctionFacts, signature: ProbeSignature, facts: BinaryFacts, dataOffset: Int = 0) throws -> PlannedProbe {
        var programs = CaptureCompiler(
            function: probe.function,
            signature: signature.assigningResultRegisters(),
            functionAddresses: facts.functions.mapValues(\.address),
            dataOffset: dataOffset)
        var captureSlots = try programs.compile(entry: probe.onEntry, return: probe.onReturn)
        let traceContext = try probe.traceContext.map { try compile(traceContext: $0, into: &programs, facts: facts, keepingTraceState: true) }
        if let traceContext {
            if case .extract(let extraction) = traceContext.action, let slot = extraction.traceState { captureSlots.append(slot) }
            try checkContextProgram(traceContext.program, of: probe)
        }
        if let reference = probe.span?.outlivesCall { try programs.keepOpen(under: reference) }
        let objectKey = try (probe.enrichment?.ends?.object).map { try programs.objectRegister($0) }
        var (entry, keyMode) = try entry(of: function, preserving: programs.registersReadAtEntry, facts: facts)
        // Enrichers act at entry only, so they cost one cheap hit and no return probe.
        var returns = probe.enrichment == nil ? SiteSelector.returnSites(of: function) : []
        if signature.callingConvention == .sysV, probe.enrichment == nil {
            // Native code returns through a return probe: cheaper than its RETs, which are
            // single-stepped, and reached when the function ends in a tail call (libpq's PQexec
            // jumps to PQexecFinish). Its hook is on the first instruction, which an entry site
            // shares when the kernel emulates it.
            returns = [try SiteSelector.returnProbeSite(of: function)]
            if returns[0].kernelEmulates { entry = try SiteSelector.firstInstructionSite(of: function) }
        }
        guard !returns.isEmpty || probe.enrichment != nil else { throw PlanProblem("no return instruction found in \(probe.function)") }
        for (side, program) in [("entry", programs.entryProgram), ("return", programs.returnProgram)] where program.count > CaptureCompiler.maxOps {
            throw PlanProblem(
                "\(probe.source): its \(side) fetch program has \(program.count) ops; the BPF program runs at most "
                    + "\(CaptureCompiler.maxOps). Capture fewer values, or shorter paths, in this probe")
        }
        var planned = PlannedProbe(
            pack: "", packVersion: "", probe: probe, spanSlot: 0, keyMode: keyMode, entry: entry, returns: returns,
            entryProgram: programs.entryProgram, returnProgram: programs.returnProgram, captureSlots: captureSlots)
        planned.objectKey = objectKey
        if let ending = probe.span?.endsAfterCall {
            do {
                let register = try programs.nilTestRegister(.result(ending.result), context: "span.ends-after-call.when-nil")
                let found = try SiteSelector.resultBranches(after: try self.function(ending.function, in: facts), in: function, testing: register)
                planned.resultBranches = found.branches
                planned.resultBranchGuard = SiteGuard(register: register, test: .zero)
                planned.returns = found.otherReturns
            } catch let problem as PlanProblem {
                planned.endSiteProblem = problem.reason
            }
        }
        planned.contextProgram = traceContext?.program ?? []
        planned.contextAction = traceContext?.action
        if probe.span != nil { planned.prefetch = Prefetch.choose(for: [planned.entryProgram, planned.contextProgram]) }
        return planned
    }

    /// `follow-goroutine`: one site, on the call passed the new goroutine (a `*g` argument of the
    /// callee, in the register the ABI puts it in). That call runs on the system stack, where R14
    /// is the thread's g0: the creator is found from there (`parent`).
    static func compile(
        handoff: GoroutineHandoff, of probe: Probe, in function: FunctionFacts, facts: BinaryFacts,
        signature: (String) throws -> ProbeSignature
    ) throws -> PlannedProbe {
        let callee = try self.function(handoff.child.callee, in: facts)
        let compiler = CaptureCompiler(function: callee.name, signature: try signature(callee.name))
        let child = try compiler.pointerRegister(.argument(handoff.child.argument), context: "follow-goroutine.child")
        let creator = try compiler.goroutinePointer(
            along: handoff.creator, limit: Int(SONDE_MAX_CREATOR_OPS), context: "follow-goroutine.parent.running-goroutine")
        var planned = PlannedProbe(
            // The key mode means nothing here: a hand-off keys no call, it reads both goroutines at its site.
            pack: "", packVersion: "", probe: probe, spanSlot: 0, keyMode: .thread, entry: try SiteSelector.callSite(to: callee, in: function),
            returns: [], entryProgram: creator, returnProgram: [], captureSlots: [])
        planned.handoffChild = child
        return planned
    }
}

/// A reason a probe cannot be planned, phrased for the user.
struct PlanProblem: Error {
    let reason: String
    /// The binary has no such function: nothing to probe, rather than something wrong.
    var isFunctionAbsent = false
    init(_ reason: String) { self.reason = reason }
}
