import BinaryAnalysis
import Foundation
import Planning
import ProbePacks
import XCTest

/// `span.ends-after-call`: a span ending at the emulated branch on its callee's error, right
/// after the call, instead of at a single-stepped RET; its other RETs keep their probes.
extension PlanCompilerTests {
    static let fetch = "main.fetch"
    static let get = "main.get"

    /// `func fetch() (*main.Reply, error)`: calls get, then `if err == nil { return reply, nil }`
    /// (the RET at 0x710034), else returns its own error (the RET at 0x710028).
    func fetchFacts(replacing replacements: [UInt64: Instruction] = [:]) -> BinaryFacts {
        var facts = facts()
        let body = [
            instruction(0x71_0000, "cmp", "rsp, qword ptr [r14 + 0x10]", emulated: false),
            instruction(0x71_0004, "jbe", "0x710080", emulated: true),
            instruction(0x71_0008, "push", "rbp", emulated: true, writes: [.rsp]),
            instruction(0x71_000c, "mov", "rbp, rsp", emulated: false, writes: [.rbp]),
            instruction(0x71_0010, "call", "0x710200", emulated: true, writes: [.rax, .rbx, .rcx]),
            instruction(0x71_0014, "nop", "word ptr [rax + rax]", emulated: true),
            instruction(0x71_0018, "test", "rbx, rbx", emulated: false),
            instruction(0x71_001c, "je", "0x710030", emulated: true),
            instruction(0x71_0020, "xor", "eax, eax", emulated: false, writes: [.rax]),
            instruction(0x71_0024, "pop", "rbp", emulated: false, writes: [.rbp, .rsp]),
            instruction(0x71_0028, "ret", "", emulated: false),
            instruction(0x71_0030, "pop", "rbp", emulated: false, writes: [.rbp, .rsp]),
            instruction(0x71_0034, "ret", "", emulated: false),
            instruction(0x71_0080, "call", "0x460000", emulated: true),
            instruction(0x71_0084, "jmp", "0x710000", emulated: true),
        ].map { replacements[$0.address] ?? $0 }
        facts.functions[Self.fetch] = FunctionFacts(
            name: Self.fetch, address: 0x71_0000, size: 0x90, fileOffset: 0x31_0000, parameters: [],
            results: [Parameter(name: "~r0", typeName: "*main.Reply", registers: nil), Parameter(name: "~r1", typeName: "error", registers: nil)],
            instructions: body)
        facts.functions[Self.get] = FunctionFacts(
            name: Self.get, address: 0x71_0200, size: 0x10, fileOffset: 0x31_0200, parameters: [],
            instructions: [instruction(0x71_0200, "ret", "", emulated: false)])
        facts.types["*main.Reply"] = TypeFacts(name: "*main.Reply", kind: .pointer, byteSize: 8, pointee: "main.Reply", members: [])
        facts.types["error"] = TypeFacts(name: "error", kind: .interface, byteSize: 16, pointee: nil, members: [])
        return facts
    }

    static let fetchPackYAML = """
        format: sonde.probe-pack/v1
        pack: go/fetch
        language: go
        library: { module: std, versions: ">=1.17" }
        probes:
          - id: fetch
            function: main.fetch
            span:
              kind: client
              name: fetch
              error-when: { capture: failed, not-zero: true }
              ends-after-call: { function: main.get, when-nil: { result: 1 } }
            on-return:
              failed: { result: 1, type: non-nil }
        """

    func fetchPack(whenNil result: Int = 1) throws -> ProbePack {
        try PackLoader.parse(yaml: Self.fetchPackYAML.replacingOccurrences(of: "result: 1 } }", with: "result: \(result) } }"), file: "fetch.yaml")
    }

    func testSpanEndsAtTheBranchOnItsCallsErrorAndItsOtherReturnsKeepTheirProbes() throws {
        let plan = PlanCompiler.compile(packs: [try fetchPack()], facts: fetchFacts())
        XCTAssertEqual(plan.skipped, [])
        XCTAssertEqual(plan.notes, [])
        let probe = try XCTUnwrap(plan.probes.first)
        XCTAssertEqual(probe.resultBranches.map(\.address), [0x71_001c])
        XCTAssertEqual(probe.resultBranches.map(\.role), [.resultBranch])
        XCTAssertEqual(probe.resultBranches.map(\.fileOffset), [0x31_001c])
        XCTAssertEqual(probe.resultBranches.map(\.kernelEmulates), [true])
        // An error's type word is what `err == nil` tests.
        XCTAssertEqual(probe.resultBranchGuard, SiteGuard(register: .rbx, test: .zero))
        // The RET after `return reply, nil` is reached only through the branch: no probe there.
        XCTAssertEqual(probe.returns.map(\.address), [0x71_0028])
        XCTAssertEqual(TrapCost(perCallOf: probe), TrapCost(emulatedHits: 2, singleSteppedHits: 0))
        XCTAssertEqual(TrapCost(perRequestOf: plan.probes), TrapCost(emulatedHits: 2, singleSteppedHits: 0))

        // Go 1.19's prologue sets the frame pointer after moving the stack pointer once.
        let go119 = PlanCompiler.compile(packs: [try fetchPack()], facts: fetchFacts(replacing: [
            0x71_0008: instruction(0x71_0008, "sub", "rsp, 0x20", emulated: false, writes: [.rsp]),
            0x71_000c: instruction(0x71_000c, "lea", "rbp, [rsp + 0x18]", emulated: false, writes: [.rbp]),
        ]))
        XCTAssertEqual(go119.notes, [])
        XCTAssertEqual(go119.probes.first?.resultBranches.map(\.address), [0x71_001c])

        // The peers' design ends at every RET.
        let conventional = PlanCompiler.compile(packs: [try fetchPack()], facts: fetchFacts(), placement: .conventional)
        XCTAssertEqual(conventional.probes.first?.resultBranches, [])
        XCTAssertEqual(conventional.probes.first?.returns.map(\.address), [0x71_0028, 0x71_0034])
    }

    /// What loading `yaml` as bad.yaml, with `original` replaced, reports.
    func loadError(_ yaml: String, replacing original: String, with replacement: String) -> String {
        switch Result(catching: { try PackLoader.parse(yaml: yaml.replacingOccurrences(of: original, with: replacement), file: "bad.yaml") }) {
        case .success: return "no error"
        case .failure(let error): return "\(error)"
        }
    }

    func testEndsAfterCallMistakesAreLocated() {
        func error(replacing original: String, with replacement: String) -> String {
            loadError(Self.fetchPackYAML, replacing: original, with: replacement)
        }
        XCTAssertEqual(
            error(replacing: "name: fetch", with: "name: fetch\n      outlives-call: { result: 0 }"),
            "bad.yaml:13:24: span.ends-after-call and span.outlives-call cannot be combined: each decides differently where the span ends")
        XCTAssertEqual(
            error(replacing: "when-nil: { result: 1 }", with: "when-nil: { arg: r }"),
            "bad.yaml:12:56: span.ends-after-call.when-nil names a result of main.get (result: N), not an argument")
        XCTAssertEqual(error(replacing: ", when-nil: { result: 1 } }", with: " }"), "bad.yaml:12:24: span.ends-after-call is missing 'when-nil'")
        XCTAssertEqual(
            error(replacing: "function: main.get, ", with: "fn: main.get, "),
            "bad.yaml:12:26: unknown key 'fn' in span.ends-after-call; expected one of: function, when-nil")
    }

    /// Whenever the machine code does not match what the pack says, the span ends at every RET,
    /// and the plan says why.
    func testSpanEndsAtItsReturnsWhenTheBranchCannotBeTrusted() throws {
        func note(_ replacements: [UInt64: Instruction], whenNil result: Int = 1) throws -> String {
            let plan = PlanCompiler.compile(packs: [try fetchPack(whenNil: result)], facts: fetchFacts(replacing: replacements))
            XCTAssertEqual(plan.skipped, [])
            XCTAssertEqual(plan.probes.first?.resultBranches, [])
            XCTAssertEqual(plan.probes.first?.returns.map(\.address), [0x71_0028, 0x71_0034])
            return plan.notes.joined(separator: "\n")
        }
        let prefix = "go/fetch/fetch: its span ends at every RET of main.fetch, not after its call (span.ends-after-call): "
        XCTAssertEqual(
            try note([0x71_0014: instruction(0x71_0014, "mov", "rbx, rax", emulated: false, writes: [.rbx])]),
            prefix + "main.fetch: the call to main.get at 0x710010 is not followed by a test of RBX and a je or jne, with no register written between")
        XCTAssertEqual(
            try note([:], whenNil: 0),
            prefix + "main.fetch: the call to main.get at 0x710010 is not followed by a test of RAX and a je or jne, with no register written between")
        XCTAssertEqual(
            try note([0x71_001c: instruction(0x71_001c, "je", "0x710024", emulated: true)]),
            prefix + "main.fetch: the RET at 0x710028 is reached both after the call to main.get with RBX zero and on another way out")
        XCTAssertEqual(
            try note([0x71_0020: instruction(0x71_0020, "jmp", "rax", emulated: false)]),
            prefix + "main.fetch: the indirect jump at 0x710020 may go anywhere")
        XCTAssertEqual(
            try note([0x71_000c: instruction(0x71_000c, "mov", "rax, rsp", emulated: false, writes: [.rax])]),
            prefix + "main.fetch sets no frame pointer (RBP) 8 bytes below its return address in its prologue, which a result branch "
                + "needs to tell nested calls apart")
        XCTAssertEqual(
            try note([0x71_000c: instruction(0x71_000c, "lea", "rbp, [rsp + 8]", emulated: false, writes: [.rbp])]),
            prefix + "main.fetch sets no frame pointer (RBP) 8 bytes below its return address in its prologue, which a result branch "
                + "needs to tell nested calls apart")
        XCTAssertEqual(
            try note([0x71_0084: instruction(0x71_0084, "jmp", "0x71001c", emulated: true)]),
            prefix + "main.fetch: the jump at 0x710084 goes straight to the branch at 0x71001c, past its test of RBX")
        XCTAssertEqual(
            try note([0x71_0010: instruction(0x71_0010, "call", "0x710300", emulated: true)]),
            prefix + "main.fetch does not call main.get directly")
    }
}
