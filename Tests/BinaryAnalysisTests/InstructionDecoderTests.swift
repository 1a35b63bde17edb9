@testable import BinaryAnalysis
import XCTest

/// Hand-assembled x86-64 through the decoder: lengths, offsets, returns and written registers.
final class InstructionDecoderTests: XCTestCase {
    private func decode(_ bytes: [UInt8], address: UInt64 = 0x40_1000, fileOffset: UInt64 = 0x1000) throws -> [Instruction] {
        let decoder = try InstructionDecoder()
        return bytes.withUnsafeBytes { decoder.decode($0, address: address, fileOffset: fileOffset) }
    }

    func testAddressesOffsetsAndLengths() throws {
        let instructions = try decode([
            0x55, // push rbp
            0x48, 0x89, 0xe5, // mov rbp, rsp
            0xc3, // ret
        ])
        XCTAssertEqual(instructions.map(\.text), ["push rbp", "mov rbp, rsp", "ret"])
        XCTAssertEqual(instructions.map(\.address), [0x40_1000, 0x40_1001, 0x40_1004])
        XCTAssertEqual(instructions.map(\.fileOffset), [0x1000, 0x1001, 0x1004])
        XCTAssertEqual(instructions.map(\.length), [1, 3, 1])
        XCTAssertEqual(instructions.map(\.isReturn), [false, false, true])
        XCTAssertEqual(instructions.map(\.kernelEmulates), [true, false, false])
    }

    func testSubRegisterWritesFoldIntoTheirFullRegister() throws {
        let instructions = try decode([
            0xb8, 0x01, 0x00, 0x00, 0x00, // mov eax, 1
            0x41, 0xb8, 0x01, 0x00, 0x00, 0x00, // mov r8d, 1
            0x04, 0x01, // add al, 1
            0x66, 0x41, 0xbb, 0x01, 0x00, // mov r11w, 1
            0x31, 0xc9, // xor ecx, ecx (flags are not registers here)
            0x48, 0x89, 0x44, 0x24, 0x08, // mov [rsp + 8], rax (writes memory only)
            0x55, // push rbp (writes rsp)
        ])
        XCTAssertEqual(instructions.map(\.writtenRegisters), [[.rax], [.r8], [.rax], [.r11], [.rcx], [], [.rsp]])
    }

    func testDecodingStopsAtDataInCode() throws {
        let instructions = try decode([
            0x90, // nop
            0xc3, // ret
            0x06, // push es: invalid in 64-bit mode
            0x90,
        ])
        XCTAssertEqual(instructions.map(\.mnemonic), ["nop", "ret"])
    }
}
