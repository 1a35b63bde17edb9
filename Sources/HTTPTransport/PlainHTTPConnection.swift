import Glibc

/// HTTP/1.1 over one TCP connection to an `http://` endpoint, kept open between posts and
/// reopened when the server has closed it. Sockets are non-blocking and every wait is a `poll`
/// bounded by the post's deadline. Not thread-safe: one post at a time.
final class PlainHTTPConnection: HTTPConnection {
    private let endpoint: HTTPEndpoint
    private var socket: Int32 = -1
    /// Bytes received past the end of the last reply (none from a well-behaved server).
    private var received: [UInt8] = []
    /// What one `recv` fills, kept for the connection's life.
    private var chunk = [UInt8](repeating: 0, count: 16 * 1024)

    init(endpoint: HTTPEndpoint) {
        self.endpoint = endpoint
    }

    deinit { disconnect() }

    func post(_ post: HTTPPost, timeout: Duration) throws(HTTPTransportError) -> HTTPReply {
        let deadline = ContinuousClock.now + timeout
        let head = requestHead(post)
        let reused = socket >= 0
        do {
            do {
                return try exchange(head, post.body, until: deadline)
            } catch .closedBeforeReply(_) where reused {
                // The server closed the idle connection (its keep-alive timeout) as this post
                // left: it read nothing, so the post goes again on a new connection.
                return try exchange(head, post.body, until: deadline)
            }
        } catch {
            throw error.public
        }
    }

    /// The request line and headers. The body is sent after them as it is: joining the two
    /// copied every export's body (a hundred kilobytes or more) into a new array.
    private func requestHead(_ post: HTTPPost) -> [UInt8] {
        var head = "POST \(endpoint.target) HTTP/1.1\r\nHost: \(endpoint.authority)\r\n"
        for (name, value) in post.headers { head += "\(name): \(value)\r\n" }
        head += "Content-Length: \(post.body.count)\r\n\r\n"
        return Array(head.utf8)
    }

    private func exchange(_ head: [UInt8], _ body: [UInt8], until deadline: ContinuousClock.Instant) throws(ExchangeError) -> HTTPReply {
        if socket < 0 { try connect(until: deadline) }
        do {
            // MSG_MORE: the kernel holds the head back to go out in one segment with the body
            // (with no body to follow, it would wait for the cork's timeout).
            try send(head, flags: body.isEmpty ? 0 : Int32(MSG_MORE), until: deadline)
            try send(body, until: deadline)
            let (reply, keepOpen) = try receiveReply(until: deadline)
            if !keepOpen { disconnect() }
            return reply
        } catch {
            disconnect()
            throw error
        }
    }

    // MARK: Connecting

    private func connect(until deadline: ContinuousClock.Instant) throws(ExchangeError) {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var addresses: UnsafeMutablePointer<addrinfo>?
        let resolved = getaddrinfo(endpoint.host, String(endpoint.port), &hints, &addresses)
        guard resolved == 0, let first = addresses else {
            throw .failed(.unreachable("cannot resolve \(endpoint.host): \(String(cString: gai_strerror(resolved)))"))
        }
        defer { freeaddrinfo(first) }
        var failure = "no address"
        var next: UnsafeMutablePointer<addrinfo>? = first
        while let address = next {
            next = address.pointee.ai_next
            let candidate = Glibc.socket(address.pointee.ai_family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            guard candidate >= 0 else { failure = Self.errorText(); continue }
            if Glibc.connect(candidate, address.pointee.ai_addr, address.pointee.ai_addrlen) != 0 && errno != EINPROGRESS {
                failure = Self.errorText()
                close(candidate)
                continue
            }
            do {
                try Self.wait(for: candidate, events: Int16(POLLOUT), until: deadline)
            } catch {
                close(candidate)
                throw error
            }
            var status: Int32 = 0
            var length = socklen_t(MemoryLayout<Int32>.size)
            getsockopt(candidate, SOL_SOCKET, SO_ERROR, &status, &length)
            guard status == 0 else {
                failure = String(cString: strerror(status))
                close(candidate)
                continue
            }
            // The request leaves in one send; without this, Nagle could hold its tail back for
            // the server's delayed acknowledgement.
            var on: Int32 = 1
            setsockopt(candidate, Int32(IPPROTO_TCP), TCP_NODELAY, &on, socklen_t(MemoryLayout<Int32>.size))
            socket = candidate
            received = []
            return
        }
        throw .failed(.unreachable("connecting failed: \(failure)"))
    }

    private func disconnect() {
        if socket >= 0 { close(socket) }
        socket = -1
        received = []
    }

    // MARK: Sending and receiving

    private func send(_ message: [UInt8], flags: Int32 = 0, until deadline: ContinuousClock.Instant) throws(ExchangeError) {
        var sent = 0
        while sent < message.count {
            let count = message.withUnsafeBytes { bytes in
                Glibc.send(socket, bytes.baseAddress! + sent, bytes.count - sent, Int32(MSG_NOSIGNAL) | flags)
            }
            if count > 0 {
                sent += count
            } else if errno == EAGAIN || errno == EINTR {
                try Self.wait(for: socket, events: Int16(POLLOUT), until: deadline)
            } else {
                // A reset on a reused connection shows here, before the server read anything.
                throw sent == 0 ? .closedBeforeReply(Self.errorText()) : .failed(.unreachable("sending failed: \(Self.errorText())"))
            }
        }
    }

    /// Reads more bytes into `received`; false at the end of the stream.
    private func receiveMore(until deadline: ContinuousClock.Instant) throws(ExchangeError) -> Bool {
        while true {
            let count = chunk.withUnsafeMutableBytes { Glibc.recv(socket, $0.baseAddress!, $0.count, 0) }
            if count > 0 {
                received += chunk[..<count]
                return true
            }
            if count == 0 { return false }
            guard errno == EAGAIN || errno == EINTR else {
                // A reset before any byte of the reply: the server dropped the connection.
                if received.isEmpty { throw .closedBeforeReply(Self.errorText()) }
                throw .failed(.unreachable("receiving failed: \(Self.errorText())"))
            }
            try Self.wait(for: socket, events: Int16(POLLIN), until: deadline)
        }
    }

    /// The reply, and whether the connection stays open after it.
    private func receiveReply(until deadline: ContinuousClock.Instant) throws(ExchangeError) -> (HTTPReply, Bool) {
        while true {
            let parser = ReplyParser(bytes: received)
            switch try parser.parse() {
            case .complete(let reply, let consumed, let keepOpen):
                received.removeFirst(consumed)
                // 1xx replies are interim: the real one follows.
                if (100..<200).contains(reply.status) { continue }
                return (reply, keepOpen)
            case .needMore:
                let gotMore = try receiveMore(until: deadline)
                if !gotMore {
                    if received.isEmpty { throw .closedBeforeReply("the server closed the connection") }
                    let atEnd = ReplyParser(bytes: received, atEndOfStream: true)
                    guard case .complete(let reply, _, _) = try atEnd.parse() else {
                        throw .failed(.unreachable("the server closed the connection in the middle of its reply"))
                    }
                    return (reply, false)
                }
            }
        }
    }

    /// Waits until `socket` is ready for `events`, or throws at the deadline.
    private static func wait(for socket: Int32, events: Int16, until deadline: ContinuousClock.Instant) throws(ExchangeError) {
        while true {
            let left = deadline - ContinuousClock.now
            guard left > .zero else { throw .failed(.timedOut) }
            let (seconds, attoseconds) = left.components
            let milliseconds = Int32(clamping: seconds * 1000 + attoseconds / 1_000_000_000_000_000 + 1)
            var descriptor = pollfd(fd: socket, events: events, revents: 0)
            let ready = poll(&descriptor, 1, milliseconds)
            if ready > 0 { return }
            if ready < 0 && errno != EINTR { throw .failed(.unreachable("poll failed: \(errorText())")) }
        }
    }

    private static func errorText() -> String { String(cString: strerror(errno)) }
}

/// How one exchange failed: on a connection that was closed before the server read the request
/// (a reused connection the server had dropped), or otherwise.
private enum ExchangeError: Error {
    case closedBeforeReply(String)
    case failed(HTTPTransportError)

    var `public`: HTTPTransportError {
        switch self {
        case .closedBeforeReply(let reason): .unreachable("the connection closed before a reply: \(reason)")
        case .failed(let error): error
        }
    }
}

/// Reads one HTTP/1.x reply from the bytes received so far.
struct ReplyParser {
    enum Outcome {
        case needMore
        /// The reply, the bytes it took, and whether the connection may carry another request.
        case complete(HTTPReply, consumed: Int, keepOpen: Bool)
    }

    let bytes: [UInt8]
    /// The server closed the connection: a body without a length ends here.
    var atEndOfStream = false

    init(bytes: [UInt8], atEndOfStream: Bool = false) {
        self.bytes = bytes
        self.atEndOfStream = atEndOfStream
    }

    fileprivate func parse() throws(ExchangeError) -> Outcome {
        guard let headEnd = find([13, 10, 13, 10], from: 0) else {
            if bytes.count > 64 * 1024 || (bytes.count >= 5 && !bytes.starts(with: Self.statusPrefix)) {
                throw .failed(.notHTTP("the reply does not start with an HTTP/1 status line"))
            }
            return .needMore
        }
        // The status line: "HTTP/1.x NNN reason".
        let statusLineEnd = find([13, 10], from: 0) ?? headEnd
        let statusLine = bytes[..<statusLineEnd]
        guard statusLine.count >= 12, statusLine.starts(with: Self.statusPrefix + [UInt8(ascii: "1"), UInt8(ascii: ".")]),
              statusLine[8] == UInt8(ascii: " "), let status = Self.decimal(statusLine[9..<12]), status >= 100,
              statusLine.count == 12 || statusLine[12] == UInt8(ascii: " ")
        else {
            throw .failed(.notHTTP("the reply does not start with an HTTP/1 status line: \(String(decoding: statusLine.prefix(80), as: UTF8.self))"))
        }
        var headers: [(name: String, value: String)] = []
        var lineStart = statusLineEnd + 2
        while lineStart < headEnd {
            let lineEnd = find([13, 10], from: lineStart) ?? headEnd
            let line = bytes[lineStart..<lineEnd]
            if let colon = line.firstIndex(of: UInt8(ascii: ":")) {
                headers.append((
                    String(decoding: line[..<colon], as: UTF8.self).lowercased(),
                    String(decoding: line[(colon + 1)...], as: UTF8.self).trimmingHTTPWhitespace))
            }
            lineStart = lineEnd + 2
        }
        let reply = { (body: [UInt8]) in HTTPReply(status: status, headers: headers, body: body) }
        let connection = headers.first { $0.name == "connection" }?.value ?? ""
        var keepOpen = statusLine[7] == UInt8(ascii: "1") ? !connection.listsHTTPToken("close") : connection.listsHTTPToken("keep-alive")
        let bodyStart = headEnd + 4
        if (100..<200).contains(status) || status == 204 || status == 304 {
            return .complete(reply([]), consumed: bodyStart, keepOpen: keepOpen)
        }
        if headers.contains(where: { $0.name == "transfer-encoding" && $0.value.listsHTTPToken("chunked") }) {
            guard let (body, end) = try chunkedBody(from: bodyStart) else { return .needMore }
            return .complete(reply(body), consumed: end, keepOpen: keepOpen)
        }
        if let lengthText = headers.first(where: { $0.name == "content-length" })?.value {
            guard let length = Int(lengthText), length >= 0, length <= HTTPReply.maxBodySize else {
                throw .failed(.notHTTP("the reply's Content-Length '\(lengthText)' is not a length Sonde reads"))
            }
            guard bytes.count - bodyStart >= length else { return .needMore }
            return .complete(reply(Array(bytes[bodyStart..<bodyStart + length])), consumed: bodyStart + length, keepOpen: keepOpen)
        }
        // No length: the body runs to the end of the stream.
        keepOpen = false
        guard atEndOfStream else {
            if bytes.count - bodyStart > HTTPReply.maxBodySize { throw .failed(.notHTTP("the reply's body is too large")) }
            return .needMore
        }
        return .complete(reply(Array(bytes[bodyStart...])), consumed: bytes.count, keepOpen: keepOpen)
    }

    /// A chunked body and where it ends, or nil while incomplete.
    private func chunkedBody(from start: Int) throws(ExchangeError) -> ([UInt8], Int)? {
        var body: [UInt8] = []
        var position = start
        while true {
            guard let lineEnd = find([13, 10], from: position) else { return nil }
            let sizeText = String(decoding: bytes[position..<lineEnd], as: UTF8.self).split(separator: ";").first ?? ""
            guard let size = Int(sizeText.trimmingHTTPWhitespace, radix: 16), size >= 0, body.count + size <= HTTPReply.maxBodySize else {
                throw .failed(.notHTTP("the reply's chunk size '\(sizeText.prefix(20))' is not valid"))
            }
            position = lineEnd + 2
            if size == 0 {
                // Trailers, if any, end with an empty line.
                guard let trailerEnd = find([13, 10], from: position) else { return nil }
                if trailerEnd == position { return (body, position + 2) }
                guard let end = find([13, 10, 13, 10], from: position) else { return nil }
                return (body, end + 4)
            }
            guard bytes.count >= position + size + 2 else { return nil }
            body += bytes[position..<position + size]
            position += size + 2
        }
    }

    private static let statusPrefix = Array("HTTP/".utf8)

    /// Three ASCII digits.
    private static func decimal(_ digits: ArraySlice<UInt8>) -> Int? {
        var value = 0
        for digit in digits {
            guard digit >= UInt8(ascii: "0"), digit <= UInt8(ascii: "9") else { return nil }
            value = value * 10 + Int(digit - UInt8(ascii: "0"))
        }
        return value
    }

    private func find(_ pattern: [UInt8], from start: Int) -> Int? {
        guard bytes.count >= pattern.count else { return nil }
        var index = start
        while index + pattern.count <= bytes.count {
            if bytes[index] == pattern[0] {
                var matched = 1
                while matched < pattern.count && bytes[index + matched] == pattern[matched] { matched += 1 }
                if matched == pattern.count { return index }
            }
            index += 1
        }
        return nil
    }
}
