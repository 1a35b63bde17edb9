import BinaryAnalysis
import Foundation
import Planning
import ProbePacks
import XCTest

/// Plans the shipped net/http pack against hand-made binary facts shaped like Go 1.19's.
final class PlanCompilerTests: XCTestCase {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    /// net/http's server probe ending at its RETs, with a type-checked return capture.
    static let packFile = repository.appendingPathComponent("Tests/Support/packs/net-http-server-at-return.yaml").path
    static let shippedPackFile = repository.appendingPathComponent("probe-packs/go/net-http.yaml").path

    static let serveHTTP = "net/http.serverHandler.ServeHTTP"
    static let responseTypeAddress: UInt64 = 0x7a_1000

    func instruction(_ address: UInt64, _ mnemonic: String, _ operands: String, emulated: Bool, writes: [Register] = []) -> Instruction {
        Instruction(
            address: address, fileOffset: address - 0x40_0000, length: 4, mnemonic: mnemonic, operands: operands,
            kernelEmulates: emulated, isReturn: mnemonic == "ret", writtenRegisters: writes)
    }

    func goPrologue() -> [Instruction] {
        [
            instruction(0x62_9180, "cmp", "rsp, qword ptr [r14 + 0x10]", emulated: false),
            instruction(0x62_9184, "jbe", "0x629250", emulated: true),
            instruction(0x62_918a, "push", "rbp", emulated: true, writes: [.rsp]),
            instruction(0x62_918b, "mov", "rbp, rsp", emulated: false, writes: [.rbp]),
            instruction(0x62_9200, "ret", "", emulated: false),
            instruction(0x62_9240, "ret", "", emulated: false),
        ]
    }

    func facts(goVersion: String? = "go1.19.8", hasDWARF: Bool = true, instructions: [Instruction]? = nil, requestFields: [Member]? = nil) -> BinaryFacts {
        let function = FunctionFacts(
            name: Self.serveHTTP, address: 0x62_9180, size: 0xd0, fileOffset: 0x22_9180,
            parameters: hasDWARF ? [
                Parameter(name: "sh", typeName: "net/http.serverHandler", registers: [RegisterPiece(register: .rax, size: 8)]),
                Parameter(name: "rw", typeName: "net/http.ResponseWriter", registers: [RegisterPiece(register: .rbx, size: 8), RegisterPiece(register: .rcx, size: 8)]),
                Parameter(name: "req", typeName: "*net/http.Request", registers: [RegisterPiece(register: .rdi, size: 8)]),
            ] : nil,
            instructions: instructions ?? goPrologue())
        let types: [String: TypeFacts] = [
            "*net/http.Request": TypeFacts(name: "*net/http.Request", kind: .pointer, byteSize: 8, pointee: "net/http.Request", members: []),
            "net/http.Request": TypeFacts(name: "net/http.Request", kind: .structure, byteSize: 248, pointee: nil, members: requestFields ?? [
                Member(name: "Method", typeName: "string", offset: 0),
                Member(name: "URL", typeName: "*net/url.URL", offset: 16),
                Member(name: "Header", typeName: "net/http.Header", offset: 56),
                Member(name: "Host", typeName: "string", offset: 80),
                Member(name: "TLS", typeName: "*crypto/tls.ConnectionState", offset: 232),
            ]),
            "*crypto/tls.ConnectionState": TypeFacts(
                name: "*crypto/tls.ConnectionState", kind: .pointer, byteSize: 8, pointee: "crypto/tls.ConnectionState", members: []),
            "*net/url.URL": TypeFacts(name: "*net/url.URL", kind: .pointer, byteSize: 8, pointee: "net/url.URL", members: []),
            "net/url.URL": TypeFacts(name: "net/url.URL", kind: .structure, byteSize: 144, pointee: nil, members: [
                Member(name: "Scheme", typeName: "string", offset: 0),
                Member(name: "Path", typeName: "string", offset: 56),
            ]),
            "net/http.ResponseWriter": TypeFacts(name: "net/http.ResponseWriter", kind: .interface, byteSize: 16, pointee: nil, members: []),
            "*net/http.response": TypeFacts(
                name: "*net/http.response", kind: .pointer, byteSize: 8, pointee: "net/http.response", members: [],
                runtimeTypeAddress: Self.responseTypeAddress),
            "net/http.response": TypeFacts(name: "net/http.response", kind: .structure, byteSize: 200, pointee: nil, members: [
                Member(name: "conn", typeName: "*net/http.conn", offset: 0),
                Member(name: "status", typeName: "int", offset: 136),
            ]),
        ]
        return BinaryFacts(
            path: "/srv/app", isPositionIndependent: false,
            goBuild: goVersion.map { GoBuildInfo(goVersion: $0, mainModule: "", dependencies: []) },
            hasDWARF: hasDWARF, functions: [Self.serveHTTP: function], dataSymbols: [:], types: types)
    }

    /// The server probe ending at its RETs, which these facts describe.
    func serverPack() throws -> ProbePack {
        try PackLoader.load(file: Self.packFile)
    }

    func plan(_ facts: BinaryFacts) throws -> AttachPlan {
        PlanCompiler.compile(packs: [try serverPack()], facts: facts)
    }

    func testNetHTTPServerProbeCompiles() throws {
        let plan = try plan(facts())
        XCTAssertEqual(plan.skipped, [])
        let probe = try XCTUnwrap(plan.probes.first)
        XCTAssertEqual(probe.qualifiedID, "go/net-http/server")
        XCTAssertEqual(probe.keyMode, .goroutine)
        // The JBE after the stack check: emulated, arguments intact, skipped when entering morestack.
        XCTAssertEqual(probe.entry.address, 0x62_9184)
        XCTAssertEqual(probe.entry.fileOffset, 0x22_9184)
        XCTAssertEqual(probe.entry.instruction, "jbe 0x629250")
        XCTAssertTrue(probe.entry.kernelEmulates)
        XCTAssertEqual(probe.entry.skipFlagsMask, 0x41)
        XCTAssertEqual(probe.returns.map(\.address), [0x62_9200, 0x62_9240])

        XCTAssertEqual(probe.captureSlots.map(\.name), ["method", "path", "host", "status"])
        XCTAssertEqual(probe.captureSlots.map(\.offset), [0, 24, 160, 232])
        XCTAssertEqual(probe.entryProgram, [
            .loadRegister(.rbx), .save(slot: 0), .loadRegister(.rcx), .save(slot: 1),
            .loadRegister(.rdi), .readGoString(into: 0, maxLength: 16),
            .loadRegister(.rdi), .add(16), .dereference, .add(56), .readGoString(into: 24, maxLength: 128),
            .loadRegister(.rdi), .add(80), .readGoString(into: 160, maxLength: 64),
        ])
        XCTAssertEqual(probe.returnProgram, [
            .loadSaved(slot: 0), .add(8), .dereference,
            .expectAddress(Self.responseTypeAddress, meaning: "dynamic type is *net/http.response"),
            .loadSaved(slot: 1), .add(136), .readInteger(size: 8, into: 232),
        ])
    }

    /// The peers' placement, for benchmarks: the entry on the function's first instruction (here
    /// the single-stepped `cmp`), no morestack skip, the same return sites and programs.
    func testConventionalPlacementPutsTheEntryOnTheFirstInstruction() throws {
        let costAware = try XCTUnwrap(plan(facts()).probes.first)
        let plan = PlanCompiler.compile(packs: [try serverPack()], facts: try facts(), placement: .conventional)
        let probe = try XCTUnwrap(plan.probes.first)
        XCTAssertEqual(probe.entry.address, 0x62_9180)
        XCTAssertEqual(probe.entry.fileOffset, 0x22_9180)
        XCTAssertFalse(probe.entry.kernelEmulates)
        XCTAssertEqual(probe.entry.skipFlagsMask, 0)
        XCTAssertEqual(probe.returns, costAware.returns)
        XCTAssertEqual(probe.entryProgram, costAware.entryProgram)
    }

    /// A call costs its entry hit and one RET hit: the stack-check JBE is emulated, a RET never is.
    func testTrapCostPerCallCountsTheEntryAndOneReturn() throws {
        let costAware = TrapCost(perCallOf: try XCTUnwrap(plan(facts()).probes.first))
        XCTAssertEqual(costAware, TrapCost(emulatedHits: 1, singleSteppedHits: 1))
        XCTAssertEqual(costAware.description, "1 emulated + 1 single-stepped hits ≈ 10.15 µs of traps")
        let conventional = PlanCompiler.compile(packs: [try serverPack()], facts: try facts(), placement: .conventional)
        XCTAssertEqual(TrapCost(perCallOf: try XCTUnwrap(conventional.probes.first)).description, "0 emulated + 2 single-stepped hits ≈ 19.0 µs of traps")
    }

    func testEntryFallsBackToFirstInstructionWhenArgumentsAreOverwritten() throws {
        let instructions = [
            instruction(0x62_9180, "mov", "rdi, rax", emulated: false, writes: [.rdi]),
            instruction(0x62_9183, "nop", "", emulated: true),
            instruction(0x62_9184, "ret", "", emulated: false),
        ]
        let probe = try XCTUnwrap(try plan(facts(instructions: instructions)).probes.first)
        XCTAssertEqual(probe.entry.address, 0x62_9180)
        XCTAssertFalse(probe.entry.kernelEmulates)
        XCTAssertEqual(probe.entry.skipFlagsMask, 0)
    }

    /// Go functions with frames over ~4 KiB first check the subtraction for wrap-around.
    func testLargeFramePrologueStillGetsTheStackGuardBranch() throws {
        let instructions = [
            instruction(0x62_9180, "mov", "r12, rsp", emulated: false, writes: [.r12]),
            instruction(0x62_9183, "sub", "r12, 0x1100", emulated: false, writes: [.r12]),
            instruction(0x62_918a, "jb", "0x629300", emulated: true),
            instruction(0x62_918c, "cmp", "r12, qword ptr [r14 + 0x10]", emulated: false),
            instruction(0x62_9190, "jbe", "0x629300", emulated: true),
            instruction(0x62_9196, "ret", "", emulated: false),
        ]
        let probe = try XCTUnwrap(try plan(facts(instructions: instructions)).probes.first)
        XCTAssertEqual(probe.entry.address, 0x62_9190)
        XCTAssertEqual(probe.entry.skipFlagsMask, 0x41)
    }

    func testEmulatedFirstInstructionIsUsedAsIs() throws {
        let instructions = [
            instruction(0x62_9180, "push", "rbp", emulated: true, writes: [.rsp]),
            instruction(0x62_9181, "ret", "", emulated: false),
        ]
        let probe = try XCTUnwrap(try plan(facts(instructions: instructions)).probes.first)
        XCTAssertEqual(probe.entry.address, 0x62_9180)
        XCTAssertEqual(probe.entry.skipFlagsMask, 0)
    }

    func testProbesThatCannotRunAreSkippedWithReasons() throws {
        XCTAssertEqual(try plan(facts(goVersion: nil)).skipped.map(\.description), [
            "go/net-http/server: not a Go program (no Go build info in /srv/app)",
        ])
        XCTAssertEqual(try plan(facts(goVersion: "go1.16.15")).skipped.map(\.description), [
            "go/net-http/server: std go1.16.15 is outside the pack's range >=1.17",
        ])
        let noURL = try plan(facts(requestFields: [Member(name: "Method", typeName: "string", offset: 0), Member(name: "Host", typeName: "string", offset: 80)]))
        XCTAssertEqual(noURL.probes, [])
        XCTAssertEqual(noURL.skipped.map(\.reason), ["capture 'path' (\(Self.packFile):26:7): net/http.Request has no field 'URL'"])

        var missing = facts()
        missing.functions = [:]
        XCTAssertEqual(try plan(missing).skipped.map(\.reason), ["no function net/http.serverHandler.ServeHTTP in the symbol table of /srv/app"])

        var stripped = facts(hasDWARF: false)
        stripped.functions = [:]
        XCTAssertEqual(try plan(stripped).skipped.map(\.reason), [
            "no function net/http.serverHandler.ServeHTTP in the symbol table or Go function table (.gopclntab) of /srv/app",
        ])
    }

    func testEnricherCapturesExtendTheTargetRecord() throws {
        var withRouter = facts()
        withRouter.functions["main.route"] = FunctionFacts(
            name: "main.route", address: 0x70_0000, size: 0x40, fileOffset: 0x30_0000,
            parameters: [Parameter(name: "route", typeName: "*main.Route", registers: [RegisterPiece(register: .rbx, size: 8)])],
            instructions: [instruction(0x70_0000, "push", "rbp", emulated: true, writes: [.rsp])])
        withRouter.types["*main.Route"] = TypeFacts(name: "*main.Route", kind: .pointer, byteSize: 8, pointee: "main.Route", members: [])
        withRouter.types["main.Route"] = TypeFacts(name: "main.Route", kind: .structure, byteSize: 32, pointee: nil, members: [
            Member(name: "conf", typeName: "main.Conf", offset: 8),
        ])
        withRouter.types["main.Conf"] = TypeFacts(name: "main.Conf", kind: .structure, byteSize: 24, pointee: nil, members: [
            Member(name: "template", typeName: "string", offset: 8),
        ])
        func router(rename: String) throws -> ProbePack {
            try PackLoader.parse(yaml: """
                format: sonde.probe-pack/v1
                pack: go/router
                language: go
                library: { module: example.com/router, versions: ">=1.0" }
                probes:
                  - id: route
                    function: main.route
                    enrich: { span: go/net-http/server, name: "\(rename)" }
                    on-entry:
                      route: { arg: route, path: conf.template, type: go-string }
                    attributes:
                      http.route: route
                """, file: "router.yaml")
        }
        // Listed before its target: enrichers are planned after every span probe.
        let plan = PlanCompiler.compile(packs: [try router(rename: "{method} {route}"), try serverPack()], facts: withRouter)
        XCTAssertEqual(plan.skipped, [])
        let server = try XCTUnwrap(plan.probes.first { $0.qualifiedID == "go/net-http/server" })
        let enricher = try XCTUnwrap(plan.probes.first { $0.qualifiedID == "go/router/route" })
        XCTAssertEqual(server.captureSlots.map(\.name), ["method", "path", "host", "status", "route"])
        XCTAssertEqual(server.captureSlots.last?.offset, 240)
        XCTAssertEqual(enricher.captureSlots, server.captureSlots)
        XCTAssertEqual(enricher.spanSlot, server.spanSlot)
        XCTAssertEqual(enricher.returns, [], "an enricher needs no return probe")
        XCTAssertEqual(enricher.entryProgram, [.loadRegister(.rbx), .add(16), .readGoString(into: 240, maxLength: 128)])
        XCTAssertEqual(server.enrichments.map(\.source), ["go/router/route"])

        let badName = PlanCompiler.compile(packs: [try serverPack(), try router(rename: "{verb} {route}")], facts: withRouter)
        XCTAssertEqual(badName.skipped.map(\.description), [
            "go/router/route: enrich.name uses 'verb', a capture neither this probe nor go/net-http/server has",
        ])
        let alone = PlanCompiler.compile(packs: [try router(rename: "{route}")], facts: withRouter)
        XCTAssertEqual(alone.skipped.map(\.reason), ["it adds to go/net-http/server, which is not planned for this binary"])
    }

    func testFunctionsNeeded() throws {
        XCTAssertEqual(PlanCompiler.functionsNeeded(by: [try PackLoader.load(file: Self.shippedPackFile)]), [
            "net/http.(*Request).write", "net/http.(*Transport).roundTrip", "net/http.(*conn).hijackLocked",
            "net/http.(*http2responseWriter).handlerDone", "net/http.(*persistConn).roundTrip", "net/http.(*response).finishRequest",
            "net/http.Header.writeSubset", Self.serveHTTP,
            "net/http/internal/http2.(*responseWriter).handlerDone",
        ])
    }
}
