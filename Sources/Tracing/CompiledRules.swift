import ProbePacks
import Spans

/// A pack's value expression with its capture names resolved to the probe's capture indexes,
/// once per plan: evaluating it per span compares no names and copies no strings. It holds plain
/// values only (a literal is no expression: see `CompiledAttribute`), so the copy Swift makes of
/// it for each evaluation is a few words, not a call to a value witness that took a tenth of a
/// span's assembly in perf (issue 7).
enum CompiledExpression: Sendable {
    case capture(Int?)
    case hostname(Int?)
    case port(Int?)
    case url(scheme: Int?, host: Int?, path: Int?, query: Int?)
    case rpcService(Int?)
    case rpcMethod(Int?)
    case urlScheme(Int?)
    case grpcStatus(code: Int?, error: Int?)
    case sqlOperation(Int?)

    /// Nil for a literal, which needs no evaluating.
    /// - Parameter names: The probe's captures, in slot order; a name not among them is never read.
    init?(_ expression: ValueExpression, names: [String]) {
        func index(_ name: String) -> Int? { names.firstIndex(of: name) }
        switch expression {
        case .literal: return nil
        case .capture(let name): self = .capture(index(name))
        case .hostname(let name): self = .hostname(index(name))
        case .port(let name): self = .port(index(name))
        case .url(let scheme, let host, let path, let query):
            self = .url(scheme: index(scheme), host: index(host), path: index(path), query: index(query))
        case .rpcService(let name): self = .rpcService(index(name))
        case .rpcMethod(let name): self = .rpcMethod(index(name))
        case .urlScheme(let tls): self = .urlScheme(index(tls))
        case .grpcStatus(let code, let error): self = .grpcStatus(code: index(code), error: index(error))
        case .sqlOperation(let name): self = .sqlOperation(index(name))
        }
    }
}

/// A span name template over capture indexes.
struct CompiledName: Sendable {
    enum Part: Sendable {
        case literal(String)
        case capture(Int?)
        /// With the captures it reads, for telling whether the name can be completed.
        case expression(CompiledExpression, reads: [Int?])
    }

    let parts: [Part]

    init(_ template: NameTemplate, names: [String]) {
        parts = template.parts.map { part in
            switch part {
            case .literal(let text): .literal(text)
            case .capture(let name): .capture(names.firstIndex(of: name))
            case .expression(let expression):
                if let compiled = CompiledExpression(expression, names: names) {
                    .expression(compiled, reads: expression.captureNames.map { names.firstIndex(of: $0) })
                } else {
                    .literal(expression.literalText ?? "")
                }
            }
        }
    }
}

/// An error condition over a capture index; the name stays for the status message. A class: a
/// span's assembly tests its conditions by reference rather than copying each name and list.
final class CompiledCondition: Sendable {
    let capture: String
    let index: Int?
    let test: ErrorCondition.Test

    init(_ condition: ErrorCondition, names: [String]) {
        capture = condition.capture
        index = names.firstIndex(of: condition.capture)
        test = condition.test
    }
}

/// An attribute's key and how its value is computed, or its value when the pack gives a literal.
struct CompiledAttribute: Sendable {
    let key: String
    /// Nil for a literal.
    let expression: CompiledExpression?
    /// The literal value; nil for a computed one.
    let literal: AttributeValue?

    init(_ rule: AttributeRule, names: [String]) {
        key = rule.key
        expression = CompiledExpression(rule.value, names: names)
        literal = rule.value.literalText.map(AttributeValue.string)
    }
}

extension ValueExpression {
    /// The text of a literal; nil for any other expression.
    var literalText: String? {
        guard case .literal(let text) = self else { return nil }
        return text
    }
}
