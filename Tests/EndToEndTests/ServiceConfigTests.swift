import Foundation
import TestSupport
import XCTest

/// One sonde, one sonde.yaml, the whole machine: the two-service demo's services are found as
/// they start, each traced with its own packs and service name; a process of the same binary
/// that no service claims is left untouched; a service that is killed and restarts is traced
/// again, with its links and map entries freed in between.
final class ServiceConfigTests: XCTestCase {
    func testOneSondeTracesTheServicesItsConfigDeclares() async throws {
        try TracingTestSetup.requireKernelCapabilities()
        let back = try GoToolchains.build("demo/two-service/back", with: GoToolchains.debian, name: "back-config")
        let front = try GoToolchains.build("demo/two-service/front", with: GoToolchains.debian, name: "front-config")
        let directory = try temporaryDirectory()
        let (sonde, receiver) = try watchingSonde(
            """
            services:
              - name: shop-front
                match: { executable: "*/front-config" }
                packs: [go/*]
                exclude-packs: [go/grpc]
                resource: { deployment.environment.name: e2e }
              - name: shop-back
                # back's instances are told apart by their port file: only "back" is this service
                match: { command-line: "-port-file \(NSRegularExpression.escapedPattern(for: directory))/back$" }
                packs: [go/net-http, go/grpc]
            unmatched: ignore
            """, in: directory, services: "shop-front, shop-back")
        defer { _ = try? sonde.stop(signal: SIGKILL) }

        // Started after sonde: found by the scan. `other` runs back's very file, unclaimed.
        let other = try ChildProcess(back, ["-port-file", "\(directory)/other"])
        defer { _ = try? other.stop(signal: SIGKILL) }
        var backProcess = try ChildProcess(back, ["-port-file", "\(directory)/back"])
        defer { _ = try? backProcess.stop(signal: SIGKILL) }
        let backPorts = try ports(writtenTo: "\(directory)/back")
        let frontProcess = try ChildProcess(front, [
            "-port-file", "\(directory)/front", "-back-http", "127.0.0.1:\(backPorts[0])", "-back-grpc", "127.0.0.1:\(backPorts[1])",
        ])
        defer { _ = try? frontProcess.stop(signal: SIGKILL) }
        let frontPort = try ports(writtenTo: "\(directory)/front")[0]
        let otherPort = try ports(writtenTo: "\(directory)/other")[0]
        try sonde.waitForOutput("tracing pid \(backProcess.pid) (\(back)) as service shop-back")
        try sonde.waitForOutput("tracing pid \(frontProcess.pid) (\(front)) as service shop-front")
        XCTAssertEqual(try attachLatency(of: frontProcess.pid, in: sonde.text), "found and attached within 1 s of its start", sonde.text)
        XCTAssertFalse(sonde.text.contains("pid \(other.pid)"), sonde.text)

        // The uprobe of back's HTTP server is a breakpoint in the traced process's text only.
        let serverEntry = try entryAddress(of: "go/net-http/server", in: back)
        XCTAssertEqual(try byte(at: serverEntry, inProcess: backProcess.pid), 0xCC, "traced: breakpoint")
        XCTAssertNotEqual(try byte(at: serverEntry, inProcess: other.pid), 0xCC, "left alone: the program's own instruction")

        let requests = ["/api/items/7", "/api/items/7", "/api/health/backend", "/api/local"]
        let frontStatuses = try await sendRequests(requests, port: frontPort, concurrency: 1)
        XCTAssertEqual(frontStatuses, [200, 200, 200, 200])
        let otherStatuses = try await sendRequests(["/items/1"], port: otherPort, concurrency: 1)
        XCTAssertEqual(otherStatuses, [200])
        // One uprobe multi-link per traced process, holding as many uprobes as the log says sites.
        XCTAssertEqual(try uprobeLinks(ofProcess: sonde.pid), [
            frontProcess.pid: try sites(of: frontProcess.pid, in: sonde.text), backProcess.pid: try sites(of: backProcess.pid, in: sonde.text),
        ])

        // back dies mid-run and comes back: detached, freed, found again.
        try backProcess.stop(signal: SIGKILL)
        try sonde.waitForOutput("pid \(backProcess.pid) (service shop-back) exited; its probes are detached")
        let frontLink = [frontProcess.pid: try sites(of: frontProcess.pid, in: sonde.text)]
        try waitUntil("back's link closed") { try uprobeLinks(ofProcess: sonde.pid) == frontLink }
        try? FileManager.default.removeItem(atPath: "\(directory)/back")
        // A deploy replaces the file meanwhile with a new build (another build id): analysed afresh.
        let newGo = GoToolchain.goBin(minor: "1.27").goCommand
        let newBuild = try GoToolchains.build("demo/two-service/back", with: newGo, name: "back-config-new")
        XCTAssertEqual(rename(newBuild, back), 0)
        backProcess = try ChildProcess(back, [
            "-http-listen", "127.0.0.1:\(backPorts[0])", "-grpc-listen", "127.0.0.1:\(backPorts[1])", "-port-file", "\(directory)/back",
        ])
        _ = try ports(writtenTo: "\(directory)/back")
        try sonde.waitForOutput("tracing pid \(backProcess.pid) (\(back)) as service shop-back")
        XCTAssertEqual(
            try uprobeLinks(ofProcess: sonde.pid), frontLink.merging([backProcess.pid: try sites(of: backProcess.pid, in: sonde.text)]) { $1 },
            "the restarted process's link and front's")
        let analyses = sonde.text.split(separator: "\n").filter { $0.hasPrefix("analysed ") }.map { $0.split(separator: ":")[0] }
        let go = try GoToolchains.version(GoToolchains.debian)
        XCTAssertEqual(
            analyses.sorted(),
            ["analysed \(back) (\(go))", "analysed \(back) (\(try GoToolchains.version(newGo)))", "analysed \(front) (\(go))"], sonde.text)
        let afterRestart = try await sendRequests(["/api/items/3"], port: frontPort, concurrency: 1)
        XCTAssertEqual(afterRestart, [200])
        // The killed back's state is reclaimed within one reclaim interval (5 s).
        try waitUntil("the state maps empty", timeout: 15) {
            let maps = try bpfMapEntries(ofProcess: sonde.pid)
            return maps["calls"] == 0 && maps["active_contexts"] == 0
        }

        XCTAssertEqual(try sonde.stop(signal: SIGINT), 0, sonde.text)
        let spans = try receiver.spans()
        func resource(_ span: [String: Any]) -> [String: Any] { span["resource"] as? [String: Any] ?? [:] }
        func summary(_ span: [String: Any]) -> String {
            "\(resource(span)["service.name"] as? String ?? "?") \(span["kind"] as? String ?? "?") \(span["name"] as? String ?? "?")"
        }
        var seen: [String: Int] = [:]
        for span in spans { seen[summary(span), default: 0] += 1 }
        XCTAssertEqual(seen, [
            // front: server spans renamed by mux, HTTP client spans; no gRPC client span (excluded).
            "shop-front SPAN_KIND_SERVER GET /api/items/{id:[0-9]+}": 3, "shop-front SPAN_KIND_SERVER GET /api/health/{service}": 1,
            "shop-front SPAN_KIND_SERVER GET /api/local": 1, "shop-front SPAN_KIND_CLIENT GET": 3,
            // back: its HTTP and gRPC server spans, before and after the restart.
            "shop-back SPAN_KIND_SERVER GET": 3, "shop-back SPAN_KIND_SERVER grpc.health.v1.Health/Check": 1,
        ], "\(spans)")
        let pids = Set(spans.compactMap { resource($0)["process.pid"] as? Int })
        XCTAssertFalse(pids.contains(Int(other.pid)), "no span of the unclaimed process")
        let frontResource = try XCTUnwrap(spans.first { resource($0)["service.name"] as? String == "shop-front" }).map(resource)!
        XCTAssertEqual(frontResource["process.pid"] as? Int, Int(frontProcess.pid))
        XCTAssertEqual(frontResource["process.executable.path"] as? String, front)
        XCTAssertEqual(frontResource["process.executable.name"] as? String, "front-config")
        XCTAssertEqual(frontResource["process.runtime.name"] as? String, "go")
        XCTAssertEqual(frontResource["process.runtime.version"] as? String, try GoToolchains.version(GoToolchains.debian).replacingOccurrences(of: "go", with: ""))
        XCTAssertEqual(frontResource["deployment.environment.name"] as? String, "e2e")
        XCTAssertEqual(frontResource["telemetry.sdk.name"] as? String, "sonde")
        XCTAssertEqual(frontResource["host.name"] as? String, ProcessInfo.processInfo.hostName)
        XCTAssertEqual((frontResource["service.instance.id"] as? String)?.count, 36)
        let backInstances = Set(spans.filter { resource($0)["service.name"] as? String == "shop-back" }.compactMap { resource($0)["service.instance.id"] as? String })
        XCTAssertEqual(backInstances.count, 2, "the restarted back is another instance")
    }

    /// A service claimed by its port: the process is seen as it starts (the kernel reports its
    /// exec), a second before it listens, and is looked at again until it does.
    func testAServiceClaimedByItsPortIsTracedOnceItListens() async throws {
        try TracingTestSetup.requireKernelCapabilities()
        let server = try GoToolchains.build("demo/go-http-server", with: GoToolchains.debian, name: "demo-config-port")
        let directory = try temporaryDirectory()
        let port = try freePort()
        let (sonde, receiver) = try watchingSonde(
            """
            services:
              - name: late-listener
                match: { port: \(port) }
                packs: [go/net-http]
            unmatched: ignore
            """, in: directory, services: "late-listener")
        defer { _ = try? sonde.stop(signal: SIGKILL) }

        let process = try ChildProcess(server, ["-listen", "127.0.0.1:\(port)", "-listen-after", "1s", "-port-file", "\(directory)/port"])
        defer { _ = try? process.stop(signal: SIGKILL) }
        _ = try ports(writtenTo: "\(directory)/port")
        try sonde.waitForOutput("tracing pid \(process.pid) (\(server)) as service late-listener")
        let statuses = try await sendRequests(["/hello", "/created"], port: port, concurrency: 1)
        XCTAssertEqual(statuses, [200, 201])

        XCTAssertEqual(try sonde.stop(signal: SIGINT), 0, sonde.text)
        let spans = try receiver.spans().map { span in
            let resource = span["resource"] as? [String: Any] ?? [:]
            return "\(resource["service.name"] as? String ?? "?") \(resource["process.pid"] as? Int ?? 0) \(span["name"] as? String ?? "?")"
        }
        XCTAssertEqual(spans, ["late-listener \(process.pid) GET", "late-listener \(process.pid) GET"], sonde.text)
    }

    /// Two services run one program from two files (a copy: another inode, the same build id):
    /// analysed once, configured twice, each with its own sampler.
    func testServicesOfOneProgramShareItsAnalysisAndSampleApart() async throws {
        try TracingTestSetup.requireKernelCapabilities()
        let back = try GoToolchains.build("demo/two-service/back", with: GoToolchains.debian, name: "back-sampled")
        let directory = try temporaryDirectory()
        let copy = "\(directory)/back-recorded"
        try FileManager.default.copyItem(atPath: back, toPath: copy)
        let (sonde, receiver) = try watchingSonde(
            """
            services:
              - name: sampled-out
                match: { executable: "*/back-sampled" }
                packs: [go/net-http]
                sampler: { name: always_off }
              - name: recorded
                match: { executable: "*/back-recorded" }
                packs: [go/net-http]
            """, in: directory, services: "sampled-out, recorded")
        defer { _ = try? sonde.stop(signal: SIGKILL) }
        let sampledOut = try ChildProcess(back, ["-port-file", "\(directory)/sampled-out"])
        defer { _ = try? sampledOut.stop(signal: SIGKILL) }
        let recorded = try ChildProcess(copy, ["-port-file", "\(directory)/recorded"])
        defer { _ = try? recorded.stop(signal: SIGKILL) }
        let sampledOutPort = try ports(writtenTo: "\(directory)/sampled-out")[0]
        let recordedPort = try ports(writtenTo: "\(directory)/recorded")[0]
        try sonde.waitForOutput("tracing pid \(sampledOut.pid) (\(back)) as service sampled-out")
        try sonde.waitForOutput("tracing pid \(recorded.pid) (\(copy)) as service recorded")

        let requests = Array(repeating: "/items/1", count: 3)
        let sampledOutStatuses = try await sendRequests(requests, port: sampledOutPort, concurrency: 1)
        let recordedStatuses = try await sendRequests(requests, port: recordedPort, concurrency: 1)
        XCTAssertEqual(sampledOutStatuses + recordedStatuses, Array(repeating: 200, count: 6))
        XCTAssertEqual(try sonde.stop(signal: SIGINT), 0, sonde.text)

        let lines = sonde.text.split(separator: "\n")
        XCTAssertEqual(lines.filter { $0.hasPrefix("analysed ") }.count, 1, sonde.text)
        let sampledOutLine = try XCTUnwrap(lines.first { $0.contains("tracing pid \(sampledOut.pid) ") })
        XCTAssertTrue(sampledOutLine.contains("; recording no trace; attached"), String(sampledOutLine))
        XCTAssertFalse(try XCTUnwrap(lines.first { $0.contains("tracing pid \(recorded.pid) ") }).contains("recording"))
        XCTAssertTrue(sonde.text.contains("traces not sampled: 3"), sonde.text)
        let spans = try receiver.spans()
        let services = spans.map { ($0["resource"] as? [String: Any])?["service.name"] as? String ?? "?" }
        XCTAssertEqual(services, ["recorded", "recorded", "recorded"], "\(spans)")
        XCTAssertEqual(Set(spans.map { $0["kind"] as? String ?? "?" }), ["SPAN_KIND_SERVER"])
    }

    func testABadConfigIsRefusedWithLocatedErrors() throws {
        let directory = try temporaryDirectory()
        let config = "\(directory)/sonde.yaml"
        try """
            services:
              - name: api
                match: { executable: "*/api", user: root }
            exporter: { endpoint: "ftp://collector", timeout-ms: "-5" }
            sampler: { name: sometimes }
            """.write(toFile: config, atomically: true, encoding: .utf8)
        let expected = """
            bad \(config):3:35: unknown key 'user' in a match; expected one of: executable, process-name, command-line, port, cgroup

            """
        let validate = try runSonde(["config", "validate", config])
        XCTAssertEqual(validate.exit, 1)
        XCTAssertEqual(validate.output, expected)
        // The file's own values, checked by the parsers of their OpenTelemetry variables.
        try """
            services:
              - name: api
                match: { executable: "*/api" }
            exporter: { endpoint: "ftp://collector", timeout-ms: "-5" }
            sampler: { name: sometimes }
            """.write(toFile: config, atomically: true, encoding: .utf8)
        let run = try runSonde(["run", "--config", config])
        XCTAssertEqual(run.exit, 1)
        XCTAssertEqual(run.output, """
            Error: \(config):4:23: 'ftp://collector' is not an http:// or https:// URL
            \(config):4:54: '-5' is not a positive number of milliseconds
            \(config):5:18: OTEL_TRACES_SAMPLER 'sometimes' is not a sampler sonde knows; use always_on, always_off, traceidratio, \
            parentbased_always_on, parentbased_always_off or parentbased_traceidratio

            """)
    }

    func testTheExampleConfigIsValid() throws {
        let example = "\(Repository.root)/deploy/sonde.yaml"
        let validate = try runSonde(["config", "validate", example])
        XCTAssertEqual(validate.exit, 0, validate.output)
        XCTAssertEqual(validate.output, "ok  \(example): 2 service(s): shop-front, shop-back; unmatched processes: ignore\n")
    }

    // MARK: helpers

    /// `sonde run --config` on `yaml`, written to DIRECTORY/sonde.yaml, exporting to a new
    /// receiver; returned once it watches for `services` (their names, as sonde lists them).
    private func watchingSonde(_ yaml: String, in directory: String, services: String) throws -> (sonde: ChildProcess, receiver: OTLPReceiver) {
        let config = "\(directory)/sonde.yaml"
        try yaml.write(toFile: config, atomically: true, encoding: .utf8)
        let receiver = try OTLPReceiver()
        let sonde = try ChildProcess(
            Repository.sonde, ["run", "--config", config], environment: ["OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint])
        do {
            try sonde.waitForOutput("watching for the processes of \(services.split(separator: ",").count) services (\(services))")
        } catch {
            _ = try? sonde.stop(signal: SIGKILL)
            throw error
        }
        return (sonde, receiver)
    }

    private func waitUntil(_ what: String, timeout: TimeInterval = 30, _ condition: () throws -> Bool) throws {
        let deadline = Date().addingTimeInterval(timeout)
        while try !condition() {
            guard Date() < deadline else { throw E2EError("timed out waiting for \(what)") }
            Thread.sleep(forTimeInterval: 0.05)
        }
    }

    /// "attached N s after it started" read from sonde's line for the process.
    private func attachLatency(of pid: Int32, in log: String) throws -> String {
        let line = try XCTUnwrap(log.split(separator: "\n").first { $0.contains("tracing pid \(pid) ") })
        let seconds = try XCTUnwrap(line.components(separatedBy: "attached ").last?.split(separator: " ").first.flatMap { Double($0) })
        return seconds <= 1 ? "found and attached within 1 s of its start" : "attached \(seconds) s after its start"
    }

    private func sites(of pid: Int32, in log: String) throws -> Int {
        let line = try XCTUnwrap(log.split(separator: "\n").first { $0.contains("tracing pid \(pid) ") })
        return try XCTUnwrap(line.components(separatedBy: ": ").dropFirst().first?.split(separator: " ").first.flatMap { Int($0) })
    }

    /// The entry site `sonde plan` chooses for a probe.
    private func entryAddress(of probe: String, in binary: String) throws -> UInt64 {
        let plan = try ChildProcess.run(Repository.sonde, ["plan", "--exe", binary])
        let lines = plan.split(separator: "\n")
        let start = try XCTUnwrap(lines.firstIndex { $0.hasPrefix("probe \(probe) ") })
        let entry = try XCTUnwrap(lines[start...].first { $0.trimmingCharacters(in: .whitespaces).hasPrefix("entry  0x") })
        let hex = try XCTUnwrap(entry.split(separator: " ").dropFirst().first?.dropFirst(2))
        return try XCTUnwrap(UInt64(hex, radix: 16))
    }

    private func byte(at address: UInt64, inProcess pid: Int32) throws -> UInt8 {
        let handle = try FileHandle(forReadingFrom: URL(fileURLWithPath: "/proc/\(pid)/mem"))
        defer { try? handle.close() }
        try handle.seek(toOffset: address)
        return try XCTUnwrap(handle.readData(ofLength: 1).first)
    }

    /// The uprobe multi-links a process holds open: the uprobes of each, by the pid it filters on
    /// (from the descriptors' fdinfo).
    private func uprobeLinks(ofProcess pid: Int32) throws -> [Int32: Int] {
        let fdinfo = "/proc/\(pid)/fdinfo"
        var links: [Int32: Int] = [:]
        for entry in try FileManager.default.contentsOfDirectory(atPath: fdinfo) {
            let info = (try? String(contentsOfFile: "\(fdinfo)/\(entry)", encoding: .utf8)) ?? ""
            guard info.contains("link_type:\tuprobe_multi") else { continue }
            func field(_ name: String) -> Int? {
                info.split(separator: "\n").first { $0.hasPrefix("\(name):\t") }.flatMap { Int($0.dropFirst(name.count + 2)) }
            }
            let filtered = try XCTUnwrap(field("pid"), info)
            XCTAssertNil(links[Int32(filtered)], "two links for pid \(filtered)")
            links[Int32(filtered)] = try XCTUnwrap(field("uprobe_cnt"), info)
        }
        return links
    }
}
