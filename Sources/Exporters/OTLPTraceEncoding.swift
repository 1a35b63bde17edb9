import Foundation
import Spans

// Short names for the generated OTLP types this module and its tests work with.
typealias OTLPExportRequest = Opentelemetry_Proto_Collector_Trace_V1_ExportTraceServiceRequest
typealias OTLPExportResponse = Opentelemetry_Proto_Collector_Trace_V1_ExportTraceServiceResponse
typealias OTLPResourceSpans = Opentelemetry_Proto_Trace_V1_ResourceSpans
typealias OTLPScopeSpans = Opentelemetry_Proto_Trace_V1_ScopeSpans
typealias OTLPSpan = Opentelemetry_Proto_Trace_V1_Span
typealias OTLPStatus = Opentelemetry_Proto_Trace_V1_Status
typealias OTLPKeyValue = Opentelemetry_Proto_Common_V1_KeyValue
typealias OTLPAnyValue = Opentelemetry_Proto_Common_V1_AnyValue

extension OTLPExportRequest {
    /// One ResourceSpans per distinct resource and, inside it, one ScopeSpans per scope, both in
    /// order of first appearance; each resource is exported as `exportedResource` maps it, once
    /// per distinct resource rather than once per span.
    init(spans: [Span], exportedResource: (Resource) -> Resource) {
        self.init()
        resourceSpans = groupedInOrder(spans, by: \.resource).map { resource, spansOfResource in
            var resourceSpans = OTLPResourceSpans()
            resourceSpans.resource.attributes = exportedResource(resource).attributes.sorted { $0.key < $1.key }
                .map { OTLPKeyValue(key: $0.key, value: $0.value) }
            resourceSpans.scopeSpans = groupedInOrder(spansOfResource, by: \.scope).map { scope, spansOfScope in
                var scopeSpans = OTLPScopeSpans()
                scopeSpans.scope.name = scope.name
                scopeSpans.scope.version = scope.version
                scopeSpans.spans = spansOfScope.map(OTLPSpan.init)
                return scopeSpans
            }
            return resourceSpans
        }
    }
}

/// Groups spans by key, keeping the order in which keys and spans first appear.
private func groupedInOrder<Key: Hashable>(_ spans: [Span], by key: (Span) -> Key) -> [(Key, [Span])] {
    var groups: [(Key, [Span])] = []
    var groupIndex: [Key: Int] = [:]
    for span in spans {
        let spanKey = key(span)
        if let index = groupIndex[spanKey] {
            groups[index].1.append(span)
        } else {
            groupIndex[spanKey] = groups.count
            groups.append((spanKey, [span]))
        }
    }
    return groups
}

extension OTLPSpan {
    init(_ span: Span) {
        self.init()
        traceID = Data(span.traceID.bytes)
        spanID = Data(span.spanID.bytes)
        parentSpanID = span.parentSpanID.map { Data($0.bytes) } ?? Data()
        name = span.name
        kind = SpanKind(span.kind)
        startTimeUnixNano = span.startTimeUnixNano
        endTimeUnixNano = span.endTimeUnixNano
        attributes = span.attributes.map { OTLPKeyValue(key: $0.key, value: $0.value) }
        status = OTLPStatus(span.status)
    }
}

extension OTLPSpan.SpanKind {
    init(_ kind: Spans.SpanKind) {
        switch kind {
        case .internal: self = .internal
        case .server: self = .server
        case .client: self = .client
        case .producer: self = .producer
        case .consumer: self = .consumer
        }
    }
}

extension OTLPStatus {
    init(_ status: SpanStatus) {
        self.init()
        switch status {
        case .unset:
            code = .unset
        case .ok:
            code = .ok
        case .error(let message):
            code = .error
            self.message = message
        }
    }
}

extension OTLPKeyValue {
    init(key: String, value: AttributeValue) {
        self.init()
        self.key = key
        self.value = OTLPAnyValue(value)
    }
}

extension OTLPAnyValue {
    init(_ value: AttributeValue) {
        self.init()
        switch value {
        case .string(let string): stringValue = string
        case .int(let int): intValue = int
        case .double(let double): doubleValue = double
        case .bool(let bool): boolValue = bool
        }
    }
}
