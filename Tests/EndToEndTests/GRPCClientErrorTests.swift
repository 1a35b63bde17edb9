import Engine
import Foundation
import TestSupport
import XCTest

/// A unary gRPC call can fail with an error that carries no gRPC status (an interceptor's own, a
/// wrapped one); grpc reports such an error as UNKNOWN, and so must its CLIENT span.
final class GRPCClientErrorTests: XCTestCase {
    func testCallFailedByAnInterceptorIsAnErrorWithCodeUnknown() async throws {
        let missing = KernelCapabilities.missing()
        if !missing.isEmpty { throw TestEnvironment.missingKernelCapability(missing) }
        let front = try GoToolchains.build("demo/two-service/front", with: try GoToolchain.debian.installed(), name: "front-go119")
        let portFile = FileManager.default.temporaryDirectory.appendingPathComponent("sonde-front-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: portFile) }
        // The refused call never leaves the process: no back end is needed.
        let frontProcess = try ChildProcess(front, ["-port-file", portFile, "-back-http", "127.0.0.1:1", "-back-grpc", "127.0.0.1:1"])
        defer { _ = try? frontProcess.stop(signal: SIGKILL) }
        try frontProcess.waitForOutput("listening")
        let port = try XCTUnwrap(Int(String(contentsOfFile: portFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)))
        let receiver = try OTLPReceiver()
        let sonde = try ChildProcess(
            Repository.sonde, ["run", "--pid", String(frontProcess.pid), "--pack", "go/grpc", "--pack", "go/net-http"],
            environment: ["OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint])
        try sonde.waitForOutput("attached")
        let statuses = try await sendRequests(["/api/refused/backend"], port: port, concurrency: 1)
        XCTAssertEqual(statuses, [502])
        XCTAssertEqual(try sonde.stop(signal: SIGINT), 0, sonde.text)

        let clientSpans = try receiver.spans().filter { $0["kind"] as? String == "SPAN_KIND_CLIENT" }
        XCTAssertEqual(clientSpans.count, 1, sonde.text)
        let span = try XCTUnwrap(clientSpans.first)
        XCTAssertEqual(span["name"] as? String, "grpc.health.v1.Health/Check")
        XCTAssertEqual((span["status"] as? [String: Any])?["code"] as? String, "STATUS_CODE_ERROR")
        XCTAssertEqual(attributes(span)["rpc.grpc.status_code"] as? Int, 2)
        XCTAssertEqual(attributes(span)["rpc.method"] as? String, "Check")
    }
}
