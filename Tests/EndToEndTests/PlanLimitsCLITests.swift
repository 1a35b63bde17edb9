import Foundation
import TestSupport
import XCTest

/// `sonde plan` refuses, per probe and with the pack's file:line, what the BPF program could not
/// run, so `run` never meets it; and a plan with nothing to attach fails like `run` does.
final class PlanLimitsCLITests: XCTestCase {
    private func sonde(_ arguments: [String]) throws -> (status: Int32?, output: String) {
        let run = try runSonde(arguments)
        return (run.exit, run.output)
    }

    private func writePack(_ text: String) throws -> String {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("sonde-limits-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: directory) }
        let file = directory.appendingPathComponent("pack.yaml").path
        try text.write(toFile: file, atomically: true, encoding: .utf8)
        return file
    }

    private static let header = """
        format: sonde.probe-pack/v1
        pack: go/limits
        language: go
        library: { module: std, versions: ">=1.17" }
        probes:

        """

    private func demoServer() throws -> String {
        _ = try GoToolchain.debian.installed()
        return try GoToolchains.build("demo/go-http-server", with: GoToolchains.debian, name: "demo-go119")
    }

    /// Nine request fields, each a few loads and dereferences: 37 entry ops, more than the 32
    /// the BPF program runs.
    func testFetchProgramLongerThanTheBPFProgramRunsIsSkippedWithItsLocation() throws {
        let fields = ["Method", "URL.Path", "URL.RawQuery", "URL.Host", "URL.Scheme", "URL.Fragment", "URL.Opaque", "Host", "Proto"]
        let captures = fields.enumerated().map {
            "          c\($0.offset): { arg: req, path: \($0.element), type: go-string, max-length: 16 }"
        }
        let pack = try writePack(Self.header + """
              - id: wide
                function: net/http.serverHandler.ServeHTTP
                span: { kind: server, name: "wide" }
                on-entry:
            \(captures.joined(separator: "\n"))

            """)
        let result = try sonde(["plan", "--exe", try demoServer(), "--packs", pack, "--pack", "go/limits"])
        XCTAssertEqual(result.status, 1, result.output)
        XCTAssertTrue(result.output.contains("""
            skipped probes:
              go/limits/wide: \(pack):6:5: its entry fetch program has 37 ops; the BPF program runs at most 32. \
            Capture fewer values, or shorter paths, in this probe
            """), result.output)
        XCTAssertTrue(result.output.hasSuffix("no probe of the chosen packs applies to \(try demoServer())\n"), result.output)
    }

    /// 513 probes: the first 512 fill the BPF program's probe configurations; the last is skipped.
    func testProbesBeyondTheBPFProgramsCapacityAreSkippedWithTheirLocation() throws {
        let probes = (0..<513).map { index in
            """
              - id: p\(index)
                function: net/http.serverHandler.ServeHTTP
                span: { kind: internal, name: "p\(index)" }
            """
        }
        let pack = try writePack(Self.header + probes.joined(separator: "\n") + "\n")
        let result = try sonde(["plan", "--exe", try demoServer(), "--packs", pack, "--pack", "go/limits"])
        XCTAssertEqual(result.status, 0, String(result.output.suffix(2000)))
        XCTAssertEqual(result.output.components(separatedBy: "\nprobe go/limits/").count - 1, 512)
        XCTAssertTrue(result.output.hasSuffix("""
            skipped probes:
              go/limits/p512: \(pack):1542:5: the plan already has 512 probes, the most the BPF program holds; enable fewer packs (--pack)

            """), String(result.output.suffix(2000)))
    }
}
