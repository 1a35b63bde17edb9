import Foundation
import Spans

/// Where and how `OTLPHTTPExporter` sends spans. Usually read from the standard OpenTelemetry
/// environment variables with `fromEnvironment(_:)`, so Sonde is configured like any OTel SDK.
public struct OTLPExporterConfiguration: Sendable, Equatable {
    /// The full URL batches are POSTed to.
    public var endpoint: URL
    /// Extra request headers, typically credentials for a hosted backend.
    public var headers: [String: String]
    /// When set, replaces the `service.name` of every exported span's resource.
    public var serviceName: String?
    /// Merged onto every exported span's resource as strings (OTEL_RESOURCE_ATTRIBUTES has no
    /// types); these win over what Sonde detected.
    public var resourceAttributes: [String: String]
    /// How long one export request may take before it counts as a (retryable) failure.
    public var timeout: Duration
    /// How request bodies are encoded on the wire.
    public var compression: Compression
    /// PEM files for an https:// endpoint: CA certificates to trust instead of the system's
    /// store, and a client certificate and key (mTLS).
    public var certificateFile: String?
    public var clientCertificateFile: String?
    public var clientKeyFile: String?

    /// The request body encodings OTLP/HTTP receivers must accept.
    public enum Compression: String, Sendable, Equatable {
        case none
        /// `Content-Encoding: gzip`.
        case gzip
    }

    /// The OTLP/HTTP default: a collector on this machine.
    public static let defaultEndpoint = URL(string: "http://localhost:4318/v1/traces")!

    public init(
        endpoint: URL = defaultEndpoint, headers: [String: String] = [:], serviceName: String? = nil,
        resourceAttributes: [String: String] = [:], timeout: Duration = .seconds(10), compression: Compression = .none
    ) {
        self.endpoint = endpoint
        self.headers = headers
        self.serviceName = serviceName
        self.resourceAttributes = resourceAttributes
        self.timeout = timeout
        self.compression = compression
    }

    /// Whether `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or `OTEL_EXPORTER_OTLP_ENDPOINT` has a value:
    /// what decides between OTLP and the console when no exporter is chosen. Empty counts as unset,
    /// as everywhere in the OpenTelemetry environment variables.
    public static func isEndpointConfigured(in environment: [String: String]) -> Bool {
        let variables = EnvironmentVariables(environment)
        return variables.first(of: "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT") != nil
    }

    /// Reads the OpenTelemetry exporter variables; empty variables count as unset.
    ///
    /// - `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (used as is), else `OTEL_EXPORTER_OTLP_ENDPOINT` + `/v1/traces`
    /// - `OTEL_EXPORTER_OTLP_HEADERS`, then `OTEL_EXPORTER_OTLP_TRACES_HEADERS` on top: `key=value,…`,
    ///   values percent-decoded
    /// - `OTEL_EXPORTER_OTLP_TRACES_TIMEOUT`, else `OTEL_EXPORTER_OTLP_TIMEOUT`: milliseconds per request
    /// - `OTEL_EXPORTER_OTLP_TRACES_COMPRESSION`, else `OTEL_EXPORTER_OTLP_COMPRESSION`: `gzip` or `none`
    /// - `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`, else `OTEL_EXPORTER_OTLP_PROTOCOL`: only `http/protobuf`
    /// - `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES` (`key=value,…`)
    /// - `OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE`, else `OTEL_EXPORTER_OTLP_CERTIFICATE`; the same for
    ///   `…CLIENT_CERTIFICATE` and `…CLIENT_KEY`: readable PEM files, a key only with a certificate
    ///
    /// A malformed value throws rather than being ignored, so a typo cannot silently send
    /// spans to the wrong place, or trust the wrong certificates.
    public static func fromEnvironment(
        _ environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws(ExporterConfigurationError) -> OTLPExporterConfiguration {
        let variables = EnvironmentVariables(environment)
        if let (variable, exportProtocol) = variables.first(of: "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"),
           exportProtocol != "http/protobuf" {
            throw ExporterConfigurationError(variable, "'\(exportProtocol)' is not supported; Sonde exports http/protobuf only")
        }
        var configuration = OTLPExporterConfiguration()
        func readableFile(_ name: String) throws(ExporterConfigurationError) -> (variable: String, path: String)? {
            guard let (variable, path) = variables.first(of: "OTEL_EXPORTER_OTLP_TRACES_\(name)", "OTEL_EXPORTER_OTLP_\(name)") else {
                return nil
            }
            guard FileManager.default.isReadableFile(atPath: path) else {
                throw ExporterConfigurationError(variable, "cannot read the file '\(path)'")
            }
            return (variable, path)
        }
        configuration.certificateFile = try readableFile("CERTIFICATE")?.path
        configuration.clientCertificateFile = try readableFile("CLIENT_CERTIFICATE")?.path
        let clientKey = try readableFile("CLIENT_KEY")
        configuration.clientKeyFile = clientKey?.path
        if let clientKey, configuration.clientCertificateFile == nil {
            throw ExporterConfigurationError(
                clientKey.variable, "a client key needs its certificate: set OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE too")
        }
        if let (variable, value) = variables.first(of: "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
            configuration.endpoint = try parseHTTPURL(value, variable: variable)
        } else if let (variable, value) = variables.first(of: "OTEL_EXPORTER_OTLP_ENDPOINT") {
            let base = try parseHTTPURL(value, variable: variable).absoluteString
            configuration.endpoint = try parseHTTPURL(base.trimmingSuffix("/") + "/v1/traces", variable: variable)
        }
        for variable in ["OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_TRACES_HEADERS"] {
            guard let value = variables[variable] else { continue }
            let headers = try parseKeyValueList(value, variable: variable)
            try validateHeaders(headers, variable: variable)
            configuration.headers.merge(headers) { $1 }
        }
        if let (variable, value) = variables.first(of: "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT") {
            guard let milliseconds = Int(value), milliseconds > 0 else {
                throw ExporterConfigurationError(variable, "'\(value)' is not a positive number of milliseconds")
            }
            configuration.timeout = .milliseconds(milliseconds)
        }
        if let (variable, value) = variables.first(
            of: "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "OTEL_EXPORTER_OTLP_COMPRESSION") {
            guard let compression = Compression(rawValue: value.lowercased()) else {
                throw ExporterConfigurationError(variable, "'\(value)' is not supported; use gzip or none")
            }
            configuration.compression = compression
        }
        if let value = variables["OTEL_RESOURCE_ATTRIBUTES"] {
            configuration.resourceAttributes = try parseKeyValueList(value, variable: "OTEL_RESOURCE_ATTRIBUTES")
        }
        configuration.serviceName = variables["OTEL_SERVICE_NAME"]
        return configuration
    }

    /// The resource a span is exported with. `service.name` precedence: `serviceName`
    /// (OTEL_SERVICE_NAME), then `resourceAttributes` (OTEL_RESOURCE_ATTRIBUTES), then the span's own.
    public func exportedResource(for resource: Resource) -> Resource {
        guard serviceName != nil || !resourceAttributes.isEmpty else { return resource }
        var attributes = resource.attributes
        for (key, value) in resourceAttributes { attributes[key] = .string(value) }
        if let serviceName { attributes["service.name"] = .string(serviceName) }
        return Resource(attributes: attributes)
    }
}

/// A malformed exporter environment variable: which one, and what is wrong with it.
public struct ExporterConfigurationError: Error, Sendable, Equatable, CustomStringConvertible {
    public var variable: String
    public var problem: String

    public init(_ variable: String, _ problem: String) {
        self.variable = variable
        self.problem = problem
    }

    public var description: String { "\(variable): \(problem)" }
}

private func parseHTTPURL(_ text: String, variable: String) throws(ExporterConfigurationError) -> URL {
    if let port = portText(of: text), !isValidPort(port) {
        throw ExporterConfigurationError(variable, "'\(text)' has port '\(port)'; a port is a number from 1 to 65535")
    }
    guard let url = URL(string: text), ["http", "https"].contains(url.scheme?.lowercased()),
          let host = url.host, !host.isEmpty else {
        throw ExporterConfigurationError(variable, "'\(text)' is not an http:// or https:// URL")
    }
    return url
}

/// The port as written in `scheme://[userinfo@]host:port/…`, nil when there is none. Read from
/// the text because `URL` accepts ports above 65535 and forgets ones too long for an `Int`.
private func portText(of url: String) -> Substring? {
    guard let schemeEnd = url.range(of: "://") else { return nil }
    let afterScheme = url[schemeEnd.upperBound...]
    var authority = afterScheme.prefix { !"/?#".contains($0) }
    if let at = authority.lastIndex(of: "@") { authority = authority[authority.index(after: at)...] }
    var hostEnd = authority.startIndex
    if authority.hasPrefix("[") {  // an IPv6 literal: its colons are not the port's
        hostEnd = authority.firstIndex(of: "]") ?? authority.endIndex
    }
    guard let colon = authority[hostEnd...].lastIndex(of: ":") else { return nil }
    let port = authority[authority.index(after: colon)...]
    return port.isEmpty ? nil : port  // "host:" means the scheme's default port (RFC 3986 3.2.3)
}

private func isValidPort(_ text: Substring) -> Bool {
    text.utf8.allSatisfy { $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") } && text.count <= 5
        && (1...65535).contains(Int(text) ?? 0)
}

/// Parses the W3C-baggage-like `key=value,key2=value2` lists of OTEL_RESOURCE_ATTRIBUTES and
/// OTEL_EXPORTER_OTLP_HEADERS. Errors name entries by position, never by content, because
/// header values are often secrets.
private func parseKeyValueList(_ text: String, variable: String) throws(ExporterConfigurationError) -> [String: String] {
    var result: [String: String] = [:]
    for (index, entry) in text.split(separator: ",", omittingEmptySubsequences: false).enumerated() {
        let position = "entry \(index + 1)"
        guard !entry.allSatisfy(\.isWhitespace) else { continue }
        guard let equalsSign = entry.firstIndex(of: "=") else {
            throw ExporterConfigurationError(variable, "\(position) has no '=' (expected key=value,key2=value2)")
        }
        let key = entry[..<equalsSign].trimmingCharacters(in: .whitespaces)
        guard !key.isEmpty else {
            throw ExporterConfigurationError(variable, "\(position) has an empty key")
        }
        let encodedValue = entry[entry.index(after: equalsSign)...].trimmingCharacters(in: .whitespaces)
        guard let value = encodedValue.removingPercentEncoding else {
            throw ExporterConfigurationError(variable, "the value of '\(key)' is not valid percent-encoding")
        }
        result[key] = value
    }
    return result
}

private func validateHeaders(_ headers: [String: String], variable: String) throws(ExporterConfigurationError) {
    let tokenCharacters = CharacterSet.alphanumerics.intersection(.init(charactersIn: Unicode.Scalar(0)...Unicode.Scalar(127)))
        .union(.init(charactersIn: "!#$%&'*+-.^_`|~"))
    for (name, value) in headers.sorted(by: { $0.key < $1.key }) {
        guard name.unicodeScalars.allSatisfy(tokenCharacters.contains) else {
            throw ExporterConfigurationError(variable, "'\(name)' is not a valid HTTP header name")
        }
        guard !value.unicodeScalars.contains(where: { $0 == "\r" || $0 == "\n" || $0 == "\0" }) else {
            throw ExporterConfigurationError(variable, "the value of '\(name)' contains a line break")
        }
    }
}

private extension String {
    func trimmingSuffix(_ suffix: Character) -> Substring {
        var trimmed = self[...]
        while trimmed.last == suffix { trimmed.removeLast() }
        return trimmed
    }
}
