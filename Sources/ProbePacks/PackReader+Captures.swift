import Foundation

/// What a probe reads (`on-entry`, `on-return`: origins, paths, types) and the attributes it sets from it.
extension PackReader {
    /// The captures of one section, and the names of all of them, also of those that failed,
    /// so that references to a capture with a mistake are not reported as unknown too.
    struct CaptureSection {
        var captures: [Capture] = []
        var keys: [(name: String, node: YAMLNode)] = []
    }

    static func readCaptures(_ node: YAMLNode, section: String) throws -> CaptureSection {
        var read = CaptureSection()
        for entry in try node.mapping(section).entries {
            read.keys.append((entry.key, entry.keyNode))
            if let capture = node.diagnostics.attempt({ try readCapture(entry, section: section) }) {
                read.captures.append(capture)
            }
        }
        return read
    }

    private static func readCapture(_ entry: (key: String, keyNode: YAMLNode, value: YAMLNode), section: String) throws
        -> Capture
    {
        let report = entry.value.diagnostics
        let map = try entry.value.mapping(
            "capture '\(entry.key)'",
            allowed: ["arg", "result", "path", "type", "if-zero", "if-absent", "max-length"]
        )
        let type = report.attempt { () throws -> ValueType in
            let typeNode = try map.required("type")
            let typeName = try typeNode.string("type")
            guard let type = ValueType(rawValue: typeName) else {
                throw typeNode.error(
                    "unknown value type '\(typeName)'; expected one of: "
                        + ValueType.allCases.map(\.rawValue).joined(separator: ", ")
                )
            }
            return type
        }
        let origin = report.attempt {
            try readOrigin(map, of: "capture '\(entry.key)'", at: entry.keyNode, resultAllowed: section == "on-return")
        }
        let path = map.optional("path").flatMap { path in report.attempt { try readPath(path) } }
        let maxLength = map.optional("max-length").flatMap { lengthNode in
            report.attempt { () throws -> Int in
                let value = try lengthNode.integer("max-length")
                guard (1...255).contains(value) else { throw lengthNode.error("max-length must be between 1 and 255") }
                return Int(value)
            }
        }
        let ifZero = map.optional("if-zero").flatMap { value in report.attempt { try value.integer("if-zero") } }
        let ifAbsent = map.optional("if-absent").flatMap { value in report.attempt { try value.integer("if-absent") } }
        guard let type, let origin else { throw AlreadyReported() }
        return Capture(
            name: entry.key,
            origin: origin,
            path: path ?? [],
            type: type,
            ifZero: ifZero,
            ifAbsent: ifAbsent,
            maxLength: maxLength ?? 128,
            source: entry.keyNode.location
        )
    }

    /// `arg: name` or, where allowed, `result: position`: exactly one of them.
    static func readOrigin(_ map: YAMLMapping, of what: String, at node: YAMLNode, resultAllowed: Bool) throws
        -> ValueOrigin
    {
        switch (map.optional("arg"), map.optional("result")) {
        case (let argument?, nil):
            return .argument(try argument.string("arg"))
        case (nil, let result?):
            guard resultAllowed else { throw result.error("results exist only on return; move \(what) to on-return") }
            let index = try result.integer("result")
            guard (0...8).contains(index) else { throw result.error("result must be a position from 0 to 8") }
            return .result(Int(index))
        case (nil, nil) where map.hasUnknownKeys:
            // The unknown key reported is most likely the attempt at one: one message is enough.
            throw AlreadyReported()
        default:
            throw node.error("\(what) needs exactly one of 'arg' (a parameter name) or 'result' (a result position)")
        }
    }

    /// Reads `A.B.C`, `(*pkg.Type).field` and `list[key=value].field` paths; `what` names the key in errors.
    static func readPath(_ node: YAMLNode, what: String = "path") throws -> [PathStep] {
        var rest = Substring(try node.string(what))
        var steps: [PathStep] = []
        while !rest.isEmpty {
            if rest.hasPrefix("(") {
                guard let close = rest.firstIndex(of: ")") else { throw node.error("\(what) has '(' without ')'") }
                let type = rest[rest.index(after: rest.startIndex)..<close]
                guard !type.isEmpty else { throw node.error("\(what) has an empty type assertion '()'") }
                steps.append(.assertType(String(type)))
                rest = rest[rest.index(after: close)...]
            } else {
                let field = rest.prefix { $0 != "." && $0 != "[" }
                guard !field.isEmpty, field.allSatisfy(isNameCharacter) else {
                    throw node.error("\(what) step '\(field)' is not a field name")
                }
                rest = rest.dropFirst(field.count)
                if rest.hasPrefix("[") {
                    guard let close = rest.firstIndex(of: "]") else { throw node.error("\(what) has '[' without ']'") }
                    let selector = rest[rest.index(after: rest.startIndex)..<close]
                    let (key, value) = try readListSelector(selector, after: field, at: node)
                    steps.append(.findInList(field: String(field), key: key, equals: value))
                    rest = rest[rest.index(after: close)...]
                } else {
                    steps.append(.field(String(field)))
                }
            }
            if rest.hasPrefix(".") {
                rest = rest.dropFirst()
                if rest.isEmpty { throw node.error("\(what) ends with '.'") }
            } else if !rest.isEmpty {
                throw node.error("\(what) steps must be separated by '.'")
            }
        }
        return steps
    }

    private static func isNameCharacter(_ character: Character) -> Bool {
        character.isLetter || character.isNumber || character == "_"
    }

    /// `key=value` in `field[key=value]`: a member name, and an integer or a quoted character
    /// (`'C'`, its ASCII code).
    private static func readListSelector(_ selector: Substring, after field: Substring, at node: YAMLNode) throws -> (String, Int64) {
        let usage = "'\(field)[\(selector)]' selects a list node as '\(field)[member=value]', value an integer or a character such as 'C'"
        let parts = selector.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
        guard parts.count == 2 else { throw node.error(usage) }
        let key = parts[0].trimmingCharacters(in: .whitespaces)
        let valueText = parts[1].trimmingCharacters(in: .whitespaces)
        guard !key.isEmpty, key.allSatisfy(isNameCharacter) else { throw node.error(usage) }
        if valueText.count == 3, valueText.first == "'", valueText.last == "'",
           let ascii = valueText.dropFirst().first?.asciiValue {
            return (key, Int64(ascii))
        }
        let parsed = valueText.hasPrefix("0x") ? Int64(valueText.dropFirst(2), radix: 16) : Int64(valueText)
        guard let value = parsed else { throw node.error(usage) }
        return (key, value)
    }

    static func readAttributes(_ node: YAMLNode, captures: Set<String>) throws -> [AttributeRule] {
        let entries = try node.mapping("attributes").entries
        let attributes = entries.compactMap { entry in
            node.diagnostics.attempt { () throws -> AttributeRule in
                let text = try entry.value.string("attribute '\(entry.key)'").trimmingCharacters(in: .whitespaces)
                let expression = try readExpression(text, at: entry.value)
                if let unknown = expression.captureNames.first(where: { !captures.contains($0) }) {
                    throw entry.value.error(
                        "attribute '\(entry.key)' refers to unknown capture '\(unknown)'; \(knownCaptures(captures))"
                    )
                }
                return AttributeRule(key: entry.key, value: expression)
            }
        }
        guard attributes.count == entries.count else { throw AlreadyReported() }
        return attributes
    }

    static func knownCaptures(_ captures: Set<String>) -> String {
        captures.isEmpty
            ? "the probe defines no captures in on-entry or on-return"
            : "known: \(captures.sorted().joined(separator: ", "))"
    }

    static func readExpression(_ text: String, at node: YAMLNode) throws -> ValueExpression {
        if text.count >= 2, text.hasPrefix("'"), text.hasSuffix("'") {
            return .literal(String(text.dropFirst().dropLast()))
        }
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
        case ("grpc_status", 2): return .grpcStatus(code: arguments[0], error: arguments[1])
        case ("url_scheme", 1): return .urlScheme(tls: arguments[0])
        case ("sql_operation", 1): return .sqlOperation(of: arguments[0])
        default:
            throw node.error(
                "unknown function '\(text)'; expected hostname(host), port(host), url(scheme, host, path, query),"
                    + " url_scheme(tls), rpc_service(method), rpc_method(method), grpc_status(code, error) or sql_operation(query)"
            )
        }
    }
}
