import Engine
import Foundation
import XCTest

/// The two-service demo (demo/two-service): front routes with gorilla/mux and calls back over
/// HTTP and gRPC, sometimes from a goroutine its handler starts; back serves both. Sonde traces
/// front with the net/http, gorilla/mux, gRPC and runtime packs and back with net/http and gRPC,
/// under concurrent load. Run for every toolchain, unstripped and stripped, by GoMatrixTests.
/// `flags` go to `go build` (e.g. `-ldflags=-s -w`) for both services.
enum TwoServiceScenario {
    /// `propagated`: outgoing trace context works on this machine, so back's HTTP server spans must
    /// be the children of front's client spans.
    static func traceFront(go: String, flags: [String] = [], variant: String, propagated: Bool = false) async throws {
        let back = try GoToolchains.build("demo/two-service/back", with: go, flags: flags, name: "back-\(variant)")
        let front = try GoToolchains.build("demo/two-service/front", with: go, flags: flags, name: "front-\(variant)")
        try NetHTTPScenarios.checkClientSites(in: front)
        try NetHTTPScenarios.checkHandoffSite(in: front)
        try checkUnaryClientSites(in: front)
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("sonde-two-service-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }

        let backProcess = try ChildProcess(back, ["-port-file", "\(directory)/back"])
        defer { _ = try? backProcess.stop(signal: SIGKILL) }
        let backPorts = try ports(writtenTo: "\(directory)/back")
        let frontProcess = try ChildProcess(front, [
            "-port-file", "\(directory)/front", "-back-http", "127.0.0.1:\(backPorts[0])", "-back-grpc", "127.0.0.1:\(backPorts[1])",
        ])
        defer { _ = try? frontProcess.stop(signal: SIGKILL) }
        let frontPort = try ports(writtenTo: "\(directory)/front")[0]

        let receiver = try OTLPReceiver()
        let environment = ["OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint]
        let sonde = try ChildProcess(
            Repository.sonde,
            ["run", "--pid", String(frontProcess.pid), "--pack", "go/net-http", "--pack", "go/runtime", "--pack", "go/gorilla-mux", "--pack", "go/grpc"],
            environment: environment)
        try sonde.waitForOutput("attached")
        let backSonde = try ChildProcess(Repository.sonde, ["run", "--pid", String(backProcess.pid), "--pack", "go/grpc", "--pack", "go/net-http"], environment: environment)
        try backSonde.waitForOutput("attached")

        // Each request kind `load` times over, shuffled, 12 at a time.
        let load = 3
        let requests: [(path: String, count: Int, status: Int)] = [
            ("/api/items/7", 4 * load, 200), ("/api/items/0", 2 * load, 404), ("/api/private/3", 2 * load, 200),
            ("/api/async/5", 4 * load, 200), ("/api/local", 2 * load, 200), ("/nothing", 2 * load, 404),
            ("/api/health/backend", 3 * load, 200), ("/api/health/nope", 2 * load, 404), ("/api/watch/backend", 2 * load, 200),
            ("/api/unsent/backend", 2 * load, 502),
        ]
        let paths = requests.flatMap { Array(repeating: $0.path, count: $0.count) }.shuffled()
        let statuses = try await sendRequests(paths, port: frontPort, concurrency: 12)
        XCTAssertEqual(statuses.sorted(), requests.flatMap { Array(repeating: $0.status, count: $0.count) }.sorted())
        // A Watch stream ends on grpc's watcher goroutine once the handler's context is cancelled,
        // possibly just after the response went out: give those last spans a moment.
        try await Task.sleep(for: .milliseconds(500))
        XCTAssertEqual(try sonde.stop(signal: SIGINT), 0, sonde.text)
        XCTAssertFalse(sonde.text.contains("still open at exit") || sonde.text.contains("never ended"), "every stream span ended: \(sonde.text)")
        XCTAssertEqual(try backSonde.stop(signal: SIGINT), 0, backSonde.text)

        func process(_ span: [String: Any]) -> Int? { (span["resource"] as? [String: Any])?["process.pid"] as? Int }
        let received = try receiver.spans()
        let spans = received.filter { process($0) == Int(frontProcess.pid) }
        let servers = spans.filter { $0["kind"] as? String == "SPAN_KIND_SERVER" }
        let rpcClients = spans.filter { attributes($0)["rpc.system"] as? String == "grpc" }
        let clients = spans.filter { $0["kind"] as? String == "SPAN_KIND_CLIENT" && attributes($0)["rpc.system"] == nil }
        XCTAssertEqual(servers.count, 25 * load, sonde.text)
        XCTAssertEqual(clients.count, 12 * load, sonde.text)
        XCTAssertEqual(rpcClients.count, 9 * load, sonde.text)
        let backSpans = received.filter { process($0) == Int(backProcess.pid) }
        try checkGRPC(clients: rpcClients, frontServers: servers, backSpans: backSpans, load: load)

        var serverNames: [String: Int] = [:]
        for server in servers {
            let name = try XCTUnwrap(server["name"] as? String)
            serverNames[name, default: 0] += 1
            let route = attributes(server)["http.route"] as? String
            if name.hasPrefix("GET /api/") {
                XCTAssertEqual(name, "GET \(try XCTUnwrap(route))", "renamed after the mux route")
            } else {
                XCTAssertNil(route, "an unmatched request has no route")
            }
        }
        XCTAssertEqual(serverNames, [
            "GET /api/items/{id:[0-9]+}": 6 * load, "GET /api/private/{id:[0-9]+}": 2 * load, "GET /api/async/{id:[0-9]+}": 4 * load,
            "GET /api/local": 2 * load, "GET": 2 * load, "GET /api/health/{service}": 5 * load,
            "GET /api/watch/{service}": 2 * load, "GET /api/unsent/{service}": 2 * load,
        ])

        let serversByID = Dictionary(uniqueKeysWithValues: servers.map { ($0["span_id"] as! String, $0) })
        var clientURLs: [String: Int] = [:]
        for client in clients {
            let parent = try XCTUnwrap(serversByID[client["parent_span_id"] as? String ?? ""], "client span without its server parent: \(client)")
            XCTAssertEqual(client["trace_id"] as? String, parent["trace_id"] as? String)
            let values = attributes(client)
            let url = try XCTUnwrap(values["url.full"] as? String)
            clientURLs[url, default: 0] += 1
            let status = try XCTUnwrap(values["http.response.status_code"] as? Int)
            XCTAssertEqual(attributes(parent)["http.response.status_code"] as? Int, status)
            XCTAssertEqual((client["status"] as? [String: Any])?["code"] as? String, status >= 400 ? "STATUS_CODE_ERROR" : "STATUS_CODE_UNSET")
            XCTAssertEqual((parent["status"] as? [String: Any])?["code"] as? String, "STATUS_CODE_UNSET", "a 404 is not a server error")
            let expectedParent: String
            switch url {
            case _ where url.contains("src=private"): expectedParent = "GET /api/private/{id:[0-9]+}"
            case _ where url.contains("src=async"): expectedParent = "GET /api/async/{id:[0-9]+}"
            default: expectedParent = "GET /api/items/{id:[0-9]+}"
            }
            XCTAssertEqual(parent["name"] as? String, expectedParent, url)
        }
        let base = "http://127.0.0.1:\(backPorts[0])/items"
        XCTAssertEqual(clientURLs, [
            "\(base)/7?src=front": 4 * load, "\(base)/0?src=front": 2 * load, "\(base)/3?src=private": 2 * load, "\(base)/5?src=async": 4 * load,
        ])
        // back serves each of front's HTTP calls: one SERVER span per call with its own status.
        var backRequests: [String: Int] = [:]
        for server in backSpans where server["kind"] as? String == "SPAN_KIND_SERVER" && attributes(server)["rpc.system"] == nil {
            let values = attributes(server)
            XCTAssertEqual(server["name"] as? String, "GET", "back routes with ServeMux, which names no route")
            backRequests["\(nameAndPath(server)) \(values["http.response.status_code"] as? Int ?? 0)", default: 0] += 1
            XCTAssertEqual(values["server.address"] as? String, "127.0.0.1")
            XCTAssertEqual(values["server.port"] as? Int, backPorts[0])
        }
        if propagated {
            let frontClients = Dictionary(uniqueKeysWithValues: clients.map { ($0["span_id"] as! String, $0) })
            let backServers = backSpans.filter { $0["kind"] as? String == "SPAN_KIND_SERVER" && attributes($0)["rpc.system"] == nil }
            for server in backServers {
                let caller = try XCTUnwrap(frontClients[server["parent_span_id"] as? String ?? ""], "not a child of front's client span: \(server)")
                XCTAssertEqual(server["trace_id"] as? String, caller["trace_id"] as? String)
                XCTAssertEqual(server["flags"] as? Int, 769, "a remote parent")
            }
        }
        XCTAssertEqual(backRequests, ["GET /items/7 200": 4 * load, "GET /items/0 404": 2 * load, "GET /items/3 200": 2 * load, "GET /items/5 200": 4 * load])
        let everything = String(decoding: try JSONSerialization.data(withJSONObject: spans), as: UTF8.self)
        XCTAssertFalse(everything.contains("s3cret") || everything.contains("demo:"), "user info must never reach a span")
    }

    /// A unary call's span starts at grpc's `invoke` and usually ends where grpc finishes its
    /// stream (client-end); only the RET reached once `newClientStream` failed keeps a probe, and
    /// a call that succeeds costs one emulated hit there.
    static func checkUnaryClientSites(in binary: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let plan = try runSonde(["plan", "--exe", binary, "--pack", "go/grpc"]).output
        let client = plan.components(separatedBy: "\nprobe ").first { $0.hasPrefix("go/grpc/client (") } ?? ""
        XCTAssertTrue(client.contains("): google.golang.org/grpc.invoke\n"), plan, file: file, line: line)
        let returns = client.split(separator: "\n").filter { $0.hasPrefix("  return 0x") }
        XCTAssertEqual(returns.count, 1, plan, file: file, line: line)
        XCTAssertTrue(client.contains(
            "\n  ends at these RETs only after its call of google.golang.org/grpc.newClientStream failed (RCX not zero); "
                + "otherwise when an end-span probe ends it\n"), plan, file: file, line: line)
        XCTAssertTrue(client.contains("\n  per call: 1 emulated + 0 single-stepped hits ≈ 0.65 µs of traps\n"), plan, file: file, line: line)
        XCTAssertTrue(plan.contains("\nprobe go/grpc/client-end ("), plan, file: file, line: line)
    }

    /// gRPC calls from front's handlers: unary Check from `/api/health/{service}` and
    /// `/api/unsent/{service}` (failed by grpc before its stream exists: INTERNAL), streaming
    /// Watch from `/api/watch/{service}`, which reads one message and cancels. CLIENT spans are
    /// the handler span's children, back's SERVER spans match, both with the real status code.
    private static func checkGRPC(clients: [[String: Any]], frontServers: [[String: Any]], backSpans: [[String: Any]], load: Int) throws {
        let serversByID = Dictionary(uniqueKeysWithValues: frontServers.map { ($0["span_id"] as! String, $0) })
        let parentRoutes = ["Check": "GET /api/health/{service}", "Watch": "GET /api/watch/{service}", "Check 13": "GET /api/unsent/{service}"]
        var codes: [String: Int] = [:]
        for client in clients {
            XCTAssertEqual(client["kind"] as? String, "SPAN_KIND_CLIENT")
            let values = attributes(client)
            let method = try XCTUnwrap(values["rpc.method"] as? String)
            XCTAssertEqual(client["name"] as? String, "grpc.health.v1.Health/\(method)")
            let parent = try XCTUnwrap(serversByID[client["parent_span_id"] as? String ?? ""], "gRPC client span without its server parent")
            XCTAssertEqual(client["trace_id"] as? String, parent["trace_id"] as? String)
            XCTAssertEqual(values["rpc.system"] as? String, "grpc")
            XCTAssertEqual(values["rpc.service"] as? String, "grpc.health.v1.Health")
            let code = try XCTUnwrap(values["rpc.grpc.status_code"] as? Int)
            codes["\(method) \(code)", default: 0] += 1
            XCTAssertEqual(parent["name"] as? String, parentRoutes["\(method) \(code)"] ?? parentRoutes[method])
            XCTAssertEqual((client["status"] as? [String: Any])?["code"] as? String, code == 0 ? "STATUS_CODE_UNSET" : "STATUS_CODE_ERROR")
            XCTAssertEqual(attributes(parent)["http.response.status_code"] as? Int, [5: 404, 13: 502][code] ?? 200)
        }
        // Check: OK for "backend", NotFound for "nope", INTERNAL when no codec serves the call;
        // Watch: Canceled, since front stops after one message.
        let expectedCodes = ["Check 0": 3 * load, "Check 5": 2 * load, "Watch 1": 2 * load]
        XCTAssertEqual(codes, expectedCodes.merging(["Check 13": 2 * load]) { $1 })

        let backServers = backSpans.filter { $0["kind"] as? String == "SPAN_KIND_SERVER" && attributes($0)["rpc.system"] != nil }
        var backCodes: [String: Int] = [:]
        for server in backServers {
            let values = attributes(server)
            let method = try XCTUnwrap(values["rpc.method"] as? String)
            XCTAssertEqual(server["name"] as? String, "grpc.health.v1.Health/\(method)")
            XCTAssertEqual(values["rpc.system"] as? String, "grpc")
            XCTAssertEqual(values["rpc.service"] as? String, "grpc.health.v1.Health")
            backCodes["\(method) \(try XCTUnwrap(values["rpc.grpc.status_code"] as? Int))", default: 0] += 1
        }
        // The calls failed before their stream existed never reach back.
        XCTAssertEqual(backCodes, expectedCodes, "\(backSpans)")
    }
}
