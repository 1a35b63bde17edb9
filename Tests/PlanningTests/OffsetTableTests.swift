import BinaryAnalysis
import Foundation
import Planning
import ProbePacks
import XCTest

/// Offset tables: recording a reference build's DWARF facts, and planning a stripped binary from them.
extension PlanCompilerTests {
    static let responseWriterTypeAddress: UInt64 = 0x7a_2000
    static let responseHeaderMethod = "net/http.(*response).Header"

    /// The DWARF facts of a reference build, whose itab for (*response, ResponseWriter) is known.
    func referenceEntry() throws -> OffsetTable.Entry {
        var reference = facts()
        reference.types["net/http.ResponseWriter"]?.runtimeTypeAddress = Self.responseWriterTypeAddress
        return try OffsetTableRecorder.record(pack: try serverPack(), facts: reference, libraryVersion: "go1.19.8") { interfaceType, dynamicType in
            XCTAssertEqual(interfaceType, Self.responseWriterTypeAddress)
            XCTAssertEqual(dynamicType, Self.responseTypeAddress)
            return Self.responseHeaderMethod
        }
    }

    /// A stripped build: functions from the pclntab, no DWARF, no types.
    func strippedFacts(goVersion: String = "go1.19.8", dependencies: [GoModule] = []) -> BinaryFacts {
        var stripped = facts(goVersion: goVersion, hasDWARF: false)
        stripped.types = [:]
        stripped.goBuild?.dependencies = dependencies
        stripped.functions[Self.responseHeaderMethod] = FunctionFacts(
            name: Self.responseHeaderMethod, address: 0x62_0500, size: 0x40, fileOffset: 0x22_0500, parameters: nil, instructions: [])
        return stripped
    }

    func testRecordedEntryHoldsOnlyWhatThePlanConsults() throws {
        let entry = try referenceEntry()
        XCTAssertEqual(entry.goVersion, "go1.19.8")
        XCTAssertEqual(entry.functions.keys.sorted(), [Self.serveHTTP])
        XCTAssertEqual(entry.functions[Self.serveHTTP]?.parameters.map(\.name), ["sh", "rw", "req"])
        XCTAssertEqual(entry.types.keys.sorted(), [
            "*net/http.Request", "*net/http.response", "*net/url.URL", "net/http.Request", "net/http.ResponseWriter", "net/http.response", "net/url.URL",
        ])
        XCTAssertTrue(entry.types.values.allSatisfy { $0.runtimeTypeAddress == nil }, "addresses of the reference build mean nothing elsewhere")
        XCTAssertEqual(entry.types["*net/http.response"]?.itabFirstMethods, ["net/http.ResponseWriter": Self.responseHeaderMethod])
    }

    func testStrippedBinaryIsPlannedFromTheTable() throws {
        let table = OffsetTable(pack: "go/net-http", module: "std", entries: [try referenceEntry()])
        let fromDWARF = try XCTUnwrap(try plan(facts()).probes.first)
        let stripped = PlanCompiler.compile(packs: [try serverPack()], facts: strippedFacts(), offsetTables: ["go/net-http": table])
        XCTAssertEqual(stripped.skipped, [])
        let probe = try XCTUnwrap(stripped.probes.first)
        XCTAssertEqual(probe.entryProgram, fromDWARF.entryProgram)
        XCTAssertEqual(probe.captureSlots.map(\.offset), fromDWARF.captureSlots.map(\.offset))
        XCTAssertEqual(Set(probe.captureSlots.map(\.origin)), ["offset table go1.19.8"])
        // The dynamic type is recognised by the itab's first method instead of the type descriptor.
        XCTAssertEqual(probe.returnProgram, [
            .loadSaved(slot: 0), .add(24), .dereference, .expectAddress(0x62_0500, meaning: "dynamic type's \(Self.responseHeaderMethod)"),
            .loadSaved(slot: 1), .add(136), .readInteger(size: 8, into: probe.captureSlots[3].offset),
        ])
        XCTAssertEqual(PlanCompiler.functionsNeeded(by: [try serverPack()], offsetTables: ["go/net-http": table]), [
            Self.responseHeaderMethod, Self.serveHTTP,
        ])
    }

    func testTableEntryIsChosenByGoRelease() throws {
        let table = OffsetTable(pack: "go/net-http", module: "std", entries: [try referenceEntry()])
        let patch = PlanCompiler.compile(packs: [try serverPack()], facts: strippedFacts(goVersion: "go1.19.13"), offsetTables: ["go/net-http": table])
        XCTAssertEqual(patch.probes.first?.captureSlots.first?.origin, "offset table go1.19.8 (binary: go1.19.13)")

        let newer = PlanCompiler.compile(packs: [try serverPack()], facts: strippedFacts(goVersion: "go1.20.4"), offsetTables: ["go/net-http": table])
        XCTAssertEqual(newer.probes, [])
        XCTAssertEqual(newer.skipped.map(\.reason), [
            "no offsets recorded for go1.20.4 (the table has go1.19.8); trace a build without -s -w, or add this toolchain to the table",
        ])

        let noTable = PlanCompiler.compile(packs: [try serverPack()], facts: strippedFacts())
        XCTAssertEqual(noTable.skipped.map(\.reason), [
            "the binary has no DWARF (built with -ldflags=-s -w) and pack go/net-http ships no offset table (\(OffsetTable.path(forPackFile: Self.packFile))); trace a build without -s -w, or generate the table with `swift package --allow-writing-to-package-directory generate-offset-tables`",
        ])
    }

    func testTableEntryIsChosenByLibraryVersion() throws {
        var pack = try serverPack()
        pack.library.module = "example.com/web"
        var entry = try referenceEntry()
        entry.libraryVersion = "v1.33.3"
        let tables = ["go/net-http": OffsetTable(pack: "go/net-http", module: "example.com/web", entries: [entry])]

        let gopath = PlanCompiler.compile(packs: [pack], facts: strippedFacts(), offsetTables: tables)
        XCTAssertEqual(gopath.probes.first?.captureSlots.first?.origin, "offset table go1.19.8, example.com/web v1.33.3 (version not in the binary)")

        let matching = PlanCompiler.compile(
            packs: [pack], facts: strippedFacts(dependencies: [GoModule(path: "example.com/web", version: "v1.33.3")]), offsetTables: tables)
        XCTAssertEqual(matching.probes.first?.captureSlots.first?.origin, "offset table go1.19.8, example.com/web v1.33.3")

        let other = PlanCompiler.compile(
            packs: [pack], facts: strippedFacts(dependencies: [GoModule(path: "example.com/web", version: "v1.40.0")]), offsetTables: tables)
        XCTAssertEqual(other.skipped.map(\.reason), ["no offsets recorded for example.com/web v1.40.0 with go1.19.8 (the table has v1.33.3)"])
    }

    func testTableFileRoundTripsMergesInVersionOrderAndNamesBrokenKeys() throws {
        let entry = try referenceEntry()
        var table = OffsetTable(pack: "go/net-http", module: "std", entries: [])
        for version in ["go1.21.13", "go1.9.7", "go1.19.8", "go1.21.13"] {
            var versioned = entry
            versioned.goVersion = version
            versioned.libraryVersion = version
            table.merge(versioned)
        }
        XCTAssertEqual(table.entries.map(\.goVersion), ["go1.9.7", "go1.19.8", "go1.21.13"])

        let file = FileManager.default.temporaryDirectory.appendingPathComponent("sonde-table-\(UUID().uuidString).offsets.json")
        defer { try? FileManager.default.removeItem(at: file) }
        try table.encoded().write(to: file)
        XCTAssertEqual(try OffsetTable.load(path: file.path), table)

        try Data(#"{"pack": "go/net-http", "module": "std", "entries": [{"goVersion": "go1.19.8"}]}"#.utf8).write(to: file)
        XCTAssertThrowsError(try OffsetTable.load(path: file.path)) { error in
            XCTAssertEqual("\(error)", "\(file.path): .entries[0].libraryVersion is missing; regenerate the table")
        }
    }
}
