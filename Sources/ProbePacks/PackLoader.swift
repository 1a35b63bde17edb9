import Foundation
import Yams

/// Reads pack files into `ProbePack` values, checking everything that can be checked
/// without a target binary.
public enum PackLoader {
    public static func load(file: String) throws -> ProbePack {
        let text: String
        do {
            text = try String(contentsOfFile: file, encoding: .utf8)
        } catch {
            throw PackError(SourceLocation(file: file, line: 1, column: 1), "cannot read the pack file: \(error.localizedDescription)")
        }
        return try parse(yaml: text, file: file)
    }

    public static func parse(yaml: String, file: String) throws -> ProbePack {
        let root: Node?
        do {
            root = try Yams.compose(yaml: yaml)
        } catch let error as YamlError {
            throw syntaxError(error, file: file)
        }
        guard let root else { throw PackError(SourceLocation(file: file, line: 1, column: 1), "the pack file is empty") }
        return try readPack(YAMLNode(node: root, file: file))
    }

    /// Every `*.yaml`/`*.yml` file under the given files or directories, sorted for stable output.
    public static func packFiles(in paths: [String]) -> [String] {
        let manager = FileManager.default
        return paths.flatMap { path -> [String] in
            var isDirectory: ObjCBool = false
            guard manager.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue else { return [path] }
            let found = manager.enumerator(atPath: path)?.compactMap { $0 as? String } ?? []
            return found.filter { $0.hasSuffix(".yaml") || $0.hasSuffix(".yml") }.sorted().map { "\(path)/\($0)" }
        }
    }

    private static func syntaxError(_ error: YamlError, file: String) -> PackError {
        switch error {
        case .scanner(let context, let problem, let mark, _), .parser(let context, let problem, let mark, _),
            .composer(let context, let problem, let mark, _):
            let detail = [context?.text, problem].compactMap { $0 }.filter { !$0.isEmpty }.joined(separator: " ")
            return PackError(SourceLocation(file: file, line: mark.line, column: mark.column), "YAML syntax error: \(detail)")
        case .duplicatedKeysInMapping(let duplicates, let context):
            let keys = duplicates.map { "'\($0)'" }.joined(separator: ", ")
            return PackError(SourceLocation(file: file, line: context.mark.line, column: context.mark.column), "this mapping has the key \(keys) more than once")
        default:
            return PackError(SourceLocation(file: file, line: 1, column: 1), "YAML error: \(error)")
        }
    }

    private static func readPack(_ node: YAMLNode) throws -> ProbePack {
        let map = try node.mapping("the pack", allowed: ["format", "pack", "language", "library", "probes"])
        let formatNode = try map.required("format")
        let format = try formatNode.string("format")
        guard format == ProbePack.currentFormat else {
            throw formatNode.error("unsupported pack format '\(format)'; this Sonde reads '\(ProbePack.currentFormat)'")
        }
        let nameNode = try map.required("pack")
        let name = try nameNode.string("pack")
        guard name.split(separator: "/").count == 2, name.allSatisfy({ $0.isLetter || $0.isNumber || "-_/.".contains($0) }) else {
            throw nameNode.error("pack name '\(name)' must look like language/library, e.g. go/net-http")
        }
        let languageNode = try map.required("language")
        let languageName = try languageNode.string("language")
        guard let language = Language(rawValue: languageName) else {
            throw languageNode.error("unknown language '\(languageName)'; expected one of: \(Language.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        let library = try readLibrary(map.required("library"))
        let probeNodes = try map.required("probes").sequence("probes")
        guard !probeNodes.isEmpty else { throw node.error("a pack needs at least one probe") }
        var probes: [Probe] = []
        for probeNode in probeNodes {
            let probe = try readProbe(probeNode)
            if probes.contains(where: { $0.id == probe.id }) {
                throw probeNode.error("probe id '\(probe.id)' is used twice in this pack")
            }
            probes.append(probe)
        }
        return ProbePack(name: name, language: language, library: library, probes: probes, source: node.location)
    }

    private static func readLibrary(_ node: YAMLNode) throws -> LibraryCoverage {
        let map = try node.mapping("library", allowed: ["module", "versions"])
        let module = try map.required("module").string("library.module")
        let versionsNode = try map.required("versions")
        let versionsText = try versionsNode.string("library.versions")
        guard let versions = VersionRange(parsing: versionsText) else {
            throw versionsNode.error("cannot read version range '\(versionsText)'; write comparisons like '>=1.19 <1.28'")
        }
        return LibraryCoverage(module: module, versions: versions)
    }

    private static func readProbe(_ node: YAMLNode) throws -> Probe {
        let map = try node.mapping(
            "a probe", allowed: ["id", "function", "span", "follow-goroutine", "enrich", "end-span", "on-entry", "on-return", "attributes"])
        let id = try map.required("id").string("probe id")
        let function = try map.required("function").string("function")
        let onEntry = try map.optional("on-entry").map { try readCaptures($0, section: "on-entry") } ?? []
        let onReturn = try map.optional("on-return").map { try readCaptures($0, section: "on-return") } ?? []
        let captures = onEntry + onReturn
        if let duplicate = captures.first(where: { capture in captures.filter { $0.name == capture.name }.count > 1 }) {
            throw PackError(duplicate.source, "capture '\(duplicate.name)' is defined twice in probe '\(id)'")
        }
        let names = Set(captures.map(\.name))
        let span = try map.optional("span").map { try readSpan($0, captures: names) }
        let handoff = try map.optional("follow-goroutine").map { try readHandoff($0) }
        let enrichment = try map.optional("enrich").map { try readEnrichment($0, key: "enrich", captures: names) }
        let spanEnd = try map.optional("end-span").map { try readEnrichment($0, key: "end-span", captures: names) }
        guard [span != nil, handoff != nil, enrichment != nil, spanEnd != nil].filter({ $0 }).count == 1 else {
            throw node.error(
                "probe '\(id)' needs exactly one of 'span' (make a span), 'enrich' (add to another probe's span), 'end-span' (add to and end a span an object keeps open) or 'follow-goroutine' (carry trace context to new goroutines)")
        }
        if let kind = enrichment != nil ? "enrich" : spanEnd != nil ? "end-span" : nil,
           let returning = map.entries.first(where: { $0.key == "on-return" }) {
            throw returning.keyNode.error("an \(kind) probe reads on entry only; it has no return to wait for")
        }
        if handoff != nil, let extra = map.entries.first(where: { ["on-entry", "on-return", "attributes"].contains($0.key) }) {
            throw extra.keyNode.error("a follow-goroutine probe makes no span, so it takes no '\(extra.key)'")
        }
        let attributes = try map.optional("attributes").map { try readAttributes($0, captures: names) } ?? []
        return Probe(
            id: id, function: function, span: span, goroutineHandoff: handoff, enrichment: enrichment ?? spanEnd, onEntry: onEntry, onReturn: onReturn,
            attributes: attributes, source: node.location)
    }

    /// `enrich: { span, name, error-when }`, or `end-span: { span, object, name, error-when }`.
    private static func readEnrichment(_ node: YAMLNode, key: String, captures: Set<String>) throws -> Enrichment {
        let ends = key == "end-span"
        let map = try node.mapping(key, allowed: ends ? ["span", "object", "name", "error-when"] : ["span", "name", "error-when"])
        let targetNode = try map.required("span")
        let target = try targetNode.string("\(key).span")
        guard target.split(separator: "/").count == 3 else {
            throw targetNode.error("\(key).span '\(target)' must name a probe as pack/probe, e.g. go/net-http/server")
        }
        // The name may use the target's captures, which only planning knows: checked there.
        let rename = try map.optional("name").map { try readNameTemplate($0, captures: nil) }
        let errorWhen = try map.optional("error-when").map { try readErrorConditions($0, captures: captures) } ?? []
        guard ends else { return Enrichment(target: target, rename: rename, errorWhen: errorWhen) }
        let objectNode = try map.required("object")
        let object = try objectNode.mapping("end-span.object", allowed: ["arg"])
        let origin = try readOrigin(object, of: "end-span.object", at: objectNode, resultAllowed: false)
        return Enrichment(target: target, rename: rename, endsSpanKeyedBy: origin, errorWhen: errorWhen)
    }

    private static func readHandoff(_ node: YAMLNode) throws -> GoroutineHandoff {
        let map = try node.mapping("follow-goroutine", allowed: ["parent", "child"])
        func origin(_ key: String) throws -> ValueOrigin {
            let valueNode = try map.required(key)
            let value = try valueNode.mapping("follow-goroutine.\(key)", allowed: ["arg", "result"])
            return try readOrigin(value, of: "follow-goroutine.\(key)", at: valueNode, resultAllowed: true)
        }
        return GoroutineHandoff(parent: try origin("parent"), child: try origin("child"))
    }

    private static func readSpan(_ node: YAMLNode, captures: Set<String>) throws -> SpanRule {
        let map = try node.mapping("span", allowed: ["kind", "name", "error-when", "outlives-call"])
        let kindNode = try map.required("kind")
        let kindName = try kindNode.string("span.kind")
        guard let kind = SpanRule.Kind(rawValue: kindName) else {
            throw kindNode.error("unknown span kind '\(kindName)'; expected one of: \(SpanRule.Kind.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        let name = try readNameTemplate(map.required("name"), captures: captures)
        let errorWhen = try map.optional("error-when").map { try readErrorConditions($0, captures: captures) } ?? []
        let outlivesCall = try map.optional("outlives-call").map { objectNode in
            let object = try objectNode.mapping("span.outlives-call", allowed: ["result", "path"])
            let origin = try readOrigin(object, of: "span.outlives-call", at: objectNode, resultAllowed: true)
            guard let pathNode = object.optional("path") else { return ObjectReference(origin: origin) }
            guard case let steps = try readPath(pathNode), steps.count == 1, case .assertType(let type) = steps[0] else {
                throw pathNode.error("span.outlives-call.path can only check the dynamic type, e.g. \"(*pkg.Stream)\"")
            }
            return ObjectReference(origin: origin, dynamicType: type)
        }
        return SpanRule(kind: kind, name: name, errorWhen: errorWhen, outlivesCall: outlivesCall)
    }

    /// One condition or a list of them: `{ capture: status, at-least: 500 }`, `{ capture: err, not-zero: true }`.
    private static func readErrorConditions(_ node: YAMLNode, captures: Set<String>) throws -> [ErrorCondition] {
        let nodes = (try? node.sequence("error-when")) ?? [node]
        return try nodes.map { conditionNode in
            let condition = try conditionNode.mapping("error-when", allowed: ["capture", "at-least", "not-zero"])
            let captureNode = try condition.required("capture")
            let capture = try captureNode.string("error-when.capture")
            guard captures.contains(capture) else { throw captureNode.error("error-when refers to unknown capture '\(capture)'") }
            switch (condition.optional("at-least"), condition.optional("not-zero")) {
            case (let threshold?, nil):
                return ErrorCondition(capture: capture, test: .atLeast(try threshold.integer("error-when.at-least")))
            case (nil, let flag?):
                guard try flag.string("not-zero") == "true" else { throw flag.error("not-zero can only be true") }
                return ErrorCondition(capture: capture, test: .nonZero)
            default:
                throw conditionNode.error("error-when needs exactly one of 'at-least' or 'not-zero'")
            }
        }
    }

    /// `captures` nil: references are checked later, against captures of another probe too.
    private static func readNameTemplate(_ node: YAMLNode, captures: Set<String>?) throws -> NameTemplate {
        var rest = Substring(try node.string("span.name"))
        var parts: [NameTemplate.Part] = []
        while let open = rest.firstIndex(of: "{") {
            if open > rest.startIndex { parts.append(.literal(String(rest[..<open]))) }
            guard let close = rest[open...].firstIndex(of: "}") else {
                throw node.error("span name has '{' without a closing '}'")
            }
            let reference = rest[rest.index(after: open)..<close].trimmingCharacters(in: .whitespaces)
            guard !reference.isEmpty else { throw node.error("span name has an empty '{}'") }
            let part: NameTemplate.Part = reference.contains("(") ? .expression(try readExpression(reference, at: node)) : .capture(reference)
            if let captures, let unknown = NameTemplate(parts: [part]).captureNames.first(where: { !captures.contains($0) }) {
                throw node.error("span name refers to unknown capture '\(unknown)'; \(knownCaptures(captures))")
            }
            parts.append(part)
            rest = rest[rest.index(after: close)...]
        }
        if !rest.isEmpty { parts.append(.literal(String(rest))) }
        return NameTemplate(parts: parts)
    }

    private static func readCaptures(_ node: YAMLNode, section: String) throws -> [Capture] {
        try node.mapping(section).entries.map { entry in
            let map = try entry.value.mapping("capture '\(entry.key)'", allowed: ["arg", "result", "path", "type", "if-zero", "if-absent", "max-length"])
            let typeNode = try map.required("type")
            let typeName = try typeNode.string("type")
            guard let type = ValueType(rawValue: typeName) else {
                throw typeNode.error("unknown value type '\(typeName)'; expected one of: \(ValueType.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            let origin = try readOrigin(map, of: "capture '\(entry.key)'", at: entry.keyNode, resultAllowed: section == "on-return")
            let path = try map.optional("path").map { try readPath($0) } ?? []
            let maxLength = try map.optional("max-length").map { lengthNode -> Int in
                let value = try lengthNode.integer("max-length")
                guard (1...255).contains(value) else { throw lengthNode.error("max-length must be between 1 and 255") }
                return Int(value)
            } ?? 128
            return Capture(
                name: entry.key, origin: origin, path: path, type: type,
                ifZero: try map.optional("if-zero")?.integer("if-zero"), ifAbsent: try map.optional("if-absent")?.integer("if-absent"),
                maxLength: maxLength, source: entry.keyNode.location)
        }
    }

    /// `arg: name` or `result: position`, exactly one of them.
    private static func readOrigin(_ map: YAMLMapping, of what: String, at node: YAMLNode, resultAllowed: Bool) throws -> ValueOrigin {
        switch (map.optional("arg"), map.optional("result")) {
        case (let argument?, nil):
            return .argument(try argument.string("arg"))
        case (nil, let result?):
            guard resultAllowed else { throw result.error("results exist only on return; move \(what) to on-return") }
            let index = try result.integer("result")
            guard (0...8).contains(index) else { throw result.error("result must be a position from 0 to 8") }
            return .result(Int(index))
        default:
            throw node.error("\(what) needs exactly one of 'arg' (a parameter name) or 'result' (a result position)")
        }
    }

    /// Reads `A.B.C` and `(*pkg.Type).field` paths.
    private static func readPath(_ node: YAMLNode) throws -> [PathStep] {
        var rest = Substring(try node.string("path"))
        var steps: [PathStep] = []
        while !rest.isEmpty {
            if rest.hasPrefix("(") {
                guard let close = rest.firstIndex(of: ")") else { throw node.error("path has '(' without ')'") }
                let type = rest[rest.index(after: rest.startIndex)..<close]
                guard !type.isEmpty else { throw node.error("path has an empty type assertion '()'") }
                steps.append(.assertType(String(type)))
                rest = rest[rest.index(after: close)...]
            } else {
                let field = rest.prefix { $0 != "." }
                guard !field.isEmpty, field.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" }) else {
                    throw node.error("path step '\(field)' is not a field name")
                }
                steps.append(.field(String(field)))
                rest = rest.dropFirst(field.count)
            }
            if rest.hasPrefix(".") {
                rest = rest.dropFirst()
                if rest.isEmpty { throw node.error("path ends with '.'") }
            } else if !rest.isEmpty {
                throw node.error("path steps must be separated by '.'")
            }
        }
        return steps
    }

    private static func readAttributes(_ node: YAMLNode, captures: Set<String>) throws -> [AttributeRule] {
        try node.mapping("attributes").entries.map { entry in
            let text = try entry.value.string("attribute '\(entry.key)'").trimmingCharacters(in: .whitespaces)
            let expression = try readExpression(text, at: entry.value)
            if let unknown = expression.captureNames.first(where: { !captures.contains($0) }) {
                throw entry.value.error("attribute '\(entry.key)' refers to unknown capture '\(unknown)'; \(knownCaptures(captures))")
            }
            return AttributeRule(key: entry.key, value: expression)
        }
    }

    private static func knownCaptures(_ captures: Set<String>) -> String {
        captures.isEmpty ? "the probe defines no captures in on-entry or on-return" : "known: \(captures.sorted().joined(separator: ", "))"
    }

    private static func readExpression(_ text: String, at node: YAMLNode) throws -> ValueExpression {
        if text.count >= 2, text.hasPrefix("'"), text.hasSuffix("'") { return .literal(String(text.dropFirst().dropLast())) }
        guard let open = text.firstIndex(of: "(") else { return .capture(text) }
        guard text.hasSuffix(")") else { throw node.error("'\(text)' is missing its closing ')'") }
        let function = text[..<open]
        let arguments = text[text.index(after: open)..<text.index(before: text.endIndex)]
            .split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        switch (function, arguments.count) {
        case ("hostname", 1): return .hostname(of: arguments[0])
        case ("port", 1): return .port(of: arguments[0])
        case ("url", 4): return .url(scheme: arguments[0], host: arguments[1], path: arguments[2], query: arguments[3])
        case ("rpc_service", 1): return .rpcService(of: arguments[0])
        case ("rpc_method", 1): return .rpcMethod(of: arguments[0])
        default:
            throw node.error(
                "unknown function '\(text)'; expected hostname(host), port(host), url(scheme, host, path, query), rpc_service(method) or rpc_method(method)")
        }
    }
}
