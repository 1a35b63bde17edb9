import Foundation
import TestSupport
import XCTest

/// cpp/httplib on a C++ server built here against Debian's libcpp-httplib, whose handler queries
/// a real PostgreSQL through libpq: server spans from one library, client spans from another,
/// joined on the request's thread.
final class HttplibTests: XCTestCase {
    static let library = "/usr/lib/x86_64-linux-gnu/libcpp-httplib.so.0.11"
    private var database: PostgresServer!

    override func setUpWithError() throws {
        try TracingTestSetup.requireKernelCapabilities()
        database = try PostgresServer()
        addTeardownBlock { [database] in database?.stop() }
    }

    /// `sonde plan` on the library: the span opens at routing's first push and ends at the tail
    /// jump of either response writer, every site one the kernel emulates.
    func testPlanOfTheLibraryUsesOnlyEmulatedSites() throws {
        let plan = try ChildProcess.run(Repository.sonde, ["plan", "--exe", Self.library, "--pack", "cpp/httplib"])
        XCTAssertTrue(plan.hasPrefix("attach plan for \(Self.library) (not Go, shared library libcpp-httplib.so.0.11 0.11.4)"), plan)
        let sites = plan.split(separator: "\n").filter { $0.hasPrefix("  entry  0x") || $0.hasPrefix("  return 0x") }
        XCTAssertEqual(sites.count, 3, plan)
        XCTAssertTrue(sites[0].contains("  push r15  [emulated (cheap)]"), plan)
        XCTAssertTrue(sites[1...].allSatisfy { $0.contains("  jmp 0x") && $0.hasSuffix("[emulated (cheap)]") }, plan)
        XCTAssertTrue(plan.hasSuffix("per request, if each probed function runs once: 3 emulated + 0 single-stepped hits ≈ 1.95 µs of traps\n"), plan)
    }

    func testRequestsAreServerSpansAndTheirStatementsTheirChildren() async throws {
        let binary = "\(try temporaryDirectory())/httplib-server"
        _ = try ChildProcess.run(try TestEnvironment.tool("GXX"), [
            "-O2", "-I/usr/include/postgresql", "-o", binary, "\(Repository.root)/Tests/Support/httplib-server/server.cc",
            "-lcpp-httplib", "-lpq", "-pthread",
        ])
        let server = try ChildProcess(binary, [database.connection])
        defer { _ = try? server.stop() }
        try server.waitForOutput("listening")
        let port = try XCTUnwrap(Int(server.text.split(separator: " ")[1].prefix { $0.isNumber }))
        let receiver = try OTLPReceiver()
        let sonde = try ChildProcess(
            Repository.sonde, ["run", "--pid", String(server.pid), "--pack", "cpp/httplib", "--pack", "c/libpq"],
            environment: ["OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint])
        try sonde.waitForOutput("attached")
        XCTAssertTrue(sonde.text.contains("attached 3 probe sites for 3 probes in libcpp-httplib.so.0.11.4, which \(binary) maps, "), sonde.text)
        XCTAssertTrue(sonde.text.contains("15 probe sites for 12 probes in libpq.so.5.15, which \(binary) maps"), sonde.text)

        let statuses = try await sendRequests(["/hello", "/double/21", "/unavailable", "/throw", "/nope"], port: port, concurrency: 1)
        XCTAssertEqual(statuses, [200, 200, 503, 500, 404])
        XCTAssertEqual(try sonde.stop(signal: SIGINT), 0, sonde.text)
        XCTAssertTrue(sonde.text.contains("returns without a seen entry: 0"), sonde.text)

        let spans = try receiver.spans().filter { ($0["resource"] as? [String: Any])?["process.pid"] as? Int == Int(server.pid) }
        let requests = spans.filter { $0["kind"] as? String == "SPAN_KIND_SERVER" }
            .sorted { ($0["start_time_unix_nano"] as? Int ?? 0) < ($1["start_time_unix_nano"] as? Int ?? 0) }
        func summary(_ span: [String: Any]) -> String {
            var attributes = EndToEndTests.attributes(span).mapValues { "\($0)" }
            XCTAssertGreaterThan(Int(attributes.removeValue(forKey: "client.port") ?? "") ?? 0, 0, "client.port: \(span)")
            let status = span["status"] as? [String: Any]
            return "\(span["name"] ?? "?") [\(status?["code"] ?? "?") \(status?["message"] ?? "")] "
                + attributes.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        }
        func expected(_ path: String, _ status: Int, error: String = "") -> String {
            "GET [\(error.isEmpty ? "STATUS_CODE_UNSET" : "STATUS_CODE_ERROR") \(error)] client.address=127.0.0.1 http.request.method=GET "
                + "http.response.status_code=\(status) server.port=\(port) url.path=\(path)"
        }
        XCTAssertEqual(requests.map(summary), [
            expected("/hello", 200),
            expected("/double/21", 200),
            expected("/unavailable", 503, error: "status 503"),
            expected("/throw", 500, error: "unrouted_status 500"),
            expected("/nope", 404),
        ])
        for request in requests {
            XCTAssertEqual(request["parent_span_id"] as? String, "", "a request without a traceparent starts a trace")
        }

        // The statement the /double handler ran, on the request's thread, is that request's child.
        let statements = spans.filter { $0["kind"] as? String == "SPAN_KIND_CLIENT" }
        XCTAssertEqual(statements.count, 1, "\(statements)")
        let statement = try XCTUnwrap(statements.first)
        XCTAssertEqual(statement["name"] as? String, "SELECT")
        XCTAssertEqual(EndToEndTests.attributes(statement)["db.query.text"] as? String, "select $1::int * 2")
        XCTAssertEqual(statement["trace_id"] as? String, requests[1]["trace_id"] as? String)
        XCTAssertEqual(statement["parent_span_id"] as? String, requests[1]["span_id"] as? String)
        let (start, end) = (statement["start_time_unix_nano"] as? Int ?? 0, statement["end_time_unix_nano"] as? Int ?? 0)
        XCTAssertLessThan(requests[1]["start_time_unix_nano"] as? Int ?? .max, start)
        XCTAssertLessThan(end, requests[1]["end_time_unix_nano"] as? Int ?? 0)
    }
}
