import CCapstone

/// Decodes x86-64 machine code with capstone, noting for each instruction what a uprobe
/// placed on it would cost and which registers it overwrites. Capstone is loaded while a decoder
/// exists.
final class InstructionDecoder {
    private var capstone = sonde_capstone()
    private var handle: csh = 0
    /// Capstone register id → the full-width general purpose register it is part of.
    private let generalPurposeRegisters: [UInt16: Register]

    /// Capstone's names of each general purpose register and of its sub-registers.
    private static let registersByName: [String: Register] = {
        let legacy: [(Register, [String])] = [
            (.rax, ["rax", "eax", "ax", "ah", "al"]), (.rbx, ["rbx", "ebx", "bx", "bh", "bl"]),
            (.rcx, ["rcx", "ecx", "cx", "ch", "cl"]), (.rdx, ["rdx", "edx", "dx", "dh", "dl"]),
            (.rsi, ["rsi", "esi", "si", "sil"]), (.rdi, ["rdi", "edi", "di", "dil"]),
            (.rbp, ["rbp", "ebp", "bp", "bpl"]), (.rsp, ["rsp", "esp", "sp", "spl"]),
        ]
        let numbered = zip(8..., Register.allCases[8...]).map { number, register in
            (register, ["r\(number)", "r\(number)d", "r\(number)w", "r\(number)b"])
        }
        return Dictionary(uniqueKeysWithValues: (legacy + numbered).flatMap { register, names in names.map { ($0, register) } })
    }()

    init() throws {
        var error: UnsafePointer<CChar>?
        guard sonde_capstone_load(&capstone, &error) == 0 else {
            let reason = error.map { String(cString: $0) } ?? "unknown error"
            throw BinaryAnalysisError.disassemblerUnavailable(
                reason: "libcapstone.so.4 did not load (on Debian: apt-get install libcapstone4): \(reason)")
        }
        let status = capstone.open(CS_ARCH_X86, CS_MODE_64, &handle)
        guard status == CS_ERR_OK else {
            let reason = capstone.strerror(status).map { String(cString: $0) } ?? "capstone error \(status.rawValue)"
            sonde_capstone_unload(&capstone)
            throw BinaryAnalysisError.disassemblerUnavailable(reason: reason)
        }
        _ = capstone.option(handle, CS_OPT_DETAIL, Int(CS_OPT_ON.rawValue))
        var registers: [UInt16: Register] = [:]
        for id in 1..<X86_REG_ENDING.rawValue {
            if let cName = capstone.reg_name(handle, id), let register = Self.registersByName[String(cString: cName)] {
                registers[UInt16(id)] = register
            }
        }
        generalPurposeRegisters = registers
    }

    deinit {
        _ = capstone.close(&handle)
        sonde_capstone_unload(&capstone)
    }

    /// Decodes `code`, loaded at `address` and found in the file at `fileOffset`. Stops at the first
    /// bytes that are not an instruction (data in code), keeping what came before.
    func decode(_ code: UnsafeRawBufferPointer, address: UInt64, fileOffset: UInt64) -> [Instruction] {
        guard let start = code.baseAddress, let decoded = capstone.malloc(handle) else { return [] }
        defer { capstone.free(decoded, 1) }
        var cursor: UnsafePointer<UInt8>? = start.assumingMemoryBound(to: UInt8.self)
        var remaining = code.count
        var nextAddress = address
        var instructions: [Instruction] = []
        while capstone.disasm_iter(handle, &cursor, &remaining, &nextAddress, decoded) {
            let insn = decoded.pointee
            let offset = insn.address - address
            let bytes = UnsafeRawBufferPointer(rebasing: code[Int(offset)..<Int(offset) + Int(insn.size)])
            instructions.append(Instruction(
                address: insn.address,
                fileOffset: fileOffset + offset,
                length: Int(insn.size),
                mnemonic: Self.string(fromCharacters: insn.mnemonic),
                operands: Self.string(fromCharacters: insn.op_str),
                kernelEmulates: KernelUprobeEmulation.isEmulated(bytes),
                isReturn: insn.id == X86_INS_RET.rawValue,
                writtenRegisters: writtenRegisters(decoded)))
        }
        return instructions
    }

    private func writtenRegisters(_ insn: UnsafeMutablePointer<cs_insn>) -> [Register] {
        var read = [UInt16](repeating: 0, count: 64)
        var written = [UInt16](repeating: 0, count: 64)
        var readCount: UInt8 = 0
        var writtenCount: UInt8 = 0
        // Unknown effects count as writing everything, so no entry site is chosen past them.
        guard capstone.regs_access(handle, insn, &read, &readCount, &written, &writtenCount) == CS_ERR_OK else { return Register.allCases }
        var registers: [Register] = []
        for id in written.prefix(Int(writtenCount)) {
            if let register = generalPurposeRegisters[id], !registers.contains(register) {
                registers.append(register)
            }
        }
        return registers
    }

    /// Capstone's fixed-size, NUL-terminated C strings arrive in Swift as tuples of CChar.
    private static func string<Characters>(fromCharacters characters: Characters) -> String {
        withUnsafeBytes(of: characters) { bytes in
            String(decoding: bytes.prefix { $0 != 0 }, as: UTF8.self)
        }
    }
}
