import BinaryAnalysis
import Foundation
import Planning
import ProbePacks
import XCTest

/// Plans the shipped libpq pack against hand-made facts shaped like Debian's libpq.so.5.15:
/// SysV registers from the pack's prototypes, return probes, guarded ends and enrichers.
final class NativePlanningTests: XCTestCase {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let libpqPack = repository.appendingPathComponent("probe-packs/c/libpq.yaml").path

    func instruction(_ address: UInt64, _ mnemonic: String, _ operands: String, emulated: Bool, length: Int = 4, writes: [Register] = [])
        -> Instruction
    {
        Instruction(
            address: address, fileOffset: address, length: length, mnemonic: mnemonic, operands: operands,
            kernelEmulates: emulated, isReturn: mnemonic == "ret", writtenRegisters: writes)
    }

    /// `push rbp; mov rbp, rsp; …; ret`, as gcc -O2 with frame pointers compiles libpq.
    func framed(_ name: String, at address: UInt64) -> FunctionFacts {
        FunctionFacts(
            name: name, address: address, size: 0x20, fileOffset: address, parameters: nil,
            instructions: [
                instruction(address, "push", "rbp", emulated: true, length: 1, writes: [.rsp]),
                instruction(address + 1, "mov", "rbp, rsp", emulated: false, length: 3, writes: [.rbp]),
                instruction(address + 4, "ret", "", emulated: false, length: 1),
            ])
    }

    func libpqFacts(soname: String? = "libpq.so.5", version: String? = "5.15") -> BinaryFacts {
        // PQsendQuery: `mov edx, 1; jmp PQsendQueryInternal`, no frame and no RET of its own.
        let sendQuery = FunctionFacts(
            name: "PQsendQuery", address: 0x17900, size: 10, fileOffset: 0x17900, parameters: nil,
            instructions: [
                instruction(0x17900, "mov", "edx, 1", emulated: false, length: 5, writes: [.rdx]),
                instruction(0x17905, "jmp", "0x164b0", emulated: true, length: 5),
            ])
        let functions = [
            sendQuery, framed("PQsendQueryParams", at: 0x17920), framed("PQsendPrepare", at: 0x179f0),
            framed("PQsendQueryPrepared", at: 0x17c70), framed("PQgetResult", at: 0x18550),
        ]
        return BinaryFacts(
            path: "/usr/lib/x86_64-linux-gnu/libpq.so.5.15", isPositionIndependent: true, goBuild: nil, hasDWARF: false,
            functions: Dictionary(uniqueKeysWithValues: functions.map { ($0.name, $0) }), dataSymbols: [:], types: [:],
            soname: soname, libraryVersion: version)
    }

    func testLibpqPlansFromItsPrototypesWithReturnProbes() throws {
        let plan = PlanCompiler.compile(packs: [try PackLoader.load(file: Self.libpqPack)], facts: libpqFacts())
        XCTAssertEqual(plan.skipped, [])
        XCTAssertEqual(plan.sharedLibrary, "libpq.so.5 5.15")
        XCTAssertEqual(plan.probes.count, 12)
        XCTAssertTrue(plan.probes.allSatisfy { $0.keyMode == .thread })

        // PQsendQuery: its tail jump, emulated, where RDI and RSI still hold conn and query;
        // its span ends at PQgetResult, so no return probe.
        let query = plan.probes[0]
        XCTAssertEqual(query.entry.address, 0x17905)
        XCTAssertEqual(query.entry.instruction, "jmp 0x164b0")
        XCTAssertEqual(query.returns, [])
        XCTAssertEqual(query.entryProgram, [
            .loadRegister(.rsi), .readCString(into: 0, maxLength: 255),
            .loadRegister(.rdi), .add(0x48), .dereference, .readCString(into: 264, maxLength: 64),
            .loadRegister(.rdi), .dereference, .readCString(into: 336, maxLength: 64),
        ])
        XCTAssertEqual(query.captureSlots.map(\.origin), Array(repeating: "pack signature (\(Self.libpqPack):56:16)", count: 3)
            + Array(repeating: "pack signature (\(Self.libpqPack):140:16)", count: 2), "the enricher's status and SQLSTATE land after the span's own captures")

        // PQsendQueryParams: entry and return probe share the push; the return ends the span only when sending failed.
        let params = plan.probes[1]
        XCTAssertEqual(params.entry, ProbeSite(
            role: .entry, function: "PQsendQueryParams", address: 0x17920, fileOffset: 0x17920, instruction: "push rbp", kernelEmulates: true,
            skipFlagsMask: 0))
        XCTAssertEqual(params.returns, [ProbeSite(
            role: .returnProbe, function: "PQsendQueryParams", address: 0x17920, fileOffset: 0x17920,
            instruction: "return probe, hooked at push rbp", kernelEmulates: true, skipFlagsMask: 0)])
        XCTAssertEqual(params.returnGuard, SiteGuard(register: .rax, test: .zero))
        XCTAssertEqual(params.returnProgram, [])
        XCTAssertEqual(TrapCost(perCallOf: params), TrapCost(emulatedHits: 2, singleSteppedHits: 0))

        // PQgetResult, non-NULL: reads the result's status into the open span's record.
        let result = plan.probes.first { $0.qualifiedID == "c/libpq/result-query" }!
        XCTAssertEqual(result.entry.role, .returnProbe)
        XCTAssertEqual(result.entry.fileOffset, 0x18550)
        XCTAssertEqual(result.returns, [])
        XCTAssertEqual(result.entryGuard, SiteGuard(register: .rax, test: .nonZero))
        // Then its SQLSTATE: the error field coded 'C' in the result's list of them (absent on success).
        XCTAssertEqual(result.entryProgram, [
            .loadRegister(.rax), .add(0x28), .readInteger(size: 4, into: 408),
            .loadRegister(.rax), .add(0xa8), .dereference, .findInList(linkOffset: 0, keyOffset: 8, keySize: 1, equals: 67), .add(9),
            .readCString(into: 416, maxLength: 5),
        ])
        XCTAssertEqual(result.spanSlot, query.spanSlot)
        XCTAssertEqual(TrapCost(perCallOf: result), TrapCost(emulatedHits: 2, singleSteppedHits: 0), "its hook and its return")

        // PQgetResult, NULL: ends the span.
        let done = plan.probes.first { $0.qualifiedID == "c/libpq/done-query-prepared" }!
        XCTAssertEqual(done.entryGuard, SiteGuard(register: .rax, test: .zero))
        XCTAssertEqual(done.entryProgram, [])
        XCTAssertEqual(done.spanSlot, plan.probes[3].spanSlot)

        // A request counts each breakpoint and each return once, whatever number of probes share them:
        // PQsendQuery's jmp, three pushes with their returns, PQgetResult's push and return.
        XCTAssertEqual(TrapCost(perRequestOf: plan.probes), TrapCost(emulatedHits: 9, singleSteppedHits: 0))
    }

    func testAnotherFileOrVersionIsSaidWhy() throws {
        let pack = try PackLoader.load(file: Self.libpqPack)
        let program = PlanCompiler.compile(packs: [pack], facts: libpqFacts(soname: nil, version: nil))
        XCTAssertEqual(program.probes, [])
        XCTAssertEqual(Set(program.skipped.map(\.reason)), [
            "c/libpq probes libpq.so.5, and /usr/lib/x86_64-linux-gnu/libpq.so.5.15 is not that library (it is not a shared library)",
        ])
        XCTAssertTrue(program.skipped.allSatisfy(\.isFunctionAbsent), "another file's probes are absent here, not wrong")
        let newer = PlanCompiler.compile(packs: [pack], facts: libpqFacts(version: "5.17"))
        XCTAssertEqual(Set(newer.skipped.map(\.reason)), ["libpq.so.5 5.17 is outside the pack's range >=5.15 <5.16"])
        XCTAssertFalse(newer.skipped.contains(where: \.isFunctionAbsent))
        let unversioned = PlanCompiler.compile(packs: [pack], facts: libpqFacts(version: nil))
        XCTAssertEqual(Set(unversioned.skipped.map(\.reason)), [
            "the name of /usr/lib/x86_64-linux-gnu/libpq.so.5.15 does not say which version of libpq.so.5 it is; the pack covers >=5.15 <5.16",
        ])
    }

    func testRegistersFollowTheSysVOrderSkippingFloatsAndStoppingAtStructsByValue() throws {
        let yaml = """
            format: sonde.probe-pack/v1
            pack: c/demo
            language: c
            library:
              soname: libpq.so.5
              versions: ">=5"
            types:
              Pair:
                first: { offset: 0, type: long }
            probes:
              - id: mixed
                function: PQsendQueryParams
                signature: "int PQsendQueryParams(double scale, char* a, int b, short c, void* d, long e, char* f, char* g)"
                span: { kind: internal, name: "{f}" }
                on-entry:
                  a: { arg: a, type: c-string }
                  f: { arg: f, type: c-string }
              - id: stack
                function: PQsendQueryPrepared
                signature: "int PQsendQueryPrepared(char* a, int b, short c, void* d, long e, char* f, char* g)"
                span: { kind: internal, name: "{g}" }
                on-entry:
                  g: { arg: g, type: c-string }
              - id: by-value
                function: PQsendPrepare
                signature: "int PQsendPrepare(Pair pair, char* name)"
                span: { kind: internal, name: "{name}" }
                on-entry:
                  name: { arg: name, type: c-string }
            """
        let plan = PlanCompiler.compile(packs: [try PackLoader.parse(yaml: yaml, file: "demo.yaml")], facts: libpqFacts())
        // a..f take RDI, RSI, RDX, RCX, R8, R9 (the double goes to XMM0); a seventh is on the stack,
        // and a struct passed by value is not modelled, nor is anything after it.
        XCTAssertEqual(plan.probes.map(\.qualifiedID), ["c/demo/mixed"])
        XCTAssertEqual(plan.probes[0].entryProgram, [
            .loadRegister(.rdi), .readCString(into: 0, maxLength: 128), .loadRegister(.r9), .readCString(into: 136, maxLength: 128),
        ])
        XCTAssertEqual(plan.skipped.map(\.reason), [
            "capture 'g' (demo.yaml:23:7): argument 'g' is not in registers",
            "capture 'name' (demo.yaml:29:7): argument 'name' is not in registers",
        ])
    }

    /// `list[key=value]` walks a linked list to the node whose key matches; a struct without a
    /// link to its own type, or a key that is no integer, is refused with the reason.
    func testListStepsWalkToTheMatchingNode() throws {
        let yaml = """
            format: sonde.probe-pack/v1
            pack: c/demo
            language: c
            library:
              soname: libpq.so.5
              versions: ">=5"
            types:
              Result:
                fields: { offset: 16, type: "Field*" }
                single: { offset: 24, type: "Lone*" }
              Field:
                code: { offset: 0, type: short }
                text: { offset: 2, type: "char[32]" }
                next: { offset: 40, type: "Field*" }
              Lone:
                code: { offset: 0, type: char }
            probes:
              - id: found
                function: PQsendQueryParams
                signature: "int PQsendQueryParams(Result* result)"
                span: { kind: internal, name: "x" }
                on-entry:
                  text: { arg: result, path: "fields[code=0x4d].text", type: c-string, max-length: 31 }
              - id: unlinked
                function: PQsendQueryPrepared
                signature: "int PQsendQueryPrepared(Result* result)"
                span: { kind: internal, name: "x" }
                on-entry:
                  code: { arg: result, path: "single[code='C'].code", type: bool }
              - id: text-key
                function: PQsendPrepare
                signature: "int PQsendPrepare(Result* result)"
                span: { kind: internal, name: "x" }
                on-entry:
                  code: { arg: result, path: "fields[text=1].code", type: int32 }
            """
        let plan = PlanCompiler.compile(packs: [try PackLoader.parse(yaml: yaml, file: "demo.yaml")], facts: libpqFacts())
        XCTAssertEqual(plan.probes.map(\.qualifiedID), ["c/demo/found"])
        XCTAssertEqual(plan.probes[0].entryProgram, [
            .loadRegister(.rdi), .add(16), .dereference, .findInList(linkOffset: 40, keyOffset: 0, keySize: 2, equals: 0x4d), .add(2),
            .readCString(into: 0, maxLength: 31),
        ])
        XCTAssertEqual(plan.skipped.map(\.reason), [
            "capture 'code' (demo.yaml:29:7): 'single[…]' walks a list through the member of Lone that points to the next Lone; it has none",
            "capture 'code' (demo.yaml:35:7): Field.text is []char, not an integer or character to compare",
        ])
    }

    /// A span probe with a pattern probes every function it matched, one span slot for all; an
    /// end-span probe must match one; a pattern matching nothing is an absent function.
    func testPatternsPlanEveryMatchedFunctionOfASpanProbe() throws {
        let yaml = """
            format: sonde.probe-pack/v1
            pack: cpp/demo
            language: cpp
            library:
              versions: ">=0"
            probes:
              - id: handle
                function: { pattern: "Handler<*>::handle(*)" }
                signature: "int handle(Handler* this, int code)"
                span: { kind: internal, name: "handle" }
                on-entry:
                  code: { arg: code, type: int32 }
              - id: finish
                function: { pattern: "Handler<*>::finish()" }
                end-span: { span: cpp/demo/handle }
              - id: missing
                function: { pattern: "Nowhere::*" }
                span: { kind: internal, name: "x" }
            """
        let pack = try PackLoader.parse(yaml: yaml, file: "demo.yaml")
        XCTAssertEqual(PlanCompiler.functionPatterns(in: [pack]), ["Handler<*>::finish()", "Handler<*>::handle(*)", "Nowhere::*"])
        XCTAssertEqual(PlanCompiler.functionsNeeded(by: [pack]), [], "patterns are not names")
        let functions = [
            framed("Handler<int>::handle(int)", at: 0x1000), framed("Handler<long>::handle(int)", at: 0x1100),
            framed("Handler<int>::finish()", at: 0x1200), framed("Handler<long>::finish()", at: 0x1300),
        ]
        var facts = BinaryFacts(
            path: "/srv/demo", isPositionIndependent: true, goBuild: nil, hasDWARF: false,
            functions: Dictionary(uniqueKeysWithValues: functions.map { ($0.name, $0) }), dataSymbols: [:], types: [:])
        facts.patternMatches = [
            "Handler<*>::handle(*)": ["Handler<int>::handle(int)", "Handler<long>::handle(int)"],
            "Handler<*>::finish()": ["Handler<int>::finish()", "Handler<long>::finish()"],
            "Nowhere::*": [],
        ]
        let plan = PlanCompiler.compile(packs: [pack], facts: facts)
        XCTAssertEqual(plan.probes.map(\.probe.function), ["Handler<int>::handle(int)", "Handler<long>::handle(int)"])
        XCTAssertEqual(plan.probes.map(\.entry.address), [0x1000, 0x1100])
        XCTAssertEqual(plan.probes.map(\.spanSlot), [0, 0], "one probe's calls: one span slot")
        XCTAssertEqual(plan.probes.map(\.entryProgram), Array(repeating: [.loadRegister(.rsi), .storeValue(into: 0)], count: 2))
        XCTAssertEqual(plan.skipped.map(\.description), [
            "cpp/demo/missing: no function in the symbol table of /srv/demo matches the pattern Nowhere::*",
            "cpp/demo/finish: Handler<*>::finish() matches 2 functions (Handler<int>::finish(); Handler<long>::finish()); "
                + "only a span probe may probe several: write a pattern that matches one",
        ])
        XCTAssertEqual(plan.skipped.map(\.isFunctionAbsent), [true, false])
        XCTAssertEqual(plan.notes, [
            "cpp/demo/handle: the pattern Handler<*>::handle(*) matches 2 functions, each probed: Handler<int>::handle(int); Handler<long>::handle(int)",
        ])
    }

    /// A String is read where DWARF puts its buffer's pointer and, right after it, its length;
    /// another layout is refused with what DWARF says, never misread.
    func testRustStringsFollowTheirDWARFLayout() throws {
        let yaml = """
            format: sonde.probe-pack/v1
            pack: rust/demo
            language: rust
            library: { crate: std, versions: ">=1" }
            probes:
              - id: keep
                function: "demo::keep"
                span: { kind: internal, name: "{name}" }
                on-entry:
                  name: { arg: name, type: rust-string }
            """
        func plan(length: Int) throws -> AttachPlan {
            var keep = framed("demo::keep", at: 0x1000)
            keep.parameters = [Parameter(name: "name", typeName: "*String", registers: [RegisterPiece(register: .rdi, size: 8)])]
            let types = [
                TypeFacts(name: "*String", kind: .pointer, byteSize: 8, pointee: "String", members: []),
                TypeFacts(name: "String", kind: .structure, byteSize: 24, pointee: nil, members: [Member(name: "vec", typeName: "Vec<u8>", offset: 0)]),
                TypeFacts(name: "Vec<u8>", kind: .structure, byteSize: 24, pointee: nil, members: [
                    Member(name: "buf", typeName: "RawVec<u8>", offset: 0), Member(name: "len", typeName: "usize", offset: length),
                ]),
                TypeFacts(name: "RawVec<u8>", kind: .structure, byteSize: 16, pointee: nil, members: [Member(name: "inner", typeName: "RawVecInner", offset: 0)]),
                TypeFacts(name: "RawVecInner", kind: .structure, byteSize: 16, pointee: nil, members: [
                    Member(name: "ptr", typeName: "Unique<u8>", offset: 8), Member(name: "cap", typeName: "usize", offset: 0),
                ]),
            ]
            let facts = BinaryFacts(
                path: "/srv/demo", isPositionIndependent: true, goBuild: nil, hasDWARF: true, functions: [keep.name: keep], dataSymbols: [:],
                types: Dictionary(uniqueKeysWithValues: types.map { ($0.name, $0) }), crateVersions: ["std": "1.95.0"])
            return PlanCompiler.compile(packs: [try PackLoader.parse(yaml: yaml, file: "demo.yaml")], facts: facts)
        }
        XCTAssertEqual(try plan(length: 16).probes.first?.entryProgram, [.loadRegister(.rdi), .add(8), .readGoString(into: 0, maxLength: 128)])
        XCTAssertEqual(try plan(length: 0).skipped.map(\.reason), [
            "capture 'name' (demo.yaml:10:7): this String's layout in DWARF (pointer at 8, length at 0) is not a pointer followed by its length",
        ])
    }

    /// rust/hyper against facts shaped like an optimised hyper 0.14.19 build with DWARF: the
    /// crate's version decides, and the status is read through the head passed by reference.
    func testRustPackReadsThroughDWARFAndChecksTheCrateVersion() throws {
        let pack = try PackLoader.load(file: Self.repository.appendingPathComponent("probe-packs/rust/hyper.yaml").path)
        let recvMessage = framed(pack.probes[0].function, at: 0x513f0)
        var encodeHead = framed(pack.probes[1].function, at: 0x49e80)
        encodeHead.parameters = [
            Parameter(name: "self", typeName: "&mut Conn<AddrStream, Bytes, Server>", registers: [RegisterPiece(register: .rsi, size: 8)]),
            Parameter(name: "head", typeName: "*MessageHead<http::status::StatusCode>", registers: [RegisterPiece(register: .rdx, size: 8)]),
        ]
        let types = [
            TypeFacts(name: "*MessageHead<http::status::StatusCode>", kind: .pointer, byteSize: 8, pointee: "MessageHead<http::status::StatusCode>", members: []),
            TypeFacts(name: "MessageHead<http::status::StatusCode>", kind: .structure, byteSize: 112, pointee: nil, members: [
                Member(name: "headers", typeName: "HeaderMap<http::header::value::HeaderValue>", offset: 0),
                Member(name: "subject", typeName: "StatusCode", offset: 104),
            ]),
            TypeFacts(name: "StatusCode", kind: .structure, byteSize: 2, pointee: nil, members: [Member(name: "__0", typeName: "NonZero<u16>", offset: 0)]),
            TypeFacts(name: "NonZero<u16>", kind: .structure, byteSize: 2, pointee: nil, members: [Member(name: "__0", typeName: "NonZeroU16Inner", offset: 0)]),
            TypeFacts(name: "NonZeroU16Inner", kind: .structure, byteSize: 2, pointee: nil, members: [Member(name: "__0", typeName: "u16", offset: 0)]),
            TypeFacts(name: "u16", kind: .base, byteSize: 2, pointee: nil, members: []),
        ]
        func facts(hyper: String?) -> BinaryFacts {
            BinaryFacts(
                path: "/srv/hyper-server", isPositionIndependent: true, goBuild: nil, hasDWARF: true,
                functions: [recvMessage.name: recvMessage, encodeHead.name: encodeHead], dataSymbols: [:],
                types: Dictionary(uniqueKeysWithValues: types.map { ($0.name, $0) }), crateVersions: hyper.map { ["hyper": $0] } ?? [:])
        }
        let plan = PlanCompiler.compile(packs: [pack], facts: facts(hyper: "0.14.19"))
        XCTAssertEqual(plan.skipped, [])
        XCTAssertEqual(plan.experimentalPacks.keys.sorted(), ["rust/hyper"])
        XCTAssertEqual(plan.probes.map(\.entry.address), [0x513f0, 0x49e80])
        XCTAssertEqual(plan.probes[0].returns, [], "ended by encode_head, not at its return")
        XCTAssertEqual(plan.probes[1].entryProgram, [.loadRegister(.rdx), .add(104), .readInteger(size: 2, into: 0)])
        XCTAssertEqual(plan.probes[1].captureSlots.map(\.origin), ["DWARF"])

        XCTAssertEqual(plan.notes, [])

        // Two servers of different types in one program: two instances, one demangled name.
        var twoServers = facts(hyper: "0.14.19")
        twoServers.functions[recvMessage.name]?.namesakes = 1
        XCTAssertEqual(PlanCompiler.compile(packs: [pack], facts: twoServers).notes, [
            "rust/hyper/server: 2 functions are named \(recvMessage.name); only the first in the symbol table, at 0x513f0, is probed",
        ])

        let newer = PlanCompiler.compile(packs: [pack], facts: facts(hyper: "1.4.1"))
        XCTAssertEqual(Set(newer.skipped.map(\.reason)), ["hyper 1.4.1 is outside the pack's range >=0.14 <0.15"])
        XCTAssertEqual(newer.experimentalPacks, [:], "nothing of it is planned")
    }

    func testAtReturnIsForNativeCodeOnly() throws {
        let yaml = """
            format: sonde.probe-pack/v1
            pack: go/demo
            language: go
            library:
              module: std
              versions: ">=1.17"
            probes:
              - id: span
                function: main.work
                span: { kind: internal, name: work }
              - id: done
                function: main.finish
                end-span: { span: go/demo/span, at: return }
            """
        let entry = Instruction(
            address: 0x1000, fileOffset: 0x1000, length: 1, mnemonic: "push", operands: "rbp", kernelEmulates: true, isReturn: false,
            writtenRegisters: [.rsp])
        let ret = Instruction(
            address: 0x1001, fileOffset: 0x1001, length: 1, mnemonic: "ret", operands: "", kernelEmulates: false, isReturn: true,
            writtenRegisters: [])
        func function(_ name: String, _ address: UInt64) -> FunctionFacts {
            var moved = [entry, ret]
            for index in moved.indices { moved[index].address += address - 0x1000; moved[index].fileOffset += address - 0x1000 }
            return FunctionFacts(name: name, address: address, size: 2, fileOffset: address, parameters: [], results: [], instructions: moved)
        }
        let facts = BinaryFacts(
            path: "/bin/demo", isPositionIndependent: false, goBuild: GoBuildInfo(goVersion: "go1.21.0", mainModule: "", dependencies: []),
            hasDWARF: true, functions: ["main.work": function("main.work", 0x1000), "main.finish": function("main.finish", 0x2000)],
            dataSymbols: [:], types: [:])
        let plan = PlanCompiler.compile(packs: [try PackLoader.parse(yaml: yaml, file: "go.yaml")], facts: facts)
        XCTAssertEqual(plan.skipped.map(\.description), [
            "go/demo/done: go.yaml:11:5: at: return needs a return probe, which Sonde puts on native code only (Go's stack walker would meet its swapped return address)",
        ])
        XCTAssertEqual(plan.probes.map(\.qualifiedID), ["go/demo/span"])
    }
}
