import Foundation
import Planning
import ProbePacks
import Spans

/// Builds OpenTelemetry spans from the BPF side's span events: decodes the captures laid out
/// by the plan and applies the pack's span rule (name, kind, attributes, error status).
public struct SpanAssembler: Sendable {
    private let probesBySlot: [UInt32: PlannedProbe]
    private let clock: ClockOffset
    private let resource: @Sendable (Int32) -> Resource

    /// `resource` describes the traced process a span came from.
    public init(plan: AttachPlan, clock: ClockOffset, resource: @escaping @Sendable (Int32) -> Resource) {
        probesBySlot = Dictionary(uniqueKeysWithValues: plan.probes.map { ($0.spanSlot, $0) })
        self.clock = clock
        self.resource = resource
    }

    /// Nil when the event names a probe this plan does not have.
    public func assemble(_ event: SpanEvent) -> Span? {
        guard let probe = probesBySlot[event.spanSlot] else { return nil }
        let values = CaptureDecoder.decode(event, slots: probe.captureSlots)
        let rule = probe.probe.span
        var attributes: [Attribute] = []
        for attribute in probe.probe.attributes {
            if let value = Self.evaluate(attribute.value, values) {
                attributes.append(Attribute(attribute.key, value))
            }
        }
        var status = SpanStatus.unset
        if let condition = rule.errorWhen, case .int(let value)? = values[condition.capture], value >= condition.atLeast {
            status = .error(message: "\(condition.capture) \(value)")
        }
        return Span(
            traceID: TraceID(high: event.traceIDHigh, low: event.traceIDLow),
            spanID: SpanID(event.spanID),
            parentSpanID: event.parentSpanID == 0 ? nil : SpanID(event.parentSpanID),
            name: Self.name(rule.name, values),
            kind: SpanKind(rule.kind),
            startTimeUnixNano: clock.wallClock(monotonic: event.startMonotonicNanos),
            endTimeUnixNano: clock.wallClock(monotonic: event.endMonotonicNanos),
            attributes: attributes,
            status: status,
            resource: resource(event.processID),
            scope: InstrumentationScope(name: "sonde/\(probe.pack)", version: ProbePack.currentFormat))
    }

    static func name(_ template: NameTemplate, _ values: [String: AttributeValue]) -> String {
        template.parts.map { part in
            switch part {
            case .literal(let text): return text
            case .capture(let name): return values[name]?.description ?? "?"
            }
        }.joined()
    }

    static func evaluate(_ expression: ValueExpression, _ values: [String: AttributeValue]) -> AttributeValue? {
        guard let value = values[expression.captureName] else { return nil }
        switch expression {
        case .capture: return value
        case .hostname(let name):
            guard case .string(let text) = values[name], let host = HostPort(text)?.host, !host.isEmpty else { return nil }
            return .string(host)
        case .port(let name):
            guard case .string(let text) = values[name], let port = HostPort(text)?.port else { return nil }
            return .int(Int64(port))
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

/// `host`, `host:port`, `[v6]:port` as HTTP's Host header writes them.
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
            port = rest.hasPrefix(":") ? Int(rest.dropFirst()) : nil
        } else if let colon = text.lastIndex(of: ":"), text.firstIndex(of: ":") == colon {
            host = String(text[..<colon])
            port = Int(text[text.index(after: colon)...])
        } else {
            host = text
            port = nil
        }
    }
}
