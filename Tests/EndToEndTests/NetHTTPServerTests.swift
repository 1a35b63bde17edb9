import Engine
import Foundation
import TestSupport
import XCTest

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// Real Go net/http servers, built in the test, traced by the real sonde binary, spans checked
/// at an OTLP receiver that decodes with opentelemetry-proto. Every toolchain runs these
/// scenarios in GoMatrixTests; here are the build and attach variants.
final class NetHTTPServerTests: XCTestCase {
    override func setUpWithError() throws {
        let missing = KernelCapabilities.missing()
        if !missing.isEmpty { throw TestEnvironment.missingKernelCapability(missing) }
        _ = try GoToolchain.debian.installed()
    }

    func testDebianGoPIEServerAttachedByPID() async throws {
        try await NetHTTPScenarios.traceServer(go: GoToolchains.debian, flags: ["-buildmode=pie"], variant: "go119-pie")
    }

    /// Stripped and position independent: functions come from `.data.rel.ro.gopclntab`, offsets
    /// from the shipped tables, and the status check compares a relocated method address.
    func testDebianGoStrippedPIEServer() async throws {
        try await NetHTTPScenarios.traceServer(go: GoToolchains.debian, flags: ["-buildmode=pie", "-ldflags=-s -w"], variant: "go119-pie-stripped")
    }

    /// The demo server traced with OTLP to `endpoint`, where nothing listens, after 10 requests
    /// and the 4 s in which their batch's three attempts fail and it is held.
    private func tenRequestsWhileTheCollectorIsDown(endpoint: String) async throws -> TracedDemoServer {
        let binary = try GoToolchains.build("demo/go-http-server", with: GoToolchains.debian, name: "demo-go119")
        let traced = try TracedDemoServer(binary: binary, endpoint: endpoint)
        do {
            let statuses = try await sendRequests(Array(repeating: "/hello", count: 10), port: traced.port, concurrency: 4)
            XCTAssertEqual(statuses, Array(repeating: 200, count: 10))
            try await Task.sleep(for: .seconds(4))
        } catch {
            _ = try? traced.server.stop(signal: SIGKILL)
            throw error
        }
        return traced
    }

    /// A collector that goes away and comes back loses nothing: the spans of the outage are held
    /// and delivered once it is back, and the traced server never waits for it.
    func testCollectorDownThenBackGetsEverySpanHeldMeanwhile() async throws {
        let port = try OTLPReceiver().port   // a port that was free; nothing listens once this receiver is gone
        let traced = try await tenRequestsWhileTheCollectorIsDown(endpoint: "http://127.0.0.1:\(port)")
        defer { _ = try? traced.server.stop(signal: SIGKILL) }
        let received = try await collectorBack(at: port, until: 10, thenStop: traced)
        XCTAssertEqual(received.map(nameAndPath), Array(repeating: "GET /hello", count: 10))
        XCTAssertTrue(traced.sonde.text.contains(
            "10 spans submitted, 10 exported, 0 dropped (queue full: 0, export failed: 0); last failure: cannot reach "
                + "http://127.0.0.1:\(port)/v1/traces: connecting failed: Connection refused (after 3 attempts; 10 spans held for the next try)"),
            traced.sonde.text)
        XCTAssertTrue(traced.server.process.isRunning)
    }

    /// An outage longer than the export queue holds (20 spans here) loses nothing the kernel's ring
    /// buffer can hold: sonde stops draining it while the queue is full, and the 100 spans of the
    /// outage reach the collector once it is back, none dropped as "queue full".
    func testSpansBeyondTheQueueWaitInTheRingBufferDuringAnOutage() async throws {
        let port = try OTLPReceiver().port   // a port that was free; nothing listens once this receiver is gone
        let binary = try GoToolchains.build("demo/go-http-server", with: GoToolchains.debian, name: "demo-go119")
        let traced = try TracedDemoServer(
            binary: binary, endpoint: "http://127.0.0.1:\(port)",
            sondeEnvironment: ["OTEL_BSP_MAX_QUEUE_SIZE": "20", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "10"])
        defer { _ = try? traced.server.stop(signal: SIGKILL) }
        let statuses = try await sendRequests(Array(repeating: "/hello", count: 100), port: traced.port, concurrency: 4)
        XCTAssertEqual(statuses, Array(repeating: 200, count: 100))
        try await Task.sleep(for: .seconds(2))   // the spans are drained (every 0.5 s) up to the queue's room
        let received = try await collectorBack(at: port, until: 100, thenStop: traced)
        XCTAssertEqual(received.map(nameAndPath), Array(repeating: "GET /hello", count: 100))
        XCTAssertTrue(traced.sonde.text.contains(
            "100 spans submitted, 100 exported, 0 dropped (queue full: 0, export failed: 0); last failure: cannot reach "),
            traced.sonde.text)
        XCTAssertTrue(traced.sonde.text.contains("lost in kernel (ring buffer full): 0;"), traced.sonde.text)
    }

    /// A collector started at `port`, where sonde exports, until it has `count` spans (or 30 s
    /// passed); then sonde is stopped, and what the collector received is returned.
    private func collectorBack(at port: Int, until count: Int, thenStop traced: TracedDemoServer) async throws -> [[String: Any]] {
        let collector = try OTLPReceiver(port: port)
        let deadline = Date().addingTimeInterval(30)
        while try collector.spans().count < count, Date() < deadline { try await Task.sleep(for: .milliseconds(200)) }
        XCTAssertEqual(try traced.sonde.stop(signal: SIGINT), 0, traced.sonde.text)
        return try collector.spans()
    }

    /// A collector still down when sonde stops: the held spans get one more round of attempts,
    /// then are counted with the reason, and sonde stops cleanly without waiting out the hold.
    func testCollectorDownAtExitCountsTheHeldSpans() async throws {
        let traced = try await tenRequestsWhileTheCollectorIsDown(endpoint: "http://127.0.0.1:1")
        defer { _ = try? traced.server.stop(signal: SIGKILL) }
        XCTAssertEqual(try traced.sonde.stop(signal: SIGINT), 0, traced.sonde.text)
        XCTAssertTrue(traced.sonde.text.contains(
            "10 spans submitted, 0 exported, 10 dropped (queue full: 0, export failed: 10); last failure: cannot reach "
                + "http://127.0.0.1:1/v1/traces: connecting failed: Connection refused (after 3 attempts); "),
            traced.sonde.text)
        XCTAssertTrue(traced.server.process.isRunning)
    }

    /// A request still being served when sonde stops is reported as an open span, not lost silently.
    func testSpansStillOpenAtExitAreReported() async throws {
        let binary = try GoToolchains.build("demo/go-http-server", with: GoToolchains.debian, name: "demo-go119")
        let traced = try TracedDemoServer(binary: binary)
        defer { _ = try? traced.server.stop(signal: SIGKILL) }
        let port = traced.port
        let slow = Task { try await sendRequests(["/slow?ms=8000"], port: port, concurrency: 1) }
        try await Task.sleep(for: .seconds(1))
        XCTAssertEqual(try traced.sonde.stop(signal: SIGINT), 0, traced.sonde.text)
        XCTAssertTrue(traced.sonde.text.contains("0 spans submitted") && traced.sonde.text.contains("spans still open at exit: 1\n"), traced.sonde.text)
        let statuses = try await slow.value
        XCTAssertEqual(statuses, [202])
    }

    /// Kernels before 6.6 have no uprobe multi-links: one perf-event link per uprobe traces the
    /// same spans (the hidden `--uprobe-links single` takes that path on this kernel).
    func testSingleUprobeLinksAsOnKernelsBefore66() async throws {
        let binary = try GoToolchains.build("demo/go-http-server", with: GoToolchains.debian, name: "demo-go119")
        let traced = try TracedDemoServer(binary: binary, sondeArguments: TracedDemoServer.packs + ["--uprobe-links", "single"])
        defer { _ = try? traced.server.stop(signal: SIGKILL) }
        let line = try XCTUnwrap(traced.sonde.text.split(separator: "\n").first { $0.hasPrefix("attached ") })
        let sites = try XCTUnwrap(Int(line.split(separator: " ")[1]), String(line))
        let fdinfo = "/proc/\(traced.sonde.pid)/fdinfo"
        let linkTypes = try FileManager.default.contentsOfDirectory(atPath: fdinfo).compactMap { entry in
            (try? String(contentsOfFile: "\(fdinfo)/\(entry)", encoding: .utf8))?.split(separator: "\n")
                .first { $0.hasPrefix("link_type:") }.map { $0.split(separator: "\t").last.map(String.init) ?? "" }
        }
        XCTAssertEqual(linkTypes, Array(repeating: "perf", count: sites), "one perf-event link per uprobe")
        let statuses = try await sendRequests(["/hello", "/created", "/fail"], port: traced.port, concurrency: 1)
        XCTAssertEqual(statuses, [200, 201, 500])
        XCTAssertEqual(try traced.sonde.stop(signal: SIGINT), 0, traced.sonde.text)
        XCTAssertEqual(try traced.spans().map(nameAndPath), ["GET /hello", "GET /created", "GET /fail"])
    }

    /// `--exe` attaches before the server exists and traces it once it starts.
    func testExecutableModeTracesProcessesStartedLater() async throws {
        try await NetHTTPScenarios.traceServer(go: GoToolchains.debian, flags: [], variant: "go119-exe", attachByExecutable: true)
    }
}

/// The demo server's scenarios, run by the tests above and by GoMatrixTests for every toolchain.
enum NetHTTPScenarios {
    /// Each request the test sends, and the span it must produce.
    struct Expected: Hashable {
        var method = "GET"
        var path: String
        var status: Int
    }

    static let workload: [(path: String, expected: Expected)] =
        Array(repeating: ("/hello", Expected(path: "/hello", status: 200)), count: 12)
        + Array(repeating: ("/created", Expected(path: "/created", status: 201)), count: 6)
        + Array(repeating: ("/fail", Expected(path: "/fail", status: 500)), count: 6)
        + Array(repeating: ("/no/such/page", Expected(path: "/no/such/page", status: 404)), count: 6)
        + Array(repeating: ("/slow?ms=30", Expected(path: "/slow", status: 202)), count: 6)

    static func traceServer(go: String, flags: [String], variant: String, attachByExecutable: Bool = false) async throws {
        let binary = try GoToolchains.build("demo/go-http-server", with: go, flags: flags, name: "demo-\(variant)")
        let traced = try TracedDemoServer(binary: binary, attachByExecutable: attachByExecutable)
        let (server, sonde, port) = (traced.server, traced.sonde, traced.port)
        defer { _ = try? server.stop(signal: SIGKILL) }
        let startedAt = UInt64(Date().timeIntervalSince1970 * 1e9)
        let statuses = try await sendRequests(workload.map(\.path), port: port, concurrency: 8)
        XCTAssertEqual(statuses.sorted(), workload.map(\.expected.status).sorted())
        let finishedAt = UInt64(Date().timeIntervalSince1970 * 1e9)

        XCTAssertEqual(try sonde.stop(signal: SIGINT), 0, sonde.text)
        XCTAssertTrue(server.process.isRunning, "the traced server must survive sonde detaching")
        let afterDetach = try await sendRequests(["/hello"], port: port, concurrency: 1)
        XCTAssertEqual(afterDetach, [200])

        let spans = try traced.spans()
        XCTAssertEqual(spans.count, workload.count, "one span per request; sonde said:\n\(sonde.text)")
        let count = workload.count
        XCTAssertTrue(sonde.text.contains("\(count) spans submitted, \(count) exported, 0 dropped"), sonde.text)

        var seen: [Expected: Int] = [:]
        var spanIDs = Set<String>()
        for span in spans {
            let attributes = try XCTUnwrap(span["attributes"] as? [String: Any])
            let method = try XCTUnwrap(attributes["http.request.method"] as? String)
            let path = try XCTUnwrap(attributes["url.path"] as? String)
            let status = try XCTUnwrap(attributes["http.response.status_code"] as? Int)
            seen[Expected(method: method, path: path, status: status), default: 0] += 1
            XCTAssertEqual(span["name"] as? String, method, "no route: the method alone")
            XCTAssertEqual(span["kind"] as? String, "SPAN_KIND_SERVER")
            XCTAssertEqual(attributes["server.address"] as? String, "127.0.0.1")
            XCTAssertEqual(attributes["server.port"] as? Int, port)
            XCTAssertEqual(attributes["url.scheme"] as? String, "http")
            XCTAssertEqual(attributes.count, 6, "\(attributes)")
            let statusCode = (span["status"] as? [String: Any])?["code"] as? String
            XCTAssertEqual(statusCode, status >= 500 ? "STATUS_CODE_ERROR" : "STATUS_CODE_UNSET")
            let traceID = try XCTUnwrap(span["trace_id"] as? String)
            let spanID = try XCTUnwrap(span["span_id"] as? String)
            XCTAssertTrue(traceID.count == 32 && traceID != String(repeating: "0", count: 32), traceID)
            XCTAssertTrue(spanID.count == 16 && spanID != String(repeating: "0", count: 16), spanID)
            XCTAssertEqual(span["parent_span_id"] as? String, "")
            spanIDs.insert(spanID)
            let start = try XCTUnwrap(span["start_time_unix_nano"] as? UInt64)
            let end = try XCTUnwrap(span["end_time_unix_nano"] as? UInt64)
            XCTAssertTrue(startedAt <= start && start <= end && end <= finishedAt, "\(startedAt) \(start) \(end) \(finishedAt)")
            if path == "/slow" { XCTAssertGreaterThanOrEqual(end - start, 30_000_000) }
            let resource = try XCTUnwrap(span["resource"] as? [String: Any])
            XCTAssertEqual(resource["service.name"] as? String, URL(fileURLWithPath: binary).lastPathComponent)
            XCTAssertEqual(resource["deployment.environment"] as? String, "e2e")
        }
        XCTAssertEqual(spanIDs.count, spans.count, "span ids must be unique")
        var expected: [Expected: Int] = [:]
        for item in workload { expected[item.expected, default: 0] += 1 }
        XCTAssertEqual(seen, expected)
    }

    /// `/proxy` calls the server's own `/hello` with http.Get while serving, `/proxy-async` does so
    /// from a goroutine it starts; `?to=127.0.0.1:1` makes the call fail to connect.
    /// The client span's usual end is the emulated branch on the connection's error right after
    /// `(*persistConn).roundTrip` returns (span.ends-after-call), not one of roundTrip's RETs:
    /// `sonde plan` shows that site, and a call then costs two emulated hits and no single-step.
    /// Its traceparent is written at `(*Request).write`'s two calls of `writeSubset` (called-from),
    /// which server responses never reach.
    static func checkClientSites(in binary: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let plan = try runSonde(["plan", "--exe", binary, "--pack", "go/net-http"]).output
        let headers = plan.components(separatedBy: "\nprobe ").first { $0.hasPrefix("go/net-http/client-request-headers (") } ?? ""
        let calls = headers.split(separator: "\n").filter { $0.hasPrefix("  call   0x") }
        XCTAssertEqual(calls.count, 2, plan, file: file, line: line)
        XCTAssertTrue(calls.allSatisfy { $0.hasSuffix(" <net/http.Header.writeSubset>  [emulated (cheap)]") }, plan, file: file, line: line)
        XCTAssertTrue(headers.contains("\n  acts where net/http.(*Request).write calls it (called-from), not at its entry\n"), plan, file: file, line: line)
        let client = plan.components(separatedBy: "\nprobe ").first { $0.hasPrefix("go/net-http/client (") } ?? ""
        let ends = client.split(separator: "\n").filter { $0.hasPrefix("  ends   0x") }
        XCTAssertEqual(ends.count, 1, plan, file: file, line: line)
        XCTAssertTrue(ends.allSatisfy { $0.contains("  je 0x") && $0.hasSuffix("[emulated (cheap)]") }, plan, file: file, line: line)
        XCTAssertTrue(client.contains("\n  ends at the branch after its call only when RBX is zero, reading the call's results; otherwise at a RET\n"), plan, file: file, line: line)
        XCTAssertTrue(client.contains("\n  per call: 2 emulated + 0 single-stepped hits ≈ 1.3 µs of traps\n"), plan, file: file, line: line)
    }

    /// The goroutine hand-off is one emulated `call`, reading the creator at g0.m.curg: `m.curg`
    /// moved from +192 to +184 in Go 1.25.
    static func checkHandoffSite(in binary: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let plan = try runSonde(["plan", "--exe", binary, "--pack", "go/runtime"]).output
        let minor = try XCTUnwrap(plan.firstMatch(of: /\(Go go1\.(\d+)/).flatMap { Int($0.1) }, plan, file: file, line: line)
        let handoff = plan.components(separatedBy: "\nprobe ").first { $0.hasPrefix("go/runtime/goroutine-creation (") } ?? ""
        let sites = handoff.split(separator: "\n").filter { $0.hasPrefix("  call   0x") }
        XCTAssertEqual(sites.count, 1, plan, file: file, line: line)
        XCTAssertTrue(sites.allSatisfy { $0.hasSuffix(" <runtime.runqput>  [emulated (cheap)]") }, plan, file: file, line: line)
        XCTAssertTrue(
            handoff.contains("\n  carries trace context to the new goroutine in RBX from its creator, the *g the entry program reaches\n"), plan,
            file: file, line: line)
        XCTAssertTrue(handoff.contains("\n  per call: 1 emulated + 0 single-stepped hits ≈ 0.65 µs of traps\n"), plan, file: file, line: line)
        let creator = ["load R14", "add 48", "dereference (once per thread)", "add \(minor >= 25 ? 184 : 192)", "dereference"]
        XCTAssertTrue(handoff.contains("\n  entry program:\n" + creator.map { "    \($0)\n" }.joined() + "  return program:\n"), plan, file: file, line: line)
    }

    static func traceClientCalls(go: String, variant: String) async throws {
        let binary = try GoToolchains.build("demo/go-http-server", with: go, name: "demo-\(variant)")
        try checkClientSites(in: binary)
        try checkHandoffSite(in: binary)
        let traced = try TracedDemoServer(binary: binary)
        defer { _ = try? traced.server.stop(signal: SIGKILL) }
        let proxied = 8
        let asynchronous = 8
        let failing = 2
        let paths = Array(repeating: "/proxy", count: proxied) + Array(repeating: "/proxy-async", count: asynchronous)
            + Array(repeating: "/proxy?to=127.0.0.1:1", count: failing)
        let statuses = try await sendRequests(paths.shuffled(), port: traced.port, concurrency: 6)
        XCTAssertEqual(statuses.sorted(), Array(repeating: 200, count: proxied + asynchronous) + Array(repeating: 502, count: failing))
        XCTAssertEqual(try traced.sonde.stop(signal: SIGINT), 0, traced.sonde.text)

        let calls = proxied + asynchronous
        let spans = try traced.spans()
        XCTAssertEqual(spans.count, 3 * calls + 2 * failing, traced.sonde.text)
        let servers = spans.filter { $0["kind"] as? String == "SPAN_KIND_SERVER" }
        let clients = spans.filter { $0["kind"] as? String == "SPAN_KIND_CLIENT" }
        let serversByID = Dictionary(uniqueKeysWithValues: servers.map { ($0["span_id"] as! String, $0) })
        XCTAssertEqual(servers.filter { nameAndPath($0) == "GET /hello" }.count, calls)
        XCTAssertEqual(clients.count, calls + failing)

        var parentsByName: [String: Int] = [:]
        for client in clients {
            let parentID = try XCTUnwrap(client["parent_span_id"] as? String)
            let parent = try XCTUnwrap(serversByID[parentID], "client span's parent must be a server span of this process: \(client)")
            let parentName = nameAndPath(parent)
            parentsByName[parentName, default: 0] += 1
            XCTAssertEqual(client["trace_id"] as? String, parent["trace_id"] as? String)
            XCTAssertEqual(client["name"] as? String, "GET")
            let clientStart = try XCTUnwrap(client["start_time_unix_nano"] as? UInt64)
            let clientEnd = try XCTUnwrap(client["end_time_unix_nano"] as? UInt64)
            XCTAssertTrue(try XCTUnwrap(parent["start_time_unix_nano"] as? UInt64) <= clientStart)
            XCTAssertTrue(clientEnd <= (try XCTUnwrap(parent["end_time_unix_nano"] as? UInt64)))
            let values = attributes(client)
            XCTAssertEqual(values["http.request.method"] as? String, "GET")
            XCTAssertEqual(values["server.address"] as? String, "127.0.0.1")
            let statusCode = (client["status"] as? [String: Any])?["code"] as? String
            if values["server.port"] as? Int == 1 {
                XCTAssertEqual(values["url.full"] as? String, "http://127.0.0.1:1/hello?via=proxy")
                XCTAssertNil(values["http.response.status_code"], "a failed connection has no status")
                XCTAssertEqual(statusCode, "STATUS_CODE_ERROR")
                XCTAssertEqual(attributes(parent)["http.response.status_code"] as? Int, 502)
            } else {
                let via = parentName == "GET /proxy-async" ? "proxy-async" : "proxy"
                XCTAssertEqual(values["server.port"] as? Int, traced.port)
                XCTAssertEqual(values["url.full"] as? String, "http://127.0.0.1:\(traced.port)/hello?via=\(via)")
                XCTAssertEqual(values["http.response.status_code"] as? Int, 200)
                XCTAssertEqual(statusCode, "STATUS_CODE_UNSET")
                XCTAssertEqual(attributes(parent)["http.response.status_code"] as? Int, 200)
            }
        }
        XCTAssertEqual(parentsByName, ["GET /proxy": proxied + failing, "GET /proxy-async": asynchronous])
        // Each proxying request made exactly one call, and unrelated requests share no trace.
        XCTAssertEqual(Set(clients.compactMap { $0["parent_span_id"] as? String }).count, clients.count)
        XCTAssertEqual(Set(servers.compactMap { $0["trace_id"] as? String }).count, servers.count)
    }
}
