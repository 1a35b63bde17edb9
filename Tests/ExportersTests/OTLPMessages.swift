import Spans

@testable import Exporters

// Short names for swift-protobuf's generated OTLP types, which the tests decode request bodies with.
typealias OTLPExportRequest = Opentelemetry_Proto_Collector_Trace_V1_ExportTraceServiceRequest
typealias OTLPResourceSpans = Opentelemetry_Proto_Trace_V1_ResourceSpans
typealias OTLPScopeSpans = Opentelemetry_Proto_Trace_V1_ScopeSpans
typealias OTLPSpan = Opentelemetry_Proto_Trace_V1_Span
typealias OTLPStatus = Opentelemetry_Proto_Trace_V1_Status
typealias OTLPKeyValue = Opentelemetry_Proto_Common_V1_KeyValue
typealias OTLPAnyValue = Opentelemetry_Proto_Common_V1_AnyValue

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
