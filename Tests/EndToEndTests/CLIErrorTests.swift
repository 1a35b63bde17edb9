import Foundation
import XCTest

/// What a user sees for bad input: a clear message and exit status, never a crash.
final class CLIErrorTests: XCTestCase {
    func sonde(_ arguments: [String]) throws -> (status: Int32, output: String) {
        let child = try ChildProcess(Repository.sonde, arguments)
        child.process.waitUntilExit()
        Thread.sleep(forTimeInterval: 0.05)
        return (child.process.terminationStatus, child.text)
    }

    func testValidateReportsEachBadPackWithItsPosition() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("sonde-cli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let bad = directory.appendingPathComponent("bad.yaml").path
        try """
            format: sonde.probe-pack/v1
            pack: go/bad
            language: go
            library: { module: std, versions: ">=1.17" }
            probes:
              - id: p
                function: main.f
                span: { kind: server, name: "{missing}" }

            """.write(toFile: bad, atomically: true, encoding: .utf8)
        let shipped = "\(Repository.root)/probe-packs/go/net-http.yaml"
        let result = try sonde(["packs", "validate", shipped, bad])
        XCTAssertEqual(result.status, 1)
        XCTAssertEqual(result.output, """
            ok  \(shipped): go/net-http, 2 probe(s)
            bad \(bad):8:33: span name refers to unknown capture 'missing'; the probe defines no captures in on-entry or on-return

            """)
    }

    func testNonGoBinaryGetsOneReasonPerProbe() throws {
        let result = try sonde(["plan", "--exe", "/bin/ls"])
        XCTAssertEqual(result.status, 0)
        XCTAssertTrue(result.output.hasPrefix("attach plan for /bin/ls (not Go, PIE)\n"), result.output)
        XCTAssertTrue(result.output.contains("go/net-http/server: not a Go program (no Go build info in /bin/ls)"), result.output)
    }

    func testRunRefusesWhenNoProbeApplies() throws {
        let result = try sonde(["run", "--exe", "/bin/ls", "--pack", "go/net-http"])
        XCTAssertNotEqual(result.status, 0)
        XCTAssertTrue(result.output.contains("skipped go/net-http/server: not a Go program"), result.output)
        XCTAssertTrue(result.output.contains("no probe of the chosen packs applies to /bin/ls"), result.output)
    }

    func testNotAnExecutable() throws {
        let result = try sonde(["plan", "--exe", "\(Repository.root)/README.md"])
        XCTAssertNotEqual(result.status, 0)
        XCTAssertTrue(result.output.contains("README.md"), result.output)
        XCTAssertFalse(result.output.contains("crashed"), result.output)
    }

    func testMissingProcess() throws {
        let result = try sonde(["run", "--pid", "999999999"])
        XCTAssertNotEqual(result.status, 0)
        XCTAssertTrue(result.output.contains("no process 999999999 whose executable can be read"), result.output)
    }
}
