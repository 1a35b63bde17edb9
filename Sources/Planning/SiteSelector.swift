import BinaryAnalysis

/// Chooses where on a function the probes go. An uprobe on an instruction the kernel emulates
/// costs ~0.65 µs; one it must single-step ~9.5 µs (DESIGN.md), so entry probes move past the
/// prologue's first instructions when that keeps the argument registers intact.
enum SiteSelector {
    /// How far into the prologue to look for a cheap entry site.
    static let prologueWindow = 8

    /// EFLAGS bits that make a conditional jump taken: CF and ZF.
    static let carryFlag: UInt64 = 0x1
    static let zeroFlag: UInt64 = 0x40

    /// `isGo`: only Go functions get the morestack skip, since only Go's prologue has that meaning.
    static func entrySite(of function: FunctionFacts, preserving registers: Set<Register>, isGo: Bool) throws -> ProbeSite {
        guard let first = function.instructions.first else {
            throw PlanProblem("\(function.name) could not be decoded")
        }
        var clobbered = Set<Register>()
        for (index, instruction) in function.instructions.prefix(prologueWindow).enumerated() {
            if instruction.kernelEmulates, clobbered.isDisjoint(with: registers) {
                if !isBranch(instruction) {
                    return site(.entry, instruction, in: function, skipFlagsMask: 0)
                }
                // A branch is a safe site only when it is Go's stack check: taken, it enters
                // morestack and the function restarts from the top, so that hit is skipped.
                if isGo, index > 0, let mask = morestackMask(branch: instruction, after: function.instructions[index - 1]) {
                    return site(.entry, instruction, in: function, skipFlagsMask: mask)
                }
            }
            // Large Go frames first check `sub r12, N` for wrap-around with a JB into morestack;
            // execution goes on to the stack-guard check, so the scan may too.
            let wrapAroundCheck = isGo && index > 0 && instruction.mnemonic == "jb" && function.instructions[index - 1].mnemonic == "sub"
            if (isBranch(instruction) && !wrapAroundCheck) || instruction.isReturn { break }
            clobbered.formUnion(instruction.writtenRegisters)
        }
        return site(.entry, first, in: function, skipFlagsMask: 0)
    }

    static func returnSites(of function: FunctionFacts) -> [ProbeSite] {
        function.instructions.filter(\.isReturn).map { site(.return, $0, in: function, skipFlagsMask: 0) }
    }

    private static func isBranch(_ instruction: Instruction) -> Bool {
        instruction.mnemonic.hasPrefix("j") || instruction.mnemonic.hasPrefix("call")
    }

    /// Go's prologue compares the stack pointer with g.stackguard0 (`[r14 + 0x10]`) and jumps to
    /// morestack when it is below or equal.
    private static func morestackMask(branch: Instruction, after comparison: Instruction) -> UInt64? {
        guard comparison.mnemonic == "cmp", comparison.operands.filter({ $0 != " " }).contains("[r14+0x10]") else {
            return nil
        }
        switch branch.mnemonic {
        case "jbe", "jna": return carryFlag | zeroFlag
        case "jb", "jc", "jnae": return carryFlag
        default: return nil
        }
    }

    private static func site(_ role: ProbeSite.Role, _ instruction: Instruction, in function: FunctionFacts, skipFlagsMask: UInt64) -> ProbeSite {
        ProbeSite(
            role: role, function: function.name, address: instruction.address, fileOffset: instruction.fileOffset,
            instruction: instruction.text, kernelEmulates: instruction.kernelEmulates, skipFlagsMask: skipFlagsMask)
    }
}
