import BinaryAnalysis
import Planning
import ProbePacks
import XCTest

/// Spans ended by an `end-span` probe on their own goroutine, and goroutines followed at two
/// `call` instructions: how the shipped packs keep single-stepped RETs off the request path.
extension PlanCompilerTests {
    static let finishRequest = "net/http.(*response).finishRequest"

    /// `facts()` plus `(*response).finishRequest(w)`, its stack check at 0x625324.
    func factsWithFinishRequest() -> BinaryFacts {
        var facts = facts()
        facts.functions[Self.finishRequest] = FunctionFacts(
            name: Self.finishRequest, address: 0x62_5320, size: 0x40, fileOffset: 0x22_5320,
            parameters: [Parameter(name: "w", typeName: "*net/http.response", registers: [RegisterPiece(register: .rax, size: 8)])],
            instructions: [
                instruction(0x62_5320, "cmp", "rsp, qword ptr [r14 + 0x10]", emulated: false),
                instruction(0x62_5324, "jbe", "0x625350", emulated: true),
                instruction(0x62_532a, "push", "rbp", emulated: true, writes: [.rsp]),
                instruction(0x62_5340, "ret", "", emulated: false),
            ])
        return facts
    }

    /// The shipped pack's server probe and the probe that ends it at finishRequest.
    func shippedServerPack() throws -> ProbePack {
        var pack = try PackLoader.load(file: Self.shippedPackFile)
        pack.probes = pack.probes.filter { ["server", "server-finished"].contains($0.id) }
        return pack
    }

    func testSpanEndedOnItsGoroutineByAnotherFunctionHasNoReturnSites() throws {
        let plan = PlanCompiler.compile(packs: [try shippedServerPack()], facts: factsWithFinishRequest())
        XCTAssertEqual(plan.skipped, [])
        let server = try XCTUnwrap(plan.probes.first { $0.qualifiedID == "go/net-http/server" })
        let finished = try XCTUnwrap(plan.probes.first { $0.qualifiedID == "go/net-http/server-finished" })
        XCTAssertEqual(server.returns, [], "no single-stepped RET: the span ends at finishRequest")
        XCTAssertEqual(server.returnProgram, [])
        // The incoming tracestate (trace-context) follows the span probe's own captures.
        XCTAssertEqual(server.captureSlots.map(\.name), ["method", "path", "host", "tls", "(tracestate)", "status"])
        XCTAssertEqual(server.captureSlots.map(\.offset), [0, 24, 160, 232, 240, 344])
        // Nothing is saved for a return any more.
        XCTAssertEqual(server.entryProgram.first, .loadRegister(.rdi))
        XCTAssertEqual(TrapCost(perCallOf: server), TrapCost(emulatedHits: 1, singleSteppedHits: 0))

        XCTAssertEqual(finished.probe.enrichment?.ends, .openCall)
        XCTAssertEqual(finished.spanSlot, server.spanSlot)
        XCTAssertEqual(finished.keyMode, .goroutine)
        XCTAssertEqual(finished.entry.address, 0x62_5324)
        XCTAssertEqual(finished.entry.skipFlagsMask, 0x41)
        XCTAssertEqual(finished.returns, [])
        XCTAssertEqual(finished.entryProgram, [.loadRegister(.rax), .add(136), .readInteger(size: 8, into: 344)])
        XCTAssertEqual(TrapCost(perCallOf: finished), TrapCost(emulatedHits: 1, singleSteppedHits: 0))
        // Its status and error condition apply whenever it captured them.
        XCTAssertEqual(server.enrichments, [
            EnrichmentRule(
                source: "go/net-http/server-finished",
                attributes: [AttributeRule(key: "http.response.status_code", value: .capture("status"))], rename: nil,
                errorWhen: [ErrorCondition(capture: "status", test: .atLeast(500))], endsSpan: false),
        ])
    }

    /// Without any of its end-span probes planned, a span still ends: at its RETs.
    func testSpanWhoseEndSpanProbesAreMissingEndsAtItsReturn() throws {
        let plan = PlanCompiler.compile(packs: [try shippedServerPack()], facts: facts())
        XCTAssertEqual(plan.skipped.map(\.description), [
            "go/net-http/server-finished: no function net/http.(*response).finishRequest in the symbol table of /srv/app",
        ])
        XCTAssertEqual(plan.skipped.map(\.isFunctionAbsent), [true])
        XCTAssertEqual(plan.probes.first?.returns.map(\.address), [0x62_9200, 0x62_9240])
    }

    /// The peers' design, for the benchmark: entry at the first instruction, end at every RET.
    func testConventionalPlacementEndsSpansAtTheirReturns() throws {
        let plan = PlanCompiler.compile(packs: [try shippedServerPack()], facts: factsWithFinishRequest(), placement: .conventional)
        XCTAssertEqual(plan.probes.map(\.qualifiedID), ["go/net-http/server"])
        XCTAssertEqual(plan.probes[0].returns.map(\.address), [0x62_9200, 0x62_9240])
        XCTAssertEqual(TrapCost(perCallOf: plan.probes[0]), TrapCost(emulatedHits: 0, singleSteppedHits: 2))
    }

    /// A pack of its own whose one probe ends net/http's server span at finishRequest.
    func finishRequestEnder(pack: String, onEntry capture: String? = nil) throws -> ProbePack {
        try PackLoader.parse(yaml: """
            format: sonde.probe-pack/v1
            pack: \(pack)
            language: go
            library: { module: std, versions: ">=1.17" }
            probes:
              - id: finished
                function: net/http.(*response).finishRequest
                end-span: { span: go/net-http/server }
            \(capture.map { "    on-entry:\n      \($0)" } ?? "")
            """, file: "ender.yaml")
    }

    func testEndSpanProbeIsRefusedWhenTheSpanReadsCapturesAtItsReturn() throws {
        let ender = try finishRequestEnder(pack: "go/finish")
        // The fixture's server probe reads its status at return.
        let plan = PlanCompiler.compile(packs: [try serverPack(), ender], facts: factsWithFinishRequest())
        XCTAssertEqual(plan.skipped.map(\.description), [
            "go/finish/finished: it ends go/net-http/server before that function returns, so its on-return captures would never be read; capture them here, on entry",
        ])
        XCTAssertEqual(plan.probes.map(\.returns.count), [2])
    }

    /// Attributes find captures by name: two probes adding to one span cannot both have a `status`.
    func testProbeAddingToASpanMayNotReuseACaptureName() throws {
        let second = try finishRequestEnder(pack: "go/second", onEntry: "status: { arg: w, path: status, type: int }")
        let plan = PlanCompiler.compile(packs: [try shippedServerPack(), second], facts: factsWithFinishRequest())
        XCTAssertEqual(plan.skipped.map(\.description), [
            "go/second/finished: its capture 'status' has the name of a capture of go/net-http/server or of another probe adding to it; rename it",
        ])
    }

    // MARK: - Following goroutines at one call

    static let newprocClosure = "runtime.newproc.func1"

    /// Go 1.19's runtime.newproc.func1: `call newproc1` then `call runqput`, as `go tool objdump` shows it,
    /// and the offsets of g.m and m.curg its DWARF gives.
    func runtimeFacts(runqputCalls: Int = 1) -> BinaryFacts {
        var facts = facts()
        func function(_ name: String, at address: UInt64, parameters: [Parameter], instructions: [Instruction] = []) {
            facts.functions[name] = FunctionFacts(
                name: name, address: address, size: 0x80, fileOffset: address - 0x40_0000, parameters: parameters,
                instructions: instructions.isEmpty ? [instruction(address, "push", "rbp", emulated: true)] : instructions)
        }
        function("runtime.newproc1", at: 0x44_17e0, parameters: [
            Parameter(name: "fn", typeName: "*runtime.funcval", registers: [RegisterPiece(register: .rax, size: 8)]),
            Parameter(name: "callergp", typeName: "*runtime.g", registers: [RegisterPiece(register: .rbx, size: 8)]),
            Parameter(name: "callerpc", typeName: "uintptr", registers: [RegisterPiece(register: .rcx, size: 8)]),
        ])
        function("runtime.runqput", at: 0x44_58e0, parameters: [
            Parameter(name: "pp", typeName: "*runtime.p", registers: [RegisterPiece(register: .rax, size: 8)]),
            Parameter(name: "gp", typeName: "*runtime.g", registers: [RegisterPiece(register: .rbx, size: 8)]),
            Parameter(name: "next", typeName: "bool", registers: [RegisterPiece(register: .rcx, size: 1)]),
        ])
        let calls = [instruction(0x44_1780, "call", "0x4417e0", emulated: true)]
            + (0..<runqputCalls).map { instruction(0x44_17a0 + UInt64($0) * 8, "call", "0x4458e0", emulated: true) }
        function(Self.newprocClosure, at: 0x44_1760, parameters: [], instructions: [
            instruction(0x44_1760, "cmp", "rsp, qword ptr [r14 + 0x10]", emulated: false),
        ] + calls + [instruction(0x44_17c0, "ret", "", emulated: false)])
        facts.types["*runtime.g"] = TypeFacts(name: "*runtime.g", kind: .pointer, byteSize: 8, pointee: "runtime.g", members: [])
        facts.types["*runtime.m"] = TypeFacts(name: "*runtime.m", kind: .pointer, byteSize: 8, pointee: "runtime.m", members: [])
        facts.types["runtime.g"] = TypeFacts(name: "runtime.g", kind: .structure, byteSize: 440, pointee: nil, members: [
            Member(name: "stack", typeName: "runtime.stack", offset: 0), Member(name: "m", typeName: "*runtime.m", offset: 48),
        ])
        facts.types["runtime.m"] = TypeFacts(name: "runtime.m", kind: .structure, byteSize: 936, pointee: nil, members: [
            Member(name: "g0", typeName: "*runtime.g", offset: 0), Member(name: "procid", typeName: "uint64", offset: 72),
            Member(name: "curg", typeName: "*runtime.g", offset: 192),
        ])
        return facts
    }

    func runtimePack() throws -> ProbePack {
        try PackLoader.load(file: Self.repository.appendingPathComponent("probe-packs/go/runtime.yaml").path)
    }

    func testGoroutinesAreFollowedAtOneEmulatedCall() throws {
        let plan = PlanCompiler.compile(packs: [try runtimePack()], facts: runtimeFacts())
        XCTAssertEqual(plan.skipped, [])
        let probe = try XCTUnwrap(plan.probes.first)
        XCTAssertEqual(probe.keyMode, .thread)
        XCTAssertEqual(probe.entry.role, .call)
        XCTAssertEqual(probe.entry.address, 0x44_17a0)
        XCTAssertEqual(probe.entry.instruction, "call 0x4458e0 <runtime.runqput>")
        XCTAssertEqual(probe.returns, [])
        XCTAssertEqual(probe.handoffChild, .rbx)
        // g0 (R14) -> g0.m -> m.curg, the goroutine that switched to the system stack
        XCTAssertEqual(probe.entryProgram, [.loadRegister(.r14), .add(48), .dereferencePerThread, .add(192), .dereference])
        XCTAssertEqual(TrapCost(perCallOf: probe), TrapCost(emulatedHits: 1, singleSteppedHits: 0))
        XCTAssertEqual(PlanCompiler.functionsNeeded(by: [try runtimePack()]), ["runtime.newproc.func1", "runtime.runqput"])
        // Conventional placement moves entries to first instructions; a hand-off has only its call.
        let conventional = PlanCompiler.compile(packs: [try runtimePack()], facts: runtimeFacts(), placement: .conventional)
        XCTAssertEqual(conventional.probes.map(\.entries), [[probe.entry]])
    }

    func testHandOffNeedsOneCallAndAPathToAGoroutine() throws {
        XCTAssertEqual(PlanCompiler.compile(packs: [try runtimePack()], facts: runtimeFacts(runqputCalls: 2)).skipped.map(\.reason), [
            "runtime.newproc.func1 calls runtime.runqput 2 times directly; a call site needs exactly one",
        ])
        var notPointer = runtimeFacts()
        notPointer.functions["runtime.runqput"]?.parameters?[1].typeName = "uintptr"
        XCTAssertEqual(PlanCompiler.compile(packs: [try runtimePack()], facts: notPointer).skipped.map(\.reason), [
            "follow-goroutine.child: argument 'gp' of runtime.runqput is uintptr, not a pointer in a register",
        ])
        func skipped(creator path: String) throws -> [String] {
            var pack = try runtimePack()
            pack.probes[0].goroutineHandoff?.creator = path.split(separator: ".").map { .field(String($0)) }
            return PlanCompiler.compile(packs: [pack], facts: runtimeFacts()).skipped.map(\.reason)
        }
        XCTAssertEqual(try skipped(creator: "m.procid"), [
            "follow-goroutine.parent.running-goroutine: m.procid is uint64, not *runtime.g",
        ])
        XCTAssertEqual(try skipped(creator: "m.curgs"), ["follow-goroutine.parent.running-goroutine: runtime.m has no field 'curgs'"])
        XCTAssertEqual(try skipped(creator: "m.curg.m.curg"), [
            "follow-goroutine.parent.running-goroutine: m.curg.m.curg needs 9 ops (loads, adds, dereferences); a hand-off's program has at most 6",
        ])
        var noTypes = runtimeFacts()
        noTypes.types["runtime.g"] = nil
        XCTAssertEqual(PlanCompiler.compile(packs: [try runtimePack()], facts: noTypes).skipped.map(\.reason), [
            "follow-goroutine.parent.running-goroutine: neither the binary's DWARF nor the offset table describes runtime.g; regenerate the table",
        ])
    }
}
