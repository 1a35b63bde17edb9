import BinaryAnalysis
import Foundation
import Planning
import ProbePacks
import XCTest

/// What planning does with functions whose bounds binary analysis could not vouch for, with sites
/// outside a function, and with DWARF that is present but unreadable.
extension PlanCompilerTests {
    func testRejectedFunctionIsSkippedWithItsReason() throws {
        var rejected = facts()
        rejected.functions = [:]
        let reason =
            "\(Self.serveHTTP): the binary disagrees with itself on where it starts (.symtab: 0x62918a; .gopclntab, Go's function table: 0x629180)"
        rejected.rejectedFunctions = [Self.serveHTTP: reason]
        let plan = try plan(rejected)
        XCTAssertEqual(plan.probes, [])
        XCTAssertEqual(plan.skipped.map(\.description), ["go/net-http/server: \(reason)"])
    }

    /// Sites come only from instructions decoded inside the function; anything else is refused
    /// rather than attached.
    func testInstructionOutsideTheFunctionIsRefused() throws {
        var prologue = goPrologue()
        // The function is 0xd0 bytes from 0x629180: this RET would lie in the next function.
        prologue.append(instruction(0x62_9250, "ret", "", emulated: false))
        let plan = try plan(facts(instructions: prologue))
        XCTAssertEqual(plan.probes, [])
        XCTAssertEqual(
            plan.skipped.map(\.reason),
            [
                "\(Self.serveHTTP): the decoded instruction at 0x629250 (4 bytes) lies outside the function (0x629180-0x629250); no probe is placed on it"
            ])
    }

    /// The kernel attaches by file offset: a site's comes from the function's, never from what
    /// an instruction claims.
    func testSiteFileOffsetsFollowFromTheFunctionStart() throws {
        var prologue = goPrologue()
        prologue[1].fileOffset += 1
        prologue[4].fileOffset = 0
        let probe = try XCTUnwrap(try plan(facts(instructions: prologue)).probes.first)
        XCTAssertEqual(probe.entry.address, 0x62_9184)
        XCTAssertEqual(probe.entry.fileOffset, 0x22_9184)
        XCTAssertEqual(probe.returns.map(\.fileOffset), [0x22_9200, 0x22_9240])
    }

    func testInstructionsOutOfOrderAreRefused() throws {
        var prologue = goPrologue()
        prologue.insert(instruction(0x62_9182, "nop", "", emulated: true), at: 2)
        let plan = try plan(facts(instructions: prologue))
        XCTAssertEqual(
            plan.skipped.map(\.reason),
            [
                "\(Self.serveHTTP): the decoded instruction at 0x629182 does not follow the one at 0x629184; no probe is placed on it"
            ])
    }

    func testDecodingThatDoesNotStartAtTheFunctionStartIsRefused() throws {
        let plan = try plan(facts(instructions: Array(goPrologue().dropFirst())))
        XCTAssertEqual(
            plan.skipped.map(\.reason),
            [
                "\(Self.serveHTTP): decoding starts at 0x629184, not at the function's start 0x629180; no probe is placed on it"
            ])
    }

    /// A binary whose DWARF cannot be read is planned like a stripped one, and says why.
    func testUnreadableDWARFFallsBackToTheOffsetTable() throws {
        let table = OffsetTable(pack: "go/net-http", module: "std", entries: [try referenceEntry()])
        var unreadable = strippedFacts()
        unreadable.unreadableDWARF = "decompressing .debug_info failed (libelf: cannot decompress data)"
        let plan = PlanCompiler.compile(
            packs: [try serverPack()], facts: unreadable, offsetTables: ["go/net-http": table])
        XCTAssertEqual(plan.skipped, [])
        let probe = try XCTUnwrap(plan.probes.first)
        XCTAssertEqual(
            Set(probe.captureSlots.map(\.origin)),
            [
                "offset table go1.19.8 (the binary's DWARF is unreadable: decompressing .debug_info failed (libelf: cannot decompress data))"
            ])

        let withoutTable = PlanCompiler.compile(packs: [try serverPack()], facts: unreadable)
        XCTAssertEqual(
            withoutTable.skipped.map(\.reason),
            [
                "the binary's DWARF is unreadable (decompressing .debug_info failed (libelf: cannot decompress data)) and pack go/net-http "
                    + "ships no offset table (\(OffsetTable.path(forPackFile: Self.packFile))); "
                    + "trace an intact build, or generate the table with `swift package --allow-writing-to-package-directory generate-offset-tables`"
            ])
    }
}
