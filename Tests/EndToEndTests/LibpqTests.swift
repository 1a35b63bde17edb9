import Foundation
import TestSupport
import XCTest

/// What the c/libpq pack adds to its scenarios (NativeScenarios.swift, run by NativeMatrixTests):
/// the plan on the library, versions and files it refuses, the statement text left out.
final class LibpqTests: XCTestCase {
    static let libpq = "/usr/lib/x86_64-linux-gnu/libpq.so.5"
    private var server: PostgresServer!

    override func setUpWithError() throws {
        try TracingTestSetup.requireKernelCapabilities()
        server = try PostgresServer()
        addTeardownBlock { [server] in server?.stop() }
    }

    /// A deployment that must not export statements (their values) omits the attribute; the span
    /// keeps its operation name, and a misspelt attribute is refused rather than exported.
    func testQueryTextOmittedOnRequest() throws {
        let misspelt = try runSonde(["run", "--pid", String(getpid()), "--pack", "c/libpq", "--omit-attribute", "db.qeury.text"])
        XCTAssertEqual(misspelt.exit, 1)
        XCTAssertTrue(misspelt.output.hasSuffix(
            "Error: --omit-attribute db.qeury.text: no chosen pack sets it (they set db.namespace, db.operation.name, db.query.text, db.response.status_code, "
                + "db.system.name, server.address)\n"), misspelt.output)
        let python = try TestEnvironment.tool("DEBIAN_PYTHON")
        let client = try ChildProcess(python, ["-u", "\(Repository.root)/Tests/Support/libpq-client/client.py", server.connection], takesInput: true)
        defer { _ = try? client.stop() }
        try client.waitForOutput("ready")
        let spans = try LibpqScenarios.trace(client, lines: ["exec select %s::int + 1 | 41"], options: ["--omit-attribute", "db.query.text"]) {
            try $0.waitForLines(2)
        }
        XCTAssertEqual(spans, [LibpqScenarios.StatementSpan("SELECT", query: nil, operation: "SELECT")])
    }

    /// `sonde plan` on the library itself: every site is one the kernel emulates, at the offsets
    /// its dynamic symbol table gives (read here by readelf, not by Sonde).
    func testPlanOfTheLibraryUsesOnlyEmulatedSites() throws {
        let plan = try ChildProcess.run(Repository.sonde, ["plan", "--exe", Self.libpq, "--pack", "c/libpq"])
        let symbols = try ChildProcess.run("/usr/bin/readelf", ["--dyn-syms", "-W", Self.libpq])
        func offset(of name: String) -> UInt64? {
            symbols.split(separator: "\n").lazy.map { $0.split(separator: " ") }
                .first { $0.count >= 8 && $0[7] == name }.flatMap { UInt64($0[1], radix: 16) }
        }
        let sites = plan.split(separator: "\n").filter { $0.hasPrefix("  entry  0x") || $0.hasPrefix("  return 0x") }
        XCTAssertEqual(sites.count, 15, plan)
        XCTAssertTrue(sites.allSatisfy { $0.hasSuffix("[emulated (cheap)]") || $0.hasSuffix("[hook emulated (cheap), return through the kernel (cheap)]") }, plan)
        for function in ["PQsendQueryParams", "PQsendPrepare", "PQsendQueryPrepared", "PQgetResult"] {
            let hex = String(try XCTUnwrap(offset(of: function), function), radix: 16)
            XCTAssertTrue(plan.contains("return 0x\(hex) file offset 0x\(hex)  return probe, hooked at push rbp"), "\(function) at 0x\(hex):\n\(plan)")
        }
        // PQsendQuery is `mov edx, 1; jmp …`: its entry is the jump, 5 bytes in, where conn and query are still in RDI and RSI.
        let sendQuery = String(try XCTUnwrap(offset(of: "PQsendQuery")) + 5, radix: 16)
        XCTAssertTrue(plan.contains("entry  0x\(sendQuery) file offset 0x\(sendQuery)  jmp "), plan)
        XCTAssertTrue(plan.hasPrefix("attach plan for \(Self.libpq) (not Go, shared library libpq.so.5 5.15)"), plan)
        XCTAssertTrue(plan.hasSuffix("per request, if each probed function runs once: 9 emulated + 0 single-stepped hits ≈ 5.85 µs of traps\n"), plan)
    }

    /// A copy of the library whose name says another version is refused, with the reason; a
    /// program is not the library, and without --pid its libraries are not looked for.
    func testAnotherVersionOrFileIsRefusedWithItsReason() throws {
        let directory = try temporaryDirectory()
        let copy = "\(directory)/libpq.so.5.99"
        // The soname is a link: copy the library file it names, not the link.
        try FileManager.default.copyItem(atPath: URL(fileURLWithPath: Self.libpq).resolvingSymlinksInPath().path, toPath: copy)
        let newer = try runSonde(["plan", "--exe", copy, "--pack", "c/libpq"])
        XCTAssertEqual(newer.exit, 1)
        XCTAssertTrue(newer.output.contains("  c/libpq/query: libpq.so.5 5.99 is outside the pack's range >=5.15 <5.16\n"), newer.output)
        let program = try runSonde(["run", "--exe", server.psql, "--pack", "c/libpq"])
        XCTAssertEqual(program.exit, 1)
        XCTAssertTrue(program.output.hasSuffix(
            "Error: no probe of the chosen packs applies to \(server.psql); packs that probe a shared library, c/libpq (libpq.so.5), "
                + "trace it in a running process: --pid\n"), program.output)
    }
}
