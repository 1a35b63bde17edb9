import Foundation
import HTTPTransport
import Spans

/// Sends spans to an OpenTelemetry collector or any OTLP/HTTP backend as protobuf
/// (`application/x-protobuf`), the encoding every OTLP receiver must accept, gzip-compressed
/// when configured.
public struct OTLPHTTPExporter: SpanExporter {
    public let configuration: OTLPExporterConfiguration
    private let sender: BlockingSender
    private let encoder: OTLPTraceEncoder
    private let compressor: GzipCompressor?
    private let headers: [(name: String, value: String)]

    public init(configuration: OTLPExporterConfiguration) {
        self.configuration = configuration
        sender = BlockingSender(
            endpoint: HTTPEndpoint(configuration.endpoint),
            tls: TLSFiles(
                certificateAuthorities: configuration.certificateFile, clientCertificate: configuration.clientCertificateFile,
                clientKey: configuration.clientKeyFile))
        encoder = OTLPTraceEncoder { [configuration] in configuration.exportedResource(for: $0) }
        compressor = configuration.compression == .gzip ? GzipCompressor() : nil
        headers = configuration.headers.sorted { $0.key < $1.key }.map { (name: $0.key, value: $0.value) }
            + [("Content-Type", "application/x-protobuf")] + (compressor == nil ? [] : [("Content-Encoding", "gzip")])
    }

    /// POSTs one `ExportTraceServiceRequest`, waiting at most `configuration.timeout`.
    ///
    /// Throws `SpanExportError.retryable` for HTTP 429/502/503/504 (the statuses OTLP says to
    /// retry, with their `Retry-After`), a timeout and connection errors; `.rejected` for any
    /// other non-2xx status, for TLS failures and for a client that cannot send (no libcurl for
    /// https://), which a retry cannot fix; and `.partiallyRejected` when a 2xx response reports
    /// rejected spans.
    public func export(_ spans: [Span]) async throws {
        try await export(spans, within: configuration.timeout)
    }

    /// The thread that posts: the export loop running there encodes and posts each batch
    /// without a hop between threads.
    public var exportExecutor: (any TaskExecutor)? { sender.thread }

    public func exportBacklog(_ fill: Double) {
        sender.thread.exportBacklog(fill)
    }

    /// Keeps to `limit` without a timer: the HTTP client ends every wait by the deadline it is
    /// given. A request cut short by `limit` rather than by the OTLP timeout throws
    /// `TimeLimitExceeded`, as a timer would have.
    public func export(_ spans: [Span], within limit: Duration) async throws {
        guard !spans.isEmpty else { return }
        let post = HTTPPost(headers: headers, body: try requestBody(for: spans))
        let timeout = min(limit, configuration.timeout)
        let reply: HTTPReply
        do {
            reply = try await sender.post(post, timeout: timeout)
        } catch {
            if error == .timedOut, timeout < configuration.timeout { throw TimeLimitExceeded(limit: limit) }
            throw classify(transportError: error)
        }
        try checkResponse(status: reply.status, retryAfter: reply.header("Retry-After"), body: reply.body)
    }

    var noAnswer: SpanExportError {
        .retryable(reason: "no answer from \(configuration.endpoint) within \(configuration.timeout.readable) (OTEL_EXPORTER_OTLP_TIMEOUT)")
    }

    /// The serialized `ExportTraceServiceRequest` for `spans`, compressed as configured.
    func requestBody(for spans: [Span]) throws -> [UInt8] {
        let body = encoder.encode(spans)
        return try compressor?.compress(body) ?? body
    }
}

/// Posts on a thread of its own, one request at a time, over one kept-open connection: the
/// HTTP client blocks, and the export loop must not block a thread of Swift's shared pool.
private final class BlockingSender: @unchecked Sendable {
    private let endpoint: HTTPEndpoint
    private let tls: TLSFiles
    /// Posts, and the connection they share, stay on it.
    let thread = ExportThread(name: "sonde-export")
    /// Made on the thread at the first post; only touched there.
    private var connection: (any HTTPConnection)?

    init(endpoint: HTTPEndpoint, tls: TLSFiles) {
        self.endpoint = endpoint
        self.tls = tls
    }

    deinit {
        thread.stop()
    }

    func post(_ post: HTTPPost, timeout: Duration) async throws(HTTPTransportError) -> HTTPReply {
        try await withTaskExecutorPreference(thread) { () throws(HTTPTransportError) -> HTTPReply in
            if connection == nil { connection = try makeHTTPConnection(to: endpoint, tls: tls) }
            return try connection!.post(post, timeout: timeout)
        }
    }
}

extension HTTPEndpoint {
    /// From a URL the configuration checked: http or https, with a host.
    init(_ url: URL) {
        let isSecure = url.scheme?.lowercased() == "https"
        let query = url.query.map { "?\($0)" } ?? ""
        self.init(
            isSecure: isSecure, host: url.host ?? "localhost", port: url.port ?? (isSecure ? 443 : 80),
            target: url.path + query)
    }
}
