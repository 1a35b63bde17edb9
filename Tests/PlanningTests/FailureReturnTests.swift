import BinaryAnalysis
import Foundation
import Planning
import ProbePacks
import XCTest

/// `span.ends-at-return.after-call`: a Go span that an end-span probe usually ends also ends at
/// the RETs a failed call leaves through, right after its callee's error; only those are probed,
/// so a call that succeeds pays no single-stepped trap.
extension PlanCompilerTests {
    static let done = "main.done"

    /// ``fetchFacts(replacing:)`` (the RET at 0x710028 when get's error is not nil, the RET at
    /// 0x710034 when it is), get returning `(*main.Reply, error)`, and `func done()`.
    func failingFetchFacts(replacing replacements: [UInt64: Instruction] = [:]) -> BinaryFacts {
        var facts = fetchFacts(replacing: replacements)
        facts.functions[Self.get]?.results = [
            Parameter(name: "~r0", typeName: "*main.Reply", registers: nil), Parameter(name: "~r1", typeName: "error", registers: nil),
        ]
        facts.functions[Self.done] = FunctionFacts(
            name: Self.done, address: 0x72_0000, size: 0x20, fileOffset: 0x32_0000, parameters: [], results: [],
            instructions: [
                instruction(0x72_0000, "cmp", "rsp, qword ptr [r14 + 0x10]", emulated: false),
                instruction(0x72_0004, "jbe", "0x720010", emulated: true),
                instruction(0x72_0008, "push", "rbp", emulated: true, writes: [.rsp]),
                instruction(0x72_000a, "pop", "rbp", emulated: false, writes: [.rbp, .rsp]),
                instruction(0x72_000c, "ret", "", emulated: false),
                instruction(0x72_0010, "call", "0x460000", emulated: true),
                instruction(0x72_0014, "jmp", "0x720000", emulated: true),
            ])
        return facts
    }

    /// ``fetchPackYAML`` ending at the RET of get's failure, and otherwise at `done`.
    static let failingFetchPackYAML = fetchPackYAML.replacingOccurrences(
        of: "ends-after-call: { function: main.get, when-nil: { result: 1 } }",
        with: "ends-at-return: { after-call: main.get, when-not-nil: { result: 1 } }") + """

          - id: done
            function: main.done
            end-span: { span: go/fetch/fetch }
        """

    func testSpanEndsAtTheReturnsOfAFailedCallOnlyAndAtItsEndSpanProbeOtherwise() throws {
        let pack = try PackLoader.parse(yaml: Self.failingFetchPackYAML, file: "fetch.yaml")
        XCTAssertEqual(
            pack.probes[0].span?.endsAtReturn, .afterFailedCall(CallResultEnd(function: Self.get, result: 1)))
        // The callee's signature is read too: its result's register, and a stripped binary's table.
        XCTAssertEqual(pack.probes[0].signatureFunctions, [Self.fetch, Self.get])

        let plan = PlanCompiler.compile(packs: [pack], facts: failingFetchFacts())
        XCTAssertEqual(plan.skipped, [])
        XCTAssertEqual(plan.notes, [])
        let probe = try XCTUnwrap(plan.probes.first { $0.probe.id == "fetch" })
        // get's error type word is RBX; `je` on zero goes to the RET at 0x710034, the other way to 0x710028.
        XCTAssertEqual(probe.failureReturns?.register, .rbx)
        XCTAssertEqual(probe.returns.map(\.address), [0x71_0028])
        XCTAssertTrue(probe.returnsOnlyOnFailure)
        // grpc finishes a stream, then returns its error: the RET may find its call ended already.
        XCTAssertTrue(probe.returnsAfterEndSpan)
        XCTAssertEqual(probe.resultBranches, [])
        XCTAssertEqual(TrapCost(perCallOf: probe), TrapCost(emulatedHits: 1, singleSteppedHits: 0))
        XCTAssertEqual(TrapCost(perRequestOf: plan.probes), TrapCost(emulatedHits: 2, singleSteppedHits: 0))

        // Without its end-span probe the span ends at every RET, as it would without ends-at-return.
        let withoutEnd = try PackLoader.parse(
            yaml: Self.failingFetchPackYAML.replacingOccurrences(of: "  - id: done\n    function: main.done\n    end-span: { span: go/fetch/fetch }", with: ""),
            file: "fetch.yaml")
        XCTAssertEqual(withoutEnd.probes.count, 1)
        let alone = PlanCompiler.compile(packs: [withoutEnd], facts: failingFetchFacts())
        XCTAssertEqual(alone.skipped, [])
        XCTAssertEqual(alone.probes.first?.returns.map(\.address), [0x71_0028, 0x71_0034])
        XCTAssertEqual(alone.probes.first?.returnsOnlyOnFailure, false)
        XCTAssertEqual(alone.probes.first?.returnsAfterEndSpan, false)
        XCTAssertEqual(alone.notes, [
            "go/fetch/fetch: no end-span probe for it is planned, so its span ends at every RET of main.fetch (single-stepped) rather than "
                + "only where a failed call returns (span.ends-at-return)",
        ])

        // The peers' design ends at every RET, with no end-span probe.
        let conventional = PlanCompiler.compile(packs: [pack], facts: failingFetchFacts(), placement: .conventional)
        XCTAssertEqual(conventional.probes.map(\.qualifiedID), ["go/fetch/fetch"])
        XCTAssertEqual(conventional.probes.first?.returns.map(\.address), [0x71_0028, 0x71_0034])
        XCTAssertEqual(conventional.probes.first?.returnsOnlyOnFailure, false)
    }

    /// A RET that a succeeding call may also reach cannot be probed for failures alone: every RET
    /// keeps its probe (the end-span probe still ends the span first), and the plan says why.
    func testEveryReturnKeepsItsProbeWhenASucceedingCallMayReachTheFailuresReturn() throws {
        let pack = try PackLoader.parse(yaml: Self.failingFetchPackYAML, file: "fetch.yaml")
        func planned(_ replacements: [UInt64: Instruction]) throws -> (returns: [UInt64], notes: [String]) {
            let plan = PlanCompiler.compile(packs: [pack], facts: failingFetchFacts(replacing: replacements))
            XCTAssertEqual(plan.skipped, [])
            let probe = try XCTUnwrap(plan.probes.first { $0.probe.id == "fetch" })
            XCTAssertFalse(probe.returnsOnlyOnFailure)
            XCTAssertTrue(probe.returnsAfterEndSpan, "the end-span probe may have ended the call before any of them")
            return (probe.returns.map(\.address), plan.notes)
        }
        let prefix = "go/fetch/fetch: every RET of main.fetch keeps its probe, not only those after its call of main.get failed (span.ends-at-return): "
        let shared = try planned([0x71_001c: instruction(0x71_001c, "je", "0x710024", emulated: true)])
        XCTAssertEqual(shared.returns, [0x71_0028, 0x71_0034])
        XCTAssertEqual(shared.notes, [
            prefix + "main.fetch: the RET at 0x710028 is reached both after the call to main.get with RBX not zero and on another way out",
        ])
        let untested = try planned([0x71_0018: instruction(0x71_0018, "test", "rax, rax", emulated: false)])
        XCTAssertEqual(untested.notes, [
            prefix + "main.fetch: the call to main.get at 0x710010 is not followed by a test of RBX and a je or jne, with no register written between",
        ])
    }

    func testEndsAtReturnMistakesAreLocated() {
        func error(replacing original: String, with replacement: String) -> String {
            loadError(Self.failingFetchPackYAML, replacing: original, with: replacement)
        }
        XCTAssertEqual(
            error(replacing: "{ after-call: main.get, when-not-nil: { result: 1 } }", with: "{ when-result: zero }"),
            "bad.yaml:12:23: span.ends-at-return.when-result is for native packs: a Go span's RETs are single-stepped whatever they return, "
                + "so name the call whose failure makes the function return at once instead (after-call, when-not-nil)")
        XCTAssertEqual(
            error(replacing: "when-not-nil: { result: 1 }", with: "when-not-nil: { arg: r }"),
            "bad.yaml:12:61: span.ends-at-return.when-not-nil names a result of main.get (result: N), not an argument")
        XCTAssertEqual(
            error(replacing: "after-call: main.get, ", with: ""),
            "bad.yaml:12:23: span.ends-at-return is missing 'after-call'")
        XCTAssertEqual(
            error(replacing: "after-call: main.get, ", with: "after: main.get, "),
            "bad.yaml:12:25: unknown key 'after' in span.ends-at-return; expected one of: after-call, when-not-nil")
        XCTAssertEqual(
            error(replacing: "name: fetch", with: "name: fetch\n      ends-after-call: { function: main.get, when-nil: { result: 1 } }"),
            "bad.yaml:11:24: span.ends-after-call and span.ends-at-return cannot be combined: each decides differently where the span ends")
        // Its on-return captures are read where a failed call returns; without ends-at-return they never would be.
        XCTAssertEqual(
            error(replacing: "      ends-at-return: { after-call: main.get, when-not-nil: { result: 1 } }\n", with: ""),
            "bad.yaml:14:5: 'go/fetch/fetch' ends here, before its return, so its on-return capture 'failed' would never be read; capture it here, on entry")
    }
}
