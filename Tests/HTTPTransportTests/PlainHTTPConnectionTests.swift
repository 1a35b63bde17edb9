import Foundation
import XCTest

@testable import HTTPTransport

/// The plain-HTTP client against a server that answers with exactly the bytes each test gives:
/// the reply framings HTTP/1.1 allows, connection reuse, and every way a reply can fail.
final class PlainHTTPConnectionTests: XCTestCase {
    private let post = HTTPPost(headers: [("Content-Type", "application/x-protobuf"), ("x-tenant", "acme")], body: Array("spans".utf8))

    private func connection(to server: ScriptedServer) -> PlainHTTPConnection {
        PlainHTTPConnection(endpoint: HTTPEndpoint(isSecure: false, host: "127.0.0.1", port: server.port, target: "/v1/traces"))
    }

    func testRequestsShareOneConnectionAndAreSentExactly() throws {
        let server = try ScriptedServer([[
            .reply("HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\nContent-Length: 2\r\n\r\nok"),
            .reply("HTTP/1.1 503 Service Unavailable\r\nRetry-After: 7\r\nContent-Length: 4\r\n\r\nbusy"),
        ]])
        let client = connection(to: server)

        XCTAssertEqual(
            try client.post(post, timeout: .seconds(5)),
            HTTPReply(status: 200, headers: [("content-type", "application/x-protobuf"), ("content-length", "2")], body: Array("ok".utf8)))
        let second = try client.post(post, timeout: .seconds(5))
        XCTAssertEqual([second.status], [503])
        XCTAssertEqual(second.header("Retry-After"), "7")
        XCTAssertEqual(second.body, Array("busy".utf8))

        let expected = "POST /v1/traces HTTP/1.1\r\nHost: 127.0.0.1:\(server.port)\r\nContent-Type: application/x-protobuf\r\n"
            + "x-tenant: acme\r\nContent-Length: 5\r\n\r\nspans"
        XCTAssertEqual(server.requests, [expected, expected])
        XCTAssertEqual(server.connectionsAccepted, 1, "keep-alive")
    }

    func testChunkedCloseDelimitedAndInterimReplies() throws {
        let server = try ScriptedServer([
            [.reply("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nX-Trailer: 1\r\n\r\n")],
            [.reply("HTTP/1.0 200 OK\r\n\r\nuntil the end"), .close],
            [.reply("HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n"), .close],
            [.reply("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")],
        ])
        let client = connection(to: server)

        XCTAssertEqual(try client.post(post, timeout: .seconds(5)).body, Array("abcde".utf8))
        // Still open after the chunked reply: the second post reuses it, but the script moved on
        // to its next connection, so this connection closes and the client reconnects.
        XCTAssertEqual(try client.post(post, timeout: .seconds(5)).body, Array("until the end".utf8))
        XCTAssertEqual(try client.post(post, timeout: .seconds(5)).status, 204)
        XCTAssertEqual(try client.post(post, timeout: .seconds(5)).status, 200)
        XCTAssertEqual(server.requests.count, 4)
        XCTAssertEqual(server.connectionsAccepted, 4)
    }

    /// Header values lose the HTTP white space around them, never what is inside, and a
    /// `Connection` or `Transfer-Encoding` list is read token by token.
    func testHeaderValuesAreTrimmedAndReadAsTokenLists() {
        XCTAssertEqual([" \t keep-alive\r\n", "a b", "\t\t", "", " é "].map(\.trimmingHTTPWhitespace), ["keep-alive", "a b", "", "", "é"])
        XCTAssertEqual(["Keep-Alive, Close", "close", " CLOSE ", "closed", "keep-alive", "x-close, upgrade"].map { $0.listsHTTPToken("close") },
                       [true, true, true, false, false, false])
        XCTAssertEqual("gzip, chunked".listsHTTPToken("chunked"), true)
    }

    /// A server drops an idle keep-alive connection without saying so: the next post finds it
    /// closed before any reply and goes again on a new connection, once.
    func testAConnectionTheServerDroppedIsReopened() throws {
        let server = try ScriptedServer([
            [.reply("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na"), .close],
            [.reply("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nb")],
        ])
        let client = connection(to: server)

        XCTAssertEqual(try client.post(post, timeout: .seconds(5)).body, Array("a".utf8))
        Thread.sleep(forTimeInterval: 0.1)   // the close reaches the client
        XCTAssertEqual(try client.post(post, timeout: .seconds(5)).body, Array("b".utf8))
        XCTAssertEqual(server.requests.count, 2)
        XCTAssertEqual(server.connectionsAccepted, 2)
    }

    func testFailuresSayWhatHappened() throws {
        let silent = try ScriptedServer([[.silent]])
        let started = ContinuousClock.now
        XCTAssertThrowsError(try connection(to: silent).post(post, timeout: .milliseconds(200))) {
            XCTAssertEqual($0 as? HTTPTransportError, .timedOut)
        }
        XCTAssertLessThan(ContinuousClock.now - started, .seconds(2))

        let ssh = try ScriptedServer([[.reply("SSH-2.0-OpenSSH_9.2\r\n"), .close]])
        XCTAssertThrowsError(try connection(to: ssh).post(post, timeout: .seconds(5))) {
            XCTAssertEqual($0 as? HTTPTransportError, .notHTTP("the reply does not start with an HTTP/1 status line"))
        }

        let cut = try ScriptedServer([[.reply("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"), .close]])
        XCTAssertThrowsError(try connection(to: cut).post(post, timeout: .seconds(5))) {
            XCTAssertEqual($0 as? HTTPTransportError, .unreachable("the server closed the connection in the middle of its reply"))
        }

        let closed = try ScriptedServer([])
        let port = closed.port
        closed.stop()
        XCTAssertThrowsError(try PlainHTTPConnection(endpoint: HTTPEndpoint(isSecure: false, host: "127.0.0.1", port: port, target: "/"))
            .post(post, timeout: .seconds(5))) {
            XCTAssertEqual($0 as? HTTPTransportError, .unreachable("connecting failed: Connection refused"))
        }

        XCTAssertThrowsError(try PlainHTTPConnection(endpoint: HTTPEndpoint(isSecure: false, host: "no-such-host.invalid", port: 80, target: "/"))
            .post(post, timeout: .seconds(5))) {
            guard case .unreachable(let reason)? = $0 as? HTTPTransportError else { return XCTFail("\($0)") }
            XCTAssertTrue(reason.hasPrefix("cannot resolve no-such-host.invalid: "), reason)
        }
    }
}

/// A TCP server on 127.0.0.1 that plays one script per connection it accepts, in order: for each
/// request it reads (headers and a Content-Length body), the next step.
final class ScriptedServer: @unchecked Sendable {
    enum Step {
        /// Answer the request with these bytes.
        case reply(String)
        /// Close the connection (without reading another request).
        case close
        /// Read the request and never answer.
        case silent
    }

    let port: Int
    private let listener: Int32
    private let lock = NSLock()
    private var recorded: [String] = []
    private var accepted = 0
    private var open: [Int32] = []

    var requests: [String] { lock.withLock { recorded } }
    var connectionsAccepted: Int { lock.withLock { accepted } }

    init(_ scripts: [[Step]]) throws {
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        self.listener = listener
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { address in
                bind(listener, address, length) == 0 && listen(listener, 8) == 0 && getsockname(listener, address, &length) == 0
            }
        }
        guard bound else { throw NSError(domain: "ScriptedServer", code: Int(errno)) }
        port = Int(UInt16(bigEndian: address.sin_port))
        let thread = Thread { [self] in serve(scripts) }
        thread.start()
    }

    deinit { stop() }

    func stop() {
        shutdown(listener, Int32(SHUT_RDWR))
        close(listener)
        lock.withLock { open.forEach { shutdown($0, Int32(SHUT_RDWR)) } }
    }

    private func serve(_ scripts: [[Step]]) {
        for script in scripts {
            let connection = accept(listener, nil, nil)
            guard connection >= 0 else { return }
            lock.withLock {
                accepted += 1
                open.append(connection)
            }
            var pending: [UInt8] = []
            for step in script {
                if case .close = step { break }
                guard let request = readRequest(connection, &pending) else { break }
                lock.withLock { recorded.append(request) }
                switch step {
                case .reply(let bytes): _ = Array(bytes.utf8).withUnsafeBytes { send(connection, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                case .silent: _ = readRequest(connection, &pending)   // until the client gives up and closes
                case .close: break
                }
            }
            shutdown(connection, Int32(SHUT_RDWR))
            close(connection)
        }
    }

    /// One request's text, or nil when the connection closed first.
    private func readRequest(_ connection: Int32, _ pending: inout [UInt8]) -> String? {
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            if let headEnd = pending.firstRange(of: Array("\r\n\r\n".utf8))?.upperBound {
                let head = String(decoding: pending[..<headEnd], as: UTF8.self)
                let length = head.split(separator: "\r\n").first { $0.lowercased().hasPrefix("content-length:") }
                    .flatMap { Int($0.split(separator: ":")[1].trimmingCharacters(in: .whitespaces)) } ?? 0
                if pending.count >= headEnd + length {
                    let request = String(decoding: pending[..<(headEnd + length)], as: UTF8.self)
                    pending.removeFirst(headEnd + length)
                    return request
                }
            }
            let count = buffer.withUnsafeMutableBytes { recv(connection, $0.baseAddress, $0.count, 0) }
            guard count > 0 else { return nil }
            pending += buffer[..<count]
        }
    }
}
