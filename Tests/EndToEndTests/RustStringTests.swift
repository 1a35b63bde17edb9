import Foundation
import TestSupport
import XCTest

/// rust-str and rust-string captures on a program built by the test with rustc -O -g: `&str` in
/// registers, `String` passed by value (by reference in the ABI), and both as struct fields.
/// The pack names `crate: std`, whose version is the compiler's.
final class RustStringTests: XCTestCase {
    static let pack = """
        format: sonde.probe-pack/v1
        pack: rust/strings
        language: rust
        library: { crate: std, versions: ">=1.80" }
        probes:
          - id: greet
            function: "rust_strings::greet"
            span: { kind: internal, name: "greet {name}" }
            on-entry:
              name: { arg: name, type: rust-str, max-length: 8 }
          - id: keep
            function: "rust_strings::keep"
            span: { kind: internal, name: "keep {name}" }
            on-entry:
              name: { arg: name, type: rust-string }
          - id: weigh
            function: "rust_strings::weigh"
            span: { kind: internal, name: "weigh {label}" }
            on-entry:
              label: { arg: item, path: label, type: rust-string }
              tag: { arg: item, path: tag, type: rust-str }
            attributes:
              item.tag: tag
        """

    func testRustStringsAreReadInRegistersThroughReferencesAndInStructs() throws {
        try TracingTestSetup.requireKernelCapabilities()
        let directory = try temporaryDirectory()
        let binary = "\(directory)/rust_strings"
        _ = try ChildProcess.run(try TestEnvironment.tool("RUSTC"), [
            "--crate-name", "rust_strings", "-C", "opt-level=2", "-g", "-o", binary, "\(Repository.root)/Tests/Support/rust-strings/main.rs",
        ])
        let packs = try writePack(Self.pack, named: "rust/strings", in: directory)

        // The String's buffer pointer follows its capacity: read at +8, its length right after.
        let plan = try ChildProcess.run(Repository.sonde, ["plan", "--exe", binary] + packs)
        XCTAssertTrue(plan.contains("  entry program:\n    read string RDI:RSI (max 8) into data[0]\n"), plan)
        XCTAssertTrue(plan.contains("  entry program:\n    load RDI\n    add 8\n    read go-string (max 128) into data[0]\n  return"), plan)
        XCTAssertTrue(plan.contains("    load RDI\n    add 8\n    read go-string (max 128) into data[0]\n    load RDI\n    add 24\n"), plan)

        // std's version is the compiler's (rustc --version), which it writes in .comment.
        let rustc = try ChildProcess.run(try TestEnvironment.tool("RUSTC"), ["--version"]).split(separator: " ")[1]
        _ = try writePack(Self.pack.replacingOccurrences(of: ">=1.80", with: "<1.0"), named: "rust/strings", in: directory)
        let refused = try runSonde(["plan", "--exe", binary] + packs)
        XCTAssertEqual(refused.exit, 1)
        XCTAssertTrue(refused.output.contains("  rust/strings/greet: std \(rustc) is outside the pack's range <1.0\n"), refused.output)
        _ = try writePack(Self.pack, named: "rust/strings", in: directory)

        let program = try ChildProcess(binary, [], takesInput: true)
        defer { _ = try? program.stop() }
        try program.waitForOutput("ready")
        let (spans, _) = try traceInput(to: program, sondeArguments: packs, lines: ["héllo wörld", "ok"]) { try $0.waitForLines(3) }
        // "héllo wörld" is 13 bytes: greet's capture keeps 8 of them, "héllo w", and marks the cut.
        XCTAssertEqual(spans.map { "\($0["name"] ?? "?") \(attributes($0)["item.tag"] ?? "-")" }, [
            "greet héllo w… -", "keep héllo wörld -", "weigh HÉLLO WÖRLD static tag",
            "greet ok -", "keep ok -", "weigh OK static tag",
        ])
    }
}
