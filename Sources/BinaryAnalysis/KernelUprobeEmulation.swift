/// Which x86-64 instructions Linux 6.18 emulates when a uprobe hits them, rather than single-stepping
/// them out of line (~0.65 µs against ~9.5 µs per hit). Mirrors `arch/x86/kernel/uprobes.c`:
/// `branch_setup_xol_ops` (nops, relative jmp/call, conditional jumps) and `push_setup_xol_ops`.
/// Decided from the bytes, as the kernel does, never from a disassembler's mnemonic.
enum KernelUprobeEmulation {
    /// The kernel's own nops (`x86_nops`, lengths 1…8), which it compares byte for byte.
    /// Other NOPL encodings (e.g. Go's 9-byte padding) are single-stepped until Linux 6.19.
    private static let kernelNops: Set<[UInt8]> = [
        [0x90],
        [0x66, 0x90],
        [0x0f, 0x1f, 0x00],
        [0x0f, 0x1f, 0x40, 0x00],
        [0x0f, 0x1f, 0x44, 0x00, 0x00],
        [0x66, 0x0f, 0x1f, 0x44, 0x00, 0x00],
        [0x0f, 0x1f, 0x80, 0x00, 0x00, 0x00, 0x00],
        [0x0f, 0x1f, 0x84, 0x00, 0x00, 0x00, 0x00, 0x00],
    ]
    private static let legacyPrefixes: Set<UInt8> = [0x66, 0x67, 0xf0, 0xf2, 0xf3, 0x26, 0x2e, 0x36, 0x3e, 0x64, 0x65]
    /// Prefixes with which the kernel refuses to probe an instruction at all (`is_prefix_bad`).
    private static let refusedPrefixes: Set<UInt8> = [0x26, 0x2e, 0x36, 0x3e, 0xf0]
    private static let operandSizePrefix: UInt8 = 0x66

    /// Whether a uprobe on the instruction made of exactly `instruction` bytes is emulated.
    static func isEmulated(_ instruction: some Collection<UInt8>) -> Bool {
        let bytes = Array(instruction)
        let prefixes = bytes.prefix { legacyPrefixes.contains($0) }
        guard prefixes.allSatisfy({ !refusedPrefixes.contains($0) }) else { return false }
        if kernelNops.contains(bytes) { return true }

        let rest = bytes.dropFirst(prefixes.count)
        let hasREX = rest.first.map { $0 & 0xf0 == 0x40 } ?? false
        let opcode = Array(rest.dropFirst(hasREX ? 1 : 0))
        guard let first = opcode.first else { return false }
        // The kernel rejects 16-bit branches (0x66 prefix) outright; they are never emulated.
        let isBranchAllowed = !prefixes.contains(operandSizePrefix)
        switch first {
        case 0x90:
            // "prefix* + nop": the kernel treats any prefixed 0x90 as a nop.
            return true
        case 0xe8, 0xe9, 0xeb, 0x70...0x7f:
            return isBranchAllowed
        case 0x0f:
            return opcode.count > 1 && (0x80...0x8f).contains(opcode[1]) && isBranchAllowed
        case 0x50...0x57:
            // push %reg, or push %r8…%r15 with exactly the REX.B prefix; nothing else.
            return bytes.count == 1 || bytes == [0x41, first]
        default:
            return false
        }
    }
}
