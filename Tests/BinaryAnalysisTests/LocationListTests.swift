import CZlib
import XCTest

@testable import BinaryAnalysis

/// Location lists and their sections from hand-made bytes: each encoding, each operand, and each way
/// a list or its section can be damaged, which must give a clear error and never a crash.
final class LocationListTests: XCTestCase {
    private let noAddresses = DWARFAddressTable(
        section: UnsafeRawBufferPointer(start: nil, count: 0), base: 0, addressSize: 8)

    private func unit(version: Int, base: UInt64 = 0, addresses: DWARFAddressTable? = nil) -> LocationListUnit {
        LocationListUnit(
            version: version, addressSize: 8, offsetSize: 4, baseAddress: base, addresses: addresses ?? noAddresses,
            loclistsBase: nil)
    }

    private func operations(at address: UInt64, in list: [UInt8], unit: LocationListUnit) throws -> [DWARFOperation]? {
        try list.withUnsafeBytes { bytes in
            var cursor = ByteCursor(bytes)
            return try LocationList.operations(at: address, in: &cursor, unit: unit)
        }
    }

    /// The reason of the ``DWARFReader/Unreadable`` that `expression` throws.
    private func error<Value>(_ expression: @autoclosure () throws -> Value) -> String? {
        do {
            _ = try expression()
            return nil
        } catch let unreadable as DWARFReader.Unreadable {
            return unreadable.reason
        } catch {
            return "\(error)"
        }
    }

    // MARK: DWARF 4: .debug_loc

    /// A base address selection entry, then address pairs relative to it, then two zeroes; each
    /// expression with a 2-byte length, as Go 1.19 to 1.24 write them.
    private let goStyleList: [UInt8] =
        Bytes.word(.max) + Bytes.word(0x40_0000)
        + Bytes.word(0x10) + Bytes.word(0x20) + Bytes.unsigned(2, size: 2) + [0x50, 0x9c]  // reg0, call_frame_cfa
        + Bytes.word(0x20) + Bytes.word(0x30) + Bytes.unsigned(1, size: 2) + [0x53]  // reg3
        + Bytes.word(0) + Bytes.word(0)

    func testDWARF4ListGivesTheEntryHoldingTheAddressAfterItsBaseAddress() throws {
        XCTAssertEqual(
            try operations(at: 0x40_0010, in: goStyleList, unit: unit(version: 4)),
            [
                DWARFOperation(atom: 0x50, operand: 0), DWARFOperation(atom: 0x9c, operand: 0),
            ])
        XCTAssertEqual(
            try operations(at: 0x40_002f, in: goStyleList, unit: unit(version: 4)),
            [DWARFOperation(atom: 0x53, operand: 0)])
    }

    func testDWARF4AddressOutsideEveryEntryHasNoLocation() throws {
        XCTAssertNil(try operations(at: 0x40_0030, in: goStyleList, unit: unit(version: 4)))
        XCTAssertNil(try operations(at: 0x10, in: goStyleList, unit: unit(version: 4)), "the unit's base is replaced")
    }

    func testDWARF4EntriesWithoutABaseAddressEntryAreRelativeToTheUnit() throws {
        let list =
            Bytes.word(0x10) + Bytes.word(0x20) + Bytes.unsigned(1, size: 2) + [0x55] + Bytes.word(0) + Bytes.word(0)
        XCTAssertEqual(
            try operations(at: 0x1015, in: list, unit: unit(version: 4, base: 0x1000)),
            [DWARFOperation(atom: 0x55, operand: 0)])
        XCTAssertNil(try operations(at: 0x15, in: list, unit: unit(version: 4, base: 0x1000)))
    }

    // MARK: DWARF 5: .debug_loclists

    func testDWARF5EveryEntryKind() throws {
        let debugAddr = Bytes.unsigned(0, size: 8) + Bytes.word(0x7000) + Bytes.word(0x8000) + Bytes.word(0x8010)
        let list: [UInt8] =
            [0x01] + Bytes.uleb(0)  // base_addressx: 0x7000
            + [0x04] + Bytes.uleb(0x10) + Bytes.uleb(0x20) + Bytes.uleb(1) + [0x50]  // offset_pair
            + [0x06] + Bytes.word(0x6000)  // base_address
            + [0x04] + Bytes.uleb(0x10) + Bytes.uleb(0x20) + Bytes.uleb(1) + [0x51]  // offset_pair
            + [0x02] + Bytes.uleb(1) + Bytes.uleb(2) + Bytes.uleb(1) + [0x52]  // startx_endx: 0x8000..<0x8010
            + [0x03] + Bytes.uleb(2) + Bytes.uleb(0x10) + Bytes.uleb(1) + [0x53]  // startx_length: 0x8010..<0x8020
            + [0x07] + Bytes.word(0x9000) + Bytes.word(0x9010) + Bytes.uleb(1) + [0x54]  // start_end
            + [0x08] + Bytes.word(0x9010) + Bytes.uleb(0x10) + Bytes.uleb(1) + [0x55]  // start_length
            + [0x05] + Bytes.uleb(2) + [0x93, 0x08]  // default_location: piece 8
            + [0x00]
        try debugAddr.withUnsafeBytes { debugAddr in
            let unit = unit(version: 5, addresses: DWARFAddressTable(section: debugAddr, base: 8, addressSize: 8))
            let found = try [0x7010, 0x6010, 0x8000, 0x8010, 0x9000, 0x9010, 0x1234].map {
                try operations(at: $0, in: list, unit: unit)
            }
            XCTAssertEqual(
                found,
                [
                    [DWARFOperation(atom: 0x50, operand: 0)], [DWARFOperation(atom: 0x51, operand: 0)],
                    [DWARFOperation(atom: 0x52, operand: 0)], [DWARFOperation(atom: 0x53, operand: 0)],
                    [DWARFOperation(atom: 0x54, operand: 0)], [DWARFOperation(atom: 0x55, operand: 0)],
                    [DWARFOperation(atom: 0x93, operand: 8)],
                ])
        }
    }

    func testDWARF5EmptyExpressionIsNoOperations() throws {
        let list: [UInt8] = [0x07] + Bytes.word(0x10) + Bytes.word(0x20) + Bytes.uleb(0) + [0x00]
        XCTAssertEqual(try operations(at: 0x10, in: list, unit: unit(version: 5)), [])
    }

    // MARK: Expressions

    func testOperandsAreDecodedAsLibdwDecodesThem() throws {
        let expression: [UInt8] =
            [0x50, 0x6f]  // reg0, reg31
            + [0x90] + Bytes.uleb(17) + [0x93] + Bytes.uleb(8)  // regx 17, piece 8
            + [0x77] + Bytes.sleb(-8) + [0x91] + Bytes.sleb(24)  // breg7 -8, fbreg 24
            + [0x9c, 0x11] + Bytes.sleb(-24) + [0x22]  // call_frame_cfa, consts -24, plus
            + [0x09, 0xff, 0x0b] + Bytes.unsigned(0xfffe, size: 2)  // const1s -1, const2s -2
            + [0x03] + Bytes.word(0x40_1000) + [0x94, 0x04]  // addr, deref_size 4
            + [0x92] + Bytes.uleb(3) + Bytes.sleb(-1)  // bregx 3 -1
            + [0x9e] + Bytes.uleb(2) + [0xaa, 0xbb]  // implicit_value, 2 bytes
            + [0xa3] + Bytes.uleb(1) + [0x55, 0x9f]  // entry_value(reg5), stack_value
        let decoded = expression.withUnsafeBytes { DWARFOperation.operations(of: $0, unit: unit(version: 5)) }
        XCTAssertEqual(
            decoded?.map(\.atom),
            [0x50, 0x6f, 0x90, 0x93, 0x77, 0x91, 0x9c, 0x11, 0x22, 0x09, 0x0b, 0x03, 0x94, 0x92, 0x9e, 0xa3, 0x9f])
        XCTAssertEqual(
            decoded?.map(\.operand),
            [
                0, 0, 17, 8, UInt64(bitPattern: -8), 24, 0, UInt64(bitPattern: -24), 0, .max, UInt64(bitPattern: -2),
                0x40_1000, 4, 3, 2, 1, 0,
            ])
    }

    /// libdw fails on both, and the parameter then has no known location: the same here.
    func testUnknownOperationOrOperandCutShortIsNoLocation() {
        for expression: [UInt8] in [[0x50, 0xff], [0x93], [0x0c, 0x01, 0x02], [0x92, 0x03], [0x9e, 0x05, 0x01]] {
            XCTAssertNil(
                expression.withUnsafeBytes { DWARFOperation.operations(of: $0, unit: unit(version: 4)) },
                "\(expression)")
        }
    }

    // MARK: Damaged lists

    func testListRunningPastTheEndOfItsSectionIsReported() throws {
        let cutShort = Bytes.word(0x10) + Bytes.word(0x20) + Bytes.unsigned(5, size: 2) + [0x50]
        let storedOrCompressed: [(UnsafeRawBufferPointer) -> LocationListSection.Contents] = [
            LocationListSection.Contents.stored, { .compressed(self.compressed($0)) },
        ]
        for contents in storedOrCompressed {
            XCTAssertEqual(
                error(try readGoStyle(cutShort, contents: contents, at: [0])),
                "the location list at .debug_loc offset 0x0 runs past the end of the section")
        }
    }

    func testListStartingPastTheEndOfItsSectionIsReported() throws {
        XCTAssertEqual(
            error(try readGoStyle(goStyleList, contents: LocationListSection.Contents.stored, at: [0, 0x80])),
            "a location list is said to start at .debug_loc offset 0x80, past the section's end (71 bytes)")
        XCTAssertEqual(
            error(try readGoStyle(goStyleList, contents: { .compressed(self.compressed($0)) }, at: [0x47])),
            "a location list is said to start at .debug_loc offset 0x47, past the section's end (71 bytes)")
    }

    func testBaseAddressSelectionOfTheMarkerItselfIsReported() throws {
        let list = Bytes.word(.max) + Bytes.word(.max)
        XCTAssertEqual(
            error(try readGoStyle(list, contents: LocationListSection.Contents.stored, at: [0])),
            "the location list at .debug_loc offset 0x0: a base address selection entry selects the marker itself as base"
        )
    }

    func testUnknownEntryKindIsReported() throws {
        XCTAssertEqual(
            error(try operations(at: 0, in: [0x09, 0x01, 0x02], unit: unit(version: 5))), "an entry of unknown kind 0x9"
        )
    }

    func testAddressIndexOutsideDebugAddrIsReported() throws {
        let debugAddr = Bytes.unsigned(0, size: 8) + Bytes.word(0x7000)
        try debugAddr.withUnsafeBytes { debugAddr in
            let unit = unit(version: 5, addresses: DWARFAddressTable(section: debugAddr, base: 8, addressSize: 8))
            XCTAssertEqual(
                error(try operations(at: 0, in: [0x01, 0x01, 0x00], unit: unit)),
                "address index 1 lies outside .debug_addr (16 bytes, the unit's entries from offset 0x8)")
            XCTAssertEqual(
                try operations(at: 0x7000, in: [0x01, 0x00, 0x04, 0x00, 0x01, 0x01, 0x50, 0x00], unit: unit),
                [
                    DWARFOperation(atom: 0x50, operand: 0)
                ])
        }
    }

    // MARK: Compressed sections

    /// Lists well past one piece of inflated bytes, one of them across a piece's end: read from the
    /// compressed section as from the stored one, in any order.
    func testListsAcrossAnInflatedSectionAreReadAsFromTheStoredSection() throws {
        let lists = (0..<5000).map { index in
            Bytes.word(.max) + Bytes.word(0x40_0000) + Bytes.word(UInt64(index) * 16)
                + Bytes.word(UInt64(index) * 16 + 8)
                + Bytes.unsigned(1, size: 2) + [0x50 + UInt8(index % 16)] + Bytes.word(0) + Bytes.word(0)
        }
        let section = Array(lists.joined())
        let listSize = lists[0].count
        let acrossAPiece = SectionInflater.pieceSize / listSize
        XCTAssertLessThan(acrossAPiece * listSize, SectionInflater.pieceSize)
        XCTAssertGreaterThan((acrossAPiece + 1) * listSize, SectionInflater.pieceSize)
        let indexes = [4999, 3, acrossAPiece, 3, 2500, 0]
        let read = { (contents: (UnsafeRawBufferPointer) -> LocationListSection.Contents) in
            try self.read(section, contents: contents, at: indexes.map { UInt64($0 * listSize) }) { index, list in
                try LocationList.operations(
                    at: 0x40_0000 + UInt64(indexes[index]) * 16 + 4, in: &list, unit: self.unit(version: 4))
            }
        }
        let expected = indexes.map { [DWARFOperation(atom: 0x50 + UInt8($0 % 16), operand: 0)] }
        XCTAssertEqual(try read(LocationListSection.Contents.stored), expected)
        XCTAssertEqual(try read { .compressed(self.compressed($0)) }, expected)
    }

    /// Only a stream inflated to its end is checked; the lists read lie long before the damage.
    func testCorruptChecksumIsReportedAfterTheListsRead() throws {
        var stream = zlib(goStyleList)
        stream[stream.count - 1] ^= 0xff
        XCTAssertEqual(
            error(
                try readGoStyle(
                    goStyleList, contents: { _ in .compressed(self.compressed(stream, inflatedSize: 71)) }, at: [0])),
            "inflating .debug_loc failed (zlib: incorrect data check)")
    }

    func testZlibStreamCutShortIsReported() throws {
        let section = [UInt8](repeating: 0, count: 1000)
        // Stored (level 0): a 2-byte header, then one block of a 5-byte header and the bytes as they are.
        let stream = zlib(section, level: 0).prefix(2 + 5 + 500)
        XCTAssertEqual(
            error(
                try readGoStyle(
                    section, contents: { _ in .compressed(self.compressed(Array(stream), inflatedSize: 1000)) },
                    at: [600])),
            "the zlib stream of .debug_loc ends after 500 of its 1000 bytes")
    }

    func testSectionInflatingToAnotherSizeThanItsHeaderClaimsIsReported() throws {
        let stream = zlib(goStyleList)
        XCTAssertEqual(
            error(
                try readGoStyle(
                    goStyleList, contents: { _ in .compressed(self.compressed(stream, inflatedSize: 90)) }, at: [0])),
            ".debug_loc inflates to 71 bytes, not the 90 its header claims")
        XCTAssertEqual(
            error(
                try readGoStyle(
                    goStyleList, contents: { _ in .compressed(self.compressed(stream, inflatedSize: 50)) }, at: [0])),
            ".debug_loc inflates to more than the 50 bytes its header claims")
    }

    // MARK: Helpers

    /// `read` at each offset of a `.debug_loc` holding `section`, as `contents` makes of its bytes.
    private func read<Result>(
        _ section: [UInt8], contents: (UnsafeRawBufferPointer) -> LocationListSection.Contents, at offsets: [UInt64],
        _ read: (Int, inout ByteCursor) throws -> Result
    ) throws -> [Result] {
        try section.withUnsafeBytes { bytes in
            try LocationListSection(name: ".debug_loc", contents: contents(bytes)).read(
                "location list", at: offsets, read)
        }
    }

    /// The DWARF 4 lists at `offsets` at address 0x40_0010.
    private func readGoStyle(
        _ section: [UInt8], contents: (UnsafeRawBufferPointer) -> LocationListSection.Contents, at offsets: [UInt64]
    ) throws -> [[DWARFOperation]?] {
        try read(section, contents: contents, at: offsets) { _, list in
            try LocationList.operations(at: 0x40_0010, in: &list, unit: unit(version: 4))
        }
    }

    /// The compressed section zlib makes of `bytes`.
    private func compressed(_ bytes: UnsafeRawBufferPointer) -> CompressedSection {
        compressed(zlib(Array(bytes)), inflatedSize: UInt64(bytes.count))
    }

    /// A section holding `stream`, in memory that lives until the test ends, as a file's mapping would.
    private func compressed(_ stream: [UInt8], inflatedSize: UInt64) -> CompressedSection {
        let copy = UnsafeMutableRawBufferPointer.allocate(byteCount: stream.count, alignment: 1)
        copy.copyBytes(from: stream)
        allocations.append(copy)
        return CompressedSection(
            name: ".debug_loc", isGNUStyle: false, inflatedSize: inflatedSize, zlibStream: UnsafeRawBufferPointer(copy))
    }

    private var allocations: [UnsafeMutableRawBufferPointer] = []

    override func tearDown() {
        allocations.forEach { $0.deallocate() }
        allocations = []
        super.tearDown()
    }

    private func zlib(_ bytes: [UInt8], level: Int32 = 9) -> [UInt8] {
        var length = compressBound(uLong(bytes.count))
        var output = [UInt8](repeating: 0, count: Int(length))
        XCTAssertEqual(compress2(&output, &length, bytes, uLong(bytes.count), level), Z_OK)
        return Array(output.prefix(Int(length)))
    }
}

/// Little-endian DWARF values as bytes.
enum Bytes {
    static func unsigned(_ value: UInt64, size: Int) -> [UInt8] {
        (0..<size).map { UInt8(truncatingIfNeeded: value >> (8 * UInt64($0))) }
    }

    static func word(_ value: UInt64) -> [UInt8] { unsigned(value, size: 8) }

    static func uleb(_ value: UInt64) -> [UInt8] {
        var value = value
        var bytes: [UInt8] = []
        repeat {
            bytes.append(UInt8(value & 0x7f) | (value >> 7 == 0 ? 0 : 0x80))
            value >>= 7
        } while value != 0
        return bytes
    }

    static func sleb(_ value: Int64) -> [UInt8] {
        var value = value
        var bytes: [UInt8] = []
        while true {
            let byte = UInt8(value & 0x7f)
            value >>= 7
            let isLast = (value == 0 && byte & 0x40 == 0) || (value == -1 && byte & 0x40 != 0)
            bytes.append(isLast ? byte : byte | 0x80)
            if isLast { return bytes }
        }
    }
}
