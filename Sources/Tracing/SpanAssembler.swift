import Foundation
import Planning
import ProbePacks
import Spans

/// Builds OpenTelemetry spans from the BPF side's span events: decodes the captures laid out
/// by the plan and applies the pack's span rule (name, kind, attributes, error status).
public struct SpanAssembler: Sendable {
    private let probesBySlot: [UInt32: PlannedProbe]
    private let clock: WallClock
    private let resource: @Sendable (Int32) -> Resource

    /// - Parameters:
    ///   - plan: The plan whose probes produced the events.
    ///   - clock: Converts the events' monotonic timestamps to wall-clock time, e.g. `.now()`.
    ///   - resource: Describes the traced process a span came from.
    public init(plan: AttachPlan, clock: WallClock, resource: @escaping @Sendable (Int32) -> Resource) {
        // Enrichers share their target's slot; events are the span probes'.
        probesBySlot = Dictionary(uniqueKeysWithValues: plan.probes.filter { $0.probe.span != nil }.map { ($0.spanSlot, $0) })
        self.clock = clock
        self.resource = resource
    }

    /// Nil when the event names no span-making probe of this plan.
    public func assemble(_ event: SpanEvent) -> Span? {
        guard let probe = probesBySlot[event.spanSlot], let rule = probe.probe.span else { return nil }
        let values = CaptureDecoder.decode(event, slots: probe.captureSlots)
        let endedByObjectProbe = event.capturedMask & SpanEvent.endedByObjectProbe != 0
        let enrichments = probe.enrichments.filter { !$0.endsSpan || endedByObjectProbe }
        let rules = probe.probe.attributes + enrichments.flatMap(\.attributes)
        let attributes = rules.compactMap { rule in Self.evaluate(rule.value, values).map { Attribute(rule.key, $0) } }
        // The last enrichment whose name can be filled in wins over the probe's own name.
        let name = enrichments.compactMap { $0.rename.flatMap { Self.completeName($0, values) } }.last ?? Self.name(rule.name, values)
        let errorWhen = rule.errorWhen + enrichments.flatMap(\.errorWhen)
        let status = errorWhen.lazy.compactMap { Self.failure($0, values) }.first.map { SpanStatus.error(message: $0) } ?? .unset
        let offset = clock.offset(atMonotonic: event.endMonotonicNanos)
        return Span(
            traceID: TraceID(high: event.traceIDHigh, low: event.traceIDLow),
            spanID: SpanID(event.spanID),
            parentSpanID: event.parentSpanID == 0 ? nil : SpanID(event.parentSpanID),
            name: name,
            kind: SpanKind(rule.kind),
            startTimeUnixNano: offset.wallClock(monotonic: event.startMonotonicNanos),
            endTimeUnixNano: offset.wallClock(monotonic: event.endMonotonicNanos),
            attributes: attributes,
            status: status,
            resource: resource(event.processID),
            scope: InstrumentationScope(name: "sonde/\(probe.pack)", version: ProbePack.currentFormat))
    }

    /// The error message when the condition holds.
    static func failure(_ condition: ErrorCondition, _ values: [String: AttributeValue]) -> String? {
        switch (condition.test, values[condition.capture]) {
        case (.atLeast(let threshold), .int(let value)?): return value >= threshold ? "\(condition.capture) \(value)" : nil
        case (.nonZero, .int(let value)?): return value != 0 ? "\(condition.capture) set" : nil
        case (.nonZero, .bool(let value)?): return value ? "\(condition.capture)" : nil
        default: return nil
        }
    }

    static func name(_ template: NameTemplate, _ values: [String: AttributeValue]) -> String {
        template.parts.map { part in
            switch part {
            case .literal(let text): return text
            case .capture(let name): return values[name]?.description ?? "?"
            case .expression(let expression): return evaluate(expression, values)?.description ?? "?"
            }
        }.joined()
    }

    /// The name, or nil when a capture it uses was not read.
    static func completeName(_ template: NameTemplate, _ values: [String: AttributeValue]) -> String? {
        for name in template.captureNames where values[name] == nil { return nil }
        return self.name(template, values)
    }

    static func evaluate(_ expression: ValueExpression, _ values: [String: AttributeValue]) -> AttributeValue? {
        func text(_ name: String) -> String? {
            guard case .string(let value)? = values[name] else { return nil }
            return value
        }
        switch expression {
        case .literal(let text):
            return .string(text)
        case .capture(let name):
            return values[name]
        case .rpcService(let name):
            return text(name).flatMap(GRPCMethodPath.init)?.service.map(AttributeValue.string)
        case .rpcMethod(let name):
            return text(name).flatMap(GRPCMethodPath.init).map { .string($0.method) }
        case .hostname(let name):
            guard let host = text(name).flatMap(HostPort.init)?.host, !host.isEmpty else { return nil }
            return .string(host)
        case .port(let name):
            guard let port = text(name).flatMap(HostPort.init)?.port else { return nil }
            return .int(Int64(port))
        case .url(let scheme, let host, let path, let query):
            guard let scheme = text(scheme), let host = text(host), !scheme.isEmpty, !host.isEmpty else { return nil }
            let query = text(query) ?? ""
            return .string("\(scheme)://\(host)\(text(path) ?? "")\(query.isEmpty ? "" : "?" + query)")
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

extension SpanKind {
    init(_ kind: SpanRule.Kind) {
        switch kind {
        case .server: self = .server
        case .client: self = .client
        case .internal: self = .internal
        case .producer: self = .producer
        case .consumer: self = .consumer
        }
    }
}

/// A gRPC method path, `/package.Service/Method`.
struct GRPCMethodPath: Equatable {
    var service: String?
    var method: String

    init?(_ path: String) {
        let trimmed = path.hasPrefix("/") ? path.dropFirst() : Substring(path)
        guard !trimmed.isEmpty else { return nil }
        if let slash = trimmed.lastIndex(of: "/") {
            service = String(trimmed[..<slash])
            method = String(trimmed[trimmed.index(after: slash)...])
        } else {
            service = nil
            method = String(trimmed)
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

    init?(_ text: String) {
        guard !text.isEmpty else { return nil }
        if text.hasPrefix("["), let close = text.firstIndex(of: "]") {
            host = String(text[text.index(after: text.startIndex)..<close])
            let rest = text[text.index(after: close)...]
            port = rest.hasPrefix(":") ? Self.port(rest.dropFirst()) : nil
        } else if let colon = text.lastIndex(of: ":"), text.firstIndex(of: ":") == colon {
            host = String(text[..<colon])
            port = Self.port(text[text.index(after: colon)...])
        } else {
            host = text
            port = nil
        }
    }

    /// The port in `digits`, or nil unless it is 1…65535 in ASCII digits. `Int(_:)` would also
    /// take a sign ("-5", "+80") and numbers of any size.
    private static func port(_ digits: Substring) -> Int? {
        guard !digits.isEmpty else { return nil }
        var value = 0
        for byte in digits.utf8 {
            guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return nil }
            value = value * 10 + Int(byte - UInt8(ascii: "0"))
            guard value <= 65535 else { return nil }
        }
        return value > 0 ? value : nil
    }
}
