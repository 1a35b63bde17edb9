/// Reads a composed pack into a ``ProbePack``, checking everything that can be checked without
/// a target binary.
///
/// A mistake in one key, capture, attribute or probe is reported to the file's
/// ``PackDiagnostics`` and reading goes on with the next, so that every mistake of a file is
/// reported at once. A reader whose parts failed throws ``AlreadyReported``; a value read from
/// a probe or pack with a reported mistake is never used, since the whole file is then refused.
enum PackReader {
    static let packKeys = ["format", "pack", "language", "library", "experimental", "types", "probes"]

    /// The pack, or nil when a mistake was reported.
    static func readPack(_ node: YAMLNode) -> ProbePack? {
        let report = node.diagnostics
        let before = report.count
        // A pack of another format may mean other things by the same keys: nothing more is read.
        guard let map = report.attempt({ try packMapping(node) }),
            report.attempt({ try readFormat(map.required("format")) }) != nil
        else { return nil }
        let name = report.attempt { try readName(map.required("pack")) }
        let language = report.attempt { try readLanguage(map.required("language")) }
        let library = report.attempt { try readLibrary(map.required("library"), language: language) }
        let types = map.optional("types").flatMap { types in report.attempt { try readTypes(types, language: language) } }
        let experimental = map.optional("experimental").flatMap { note in report.attempt { try readExperimental(note) } }
        let probes = report.attempt { try readProbes(map.required("probes"), in: node, named: name, language: language) }
        guard let name, let language, let library, let probes, report.count == before else { return nil }
        return ProbePack(
            name: name, language: language, library: library, probes: probes, types: types ?? [], experimental: experimental, source: node.location)
    }

    private static func readExperimental(_ node: YAMLNode) throws -> String {
        let note = try node.string("experimental")
        guard !note.trimmingSpaces.isEmpty else { throw node.error("experimental must say what the pack does not do yet") }
        return note
    }

    /// The top level as a pack's mapping. A file not even shaped like a pack is described, never
    /// quoted: it may be anything, such as /etc/shadow, whose first line parses as a key.
    private static func packMapping(_ node: YAMLNode) throws -> YAMLMapping {
        let expected = "not a probe pack: a pack is a mapping with the keys format, pack, language, library and probes"
        switch node.node {
        case .scalar, .alias:
            throw node.error("\(expected); this file's top level is a text value")
        case .sequence:
            throw node.error("\(expected); this file's top level is a list")
        case .mapping(let mapping) where !mapping.keys.contains(where: { $0.string == "format" }):
            throw node.error("\(expected); this file's top level has no 'format' key")
        case .mapping:
            return try node.mapping("the pack", allowed: packKeys)
        }
    }

    private static func readFormat(_ node: YAMLNode) throws -> String {
        let format = try node.string("format")
        guard format == ProbePack.currentFormat else {
            throw node.error("unsupported pack format '\(format)'; this Sonde reads '\(ProbePack.currentFormat)'")
        }
        return format
    }

    private static func readName(_ node: YAMLNode) throws -> String {
        let name = try node.string("pack")
        guard name.split(separator: "/").count == 2,
            name.allSatisfy({ $0.isLetter || $0.isNumber || "-_/.".contains($0) })
        else {
            throw node.error("pack name '\(name)' must look like language/library, e.g. go/net-http")
        }
        return name
    }

    private static func readLanguage(_ node: YAMLNode) throws -> Language {
        let name = try node.string("language")
        guard let language = Language(rawValue: name) else {
            throw node.error(
                "unknown language '\(name)'; expected one of: "
                    + Language.allCases.map(\.rawValue).joined(separator: ", ")
            )
        }
        return language
    }

    /// Go packs name a module; C, C++ and Rust packs may name the shared library they probe.
    private static func readLibrary(_ node: YAMLNode, language: Language?) throws -> LibraryCoverage {
        let report = node.diagnostics
        let isGo = language.map { $0 == .go } ?? true
        let isRust = language == .rust
        let map = try node.mapping("library", allowed: isGo ? ["module", "versions"] : isRust ? ["crate", "versions"] : ["soname", "versions"])
        let module = isGo ? report.attempt { try map.required("module").string("library.module") }
            : isRust ? report.attempt { try map.required("crate").string("library.crate") } : ""
        let soname = map.optional("soname").flatMap { node in report.attempt { try readSoname(node) } }
        let versions = report.attempt { () throws -> VersionRange in
            let versionsNode = try map.required("versions")
            let text = try versionsNode.string("library.versions")
            guard let versions = VersionRange(parsing: text) else {
                throw versionsNode.error("cannot read version range '\(text)'; write comparisons like '>=1.19 <1.28'")
            }
            return versions
        }
        guard let module, let versions else { throw AlreadyReported() }
        return LibraryCoverage(module: module, soname: soname, versions: versions)
    }

    /// `packName`: the pack's name when it could be read, to check probes that end its own spans.
    private static func readProbes(_ node: YAMLNode, in pack: YAMLNode, named packName: String?, language: Language?) throws -> [Probe] {
        let probeNodes = try node.sequence("probes")
        guard !probeNodes.isEmpty else { throw pack.error("a pack needs at least one probe") }
        var probes: [(probe: Probe, node: YAMLNode)] = []
        for probeNode in probeNodes {
            guard let read = node.diagnostics.attempt({ try readProbe(probeNode, language: language) }) else { continue }
            for probe in read {
                if probes.contains(where: { $0.probe.id == probe.id }) {
                    node.diagnostics.report(probeNode.error("probe id '\(probe.id)' is used twice in this pack"))
                } else {
                    probes.append((probe, probeNode))
                }
            }
        }
        if let packName {
            // A probe that could not be read is reported already: probes naming it are not reported too.
            let unread = Set(probeNodes.compactMap { node in
                (try? node.mapping("a probe").optional("id")?.string("id")).flatMap { $0 }
            }).subtracting(probes.map(\.probe.id))
            let readProbes = probes.filter { probe in
                let targets = [probe.probe.enrichment?.target, probe.probe.extraction?.span].compactMap { $0 }
                return !targets.contains { unread.contains(String($0.dropFirst(packName.count + 1))) }
            }
            checkSpanEnds(readProbes, of: packName)
            checkExtractions(readProbes, of: packName)
        }
        return probes.map(\.probe)
    }

    /// The span an `extract-trace-context` probe names continues the context it reads, so it must
    /// be a span. Checked here for targets in the same pack; planning checks the others.
    private static func checkExtractions(_ probes: [(probe: Probe, node: YAMLNode)], of packName: String) {
        for (probe, node) in probes {
            guard let target = probe.extraction?.span, target.hasPrefix(packName + "/") else { continue }
            let targetID = String(target.dropFirst(packName.count + 1))
            guard let targetProbe = probes.first(where: { $0.probe.id == targetID })?.probe else {
                node.diagnostics.report(node.error("extract-trace-context.span '\(target)' names no probe of this pack"))
                continue
            }
            if targetProbe.span == nil {
                node.diagnostics.report(node.error("extract-trace-context.span '\(target)' is not a span probe"))
            }
        }
    }

    /// An `end-span` probe without `object` ends its target's span in place of the target's return,
    /// so the target may read nothing at its return (unless it also ends there when its call failed:
    /// `ends-at-return`) nor keep its span open under an object, and the
    /// captures of the probes adding to one span share its record, so their names must differ.
    /// Checked here for targets in the same pack; planning checks the others.
    private static func checkSpanEnds(_ probes: [(probe: Probe, node: YAMLNode)], of packName: String) {
        for (probe, node) in probes {
            guard let enrichment = probe.enrichment, enrichment.ends == .openCall,
                  enrichment.target.hasPrefix(packName + "/") else { continue }
            let targetID = String(enrichment.target.dropFirst(packName.count + 1))
            let problem: String?
            if let target = probes.first(where: { $0.probe.id == targetID })?.probe {
                let adding = probes.filter { $0.probe.enrichment?.target == enrichment.target && $0.probe.id != probe.id }.map(\.probe)
                let reused = probe.captures.map(\.name).first { name in
                    (adding + [target]).contains { $0.captures.contains { $0.name == name } }
                }
                if target.span == nil {
                    problem = "end-span.span '\(enrichment.target)' is not a span probe"
                } else if target.span?.outlivesCall != nil {
                    problem = "'\(enrichment.target)' keeps its span open under an object: name that object (end-span.object) to end it"
                } else if target.span?.endsAtReturn == nil, let returning = target.onReturn.first {
                    problem = "'\(enrichment.target)' ends here, before its return, so its on-return capture '\(returning.name)' would never be read; capture it here, on entry"
                } else if let reused {
                    problem = "capture '\(reused)' is also a capture of '\(enrichment.target)' or of another probe adding to it; probes adding to one span need distinct capture names"
                } else {
                    problem = nil
                }
            } else {
                problem = "end-span.span '\(enrichment.target)' names no probe of this pack"
            }
            if let problem { node.diagnostics.report(node.error(problem)) }
        }
    }

    /// `function: NAME`, or `function: { pattern: "ns::Handler<*>::run()" }` in a C, C++ or Rust pack.
    private static func readFunction(_ node: YAMLNode, language: Language?) throws -> (name: String, isPattern: Bool) {
        guard case .mapping = node.node else { return (try node.string("function"), false) }
        let map = try node.mapping("function", allowed: ["pattern"])
        // A misspelt key is reported already: its missing 'pattern' need not be too.
        guard let pattern = map.optional("pattern") else { throw map.hasUnknownKeys ? AlreadyReported() : node.error("function needs 'pattern'") }
        let text = try pattern.string("function.pattern")
        if language == .go { throw pattern.error("function.pattern is for C, C++ and Rust packs; a Go probe names its function") }
        guard text.contains("*") else { throw pattern.error("function.pattern '\(text)' has no '*'; write function: \(text)") }
        return (text, true)
    }

    /// One probe, or one per span an `enrich` or `end-span` with a list of spans works on, each
    /// with the id `ID-TARGET` (the target probe's id).
    private static func readProbe(_ node: YAMLNode, language: Language?) throws -> [Probe] {
        let report = node.diagnostics
        let before = report.count
        let map = try node.mapping(
            "a probe",
            allowed: [
                "id", "function", "signature", "span", "follow-goroutine", "enrich", "end-span", "inject-trace-context",
                "extract-trace-context", "trace-context", "called-from", "on-entry", "on-return", "attributes",
            ]
        )
        let id = report.attempt { try map.required("id").string("probe id") }
        let probe = id.map { "probe '\($0)'" } ?? "this probe"
        let function = report.attempt { try readFunction(map.required("function"), language: language) }
        let signature = map.optional("signature").flatMap { node in
            report.attempt { try readSignature(node, of: function, language: language) }
        }
        let onEntry = map.optional("on-entry").flatMap { section in
            report.attempt { try readCaptures(section, section: "on-entry") }
        }
        let onReturn = map.optional("on-return").flatMap { section in
            report.attempt { try readCaptures(section, section: "on-return") }
        }
        let keys = (onEntry?.keys ?? []) + (onReturn?.keys ?? [])
        if let duplicate = keys.first(where: { key in keys.filter { $0.name == key.name }.count > 1 }) {
            report.report(duplicate.node.error("capture '\(duplicate.name)' is defined twice in \(probe)"))
        }
        // Captures that failed are still known by name, so references to them are not reported too.
        let names = Set(keys.map(\.name))
        let span = map.optional("span").flatMap { span in report.attempt { try readSpan(span, captures: names, language: language) } }
        let handoff = map.optional("follow-goroutine").flatMap { handoff in report.attempt { try readHandoff(handoff) }
        }
        let enrichment = map.optional("enrich").flatMap { enrich in
            report.attempt { try readEnrichment(enrich, key: "enrich", captures: names) }
        }
        let spanEnd = map.optional("end-span").flatMap { end in
            report.attempt { try readEnrichment(end, key: "end-span", captures: names) }
        }
        let traceContext = map.optional("trace-context").flatMap { headers in
            report.attempt { try readTraceContext(headers) }
        }
        let injection = map.optional("inject-trace-context").flatMap { injection in
            report.attempt { try readInjection(injection) }
        }
        let extraction = map.optional("extract-trace-context").flatMap { extraction in
            report.attempt { try readExtraction(extraction) }
        }
        let calledFrom = map.optional("called-from").flatMap { node in report.attempt { try node.string("called-from") } }
        checkEffect(of: map, probe: probe)
        let attributes = map.optional("attributes").flatMap { attributes in
            report.attempt { try readAttributes(attributes, captures: names) }
        }
        guard let id, let function, report.count == before else { throw AlreadyReported() }
        let enrichments: [Enrichment?] = enrichment ?? spanEnd ?? [nil]
        return enrichments.map { enrichment in Probe(
            id: enrichments.count > 1 ? "\(id)-\(enrichment?.target.split(separator: "/").last ?? "")" : id,
            function: function.name,
            functionIsPattern: function.isPattern,
            signature: signature,
            span: span,
            goroutineHandoff: handoff,
            enrichment: enrichment,
            traceContext: traceContext,
            injection: injection,
            extraction: extraction,
            calledFrom: calledFrom,
            onEntry: onEntry?.captures ?? [],
            onReturn: onReturn?.captures ?? [],
            attributes: attributes ?? [],
            source: node.location
        ) }
    }

    /// Reports a probe that does not do exactly one thing, or has keys its effect has no use for.
    private static func checkEffect(of map: YAMLMapping, probe: String) {
        let report = map.owner.diagnostics
        let effects = ["span", "enrich", "end-span", "follow-goroutine", "inject-trace-context", "extract-trace-context"]
            .filter(map.contains)
        guard effects.count == 1 else {
            report.report(
                map.owner.error(
                    "\(probe) needs exactly one of 'span' (make a span), 'enrich' (add to another probe's span),"
                        + " 'end-span' (add to and end another probe's span), 'follow-goroutine'"
                        + " (carry trace context to new goroutines), 'inject-trace-context' (send a client span's"
                        + " trace context) or 'extract-trace-context' (continue an incoming trace context)"
                )
            )
            return
        }
        if effects[0] != "span", let headers = map.entries.first(where: { $0.key == "trace-context" }) {
            report.report(headers.keyNode.error("trace-context belongs to a span probe: it says where that span's request keeps its headers"))
        }
        let atReturn = (map.optional(effects[0]).flatMap { try? $0.mapping(effects[0]) }?.optional("at")).flatMap { try? $0.string("at") } == "return"
        if ["enrich", "end-span"].contains(effects[0]) {
            // At a return (`at: return`) the arguments are gone and the results are there; at entry, the reverse.
            if let misplaced = map.entries.first(where: { $0.key == (atReturn ? "on-entry" : "on-return") }) {
                report.report(misplaced.keyNode.error(
                    atReturn
                        ? "an \(effects[0]) probe at: return reads its function's results (on-return); its arguments are gone by then"
                        : "an \(effects[0]) probe reads on entry only; it has no return to wait for (or say at: return)"))
            }
        }
        // An extraction's context lasts while the function runs, as deep as its entry: a call site is not.
        if let calledFrom = map.entries.first(where: { $0.key == "called-from" }),
           ["span", "follow-goroutine", "extract-trace-context"].contains(effects[0]) || atReturn {
            report.report(calledFrom.keyNode.error(
                "called-from puts the probe at the calls of its function, where it acts once and is done: only enrich, end-span "
                    + "(at entry) and inject-trace-context probes may have it"))
        }
        if ["follow-goroutine", "inject-trace-context", "extract-trace-context"].contains(effects[0]) {
            let article = effects[0] == "follow-goroutine" ? "a" : "an"
            for extra in map.entries where ["on-entry", "on-return", "attributes"].contains(extra.key) {
                report.report(
                    extra.keyNode.error("\(article) \(effects[0]) probe makes no span, so it takes no '\(extra.key)'")
                )
            }
        }
    }
}
