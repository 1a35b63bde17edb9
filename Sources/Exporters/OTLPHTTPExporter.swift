import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Spans

/// Sends spans to an OpenTelemetry collector or any OTLP/HTTP backend as protobuf
/// (`application/x-protobuf`), the encoding every OTLP receiver must accept, gzip-compressed
/// when configured.
public struct OTLPHTTPExporter: SpanExporter {
    public let configuration: OTLPExporterConfiguration
    private let session: URLSession
    private let encoder: OTLPTraceEncoder
    private let compressor: GzipCompressor?

    public init(configuration: OTLPExporterConfiguration) {
        self.configuration = configuration
        // URLSession on Linux ignores a request's `timeoutInterval` and rounds the session's
        // timeouts down to whole seconds (0, i.e. none, below one), so `export` enforces
        // `configuration.timeout` itself; this is only a backstop a second later.
        let sessionConfiguration = URLSessionConfiguration.ephemeral
        let backstop = (configuration.timeout.timeInterval + 1).rounded(.up)
        sessionConfiguration.timeoutIntervalForRequest = backstop
        sessionConfiguration.timeoutIntervalForResource = backstop
        // An export is never cached, and its replies set no cookies and ask for no credentials;
        // without these stores URLSession on Linux skips a look at its cache folder on disk and
        // a hop to the store's queue for every request (issue 7).
        sessionConfiguration.urlCache = nil
        sessionConfiguration.requestCachePolicy = .reloadIgnoringLocalCacheData
        sessionConfiguration.httpCookieStorage = nil
        sessionConfiguration.httpShouldSetCookies = false
        sessionConfiguration.urlCredentialStorage = nil
        session = URLSession(configuration: sessionConfiguration)
        encoder = OTLPTraceEncoder { [configuration] in configuration.exportedResource(for: $0) }
        compressor = configuration.compression == .gzip ? GzipCompressor() : nil
    }

    /// POSTs one `ExportTraceServiceRequest`, waiting at most `configuration.timeout`.
    ///
    /// Throws `SpanExportError.retryable` for HTTP 429/502/503/504 (the statuses OTLP says to
    /// retry, with their `Retry-After`), a timeout and connection errors; `.rejected` for any
    /// other non-2xx status and for TLS and URL errors, which a retry cannot fix; and
    /// `.partiallyRejected` when a 2xx response reports rejected spans.
    public func export(_ spans: [Span]) async throws {
        guard !spans.isEmpty else { return }
        var request = URLRequest(url: configuration.endpoint)
        request.httpMethod = "POST"
        for (name, value) in configuration.headers {
            request.setValue(value, forHTTPHeaderField: name)
        }
        request.setValue("application/x-protobuf", forHTTPHeaderField: "Content-Type")
        if compressor != nil {
            request.setValue("gzip", forHTTPHeaderField: "Content-Encoding")
        }
        request.httpBody = try requestBody(for: spans)

        let reply: HTTPReply
        do {
            reply = try await withTimeLimit(configuration.timeout) { [session, request] in
                let (body, response) = try await session.data(for: request)
                return HTTPReply(response, body: body)
            }
        } catch is TimeLimitExceeded {
            throw SpanExportError.retryable(
                reason: "no answer from \(configuration.endpoint) within \(configuration.timeout.readable) "
                    + "(OTEL_EXPORTER_OTLP_TIMEOUT)")
        } catch {
            throw classify(transportError: error)
        }
        guard let status = reply.status else {
            throw SpanExportError.rejected(reason: "\(configuration.endpoint) did not answer with HTTP")
        }
        try checkResponse(status: status, retryAfter: reply.retryAfter, body: reply.body)
    }

    /// The serialized `ExportTraceServiceRequest` for `spans`, compressed as configured.
    func requestBody(for spans: [Span]) throws -> Data {
        let body = encoder.encode(spans)
        return try compressor?.compress(body) ?? Data(body)
    }
}

/// What the retry decision needs of a response, taken out of URLSession's types.
private struct HTTPReply: Sendable {
    /// Nil when the response was not HTTP.
    var status: Int?
    var retryAfter: String?
    var body: Data

    init(_ response: URLResponse, body: Data) {
        let response = response as? HTTPURLResponse
        status = response?.statusCode
        retryAfter = response?.value(forHTTPHeaderField: "Retry-After")
        self.body = body
    }
}

extension Duration {
    var timeInterval: TimeInterval {
        Double(components.seconds) + Double(components.attoseconds) * 1e-18
    }
}
