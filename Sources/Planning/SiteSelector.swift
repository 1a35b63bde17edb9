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
    ///
    /// - Throws: `PlanProblem` when the function's instructions are not a decoding from its start
    ///   that stays inside it (see ``checkDecodedLayout(of:)``), so no site can be trusted.
    static func entrySite(of function: FunctionFacts, preserving registers: Set<Register>, isGo: Bool) throws -> ProbeSite {
        guard !function.instructions.isEmpty else {
            throw PlanProblem("\(function.name) could not be decoded")
        }
        try checkDecodedLayout(of: function)
        var clobbered = Set<Register>()
        for (index, instruction) in function.instructions.prefix(prologueWindow).enumerated() {
            if instruction.kernelEmulates, clobbered.isDisjoint(with: registers) {
                if !isBranch(instruction) {
                    return try site(.entry, instruction, in: function, skipFlagsMask: 0)
                }
                // A branch is a safe site only when it is Go's stack check: taken, it enters
                // morestack and the function restarts from the top, so that hit is skipped.
                if isGo, index > 0, let mask = morestackMask(branch: instruction, after: function.instructions[index - 1]) {
                    return try site(.entry, instruction, in: function, skipFlagsMask: mask)
                }
                // A native function's tail jump (`mov edx, 1; jmp impl`) runs once per call.
                if !isGo, isOncePerCallJump(instruction, in: function) {
                    return try site(.entry, instruction, in: function, skipFlagsMask: 0)
                }
            }
            // Large Go frames first check `sub r12, N` for wrap-around with a JB into morestack;
            // execution goes on to the stack-guard check, so the scan may too.
            let wrapAroundCheck = isGo && index > 0 && instruction.mnemonic == "jb" && function.instructions[index - 1].mnemonic == "sub"
            // The site precedes every change of the stack pointer, so the stack is as deep there
            // as at the function's RETs: the BPF program tells nested calls apart by that depth.
            let movesStack = instruction.writtenRegisters.contains(.rsp)
            if (isBranch(instruction) && !wrapAroundCheck) || instruction.isReturn || movesStack { break }
            clobbered.formUnion(instruction.writtenRegisters)
        }
        return try site(.entry, function.instructions[0], in: function, skipFlagsMask: 0)
    }

    /// The function's first instruction, where the peer agents put their entry probes; only the
    /// `conventional` placement, kept for measuring against them, uses it.
    static func firstInstructionSite(of function: FunctionFacts) throws -> ProbeSite {
        try checkDecodedLayout(of: function)
        return try site(.entry, function.instructions[0], in: function, skipFlagsMask: 0)
    }

    /// A site on every RET inside the function. The planner asks for the entry site first, which
    /// refuses the whole function when any instruction lies outside it.
    static func returnSites(of function: FunctionFacts) -> [ProbeSite] {
        function.instructions.filter { $0.isReturn && isInside($0, function) }.compactMap {
            try? site(.return, $0, in: function, skipFlagsMask: 0)
        }
    }

    /// The function's return through the kernel's return probe, hooked at its first instruction.
    /// Returning through it costs about as much as an emulated hit (Linux 6.11+ returns through
    /// the uretprobe system call, with no single-step); its hook at entry costs what that
    /// instruction costs, and is shared with an entry site there.
    static func returnProbeSite(of function: FunctionFacts) throws -> ProbeSite {
        let first = try firstInstructionSite(of: function)
        return ProbeSite(
            role: .returnProbe, function: function.name, address: first.address, fileOffset: first.fileOffset,
            instruction: "return probe, hooked at \(first.instruction)", kernelEmulates: first.kernelEmulates, skipFlagsMask: 0)
    }

    /// The one `call` of `callee` inside `function`: a direct call, which the kernel emulates.
    static func callSite(to callee: FunctionFacts, in function: FunctionFacts) throws -> ProbeSite {
        let sites = try callSites(to: callee, in: function)
        guard sites.count == 1 else {
            throw PlanProblem("\(function.name) calls \(callee.name) \(sites.count) times directly; a call site needs exactly one")
        }
        return sites[0]
    }

    /// Every direct `call` of `callee` inside `function`, at least one, each emulated by the kernel.
    static func callSites(to callee: FunctionFacts, in function: FunctionFacts) throws -> [ProbeSite] {
        try checkDecodedLayout(of: function)
        return try directCalls(to: callee, in: function).map { function.instructions[$0] }.map { call in
            guard call.kernelEmulates else {
                throw PlanProblem("\(function.name): the call to \(callee.name) at 0x\(hex(call.address)) is not one the kernel emulates")
            }
            var site = try site(.call, call, in: function, skipFlagsMask: 0)
            site.instruction += " <\(callee.name)>"
            return site
        }
    }

    /// `span.ends-after-call`'s sites in one function: where its span usually ends, and the RETs
    /// still probed.
    struct ResultBranches: Equatable {
        var branches: [ProbeSite]
        /// Every RET but those reached only once a branch goes the way its register is zero.
        var otherReturns: [ProbeSite]
    }

    /// For each direct call of `callee` in `function`, the conditional jump right after it that
    /// tests `register` (`test rbx, rbx; je …`), no instruction between them writing a register:
    /// there the call's results are still in the registers a return program reads. The RETs
    /// reached once such a jump goes the way `register` is zero need no probe, provided no other
    /// way reaches them; every other RET keeps its probe.
    static func resultBranches(after callee: FunctionFacts, in function: FunctionFacts, testing register: Register) throws -> ResultBranches {
        try checkDecodedLayout(of: function)
        let instructions = function.instructions
        // The BPF program finds the call's stack depth from the frame pointer (SONDE_IN_GO_FRAME).
        guard framePointerIsBelowReturnAddress(in: function) else {
            throw PlanProblem(
                "\(function.name) sets no frame pointer (RBP) 8 bytes below its return address in its prologue, which a result branch "
                    + "needs to tell nested calls apart")
        }
        let tests = try resultTests(after: callee, in: function, testing: register)
        let ending = try returns(after: tests, going: \.zeroWay, notGoing: \.nonZeroWay, in: function, callee: callee, state: "\(register) zero")
        return ResultBranches(
            branches: try tests.map { try site(.resultBranch, instructions[$0.branch], in: function, skipFlagsMask: 0) },
            otherReturns: returnSites(of: function).filter { !ending.contains($0.address) })
    }

    /// `span.ends-at-return.after-call`: the RETs reached once a branch right after a call of
    /// `callee` (as in ``resultBranches(after:in:testing:)``) goes the way `register` is not zero,
    /// the call having failed. No way on which it is zero may reach them: each is single-stepped,
    /// and one reached by a call that succeeded would also end its span before its end-span probe.
    static func failureReturns(after callee: FunctionFacts, in function: FunctionFacts, testing register: Register) throws -> [ProbeSite] {
        try checkDecodedLayout(of: function)
        let tests = try resultTests(after: callee, in: function, testing: register)
        let failing = try returns(after: tests, going: \.nonZeroWay, notGoing: \.zeroWay, in: function, callee: callee, state: "\(register) not zero")
        return returnSites(of: function).filter { failing.contains($0.address) }
    }

    /// The addresses of the RETs reached once the branches after the calls go their `ending` way
    /// (where the register is in `state`), checked to be none that the function reaches from its
    /// entry with every such branch going its `other` way.
    private static func returns(
        after tests: [ResultCheck], going ending: KeyPath<ResultCheck, UInt64>, notGoing other: KeyPath<ResultCheck, UInt64>,
        in function: FunctionFacts, callee: FunctionFacts, state: String
    ) throws -> Set<UInt64> {
        let instructions = function.instructions
        let indexes = Dictionary(uniqueKeysWithValues: instructions.enumerated().map { ($1.address, $0) })
        let reached = try returnsReached(from: tests.map { $0[keyPath: ending] }, in: function, indexes: indexes)
        let otherwise = try returnsReached(
            from: [function.address], in: function, indexes: indexes,
            takingOnly: Dictionary(uniqueKeysWithValues: tests.map { ($0.branch, $0[keyPath: other]) }))
        if let shared = reached.intersection(otherwise).min() {
            throw PlanProblem(
                "\(function.name): the RET at 0x\(hex(instructions[shared].address)) is reached both after the call to \(callee.name) with "
                    + "\(state) and on another way out")
        }
        guard !reached.isEmpty else { throw PlanProblem("\(function.name): no RET follows the call to \(callee.name) with \(state)") }
        return Set(reached.map { instructions[$0].address })
    }

    /// A conditional jump right after a call that says whether a result register is zero: its
    /// index, and where it goes either way.
    private struct ResultCheck {
        var branch: Int
        var zeroWay: UInt64
        var nonZeroWay: UInt64
    }

    /// The branch after each direct call of `callee` in `function` testing `register`: the call,
    /// then instructions that write no register, `test R, R` and a `je` or `jne`, on which no jump
    /// lands (only through the test does its way say whether the register is zero).
    private static func resultTests(after callee: FunctionFacts, in function: FunctionFacts, testing register: Register) throws -> [ResultCheck] {
        let instructions = function.instructions
        let name = "\(register)".lowercased()   // capstone's spelling
        return try directCalls(to: callee, in: function).map { call in
            var index = call + 1
            while index < instructions.count, !isBranch(instructions[index]), !instructions[index].isReturn,
                  instructions[index].writtenRegisters.isEmpty {
                index += 1
            }
            guard index + 1 < instructions.count, index > call + 1, case let branch = instructions[index],
                  ["je", "jne"].contains(branch.mnemonic), let taken = branchTarget(branch),
                  instructions[index - 1].mnemonic == "test", instructions[index - 1].operands == "\(name), \(name)"
            else {
                throw PlanProblem(
                    "\(function.name): the call to \(callee.name) at 0x\(hex(instructions[call].address)) is not followed by a test of "
                        + "\(register) and a je or jne, with no register written between")
            }
            if let jumper = instructions.first(where: { isBranch($0) && branchTarget($0) == branch.address }) {
                throw PlanProblem(
                    "\(function.name): the jump at 0x\(hex(jumper.address)) goes straight to the branch at 0x\(hex(branch.address)), "
                        + "past its test of \(register)")
            }
            let fallThrough = instructions[index + 1].address
            return branch.mnemonic == "je"
                ? ResultCheck(branch: index, zeroWay: taken, nonZeroWay: fallThrough)
                : ResultCheck(branch: index, zeroWay: fallThrough, nonZeroWay: taken)
        }
    }

    /// Whether the prologue leaves RBP 8 bytes below the return address, the entry's stack pointer:
    /// `push rbp; mov rbp, rsp` (Go 1.21+) or `sub rsp, N; mov [rsp + N-8], rbp; lea rbp, [rsp + N-8]`
    /// (Go 1.19), whatever stack check comes before.
    private static func framePointerIsBelowReturnAddress(in function: FunctionFacts) -> Bool {
        var stackOffset: Int64 = 0  // the stack pointer, from the entry's
        for instruction in function.instructions.prefix(prologueWindow) {
            let operands = instruction.operands
            switch instruction.mnemonic {
            case "push": stackOffset -= 8
            case "sub" where operands.hasPrefix("rsp, "):
                guard let size = immediate(operands.dropFirst("rsp, ".count)) else { return false }
                stackOffset -= size
            case "mov" where operands == "rbp, rsp":
                return stackOffset == -8
            case "lea" where operands.hasPrefix("rbp, [rsp + ") && operands.hasSuffix("]"):
                guard let offset = immediate(operands.dropFirst("rbp, [rsp + ".count).dropLast()) else { return false }
                return stackOffset + offset == -8
            default:
                if instruction.writtenRegisters.contains(.rsp) || instruction.writtenRegisters.contains(.rbp) { return false }
            }
        }
        return false
    }

    /// A decimal or 0x-hexadecimal immediate as capstone prints it.
    private static func immediate(_ text: Substring) -> Int64? {
        text.hasPrefix("0x") ? Int64(text.dropFirst(2), radix: 16) : Int64(text)
    }

    /// The indexes of the direct `call`s of `callee` among `function`'s instructions; at least one.
    private static func directCalls(to callee: FunctionFacts, in function: FunctionFacts) throws -> [Int] {
        let target = "0x\(hex(callee.address))"
        let calls = function.instructions.indices.filter { function.instructions[$0].mnemonic == "call" && function.instructions[$0].operands == target }
        guard !calls.isEmpty else { throw PlanProblem("\(function.name) does not call \(callee.name) directly") }
        return calls
    }

    /// The indexes of the RETs reached from `starts`, following every way of every branch but, at
    /// the branches in `takingOnly`, the one way given. `indexes`: each instruction's, by address.
    private static func returnsReached(
        from starts: [UInt64], in function: FunctionFacts, indexes: [UInt64: Int], takingOnly: [Int: UInt64] = [:]
    ) throws -> Set<Int> {
        let instructions = function.instructions
        var seen = Set<Int>()
        var pending: [Int] = []
        var returns = Set<Int>()
        func visit(_ address: UInt64) throws {
            guard let index = indexes[address] else {
                throw PlanProblem("\(function.name): a jump goes to 0x\(hex(address)), which is not an instruction of the function")
            }
            if seen.insert(index).inserted { pending.append(index) }
        }
        for start in starts { try visit(start) }
        while let index = pending.popLast() {
            let instruction = instructions[index]
            if instruction.isReturn {
                returns.insert(index)
                continue
            }
            if let only = takingOnly[index] {
                try visit(only)
                continue
            }
            if instruction.mnemonic.hasPrefix("j") {
                guard let target = branchTarget(instruction) else {
                    throw PlanProblem("\(function.name): the indirect jump at 0x\(hex(instruction.address)) may go anywhere")
                }
                try visit(target)
                if instruction.mnemonic == "jmp" { continue }
            }
            // The function's last instruction goes nowhere further (a call that does not return).
            if index + 1 < instructions.count { try visit(instructions[index + 1].address) }
        }
        return returns
    }

    // MARK: - Decoded instruction boundaries

    /// Checks that the instructions read as a decoding of the function from its first byte: the
    /// first at the function's start, each after the one before and wholly inside the function.
    /// BinaryAnalysis decodes them so from bounds its sources agree on (FunctionBounds.swift);
    /// this keeps facts from anywhere else from putting a probe outside the function.
    static func checkDecodedLayout(of function: FunctionFacts) throws {
        guard let first = function.instructions.first, first.address == function.address else {
            let found = function.instructions.first.map { "0x\(hex($0.address))" } ?? "nothing"
            throw PlanProblem(
                "\(function.name): decoding starts at \(found), not at the function's start 0x\(hex(function.address)); "
                    + "no probe is placed on it")
        }
        for (index, instruction) in function.instructions.enumerated() {
            guard isInside(instruction, function) else {
                let bounds = "0x\(hex(function.address))-0x\(hex(function.address &+ function.size))"
                throw PlanProblem(
                    "\(function.name): the decoded instruction at 0x\(hex(instruction.address)) (\(instruction.length) bytes) "
                        + "lies outside the function (\(bounds)); no probe is placed on it")
            }
            if index > 0, instruction.address <= function.instructions[index - 1].address {
                throw PlanProblem(
                    "\(function.name): the decoded instruction at 0x\(hex(instruction.address)) does not follow the one at "
                        + "0x\(hex(function.instructions[index - 1].address)); no probe is placed on it")
            }
        }
    }

    /// Whether all of `instruction` lies in `[function.address, function.address + function.size)`.
    private static func isInside(_ instruction: Instruction, _ function: FunctionFacts) -> Bool {
        let (end, overflow) = function.address.addingReportingOverflow(function.size)
        return !overflow && instruction.length > 0
            && instruction.address >= function.address && instruction.address < end
            && UInt64(instruction.length) <= end - instruction.address
    }

    private static func hex(_ value: UInt64) -> String { String(value, radix: 16) }

    /// An unconditional direct `jmp` that nothing in the function jumps back to or before:
    /// reached from the function's start only, so once per call.
    private static func isOncePerCallJump(_ jump: Instruction, in function: FunctionFacts) -> Bool {
        guard jump.mnemonic == "jmp", branchTarget(jump) != nil else { return false }
        return !function.instructions.contains { instruction in
            guard isBranch(instruction) else { return false }
            // An indirect branch could go anywhere.
            guard let target = branchTarget(instruction) else { return !instruction.mnemonic.hasPrefix("call") }
            return target >= function.address && target <= jump.address
        }
    }

    /// A direct branch's target, from its operand (`0x164b0`); nil for an indirect one.
    private static func branchTarget(_ instruction: Instruction) -> UInt64? {
        guard instruction.operands.hasPrefix("0x") else { return nil }
        return UInt64(instruction.operands.dropFirst(2), radix: 16)
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

    /// The site on `instruction`. Its file offset, which is what the kernel attaches to, comes from
    /// the function's own and the instruction's distance from the function's start.
    private static func site(
        _ role: ProbeSite.Role, _ instruction: Instruction, in function: FunctionFacts, skipFlagsMask: UInt64
    ) throws -> ProbeSite {
        guard instruction.address >= function.address,
              case let (fileOffset, overflow) = function.fileOffset.addingReportingOverflow(instruction.address - function.address),
              !overflow
        else {
            throw PlanProblem(
                "\(function.name): no file offset for the instruction at 0x\(hex(instruction.address)); no probe is placed on it")
        }
        return ProbeSite(
            role: role, function: function.name, address: instruction.address, fileOffset: fileOffset,
            instruction: instruction.text, kernelEmulates: instruction.kernelEmulates, skipFlagsMask: skipFlagsMask)
    }
}
