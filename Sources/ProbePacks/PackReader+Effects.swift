import Foundation

/// What a probe does: `span`, `enrich`, `end-span` or `follow-goroutine`, with their names and conditions.
extension PackReader {
    static func readSpan(_ node: YAMLNode, captures: Set<String>, language: Language?) throws -> SpanRule {
        let report = node.diagnostics
        let map = try node.mapping("span", allowed: ["kind", "name", "error-when", "outlives-call", "ends-at-return", "ends-after-call"])
        let kind = report.attempt { () throws -> SpanRule.Kind in
            let kindNode = try map.required("kind")
            let kindName = try kindNode.string("span.kind")
            guard let kind = SpanRule.Kind(rawValue: kindName) else {
                throw kindNode.error(
                    "unknown span kind '\(kindName)'; expected one of: "
                        + SpanRule.Kind.allCases.map(\.rawValue).joined(separator: ", ")
                )
            }
            return kind
        }
        let name = report.attempt { try readNameTemplate(map.required("name"), captures: captures) }
        let errorWhen = map.optional("error-when").flatMap { conditions in
            report.attempt { try readErrorConditions(conditions, captures: captures) }
        }
        let outlivesCall = map.optional("outlives-call").flatMap { object in
            report.attempt { try readOutlivesCall(object) }
        }
        let endsAtReturn = map.optional("ends-at-return").flatMap { node in
            report.attempt { try readEndsAtReturn(node, language: language) }
        }
        let endsAfterCall = map.optional("ends-after-call").flatMap { node in
            report.attempt { try readEndsAfterCall(node, language: language, alongside: map) }
        }
        guard let kind, let name else { throw AlreadyReported() }
        return SpanRule(
            kind: kind, name: name, errorWhen: errorWhen ?? [], outlivesCall: outlivesCall, endsAtReturn: endsAtReturn, endsAfterCall: endsAfterCall)
    }

    /// `ends-after-call: { function: NAME, when-nil: { result: N } }`, Go only.
    private static func readEndsAfterCall(_ node: YAMLNode, language: Language?, alongside span: YAMLMapping) throws -> CallResultEnd {
        if let language, language != .go {
            throw node.error("span.ends-after-call is for Go packs; a native span returns through a return probe, which is cheap already")
        }
        if let other = ["outlives-call", "ends-at-return"].first(where: span.contains) {
            throw node.error("span.ends-after-call and span.\(other) cannot be combined: each decides differently where the span ends")
        }
        let map = try node.mapping("span.ends-after-call", allowed: ["function", "when-nil"])
        // A misspelt key is reported already: what it leaves missing need not be too.
        if map.hasUnknownKeys { throw AlreadyReported() }
        let function = try map.required("function").string("span.ends-after-call.function")
        let whenNil = try map.required("when-nil")
        guard case .result(let index) = try readOrigin(
            whenNil.mapping("span.ends-after-call.when-nil", allowed: ["arg", "result"]), of: "span.ends-after-call.when-nil", at: whenNil,
            resultAllowed: true)
        else {
            throw whenNil.error("span.ends-after-call.when-nil names a result of \(function) (result: N), not an argument")
        }
        return CallResultEnd(function: function, result: index)
    }

    /// `ends-at-return: { when-result: zero | non-zero }` (native), or `ends-at-return: { after-call:
    /// NAME, when-not-nil: { result: N } }` (Go).
    private static func readEndsAtReturn(_ node: YAMLNode, language: Language?) throws -> FailedReturn {
        let nativeKeys = ["when-result"], goKeys = ["after-call", "when-not-nil"]
        // A typo is offered the pack's own language's keys; the other language's get a message below.
        let (ownKeys, otherKeys) = switch language {
        case .go?: (goKeys, nativeKeys)
        case nil: (nativeKeys + goKeys, [String]())
        case _?: (nativeKeys, goKeys)
        }
        let map = try node.mapping("span.ends-at-return", allowed: ownKeys, readForItsOwnError: otherKeys)
        if map.hasUnknownKeys { throw AlreadyReported() }
        let goKey = goKeys.first(where: map.contains)
        if language == .go, map.contains("when-result") {
            throw node.error(
                "span.ends-at-return.when-result is for native packs: a Go span's RETs are single-stepped whatever they return, so name the "
                    + "call whose failure makes the function return at once instead (after-call, when-not-nil)")
        }
        if let language, language != .go, let goKey {
            throw node.error("span.ends-at-return.\(goKey) is for Go packs; a native span tests its result at the return (when-result)")
        }
        guard language == .go || goKey != nil else {
            return .result(try readResultTest(map.required("when-result"), key: "span.ends-at-return.when-result"))
        }
        let function = try map.required("after-call").string("span.ends-at-return.after-call")
        let whenNotNil = try map.required("when-not-nil")
        guard case .result(let index) = try readOrigin(
            whenNotNil.mapping("span.ends-at-return.when-not-nil", allowed: ["arg", "result"]), of: "span.ends-at-return.when-not-nil",
            at: whenNotNil, resultAllowed: true)
        else {
            throw whenNotNil.error("span.ends-at-return.when-not-nil names a result of \(function) (result: N), not an argument")
        }
        return .afterFailedCall(CallResultEnd(function: function, result: index))
    }

    static func readResultTest(_ node: YAMLNode, key: String) throws -> ResultTest {
        let text = try node.string(key)
        guard let test = ResultTest(rawValue: text) else {
            throw node.error("\(key) must be one of: \(ResultTest.allCases.map(\.rawValue).joined(separator: ", ")) (of the first result)")
        }
        return test
    }

    /// `at: entry | return` and, at a return, `when-result: zero | non-zero`.
    private static func readTrigger(_ map: YAMLMapping, key: String) throws -> ReturnTrigger? {
        let report = map.owner.diagnostics
        let atReturn = try map.optional("at").map { node -> Bool in
            let at = try node.string("\(key).at")
            guard ["entry", "return"].contains(at) else { throw node.error("\(key).at must be entry or return") }
            return at == "return"
        } ?? false
        let test = map.optional("when-result").flatMap { node in
            report.attempt { () throws -> ResultTest in
                guard atReturn else { throw node.error("\(key).when-result tests the function's result, which exists at: return only") }
                return try readResultTest(node, key: "\(key).when-result")
            }
        }
        return atReturn ? ReturnTrigger(whenResult: test) : nil
    }

    /// `outlives-call: { result: 0, path: "(*pkg.T)" }`.
    private static func readOutlivesCall(_ node: YAMLNode) throws -> ObjectReference {
        let object = try node.mapping("span.outlives-call", allowed: ["result", "path"])
        let origin = try readOrigin(object, of: "span.outlives-call", at: node, resultAllowed: true)
        guard let pathNode = object.optional("path") else { return ObjectReference(origin: origin) }
        guard case let steps = try readPath(pathNode), steps.count == 1, case .assertType(let type) = steps[0] else {
            throw pathNode.error("span.outlives-call.path can only check the dynamic type, e.g. \"(*pkg.Stream)\"")
        }
        return ObjectReference(origin: origin, dynamicType: type)
    }

    /// `enrich: { span, name, error-when }`, or `end-span: { span, object, name, error-when }` (`object` optional);
    /// one for each span `span` names (one, or a list).
    static func readEnrichment(_ node: YAMLNode, key: String, captures: Set<String>) throws -> [Enrichment] {
        let report = node.diagnostics
        let isEnd = key == "end-span"
        let map = try node.mapping(
            key,
            allowed: isEnd ? ["span", "object", "name", "error-when", "at", "when-result"] : ["span", "name", "error-when", "at", "when-result"]
        )
        let trigger = report.attempt { try readTrigger(map, key: key) }
        let targets = report.attempt { () throws -> [String] in
            let spanNode = try map.required("span")
            guard case .sequence = spanNode.node else { return [try readTarget(spanNode, key: key)] }
            let targets = try spanNode.sequence("\(key).span").map { try readTarget($0, key: key) }
            guard !targets.isEmpty else { throw spanNode.error("\(key).span needs at least one span") }
            if let twice = targets.first(where: { target in targets.filter { $0 == target }.count > 1 }) {
                throw spanNode.error("\(key).span names \(twice) twice")
            }
            return targets
        }
        // The name may use the target's captures, which only planning knows: checked there.
        let rename = map.optional("name").flatMap { name in report.attempt { try readNameTemplate(name, captures: nil) }
        }
        let errorWhen = map.optional("error-when").flatMap { conditions in
            report.attempt { try readErrorConditions(conditions, captures: captures) }
        }
        guard let trigger else { throw AlreadyReported() }
        guard isEnd else {
            guard let targets else { throw AlreadyReported() }
            return targets.map { Enrichment(target: $0, rename: rename, errorWhen: errorWhen ?? [], atReturn: trigger) }
        }
        if let objectNode = map.optional("object"), trigger != nil {
            report.report(objectNode.error("end-span.object is read at entry; a probe at: return ends the open call of its thread instead"))
        }
        // Without `object`, the span ends at this probe on the target's own goroutine/thread.
        let end = map.optional("object").map { objectNode in
            report.attempt { () throws -> SpanEnd in
                let object = try objectNode.mapping("end-span.object", allowed: ["arg"])
                return .object(try readOrigin(object, of: "end-span.object", at: objectNode, resultAllowed: false))
            }
        } ?? .openCall
        guard let targets, let end else { throw AlreadyReported() }
        return targets.map { Enrichment(target: $0, rename: rename, ends: end, errorWhen: errorWhen ?? [], atReturn: trigger) }
    }

    /// `span: pack/probe`, the probe whose span another probe works on.
    static func readTarget(_ node: YAMLNode, key: String) throws -> String {
        let target = try node.string("\(key).span")
        guard target.split(separator: "/").count == 3 else {
            throw node.error("\(key).span '\(target)' must name a probe as pack/probe, e.g. go/net-http/server")
        }
        return target
    }

    /// `follow-goroutine: { child: { call: runtime.runqput, arg: gp }, parent: { running-goroutine: m.curg } }`.
    static func readHandoff(_ node: YAMLNode) throws -> GoroutineHandoff {
        let map = try node.mapping("follow-goroutine", allowed: ["child", "parent"])
        let child = node.diagnostics.attempt { () throws -> CalleeArgument in
            let value = try map.required("child").mapping("follow-goroutine.child", allowed: ["call", "arg"])
            // The unknown key reported is most likely the attempt at a missing one: one message is enough.
            if value.hasUnknownKeys, !(value.contains("call") && value.contains("arg")) { throw AlreadyReported() }
            let callee = node.diagnostics.attempt { try value.required("call").string("follow-goroutine.child.call") }
            let argument = node.diagnostics.attempt { try value.required("arg").string("follow-goroutine.child.arg") }
            guard let callee, let argument else { throw AlreadyReported() }
            return CalleeArgument(callee: callee, argument: argument)
        }
        let creator = node.diagnostics.attempt { () throws -> [PathStep] in
            let value = try map.required("parent").mapping("follow-goroutine.parent", allowed: ["running-goroutine"])
            if value.hasUnknownKeys, !value.contains("running-goroutine") { throw AlreadyReported() }
            let pathNode = try value.required("running-goroutine")
            let path = try readPath(pathNode, what: "follow-goroutine.parent.running-goroutine")
            guard path.allSatisfy({ if case .field = $0 { true } else { false } }) else {
                throw pathNode.error("follow-goroutine.parent.running-goroutine is a path of field names from runtime.g, e.g. m.curg")
            }
            return path
        }
        guard let child, let creator else { throw AlreadyReported() }
        return GoroutineHandoff(child: child, creator: creator)
    }

    /// One condition or a list of them: `{ capture: status, at-least: 500 }`, `{ capture: err, not-zero: true }`,
    /// `{ capture: status, one-of: [5, 7] }`.
    static func readErrorConditions(_ node: YAMLNode, captures: Set<String>) throws -> [ErrorCondition] {
        let nodes = (try? node.sequence("error-when")) ?? [node]
        let conditions = nodes.compactMap { condition in
            node.diagnostics.attempt { try readErrorCondition(condition, captures: captures) }
        }
        guard conditions.count == nodes.count else { throw AlreadyReported() }
        return conditions
    }

    private static func readErrorCondition(_ node: YAMLNode, captures: Set<String>) throws -> ErrorCondition {
        let condition = try node.mapping("error-when", allowed: ["capture", "at-least", "not-zero", "one-of"])
        let capture = node.diagnostics.attempt { () throws -> String in
            let captureNode = try condition.required("capture")
            let capture = try captureNode.string("error-when.capture")
            guard captures.contains(capture) else {
                throw captureNode.error("error-when refers to unknown capture '\(capture)'")
            }
            return capture
        }
        let test = node.diagnostics.attempt { () throws -> ErrorCondition.Test in
            switch (condition.optional("at-least"), condition.optional("not-zero"), condition.optional("one-of")) {
            case (let threshold?, nil, nil):
                return .atLeast(try threshold.integer("error-when.at-least"))
            case (nil, let flag?, nil):
                guard try flag.string("not-zero") == "true" else { throw flag.error("not-zero can only be true") }
                return .nonZero
            case (nil, nil, let list?):
                let values = try list.sequence("error-when.one-of").map { try $0.integer("a value of error-when.one-of") }
                guard !values.isEmpty else { throw list.error("error-when.one-of needs at least one value") }
                return .oneOf(values)
            default:
                throw node.error("error-when needs exactly one of 'at-least', 'not-zero' or 'one-of'")
            }
        }
        guard let capture, let test else { throw AlreadyReported() }
        return ErrorCondition(capture: capture, test: test)
    }

    /// `captures` nil: references are checked later, against captures of another probe too.
    static func readNameTemplate(_ node: YAMLNode, captures: Set<String>?) throws -> NameTemplate {
        var rest = Substring(try node.string("span.name"))
        var parts: [NameTemplate.Part] = []
        while let open = rest.firstIndex(of: "{") {
            if open > rest.startIndex { parts.append(.literal(String(rest[..<open]))) }
            guard let close = rest[open...].firstIndex(of: "}") else {
                throw node.error("span name has '{' without a closing '}'")
            }
            let reference = rest[rest.index(after: open)..<close].trimmingCharacters(in: .whitespaces)
            guard !reference.isEmpty else { throw node.error("span name has an empty '{}'") }
            let part: NameTemplate.Part =
                reference.contains("(") ? .expression(try readExpression(reference, at: node)) : .capture(reference)
            if let captures,
                let unknown = NameTemplate(parts: [part]).captureNames.first(where: { !captures.contains($0) })
            {
                throw node.error("span name refers to unknown capture '\(unknown)'; \(knownCaptures(captures))")
            }
            parts.append(part)
            rest = rest[rest.index(after: close)...]
        }
        if !rest.isEmpty { parts.append(.literal(String(rest))) }
        return NameTemplate(parts: parts)
    }
}

/// W3C trace context: where a span's request keeps its headers, and the probes that send them.
extension PackReader {
    /// `trace-context: { headers: { arg: req, path: Header, type: go-header-map, case: canonical } }`.
    static func readTraceContext(_ node: YAMLNode) throws -> TraceContextHeaders {
        let map = try node.mapping("trace-context", allowed: ["headers"])
        return try readHeaders(map.required("headers"), key: "trace-context.headers")
    }

    /// `extract-trace-context: { span: pack/probe, headers: { arg: frame, path: Fields, type: hpack-header-fields, case: lower } }`.
    static func readExtraction(_ node: YAMLNode) throws -> TraceContextExtraction {
        let report = node.diagnostics
        let map = try node.mapping("extract-trace-context", allowed: ["span", "headers"])
        let target = report.attempt { try readTarget(map.required("span"), key: "extract-trace-context") }
        let headers = report.attempt { try readHeaders(map.required("headers"), key: "extract-trace-context.headers") }
        guard let target, let headers else { throw AlreadyReported() }
        return TraceContextExtraction(span: target, headers: headers)
    }

    /// Where a request keeps its headers: `{ arg, path, type, case }`.
    private static func readHeaders(_ node: YAMLNode, key: String) throws -> TraceContextHeaders {
        let report = node.diagnostics
        let headers = try node.mapping(key, allowed: ["arg", "path", "type", "case"])
        let origin = report.attempt { try readOrigin(headers, of: key, at: node, resultAllowed: false) }
        let path = headers.optional("path").flatMap { path in report.attempt { try readPath(path) } }
        let carrier = report.attempt { () throws -> TraceContextHeaders.Carrier in
            try readChoice(headers.required("type"), named: "\(key).type")
        }
        let nameCase = report.attempt { () throws -> TraceContextHeaders.NameCase in
            try readChoice(headers.required("case"), named: "\(key).case")
        }
        guard let origin, let carrier, let nameCase else { throw AlreadyReported() }
        return TraceContextHeaders(origin: origin, path: path ?? [], carrier: carrier, nameCase: nameCase, source: node.location)
    }

    /// `inject-trace-context: { span, headers: { arg }, writer: { arg, path: "(*T)", buffer, used } }`.
    static func readInjection(_ node: YAMLNode) throws -> TraceContextInjection {
        let report = node.diagnostics
        let map = try node.mapping("inject-trace-context", allowed: ["span", "headers", "writer"])
        let target = report.attempt { try readTarget(map.required("span"), key: "inject-trace-context") }
        let headers = report.attempt { () throws -> ValueOrigin in
            let headersNode = try map.required("headers")
            let headers = try headersNode.mapping("inject-trace-context.headers", allowed: ["arg"])
            return try readOrigin(headers, of: "inject-trace-context.headers", at: headersNode, resultAllowed: false)
        }
        let writer = report.attempt { () throws -> BufferedWriter in
            let writerNode = try map.required("writer")
            let writer = try writerNode.mapping("inject-trace-context.writer", allowed: ["arg", "path", "buffer", "used"])
            let origin = report.attempt { try readOrigin(writer, of: "inject-trace-context.writer", at: writerNode, resultAllowed: false) }
            let dynamicType = writer.optional("path").flatMap { pathNode in
                report.attempt { () throws -> String in
                    guard case let steps = try readPath(pathNode), steps.count == 1, case .assertType(let type) = steps[0] else {
                        throw pathNode.error("inject-trace-context.writer.path can only check the dynamic type, e.g. \"(*bufio.Writer)\"")
                    }
                    return type
                }
            }
            let buffer = report.attempt { try writer.required("buffer").string("inject-trace-context.writer.buffer") }
            let used = report.attempt { try writer.required("used").string("inject-trace-context.writer.used") }
            guard let origin, let buffer, let used, writer.optional("path") == nil || dynamicType != nil else { throw AlreadyReported() }
            return BufferedWriter(origin: origin, dynamicType: dynamicType, buffer: buffer, used: used)
        }
        guard let target, let headers, let writer else { throw AlreadyReported() }
        return TraceContextInjection(target: target, headers: headers, writer: writer)
    }

    /// A value of a fixed set, e.g. a carrier type.
    private static func readChoice<Choice: RawRepresentable & CaseIterable>(_ node: YAMLNode, named key: String) throws -> Choice
    where Choice.RawValue == String {
        let text = try node.string(key)
        guard let choice = Choice(rawValue: text) else {
            throw node.error("unknown \(key) '\(text)'; expected one of: " + Choice.allCases.map(\.rawValue).joined(separator: ", "))
        }
        return choice
    }
}
