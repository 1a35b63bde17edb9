import Engine
import Foundation
import TestSupport
import XCTest

/// go/grpc traces the calls grpc makes (`invoke`, once each time an interceptor calls on). A call
/// that fails before its stream exists ends at the one RET of `invoke` that only failures reach,
/// with its status. A call that fails once its stream exists (no server) is finished first and
/// then takes that RET too: the span ends once, and nothing is counted as a return without its
/// entry. A call an interceptor answers without calling grpc is no client call at all.
final class GRPCClientErrorTests: XCTestCase {
    func testFailedCallsEndOnceWithTheirStatusAndARefusedCallIsNoSpan() async throws {
        let missing = KernelCapabilities.missing()
        if !missing.isEmpty { throw TestEnvironment.missingKernelCapability(missing) }
        let front = try GoToolchains.build("demo/two-service/front", with: try GoToolchain.debian.installed(), name: "front-go119")
        let portFile = FileManager.default.temporaryDirectory.appendingPathComponent("sonde-front-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: portFile) }
        // Neither call leaves the process: no back end is needed.
        let frontProcess = try ChildProcess(front, ["-port-file", portFile, "-back-http", "127.0.0.1:1", "-back-grpc", "127.0.0.1:1"])
        defer { _ = try? frontProcess.stop(signal: SIGKILL) }
        try frontProcess.waitForOutput("listening")
        let port = try XCTUnwrap(Int(String(contentsOfFile: portFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)))
        let receiver = try OTLPReceiver()
        let sonde = try ChildProcess(
            Repository.sonde, ["run", "--pid", String(frontProcess.pid), "--pack", "go/grpc", "--pack", "go/net-http"],
            environment: ["OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint])
        try sonde.waitForOutput("attached")
        let statuses = try await sendRequests(["/api/unsent/backend", "/api/refused/backend", "/api/health/backend"], port: port, concurrency: 1)
        XCTAssertEqual(statuses, [502, 502, 502])
        XCTAssertEqual(try sonde.stop(signal: SIGINT), 0, sonde.text)
        XCTAssertTrue(sonde.text.contains("returns without a seen entry: 0"), sonde.text)
        XCTAssertFalse(sonde.text.contains("unwound") || sonde.text.contains("reclaimed"), sonde.text)

        let spans = try receiver.spans()
        let servers = Dictionary(uniqueKeysWithValues: spans.filter { $0["kind"] as? String == "SPAN_KIND_SERVER" }.map {
            (attributes($0)["url.path"] as? String ?? "", $0)
        })
        XCTAssertEqual(Set(servers.keys), ["/api/unsent/backend", "/api/refused/backend", "/api/health/backend"])
        let clientSpans = spans.filter { $0["kind"] as? String == "SPAN_KIND_CLIENT" }
        XCTAssertEqual(clientSpans.count, 2, sonde.text)
        // No codec is registered for the content subtype: INTERNAL before anything is sent. Nothing
        // listens on port 1: UNAVAILABLE, once the stream existed.
        let expected = ["/api/unsent/backend": 13, "/api/health/backend": 14]
        for span in clientSpans {
            XCTAssertEqual(span["name"] as? String, "grpc.health.v1.Health/Check")
            XCTAssertEqual(attributes(span)["rpc.method"] as? String, "Check")
            XCTAssertEqual((span["status"] as? [String: Any])?["code"] as? String, "STATUS_CODE_ERROR")
            let parent = try XCTUnwrap(servers.first { $0.value["span_id"] as? String == span["parent_span_id"] as? String })
            XCTAssertEqual(attributes(span)["rpc.grpc.status_code"] as? Int, expected[parent.key], parent.key)
        }
        XCTAssertEqual(Set(clientSpans.compactMap { attributes($0)["rpc.grpc.status_code"] as? Int }), [13, 14])
    }
}
