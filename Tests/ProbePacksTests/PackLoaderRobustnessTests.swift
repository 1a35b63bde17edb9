import Foundation
import ProbePacks
import Synchronization
import XCTest

/// Hostile or mistaken pack files: each is refused quickly, with a message that says what is
/// wrong and where, and never quotes file content that was not written as a pack.
final class PackLoaderRobustnessTests: XCTestCase {
    private var directory: URL!

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("sonde-robust-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: directory)
    }

    private func path(_ name: String) -> String { directory.appendingPathComponent(name).path }

    private func write(_ bytes: [UInt8], to name: String) throws -> String {
        try Data(bytes).write(to: URL(fileURLWithPath: path(name)))
        return path(name)
    }

    /// The error `load(file:)` throws, run on another thread so that a regression that hangs
    /// fails this test after a generous guard instead of stalling the suite.
    private func loadError(_ file: String) -> String {
        let outcome = Outcome()
        Thread.detachNewThread {
            do {
                _ = try PackLoader.load(file: file)
                outcome.finish("no error")
            } catch {
                outcome.finish("\(error)")
            }
        }
        guard outcome.done.wait(timeout: .now() + 20) == .success else { return "still loading after 20 s" }
        return outcome.text.withLock { $0 } ?? "no result"
    }

    /// What a loading thread found, handed to the test's thread.
    private final class Outcome: Sendable {
        let text = Mutex<String?>(nil)
        let done = DispatchSemaphore(value: 0)
        func finish(_ result: String) {
            text.withLock { $0 = result }
            done.signal()
        }
    }

    private static let aliasesRefused =
        "YAML anchors and aliases ('&name', '*name') are not allowed in a pack: a few of them can expand a small file"
        + " beyond any bound; write values out in full, and in text do not start a word with '&' or '*'"

    /// Eight levels of ten aliases, the last used as a mapping key: Yams hashes the key in full (10^8 nodes).
    func testAliasBombAsMappingKeyIsRefusedQuickly() throws {
        var lines = ["a0: &a0 [x,x,x,x,x,x,x,x,x,x]"]
        for level in 1...7 {
            lines.append(
                "a\(level): &a\(level) [" + Array(repeating: "*a\(level - 1)", count: 10).joined(separator: ",") + "]"
            )
        }
        lines.append("b: { ? *a7 : 1 }")
        let file = try write(Array((lines.joined(separator: "\n") + "\n").utf8), to: "bomb.yaml")
        XCTAssertEqual(loadError(file), "\(file):1:5: \(Self.aliasesRefused)")
    }

    /// Anchors and aliases are found wherever libyaml would read one, however the text around them is quoted or commented.
    func testAnchorsAndAliasesAreFoundWhereverYAMLWouldReadThem() throws {
        let cases: [(yaml: String, position: String)] = [
            ("x: [\"a # b\", &a 1]\n", "1:14"),  // '#' inside quotes is no comment
            ("x: \"a\n  # b\"\ny: &a 1\n", "3:4"),  // nor in a quoted scalar's second line
            ("x: 'it''s # x'\ny: *a\n", "2:4"),  // '' is a quote inside single quotes
            ("x: 1 # comment\r&a: 2\n", "2:1"),  // a carriage return ends a comment
            ("x: |\n  \"text\ny: &a 1\n", "3:4"),  // a quote in a block scalar opens nothing
            ("x: abc\n  'def\ny: &a 1\n", "3:4"),  // nor in a plain scalar's continuation line
            ("x: {?*a : 1}\n", "1:6"),  // flow keys need no space after '?'
            ("x: {a:*b}\n", "1:7"),
        ]
        for (yaml, position) in cases {
            XCTAssertEqual(error(in: yaml), "bad.yaml:\(position): \(Self.aliasesRefused)", yaml)
        }
    }

    /// Go signatures in comments and type assertions in quotes are not anchors or aliases.
    func testCommentsAndQuotedTextMayMentionPointers() throws {
        let pack = try PackLoader.parse(
            yaml: """
                # func (t *Transport) roundTrip(req *Request) (*Response, error) & more
                format: sonde.probe-pack/v1
                pack: go/example
                language: go
                library: { module: std, versions: ">=1.19" }
                probes:
                  - id: handler
                    function: main.handle
                    span: { kind: server, name: "handle *" }   # *Request &c
                    on-entry:
                      status: { arg: rw, path: "(*net/http.response).status", type: int }

                """,
            file: "ok.yaml"
        )
        XCTAssertEqual(pack.probes[0].onEntry[0].path, [.assertType("*net/http.response"), .field("status")])
    }

    func testNonUTF8PackNamesTheFirstBadByteAndItsPosition() throws {
        let file = try write(
            Array("format: sonde.probe-pack/v1\npack: go/x\nlanguage: gé".utf8) + [0xFF] + Array("o\n".utf8),
            to: "latin.yaml"
        )
        XCTAssertEqual(
            loadError(file),
            "\(file):3:13: the pack file is not UTF-8 text: the byte 0xFF here is not valid UTF-8; save the pack as UTF-8"
        )
    }

    func testNULByteIsReportedWhereItIs() throws {
        let file = try write(
            Array("format: sonde.probe-pack/v1\npack: go/x\nlang".utf8) + [0] + Array("uage: go\n".utf8),
            to: "nul.yaml"
        )
        XCTAssertEqual(
            loadError(file),
            "\(file):3:5: the pack file has a NUL byte here; a pack is YAML text, which allows no control characters but tab and line breaks"
        )
        XCTAssertEqual(
            error(in: "format: x\n\u{7}\n"),
            "bad.yaml:2:1: the pack file has the control character U+0007 here; a pack is YAML text, which allows no control characters but tab and line breaks"
        )
    }

    func testFIFOPackIsRefusedAsNotARegularFile() throws {
        let file = path("fifo.yaml")
        XCTAssertEqual(mkfifo(file, 0o600), 0)
        XCTAssertEqual(
            loadError(file),
            "\(file): cannot read the pack file: it is a FIFO (named pipe), not a regular file"
        )
    }

    func testDeviceAndFolderAreRefusedAsNotRegularFiles() throws {
        XCTAssertEqual(
            loadError("/dev/zero"),
            "/dev/zero: cannot read the pack file: it is a character device, not a regular file"
        )
        XCTAssertEqual(
            loadError(directory.path),
            "\(directory.path): cannot read the pack file: it is a folder, not a regular file"
        )
    }

    func testSymbolicLinkLoopIsNamed() throws {
        try FileManager.default.createSymbolicLink(atPath: path("a.yaml"), withDestinationPath: path("b.yaml"))
        try FileManager.default.createSymbolicLink(atPath: path("b.yaml"), withDestinationPath: path("a.yaml"))
        XCTAssertEqual(
            loadError(path("a.yaml")),
            "\(path("a.yaml")): cannot read the pack file: its symbolic links form a loop"
        )
    }

    func testPackLargerThanOneMebibyteIsRefused() throws {
        let file = try write(Array(repeating: UInt8(ascii: "#"), count: 1 << 20) + [0x0A], to: "huge.yaml")
        XCTAssertEqual(
            loadError(file),
            "\(file): the pack file is larger than 1 MiB (1048577 bytes); a pack is a short YAML file"
        )
    }

    /// A mistake on line 8 is reported even though the capture on line 10, read first, is wrong too.
    func testEveryErrorOfAFileIsReportedInFileOrder() {
        let yaml = Self.validProbe
            .replacingOccurrences(of: "kind: server", with: "kind: sever")
            .replacingOccurrences(of: "type: go-string", with: "type: text")
            .replacingOccurrences(of: "url.path: path", with: "url.path: lower(path)")
        XCTAssertEqual(
            error(in: yaml),
            """
            bad.yaml:8:19: unknown span kind 'sever'; expected one of: server, client, internal, producer, consumer
            bad.yaml:10:47: unknown value type 'text'; expected one of: go-string, c-string, std-string, rust-str, rust-string, int, int32, uint16, bool, non-nil
            bad.yaml:12:17: unknown function 'lower(path)'; expected hostname(host), port(host), url(scheme, host, path, query), url_scheme(tls), rpc_service(method), rpc_method(method), grpc_status(code, error) or sql_operation(query)
            """
        )
    }

    /// Callers get the problems as values, each with its own location.
    func testLoadErrorListsEachProblemWithItsLocation() throws {
        let yaml = Self.validProbe
            .replacingOccurrences(of: "kind: server", with: "kind: sever")
            .replacingOccurrences(of: "    function: main.handle\n", with: "")
        XCTAssertThrowsError(try PackLoader.parse(yaml: yaml, file: "bad.yaml")) { error in
            XCTAssertEqual((error as? PackLoadError)?.file, "bad.yaml")
            XCTAssertEqual(
                (error as? PackLoadError)?.errors,
                [
                    PackError(SourceLocation(file: "bad.yaml", line: 6, column: 5), "a probe is missing 'function'"),
                    PackError(
                        SourceLocation(file: "bad.yaml", line: 7, column: 19),
                        "unknown span kind 'sever'; expected one of: server, client, internal, producer, consumer"
                    ),
                ]
            )
        }
    }

    /// /etc/shadow's first line is a YAML key; quoting it would print a password hash.
    func testFileThatIsNotAPackIsDescribedWithoutQuotingIt() throws {
        let secret = "root:$y$j9T$Qf0Yx1bGkG9cJ3h2$4mVZyd7Q2v5yE0wUQmU8j3Fh0hNfB6o3XbQ3Kp9Q2tC:19700:0:99999:7:::\n"
        let file = try write(Array((secret + "daemon:*:19700:0:99999:7:::\n").utf8), to: "shadow")
        let message = loadError(file)
        XCTAssertEqual(
            message,
            "\(file):1:1: not a probe pack: a pack is a mapping with the keys format, pack, language, library and probes;"
                + " this file's top level has no 'format' key"
        )
        XCTAssertFalse(message.contains("j9T"))
        XCTAssertEqual(
            error(in: "API_TOKEN=0123456789abcdef\n"),
            "bad.yaml:1:1: not a probe pack: a pack is a mapping with the keys format, pack, language, library and probes;"
                + " this file's top level is a text value"
        )
        XCTAssertEqual(
            error(in: "- hunter2\n"),
            "bad.yaml:1:1: not a probe pack: a pack is a mapping with the keys format, pack, language, library and probes;"
                + " this file's top level is a list"
        )
    }

    /// Yams' own message for a repeated key quotes the key, which may be anything in a file that is not a pack.
    func testRepeatedKeyIsLocatedWithoutQuotingIt() {
        XCTAssertEqual(
            error(in: "s3cr3t-t0ken: 1\ns3cr3t-t0ken: 2\n"),
            "bad.yaml:1:1: this key appears more than once in its mapping"
        )
    }

    private func error(in yaml: String) -> String {
        do {
            _ = try PackLoader.parse(yaml: yaml, file: "bad.yaml")
            return "no error"
        } catch {
            return "\(error)"
        }
    }

    static let validProbe = """
        format: sonde.probe-pack/v1
        pack: go/example
        language: go
        library: { module: std, versions: ">=1.19" }
        probes:
          - id: handler
            function: main.handle
            span: { kind: server, name: "handle {path}" }
            on-entry:
              path: { arg: req, path: URL.Path, type: go-string }
            attributes:
              url.path: path

        """
}
