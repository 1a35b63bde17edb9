import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Spans

/// Sends spans to an OpenTelemetry collector or any OTLP/HTTP backend as protobuf
/// (`application/x-protobuf`), the encoding every OTLP receiver must accept.
public struct OTLPHTTPExporter: SpanExporter {
    public let configuration: OTLPExporterConfiguration
    private let session: URLSession

    public init(configuration: OTLPExporterConfiguration) {
        self.configuration = configuration
        session = URLSession(configuration: .ephemeral)
    }

    /// POSTs one `ExportTraceServiceRequest`. Throws `SpanExportError.retryable` for connection
    /// errors and HTTP 429/502/503/504 (the statuses OTLP says to retry), `.rejected` for any other
    /// non-2xx status, and `.partiallyRejected` when a 2xx response reports rejected spans.
    public func export(_ spans: [Span]) async throws {
        guard !spans.isEmpty else { return }
        var request = URLRequest(url: configuration.endpoint, timeoutInterval: configuration.timeout.timeInterval)
        request.httpMethod = "POST"
        for (name, value) in configuration.headers {
            request.setValue(value, forHTTPHeaderField: name)
        }
        request.setValue("application/x-protobuf", forHTTPHeaderField: "Content-Type")
        request.httpBody = try requestBody(for: spans)

        let responseBody: Data
        let response: URLResponse
        do {
            (responseBody, response) = try await session.data(for: request)
        } catch {
            throw SpanExportError.retryable(reason: "cannot reach \(configuration.endpoint): \(error.localizedDescription)")
        }
        guard let httpResponse = response as? HTTPURLResponse else {
            throw SpanExportError.rejected(reason: "\(configuration.endpoint) did not answer with HTTP")
        }
        try checkResponse(status: httpResponse.statusCode, body: responseBody)
    }

    /// The serialized `ExportTraceServiceRequest` for `spans`.
    func requestBody(for spans: [Span]) throws -> Data {
        try OTLPExportRequest(spans: spans, exportedResource: configuration.exportedResource).serializedData()
    }

    /// Classifies a response for the retry decision; see `export(_:)`.
    func checkResponse(status: Int, body: Data) throws(SpanExportError) {
        switch status {
        case 200..<300:
            // A body that is not an ExportTraceServiceResponse still means success.
            guard let response = try? OTLPExportResponse(serializedBytes: body),
                  response.partialSuccess.rejectedSpans > 0 else { return }
            throw .partiallyRejected(
                count: Int(clamping: response.partialSuccess.rejectedSpans),
                reason: response.partialSuccess.errorMessage)
        case 429, 502, 503, 504:
            throw .retryable(reason: "HTTP \(status) from \(configuration.endpoint)")
        default:
            throw .rejected(reason: "HTTP \(status) from \(configuration.endpoint)" + Self.readableExcerpt(of: body))
        }
    }

    /// The printable part of an error body (plain text, JSON, or the message inside a
    /// protobuf `google.rpc.Status`), so the user sees why the backend refused.
    private static func readableExcerpt(of body: Data) -> String {
        let printable = String(decoding: body.prefix(300), as: UTF8.self).unicodeScalars
            .map { $0.properties.isWhitespace || $0.value < 0x20 || $0 == "\u{FFFD}" ? " " : Character($0) }
        let excerpt = String(printable).split(separator: " ").joined(separator: " ")
        return excerpt.isEmpty ? "" : ": \(excerpt)"
    }
}

private extension Duration {
    var timeInterval: TimeInterval {
        Double(components.seconds) + Double(components.attoseconds) * 1e-18
    }
}
