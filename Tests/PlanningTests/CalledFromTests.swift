import BinaryAnalysis
import Foundation
import Planning
import ProbePacks
import XCTest

/// `called-from`: an entry-only probe placed on the calls of its function inside one caller (each
/// `call` emulated, the callee's arguments in their registers), so calls from elsewhere cost nothing.
extension PlanCompilerTests {
    /// `main.respond` calls `main.writeHeader(code int)` `calls` times; the server span of `facts()`.
    func respondFacts(calls: Int) -> BinaryFacts {
        var facts = facts()
        let prologue = [
            instruction(0x72_0000, "cmp", "rsp, qword ptr [r14 + 0x10]", emulated: false),
            instruction(0x72_0004, "jbe", "0x720080", emulated: true),
        ]
        let body = (0..<calls).map { instruction(0x72_0010 + 4 * UInt64($0), "call", "0x720200", emulated: true, writes: [.rax]) }
        facts.functions["main.respond"] = FunctionFacts(
            name: "main.respond", address: 0x72_0000, size: 0x90, fileOffset: 0x32_0000, parameters: [],
            instructions: prologue + body + [instruction(0x72_0040, "ret", "", emulated: false)])
        facts.functions["main.writeHeader"] = FunctionFacts(
            name: "main.writeHeader", address: 0x72_0200, size: 0x10, fileOffset: 0x32_0200,
            parameters: [Parameter(name: "code", typeName: "int", registers: [RegisterPiece(register: .rax, size: 8)])],
            instructions: [
                instruction(0x72_0200, "cmp", "rsp, qword ptr [r14 + 0x10]", emulated: false),
                instruction(0x72_0204, "jbe", "0x720208", emulated: true),
                instruction(0x72_0208, "ret", "", emulated: false),
            ])
        facts.types["int"] = TypeFacts(name: "int", kind: .base, byteSize: 8, pointee: nil, members: [])
        return facts
    }

    static let respondPack = """
        format: sonde.probe-pack/v1
        pack: go/writes
        language: go
        library: { module: std, versions: ">=1.17" }
        probes:
          - id: handle
            function: net/http.serverHandler.ServeHTTP
            span: { kind: server, name: handle }
          - id: header-written
            function: main.writeHeader
            called-from: main.respond
            enrich: { span: go/writes/handle }
            on-entry:
              code: { arg: code, type: int }
            attributes:
              http.response.status_code: code
        """

    func testProbeCalledFromOneCallerSitsOnItsCalls() throws {
        let pack = try PackLoader.parse(yaml: Self.respondPack, file: "writes.yaml")
        XCTAssertEqual(pack.probes[1].calledFrom, "main.respond")
        let plan = PlanCompiler.compile(packs: [pack], facts: respondFacts(calls: 2))
        XCTAssertEqual(plan.skipped, [])
        let enricher = try XCTUnwrap(plan.probes.first { $0.probe.id == "header-written" })
        XCTAssertEqual(enricher.entries.map(\.address), [0x72_0010, 0x72_0014])
        XCTAssertEqual(enricher.entries.map(\.role), [.call, .call])
        XCTAssertEqual(enricher.entries.map(\.fileOffset), [0x32_0010, 0x32_0014])
        XCTAssertEqual(enricher.entry.instruction, "call 0x720200 <main.writeHeader>")
        // writeHeader's argument, in the register its call passes it in.
        XCTAssertEqual(enricher.entryProgram, [.loadRegister(.rax), .storeValue(into: 0)])
        XCTAssertEqual(enricher.returns, [])
        XCTAssertEqual(TrapCost(perCallOf: enricher), TrapCost(emulatedHits: 1, singleSteppedHits: 0))

        // The peers' design hooks the function itself, at its first instruction, and nothing else.
        let conventional = PlanCompiler.compile(packs: [pack], facts: respondFacts(calls: 2), placement: .conventional)
        let hooked = try XCTUnwrap(conventional.probes.first { $0.probe.id == "header-written" })
        XCTAssertEqual(hooked.entry.address, 0x72_0200)
        XCTAssertEqual(hooked.extraEntries, [])
    }

    func testCalledFromNeedsOneToThreeDirectCalls() throws {
        let pack = try PackLoader.parse(yaml: Self.respondPack, file: "writes.yaml")
        XCTAssertEqual(PlanCompiler.compile(packs: [pack], facts: respondFacts(calls: 4)).skipped.map(\.description), [
            "go/writes/header-written: main.respond calls main.writeHeader 4 times directly; a probe holds at most 3 call sites",
        ])
        XCTAssertEqual(PlanCompiler.compile(packs: [pack], facts: respondFacts(calls: 0)).skipped.map(\.description), [
            "go/writes/header-written: main.respond does not call main.writeHeader directly",
        ])
        var noCaller = respondFacts(calls: 1)
        noCaller.functions["main.respond"] = nil
        XCTAssertEqual(PlanCompiler.compile(packs: [pack], facts: noCaller).skipped.map(\.description), [
            "go/writes/header-written: no function main.respond in the symbol table of /srv/app",
        ])
    }

    func testOnlyProbesActingAtEntryMayBeCalledFrom() {
        func error(replacing original: String, with replacement: String) -> String {
            loadError(Self.respondPack, replacing: original, with: replacement)
        }
        let message = "called-from puts the probe at the calls of its function, where it acts once and is done: only enrich, end-span "
            + "(at entry) and inject-trace-context probes may have it"
        XCTAssertEqual(
            error(replacing: "    span: { kind: server, name: handle }", with: "    called-from: main.respond\n    span: { kind: server, name: handle }"),
            "bad.yaml:8:5: " + message)
        XCTAssertEqual(
            error(replacing: "enrich: { span: go/writes/handle }\n    on-entry:", with: "enrich: { span: go/writes/handle, at: return }\n    on-return:"),
            "bad.yaml:11:5: " + message)
        XCTAssertEqual(
            error(
                replacing: "enrich: { span: go/writes/handle }\n    on-entry:\n      code: { arg: code, type: int }\n    attributes:\n      http.response.status_code: code",
                with: "extract-trace-context: { span: go/writes/handle, headers: { arg: code, type: go-header-map, case: canonical } }"),
            "bad.yaml:11:5: " + message)
    }
}
