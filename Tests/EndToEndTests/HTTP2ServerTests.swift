import Engine
import Foundation
import TestSupport
import XCTest

/// HTTP/2 requests (TLS, ALPN "h2") run on a goroutine each and end in the HTTP/2 response
/// writer's handlerDone, not in finishRequest: the bundled copy before Go 1.27, the
/// net/http/internal/http2 package from 1.27. Each ends its server span with the status.
final class HTTP2ServerTests: XCTestCase {
    override func setUpWithError() throws {
        try TracingTestSetup.requireKernelCapabilities()
    }

    func testGo119BundledHTTP2() throws {
        try checkHTTP2Spans(with: GoToolchain.debian, name: "demo-go119", absent: "go/net-http/server-finished-internal-http2")
    }

    func testGo127InternalHTTP2() throws {
        try checkHTTP2Spans(with: GoToolchain.goBin(minor: "1.27"), name: "demo-go127", absent: "go/net-http/server-finished-http2")
    }

    /// `absent`: the end probe of the other HTTP/2 package, which this Go version does not have.
    private func checkHTTP2Spans(with toolchain: GoToolchain, name: String, absent: String) throws {
        let binary = try GoToolchains.build("demo/go-http-server", with: toolchain.installed(), name: name)
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("sonde-h2-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let (certificate, key) = (directory + "/cert.pem", directory + "/key.pem")
        _ = try ChildProcess.run(try TestEnvironment.tool("OPENSSL"), [
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", certificate, "-days", "1", "-subj", "/CN=127.0.0.1",
        ])

        let receiver = try OTLPReceiver()
        let server = try ChildProcess(binary, ["-port-file", directory + "/port", "-tls-cert", certificate, "-tls-key", key])
        defer { _ = try? server.stop(signal: SIGKILL) }
        try server.waitForOutput("listening")
        let port = try String(contentsOfFile: directory + "/port", encoding: .utf8)
        let sonde = try ChildProcess(
            Repository.sonde, ["run", "--pid", String(server.pid), "--pack", "go/net-http"],
            environment: ["OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint])
        try sonde.waitForOutput("attached")
        // Not a problem to report as one: a single line names what the binary lacks.
        XCTAssertTrue(sonde.text.contains("not probed, their functions are not in this binary: \(absent)\n"), sonde.text)
        XCTAssertFalse(sonde.text.contains("skipped "), sonde.text)

        let paths = ["/hello", "/created", "/fail", "/hello"]
        for path in paths {
            let answer = try ChildProcess.run(try TestEnvironment.tool("CURL"), [
                "--http2", "--insecure", "--silent", "--output", "/dev/null", "--write-out", "%{http_version} %{http_code}",
                "https://127.0.0.1:\(port)\(path)",
            ])
            XCTAssertEqual(answer, ["/created": "2 201", "/fail": "2 500"][path] ?? "2 200")
        }
        XCTAssertEqual(try sonde.stop(signal: SIGINT), 0, sonde.text)
        let spans = try receiver.spans()
        XCTAssertEqual(spans.map(nameAndPath), paths.map { "GET \($0)" }, sonde.text)
        XCTAssertEqual(spans.map { attributes($0)["http.response.status_code"] as? Int }, [200, 201, 500, 200])
        XCTAssertEqual(spans.map { attributes($0)["url.scheme"] as? String }, Array(repeating: "https", count: 4))
        XCTAssertEqual(
            spans.map { ($0["status"] as? [String: Any])?["code"] as? String },
            ["STATUS_CODE_UNSET", "STATUS_CODE_UNSET", "STATUS_CODE_ERROR", "STATUS_CODE_UNSET"])
        XCTAssertTrue(sonde.text.contains("returns without a seen entry: 0"), sonde.text)
    }
}
