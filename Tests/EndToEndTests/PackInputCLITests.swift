import Foundation
import XCTest

/// Untrusted or mistaken pack input through the CLI: every problem is printed on its own line,
/// nothing hangs, and the search for packs is bounded.
final class PackInputCLITests: XCTestCase {
    private var directory: URL!

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent(
            "sonde-pack-input-\(UUID().uuidString)"
        )
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: directory)
    }

    private func sonde(
        _ arguments: [String], environment: [String: String] = [:], guard seconds: TimeInterval = 120
    ) throws -> (status: Int32?, output: String) {
        let run = try runSonde(arguments, environment: environment, timeout: seconds)
        return (run.exit, run.output)
    }

    private func file(_ name: String, _ text: String) throws -> String {
        let path = directory.appendingPathComponent(name).path
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    func testValidatePrintsEveryErrorOfAFileOnItsOwnLineInFileOrder() throws {
        let bad = try file(
            "bad.yaml",
            """
            format: sonde.probe-pack/v1
            pack: go/bad
            language: go
            library: { module: std, versions: ">=1.17" }
            probes:
              - id: p
                function: main.f
                span: { kind: sever, name: "{path}" }
                on-entry:
                  path: { arg: req, path: URL.Path, type: text }

            """
        )
        let result = try sonde(["packs", "validate", bad])
        XCTAssertEqual(result.status, 1)
        XCTAssertEqual(
            result.output,
            """
            bad \(bad):8:19: unknown span kind 'sever'; expected one of: server, client, internal, producer, consumer
            bad \(bad):10:47: unknown value type 'text'; expected one of: go-string, c-string, std-string, rust-str, rust-string, int, int32, uint16, bool, non-nil

            """
        )
    }

    func testPacksFromTheRootFolderAreRefusedAtTheSearchBound() throws {
        let result = try sonde(["packs", "list", "--packs", "/"])
        XCTAssertEqual(result.status, 1)
        XCTAssertEqual(
            result.output.split(separator: "\n").filter { $0.hasPrefix("pack error:") },
            [
                "pack error: /: not searched: a pack folder may hold at most 10000 files and folders, at most 8 levels deep,"
                    + " and this one is bigger; point --packs or SONDE_PACK_PATH at the folder that holds the packs"
            ]
        )
    }

    func testEmptyEntriesOfSondePackPathAreReported() throws {
        let result = try sonde(["packs", "list"], environment: ["SONDE_PACK_PATH": ":::"])
        XCTAssertEqual(result.status, 1)
        XCTAssertEqual(
            result.output.split(separator: "\n").filter { $0.hasPrefix("pack error:") },
            [
                "pack error: the pack search path ':::' has 4 empty entries (a leading, trailing or doubled ':');"
                    + " each entry must name a folder or a pack file"
            ]
        )
    }

    /// The worked example of docs/probe-packs.md as a user runs it: their own pack folder and a
    /// shipped pack together; a shipped pack of the same name is replaced, with a note; a `--pack`
    /// that names nothing stops `run` before it looks for the process.
    func testUserPacksAreUsedBesideTheShippedOnes() throws {
        let demo = try TracingTestSetup.demoServer()
        _ = try file("user-mux.yaml", """
            format: sonde.probe-pack/v1
            pack: go/user-mux
            language: go
            library: { module: std, versions: ">=1.17" }
            probes:
              - id: mux
                function: net/http.(*ServeMux).ServeHTTP
                span: { kind: internal, name: "mux" }

            """)
        let planned = try sonde(["plan", "--exe", demo, "--packs", directory.path, "--pack", "go/user-mux", "--pack", "go/net-http"])
        XCTAssertEqual(planned.status, 0, planned.output)
        let probes = planned.output.split(separator: "\n").filter { $0.hasPrefix("probe ") }.map { $0.split(separator: " ")[1] }
        XCTAssertEqual(probes, [
            "go/user-mux/mux", "go/net-http/server", "go/net-http/client", "go/net-http/server-finished",
            "go/net-http/server-finished-http2", "go/net-http/server-hijacked", "go/net-http/client-request-headers",
        ], planned.output)

        let shippedRuntime = "\(Repository.root)/probe-packs/go/runtime.yaml"
        let replacement = try file("runtime.yaml", try String(contentsOfFile: shippedRuntime, encoding: .utf8))
        let replaced = try sonde(["plan", "--exe", demo, "--packs", directory.path, "--pack", "go/runtime"])
        XCTAssertEqual(replaced.status, 0, replaced.output)
        XCTAssertTrue(replaced.output.contains("note: pack 'go/runtime' from \(replacement) replaces the shipped one at \(shippedRuntime)\n"), replaced.output)

        let refused = try sonde(["run", "--exe", demo, "--packs", directory.path, "--pack", "go/net-htp"])
        XCTAssertEqual(refused.status, 1, refused.output)
        XCTAssertEqual(refused.output.split(separator: "\n").last.map(String.init), """
            Error: no pack named 'go/net-htp' in \(directory.path):\(Repository.root)/probe-packs \
            (available: go/runtime, go/user-mux, c/libpq, cpp/httplib, go/gorilla-mux, go/grpc, go/net-http, rust/hyper)
            """, refused.output)
    }

    func testValidateOfAFolderWithoutPacksIsAnError() throws {
        let result = try sonde(["packs", "validate", directory.path])
        XCTAssertEqual(result.status, 1)
        XCTAssertEqual(result.output, "bad \(directory.path): no pack files (*.yaml or *.yml) in this folder\n")
    }

    func testValidateRefusesAFIFOWithoutWaitingForAWriter() throws {
        let fifo = directory.appendingPathComponent("fifo.yaml").path
        XCTAssertEqual(mkfifo(fifo, 0o600), 0)
        let result = try sonde(["packs", "validate", fifo])
        XCTAssertEqual(result.status, 1)
        XCTAssertEqual(
            result.output,
            "bad \(fifo): cannot read the pack file: it is a FIFO (named pipe), not a regular file\n"
        )
    }

    func testValidateNamesSymbolicLinkLoops() throws {
        let loop = directory.appendingPathComponent("loop.yaml").path
        try FileManager.default.createSymbolicLink(atPath: loop, withDestinationPath: loop)
        let result = try sonde(["packs", "validate", loop])
        XCTAssertEqual(result.status, 1)
        XCTAssertEqual(result.output, "bad \(loop): its symbolic links form a loop\n")
    }

    func testValidateOfASecretFileSaysWhatIsWrongWithoutQuotingIt() throws {
        let shadow = try file(
            "shadow",
            "root:$y$j9T$Qf0Yx1bGkG9cJ3h2$4mVZyd7Q2v5yE0wUQmU8j3Fh0hNfB6o3XbQ3Kp9Q2tC:19700:0:99999:7:::\n"
        )
        let result = try sonde(["packs", "validate", shadow])
        XCTAssertEqual(result.status, 1)
        XCTAssertEqual(
            result.output,
            "bad \(shadow):1:1: not a probe pack: a pack is a mapping with the keys format, pack, language, library and probes;"
                + " this file's top level has no 'format' key\n"
        )
    }

    func testValidateRefusesAnAliasBombQuickly() throws {
        var lines = ["a0: &a0 [x,x,x,x,x,x,x,x,x,x]"]
        for level in 1...7 {
            lines.append(
                "a\(level): &a\(level) [" + Array(repeating: "*a\(level - 1)", count: 10).joined(separator: ",") + "]"
            )
        }
        lines.append("b: { ? *a7 : 1 }")
        let bomb = try file("bomb.yaml", lines.joined(separator: "\n") + "\n")
        let result = try sonde(["packs", "validate", bomb], guard: 30)
        XCTAssertEqual(result.status, 1)
        XCTAssertEqual(
            result.output,
            "bad \(bomb):1:5: YAML anchors and aliases ('&name', '*name') are not allowed in a pack: a few of them can expand a"
                + " small file beyond any bound; write values out in full, and in text do not start a word with '&' or '*'\n"
        )
    }
}
