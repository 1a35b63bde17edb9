import Foundation
import ProbePacks
import Services
import XCTest

final class ServiceConfigReaderTests: XCTestCase {
    private var directory: String!

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("sonde-config-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(atPath: directory)
    }

    private func write(_ text: String) throws -> String {
        let file = "\(directory!)/sonde.yaml"
        try text.write(toFile: file, atomically: true, encoding: .utf8)
        return file
    }

    /// The errors, with the temporary folder cut from each location.
    private func errors(_ text: String) throws -> [String] {
        let file = try write(text)
        do {
            _ = try ServiceConfigReader.load(file: file)
            XCTFail("accepted: \(text)")
            return []
        } catch {
            return error.errors.map { $0.description.replacingOccurrences(of: "\(directory!)/", with: "") }
        }
    }

    func testReadsEveryKey() throws {
        let file = try write("""
            # two services and the exporter
            services:
              - name: front
                match: { executable: "*/front-*" }
                packs: [go/*]
                exclude-packs: [go/grpc]
                resource: { deployment.environment.name: staging }
              - name: back
                match:
                  - { process-name: back, port: 8081 }
                  - { command-line: "^/srv/back .*-debug", cgroup: "/kubepods.slice/*" }
                inject-trace-context: false
                sampler: { name: traceidratio, argument: "0.01" }
            unmatched: trace
            exporter:
              endpoint: http://collector:4318
              headers: { authorization: "Bearer a b" }
              max-queue-size: "4096"
            sampler: { name: parentbased_traceidratio, argument: "0.25" }
            """)
        let config = try ServiceConfigReader.load(file: file)
        XCTAssertEqual(config.services, [
            .init(
                name: "front", selectors: [ProcessSelector(executable: "*/front-*")], packs: ["go/*"], excludedPacks: ["go/grpc"],
                resourceAttributes: ["deployment.environment.name": "staging"]),
            .init(
                name: "back",
                selectors: [
                    ProcessSelector(processName: "back", port: 8081),
                    ProcessSelector(commandLine: "^/srv/back .*-debug", cgroup: "/kubepods.slice/*"),
                ],
                injectTraceContext: false, sampler: ["OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.01"],
                samplerSources: [
                    "OTEL_TRACES_SAMPLER": SourceLocation(file: file, line: 13, column: 22),
                    "OTEL_TRACES_SAMPLER_ARG": SourceLocation(file: file, line: 13, column: 46),
                ]),
        ])
        XCTAssertEqual(config.unmatched, .trace)
        XCTAssertEqual(config.environment, [
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_EXPORTER_OTLP_HEADERS": "authorization=Bearer%20a%20b",
            "OTEL_BSP_MAX_QUEUE_SIZE": "4096", "OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.25",
        ])
        XCTAssertEqual(config.environmentSources["OTEL_EXPORTER_OTLP_ENDPOINT"], SourceLocation(file: file, line: 16, column: 13))
        // The process's own variables win; empty ones count as unset.
        XCTAssertEqual(
            config.variables(overriddenBy: ["OTEL_EXPORTER_OTLP_ENDPOINT": "http://other:4318", "OTEL_BSP_MAX_QUEUE_SIZE": ""])["OTEL_EXPORTER_OTLP_ENDPOINT"],
            "http://other:4318")
        XCTAssertEqual(config.variables(overriddenBy: ["OTEL_BSP_MAX_QUEUE_SIZE": ""])["OTEL_BSP_MAX_QUEUE_SIZE"], "4096")
        XCTAssertTrue(config.services[0].enables(pack: "go/net-http"))
        XCTAssertFalse(config.services[0].enables(pack: "go/grpc"))
        XCTAssertTrue(config.services[1].enables(pack: "go/grpc"), "no packs key: every pack")
    }

    func testReportsEveryMistakeWithItsLocation() throws {
        XCTAssertEqual(try errors("""
            services:
              - name: front
                match: { executable: "*/front", colour: blue }
                packs: go/net-http
              - name: front
                match: { port: 8080 }
              - name: back
                match: [{}, { port: 70000 }]
                inject-trace-context: sometimes
                sampler: { argument: "0.5", seed: 7 }
              - match: { process-name: a-process-name-too-long, command-line: "([" }
            unmatched: drop
            exporter: { endpoint: http://x:4318, protocol: grpc }
            extra: 1
            """), [
            "sonde.yaml:3:37: unknown key 'colour' in a match; expected one of: executable, process-name, command-line, port, cgroup",
            "sonde.yaml:4:12: packs must be a list",
            "sonde.yaml:5:5: a service named 'front' is already declared at sonde.yaml:2:5",
            "sonde.yaml:8:13: a match needs at least one of: executable, process-name, command-line, port, cgroup",
            "sonde.yaml:8:25: port 70000 is not a TCP port (1 to 65535)",
            "sonde.yaml:9:27: inject-trace-context must be true or false",
            "sonde.yaml:10:26: a service's sampler argument needs the sampler's name beside it, e.g. name: parentbased_traceidratio",
            "sonde.yaml:10:33: unknown key 'seed' in sampler; expected one of: name, argument",
            "sonde.yaml:11:5: a service is missing 'name'",
            "sonde.yaml:11:28: process-name 'a-process-name-too-long' is longer than the 15 bytes the kernel keeps; use command-line or executable",
            "sonde.yaml:11:67: command-line '([' is not a valid regular expression",
            "sonde.yaml:12:12: unmatched must be one of: ignore, trace; not 'drop'",
            "sonde.yaml:13:38: unknown key 'protocol' in exporter; expected one of: endpoint, traces-endpoint, headers, timeout-ms, compression, certificate, client-certificate, client-key, max-queue-size, max-export-batch-size, schedule-delay-ms, export-timeout-ms",
            "sonde.yaml:14:1: unknown key 'extra' in the config; expected one of: services, unmatched, exporter, sampler",
        ])
    }

    func testRefusesFilesThatAreNotConfigs() throws {
        XCTAssertEqual(try errors(""), ["sonde.yaml:1:1: the file is empty"])
        XCTAssertEqual(try errors("services: [\n"), ["sonde.yaml:2:1: YAML syntax error: while parsing a flow node did not find expected node content"])
        XCTAssertEqual(try errors("- a\n- b\n"), ["sonde.yaml:1:1: the config must be a mapping of keys to values"])
        XCTAssertEqual(try errors("unmatched: trace\n"), ["sonde.yaml:1:1: the config is missing 'services'"])
    }
}
