/// A finished span in the OpenTelemetry data model, independent of how it was captured
/// or where it will be exported.
public struct Span: Sendable, Equatable {
    public var traceID: TraceID
    public var spanID: SpanID
    /// Nil for a root span.
    public var parentSpanID: SpanID?
    /// The parent is another process's span, continued from the traceparent its request carried.
    public var parentIsRemote = false
    /// W3C `tracestate` received with a remote parent, passed on unchanged; empty when none.
    public var traceState = ""
    public var name: String
    public var kind: SpanKind
    public var startTimeUnixNano: UInt64
    public var endTimeUnixNano: UInt64
    public var attributes: [Attribute]
    public var status: SpanStatus
    /// The traced process; spans of one process share one resource.
    public var resource: Resource
    /// The probe pack that produced the span (OTel instrumentation scope).
    public var scope: InstrumentationScope

    public init(
        traceID: TraceID, spanID: SpanID, parentSpanID: SpanID? = nil, name: String, kind: SpanKind,
        startTimeUnixNano: UInt64, endTimeUnixNano: UInt64, attributes: [Attribute] = [],
        status: SpanStatus = .unset, resource: Resource = Resource(), scope: InstrumentationScope
    ) {
        self.traceID = traceID
        self.spanID = spanID
        self.parentSpanID = parentSpanID
        self.name = name
        self.kind = kind
        self.startTimeUnixNano = startTimeUnixNano
        self.endTimeUnixNano = endTimeUnixNano
        self.attributes = attributes
        self.status = status
        self.resource = resource
        self.scope = scope
    }

    public func attribute(_ key: String) -> AttributeValue? {
        attributes.first { $0.key == key }?.value
    }
}

public enum SpanKind: String, Sendable, Equatable, CaseIterable {
    case `internal`, server, client, producer, consumer
}

public enum SpanStatus: Sendable, Equatable {
    case unset
    case ok
    case error(message: String)
}

public struct Attribute: Sendable, Equatable {
    public var key: String
    public var value: AttributeValue
    public init(_ key: String, _ value: AttributeValue) {
        self.key = key
        self.value = value
    }
}

/// A typed attribute value, as OTLP's `AnyValue` carries it; resources and spans share it so an
/// integer such as `process.pid` stays an integer on the wire.
public enum AttributeValue: Sendable, Hashable, CustomStringConvertible {
    case string(String)
    case int(Int64)
    case double(Double)
    case bool(Bool)

    public var description: String {
        switch self {
        case .string(let value): return value
        case .int(let value): return String(value)
        case .double(let value): return String(value)
        case .bool(let value): return String(value)
        }
    }
}

/// Identifies what produced the telemetry: for Sonde, one traced process.
///
/// Values are typed as the OpenTelemetry resource conventions say, e.g. `process.pid` is an int.
public struct Resource: Sendable, Hashable {
    public var attributes: [String: AttributeValue] {
        didSet { fingerprint = attributes.hashValue }
    }
    /// The attributes' hash, kept: an export groups its spans by resource, and telling two
    /// processes' resources apart by their dictionaries compared each attribute, for every span
    /// that followed another process's.
    private var fingerprint: Int

    public init(attributes: [String: AttributeValue] = [:]) {
        self.attributes = attributes
        fingerprint = attributes.hashValue
    }

    public static func == (lhs: Resource, rhs: Resource) -> Bool {
        lhs.fingerprint == rhs.fingerprint && lhs.attributes == rhs.attributes
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(fingerprint)
    }
}

public struct InstrumentationScope: Sendable, Hashable {
    public var name: String
    public var version: String
    public init(name: String, version: String) {
        self.name = name
        self.version = version
    }
}

/// 16 random bytes, written big-endian (W3C trace context, OTLP); all-zero is invalid in OpenTelemetry.
public struct TraceID: Sendable, Hashable, CustomStringConvertible {
    public var high: UInt64
    public var low: UInt64
    public init(high: UInt64, low: UInt64) {
        self.high = high
        self.low = low
    }
    public var isValid: Bool { high != 0 || low != 0 }
    public var description: String { hex(high) + hex(low) }
}

/// 8 random bytes; all-zero is invalid in OpenTelemetry.
public struct SpanID: Sendable, Hashable, CustomStringConvertible {
    public var value: UInt64
    public init(_ value: UInt64) {
        self.value = value
    }
    public var isValid: Bool { value != 0 }
    public var description: String { hex(value) }
}

/// 16 lowercase hex digits: the console prints two ids per span.
private func hex(_ value: UInt64) -> String {
    let digits = String(value, radix: 16)
    return String(repeating: "0", count: 16 - digits.count) + digits
}
