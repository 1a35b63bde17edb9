@testable import BinaryAnalysis
import CLibELF
import Foundation
import TestSupport
import XCTest

/// Analyses net/http servers built during the test with real Go toolchains, and checks the facts
/// against what Go itself reports (`go env GOVERSION`, `unsafe.Offsetof`, interface type words).
final class GoBinaryAnalysisTests: XCTestCase {
    private let fixtures = GoFixtureCache.shared

    override class func tearDown() {
        GoFixtureCache.shared.removeBuiltFixtures()
        super.tearDown()
    }

    func testGo119BuildInfo() throws {
        try assertBuildInfo(fixtures.fixture(.executable))
    }

    func testGo127BuildInfo() throws {
        try assertBuildInfo(fixtures.fixture(.executable, toolchain: .go127))
    }

    /// The id `go tool buildid` prints, also in a stripped build: what a cached analysis is keyed by.
    func testBuildIDIsGos() throws {
        for variant in [GoBuildVariant.executable, .stripped] {
            let fixture = try fixtures.fixture(variant)
            let printed = try GoFixtureCache.run(
                GoToolchain.debian.goCommand, arguments: ["tool", "buildid", fixture.path], in: FileManager.default.temporaryDirectory,
                environment: GoToolchain.debian.environment
            ).trimmingCharacters(in: .whitespacesAndNewlines)
            XCTAssertEqual(printed.split(separator: "/").count, 4, printed)
            XCTAssertEqual(BinaryAnalyzer.buildID(path: fixture.path), "go:" + printed, "\(variant)")
        }
    }

    func testGo119ServeHTTPParameters() throws {
        try assertServeHTTPParameters(fixtures.fixture(.executable))
    }

    func testGo127ServeHTTPParameters() throws {
        try assertServeHTTPParameters(fixtures.fixture(.executable, toolchain: .go127))
    }

    /// Go compresses its DWARF. The sections libdw reads are inflated; the line tables, call frame
    /// information and address ranges, which libdw would inflate too as it starts, stay compressed
    /// (megabytes at the moment Sonde's memory peaks), and so do the location lists, which Sonde
    /// reads as a stream after the walk over the entries.
    func testOnlyTheDebugSectionsReadAreInflated() throws {
        let image = try ELFImage(path: fixtures.fixture(.executable).path)
        let facts = try XCTUnwrap(DWARFReader(image: image))
            .read(functions: Array(image.definedSymbols(named: [GoFixture.serveHTTP]).values), goRuntimeTypes: nil)
        XCTAssertEqual(facts.parameters[GoFixture.serveHTTP]?.map { $0.registers?.count }, [1, 2, 1], "read from .debug_loc")
        func isCompressed(_ name: String) throws -> Bool {
            let section = try XCTUnwrap(image.sections.first { $0.name == name }, name)
            var header = GElf_Shdr()
            XCTAssertNotNil(gelf_getshdr(section.handle, &header))
            return header.sh_flags & UInt64(SHF_COMPRESSED) != 0
        }
        XCTAssertEqual(try ["debug_info", "debug_loc", "debug_abbrev", "debug_line", "debug_frame", "debug_ranges"].map { try isCompressed("." + $0) },
                       [false, true, false, true, true, true])
    }

    func testGo119ParametersOfAnOutOfLineCopyOfAnInlinedFunction() throws {
        let function = try XCTUnwrap(fixtures.fixture(.executable).facts.functions[GoFixture.inlinedElsewhere])
        XCTAssertEqual(function.parameters, [
            Parameter(name: "e", typeName: "net/http.http2ErrCode", registers: [RegisterPiece(register: .rax, size: 4)]),
        ])
    }

    func testGo119RequestLayoutMatchesUnsafeOffsetof() throws {
        try assertRequestLayout(fixtures.fixture(.executable))
    }

    func testGo127RequestLayoutMatchesUnsafeOffsetof() throws {
        try assertRequestLayout(fixtures.fixture(.executable, toolchain: .go127))
    }

    /// Go 1.19 writes uintptr's descriptor as an address and the others as offsets; 1.27 only offsets.
    func testGo119RuntimeTypeAddressesMatchInterfaceTypeWords() throws {
        try assertRuntimeTypeAddresses(fixtures.fixture(.executable))
    }

    func testGo127RuntimeTypeAddressesMatchInterfaceTypeWords() throws {
        try assertRuntimeTypeAddresses(fixtures.fixture(.executable, toolchain: .go127))
    }

    /// Go 1.19 starts large frames with `LEA -n(SP), R12; CMP 16(R14), R12; JBE morestack`.
    func testGo119StackCheckPrologue() throws {
        let function = try serveHTTP(in: fixtures.fixture(.executable))
        XCTAssertEqual(function.instructions.prefix(3).map(\.mnemonic), ["lea", "cmp", "jbe"])
        XCTAssertEqual(function.instructions.dropFirst().first?.text, "cmp r12, qword ptr [r14 + 0x10]")
        XCTAssertEqual(function.instructions.prefix(3).map(\.kernelEmulates), [false, false, true])
        XCTAssertEqual(function.instructions.first?.writtenRegisters, [.r12])
        assertDecodedFromTheFile(function)
    }

    /// Go 1.27 starts this function with `CMP 16(R14), SP; JBE morestack`.
    func testGo127StackCheckPrologue() throws {
        let function = try serveHTTP(in: fixtures.fixture(.executable, toolchain: .go127))
        XCTAssertEqual(function.instructions.prefix(2).map(\.mnemonic), ["cmp", "jbe"])
        XCTAssertEqual(function.instructions.first?.text, "cmp rsp, qword ptr [r14 + 0x10]")
        XCTAssertEqual(function.instructions.prefix(2).map(\.kernelEmulates), [false, true])
        XCTAssertEqual(function.instructions.first?.writtenRegisters, [])
        assertDecodedFromTheFile(function)
    }

    func testGo119ItabSymbol() throws {
        let facts = try fixtures.fixture(.executable).facts
        XCTAssertNotNil(facts.dataSymbols["go.itab.*net/http.response,net/http.ResponseWriter"])
        XCTAssertNil(facts.dataSymbols["go:itab.*net/http.response,net/http.ResponseWriter"], "Go 1.19 spells itabs go.itab.*")
    }

    func testNonPIEExecutableMapsTextAtItsLinkAddress() throws {
        let facts = try fixtures.fixture(.executable).facts
        XCTAssertFalse(facts.isPositionIndependent)
        let function = try serveHTTP(in: facts)
        // Go's default executables map the file from offset 0 at 0x400000.
        XCTAssertEqual(function.fileOffset, function.address - 0x40_0000)
    }

    func testPositionIndependentExecutable() throws {
        let facts = try fixtures.fixture(.positionIndependent).facts
        XCTAssertTrue(facts.isPositionIndependent)
        XCTAssertTrue(facts.hasDWARF)
        let function = try serveHTTP(in: facts)
        XCTAssertEqual(function.parameters?.map(\.name), ["sh", "rw", "req"])
        assertDecodedFromTheFile(function)
    }

    /// `-s` drops `.symtab` and `-w` DWARF; only cgo's few `.dynsym` entries are left.
    /// -s -w removes the symbol table and DWARF; functions then come from Go's pclntab, at the
    /// same addresses, without parameters.
    func testStrippedBinaryKeepsBuildInfoAndFunctionsButNoDWARF() throws {
        let built = try fixtures.fixture(.stripped)
        let unstripped = try fixtures.fixture(.executable)
        XCTAssertEqual(built.facts.goBuild?.goVersion, built.goVersion)
        XCTAssertFalse(built.facts.hasDWARF)
        XCTAssertTrue(built.facts.types.isEmpty)
        XCTAssertTrue(built.facts.dataSymbols.isEmpty)
        XCTAssertEqual(built.facts.functions.keys.sorted(), unstripped.facts.functions.keys.sorted())
        XCTAssertFalse(built.facts.functions.isEmpty)
        for (name, function) in unstripped.facts.functions {
            let stripped = try XCTUnwrap(built.facts.functions[name])
            XCTAssertEqual(stripped.address, function.address, name)
            XCTAssertNil(stripped.parameters, name)
            XCTAssertEqual(stripped.instructions.filter(\.isReturn).map(\.address), function.instructions.filter(\.isReturn).map(\.address), name)
        }
    }

    func testModuleModeBuildInfoTakesTheReplacementVersion() throws {
        let goBuild = try XCTUnwrap(fixtures.fixture(.moduleWithReplacedDependency).facts.goBuild)
        XCTAssertEqual(goBuild.mainModule, GoFixture.mainModule)
        XCTAssertEqual(goBuild.dependencies, [GoModule(path: GoFixture.dependency, version: "(devel)")])
    }

    // MARK: - Shared assertions

    private func assertBuildInfo(_ built: GoFixtureCache.Built, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(built.facts.goBuild, GoBuildInfo(goVersion: built.goVersion, mainModule: "", dependencies: []), file: file, line: line)
        XCTAssertTrue(built.facts.hasDWARF, file: file, line: line)
    }

    private func assertServeHTTPParameters(_ built: GoFixtureCache.Built, file: StaticString = #filePath, line: UInt = #line) throws {
        let parameters = try XCTUnwrap(serveHTTP(in: built.facts).parameters, file: file, line: line)
        XCTAssertEqual(parameters.map(\.name), ["sh", "rw", "req"], file: file, line: line)
        XCTAssertEqual(parameters.map(\.typeName), ["net/http.serverHandler", "net/http.ResponseWriter", "*net/http.Request"], file: file, line: line)
        XCTAssertEqual(parameters.map { $0.registers?.map(\.register) }, [[.rax], [.rbx, .rcx], [.rdi]], file: file, line: line)
        XCTAssertEqual(parameters.map { $0.registers?.map(\.size) }, [[8], [8, 8], [8]], file: file, line: line)
        XCTAssertEqual(built.facts.types["net/http.ResponseWriter"]?.kind, .interface, file: file, line: line)
        XCTAssertEqual(built.facts.types["net/http.ResponseWriter"]?.byteSize, 16, file: file, line: line)
    }

    private func assertRequestLayout(_ built: GoFixtureCache.Built, file: StaticString = #filePath, line: UInt = #line) throws {
        let report = try goReport(printedBy: built.path)
        let request = try XCTUnwrap(built.facts.types["net/http.Request"], file: file, line: line)
        XCTAssertEqual(request.kind, .structure, file: file, line: line)
        XCTAssertEqual(request.members.first, Member(name: "Method", typeName: "string", offset: 0), file: file, line: line)
        for field in ["Method", "URL", "Header"] {
            XCTAssertEqual(request.members.first { $0.name == field }.map { UInt64($0.offset) }, report["offset \(field)"], field, file: file, line: line)
        }
        XCTAssertEqual(request.members.first { $0.name == "URL" }?.typeName, "*net/url.URL", file: file, line: line)

        let pointer = try XCTUnwrap(built.facts.types["*net/http.Request"], file: file, line: line)
        XCTAssertEqual(pointer.kind, .pointer, file: file, line: line)
        XCTAssertEqual(pointer.pointee, "net/http.Request", file: file, line: line)
        XCTAssertEqual(pointer.byteSize, 8, file: file, line: line)

        let string = try XCTUnwrap(built.facts.types["string"], file: file, line: line)
        XCTAssertEqual(string.kind, .base, file: file, line: line)
        XCTAssertEqual(string.members.map(\.offset), [0, 8], file: file, line: line)
    }

    private func assertRuntimeTypeAddresses(_ built: GoFixtureCache.Built, file: StaticString = #filePath, line: UInt = #line) throws {
        let report = try goReport(printedBy: built.path)
        for name in ["*net/http.Request", "net/http.Request", "uintptr"] {
            let address = try XCTUnwrap(report["type \(name)"], name, file: file, line: line)
            XCTAssertEqual(built.facts.types[name]?.runtimeTypeAddress, address, name, file: file, line: line)
        }
        XCTAssertNil(built.facts.types["runtime.iface"]?.runtimeTypeAddress, "runtime.iface has no descriptor", file: file, line: line)
    }

    /// Instructions were read from the file at the function's offset, through to a return.
    private func assertDecodedFromTheFile(_ function: FunctionFacts, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(function.instructions.first?.address, function.address, file: file, line: line)
        XCTAssertEqual(function.instructions.first?.fileOffset, function.fileOffset, file: file, line: line)
        XCTAssertEqual(function.instructions.reduce(0) { $0 + UInt64($1.length) }, function.size, file: file, line: line)
        XCTAssertGreaterThanOrEqual(function.instructions.filter(\.isReturn).count, 1, file: file, line: line)
        XCTAssertTrue(function.instructions.filter(\.isReturn).allSatisfy { $0.mnemonic == "ret" && !$0.kernelEmulates }, file: file, line: line)
    }

    private func serveHTTP(in built: GoFixtureCache.Built) throws -> FunctionFacts {
        try serveHTTP(in: built.facts)
    }

    private func serveHTTP(in facts: BinaryFacts) throws -> FunctionFacts {
        try XCTUnwrap(facts.functions[GoFixture.serveHTTP], "\(GoFixture.serveHTTP) missing from \(facts.path)")
    }

    /// What the fixture prints, by its first two words (`offset URL`, `type *net/http.Request`).
    private func goReport(printedBy binary: String) throws -> [String: UInt64] {
        try fixtures.run(binary).split(separator: "\n").reduce(into: [:]) { report, line in
            let fields = line.split(separator: " ")
            if fields.count == 3, let value = UInt64(fields[2]) { report["\(fields[0]) \(fields[1])"] = value }
        }
    }
}
