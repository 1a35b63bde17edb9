/// Where requests go: an `http://` or `https://` origin and the request target on it.
public struct HTTPEndpoint: Sendable, Equatable, CustomStringConvertible {
    public var isSecure: Bool
    public var host: String
    public var port: Int
    /// The path and query, e.g. `/v1/traces`.
    public var target: String
    public init(isSecure: Bool, host: String, port: Int, target: String) {
        self.isSecure = isSecure
        self.host = host
        self.port = port
        self.target = target.isEmpty ? "/" : target
    }

    /// The `Host` header: brackets around an IPv6 literal, the port always.
    var authority: String { (host.contains(":") ? "[\(host)]" : host) + ":\(port)" }

    public var description: String { "\(isSecure ? "https" : "http")://\(authority)\(target)" }
}

/// One POST: its headers besides `Host` and `Content-Length`, and its body.
public struct HTTPPost: Sendable {
    public var headers: [(name: String, value: String)]
    public var body: [UInt8]
    public init(headers: [(name: String, value: String)], body: [UInt8]) {
        self.headers = headers
        self.body = body
    }
}

/// What came back.
public struct HTTPReply: Sendable, Equatable {
    public var status: Int
    /// Header names in lower case, in the order received.
    public var headers: [(name: String, value: String)]
    public var body: [UInt8]

    /// A body larger than this is not read: OTLP replies are a few bytes.
    static let maxBodySize = 4 << 20

    public init(status: Int, headers: [(name: String, value: String)], body: [UInt8]) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    /// The first value of a header, by its name in any case.
    public func header(_ name: String) -> String? {
        let name = name.lowercased()
        return headers.first { $0.name == name }?.value
    }

    public static func == (left: HTTPReply, right: HTTPReply) -> Bool {
        left.status == right.status && left.body == right.body
            && left.headers.map { [$0.name, $0.value] } == right.headers.map { [$0.name, $0.value] }
    }
}

/// Why a POST got no HTTP reply. Each case says whether another attempt could succeed; the
/// text says what happened, for a message that names the endpoint.
public enum HTTPTransportError: Error, Equatable, CustomStringConvertible {
    /// Name resolution, connecting, or the connection failing before the reply was complete.
    case unreachable(String)
    /// No complete reply before the deadline.
    case timedOut
    /// The TLS handshake failed: an untrusted certificate, or no TLS server at all.
    case tls(String)
    /// Something answered, but not with HTTP.
    case notHTTP(String)
    /// The client cannot make this request: a missing library, a bad URL.
    case unusable(String)

    public var description: String {
        switch self {
        case .unreachable(let reason): reason
        case .timedOut: "no reply in time"
        case .tls(let reason): reason
        case .notHTTP(let reason): reason
        case .unusable(let reason): reason
        }
    }
}

/// A client for one endpoint that POSTs one request at a time, blocking the calling thread
/// until the reply or the timeout; it keeps its connection open between posts.
public protocol HTTPConnection: AnyObject {
    func post(_ post: HTTPPost, timeout: Duration) throws(HTTPTransportError) -> HTTPReply
}

/// PEM files for `https://` endpoints; nil: the system's CA store, no client certificate.
public struct TLSFiles: Sendable, Equatable {
    /// CA certificates that server certificates must chain to, instead of the system's.
    public var certificateAuthorities: String?
    /// A client certificate (mTLS), and its key when the certificate's file does not hold it.
    public var clientCertificate: String?
    public var clientKey: String?
    public init(certificateAuthorities: String? = nil, clientCertificate: String? = nil, clientKey: String? = nil) {
        self.certificateAuthorities = certificateAuthorities
        self.clientCertificate = clientCertificate
        self.clientKey = clientKey
    }
}

/// The client for an endpoint: plain sockets for `http://`, libcurl (loaded now) for `https://`.
public func makeHTTPConnection(to endpoint: HTTPEndpoint, tls: TLSFiles = TLSFiles()) throws(HTTPTransportError) -> any HTTPConnection {
    endpoint.isSecure ? try CurlHTTPSConnection(endpoint: endpoint, tls: tls) : PlainHTTPConnection(endpoint: endpoint)
}

extension StringProtocol {
    /// Without the spaces, tabs and line ends around a header value. They are ASCII, so the
    /// UTF-8 bytes are searched: the generic Unicode-scalar walk this replaced took 7% of the
    /// exporting threads' time, once per reply header (issue 7).
    var trimmingHTTPWhitespace: String {
        let text = Substring(self)
        let isWhitespace = { (byte: UInt8) in byte == 0x20 || byte == 0x09 || byte == 0x0D || byte == 0x0A }
        guard let first = text.utf8.firstIndex(where: { !isWhitespace($0) }),
              let last = text.utf8.lastIndex(where: { !isWhitespace($0) })
        else { return "" }
        return String(text[first..<text.utf8.index(after: last)])
    }

    /// Whether this comma-separated header value (`Connection`, `Transfer-Encoding`) lists
    /// `token`, in any case.
    func listsHTTPToken(_ token: String) -> Bool {
        lowercased().split(separator: ",").contains { $0.trimmingHTTPWhitespace == token }
    }
}
