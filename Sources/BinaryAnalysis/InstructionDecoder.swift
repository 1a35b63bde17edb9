import CCapstone

/// Decodes x86-64 machine code with capstone, noting for each instruction what a uprobe
/// placed on it would cost and which registers it overwrites.
final class InstructionDecoder {
    private var handle: csh = 0
    /// Capstone register id → the full-width general purpose register it is part of.
    private let generalPurposeRegisters: [UInt16: Register]

    /// Sub-register names of each general purpose register, as capstone spells them.
    private static let registerNames: [Register: [String]] = {
        let legacy: [(Register, [String])] = [
            (.rax, ["al", "ah", "ax", "eax"]), (.rbx, ["bl", "bh", "bx", "ebx"]),
            (.rcx, ["cl", "ch", "cx", "ecx"]), (.rdx, ["dl", "dh", "dx", "edx"]),
            (.rsi, ["sil", "si", "esi"]), (.rdi, ["dil", "di", "edi"]),
            (.rbp, ["bpl", "bp", "ebp"]), (.rsp, ["spl", "sp", "esp"]),
        ]
        let numbered = (8...15).map { number in
            (Register(rawValue: Register.r8.rawValue + number - 8)!, ["r\(number)b", "r\(number)w", "r\(number)d"])
        }
        return Dictionary(uniqueKeysWithValues: (legacy + numbered).map { register, subRegisters in
            (register, subRegisters + [register.description.lowercased()])
        })
    }()

    init(path: String) throws {
        guard cs_open(CS_ARCH_X86, CS_MODE_64, &handle) == CS_ERR_OK else {
            throw BinaryAnalysisError.malformed(path: path, reason: "capstone cannot decode x86-64 here")
        }
        cs_option(handle, CS_OPT_DETAIL, Int(CS_OPT_ON.rawValue))
        var registersByName: [String: Register] = [:]
        for (register, names) in Self.registerNames {
            for name in names { registersByName[name] = register }
        }
        var registers: [UInt16: Register] = [:]
        for id in 1..<X86_REG_ENDING.rawValue {
            if let cName = cs_reg_name(handle, id), let register = registersByName[String(cString: cName)] {
                registers[UInt16(id)] = register
            }
        }
        generalPurposeRegisters = registers
    }

    deinit {
        cs_close(&handle)
    }

    /// Decodes `code`, loaded at `address` and found in the file at `fileOffset`. Stops at the first
    /// bytes that are not an instruction (data in code), keeping what came before.
    func decode(_ code: UnsafeRawBufferPointer, address: UInt64, fileOffset: UInt64) -> [Instruction] {
        guard let start = code.baseAddress, let decoded = cs_malloc(handle) else { return [] }
        defer { cs_free(decoded, 1) }
        var cursor: UnsafePointer<UInt8>? = start.assumingMemoryBound(to: UInt8.self)
        var remaining = code.count
        var nextAddress = address
        var instructions: [Instruction] = []
        while cs_disasm_iter(handle, &cursor, &remaining, &nextAddress, decoded) {
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
        guard cs_regs_access(handle, insn, &read, &readCount, &written, &writtenCount) == CS_ERR_OK else { return [] }
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
