import CCurl

/// HTTPS through libcurl's easy interface, loaded when the first `https://` endpoint is used:
/// certificate checks against the system's CA store or the given CA file, a client certificate
/// when given, connection reuse between posts. Not thread-safe: one post at a time.
final class CurlHTTPSConnection: HTTPConnection {
    /// A var only because the C wrappers take its address.
    private var library: sonde_curl
    private let handle: UnsafeMutableRawPointer

    /// Makes the handle and sets what every post shares: the URL, the TLS files, the callbacks.
    init(endpoint: HTTPEndpoint, tls: TLSFiles) throws(HTTPTransportError) {
        library = try Self.loaded.get()
        guard let handle = library.easy_init() else { throw .unusable("libcurl could not make a handle") }
        self.handle = handle
        let files = [(CURLOPT_CAINFO, tls.certificateAuthorities), (CURLOPT_SSLCERT, tls.clientCertificate), (CURLOPT_SSLKEY, tls.clientKey)]
        // libcurl copies string options.
        let options: [CURLcode] = files.compactMap { option, path in
            path.map { sonde_curl_set_pointer(&library, handle, option, $0) }
        } + [
            sonde_curl_set_pointer(&library, handle, CURLOPT_URL, endpoint.description),
            sonde_curl_set_long(&library, handle, CURLOPT_POST, 1),
            sonde_curl_set_long(&library, handle, CURLOPT_NOSIGNAL, 1),
            sonde_curl_set_callback(&library, handle, CURLOPT_WRITEFUNCTION, Transfer.receiveBody),
            sonde_curl_set_callback(&library, handle, CURLOPT_HEADERFUNCTION, Transfer.receiveHeader),
        ]
        if let failed = options.first(where: { $0 != CURLE_OK }) {
            library.easy_cleanup(handle)
            throw Self.error(for: failed, detail: Self.text(of: failed, in: library))
        }
    }

    deinit { library.easy_cleanup(handle) }

    /// libcurl, loaded and initialised once per process (curl_global_init is not thread-safe).
    // Written once, by the lazy initialiser (swift_once), and only read after.
    nonisolated(unsafe) private static let loaded: Result<sonde_curl, HTTPTransportError> = {
        var library = sonde_curl()
        var error: UnsafePointer<CChar>?
        guard sonde_curl_load(&library, &error) == 0 else {
            let reason = error.map { String(cString: $0) } ?? "unknown error"
            return .failure(.unusable(
                "https:// endpoints need libcurl (libcurl.so.4; on Debian: apt-get install libcurl4), which did not load: \(reason)"))
        }
        guard library.global_init(Int(CURL_GLOBAL_DEFAULT)) == CURLE_OK else { return .failure(.unusable("libcurl did not initialise")) }
        return .success(library)
    }()

    func post(_ post: HTTPPost, timeout: Duration) throws(HTTPTransportError) -> HTTPReply {
        let transfer = Transfer()
        var headerList: UnsafeMutablePointer<curl_slist>?
        for line in post.headers.map({ "\($0.name): \($0.value)" }) + ["Expect:"] {
            headerList = library.slist_append(headerList, line)
        }
        defer { library.slist_free_all(headerList) }
        var errorText = [CChar](repeating: 0, count: Int(CURL_ERROR_SIZE))
        let (seconds, attoseconds) = timeout.components
        let milliseconds = max(1, seconds * 1000 + attoseconds / 1_000_000_000_000_000)
        let code = post.body.withUnsafeBytes { body in
            errorText.withUnsafeMutableBufferPointer { errorBuffer in
                withExtendedLifetime(transfer) { () -> CURLcode in
                    let context = Unmanaged.passUnretained(transfer).toOpaque()
                    let options: [CURLcode] = [
                        sonde_curl_set_pointer(&library, handle, CURLOPT_POSTFIELDS, body.baseAddress),
                        sonde_curl_set_size(&library, handle, CURLOPT_POSTFIELDSIZE_LARGE, curl_off_t(body.count)),
                        sonde_curl_set_pointer(&library, handle, CURLOPT_HTTPHEADER, headerList),
                        sonde_curl_set_long(&library, handle, CURLOPT_TIMEOUT_MS, Int(milliseconds)),
                        sonde_curl_set_pointer(&library, handle, CURLOPT_ERRORBUFFER, errorBuffer.baseAddress),
                        sonde_curl_set_pointer(&library, handle, CURLOPT_WRITEDATA, context),
                        sonde_curl_set_pointer(&library, handle, CURLOPT_HEADERDATA, context),
                    ]
                    if let failed = options.first(where: { $0 != CURLE_OK }) { return failed }
                    return library.easy_perform(handle)
                }
            }
        }
        guard code == CURLE_OK else {
            let detail = errorText.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
            throw Self.error(for: code, detail: detail.isEmpty ? Self.text(of: code, in: library) : detail)
        }
        return HTTPReply(status: sonde_curl_response_code(&library, handle), headers: transfer.headers, body: transfer.body)
    }

    /// libcurl's words for a failure.
    private static func text(of code: CURLcode, in library: sonde_curl) -> String {
        library.easy_strerror(code).map { String(cString: $0) } ?? "libcurl error \(code.rawValue)"
    }

    /// What a libcurl failure means for another attempt.
    static func error(for code: CURLcode, detail: String) -> HTTPTransportError {
        switch code {
        case CURLE_OPERATION_TIMEDOUT:
            return .timedOut
        case CURLE_SSL_CONNECT_ERROR, CURLE_PEER_FAILED_VERIFICATION, CURLE_SSL_CERTPROBLEM, CURLE_SSL_CIPHER,
             CURLE_SSL_CACERT_BADFILE, CURLE_SSL_ENGINE_NOTFOUND, CURLE_SSL_PINNEDPUBKEYNOTMATCH, CURLE_SSL_INVALIDCERTSTATUS,
             CURLE_SSL_CRL_BADFILE, CURLE_SSL_ISSUER_ERROR, CURLE_USE_SSL_FAILED:
            return .tls(detail)
        case CURLE_UNSUPPORTED_PROTOCOL, CURLE_URL_MALFORMAT, CURLE_NOT_BUILT_IN, CURLE_OUT_OF_MEMORY, CURLE_BAD_FUNCTION_ARGUMENT,
             CURLE_UNKNOWN_OPTION:
            return .unusable("libcurl: \(detail)")
        case CURLE_WEIRD_SERVER_REPLY:
            return .notHTTP(detail)
        default:
            return .unreachable(detail)
        }
    }
}

/// The reply as libcurl hands it over, through callbacks.
private final class Transfer {
    var headers: [(name: String, value: String)] = []
    var body: [UInt8] = []

    static let receiveBody: curl_write_callback = { data, size, count, context in
        let transfer = Unmanaged<Transfer>.fromOpaque(context!).takeUnretainedValue()
        let length = size * count
        guard transfer.body.count + length <= HTTPReply.maxBodySize else { return 0 }   // libcurl stops the transfer
        data.map { transfer.body += UnsafeRawBufferPointer(start: $0, count: length) }
        return length
    }

    /// One header line, or a status line, which starts a new reply (after a 100 Continue).
    static let receiveHeader: curl_write_callback = { data, size, count, context in
        let transfer = Unmanaged<Transfer>.fromOpaque(context!).takeUnretainedValue()
        let length = size * count
        guard let data else { return length }
        let line = String(decoding: UnsafeRawBufferPointer(start: data, count: length), as: UTF8.self)
        if line.hasPrefix("HTTP/") {
            transfer.headers = []
        } else if let colon = line.firstIndex(of: ":") {
            let value = line[line.index(after: colon)...].trimmingHTTPWhitespace
            transfer.headers.append((line[..<colon].lowercased(), value))
        }
        return length
    }
}
