import Foundation
import HTTPTransport

/// How the exporter classifies what came back, for the retry decision (OTLP/HTTP "Failures"
/// and "Throttling").
extension OTLPHTTPExporter {
    /// Classifies a response; see `export(_:)`.
    /// - Parameters:
    ///   - retryAfter: The response's `Retry-After` header: seconds, or an HTTP-date.
    ///   - now: The time an HTTP-date in `retryAfter` counts from.
    func checkResponse(status: Int, retryAfter: String? = nil, body: [UInt8], now: Date = Date()) throws(SpanExportError) {
        switch status {
        case 200..<300:
            // A body that is not an ExportTraceServiceResponse still means success.
            guard let response = OTLPExportResponse(serializedBytes: body), response.rejectedSpans > 0 else { return }
            throw .partiallyRejected(count: Int(clamping: response.rejectedSpans), reason: response.errorMessage)
        case 429, 502, 503, 504:
            throw .retryable(
                reason: "HTTP \(status) from \(configuration.endpoint)",
                retryAfter: retryAfter.flatMap { Self.delay(retryAfter: $0, now: now) })
        default:
            throw .rejected(reason: "HTTP \(status) from \(configuration.endpoint)" + Self.readableExcerpt(of: body))
        }
    }

    /// Classifies an error of the HTTP client. Connection failures and timeouts are retryable;
    /// TLS failures (an untrusted certificate, a plain HTTP server behind an https:// URL), a
    /// reply that is not HTTP and a client that cannot send are not, since the next attempt would
    /// meet the same configuration.
    func classify(transportError error: HTTPTransportError) -> SpanExportError {
        switch error {
        case .timedOut: noAnswer
        case .unreachable(let reason): .retryable(reason: "cannot reach \(configuration.endpoint): \(reason)")
        case .tls(let reason): .rejected(reason: "TLS failed with \(configuration.endpoint): \(reason)")
        case .unusable(let reason): .rejected(reason: "cannot send to \(configuration.endpoint): \(reason)")
        case .notHTTP(let reason): .rejected(reason: "\(configuration.endpoint) did not answer with HTTP: \(reason)")
        }
    }

    /// The wait a `Retry-After` value asks for (RFC 9110 10.2.3): delay-seconds, or an HTTP-date
    /// in any of its three formats, counted from `now` (zero once passed). Nil when unreadable.
    static func delay(retryAfter value: String, now: Date) -> Duration? {
        let value = value.trimmingCharacters(in: .whitespaces)
        if !value.isEmpty, value.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }) {
            return .seconds(Int64(value) ?? .max)
        }
        let collapsed = value.split(separator: " ", omittingEmptySubsequences: true).joined(separator: " ")
        for format in ["EEE, dd MMM yyyy HH:mm:ss zzz", "EEEE, dd-MMM-yy HH:mm:ss zzz", "EEE MMM d HH:mm:ss yyyy"] {
            let formatter = DateFormatter()
            formatter.locale = Locale(identifier: "en_US_POSIX")
            formatter.timeZone = TimeZone(identifier: "GMT")
            formatter.dateFormat = format
            if let date = formatter.date(from: collapsed) {
                let seconds = date.timeIntervalSince(now).rounded(.up)
                return seconds > 0 ? .seconds(Int64(seconds)) : .zero
            }
        }
        return nil
    }

    /// The printable part of an error body (plain text, JSON, or the message inside a
    /// protobuf `google.rpc.Status`), so the user sees why the backend refused.
    static func readableExcerpt(of body: [UInt8]) -> String {
        let printable = String(decoding: body.prefix(300), as: UTF8.self).unicodeScalars
            .map { $0.properties.isWhitespace || $0.value < 0x20 || $0 == "\u{FFFD}" ? " " : Character($0) }
        let excerpt = String(printable).split(separator: " ").joined(separator: " ")
        return excerpt.isEmpty ? "" : ": \(excerpt)"
    }
}
