import Foundation
import XCTest

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// A probe never changes what the traced program does: the demo server's answers under load with
/// every pack that applies attached are, byte for byte, those of the same binary untraced (issue 11).
/// Run by GoMatrixTests for every toolchain.
enum ResponseIdentityScenario {
    /// Routes with answers that depend on nothing but the request: plain and failing handlers, a
    /// ServeMux 404, client calls made here and from a goroutine, nested and panicking client calls.
    /// (/relay is left out: where the kernel allows it, sonde adds a traceparent to what it relays.)
    static let paths = [
        "/hello", "/created", "/fail", "/no/such/page", "/slow?ms=5", "/proxy", "/proxy-async", "/proxy-recovered",
        "/nested?depth=2", "/nested?depth=3&panic=1",
    ]
    static let rounds = 20

    /// One answer: its status, its headers but `Date`, and its body.
    struct Answer: Equatable, CustomStringConvertible {
        var status: Int
        var headers: [String: String]
        var body: Data
        var description: String { "\(status) \(headers.sorted { $0.key < $1.key }) \(String(decoding: body, as: UTF8.self).debugDescription)" }
    }

    static func compare(go: String, variant: String) async throws {
        let binary = try GoToolchains.build("demo/go-http-server", with: go, name: "demo-\(variant)")
        let portFile = FileManager.default.temporaryDirectory.appendingPathComponent("sonde-e2e-port-\(UUID().uuidString)").path
        let plain = try ChildProcess(binary, ["-port-file", portFile])
        defer { _ = try? plain.stop(signal: SIGKILL) }
        try plain.waitForOutput("listening")
        let untraced = try await answers(port: try XCTUnwrap(Int(String(contentsOfFile: portFile, encoding: .utf8))))
        _ = try plain.stop(signal: SIGKILL)

        let server = try TracedDemoServer(binary: binary, sondeArguments: [])
        defer { _ = try? server.server.stop(signal: SIGKILL) }
        let traced = try await answers(port: server.port)
        XCTAssertEqual(try server.sonde.stop(signal: SIGINT), 0, server.sonde.text)
        XCTAssertTrue(server.sonde.text.contains(" exported, 0 dropped"), server.sonde.text)

        for path in paths {
            let reference = try XCTUnwrap(untraced[path]?.first, path)
            XCTAssertEqual(untraced[path]?.count, rounds, path)
            XCTAssertEqual(traced[path]?.count, rounds, path)
            for answer in (untraced[path] ?? []) + (traced[path] ?? []) where answer != reference {
                XCTFail("\(variant) \(path): \(answer) differs from \(reference)")
            }
        }
    }

    /// `rounds` answers for each path, 8 requests at a time.
    private static func answers(port: Int) async throws -> [String: [Answer]] {
        let session = URLSession(configuration: .ephemeral)
        var answers: [String: [Answer]] = [:]
        try await withThrowingTaskGroup(of: (String, Answer).self) { group in
            var pending = Array(repeating: paths, count: rounds).joined().makeIterator()
            func startNext() {
                guard let path = pending.next() else { return }
                group.addTask {
                    let (body, response) = try await session.data(from: URL(string: "http://127.0.0.1:\(port)\(path)")!)
                    let http = response as! HTTPURLResponse
                    var headers: [String: String] = [:]
                    for case (let name as String, let value as String) in http.allHeaderFields where name.lowercased() != "date" {
                        headers[name.lowercased()] = value
                    }
                    return (path, Answer(status: http.statusCode, headers: headers, body: body))
                }
            }
            for _ in 0..<8 { startNext() }
            while let (path, answer) = try await group.next() {
                answers[path, default: []].append(answer)
                startNext()
            }
        }
        return answers
    }
}
