import Foundation
import TestSupport
import XCTest

@testable import BinaryAnalysis

/// Copies of the Go 1.19 fixture server damaged on purpose: each must give a clear error or a
/// correct result, never a crash, a hang or an address inside an instruction. (The CLI runs the
/// same damage in a child process: Tests/EndToEndTests/CorruptBinaryCLITests.swift.)
final class CorruptBinaryTests: XCTestCase {
    private let fixtures = GoFixtureCache.shared
    private let serveHTTP = GoFixture.serveHTTP
    private let connServe = "net/http.(*conn).serve"

    override class func tearDown() {
        GoFixtureCache.shared.removeBuiltFixtures()
        ELFBytes.removeWrittenFiles()
        super.tearDown()
    }

    private func intact() throws -> (path: String, elf: ELFBytes) {
        let path = try fixtures.fixture(.executable).path
        return (path, try ELFBytes(path: path))
    }

    private func analyze(_ path: String) throws -> BinaryFacts {
        try BinaryAnalyzer.analyze(path: path, functions: [serveHTTP, connServe], dataSymbols: [])
    }

    // MARK: Function bounds

    func testIntactBinaryHasEveryFunctionAndNoneRejected() throws {
        let facts = try analyze(try intact().path)
        XCTAssertEqual(facts.rejectedFunctions, [:])
        XCTAssertEqual(Set(facts.functions.keys), [serveHTTP, connServe])
    }

    /// Go never reads `.symtab`, so a program whose symbol moved still runs; a probe at the moved
    /// address would split an instruction and crash it.
    func testSymbolTableStartThatDisagreesWithGoFunctionTableIsRejected() throws {
        var (_, elf) = try intact()
        let entry = try elf.symbolEntry(named: serveHTTP)
        let start = elf.value(at: entry + 8, size: 8)
        elf.store(start + 10, at: entry + 8, size: 8)
        let facts = try analyze(try elf.write(named: "symtab-start-moved"))
        XCTAssertNil(facts.functions[serveHTTP])
        XCTAssertNotNil(facts.functions[connServe], "other functions are unaffected")
        XCTAssertEqual(
            facts.rejectedFunctions,
            [
                serveHTTP: "\(serveHTTP): the binary disagrees with itself on where it starts "
                    + "(.symtab: 0x\(hex(start + 10)); .gopclntab, Go's function table: 0x\(hex(start)); DWARF: 0x\(hex(start))); "
                    + "a probe inside an instruction would crash the program, so none is placed on it (was the file altered after linking?)"
            ])
    }

    /// A size running into the next function would put return probes on that function's code.
    func testSymbolTableSizeRunningIntoTheNextFunctionIsRejected() throws {
        var (path, elf) = try intact()
        let functions = try ELFImage(path: path).goFunctions(named: [serveHTTP])
        let nextFunction = try XCTUnwrap(functions[serveHTTP]).address + XCTUnwrap(functions[serveHTTP]).size
        let entry = try elf.symbolEntry(named: serveHTTP)
        let start = elf.value(at: entry + 8, size: 8)
        let size = elf.value(at: entry + 16, size: 8)
        elf.store(size + 0x40, at: entry + 16, size: 8)
        let facts = try analyze(try elf.write(named: "symtab-size-grown"))
        XCTAssertNil(facts.functions[serveHTTP])
        XCTAssertEqual(
            facts.rejectedFunctions,
            [
                serveHTTP: "\(serveHTTP): the binary disagrees with itself on where it ends "
                    + "(.symtab: 0x\(hex(start + size + 0x40)); .gopclntab, Go's function table: the next function at 0x\(hex(nextFunction)); "
                    + "DWARF: 0x\(hex(start + size))); "
                    + "return probes past its end would land in other code, so none is placed on it (was the file altered after linking?)"
            ])
    }

    // MARK: ELF headers

    /// The overflow in `fileOffset(ofAddress:)` used to trap (SIGILL) here.
    func testLoadSegmentOffsetThatOverflowsIsReported() throws {
        var (_, elf) = try intact()
        let text = try XCTUnwrap(elf.loadSegmentIndexes.first)
        let header = elf.programHeader(text)
        let fileSize = elf.value(at: header + ELFBytes.ProgramHeaderField.fileSize.rawValue, size: 8)
        elf.store(0xffff_ffff_ffff_f000, at: header + ELFBytes.ProgramHeaderField.fileOffset.rawValue, size: 8)
        let path = try elf.write(named: "load-offset-overflows")
        XCTAssertThrowsError(try analyze(path)) { error in
            XCTAssertEqual(
                error as? BinaryAnalysisError,
                .malformed(
                    path: path,
                    reason:
                        "program header \(text) (PT_LOAD) takes 0x\(hex(fileSize)) bytes from file offset 0xfffffffffffff000, "
                        + "past the end of the \(elf.bytes.count)-byte file"))
        }
    }

    func testFileCutAfterTheELFHeaderNamesTheProgramHeaderTable() throws {
        let (_, elf) = try intact()
        let cut = ELFBytes(bytes: Array(elf.bytes.prefix(64)))
        let path = try cut.write(named: "cut-at-64")
        XCTAssertThrowsError(try analyze(path)) { error in
            XCTAssertEqual(
                "\(error)",
                "\(path): truncated or corrupt ELF file: the program header table "
                    + "(\(elf.programHeaderCount) entries of 56 bytes at file offset 0x40) runs past the end of the 64-byte file; "
                    + "the file may be damaged or still being written: copy or build the executable again")
        }
    }

    func testFileCutInsideTheELFHeaderSaysSo() throws {
        let (_, elf) = try intact()
        let path = try ELFBytes(bytes: Array(elf.bytes.prefix(40))).write(named: "cut-at-40")
        XCTAssertThrowsError(try analyze(path)) { error in
            XCTAssertEqual(
                error as? BinaryAnalysisError,
                .malformed(path: path, reason: "the file ends after 40 bytes, inside its 64-byte ELF header"))
        }
    }

    func testSectionRunningPastTheEndOfTheFileIsNamed() throws {
        var (_, elf) = try intact()
        let index = try elf.sectionIndex(named: ".gopclntab")
        let offset = elf.field(.fileOffset, ofSection: index)
        elf.store(
            UInt64(elf.bytes.count), at: elf.sectionHeader(index) + ELFBytes.SectionHeaderField.size.rawValue, size: 8)
        let path = try elf.write(named: "section-past-the-end")
        XCTAssertThrowsError(try analyze(path)) { error in
            XCTAssertEqual(
                error as? BinaryAnalysisError,
                .malformed(
                    path: path,
                    reason:
                        "section \(index) (.gopclntab) holds 0x\(hex(UInt64(elf.bytes.count))) bytes from file offset 0x\(hex(UInt64(offset))), "
                        + "past the end of the \(elf.bytes.count)-byte file"))
        }
    }

    // MARK: DWARF and build info

    /// libdw reads no unit from a `.debug_info` that fails to inflate; that must not read as
    /// "DWARF describes no parameters", but as DWARF that cannot be used at all.
    func testCorruptCompressedDWARFIsReportedAndNotUsed() throws {
        var (_, elf) = try intact()
        let range = try elf.sectionRange(named: ".debug_info")
        let flags = elf.field(.flags, ofSection: try elf.sectionIndex(named: ".debug_info"))
        XCTAssertNotEqual(flags & 0x800, 0, "the fixture's .debug_info is not SHF_COMPRESSED")
        elf.bytes[range.lowerBound + range.count / 2] ^= 0xff
        let facts = try analyze(try elf.write(named: "debug-info-flipped"))
        XCTAssertFalse(facts.hasDWARF)
        XCTAssertEqual(facts.unreadableDWARF, "decompressing .debug_info failed (libelf: cannot decompress data)")
        XCTAssertEqual(facts.types, [:])
        XCTAssertNil(try XCTUnwrap(facts.functions[serveHTTP]).parameters)
        XCTAssertEqual(facts.rejectedFunctions, [:], "the function table alone vouches for the functions")
    }

    /// Location lists are read from a stream inflated to its end, where zlib checks its Adler-32:
    /// damage after the lists read is found all the same.
    func testCorruptCompressedLocationListsAreReportedAndNotUsed() throws {
        var (_, elf) = try intact()
        let range = try elf.sectionRange(named: ".debug_loc")
        elf.bytes[range.upperBound - 1] ^= 0xff
        let facts = try analyze(try elf.write(named: "debug-loc-checksum-flipped"))
        XCTAssertFalse(facts.hasDWARF)
        XCTAssertEqual(facts.unreadableDWARF, "inflating .debug_loc failed (zlib: incorrect data check)")
        XCTAssertNil(try XCTUnwrap(facts.functions[serveHTTP]).parameters)
    }

    func testDamagedGoBuildInfoHeaderIsReported() throws {
        var (_, elf) = try intact()
        let range = try elf.sectionRange(named: ".go.buildinfo")
        elf.bytes[range.lowerBound + 3] ^= 0xff
        let path = try elf.write(named: "buildinfo-flipped")
        XCTAssertThrowsError(try analyze(path)) { error in
            XCTAssertEqual(
                error as? BinaryAnalysisError,
                .corruptGoBuildInfo(path: path, reason: #"no "\xff Go buildinf:" header at its start"#))
        }
    }

    // MARK: Files that are no executables

    func testDirectoryIsRefusedBeforeOpening() {
        XCTAssertThrowsError(try analyze("/tmp")) { error in
            XCTAssertEqual(error as? BinaryAnalysisError, .notRegularFile(path: "/tmp", kind: "a directory"))
            XCTAssertEqual(
                "\(error)", "/tmp is a directory, not an executable file; give the path of the program's executable")
        }
    }

    func testCharacterDeviceIsRefused() {
        XCTAssertThrowsError(try analyze("/dev/zero")) { error in
            XCTAssertEqual(
                error as? BinaryAnalysisError, .notRegularFile(path: "/dev/zero", kind: "a character device"))
        }
    }

    private func hex(_ value: UInt64) -> String { String(value, radix: 16) }
}
