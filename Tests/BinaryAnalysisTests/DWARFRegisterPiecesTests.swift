@testable import BinaryAnalysis
import XCTest

/// DWARF location expressions at a function's entry, as Go writes them, mapped to registers.
final class DWARFRegisterPiecesTests: XCTestCase {
    private let pieceAtom: UInt8 = 0x93
    private let regx: UInt8 = 0x90
    private let fbreg: UInt8 = 0x91

    private func reg(_ number: UInt8) -> DWARFOperation {
        DWARFOperation(atom: 0x50 + number, operand: 0)
    }

    private func piece(_ size: UInt64) -> DWARFOperation {
        DWARFOperation(atom: pieceAtom, operand: size)
    }

    func testSingleRegisterHoldsTheWholeValue() {
        XCTAssertEqual(DWARFReader.registerPieces([reg(5)], valueSize: 8), [RegisterPiece(register: .rdi, size: 8)])
        XCTAssertEqual(DWARFReader.registerPieces([reg(0)], valueSize: 4), [RegisterPiece(register: .rax, size: 4)])
    }

    func testPiecesInRegisters() {
        XCTAssertEqual(
            DWARFReader.registerPieces([reg(3), piece(8), reg(2), piece(8)], valueSize: 16),
            [RegisterPiece(register: .rbx, size: 8), RegisterPiece(register: .rcx, size: 8)])
    }

    func testDWARFNumberingIsNotEncodingOrder() {
        XCTAssertEqual(DWARFReader.registerPieces([reg(1)], valueSize: 8)?.first?.register, .rdx)
        XCTAssertEqual(DWARFReader.registerPieces([reg(4)], valueSize: 8)?.first?.register, .rsi)
        XCTAssertEqual(DWARFReader.registerPieces([reg(15)], valueSize: 8)?.first?.register, .r15)
        XCTAssertEqual(DWARFReader.registerPieces([DWARFOperation(atom: regx, operand: 9)], valueSize: 8)?.first?.register, .r9)
    }

    func testNonRegisterLocationsAreNil() {
        XCTAssertNil(DWARFReader.registerPieces([], valueSize: 8), "no location")
        XCTAssertNil(DWARFReader.registerPieces([DWARFOperation(atom: fbreg, operand: 8)], valueSize: 8), "stack slot")
        XCTAssertNil(DWARFReader.registerPieces([reg(1), piece(8), piece(8)], valueSize: 16), "second half optimised away")
        XCTAssertNil(DWARFReader.registerPieces([reg(17)], valueSize: 8), "vector register")
        XCTAssertNil(DWARFReader.registerPieces([DWARFOperation(atom: regx, operand: 16)], valueSize: 8), "return address column")
        XCTAssertNil(DWARFReader.registerPieces([reg(0), piece(8), reg(3)], valueSize: 16), "trailing register without piece")
    }

    /// Damaged DWARF: a register holds 8 bytes at most, and piece sizes that add up past `Int.max`
    /// are no reason to trap.
    func testPiecesLargerThanARegisterAreNil() {
        XCTAssertNil(DWARFReader.registerPieces([reg(0), piece(16)], valueSize: 16))
        XCTAssertNil(DWARFReader.registerPieces([reg(0), piece(.max), reg(3), piece(.max)], valueSize: 16))
        XCTAssertNil(DWARFReader.registerPieces([reg(0), piece(0)], valueSize: 8))
        let huge = [Register.rax, .rbx].map { RegisterPiece(register: $0, size: .max) }
        XCTAssertEqual(DWARFReader.repairingGo119Pieces(huge, valueSize: 16), [
            RegisterPiece(register: .rax, size: 8), RegisterPiece(register: .rbx, size: 8),
        ])
    }

    /// Rust and C++ pass larger values by reference: `DW_OP_bregN 0` alone is the memory the
    /// register points to. An offset, or more operations, are not a plain reference.
    func testValuePassedByReferenceIsTheRegistersPointee() {
        let breg1 = DWARFOperation(atom: 0x71, operand: 0)  // DW_OP_breg1: RDX in DWARF's numbering
        XCTAssertEqual(DWARFReader.indirectRegister([breg1]), .rdx)
        XCTAssertNil(DWARFReader.indirectRegister([DWARFOperation(atom: 0x71, operand: 8)]))
        XCTAssertNil(DWARFReader.indirectRegister([breg1, piece(8)]))
        XCTAssertNil(DWARFReader.indirectRegister([reg(1)]))
        XCTAssertNil(DWARFReader.indirectRegister(nil))
        XCTAssertEqual(DWARFReader.indirectTypeName("MessageHead<http::status::StatusCode>"), "*MessageHead<http::status::StatusCode>")
    }

    /// A Rust program's crate versions, from the folders its panic locations name.
    func testCrateVersionsFromPanicLocations() {
        let rodata = Array(("called `Option::unwrap()`\0/usr/share/cargo/registry/hyper-0.14.19/src/proto/h1/role.rs\0"
            + "/root/.cargo/registry/src/index.crates.io-6f17d22bba15001f/tokio-1.24.2/src/runtime/mod.rs"
            + "src/main.rs/rustc/abc/library/core/src/fmt/mod.rs/x/h2-snapshot/src/lib.rs/y/hyper-util-0.1.0/src/a.rs").utf8)
        let found = rodata.withUnsafeBytes { ELFImage.crateVersions(named: ["hyper", "tokio", "h2", "serde"], in: $0) }
        XCTAssertEqual(found, ["hyper": "0.14.19", "tokio": "1.24.2"], "h2-snapshot is no version; hyper-util is another crate")
    }
}

final class Go119PieceRepairTests: XCTestCase {
    func testRepeatedPiecesOfAnInterfaceCollapseToTwoWords() {
        let broken = [Register.rbx, .rbx, .rcx, .rcx].map { RegisterPiece(register: $0, size: 8) }
        XCTAssertEqual(DWARFReader.repairingGo119Pieces(broken, valueSize: 16), [
            RegisterPiece(register: .rbx, size: 8), RegisterPiece(register: .rcx, size: 8),
        ])
        let threePieces = [Register.rbx, .rcx, .rcx].map { RegisterPiece(register: $0, size: 8) }
        XCTAssertEqual(DWARFReader.repairingGo119Pieces(threePieces, valueSize: 16), [
            RegisterPiece(register: .rbx, size: 8), RegisterPiece(register: .rcx, size: 8),
        ])
    }

    func testCorrectPiecesAreKept() {
        let string = [RegisterPiece(register: .rax, size: 8), RegisterPiece(register: .rbx, size: 8)]
        XCTAssertEqual(DWARFReader.repairingGo119Pieces(string, valueSize: 16), string)
    }
}
