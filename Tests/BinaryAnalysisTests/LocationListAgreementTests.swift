import CLibDW
import CLibELF
import Foundation
import TestSupport
import XCTest

@testable import BinaryAnalysis

/// Sonde reads location lists itself, never inflating their sections whole. These compare what it
/// reads with what libdw reads from the inflated sections, for every parameter with a location list
/// in real binaries: DWARF 4 `.debug_loc` (Go 1.19 to 1.24), DWARF 5 `.debug_loclists` by section
/// offset (Go 1.25 on; GCC) and by index (Clang's `DW_FORM_loclistx`).
final class LocationListAgreementTests: XCTestCase {
    private let fixtures = GoFixtureCache.shared

    /// Where the C programs are built, removed when the tests end.
    private static let workDirectory = FileManager.default.temporaryDirectory.appendingPathComponent(
        "sonde-location-lists-\(ProcessInfo.processInfo.processIdentifier)")

    override class func tearDown() {
        GoFixtureCache.shared.removeBuiltFixtures()
        try? FileManager.default.removeItem(at: workDirectory)
        super.tearDown()
    }

    func testGo119DebugLocListsAgreeWithLibdw() throws {
        let lists = try compareWithLibdw(fixtures.fixture(.executable).path)
        XCTAssertEqual(lists.versions, [4])
        XCTAssertGreaterThan(lists.count, 5_000)
        XCTAssertGreaterThan(lists.located, lists.count / 2)
    }

    func testGo127DebugLoclistsAgreeWithLibdw() throws {
        let lists = try compareWithLibdw(fixtures.fixture(.executable, toolchain: .go127).path)
        XCTAssertEqual(lists.versions, [5])
        XCTAssertGreaterThan(lists.count, 5_000)
        XCTAssertGreaterThan(lists.located, lists.count / 2)
    }

    func testGCCDebugLoclistsAgreeWithLibdw() throws {
        let lists = try compareWithLibdw(try compressedCProgram(compiler: "GCC"))
        XCTAssertEqual(lists.versions, [5])
        XCTAssertEqual(
            lists.entryOperations["mix"], [[reg(5)], [reg(4)], [reg(1)]], "a in RDI, b in RSI, label in RDX")
    }

    /// GNU's older compression: `.zdebug_loclists`, its size big-endian after "ZLIB".
    func testGNUCompressedDebugLoclistsAgreeWithLibdw() throws {
        let path = try compressedCProgram(compiler: "GCC", compression: "zlib-gnu")
        let reader = try XCTUnwrap(DWARFReader(image: ELFImage(path: path)))
        XCTAssertEqual(reader.locationListSections[".debug_loclists"]?.name, ".zdebug_loclists")
        let lists = try compareWithLibdw(path)
        XCTAssertEqual(
            lists.entryOperations["mix"], [[reg(5)], [reg(4)], [reg(1)]], "a in RDI, b in RSI, label in RDX")
    }

    func testClangIndexedLocationListsAgreeWithLibdw() throws {
        let lists = try compareWithLibdw(try compressedCProgram(compiler: "CLANG"))
        XCTAssertEqual(lists.versions, [5])
        XCTAssertEqual(lists.indexed, lists.count, "Clang names every list by index")
        XCTAssertEqual(
            lists.entryOperations["mix"], [[reg(5)], [reg(4)], [reg(1)]], "a in RDI, b in RSI, label in RDX")
    }

    /// A unit without `DW_AT_loclists_base` has no table to look an index up in.
    func testListNamedByIndexWithoutLoclistsBaseIsReported() throws {
        let reader = try XCTUnwrap(DWARFReader(image: ELFImage(path: try compressedCProgram(compiler: "CLANG"))))
        let unit = LocationListUnit(
            version: 5, addressSize: 8, offsetSize: 4, baseAddress: 0,
            addresses: DWARFAddressTable(
                section: reader.addressSection, base: 8, addressSize: 8), loclistsBase: nil)
        let listed = DWARFReader.FoundParameter(
            name: "a", typeName: "long", valueSize: 8,
            location: .list(DWARFReader.LocationListRequest(start: .index(0), address: 0, unit: unit)))
        XCTAssertThrowsError(try reader.locationOperations(of: [listed])) { error in
            XCTAssertEqual(
                (error as? DWARFReader.Unreadable)?.reason,
                "a location list is named by index in a unit without DW_AT_loclists_base")
        }
    }

    // MARK: Helpers

    private func reg(_ number: UInt8) -> DWARFOperation { DWARFOperation(atom: 0x50 + number, operand: 0) }

    private struct Compared {
        var count = 0
        /// Those with a location at their function's entry.
        var located = 0
        var indexed = 0
        var versions = Set<Int>()
        /// The operations at entry of each function's parameters with location lists, by function name.
        var entryOperations: [String: [[DWARFOperation]?]] = [:]
    }

    /// Asks Sonde's reader and libdw (given every section inflated) where each parameter with a
    /// location list is at its function's entry, and checks that they agree.
    private func compareWithLibdw(_ path: String, file: StaticString = #filePath, line: UInt = #line) throws -> Compared
    {
        let reader = try XCTUnwrap(DWARFReader(image: ELFImage(path: path)), file: file, line: line)
        let reference = try ELFImage(path: path)
        for section in reference.sections where section.name.hasPrefix(".zdebug_") {
            XCTAssertGreaterThanOrEqual(elf_compress_gnu(section.handle, 0, 0), 0, section.name, file: file, line: line)
        }
        for section in reference.sections where section.flags & UInt64(SHF_COMPRESSED) != 0 {
            XCTAssertGreaterThanOrEqual(elf_compress(section.handle, 0, 0), 0, section.name, file: file, line: line)
        }
        let dwarf = try XCTUnwrap(dwarf_begin_elf(reference.elf, DWARF_C_READ, nil), file: file, line: line)
        defer { dwarf_end(dwarf) }

        var compared = Compared()
        var found: [DWARFReader.FoundParameter] = []
        var functions: [String] = []
        var expected: [[DWARFOperation]?] = []
        var unit: OpaquePointer?
        var nextUnit: OpaquePointer?
        var unitEntry = Dwarf_Die()
        while dwarf_get_units(dwarf, unit, &nextUnit, nil, nil, &unitEntry, nil) == 0 {
            unit = nextUnit
            let listUnit = reader.locationListUnit(nextUnit!, entry: &unitEntry)
            forEachChild(of: &unitEntry) { subprogram in
                var entryAddress: Dwarf_Addr = 0
                guard dwarf_tag(&subprogram) == DW_TAG_subprogram, dwarf_lowpc(&subprogram, &entryAddress) == 0 else {
                    return
                }
                let function = dwarf_diename(&subprogram).map { String(cString: $0) } ?? ""
                forEachChild(of: &subprogram) { parameter in
                    guard dwarf_tag(&parameter) == DW_TAG_formal_parameter,
                        case .list(let request) = reader.location(of: &parameter, at: entryAddress, unit: listUnit)
                    else { return }
                    found.append(
                        DWARFReader.FoundParameter(name: "", typeName: "", valueSize: nil, location: .list(request)))
                    functions.append(function)
                    expected.append(libdwOperations(of: &parameter, at: entryAddress))
                    compared.versions.insert(listUnit.version)
                    if case .index = request.start { compared.indexed += 1 }
                }
            }
        }
        let read = try reader.locationOperations(of: found)
        XCTAssertEqual(read.count, expected.count, file: file, line: line)
        let disagreements = zip(expected.indices, zip(read, expected)).filter { $1.0 != $1.1 }
        XCTAssertEqual(
            disagreements.count, 0, "first: \(disagreements.first.map { "\(functions[$0.0]): \($0.1)" } ?? "")",
            file: file, line: line)
        compared.count = found.count
        compared.located = read.filter { $0 != nil }.count
        for (function, operations) in zip(functions, read) {
            compared.entryOperations[function, default: []].append(operations)
        }
        return compared
    }

    /// What the parameter's location is at `address` by libdw, as DWARFReader asked it before it
    /// read location lists itself.
    private func libdwOperations(of parameter: inout Dwarf_Die, at address: Dwarf_Addr) -> [DWARFOperation]? {
        var attribute = Dwarf_Attribute()
        var expression: UnsafeMutablePointer<Dwarf_Op>?
        var length = 0
        guard dwarf_attr(&parameter, UInt32(DW_AT_location), &attribute) != nil,
            dwarf_getlocation_addr(&attribute, address, &expression, &length, 1) > 0, let expression
        else { return nil }
        return UnsafeBufferPointer(start: expression, count: length).map {
            DWARFOperation(atom: $0.atom, operand: $0.number)
        }
    }

    private func forEachChild(of parent: inout Dwarf_Die, _ body: (inout Dwarf_Die) -> Void) {
        var child = Dwarf_Die()
        var sibling = Dwarf_Die()
        guard dwarf_child(&parent, &child) == 0 else { return }
        repeat {
            body(&child)
            guard dwarf_siblingof(&child, &sibling) == 0 else { return }
            child = sibling
        } while true
    }

    /// A C program built with `-O2 -g -gz=zlib`: DWARF 5 with location lists, in sections compressed
    /// as Go's are (or, with `zlib-gnu`, as GNU's `.zdebug_*`).
    private func compressedCProgram(compiler: String, compression: String = "zlib") throws -> String {
        let directory = Self.workDirectory.appendingPathComponent("\(compiler)-\(compression)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        try """
        #include <stdio.h>
        #include <stdlib.h>

        __attribute__((noinline)) long mix(long a, long b, const char *label) {
            long total = 0;
            for (long i = 0; i < a; i++) total += i * b;
            printf("%s %ld\\n", label, total);
            return total + a;
        }

        int main(int argc, char **argv) {
            return (int)mix(argc, strtol(argc > 1 ? argv[1] : "3", NULL, 10), "total");
        }

        """.write(to: directory.appendingPathComponent("lists.c"), atomically: true, encoding: .utf8)
        _ = try GoFixtureCache.run(
            try TestEnvironment.tool(compiler),
            arguments: ["-O2", "-g", "-gz=\(compression)", "-o", "lists", "lists.c"],
            in: directory,
            environment: [:])
        return directory.appendingPathComponent("lists").path
    }
}
