import BinaryAnalysis

/// Go's register-based calling convention (Go ≥1.17, amd64): where results are when a
/// function returns. Integer-class words go, in order, to RAX, RBX, RCX, RDI, RSI, R8–R11.
enum GoRegisterABI {
    static let integerRegisters: [Register] = [.rax, .rbx, .rcx, .rdi, .rsi, .r8, .r9, .r10, .r11]
    static let floatTypes: Set<String> = ["float32", "float64"]

    /// The results with their registers filled in, up to the first result whose shape this
    /// does not model (it and later results keep `registers` nil).
    static func assigningRegisters(to results: [Parameter], types: TypeCatalog) -> [Parameter] {
        var next = 0
        var assigned: [Parameter] = []
        var modelled = true
        for var result in results {
            if modelled, let words = integerWords(result.typeName, types: types), next + words <= integerRegisters.count {
                result.registers = integerRegisters[next..<(next + words)].map { RegisterPiece(register: $0, size: 8) }
                next += words
            } else {
                modelled = false
                result.registers = nil
            }
            assigned.append(result)
        }
        return assigned
    }

    /// Registers one value of this type takes, for the shapes probes read: pointers, integers,
    /// strings, interfaces and slices. Nil for anything else (floats, structs, arrays).
    static func integerWords(_ typeName: String, types: TypeCatalog) -> Int? {
        if typeName == "string" { return 2 }
        if typeName.hasPrefix("[]") { return 3 }
        if floatTypes.contains(typeName) { return nil }
        guard let type = types[typeName] else { return nil }
        switch type.kind {
        case .pointer: return 1
        case .interface: return 2
        case .base: return (type.byteSize ?? 9) <= 8 ? 1 : nil
        case .structure, .other: return nil
        }
    }
}
