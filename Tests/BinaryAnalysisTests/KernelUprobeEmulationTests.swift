@testable import BinaryAnalysis
import XCTest

/// Each class of instruction Linux 6.18's x86 uprobes emulate, and near misses it single-steps.
final class KernelUprobeEmulationTests: XCTestCase {
    private func assertEmulated(_ cases: [String: [UInt8]], _ expected: Bool, file: StaticString = #filePath, line: UInt = #line) {
        for (name, bytes) in cases.sorted(by: { $0.key < $1.key }) {
            XCTAssertEqual(KernelUprobeEmulation.isEmulated(bytes), expected, name, file: file, line: line)
        }
    }

    func testRelativeCallsAndJumpsAreEmulated() {
        assertEmulated([
            "call rel32": [0xe8, 0x10, 0x20, 0x30, 0x40],
            "jmp rel32": [0xe9, 0x10, 0x20, 0x30, 0x40],
            "jmp rel8": [0xeb, 0x05],
            "jbe rel8": [0x76, 0x10],
            "jo rel8": [0x70, 0x10],
            "jg rel8": [0x7f, 0x10],
            "jbe rel32": [0x0f, 0x86, 0x8a, 0x00, 0x00, 0x00],
            "jo rel32": [0x0f, 0x80, 0x00, 0x01, 0x00, 0x00],
            "jg rel32": [0x0f, 0x8f, 0x00, 0x01, 0x00, 0x00],
            "bnd jmp rel32": [0xf2, 0xe9, 0x10, 0x20, 0x30, 0x40],
        ], true)
    }

    func testSixteenBitBranchesAreRefused() {
        assertEmulated([
            "callw": [0x66, 0xe8, 0x10, 0x20],
            "jbe rel32 with 0x66": [0x66, 0x0f, 0x86, 0x8a, 0x00, 0x00, 0x00],
        ], false)
    }

    func testPushOfARegisterIsEmulated() {
        assertEmulated([
            "push rax": [0x50],
            "push rbp": [0x55],
            "push rdi": [0x57],
            "push r8": [0x41, 0x50],
            "push r15": [0x41, 0x57],
        ], true)
    }

    func testOtherPushesAreSingleStepped() {
        assertEmulated([
            "push ax": [0x66, 0x50],
            "REX.W push rax": [0x48, 0x50],
            "push imm8": [0x6a, 0x01],
            "push qword ptr [rax]": [0xff, 0x30],
        ], false)
    }

    func testNopsAreEmulated() {
        assertEmulated([
            "nop": [0x90],
            "xchg ax, ax": [0x66, 0x90],
            "nop3": [0x0f, 0x1f, 0x00],
            "nop4": [0x0f, 0x1f, 0x40, 0x00],
            "nop5": [0x0f, 0x1f, 0x44, 0x00, 0x00],
            "nop6": [0x66, 0x0f, 0x1f, 0x44, 0x00, 0x00],
            "nop7": [0x0f, 0x1f, 0x80, 0x00, 0x00, 0x00, 0x00],
            "nop8": [0x0f, 0x1f, 0x84, 0x00, 0x00, 0x00, 0x00, 0x00],
        ], true)
    }

    /// 6.18 compares multi-byte nops with its own `x86_nops`; other NOPL encodings are single-stepped.
    func testNopsTheKernelDoesNotKnowAreSingleStepped() {
        assertEmulated([
            "Go's 9-byte nop": [0x66, 0x0f, 0x1f, 0x84, 0x00, 0x00, 0x00, 0x00, 0x00],
            "nopl with eax index": [0x0f, 0x1f, 0x44, 0x01, 0x00],
        ], false)
    }

    func testEverythingElseIsSingleStepped() {
        assertEmulated([
            "ret": [0xc3],
            "ret imm16": [0xc2, 0x08, 0x00],
            "cmp rsp, [r14+0x10]": [0x49, 0x3b, 0x66, 0x10],
            "lea r12, [rsp-0x28]": [0x4c, 0x8d, 0x64, 0x24, 0xd8],
            "mov rbp, rsp": [0x48, 0x89, 0xe5],
            "sub rsp, 0x20": [0x48, 0x83, 0xec, 0x20],
            "pop rbp": [0x5d],
            "jmp rax": [0xff, 0xe0],
            "call rax": [0xff, 0xd0],
            "int3": [0xcc],
            "endbr64": [0xf3, 0x0f, 0x1e, 0xfa],
            "syscall": [0x0f, 0x05],
            "empty": [],
        ], false)
    }

    func testPrefixesTheKernelRefusesToProbe() {
        assertEmulated([
            "lock-prefixed nop": [0xf0, 0x90],
            "cs-prefixed jbe (branch hint)": [0x2e, 0x76, 0x10],
            "ds-prefixed jmp": [0x3e, 0xeb, 0x05],
        ], false)
    }
}
