import BinaryAnalysis
import ProbePacks

/// The x86-64 System V calling convention of C, C++ and Rust's `extern "C"` functions: integer
/// and pointer arguments in RDI, RSI, RDX, RCX, R8, R9 (a C++ method's `this` first), floating
/// point ones in XMM registers (not counted here), a scalar result in RAX.
enum SysVABI {
    static let argumentRegisters: [Register] = [.rdi, .rsi, .rdx, .rcx, .r8, .r9]

    /// A probe's signature from the prototype its pack writes, with the pack's struct layouts.
    /// A parameter whose class this does not model (a struct passed by value, a typedef the
    /// pack does not resolve) has no register, and neither have the ones after it.
    static func signature(_ declared: NativeSignature, types declaredTypes: [DeclaredType], origin: String) -> ProbeSignature {
        let types = catalog(declaredTypes, naming: declared.parameters.map(\.type) + (declared.result.map { [$0] } ?? []))
        var next = 0
        var modelled = true
        let parameters = declared.parameters.map { parameter -> Parameter in
            let type = parameter.type.name
            var registers: [RegisterPiece]?
            if isFloat(type) {
                registers = nil  // an XMM register: integer arguments keep their order
            } else if modelled, let size = integerSize(type, types: types), next < argumentRegisters.count {
                registers = [RegisterPiece(register: argumentRegisters[next], size: size)]
                next += 1
            } else {
                modelled = false
            }
            return Parameter(name: parameter.name, typeName: type, registers: registers)
        }
        let results = declared.result.map { result in
            [Parameter(name: "result", typeName: result.name, registers: integerSize(result.name, types: types).map { [RegisterPiece(register: .rax, size: $0)] })]
        } ?? []
        return ProbeSignature(parameters: parameters, results: results, types: TypeCatalog(types), origin: origin, callingConvention: .sysV)
    }

    /// Bytes of an integer-class value (pointers, C's integers, bool, char); nil for anything else.
    static func integerSize(_ typeName: String, types: [String: TypeFacts]) -> Int? {
        if typeName.hasPrefix("*") { return 8 }
        guard !isFloat(typeName), let type = types[typeName], type.kind == .base else { return nil }
        return type.byteSize
    }

    private static func isFloat(_ typeName: String) -> Bool { typeName == "float32" || typeName == "float64" }

    /// The pack's structs, the base types, and every pointer type the prototype and the structs'
    /// members name, as the same facts DWARF would give.
    static func catalog(_ declared: [DeclaredType], naming used: [CType]) -> [String: TypeFacts] {
        var types: [String: TypeFacts] = [:]
        for (name, size) in CType.baseSizes {
            types[name] = TypeFacts(name: name, kind: .base, byteSize: size, pointee: nil, members: [])
        }
        for structure in declared {
            types[structure.name] = TypeFacts(
                name: structure.name, kind: .structure, byteSize: nil, pointee: nil,
                members: structure.members.map { Member(name: $0.name, typeName: $0.type.name, offset: $0.offset) })
        }
        for type in used + declared.flatMap({ $0.members.map(\.type) }) {
            var name = type.name
            while name.hasPrefix("*") {
                let pointee = String(name.dropFirst())
                types[name] = TypeFacts(name: name, kind: .pointer, byteSize: 8, pointee: pointee, members: [])
                name = pointee
            }
        }
        return types
    }
}
