import Foundation
import Planning
import TestSupport
import XCTest

/// What a user sees for bad input: a clear message and exit status, never a crash.
final class CLIErrorTests: XCTestCase {
    private func sonde(_ arguments: [String]) throws -> (status: Int32?, output: String) {
        let run = try runSonde(arguments)
        return (run.exit, run.output)
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
            ok  \(shipped): go/net-http, 7 probe(s)
            bad \(bad):8:33: span name refers to unknown capture 'missing'; the probe defines no captures in on-entry or on-return

            """)
    }

    func testNonGoBinaryGetsOneReasonPerProbe() throws {
        let result = try sonde(["plan", "--exe", "/bin/ls"])
        XCTAssertEqual(result.status, 1, "nothing to attach is a failure, as for run")
        XCTAssertTrue(result.output.hasPrefix("attach plan for /bin/ls (not Go, PIE)\n"), result.output)
        XCTAssertTrue(result.output.contains("go/net-http/server: not a Go program (no Go build info in /bin/ls)"), result.output)
    }

    /// A stripped build is planned from the shipped offset table, and the plan says so per capture;
    /// a Go version the table lacks skips that pack's probes, each with the reason.
    func testStrippedPlanNamesOffsetOriginsAndMissingVersions() throws {
        _ = try GoToolchain.debian.installed()
        let stripped = try GoToolchains.build("demo/go-http-server", with: GoToolchains.debian, flags: ["-ldflags=-s -w"], name: "demo-go119-stripped")
        let version = try GoToolchains.version(GoToolchains.debian)
        let planned = try sonde(["plan", "--exe", stripped, "--pack", "go/net-http"])
        XCTAssertEqual(planned.status, 0, planned.output)
        XCTAssertTrue(planned.output.contains("    method: go-string max 16 at data[0], offsets from offset table \(version)\n"), planned.output)
        XCTAssertTrue(planned.output.contains("    status: int at data[344], offsets from offset table \(version)\n"), planned.output)
        XCTAssertTrue(planned.output.contains("    http2-status: int at data[352], offsets from offset table \(version)\n"), planned.output)

        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("sonde-cli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let packFile = directory.appendingPathComponent("net-http.yaml").path
        try FileManager.default.copyItem(atPath: "\(Repository.root)/probe-packs/go/net-http.yaml", toPath: packFile)
        var table = try OffsetTable.load(path: "\(Repository.root)/probe-packs/go/net-http.offsets.json")
        table.entries.removeAll { $0.goVersion == version }
        try table.encoded().write(to: URL(fileURLWithPath: OffsetTable.path(forPackFile: packFile)))
        let recorded = table.entries.map(\.goVersion).joined(separator: ", ")
        let reason = "no offsets recorded for \(version) (the table has \(recorded)); trace a build without -s -w, or add this toolchain to the table"
        let missing = try sonde(["plan", "--exe", stripped, "--packs", directory.path, "--pack", "go/net-http"])
        XCTAssertEqual(missing.status, 1, missing.output)
        XCTAssertTrue(missing.output.hasSuffix("""
            skipped probes:
              go/net-http/server: \(reason)
              go/net-http/client: \(reason)
              go/net-http/server-finished: it adds to go/net-http/server, which is not planned for this binary
              go/net-http/server-finished-http2: it adds to go/net-http/server, which is not planned for this binary
              go/net-http/server-finished-internal-http2: no function net/http/internal/http2.(*responseWriter).handlerDone in the symbol table or Go function table (.gopclntab) of \(stripped)
              go/net-http/server-hijacked: it adds to go/net-http/server, which is not planned for this binary
              go/net-http/client-request-headers: it sends the trace context of go/net-http/client, which is not planned for this binary
            Error: no probe of the chosen packs applies to \(stripped)

            """), missing.output)
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
