import Foundation
import XCTest

/// A copy of an ELF64 little-endian file's bytes, read and patched field by field, so tests can
/// damage a real binary exactly where they mean to (`<elf.h>` layouts: `Elf64_Ehdr`, `Elf64_Phdr`,
/// `Elf64_Shdr`, `Elf64_Sym`). Deliberately independent of libelf, which the code under test uses.
public struct ELFBytes {
    public var bytes: [UInt8]

    public init(path: String) throws {
        bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
    }

    public init(bytes: [UInt8]) {
        self.bytes = bytes
    }

    public func value(at offset: Int, size: Int) -> UInt64 {
        (0..<size).reduce(0) { $0 | UInt64(bytes[offset + $1]) << (8 * UInt64($1)) }
    }

    public mutating func store(_ value: UInt64, at offset: Int, size: Int) {
        for index in 0..<size {
            bytes[offset + index] = UInt8(truncatingIfNeeded: value >> (8 * UInt64(index)))
        }
    }

    // MARK: Program headers

    public var programHeaderTableOffset: Int { Int(value(at: 0x20, size: 8)) }
    public var programHeaderCount: Int { Int(value(at: 0x38, size: 2)) }
    public static let programHeaderSize = 56

    /// File offset of the `index`th program header.
    public func programHeader(_ index: Int) -> Int { programHeaderTableOffset + index * Self.programHeaderSize }

    /// Indexes of the PT_LOAD program headers, in order.
    public var loadSegmentIndexes: [Int] {
        (0..<programHeaderCount).filter { value(at: programHeader($0), size: 4) == 1 }
    }

    /// Fields of `Elf64_Phdr`, by byte offset.
    public enum ProgramHeaderField: Int {
        case flags = 4
        case fileOffset = 8
        case virtualAddress = 16
        case fileSize = 32
        case memorySize = 40
    }

    // MARK: Sections

    public var sectionHeaderTableOffset: Int { Int(value(at: 0x28, size: 8)) }
    public var sectionCount: Int { Int(value(at: 0x3c, size: 2)) }
    public static let sectionHeaderSize = 64

    /// File offset of the `index`th section header.
    public func sectionHeader(_ index: Int) -> Int { sectionHeaderTableOffset + index * Self.sectionHeaderSize }

    /// Fields of `Elf64_Shdr`, by byte offset.
    public enum SectionHeaderField: Int {
        case name = 0
        case type = 4
        case flags = 8
        case address = 16
        case fileOffset = 24
        case size = 32
        case link = 40
        case entrySize = 56
    }

    public func field(_ field: SectionHeaderField, ofSection index: Int) -> Int {
        Int(value(at: sectionHeader(index) + field.rawValue, size: [.name, .type, .link].contains(field) ? 4 : 8))
    }

    public func string(at offset: Int) -> String {
        String(decoding: bytes[offset...].prefix { $0 != 0 }, as: UTF8.self)
    }

    /// The index of the section called `name`.
    public func sectionIndex(named name: String) throws -> Int {
        let names = field(.fileOffset, ofSection: Int(value(at: 0x3e, size: 2)))
        return try XCTUnwrap(
            (0..<sectionCount).first { string(at: names + field(.name, ofSection: $0)) == name }, "no section \(name)")
    }

    /// The file bytes of the section called `name`.
    public func sectionRange(named name: String) throws -> Range<Int> {
        let index = try sectionIndex(named: name)
        let start = field(.fileOffset, ofSection: index)
        return start..<start + field(.size, ofSection: index)
    }

    // MARK: Symbols

    public static let symbolSize = 24

    /// File offset of the `.symtab` entry (`Elf64_Sym`) named `name`; its value is 8 bytes in, its size 16.
    public func symbolEntry(named name: String) throws -> Int {
        let table = try sectionIndex(named: ".symtab")
        let strings = field(.fileOffset, ofSection: field(.link, ofSection: table))
        let start = field(.fileOffset, ofSection: table)
        let count = field(.size, ofSection: table) / Self.symbolSize
        let entry = (0..<count).map { start + $0 * Self.symbolSize }.first { entry in
            string(at: strings + Int(value(at: entry, size: 4))) == name
        }
        return try XCTUnwrap(entry, "no symbol \(name)")
    }

    /// Writes the bytes to a fresh executable file in this test run's temporary directory and returns its path.
    public func write(named name: String) throws -> String {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("sonde-corrupt-\(getpid())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let path = directory.appendingPathComponent(name).path
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: path)
        return path
    }

    public static func removeWrittenFiles() {
        try? FileManager.default.removeItem(
            at: FileManager.default.temporaryDirectory.appendingPathComponent("sonde-corrupt-\(getpid())"))
    }
}
