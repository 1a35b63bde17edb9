import Spans

/// Encodes a batch of spans as the body of an OTLP/HTTP protobuf export: one
/// `ExportTraceServiceRequest` (opentelemetry-proto `collector/trace/v1/trace_service.proto`).
///
/// Spans are grouped into one `ResourceSpans` per distinct resource and, inside it, one
/// `ScopeSpans` per scope, both in order of first appearance, so each resource and scope is
/// written once per batch. The bytes are written directly rather than through swift-protobuf's
/// generated messages: building and sizing those took most of Sonde's CPU per span (issue 7).
/// The tests decode the output with the generated types.
public struct OTLPTraceEncoder: Sendable {
    private let exportedResource: @Sendable (Resource) -> Resource

    /// - Parameter exportedResource: What is exported for a span's resource, e.g. with
    ///   `OTEL_RESOURCE_ATTRIBUTES` added (``OTLPExporterConfiguration/exportedResource(for:)``).
    public init(exportedResource: @escaping @Sendable (Resource) -> Resource = { $0 }) {
        self.exportedResource = exportedResource
    }

    /// The serialized request; fields of the default value are left out, as swift-protobuf does.
    public func encode(_ spans: [Span]) -> [UInt8] {
        // Most spans take 150–350 bytes; a larger batch grows the buffer once or twice.
        var writer = ProtobufWriter(capacity: 256 * spans.count + 256)
        for group in ResourceGroup.grouping(spans) {
            let resourceSpans = writer.beginMessageField(Field.Request.resourceSpans)
            let resource = writer.beginMessageField(Field.ResourceSpans.resource)
            for (key, value) in exportedResource(group.resource).attributes.sorted(by: { $0.key < $1.key }) {
                writer.writeKeyValue(Field.Resource.attributes, key, value)
            }
            writer.endMessageField(resource)
            for scopeGroup in group.scopes {
                let scopeSpans = writer.beginMessageField(Field.ResourceSpans.scopeSpans)
                let scope = writer.beginMessageField(Field.ScopeSpans.scope)
                writer.writeStringField(Field.Scope.name, scopeGroup.scope.name)
                writer.writeStringField(Field.Scope.version, scopeGroup.scope.version)
                writer.endMessageField(scope)
                for index in scopeGroup.spanIndexes {
                    let span = writer.beginMessageField(Field.ScopeSpans.spans)
                    writer.writeSpan(spans[index])
                    writer.endMessageField(span)
                }
                writer.endMessageField(scopeSpans)
            }
            writer.endMessageField(resourceSpans)
        }
        return writer.bytes
    }
}

/// The spans of one resource, by scope; `grouping` keeps the order of first appearance.
private struct ResourceGroup {
    var resource: Resource
    var scopes: [(scope: InstrumentationScope, spanIndexes: [Int])]

    /// Groups by equality, not hashing: the spans of one process share one resource value (and a
    /// probe's spans one scope), which compare by identity before any content, so a span of the
    /// same resource and scope as the one before costs two comparisons.
    static func grouping(_ spans: [Span]) -> [ResourceGroup] {
        var groups: [ResourceGroup] = []
        var current = (group: -1, scope: -1)
        for index in spans.indices {
            if current.group < 0 || groups[current.group].resource != spans[index].resource
                || groups[current.group].scopes[current.scope].scope != spans[index].scope
            {
                current = position(of: spans[index], in: &groups)
            }
            groups[current.group].scopes[current.scope].spanIndexes.append(index)
        }
        return groups
    }

    /// Where `span` belongs, adding its resource or scope group when it is the first of it.
    private static func position(of span: Span, in groups: inout [ResourceGroup]) -> (group: Int, scope: Int) {
        let group = groups.lastIndex { $0.resource == span.resource } ?? groups.count
        if group == groups.count { groups.append(ResourceGroup(resource: span.resource, scopes: [])) }
        let scope = groups[group].scopes.lastIndex { $0.scope == span.scope } ?? groups[group].scopes.count
        if scope == groups[group].scopes.count { groups[group].scopes.append((span.scope, [])) }
        return (group, scope)
    }
}

extension ProtobufWriter {
    /// A `Span`'s fields (opentelemetry-proto `trace/v1/trace.proto`); every span gets a status.
    fileprivate mutating func writeSpan(_ span: Span) {
        writeIDField(Field.Span.traceID, span.traceID.high, span.traceID.low)
        writeIDField(Field.Span.spanID, span.spanID.value)
        if !span.traceState.isEmpty { writeStringField(Field.Span.traceState, span.traceState) }
        if let parent = span.parentSpanID { writeIDField(Field.Span.parentSpanID, parent.value) }
        writeStringField(Field.Span.name, span.name)
        writeVarintField(Field.Span.kind, span.kind.protobufValue)
        writeFixed64Field(Field.Span.startTimeUnixNano, span.startTimeUnixNano)
        writeFixed64Field(Field.Span.endTimeUnixNano, span.endTimeUnixNano)
        for attribute in span.attributes {
            writeKeyValue(Field.Span.attributes, attribute.key, attribute.value)
        }
        let status = beginMessageField(Field.Span.status)
        switch span.status {
        case .unset:
            break
        case .ok:
            writeVarintField(Field.Status.code, 1)  // STATUS_CODE_OK
        case .error(let message):
            writeStringField(Field.Status.message, message)
            writeVarintField(Field.Status.code, 2)  // STATUS_CODE_ERROR
        }
        endMessageField(status)
        // W3C trace flags (every exported span was sampled) and whether the parent is remote.
        let remote = span.parentSpanID == nil ? 0 : Field.SpanFlags.hasIsRemote | (span.parentIsRemote ? Field.SpanFlags.isRemote : 0)
        writeFixed32Field(Field.Span.flags, Field.SpanFlags.sampled | remote)
    }

    /// A `KeyValue` (`common/v1/common.proto`); the `AnyValue` member is written even when it is
    /// the default, as a oneof member is.
    fileprivate mutating func writeKeyValue(_ field: Int, _ key: String, _ value: AttributeValue) {
        let keyValue = beginMessageField(field)
        writeStringField(Field.KeyValue.key, key)
        let anyValue = beginMessageField(Field.KeyValue.value)
        switch value {
        case .string(let string):
            writeTag(Field.AnyValue.string, .lengthDelimited)
            writeString(string)
        case .bool(let bool):
            writeTag(Field.AnyValue.bool, .varint)
            writeVarint(bool ? 1 : 0)
        case .int(let int):
            writeTag(Field.AnyValue.int, .varint)
            writeVarint(UInt64(bitPattern: int))
        case .double(let double):
            writeTag(Field.AnyValue.double, .fixed64)
            writeFixed64(double.bitPattern)
        }
        endMessageField(anyValue)
        endMessageField(keyValue)
    }
}

extension SpanKind {
    /// `Span.SpanKind` in `trace/v1/trace.proto`.
    fileprivate var protobufValue: UInt64 {
        switch self {
        case .internal: 1
        case .server: 2
        case .client: 3
        case .producer: 4
        case .consumer: 5
        }
    }
}

/// Field numbers of the OTLP messages written here, from opentelemetry-proto v1.
private enum Field {
    enum Request { static let resourceSpans = 1 }
    enum ResourceSpans { static let resource = 1, scopeSpans = 2 }
    enum Resource { static let attributes = 1 }
    enum ScopeSpans { static let scope = 1, spans = 2 }
    enum Scope { static let name = 1, version = 2 }
    enum Span {
        static let traceID = 1, spanID = 2, parentSpanID = 4, name = 5, kind = 6
        static let startTimeUnixNano = 7, endTimeUnixNano = 8, attributes = 9, status = 15
        static let traceState = 3, flags = 16
    }
    /// `SpanFlags` of trace.proto: the W3C trace flags in the low byte, then the remote-parent bits.
    enum SpanFlags {
        static let sampled: UInt32 = 0x01, hasIsRemote: UInt32 = 0x100, isRemote: UInt32 = 0x200
    }
    enum Status { static let message = 2, code = 3 }
    enum KeyValue { static let key = 1, value = 2 }
    enum AnyValue { static let string = 1, bool = 2, int = 3, double = 4 }
}
