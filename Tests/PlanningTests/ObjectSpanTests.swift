import BinaryAnalysis
import Foundation
import Planning
import ProbePacks
import XCTest

/// Spans that outlive their call: kept open under a returned object, ended by another probe.
extension PlanCompilerTests {
    func streamFacts() -> BinaryFacts {
        var streams = facts()
        let body = [
            instruction(0x70_0000, "jbe", "0x700040", emulated: true),
            instruction(0x70_0010, "ret", "", emulated: false),
        ]
        streams.functions["main.open"] = FunctionFacts(
            name: "main.open", address: 0x70_0000, size: 0x40, fileOffset: 0x30_0000,
            parameters: [Parameter(name: "name", typeName: "string", registers: [RegisterPiece(register: .rax, size: 8), RegisterPiece(register: .rbx, size: 8)])],
            results: [Parameter(name: "~r0", typeName: "main.Stream", registers: nil), Parameter(name: "~r1", typeName: "error", registers: nil)],
            instructions: body)
        streams.functions["main.(*stream).finish"] = FunctionFacts(
            name: "main.(*stream).finish", address: 0x70_0100, size: 0x40, fileOffset: 0x30_0100,
            parameters: [
                Parameter(name: "s", typeName: "*main.stream", registers: [RegisterPiece(register: .rax, size: 8)]),
                Parameter(name: "failed", typeName: "bool", registers: [RegisterPiece(register: .rbx, size: 1)]),
            ],
            instructions: body.map { var moved = $0; moved.address += 0x100; return moved })
        streams.types["main.Stream"] = TypeFacts(name: "main.Stream", kind: .interface, byteSize: 16, pointee: nil, members: [])
        streams.types["error"] = TypeFacts(name: "error", kind: .interface, byteSize: 16, pointee: nil, members: [])
        streams.types["*main.stream"] = TypeFacts(name: "*main.stream", kind: .pointer, byteSize: 8, pointee: "main.stream", members: [])
        streams.types["bool"] = TypeFacts(name: "bool", kind: .base, byteSize: 1, pointee: nil, members: [])
        return streams
    }

    func streamPack(outlives: Bool) throws -> ProbePack {
        try PackLoader.parse(yaml: """
            format: sonde.probe-pack/v1
            pack: go/streams
            language: go
            library: { module: std, versions: ">=1.17" }
            probes:
              - id: open
                function: main.open
                span: { kind: client, name: "{name}"\(outlives ? ", outlives-call: { result: 0 }" : "") }
                on-entry:
                  name: { arg: name, type: go-string }
              - id: end
                function: main.(*stream).finish
                end-span: { span: go/streams/open, object: { arg: s }, error-when: { capture: failed, not-zero: true } }
                on-entry:
                  failed: { arg: failed, type: bool }
            """, file: "streams.yaml")
    }

    func testSpanOutlivesItsCallUnderTheReturnedObject() throws {
        let plan = PlanCompiler.compile(packs: [try streamPack(outlives: true)], facts: streamFacts())
        XCTAssertEqual(plan.skipped, [])
        let open = try XCTUnwrap(plan.probes.first { $0.probe.id == "open" })
        let end = try XCTUnwrap(plan.probes.first { $0.probe.id == "end" })
        // The interface result's data word (RBX) is the stream, kept before any capture runs;
        // finish's receiver (RAX) finds it again.
        XCTAssertEqual(open.returnProgram, [.loadRegister(.rbx), .setObject])
        XCTAssertNil(open.objectKey)
        XCTAssertEqual(end.objectKey, .rax)
        XCTAssertEqual(end.spanSlot, open.spanSlot)
        XCTAssertEqual(end.returns, [])
        XCTAssertEqual(open.captureSlots.map(\.name), ["name", "failed"])
        XCTAssertEqual(end.entryProgram, [.loadRegister(.rbx), .storeValue(into: 136)])
        XCTAssertEqual(open.enrichments.map(\.errorWhen), [[ErrorCondition(capture: "failed", test: .nonZero)]])
        XCTAssertEqual(open.enrichments.map(\.endsSpan), [true])

        let notKept = PlanCompiler.compile(packs: [try streamPack(outlives: false)], facts: streamFacts())
        XCTAssertEqual(notKept.skipped.map(\.description), [
            "go/streams/end: it ends go/streams/open, whose span has no outlives-call and so ends when its call returns",
        ])

        // Without its end probe, a span kept open would never be emitted: it is left out too.
        var noFinish = streamFacts()
        noFinish.functions["main.(*stream).finish"] = nil
        let unended = PlanCompiler.compile(packs: [try streamPack(outlives: true)], facts: noFinish)
        XCTAssertEqual(unended.probes.filter { $0.pack == "go/streams" }, [])
        XCTAssertEqual(unended.skipped.map(\.description), [
            "go/streams/end: no function main.(*stream).finish in the symbol table of /srv/app",
            "go/streams/open: its span outlives the call, but no end-span probe for it is planned, so it would never end",
        ])
    }
}
