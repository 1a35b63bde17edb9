import Engine
import SondeABI
import Foundation
import TestSupport
import XCTest

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// What a hostile pass found in how sonde finds its target, keeps call state and stops: each
/// test runs the real sonde against the demo server (Debian's Go) and checks exact counts.
final class TargetFaultTests: XCTestCase {
    override func setUpWithError() throws {
        try TracingTestSetup.requireKernelCapabilities()
    }

    private func demoServer() throws -> String { try TracingTestSetup.demoServer() }

    private func startServer(_ binary: String, environment: [String: String] = [:]) throws -> (ChildProcess, Int) {
        let portFile = try temporaryDirectory() + "/port"
        let server = try ChildProcess(binary, ["-port-file", portFile], environment: environment)
        try server.waitForOutput("listening")
        let port = try XCTUnwrap(Int(String(contentsOfFile: portFile, encoding: .utf8)))
        return (server, port)
    }

    /// `--exe server` names ./server, never a `server` found on `$PATH`.
    func testRelativeExecutableIsResolvedAgainstTheWorkingDirectory() async throws {
        let directory = try temporaryDirectory()
        try FileManager.default.copyItem(atPath: try demoServer(), toPath: "\(directory)/server")
        let receiver = try OTLPReceiver()
        let sonde = try ChildProcess(
            Repository.sonde, ["run", "--exe", "server", "--pack", "go/net-http"],
            environment: ["OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "PATH": "/usr/bin:/bin"], workingDirectory: directory)
        try sonde.waitForOutput("attached")
        XCTAssertTrue(sonde.text.contains("probes in \(directory)/server;"), sonde.text)
        let (server, port) = try startServer("\(directory)/server")
        defer { _ = try? server.stop(signal: SIGKILL) }
        let statuses = try await sendRequests(["/hello"], port: port, concurrency: 1)
        XCTAssertEqual(statuses, [200])
        XCTAssertEqual(try sonde.stop(signal: SIGINT), 0, sonde.text)
        XCTAssertEqual(try receiver.spans().map(nameAndPath), ["GET /hello"], sonde.text)
    }

    /// A process whose executable was deleted after it started is analysed and probed through
    /// /proc/PID/exe; its spans name the path it was started from.
    func testProcessWhoseExecutableWasDeletedIsTracedThroughProcExe() async throws {
        let directory = try temporaryDirectory()
        let path = "\(directory)/replaced-server"
        try FileManager.default.copyItem(atPath: try demoServer(), toPath: path)
        let (server, port) = try startServer(path)
        defer { _ = try? server.stop(signal: SIGKILL) }
        try FileManager.default.removeItem(atPath: path)
        let receiver = try OTLPReceiver()
        let sonde = try ChildProcess(
            Repository.sonde, ["run", "--pid", String(server.pid), "--pack", "go/net-http"],
            environment: ["OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint])
        try sonde.waitForOutput("attached")
        let statuses = try await sendRequests(["/created"], port: port, concurrency: 1)
        XCTAssertEqual(statuses, [201])
        XCTAssertEqual(try sonde.stop(signal: SIGINT), 0, sonde.text)
        let spans = try receiver.spans()
        XCTAssertEqual(spans.map(nameAndPath), ["GET /created"], sonde.text)
        let resource = try XCTUnwrap(spans.first?["resource"] as? [String: Any])
        XCTAssertEqual(resource["process.executable.path"] as? String, path)
        XCTAssertEqual(resource["service.name"] as? String, "replaced-server")
    }

    /// A handler that panics (http.ErrAbortHandler) never returns from ServeHTTP. The next request
    /// on the reused goroutine must start its own trace, and the lost call is counted once.
    /// GOMAXPROCS=1 makes the runtime hand the dead goroutine's g to the next connection.
    func testCallUnwoundByPanicIsCountedAndNeverBecomesAParent() async throws {
        let traced = try TracedDemoServer(
            binary: try demoServer(), sondeArguments: ["--pack", "go/net-http"], serverEnvironment: ["GOMAXPROCS": "1"])
        defer { _ = try? traced.server.stop(signal: SIGKILL) }
        let aborted = try? await sendRequests(["/abort"], port: traced.port, concurrency: 1)
        XCTAssertNil(aborted, "the server closes the connection of a request whose handler panicked")
        for _ in 0..<3 {
            let statuses = try await sendRequests(["/hello"], port: traced.port, concurrency: 1, newConnection: true)
            XCTAssertEqual(statuses, [200])
        }
        XCTAssertEqual(try traced.sonde.stop(signal: SIGINT), 0, traced.sonde.text)
        let spans = try traced.spans()
        XCTAssertEqual(spans.map(nameAndPath), Array(repeating: "GET /hello", count: 3), traced.sonde.text)
        XCTAssertEqual(spans.map { $0["parent_span_id"] as? String }, ["", "", ""])
        XCTAssertEqual(Set(spans.compactMap { $0["trace_id"] as? String }).count, 3)
        XCTAssertTrue(traced.sonde.text.contains("; calls that unwound without returning (panic, Goexit): 1"), traced.sonde.text)
        XCTAssertFalse(traced.sonde.text.contains("spans still open at exit"), traced.sonde.text)
    }

    /// A handler that hijacks its connection ends its request's span there: net/http never
    /// finishes that request, and the span has no status of net/http's.
    func testHijackedConnectionEndsTheServerSpanWhereItIsTakenOver() async throws {
        let traced = try TracedDemoServer(binary: try demoServer(), sondeArguments: ["--pack", "go/net-http"])
        defer { _ = try? traced.server.stop(signal: SIGKILL) }
        for path in ["/hijack", "/hello"] {
            let statuses = try await sendRequests([path], port: traced.port, concurrency: 1, newConnection: true)
            XCTAssertEqual(statuses, [200])
        }
        XCTAssertEqual(try traced.sonde.stop(signal: SIGINT), 0, traced.sonde.text)
        let spans = try traced.spans()
        XCTAssertEqual(spans.map(nameAndPath), ["GET /hijack", "GET /hello"], traced.sonde.text)
        XCTAssertNil(attributes(spans[0])["http.response.status_code"])
        XCTAssertEqual(attributes(spans[1])["http.response.status_code"] as? Int, 200)
        XCTAssertFalse(traced.sonde.text.contains("unwound"), traced.sonde.text)
        XCTAssertTrue(traced.sonde.text.contains("returns without a seen entry: 0"), traced.sonde.text)
    }

    /// A 64 KiB path is cut at the pack's bound (128 bytes) and marked; a byte that is not UTF-8
    /// arrives as U+FFFD. Nothing else of the request is misread.
    func testOversizedAndNonUTF8ValuesAreCutAndMarked() async throws {
        let traced = try TracedDemoServer(binary: try demoServer(), sondeArguments: ["--pack", "go/net-http"])
        defer { _ = try? traced.server.stop(signal: SIGKILL) }
        let long = "/" + String(repeating: "a", count: 65_535)
        for path in [long, "/%FFx"] {
            let status = try ChildProcess.run(try TestEnvironment.tool("CURL"), [
                "--silent", "--path-as-is", "--output", "/dev/null", "--write-out", "%{http_code}", "http://127.0.0.1:\(traced.port)\(path)",
            ])
            XCTAssertEqual(status, "404")
        }
        XCTAssertEqual(try traced.sonde.stop(signal: SIGINT), 0, traced.sonde.text)
        let spans = try traced.spans()
        XCTAssertEqual(spans.map { attributes($0)["url.path"] as? String }, [String(long.prefix(128)) + "…", "/\u{FFFD}x"], traced.sonde.text)
        XCTAssertEqual(spans.map { attributes($0)["http.response.status_code"] as? Int }, [404, 404])
        XCTAssertEqual(spans.map { attributes($0)["http.request.method"] as? String }, ["GET", "GET"])
    }

    /// A client call that panics inside the round trip (its Proxy function fails) and is recovered
    /// by the handler is counted once; the handler's next call is still the server span's child.
    func testCallUnwoundInsideAnOpenSpanLeavesThatSpanTheParent() async throws {
        let traced = try TracedDemoServer(binary: try demoServer(), sondeArguments: ["--pack", "go/net-http"])
        defer { _ = try? traced.server.stop(signal: SIGKILL) }
        let statuses = try await sendRequests(["/proxy-recovered"], port: traced.port, concurrency: 1)
        XCTAssertEqual(statuses, [200])
        XCTAssertEqual(try traced.sonde.stop(signal: SIGINT), 0, traced.sonde.text)
        let spans = try traced.spans()
        let server = try XCTUnwrap(spans.first { attributes($0)["url.path"] as? String == "/proxy-recovered" }, traced.sonde.text)
        let clients = spans.filter { $0["kind"] as? String == "SPAN_KIND_CLIENT" }
        XCTAssertEqual(clients.count, 1, "the panicked call is never emitted: \(spans)")
        XCTAssertEqual(clients.first?["parent_span_id"] as? String, server["span_id"] as? String)
        XCTAssertEqual(clients.first?["trace_id"] as? String, server["trace_id"] as? String)
        XCTAssertEqual(attributes(clients.first ?? [:])["url.full"] as? String, "http://127.0.0.1:\(traced.port)/hello?via=proxy-recovered")
        XCTAssertTrue(traced.sonde.text.contains("; calls that unwound without returning (panic, Goexit): 1"), traced.sonde.text)
    }

    /// A server SIGKILLed while it serves a request, then started again, under `--exe`: the new
    /// process is traced, the killed one's open call is reclaimed and counted, and its state leaves
    /// the BPF maps (read with bpftool while sonde still runs).
    func testServerKilledMidRequestAndRestartedIsTracedAgainWithNothingLeft() async throws {
        let traced = try TracedDemoServer(binary: try demoServer(), attachByExecutable: true, sondeArguments: ["--pack", "go/net-http"])
        let slow = try ChildProcess(try TestEnvironment.tool("CURL"), ["--silent", "--max-time", "60", "http://127.0.0.1:\(traced.port)/slow?ms=20000"])
        defer { _ = try? slow.stop(signal: SIGKILL) }
        let deadline = Date().addingTimeInterval(10)
        while try bpfMapEntries(ofProcess: traced.sonde.pid)[SONDE_MAP_CALLS] != 1, Date() < deadline {
            try await Task.sleep(for: .milliseconds(100))
        }
        let inFlight = try bpfMapEntries(ofProcess: traced.sonde.pid)
        XCTAssertEqual(inFlight[SONDE_MAP_CALLS], 1, "the slow request's call is open: \(inFlight)")
        kill(traced.server.pid, SIGKILL)
        traced.server.process.waitUntilExit()
        slow.process.waitUntilExit()
        XCTAssertEqual(slow.process.terminationStatus, 52, "curl: the server closed the connection without a reply")
        let (restarted, newPort) = try startServer(try demoServer())
        defer { _ = try? restarted.stop(signal: SIGKILL) }
        let statuses = try await sendRequests(["/hello"], port: newPort, concurrency: 1)
        XCTAssertEqual(statuses, [200])
        // The restarted server exits too: the record its call left for the next one goes with it.
        _ = try restarted.stop(signal: SIGKILL)
        try await Task.sleep(for: .seconds(6))   // one pass of sonde's reclaim, every 5 s
        let left = try bpfMapEntries(ofProcess: traced.sonde.pid)
        for map in [SONDE_MAP_CALLS, SONDE_MAP_OBJECT_SPANS, SONDE_MAP_ACTIVE_CONTEXTS, SONDE_MAP_INJECTIONS] {
            XCTAssertEqual(left[map], 0, "\(map): \(left)")
        }
        XCTAssertEqual(try traced.sonde.stop(signal: SIGINT), 0, traced.sonde.text)
        let spans = try traced.receiver.spans()
        XCTAssertEqual(spans.map(nameAndPath), ["GET /hello"], traced.sonde.text)
        XCTAssertEqual((spans.first?["resource"] as? [String: Any])?["process.pid"] as? Int, Int(restarted.pid))
        XCTAssertTrue(traced.sonde.text.contains("1 spans submitted, 1 exported, 0 dropped"), traced.sonde.text)
        XCTAssertTrue(traced.sonde.text.contains("; open spans of exited processes: 1"), traced.sonde.text)
        XCTAssertFalse(traced.sonde.text.contains("spans still open at exit"), traced.sonde.text)
    }

    /// Under `--exe`, a new build that replaces the traced executable (a deploy) is analysed and
    /// attached within a second; the process still running the old build stays traced until it
    /// exits, and then the old build's probes are detached and their configurations freed.
    func testExecutableReplacedOnDiskIsAnalysedAndTracedBesideTheOldBuild() async throws {
        let directory = try temporaryDirectory()
        let path = "\(directory)/server"
        try FileManager.default.copyItem(atPath: try demoServer(), toPath: path)
        let (old, oldPort) = try startServer(path)
        defer { _ = try? old.stop(signal: SIGKILL) }
        let receiver = try OTLPReceiver()
        let sonde = try ChildProcess(
            Repository.sonde, ["run", "--exe", path, "--pack", "go/net-http"], environment: ["OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint])
        defer { _ = try? sonde.stop(signal: SIGKILL) }
        try sonde.waitForOutput("attached")

        let newGo = GoToolchain.goBin(minor: "1.27").goCommand
        let newBuild = try GoToolchains.build("demo/go-http-server", with: newGo, name: "demo-replacement")
        try FileManager.default.copyItem(atPath: newBuild, toPath: "\(path).new")
        XCTAssertEqual(rename("\(path).new", path), 0)
        try sonde.waitForOutput("\(path) was replaced on disk: analysed the new file (\(try GoToolchains.version(newGo))), attached ", timeout: 5)
        let (new, newPort) = try startServer(path)
        defer { _ = try? new.stop(signal: SIGKILL) }
        let first = try await sendRequests(["/hello"], port: oldPort, concurrency: 1) + sendRequests(["/hello"], port: newPort, concurrency: 1)
        XCTAssertEqual(first, [200, 200])

        try old.stop(signal: SIGKILL)
        try sonde.waitForOutput("no process runs the earlier build of \(path) any more; its probes are detached", timeout: 5)
        let afterwards = try await sendRequests(["/created"], port: newPort, concurrency: 1)
        XCTAssertEqual(afterwards, [201])
        XCTAssertEqual(try sonde.stop(signal: SIGINT), 0, sonde.text)
        var spansByProcess: [Int: [String]] = [:]
        for span in try receiver.spans() {
            let pid = try XCTUnwrap((span["resource"] as? [String: Any])?["process.pid"] as? Int)
            spansByProcess[pid, default: []].append(nameAndPath(span))
        }
        XCTAssertEqual(spansByProcess, [Int(old.pid): ["GET /hello"], Int(new.pid): ["GET /hello", "GET /created"]], sonde.text)
    }

    /// Under `nohup` SIGHUP is ignored when sonde starts, and must stay ignored.
    func testHangUpIgnoredAtStartStaysIgnored() throws {
        let (server, _) = try startServer(try demoServer())
        defer { _ = try? server.stop(signal: SIGKILL) }
        let sonde = try ChildProcess("/bin/sh", ["-c", "trap '' HUP; exec \(Repository.sonde) run --pid \(server.pid) --pack go/net-http"])
        try sonde.waitForOutput("attached")
        kill(sonde.pid, SIGHUP)
        Thread.sleep(forTimeInterval: 1)
        XCTAssertTrue(sonde.process.isRunning, sonde.text)
        XCTAssertEqual(try sonde.stop(signal: SIGINT), 0, sonde.text)
        XCTAssertTrue(sonde.text.contains("sonde: 0 spans submitted"), sonde.text)
    }

    /// With room for 4 calls in flight, 10 concurrent slow requests give exactly 4 spans and 6
    /// calls counted as not traced, in the running tally and the summary: none vanish.
    func testFullCallsMapCountsEveryCallItCannotHold() async throws {
        let traced = try TracedDemoServer(binary: try demoServer(), sondeArguments: ["--pack", "go/net-http", "--max-calls", "4"])
        defer { _ = try? traced.server.stop(signal: SIGKILL) }
        let statuses = try await sendRequests(Array(repeating: "/slow?ms=1500", count: 10), port: traced.port, concurrency: 10)
        XCTAssertEqual(statuses, Array(repeating: 202, count: 10))
        try await Task.sleep(for: .seconds(1))
        XCTAssertEqual(try traced.sonde.stop(signal: SIGINT), 0, traced.sonde.text)
        XCTAssertEqual(try traced.spans().count, 4, traced.sonde.text)
        XCTAssertTrue(traced.sonde.text.contains("4 spans submitted, 4 exported, 0 dropped"), traced.sonde.text)
        XCTAssertTrue(traced.sonde.text.contains("; calls not traced (calls map full): 6"), traced.sonde.text)
        // Counted once: their end site, finishRequest, is not their function's return.
        XCTAssertTrue(traced.sonde.text.contains("returns without a seen entry: 0"), traced.sonde.text)
    }

    /// A call's record stays for its goroutine's next call only while the calls map is at most
    /// half full: with room for 4, four connections kept open after a request each leave 2 records
    /// (not 4, which would fill the map), so requests on 2 new connections, new goroutines, are
    /// both traced.
    func testRecordsOfEndedCallsLeaveRoomForNewGoroutines() async throws {
        let traced = try TracedDemoServer(binary: try demoServer(), sondeArguments: ["--pack", "go/net-http", "--max-calls", "4"])
        defer { _ = try? traced.server.stop(signal: SIGKILL) }
        let url = URL(string: "http://127.0.0.1:\(traced.port)/slow?ms=300")!
        func concurrently(_ count: Int, on session: URLSession) async throws -> [Int] {
            try await withThrowingTaskGroup(of: Int.self) { group in
                for _ in 0..<count {
                    group.addTask { ((try await session.data(from: url)).1 as? HTTPURLResponse)?.statusCode ?? 0 }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
        }
        let first = URLSession(configuration: .ephemeral)
        let second = URLSession(configuration: .ephemeral)
        defer { first.invalidateAndCancel(); second.invalidateAndCancel() }
        let firstStatuses = try await concurrently(4, on: first)
        let secondStatuses = try await concurrently(2, on: second)
        XCTAssertEqual(firstStatuses + secondStatuses, Array(repeating: 202, count: 6))
        XCTAssertEqual(try traced.sonde.stop(signal: SIGINT), 0, traced.sonde.text)
        XCTAssertEqual(try traced.spans().count, 6, traced.sonde.text)
        XCTAssertTrue(traced.sonde.text.contains("6 spans submitted, 6 exported, 0 dropped"), traced.sonde.text)
        XCTAssertFalse(traced.sonde.text.contains("calls not traced"), traced.sonde.text)
    }

    /// Records are built in their own map element, never in a per-CPU buffer another task on the
    /// same CPU could overwrite when it preempts the program: under concurrent load every span's
    /// method and path carry the same nonce, and no two spans share an id.
    func testConcurrentRequestsNeverMixTheirCaptures() async throws {
        let traced = try TracedDemoServer(binary: try demoServer(), sondeArguments: ["--pack", "go/net-http"])
        defer { _ = try? traced.server.stop(signal: SIGKILL) }
        let count = 600
        let port = traced.port
        let session = URLSession(configuration: .ephemeral)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for worker in 0..<16 {
                group.addTask {
                    for nonce in stride(from: worker, to: count, by: 16) {
                        var request = URLRequest(url: URL(string: "http://127.0.0.1:\(port)/nonce/\(nonce)")!)
                        request.httpMethod = "N\(nonce)"
                        _ = try await session.data(for: request)
                    }
                }
            }
            try await group.waitForAll()
        }
        XCTAssertEqual(try traced.sonde.stop(signal: SIGINT), 0, traced.sonde.text)
        let spans = try traced.spans()
        XCTAssertEqual(spans.count, count, traced.sonde.text)
        var nonces = Set<String>()
        for span in spans {
            let attributes = attributes(span)
            let method = try XCTUnwrap(attributes["http.request.method"] as? String)
            XCTAssertEqual(attributes["url.path"] as? String, "/nonce/\(method.dropFirst())")
            nonces.insert(method)
        }
        XCTAssertEqual(nonces.count, count)
        XCTAssertEqual(Set(spans.compactMap { $0["span_id"] as? String }).count, count)
    }

    /// SIGHUP (the terminal closed) detaches and flushes like SIGTERM, with the summary.
    func testHangUpFlushesAndSummarisesLikeTerminate() async throws {
        let traced = try TracedDemoServer(binary: try demoServer(), sondeArguments: ["--pack", "go/net-http"])
        defer { _ = try? traced.server.stop(signal: SIGKILL) }
        let statuses = try await sendRequests(["/hello", "/created", "/fail"], port: traced.port, concurrency: 1)
        XCTAssertEqual(statuses, [200, 201, 500])
        XCTAssertEqual(try traced.sonde.stop(signal: SIGHUP), 0, traced.sonde.text)
        XCTAssertTrue(traced.sonde.text.contains("sonde: 3 spans submitted, 3 exported, 0 dropped"), traced.sonde.text)
        XCTAssertEqual(try traced.spans().count, 3)
    }

    /// A collector that never answers holds the flush for up to its deadline; a second Ctrl-C ends
    /// it at once and says how many spans were given up.
    func testSecondSignalEndsTheFlushAndCountsWhatWasAbandoned() async throws {
        let collector = try ChildProcess("/usr/bin/env", [
            "python3", "-c",
            "import socket,time\ns=socket.socket(); s.bind(('127.0.0.1',0)); s.listen(64)\nprint(s.getsockname()[1], flush=True)\ntime.sleep(120)",
        ])
        defer { _ = try? collector.stop(signal: SIGKILL) }
        try collector.waitForOutput("\n")
        let port = try XCTUnwrap(Int(collector.text.trimmingCharacters(in: .whitespacesAndNewlines)))
        let traced = try TracedDemoServer(
            binary: try demoServer(), endpoint: "http://127.0.0.1:\(port)", sondeArguments: ["--pack", "go/net-http"])
        defer { _ = try? traced.server.stop(signal: SIGKILL) }
        let statuses = try await sendRequests(Array(repeating: "/hello", count: 5), port: traced.port, concurrency: 1)
        XCTAssertEqual(statuses, Array(repeating: 200, count: 5))
        try await Task.sleep(for: .seconds(2))   // the batch is now in flight to the silent collector
        // The kernel merges a signal into one still pending: the second is sent once the first was taken.
        kill(traced.sonde.pid, SIGINT)
        try traced.sonde.waitForOutput("probes detached; exporting what is queued for up to 10.0 seconds (a second signal ends it now)")
        let secondSignal = Date()
        XCTAssertEqual(try traced.sonde.stop(signal: SIGINT, timeout: 5), 0, traced.sonde.text)
        XCTAssertLessThan(Date().timeIntervalSince(secondSignal), 3, "the flush must end at the second signal, not its deadline")
        XCTAssertTrue(traced.sonde.text.contains("a second signal ended the flush"), traced.sonde.text)
        XCTAssertTrue(traced.sonde.text.contains("5 spans submitted, 0 exported, 0 dropped"), traced.sonde.text)
        XCTAssertTrue(traced.sonde.text.contains("; spans abandoned unsent at exit: 5"), traced.sonde.text)
    }
}
