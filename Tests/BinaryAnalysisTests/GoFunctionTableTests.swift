@testable import BinaryAnalysis
import Foundation
import TestSupport
import XCTest

/// Function addresses read from Go's pclntab in stripped builds (`-ldflags=-s -w`), checked against
/// the `.symtab` of the same program built without stripping.
final class GoFunctionTableTests: XCTestCase {
    private let fixtures = GoFixtureCache.shared
    /// Functions of the fixture server (GoFixture.serverSource), which is no HTTP client.
    private let names: Set<String> = [
        "net/http.serverHandler.ServeHTTP", "net/http.(*conn).serve", "main.main", "runtime.newproc1",
    ]

    override class func tearDown() {
        GoFixtureCache.shared.removeBuiltFixtures()
        ExtraGoBuilds.shared.remove()
        super.tearDown()
    }

    func testGo119Stripped() throws {
        try assertFunctions(in: fixtures.fixture(.stripped).path, match: fixtures.fixture(.executable).path)
    }

    func testGo127Stripped() throws {
        try assertFunctions(in: fixtures.fixture(.stripped, toolchain: .go127).path,
                            match: fixtures.fixture(.executable, toolchain: .go127).path)
    }

    /// Go 1.19 puts a PIE's table in `.data.rel.ro.gopclntab`.
    func testGo119PositionIndependentStripped() throws {
        let stripped = try ExtraGoBuilds.shared.build(.debian, flags: ["-buildmode=pie", "-ldflags=-s -w"])
        let image = try ELFImage(path: stripped)
        XCTAssertTrue(image.isPositionIndependent)
        XCTAssertNotNil(image.section(named: ".data.rel.ro.gopclntab"))
        try assertFunctions(in: stripped, match: fixtures.fixture(.positionIndependent).path)
    }

    /// The unstripped binary's own table agrees with its symbol table too.
    func testGo127UnstrippedTableAgreesWithSymbolTable() throws {
        let path = try fixtures.fixture(.executable, toolchain: .go127).path
        try assertFunctions(in: path, match: path)
    }

    /// Go ≥ 1.26 leave the header's text start 0. With an external linker, C start-up code comes
    /// before `runtime.text` in `.text`, so the start must come from the module data.
    func testGo127ExternallyLinkedStripped() throws {
        let stripped = try ExtraGoBuilds.shared.build(.go127, flags: ["-ldflags=-linkmode=external -s -w"])
        let unstripped = try ExtraGoBuilds.shared.build(.go127, flags: ["-ldflags=-linkmode=external"])
        let textSection = try XCTUnwrap(ELFImage(path: unstripped).section(named: ".text"))
        let runtimeText = try XCTUnwrap(ELFImage(path: unstripped).definedSymbols(named: ["runtime.text"])["runtime.text"])
        XCTAssertGreaterThan(runtimeText.address, textSection.address, "the C code the test is about is not there")
        try assertFunctions(in: stripped, match: unstripped)
    }

    /// Go 1.19–1.25 give the table no section of its own when an external linker links a PIE: it is
    /// merged into `.data.rel.ro`, where its header has to be searched for.
    func testGo119ExternallyLinkedPositionIndependentStripped() throws {
        try assertExternallyLinkedPositionIndependent(.debian)
    }

    func testGo125ExternallyLinkedPositionIndependentStripped() throws {
        try assertExternallyLinkedPositionIndependent(.go125)
    }

    /// Unlike GNU ld, lld leaves the header's text start 0 in the file: only its relocation in `.rela.dyn` holds it.
    func testGo119LLDLinkedPositionIndependentStripped() throws {
        _ = try TestEnvironment.tool("LLD")   // gcc's -fuse-ld=lld runs the ld.lld it finds on PATH
        let (stripped, unstripped) = try assertExternallyLinkedPositionIndependent(.debian, linkerFlags: " -extldflags=-fuse-ld=lld")
        let header = try XCTUnwrap(ELFImage(path: unstripped).definedSymbols(named: ["runtime.pclntab"])["runtime.pclntab"])
        let image = try ELFImage(path: stripped)
        let textStart = try XCTUnwrap(image.fileOffset(ofAddress: header.address + 24).flatMap { image.bytes(atFileOffset: $0, count: 8) })
        XCTAssertEqual(Array(textStart), Array(repeating: 0, count: 8), "the header's text start is in the file after all")
    }

    /// Analysis checks every `.symtab` start against the table; in intact builds of every kind they agree.
    func testUnstrippedBuildsHaveNoRejectedFunctions() throws {
        var builds = [try fixtures.fixture(.executable).path, try fixtures.fixture(.positionIndependent).path]
        builds.append(try fixtures.fixture(.executable, toolchain: .go127).path)
        if FileManager.default.isExecutableFile(atPath: "/usr/bin/gcc") {
            builds.append(try ExtraGoBuilds.shared.build(.go127, flags: ["-ldflags=-linkmode=external"]))
            builds.append(try ExtraGoBuilds.shared.build(.debian, flags: ["-buildmode=pie", "-ldflags=-linkmode=external"]))
            builds.append(try ExtraGoBuilds.shared.build(.go125, flags: ["-buildmode=pie", "-ldflags=-linkmode=external"]))
        }
        for path in builds {
            let facts = try BinaryAnalyzer.analyze(path: path, functions: names.sorted(), dataSymbols: [])
            XCTAssertEqual(facts.rejectedFunctions, [:], path)
            XCTAssertEqual(Set(facts.functions.keys), names, path)
        }
    }

    func testUnknownNamesAreAbsent() throws {
        let found = try ELFImage(path: fixtures.fixture(.stripped).path).goFunctions(named: ["main.main", "main.noSuchFunction"])
        XCTAssertEqual(Set(found.keys), ["main.main"])
    }

    func testNonGoExecutableHasNoGoFunctions() throws {
        XCTAssertTrue(try ELFImage(path: "/bin/true").goFunctions(named: ["main", "main.main"]).isEmpty)
    }

    // MARK: Damaged tables

    /// Header words, by index after the 8 bytes of magic, pads, minLC and ptrSize.
    private enum HeaderWord: Int {
        case functionCount = 0, textStart = 2, functionNamesOffset = 3, compilationUnitsOffset = 4, functionTableOffset = 7
    }

    func testOlderOrUnknownMagicGivesNothing() throws {
        for magic: UInt32 in [0xffff_fffb /* Go 1.2 */, 0xffff_fffa /* Go 1.16 */, 0xffff_fff2, 0] {
            let found = try goFunctionsInDamagedCopy { table, _ in
                Self.store(magic, at: 0, in: &table)
            }
            XCTAssertTrue(found.isEmpty, String(magic, radix: 16))
        }
    }

    func testHeaderOffsetsOutsideTheTableGiveNothing() throws {
        for word in [HeaderWord.functionCount, .functionNamesOffset, .functionTableOffset] {
            for value: UInt64 in [.max, 1 << 40, 0xffff_ffff] {
                let found = try goFunctionsInDamagedCopy { table, _ in
                    Self.store(value, at: 8 + 8 * word.rawValue, in: &table)
                }
                XCTAssertTrue(found.isEmpty, "\(word) = \(value)")
            }
        }
    }

    func testTextStartThatOverflowsGivesNothing() throws {
        let found = try goFunctionsInDamagedCopy { table, _ in
            Self.store(UInt64.max - 16, at: 8 + 8 * HeaderWord.textStart.rawValue, in: &table)
        }
        XCTAssertTrue(found.isEmpty)
    }

    func testUnterminatedNamesGiveNothing() throws {
        let found = try goFunctionsInDamagedCopy { table, header in
            for index in Int(header(.functionNamesOffset))..<Int(header(.compilationUnitsOffset)) {
                table[index] = UInt8(ascii: "x")
            }
        }
        XCTAssertTrue(found.isEmpty)
    }

    /// Function records pointing anywhere, names anywhere: whatever comes back must not crash the reader.
    func testScrambledFunctionTableDoesNotCrash() throws {
        var generator = SplitMix64(seed: 0x5eed)
        for _ in 0..<8 {
            _ = try goFunctionsInDamagedCopy { table, header in
                let start = Int(header(.functionTableOffset))
                let end = min(table.count, start + 8 * (Int(header(.functionCount)) + 1))
                for index in start..<end where generator.next() % 3 == 0 { table[index] = UInt8(truncatingIfNeeded: generator.next()) }
            }
        }
    }

    /// libelf would clamp the section to the file; the image refuses the file instead, naming the section.
    func testSectionRunningPastTheEndOfTheFileIsRefused() throws {
        let path = try fixtures.fixture(.stripped, toolchain: .go127).path
        let sections = try ELFImage(path: path).sections
        let index = try XCTUnwrap(sections.firstIndex { $0.name == ".gopclntab" })
        var bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
        let sectionHeaders = bytes[0x28..<0x30].reversed().reduce(0) { $0 << 8 | Int($1) }
        // `sections` starts at section header 1; sh_size is at byte 32 of a 64-byte header.
        Self.store(UInt64(bytes.count), at: sectionHeaders + 64 * (index + 1) + 32, in: &bytes)
        XCTAssertNil(try ELFImage(path: path).bytes(atFileOffset: sections[index].fileOffset, count: UInt64(bytes.count)))
        XCTAssertThrowsError(try goFunctions(inFileWith: bytes)) { error in
            guard case .malformed(_, let reason)? = error as? BinaryAnalysisError else { return XCTFail("\(error)") }
            XCTAssertTrue(reason.hasPrefix("section \(index + 1) (.gopclntab) holds 0x"), reason)
        }
    }

    // MARK: Helpers

    /// Every name is found in `stripped`'s pclntab at the address `unstripped`'s symbol table gives it,
    /// with a size that adds at most the alignment padding before the next function.
    private func assertFunctions(in stripped: String, match unstripped: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let expected = try ELFImage(path: unstripped).definedSymbols(named: names)
        XCTAssertEqual(Set(expected.keys), names, "the fixture lacks some functions", file: file, line: line)
        let found = try ELFImage(path: stripped).goFunctions(named: names)
        XCTAssertEqual(Set(found.keys), names, file: file, line: line)
        for (name, symbol) in expected {
            guard let function = found[name] else { continue }
            XCTAssertEqual(function.name, name, file: file, line: line)
            XCTAssertTrue(function.isFunction, name, file: file, line: line)
            XCTAssertEqual(function.address, symbol.address, name, file: file, line: line)
            XCTAssertGreaterThanOrEqual(function.size, symbol.size, name, file: file, line: line)
            XCTAssertLessThan(function.size, symbol.size + 64, name, file: file, line: line)
        }
    }

    /// Builds the fixture as a PIE that gcc links (passing it `linkerFlags`), with and without -s -w, and
    /// checks the stripped build against the other, whose C start-up code precedes `runtime.text`.
    @discardableResult
    private func assertExternallyLinkedPositionIndependent(
        _ toolchain: GoToolchain, linkerFlags: String = "", file: StaticString = #filePath, line: UInt = #line
    ) throws -> (stripped: String, unstripped: String) {
        let stripped = try ExtraGoBuilds.shared.build(toolchain, flags: ["-buildmode=pie", "-ldflags=-linkmode=external -s -w" + linkerFlags])
        let unstripped = try ExtraGoBuilds.shared.build(toolchain, flags: ["-buildmode=pie", "-ldflags=-linkmode=external" + linkerFlags])
        let image = try ELFImage(path: stripped)
        XCTAssertTrue(image.isPositionIndependent, file: file, line: line)
        XCTAssertNil(image.section(named: ".gopclntab"), file: file, line: line)
        XCTAssertNil(image.section(named: ".data.rel.ro.gopclntab"), file: file, line: line)
        let textSection = try XCTUnwrap(ELFImage(path: unstripped).section(named: ".text"), file: file, line: line)
        let runtimeText = try XCTUnwrap(
            ELFImage(path: unstripped).definedSymbols(named: ["runtime.text"])["runtime.text"], file: file, line: line)
        XCTAssertGreaterThan(runtimeText.address, textSection.address, "no C code before runtime.text", file: file, line: line)
        try assertFunctions(in: stripped, match: unstripped, file: file, line: line)
        return (stripped, unstripped)
    }

    /// Runs `goFunctions` on a copy of the Go 1.27 stripped fixture whose `.gopclntab` bytes `damage` changed.
    /// `damage` also gets the original header's words.
    private func goFunctionsInDamagedCopy(
        _ damage: (inout [UInt8], (HeaderWord) -> UInt64) -> Void
    ) throws -> [String: ELFSymbol] {
        let path = try fixtures.fixture(.stripped, toolchain: .go127).path
        let section = try XCTUnwrap(ELFImage(path: path).section(named: ".gopclntab"))
        var bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
        let range = Int(section.fileOffset)..<Int(section.fileOffset + section.size)
        var table = Array(bytes[range])
        let original = table
        damage(&table) { word in
            (0..<8).reduce(0) { $0 | UInt64(original[8 + 8 * word.rawValue + $1]) << (8 * UInt64($1)) }
        }
        bytes.replaceSubrange(range, with: table)
        return try goFunctions(inFileWith: bytes)
    }

    private func goFunctions(inFileWith bytes: [UInt8]) throws -> [String: ELFSymbol] {
        let file = FileManager.default.temporaryDirectory
            .appendingPathComponent("sonde-damaged-pclntab-\(ProcessInfo.processInfo.processIdentifier)")
        try Data(bytes).write(to: file)
        defer { try? FileManager.default.removeItem(at: file) }
        return try ELFImage(path: file.path).goFunctions(named: names)
    }

    private static func store<Value: FixedWidthInteger>(_ value: Value, at offset: Int, in bytes: inout [UInt8]) {
        for index in 0..<Value.bitWidth / 8 {
            bytes[offset + index] = UInt8(truncatingIfNeeded: value >> (8 * index))
        }
    }
}

/// Reproducible pseudo-random numbers for the scrambling test.
private struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9e37_79b9_7f4a_7c15
        var value = state
        value = (value ^ (value >> 30)) &* 0xbf58_476d_1ce4_e5b9
        value = (value ^ (value >> 27)) &* 0x94d0_49bb_1331_11eb
        return value ^ (value >> 31)
    }
}

private extension GoToolchain {
    /// The last release whose externally linked PIEs merge the table into `.data.rel.ro`.
    static let go125 = GoToolchain.goBin(minor: "1.25")
}

/// Builds of the fixture server in the modes `GoFixtureCache` has no variant for (a stripped PIE,
/// external linking), once per test run, with the same toolchains and Go build cache.
private final class ExtraGoBuilds: @unchecked Sendable {
    static let shared = ExtraGoBuilds()

    private let lock = NSLock()
    private var built: [[String]: Result<String, Error>] = [:]
    private let directory = FileManager.default.temporaryDirectory
        .appendingPathComponent("sonde-go-function-table-\(ProcessInfo.processInfo.processIdentifier)")
    private let goCache = FileManager.default.temporaryDirectory.appendingPathComponent("sonde-binary-analysis-gocache")

    /// The path of the server built by `toolchain` with the extra `go build` flags.
    func build(_ toolchain: GoToolchain, flags: [String]) throws -> String {
        _ = try toolchain.installed()
        if flags.contains(where: { $0.contains("-linkmode=external") }) { _ = try TestEnvironment.tool("GCC") }
        lock.lock()
        defer { lock.unlock() }
        let key = [toolchain.goCommand] + flags
        if let result = built[key] { return try result.get() }
        let result = Result { try runBuild(toolchain, flags: flags, into: directory.appendingPathComponent("\(built.count)")) }
        built[key] = result
        return try result.get()
    }

    func remove() {
        lock.lock()
        defer { lock.unlock() }
        built = [:]
        try? FileManager.default.removeItem(at: directory)
    }

    private func runBuild(_ toolchain: GoToolchain, flags: [String], into source: URL) throws -> String {
        try FileManager.default.createDirectory(at: source, withIntermediateDirectories: true)
        try GoFixture.serverSource.write(to: source.appendingPathComponent("main.go"), atomically: true, encoding: .utf8)
        let output = source.appendingPathComponent("fixture")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: toolchain.goCommand)
        process.arguments = ["build", "-o", output.path] + flags + ["main.go"]
        process.currentDirectoryURL = source
        process.environment = ProcessInfo.processInfo.environment
            .merging(toolchain.environment) { $1 }
            .merging(["GOCACHE": goCache.path, "GOPATH": "/usr/share/gocode", "GO111MODULE": "off"]) { $1 }
        let errors = Pipe()
        process.standardError = errors
        try process.run()
        let message = errors.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            struct BuildFailed: Error, CustomStringConvertible { var description: String }
            throw BuildFailed(description: "go build \(flags.joined(separator: " ")) failed: \(String(decoding: message, as: UTF8.self))")
        }
        return output.path
    }
}
