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
    /// Each message is sized before it is written (see ``Protobuf``): each span once, each group
    /// from its spans' sizes.
    public func encode(_ spans: [Span]) -> [UInt8] {
        // Spans are read in place, by index into a view of the array: passing `spans[index]` on
        // (or mapping `spans`) copied each span, retaining and releasing each of its strings,
        // a sixth of encoding in `sonde-capacity` (issue 7).
        let view = spans.span
        var spanSizes: [Int] = []
        spanSizes.reserveCapacity(view.count)
        for index in view.indices { spanSizes.append(Protobuf.spanSize(of: view, at: index)) }
        let groups = ResourceGroup.grouping(spans).map { group in
            SizedGroup(group, attributes: exportedResource(group.resource).attributes.sorted { $0.key < $1.key }, spanSizes: spanSizes)
        }
        let size = groups.reduce(0) { $0 + Protobuf.messageFieldSize(Field.Request.resourceSpans, length: $1.size) }
        return [UInt8](capacity: size) { request in
            for group in groups {
                request.writeMessageHeader(Field.Request.resourceSpans, length: group.size)
                request.writeMessageHeader(Field.ResourceSpans.resource, length: group.resourceSize)
                for (key, value) in group.attributes {
                    request.writeKeyValue(Field.Resource.attributes, key, value)
                }
                for scope in group.scopes {
                    request.writeMessageHeader(Field.ResourceSpans.scopeSpans, length: scope.size)
                    request.writeMessageHeader(Field.ScopeSpans.scope, length: scope.scopeSize)
                    request.writeStringField(Field.Scope.name, scope.scope.name)
                    request.writeStringField(Field.Scope.version, scope.scope.version)
                    for index in scope.spanIndexes {
                        request.writeMessageHeader(Field.ScopeSpans.spans, length: spanSizes[index])
                        request.writeSpan(of: view, at: index)
                    }
                }
            }
        }
    }
}

/// A `ResourceSpans` message's parts with their sizes, worked out before any is written.
private struct SizedGroup {
    struct Scope {
        var scope: InstrumentationScope
        var spanIndexes: [Int]
        /// The `InstrumentationScope` message's length.
        var scopeSize: Int
        /// The `ScopeSpans` message's length.
        var size: Int
    }

    var attributes: [(key: String, value: AttributeValue)]
    /// The `Resource` message's length.
    var resourceSize: Int
    var scopes: [Scope]
    /// The `ResourceSpans` message's length.
    var size: Int

    init(_ group: ResourceGroup, attributes: [(key: String, value: AttributeValue)], spanSizes: [Int]) {
        self.attributes = attributes
        resourceSize = attributes.reduce(0) { $0 + Protobuf.keyValueFieldSize(Field.Resource.attributes, $1.key, $1.value) }
        scopes = group.scopes.map { scope, spanIndexes in
            let scopeSize = Protobuf.stringFieldSize(Field.Scope.name, scope.name)
                + Protobuf.stringFieldSize(Field.Scope.version, scope.version)
            let spansSize = spanIndexes.reduce(0) { $0 + Protobuf.messageFieldSize(Field.ScopeSpans.spans, length: spanSizes[$1]) }
            return Scope(
                scope: scope, spanIndexes: spanIndexes, scopeSize: scopeSize,
                size: Protobuf.messageFieldSize(Field.ScopeSpans.scope, length: scopeSize) + spansSize)
        }
        size = Protobuf.messageFieldSize(Field.ResourceSpans.resource, length: resourceSize)
            + scopes.reduce(0) { $0 + Protobuf.messageFieldSize(Field.ResourceSpans.scopeSpans, length: $1.size) }
    }
}

/// The spans of one resource, by scope; `grouping` keeps the order of first appearance.
private struct ResourceGroup {
    var resource: Resource
    var scopes: [(scope: InstrumentationScope, spanIndexes: [Int])]

    /// Groups by equality, not hashing: the spans of one process share one resource value (and a
    /// probe's spans one scope), which compare by identity before any content, and resources of
    /// different processes by their fingerprints, so a span costs two comparisons. The spans are
    /// read in place: passing one on copied it, retaining each of its strings.
    static func grouping(_ spans: [Span]) -> [ResourceGroup] {
        var groups: [ResourceGroup] = []
        var current = (group: -1, scope: -1)
        for index in spans.indices {
            if current.group < 0 || groups[current.group].resource != spans[index].resource
                || groups[current.group].scopes[current.scope].scope != spans[index].scope
            {
                current = position(of: spans[index].resource, spans[index].scope, in: &groups)
            }
            groups[current.group].scopes[current.scope].spanIndexes.append(index)
        }
        return groups
    }

    /// Where a span of `resource` and `scope` belongs, adding its resource or scope group when it
    /// is the first of it.
    private static func position(
        of resource: Resource, _ scope: InstrumentationScope, in groups: inout [ResourceGroup]
    ) -> (group: Int, scope: Int) {
        let group = groups.lastIndex { $0.resource == resource } ?? groups.count
        if group == groups.count { groups.append(ResourceGroup(resource: resource, scopes: [])) }
        let scopeIndex = groups[group].scopes.lastIndex { $0.scope == scope } ?? groups[group].scopes.count
        if scopeIndex == groups[group].scopes.count { groups[group].scopes.append((scope, [])) }
        return (group, scopeIndex)
    }
}

extension OutputSpan where Element == UInt8 {
    /// A `Span`'s fields (opentelemetry-proto `trace/v1/trace.proto`); every span gets a status.
    /// `Protobuf.spanSize` says how many bytes this writes. The span is read in place, field by
    /// field: see `OTLPTraceEncoder.encode`.
    fileprivate mutating func writeSpan(of spans: Swift.Span<Span>, at spanIndex: Int) {
        writeIDField(Field.Span.traceID, spans[spanIndex].traceID.high, spans[spanIndex].traceID.low)
        writeIDField(Field.Span.spanID, spans[spanIndex].spanID.value)
        writeStringField(Field.Span.traceState, spans[spanIndex].traceState)
        if let parent = spans[spanIndex].parentSpanID { writeIDField(Field.Span.parentSpanID, parent.value) }
        writeStringField(Field.Span.name, spans[spanIndex].name)
        writeVarintField(Field.Span.kind, spans[spanIndex].kind.protobufValue)
        writeFixed64Field(Field.Span.startTimeUnixNano, spans[spanIndex].startTimeUnixNano)
        writeFixed64Field(Field.Span.endTimeUnixNano, spans[spanIndex].endTimeUnixNano)
        // Read through a view of the array, each attribute in place: `for attribute in` copied
        // each one, retaining its key and value (issue 7).
        let attributes = spans[spanIndex].attributes.span
        for index in attributes.indices {
            writeKeyValue(Field.Span.attributes, attributes[index].key, attributes[index].value)
        }
        writeMessageHeader(Field.Span.status, length: Protobuf.statusSize(spans[spanIndex].status))
        switch spans[spanIndex].status {
        case .unset:
            break
        case .ok:
            writeVarintField(Field.Status.code, Field.Status.ok)
        case .error(let message):
            writeStringField(Field.Status.message, message)
            writeVarintField(Field.Status.code, Field.Status.error)
        }
        writeFixed32Field(Field.Span.flags, spans[spanIndex].protobufFlags)
    }

    /// A `KeyValue` (`common/v1/common.proto`); the `AnyValue` member is written even when it is
    /// the default, as a oneof member is. Inlined into the loop over a span's attributes, which
    /// took a tenth off encoding in `sonde-capacity` (issue 7).
    @inline(__always)
    fileprivate mutating func writeKeyValue(_ field: Int, _ key: String, _ value: AttributeValue) {
        let anyValue = Protobuf.anyValueSize(value)
        writeMessageHeader(field, length: Protobuf.keyValueSize(key, anyValueSize: anyValue))
        writeStringField(Field.KeyValue.key, key)
        writeMessageHeader(Field.KeyValue.value, length: anyValue)
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
            writeLittleEndian(double.bitPattern)
        }
    }
}

extension Protobuf {
    /// The length of the `Span` message `writeSpan` writes: the same fields, counted, read in place.
    fileprivate static func spanSize(of spans: Swift.Span<Span>, at spanIndex: Int) -> Int {
        var size = idFieldSize(Field.Span.traceID, spans[spanIndex].traceID.high, spans[spanIndex].traceID.low)
            + idFieldSize(Field.Span.spanID, spans[spanIndex].spanID.value)
            + stringFieldSize(Field.Span.traceState, spans[spanIndex].traceState)
            + stringFieldSize(Field.Span.name, spans[spanIndex].name)
            + varintFieldSize(Field.Span.kind, spans[spanIndex].kind.protobufValue)
            + fixed64FieldSize(Field.Span.startTimeUnixNano, spans[spanIndex].startTimeUnixNano)
            + fixed64FieldSize(Field.Span.endTimeUnixNano, spans[spanIndex].endTimeUnixNano)
            + messageFieldSize(Field.Span.status, length: statusSize(spans[spanIndex].status))
            + fixed32FieldSize(Field.Span.flags, spans[spanIndex].protobufFlags)
        if let parent = spans[spanIndex].parentSpanID { size += idFieldSize(Field.Span.parentSpanID, parent.value) }
        let attributes = spans[spanIndex].attributes.span
        for index in attributes.indices {
            size += keyValueFieldSize(Field.Span.attributes, attributes[index].key, attributes[index].value)
        }
        return size
    }

    fileprivate static func statusSize(_ status: SpanStatus) -> Int {
        switch status {
        case .unset: 0
        case .ok: varintFieldSize(Field.Status.code, Field.Status.ok)
        case .error(let message):
            stringFieldSize(Field.Status.message, message) + varintFieldSize(Field.Status.code, Field.Status.error)
        }
    }

    /// What `writeKeyValue(field, key, value)` writes.
    fileprivate static func keyValueFieldSize(_ field: Int, _ key: String, _ value: AttributeValue) -> Int {
        messageFieldSize(field, length: keyValueSize(key, anyValueSize: anyValueSize(value)))
    }

    fileprivate static func keyValueSize(_ key: String, anyValueSize: Int) -> Int {
        stringFieldSize(Field.KeyValue.key, key) + messageFieldSize(Field.KeyValue.value, length: anyValueSize)
    }

    fileprivate static func anyValueSize(_ value: AttributeValue) -> Int {
        switch value {
        case .string(let string): messageFieldSize(Field.AnyValue.string, length: string.utf8.count)
        case .bool: tagSize(Field.AnyValue.bool) + 1
        case .int(let int): tagSize(Field.AnyValue.int) + varintSize(UInt64(bitPattern: int))
        case .double: tagSize(Field.AnyValue.double) + 8
        }
    }
}

extension Span {
    /// `Span.flags`: the W3C trace flags (every exported span was sampled) and whether the parent
    /// is remote.
    fileprivate var protobufFlags: UInt32 {
        let remote = parentSpanID == nil ? 0 : Field.SpanFlags.hasIsRemote | (parentIsRemote ? Field.SpanFlags.isRemote : 0)
        return Field.SpanFlags.sampled | remote
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
    enum Status {
        static let message = 2, code = 3
        /// `Status.StatusCode`: STATUS_CODE_OK, STATUS_CODE_ERROR.
        static let ok: UInt64 = 1, error: UInt64 = 2
    }
    enum KeyValue { static let key = 1, value = 2 }
    enum AnyValue { static let string = 1, bool = 2, int = 3, double = 4 }
}
