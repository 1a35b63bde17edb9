import Engine
import Foundation
import TestSupport
import XCTest

/// W3C trace context across services: a traced server continues the traceparent its request
/// carries (Go's header map before and after its Go 1.24 rewrite, plain and stripped builds), a
/// traced client sends its own span's, and everything that cannot be honoured is counted.
final class TraceContextTests: XCTestCase {
    override func setUpWithError() throws {
        try TracingTestSetup.requireKernelCapabilities()
    }

    static let traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
    static let parentID = "00f067aa0ba902b7"
    static let traceState = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"

    func testGo119ContinuesIncomingTraceparent() throws {
        try checkIncomingTraceContext(go: GoToolchain.debian, variant: "go119")
    }

    func testGo119StrippedContinuesIncomingTraceparent() throws {
        try checkIncomingTraceContext(go: GoToolchain.debian, flags: ["-ldflags=-s -w"], variant: "go119-stripped")
    }

    /// Go 1.24 replaced the map implementation (swiss tables): the header map is searched another way.
    func testGo127ContinuesIncomingTraceparent() throws {
        try checkIncomingTraceContext(go: GoToolchain.goBin(minor: "1.27"), variant: "go127")
    }

    func testGo127StrippedContinuesIncomingTraceparent() throws {
        try checkIncomingTraceContext(go: GoToolchain.goBin(minor: "1.27"), flags: ["-ldflags=-s -w"], variant: "go127-stripped")
    }

    /// Valid headers are continued (also among 40 others, a map of several groups or buckets), an
    /// unsampled caller's trace is not recorded, and each malformed header starts a new trace.
    private func checkIncomingTraceContext(go toolchain: GoToolchain, flags: [String] = [], variant: String) throws {
        let binary = try GoToolchains.build("demo/go-http-server", with: toolchain.installed(), flags: flags, name: "demo-\(variant)")
        let traced = try TracedDemoServer(binary: binary, sondeArguments: ["--pack", "go/net-http"])
        defer { _ = try? traced.server.stop(signal: SIGKILL) }
        let manyHeaders = (1...40).flatMap { ["-H", "X-Filler-\($0): value \($0)"] }
        // The first whole members of a tracestate longer than the 96 bytes kept.
        let longState = (1...12).map { "vendor\($0)=value\($0)" }.joined(separator: ",")
        let requests: [(path: String, headers: [String])] = [
            ("/hello", ["-H", "traceparent: 00-\(Self.traceID)-\(Self.parentID)-01", "-H", "tracestate: \(Self.traceState)"]),
            ("/created", manyHeaders + ["-H", "traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"]),
            ("/hello?long", ["-H", "traceparent: 00-\(Self.traceID)-b7ad6b7169203331-01", "-H", "tracestate: \(longState)"]),
            // A later version may add fields after a '-'.
            ("/fail", ["-H", "traceparent: 01-\(Self.traceID)-\(Self.parentID)-01-later"]),
            ("/hello?unsampled", ["-H", "traceparent: 00-\(Self.traceID)-\(Self.parentID)-00"]),
            ("/hello?upper", ["-H", "traceparent: 00-4BF92F3577B34DA6A3CE929D0E0E4736-\(Self.parentID)-01"]),
            ("/hello?zero-trace", ["-H", "traceparent: 00-00000000000000000000000000000000-\(Self.parentID)-01"]),
            ("/hello?zero-span", ["-H", "traceparent: 00-\(Self.traceID)-0000000000000000-01"]),
            ("/hello?version-ff", ["-H", "traceparent: ff-\(Self.traceID)-\(Self.parentID)-01"]),
            ("/hello?short", ["-H", "traceparent: 00-\(Self.traceID)-\(Self.parentID)"]),
            ("/hello?long-version-00", ["-H", "traceparent: 00-\(Self.traceID)-\(Self.parentID)-01-x"]),
            ("/hello?none", []),
        ]
        for request in requests {
            _ = try ChildProcess.run(try TestEnvironment.tool("CURL"), [
                "--silent", "--output", "/dev/null", "http://127.0.0.1:\(traced.port)\(request.path)",
            ] + request.headers)
        }
        XCTAssertEqual(try traced.sonde.stop(signal: SIGINT), 0, traced.sonde.text)
        let spans = try traced.spans()
        XCTAssertEqual(spans.map(nameAndPath), ["GET /hello", "GET /created", "GET /hello", "GET /fail"] + Array(repeating: "GET /hello", count: 7))
        func summary(_ span: [String: Any]) -> String {
            "\(span["trace_id"] as? String ?? "?") \(span["parent_span_id"] as? String ?? "?") \(span["trace_state"] as? String ?? "?") \(span["flags"] as? Int ?? -1)"
        }
        // Sampled (1), with a remote parent (0x100 | 0x200).
        XCTAssertEqual(spans.prefix(4).map(summary), [
            "\(Self.traceID) \(Self.parentID) \(Self.traceState) 769",
            "0af7651916cd43dd8448eb211c80319c b7ad6b7169203331  769",
            "\(Self.traceID) b7ad6b7169203331 \((1...6).map { "vendor\($0)=value\($0)" }.joined(separator: ",")) 769",
            "\(Self.traceID) \(Self.parentID)  769",
        ])
        for span in spans.dropFirst(4) {
            XCTAssertEqual(span["parent_span_id"] as? String, "", "a new trace: \(span)")
            XCTAssertEqual(span["flags"] as? Int, 1)
            XCTAssertNotEqual(span["trace_id"] as? String, Self.traceID)
        }
        XCTAssertTrue(traced.sonde.text.contains("; spans not recorded (their caller did not sample the trace): 1;"), traced.sonde.text)
        XCTAssertTrue(traced.sonde.text.contains("; malformed incoming traceparent headers (ignored): 6"), traced.sonde.text)
        XCTAssertFalse(traced.sonde.text.contains("header maps too large"), traced.sonde.text)
    }

    /// gRPC calls whose metadata carries a traceparent and tracestate (unary Check, streaming
    /// Watch): each server span continues them, found in the HEADERS frame and carried to the
    /// stream's goroutine.
    func testGRPCServerContinuesTheTraceparentOfItsMetadata() throws {
        let back = try GoToolchains.build("demo/two-service/back", with: GoToolchain.debian.installed(), name: "back-go119")
        let client = try GoToolchains.build("Tests/Support/grpc-client", with: GoToolchain.debian.installed(), name: "grpc-client")
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("sonde-grpc-tc-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let server = try ChildProcess(back, ["-port-file", "\(directory)/ports"])
        defer { _ = try? server.stop(signal: SIGKILL) }
        try server.waitForOutput("grpc on")
        let grpcPort = try XCTUnwrap(try String(contentsOfFile: "\(directory)/ports", encoding: .utf8).split(whereSeparator: \.isWhitespace).last)
        let receiver = try OTLPReceiver()
        let sonde = try ChildProcess(
            Repository.sonde, ["run", "--pid", String(server.pid), "--pack", "go/grpc", "--pack", "go/runtime"],
            environment: ["OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint])
        try sonde.waitForOutput("attached")
        for traceparent in ["00-\(Self.traceID)-\(Self.parentID)-01", "00-\(Self.traceID)-\(Self.parentID)-00", "not-a-traceparent"] {
            XCTAssertEqual(try ChildProcess.run(client, ["127.0.0.1:\(grpcPort)", traceparent, Self.traceState]), "SERVING SERVING\n")
        }
        Thread.sleep(forTimeInterval: 1)   // the Watch stream ends on grpc's goroutine once the client cancels it
        XCTAssertEqual(try sonde.stop(signal: SIGINT), 0, sonde.text)
        let spans = try receiver.spans()
        XCTAssertEqual(spans.map { $0["name"] as? String }, Array(repeating: ["grpc.health.v1.Health/Check", "grpc.health.v1.Health/Watch"], count: 2).flatMap { $0 })
        XCTAssertEqual(spans.prefix(2).map { "\($0["trace_id"] as? String ?? "") \($0["parent_span_id"] as? String ?? "")" },
                       Array(repeating: "\(Self.traceID) \(Self.parentID)", count: 2))
        XCTAssertEqual(spans.prefix(2).map { $0["trace_state"] as? String }, [Self.traceState, Self.traceState])
        XCTAssertEqual(spans.suffix(2).map { $0["parent_span_id"] as? String }, ["", ""], "a malformed traceparent starts new traces")
        XCTAssertEqual(spans.suffix(2).map { $0["trace_state"] as? String }, ["", ""], "no tracestate without a valid traceparent")
        XCTAssertTrue(sonde.text.contains("; spans not recorded (their caller did not sample the trace): 2;"), sonde.text)
        XCTAssertTrue(sonde.text.contains("; malformed incoming traceparent headers (ignored): 2"), sonde.text)
    }

    /// An upstream instrumented with the OpenTelemetry Go SDK (Debian's golang-opentelemetry-otel-dev):
    /// the traced server's span is the child of the SDK's span.
    func testServerContinuesATraceStartedByTheOpenTelemetrySDK() throws {
        let client = try GoToolchains.build("Tests/Support/otel-client", with: GoToolchain.debian.installed(), name: "otel-client")
        let traced = try TracedDemoServer(binary: try TracingTestSetup.demoServer(), sondeArguments: ["--pack", "go/net-http"])
        defer { _ = try? traced.server.stop(signal: SIGKILL) }
        let upstream = try ChildProcess.run(client, ["http://127.0.0.1:\(traced.port)/hello"])
            .split(whereSeparator: \.isWhitespace).map(String.init)
        XCTAssertEqual(upstream.count, 2, "the client prints its trace and span ids: \(upstream)")
        XCTAssertEqual(try traced.sonde.stop(signal: SIGINT), 0, traced.sonde.text)
        let spans = try traced.spans()
        XCTAssertEqual(spans.map(nameAndPath), ["GET /hello"])
        XCTAssertEqual(spans.map { "\($0["trace_id"] as? String ?? "") \($0["parent_span_id"] as? String ?? "")" }, [upstream.joined(separator: " ")])
    }

    /// An application that sets its own traceparent: the client span records it as its parent and
    /// the request carries exactly that one header, whether or not Sonde could write its own.
    func testTraceparentSetByTheApplicationIsTheClientSpansParentAndSentOnce() throws {
        let traced = try TracedDemoServer(binary: try TracingTestSetup.demoServer(), sondeArguments: ["--pack", "go/net-http"])
        defer { _ = try? traced.server.stop(signal: SIGKILL) }
        let own = "00-\(Self.traceID)-\(Self.parentID)-01"
        let seenDownstream = try ChildProcess.run(try TestEnvironment.tool("CURL"), [
            "--silent", "http://127.0.0.1:\(traced.port)/relay?traceparent=\(own)",
        ])
        XCTAssertEqual(seenDownstream, own)
        XCTAssertEqual(try traced.sonde.stop(signal: SIGINT), 0, traced.sonde.text)
        let spans = try traced.spans()
        let client = try XCTUnwrap(spans.first { $0["kind"] as? String == "SPAN_KIND_CLIENT" })
        XCTAssertEqual(client["trace_id"] as? String, Self.traceID)
        XCTAssertEqual(client["parent_span_id"] as? String, Self.parentID)
        XCTAssertEqual(client["flags"] as? Int, 769, "a remote parent")
        let headers = try XCTUnwrap(spans.first { nameAndPath($0) == "GET /headers" })
        XCTAssertEqual(headers["trace_id"] as? String, Self.traceID)
        XCTAssertEqual(headers["parent_span_id"] as? String, Self.parentID, "the downstream continues the application's context")
    }

    /// Switched off, outgoing propagation writes nothing: the downstream sees no traceparent, and
    /// Sonde says so once.
    func testInjectionSwitchedOffWritesNothing() throws {
        let traced = try TracedDemoServer(
            binary: try TracingTestSetup.demoServer(), sondeArguments: ["--pack", "go/net-http", "--no-inject-trace-context"])
        defer { _ = try? traced.server.stop(signal: SIGKILL) }
        let seenDownstream = try ChildProcess.run(try TestEnvironment.tool("CURL"), [
            "--silent", "http://127.0.0.1:\(traced.port)/relay",
        ])
        XCTAssertEqual(seenDownstream, "")
        XCTAssertEqual(try traced.sonde.stop(signal: SIGINT), 0, traced.sonde.text)
        XCTAssertEqual(
            traced.sonde.text.components(separatedBy: "outgoing trace context propagation is off: --no-inject-trace-context;").count, 2,
            traced.sonde.text)
        let spans = try traced.spans()
        XCTAssertEqual(spans.count, 3)
        XCTAssertEqual(Set(spans.compactMap { $0["trace_id"] as? String }).count, 2, "the downstream request starts its own trace")
    }

    /// A kernel that refuses BPF writes to process memory (lockdown) turns outgoing propagation
    /// off with one line saying why; incoming trace context and every span still work. A kernel
    /// that allows them gets no such line (testOutgoingTraceparentNamesTheClientSpan checks the rest).
    func testRefusedInjectionIsExplainedOnceAndTracingGoesOn() throws {
        guard let blocker = KernelCapabilities.traceContextInjectionBlocker() else {
            let traced = try TracedDemoServer(binary: try TracingTestSetup.demoServer(), sondeArguments: ["--pack", "go/net-http"])
            defer { _ = try? traced.server.stop(signal: SIGKILL) }
            XCTAssertEqual(try traced.sonde.stop(signal: SIGINT), 0, traced.sonde.text)
            XCTAssertFalse(traced.sonde.text.contains("outgoing trace context propagation is off"), traced.sonde.text)
            return
        }
        let traced = try TracedDemoServer(binary: try TracingTestSetup.demoServer(), sondeArguments: ["--pack", "go/net-http"])
        defer { _ = try? traced.server.stop(signal: SIGKILL) }
        let seenDownstream = try ChildProcess.run(try TestEnvironment.tool("CURL"), [
            "--silent", "-H", "traceparent: 00-\(Self.traceID)-\(Self.parentID)-01", "http://127.0.0.1:\(traced.port)/relay",
        ])
        XCTAssertEqual(seenDownstream, "", "nothing written")
        XCTAssertEqual(try traced.sonde.stop(signal: SIGINT), 0, traced.sonde.text)
        XCTAssertEqual(
            traced.sonde.text.components(separatedBy: "outgoing trace context propagation is off: \(blocker); incoming traceparent headers are still continued\n").count,
            2, traced.sonde.text)
        let spans = try traced.spans()
        XCTAssertEqual(spans.map(nameAndPath).sorted(), ["GET /headers", "GET /relay", "GET ?"])
        let relay = try XCTUnwrap(spans.first { nameAndPath($0) == "GET /relay" })
        XCTAssertEqual(relay["parent_span_id"] as? String, Self.parentID)
        XCTAssertFalse(traced.sonde.text.contains("traceparent was not sent"), "nothing waited to be written: \(traced.sonde.text)")
    }

    /// The two-service demo under concurrent load, both services traced by a Sonde of their own:
    /// every HTTP request front sends is served by a span of back that is its child.
    func testGo119TwoServicesShareTheirTraces() async throws {
        try requireInjection()
        try await TwoServiceScenario.traceFront(go: GoToolchain.debian.installed(), variant: "go119-tc", propagated: true)
    }

    func testGo127StrippedTwoServicesShareTheirTraces() async throws {
        try requireInjection()
        try await TwoServiceScenario.traceFront(
            go: GoToolchain.goBin(minor: "1.27").installed(), flags: ["-ldflags=-s -w"], variant: "go127-stripped-tc", propagated: true)
    }

    private func requireInjection() throws {
        if let blocker = KernelCapabilities.traceContextInjectionBlocker() {
            throw TestEnvironment.missingKernelCapability(["BPF writes to process memory (outgoing trace context): \(blocker)"])
        }
    }

    /// Where the kernel allows BPF writes: the downstream request carries one traceparent naming
    /// the client span, and the downstream server span is its child.
    func testOutgoingTraceparentNamesTheClientSpan() throws {
        try requireInjection()
        let traced = try TracedDemoServer(binary: try TracingTestSetup.demoServer(), sondeArguments: ["--pack", "go/net-http"])
        defer { _ = try? traced.server.stop(signal: SIGKILL) }
        let seenDownstream = try ChildProcess.run(try TestEnvironment.tool("CURL"), [
            "--silent", "http://127.0.0.1:\(traced.port)/relay",
        ])
        XCTAssertEqual(try traced.sonde.stop(signal: SIGINT), 0, traced.sonde.text)
        let spans = try traced.spans()
        let client = try XCTUnwrap(spans.first { $0["kind"] as? String == "SPAN_KIND_CLIENT" })
        let trace = try XCTUnwrap(client["trace_id"] as? String)
        let clientID = try XCTUnwrap(client["span_id"] as? String)
        XCTAssertEqual(seenDownstream, "00-\(trace)-\(clientID)-01")
        let headers = try XCTUnwrap(spans.first { nameAndPath($0) == "GET /headers" })
        XCTAssertEqual(headers["trace_id"] as? String, trace)
        XCTAssertEqual(headers["parent_span_id"] as? String, clientID)
    }
}
