import Foundation
import Planning
import ProbePacks
import Spans

/// Builds OpenTelemetry spans from the BPF side's span events: decodes the captures laid out
/// by the plan and applies the pack's span rule (name, kind, attributes, error status).
///
/// Everything that depends only on the plan (which enrichments apply, the scope, the capture
/// names) is worked out once, at init: assembling runs once per span on the ring-buffer
/// reader's thread, within a budget of a few microseconds. A class, so that reaching it for a
/// span retains one object, not each of its fields.
public final class SpanAssembler: Sendable {
    /// Indexed by span slot, which Planning numbers from 0; nil for slots of no span probe.
    private let recipes: [SpanRecipe?]
    private let slotBase: UInt32
    private let clock: WallClock

    /// - Parameters:
    ///   - plan: The plan whose probes produced the events.
    ///   - clock: Converts the events' monotonic timestamps to wall-clock time, e.g. `.now()`.
    ///   - slotBase: Added to the plan's span slots in the kernel, where several plans are
    ///     configured side by side; events carry the sum.
    public init(plan: AttachPlan, slotBase: UInt32 = 0, clock: WallClock) {
        // Enrichers share their target's slot; events are the span probes'.
        let spanProbes = plan.probes.filter { $0.probe.span != nil }
        var recipes = [SpanRecipe?](repeating: nil, count: Int(spanProbes.map(\.spanSlot).max().map { $0 + 1 } ?? 0))
        // The first of the probes sharing a slot (a pattern's functions) has its enrichers' captures.
        for probe in spanProbes where recipes[Int(probe.spanSlot)] == nil { recipes[Int(probe.spanSlot)] = SpanRecipe(probe) }
        self.recipes = recipes
        self.slotBase = slotBase
        self.clock = clock
    }

    /// Nil when the event names no span-making probe of this plan.
    /// - Parameter resource: The traced process the event came from (`event.processID`), which
    ///   the caller keeps per process: looking it up here cost a lock and a table per span.
    public func assemble(_ event: SpanEvent, resource: Resource) -> Span? {
        let slot = event.spanSlot &- slotBase
        guard slot < recipes.count, let recipe = recipes[Int(slot)] else { return nil }
        var values = CaptureDecoder.decode(event, layouts: recipe.captureLayouts, names: recipe.captureNames)
        let rules = event.capturedMask & SpanEvent.endedByObjectProbe != 0 ? recipe.endedByObjectProbe : recipe.returned
        var attributes: [Attribute] = []
        attributes.reserveCapacity(rules.attributes.count)
        // By index, each rule's fields read in place: a `for rule in` copy of a rule, or of an
        // expression holding a string, cost a value witness call per attribute, a tenth of a
        // span's assembly in perf (issue 7).
        for index in rules.attributes.indices {
            let value = if let expression = rules.attributes[index].expression {
                Self.evaluate(expression, &values)
            } else {
                rules.attributes[index].literal
            }
            if let value { attributes.append(Attribute(rules.attributes[index].key, value)) }
        }
        // The last enrichment whose name can be filled in wins over the probe's own name. Loops,
        // not lazy closures: a closure over `values` copied it or checked its exclusive access.
        var rename: String?
        for index in rules.renames.indices.reversed() where rename == nil {
            rename = Self.filledIn(rules.renames[index], &values, whenIncomplete: nil)
        }
        let name = rename ?? Self.filledIn(recipe.name, &values, whenIncomplete: "?")!
        var status = SpanStatus.unset
        for index in rules.errorWhen.indices where status == .unset {
            status = Self.failure(rules.errorWhen[index], values).map { .error(message: $0) } ?? .unset
        }
        let offset = clock.offset(atMonotonic: event.endMonotonicNanos)
        let span = Span(
            traceID: TraceID(high: event.traceIDHigh, low: event.traceIDLow),
            spanID: SpanID(event.spanID),
            parentSpanID: event.parentSpanID == 0 ? nil : SpanID(event.parentSpanID),
            name: name,
            kind: recipe.kind,
            startTimeUnixNano: offset.wallClock(monotonic: event.startMonotonicNanos),
            endTimeUnixNano: offset.wallClock(monotonic: event.endMonotonicNanos),
            attributes: attributes,
            status: status,
            resource: resource,
            scope: recipe.scope)
        // Returned as made: a span changed after it is made is copied, each string retained,
        // which only a span continuing another process's trace pays.
        guard event.parentIsRemote else { return span }
        var continued = span
        continued.parentIsRemote = true
        if case .string(let state)? = values[recipe.traceStateIndex] { continued.traceState = Self.wholeMembers(of: state) }
        return continued
    }

    /// A `tracestate` cut at its capture's bound (ending in "…") keeps its whole list members:
    /// W3C trace context allows dropping members from the end, never cutting one.
    static func wholeMembers(of traceState: String) -> String {
        guard traceState.hasSuffix("…") else { return traceState }
        guard let lastComma = traceState.lastIndex(of: ",") else { return "" }
        return String(traceState[..<lastComma])
    }

    /// The error message when the condition holds.
    static func failure(_ condition: CompiledCondition, _ values: CapturedValues) -> String? {
        switch (condition.test, values[condition.index]) {
        case (.atLeast(let threshold), .int(let value)?): return value >= threshold ? "\(condition.capture) \(value)" : nil
        case (.nonZero, .int(let value)?): return value != 0 ? "\(condition.capture) set" : nil
        case (.nonZero, .bool(let value)?): return value ? "\(condition.capture)" : nil
        case (.oneOf(let failures), .int(let value)?): return failures.contains(value) ? "\(condition.capture) \(value)" : nil
        default: return nil
        }
    }

    /// `template` with its captures filled in; a part whose value is missing becomes `whenIncomplete`,
    /// or makes the result nil when that is nil. An expression counts as missing when a capture it
    /// uses was not read.
    static func filledIn(_ template: CompiledName, _ values: inout CapturedValues, whenIncomplete: String?) -> String? {
        var text: String?
        for part in template.parts.indices {
            let piece: String
            switch template.parts[part] {
            case .literal(let literal):
                piece = literal
            case .capture(let index):
                guard let value = values[index]?.description ?? whenIncomplete else { return nil }
                piece = value
            case .expression(let expression, let reads):
                if whenIncomplete == nil, reads.contains(where: { values[$0] == nil }) { return nil }
                piece = evaluate(expression, &values)?.description ?? "?"
            }
            // The first piece is the name as it is: a name of one part ("{method}") copies no bytes.
            if text == nil { text = piece } else { text! += piece }
        }
        return text ?? ""
    }

    /// `values` keeps what it parsed for the next expression of the same span.
    static func evaluate(_ expression: CompiledExpression, _ values: inout CapturedValues) -> AttributeValue? {
        func text(_ index: Int?) -> String? {
            guard case .string(let value)? = values[index] else { return nil }
            return value
        }
        switch expression {
        case .capture(let index):
            return values[index]
        case .rpcService(let index):
            return values.methodPath(at: index)?.service.map(AttributeValue.string)
        case .rpcMethod(let index):
            return values.methodPath(at: index).map { .string($0.method) }
        case .hostname(let index):
            guard let host = values.hostPort(at: index)?.host, !host.isEmpty else { return nil }
            return .string(host)
        case .port(let index):
            guard let port = values.hostPort(at: index)?.port else { return nil }
            return .int(Int64(port))
        case .url(let scheme, let host, let path, let query):
            guard let scheme = text(scheme), let host = text(host), !scheme.isEmpty, !host.isEmpty else { return nil }
            let path = text(path) ?? "", query = text(query) ?? ""
            // Sized once: interpolation grew the string, reallocating, as each part was appended.
            var url = ""
            url.reserveCapacity(scheme.utf8.count + 3 + host.utf8.count + path.utf8.count + (query.isEmpty ? 0 : 1 + query.utf8.count))
            url += scheme
            url += "://"
            url += host
            url += path
            if !query.isEmpty {
                url += "?"
                url += query
            }
            return .string(url)
        case .urlScheme(let tls):
            guard case .bool(let secure)? = values[tls] else { return nil }
            return .string(secure ? "https" : "http")
        case .sqlOperation(let index):
            return text(index).flatMap(SQLStatement.operation(of:)).map(AttributeValue.string)
        case .grpcStatus(let code, let error):
            // grpc-go's status.Code(err): the status's code, UNKNOWN for an error without one, OK for none.
            if let status = values[code] { return status }
            switch values[error] {
            case .bool(true)?: return .int(2)
            case .bool(false)?: return .int(0)
            default: return nil
            }
        }
    }
}

/// A gRPC method path, `/package.Service/Method`.
struct GRPCMethodPath: Equatable {
    var service: String?
    var method: String

    /// Works on the UTF-8 bytes, as `HostPort` does: a Character search walks grapheme breaks,
    /// and every gRPC span parses its path twice (service and method).
    init?(_ path: String) {
        let utf8 = path.utf8
        let start = utf8.first == UInt8(ascii: "/") ? utf8.index(after: utf8.startIndex) : utf8.startIndex
        guard start != utf8.endIndex else { return nil }
        if let slash = utf8[start...].lastIndex(of: UInt8(ascii: "/")) {
            service = String(path[start..<slash])
            method = String(path[utf8.index(after: slash)...])
        } else {
            service = nil
            method = String(path[start...])
        }
    }
}

/// `host`, `host:port`, `[v6]:port` as HTTP's Host header writes them. The header is whatever the
/// client sent, so a port is kept only when it is 1…65535 written in ASCII digits (RFC 3986
/// `port = *DIGIT`, and 0 is no port to connect to); otherwise the host is kept without one.
struct HostPort: Equatable {
    var host: String
    var port: Int?

    init(host: String, port: Int?) {
        self.host = host
        self.port = port
    }

    /// Works on the UTF-8 bytes, read in place: the delimiters are ASCII. Searching by Character
    /// took a fifth of a span's CPU time, stepping the UTF-8 view 1,500 instructions a header; the
    /// host is then made from its bytes, not through String indexes and a Substring.
    init?(_ text: String) {
        guard !text.isEmpty else { return nil }
        var text = text
        self = text.withUTF8 { Self.split($0) } ?? HostPort(host: text, port: nil)
    }

    /// The host and port of a non-empty text that has a port or brackets; nil when it is all host.
    private static func split(_ bytes: UnsafeBufferPointer<UInt8>) -> HostPort? {
        func part(_ range: Range<Int>) -> String {
            String(decoding: UnsafeBufferPointer(rebasing: bytes[range]), as: UTF8.self)
        }
        func number(from start: Int) -> Int? {
            guard start < bytes.count else { return nil }
            var value = 0
            for byte in bytes[start...] {
                guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return nil }
                value = value * 10 + Int(byte - UInt8(ascii: "0"))
                guard value <= 65535 else { return nil }
            }
            return value > 0 ? value : nil
        }
        if bytes[0] == UInt8(ascii: "["), let close = bytes.firstIndex(of: UInt8(ascii: "]")) {
            let port = close + 1 < bytes.count && bytes[close + 1] == UInt8(ascii: ":") ? number(from: close + 2) : nil
            return HostPort(host: part(1..<close), port: port)
        }
        if let colon = bytes.lastIndex(of: UInt8(ascii: ":")), bytes.firstIndex(of: UInt8(ascii: ":")) == colon {
            return HostPort(host: part(0..<colon), port: number(from: colon + 1))
        }
        return nil
    }
}

/// What an SQL text says of itself without being parsed: the keyword it starts with.
enum SQLStatement {
    /// The first keyword after white space and comments (`-- …` lines, `/* … */` blocks),
    /// upper-cased; nil when the text starts with anything else (a cut comment, a parenthesis).
    static func operation(of text: String) -> String? {
        var rest = Substring(text)
        while true {
            rest = rest.drop { $0.isWhitespace }
            if rest.hasPrefix("--") {
                rest = rest.drop { $0 != "\n" }
            } else if rest.hasPrefix("/*") {
                guard let end = rest.range(of: "*/") else { return nil }
                rest = rest[end.upperBound...]
            } else {
                break
            }
        }
        let keyword = rest.prefix { $0.isASCII && $0.isLetter }
        guard !keyword.isEmpty, keyword.count <= 32 else { return nil }
        return keyword.uppercased()
    }
}
