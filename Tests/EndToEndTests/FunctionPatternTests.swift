import Foundation
import TestSupport
import XCTest

/// A pack's `function` with `*`: every function it matches is probed, and their calls are one
/// probe's spans. Here the two instances of a C++ function template in a program built by the test.
final class FunctionPatternTests: XCTestCase {
    static let pack = """
        format: sonde.probe-pack/v1
        pack: cpp/twice
        language: cpp
        library:
          versions: ">=0"
        probes:
          - id: twice
            function: { pattern: "* twice<*>(*)" }   # int twice<int>(int), long twice<long>(long)
            signature: "int twice(int value)"
            span: { kind: internal, name: "twice" }
            on-entry:
              value: { arg: value, type: int32 }
            attributes:
              twice.value: value
        """

    func testEveryInstanceOfATemplateIsProbedAsOneProbe() throws {
        try TracingTestSetup.requireKernelCapabilities()
        let directory = try temporaryDirectory()
        let binary = "\(directory)/twice"
        _ = try ChildProcess.run(try TestEnvironment.tool("GXX"), ["-O2", "-o", binary, "\(Repository.root)/Tests/Support/template-program/program.cc"])
        let packs = try writePack(Self.pack, named: "cpp/twice", in: directory)

        // The plan names both instances, each at the address the symbol table gives it (nm -C, not Sonde).
        let plan = try ChildProcess.run(Repository.sonde, ["plan", "--exe", binary] + packs)
        let symbols = try ChildProcess.run("/usr/bin/nm", ["-C", binary]).split(separator: "\n")
        func address(of name: String) throws -> String {
            let line = try XCTUnwrap(symbols.first { $0.hasSuffix(" T \(name)") || $0.hasSuffix(" W \(name)") }, "\(name) in nm's output")
            return "0x" + String(line.prefix { $0 != " " }.drop { $0 == "0" })
        }
        let instances = ["int twice<int>(int)", "long twice<long>(long)"]
        for instance in instances {
            XCTAssertTrue(plan.contains("probe cpp/twice/twice ("), plan)
            XCTAssertTrue(plan.contains("): \(instance)\n"), plan)
            XCTAssertTrue(plan.contains("  entry  \(try address(of: instance)) "), "\(instance):\n\(plan)")
        }
        let note = plan.split(separator: "\n").first { $0.contains("cpp/twice/twice: the pattern * twice<*>(*) matches 2 functions, each probed: ") }
        XCTAssertEqual(note.map { Set($0.components(separatedBy: "each probed: ")[1].components(separatedBy: "; ")) }, Set(instances), plan)

        let program = try ChildProcess(binary, [], takesInput: true)
        defer { _ = try? program.stop() }
        try program.waitForOutput("ready")
        let (spans, sonde) = try traceInput(to: program, sondeArguments: packs, lines: ["int 21", "long 5000000000", "int 4"]) {
            try $0.waitForLines(4)
        }
        XCTAssertEqual(program.text, "ready\n42\n10000000000\n8\n")
        XCTAssertTrue(sonde.contains("note: cpp/twice/twice: the pattern * twice<*>(*) matches 2 functions, each probed"), sonde)
        // The long instance's value is read as the prototype says, an int: the low 32 bits of 5000000000.
        XCTAssertEqual(spans.map { "\($0["name"] ?? "?") \(attributes($0)["twice.value"] ?? "-")" }, ["twice 21", "twice 705032704", "twice 4"])
        XCTAssertEqual(Set(spans.compactMap { $0["trace_id"] as? String }).count, 3, "each call a trace of its own")
    }
}
