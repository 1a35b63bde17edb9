import CLibDW

/// One DWARF expression operation, as libdw decodes it.
struct DWARFOperation: Equatable {
    var atom: UInt8
    var operand: UInt64
}

/// Reads named types and function parameters from DWARF with libdw (which also inflates the
/// SHF_COMPRESSED debug sections Go writes).
final class DWARFReader {
    struct Facts {
        var types: [String: TypeFacts] = [:]
        /// Formal parameters by function name, for the functions found in DWARF.
        var parameters: [String: [Parameter]] = [:]
        /// Go results by function name (registers left nil: the register ABI places them).
        var results: [String: [Parameter]] = [:]
    }

    /// The layout a type name stands for, once typedefs are seen through.
    private struct Layout {
        var tag: Int32
        var byteSize: Int?
        var pointee: String?
        var members: [Member]
    }

    /// Go's extension attribute carrying the type's `reflect.Kind`.
    private static let goKindAttribute: UInt32 = 0x2900
    /// Go's extension attribute locating the type's runtime descriptor: an offset from `runtime.types`,
    /// or already an address for a few types the linker makes itself (Go 1.19's `uintptr`).
    private static let goRuntimeTypeAttribute: UInt32 = 0x2904
    private static let typeTags = tags(
        DW_TAG_structure_type, DW_TAG_class_type, DW_TAG_union_type, DW_TAG_interface_type, DW_TAG_pointer_type,
        DW_TAG_typedef, DW_TAG_base_type, DW_TAG_array_type, DW_TAG_subroutine_type, DW_TAG_enumeration_type)
    private static let aggregateTags = tags(DW_TAG_structure_type, DW_TAG_class_type, DW_TAG_union_type)
    /// Tags that only rename or qualify another type.
    private static let aliasTags = tags(
        DW_TAG_typedef, DW_TAG_const_type, DW_TAG_volatile_type, DW_TAG_restrict_type, DW_TAG_atomic_type)
    private static let pointerSize = 8
    /// Bounds typedef chains, which malformed DWARF could make circular.
    private static let maximumAliasDepth = 32

    /// Kept so libelf's handle outlives libdw's use of it.
    private let image: ELFImage
    private let dwarf: OpaquePointer

    /// Nil when the binary has no DWARF (stripped, or built with `-ldflags=-w`).
    init?(image: ELFImage) {
        guard let dwarf = dwarf_begin_elf(image.elf, DWARF_C_READ, nil) else { return nil }
        self.image = image
        self.dwarf = dwarf
    }

    deinit {
        dwarf_end(dwarf)
    }

    /// One pass over the top-level entries of every unit: every named type, and the parameters of
    /// `functions`, whose subprogram entries are found by entry address or, failing that, by name.
    /// `goRuntimeTypes` spans Go's type descriptors (`runtime.types` to `runtime.etypes`), when known.
    func read(functions: [ELFSymbol], goRuntimeTypes: Range<UInt64>?) -> Facts {
        let functionsByAddress = Dictionary(functions.map { ($0.address, $0) }, uniquingKeysWith: { first, _ in first })
        let functionsByName = Dictionary(functions.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        var facts = Facts()
        var unit: OpaquePointer?
        var nextUnit: OpaquePointer?
        var unitEntry = Dwarf_Die()
        while dwarf_get_units(dwarf, unit, &nextUnit, nil, nil, &unitEntry, nil) == 0 {
            unit = nextUnit
            forEachChild(of: &unitEntry) { entry in
                let tag = dwarf_tag(&entry)
                if tag == Int32(DW_TAG_subprogram) {
                    var entryAddress: Dwarf_Addr = 0
                    guard dwarf_lowpc(&entry, &entryAddress) == 0,
                          let function = functionsByAddress[entryAddress] ?? name(of: &entry).flatMap({ functionsByName[$0] }),
                          facts.parameters[function.name] == nil
                    else { return }
                    let formals = formalParameters(of: &entry, entryAddress: entryAddress)
                    facts.parameters[function.name] = formals.parameters
                    facts.results[function.name] = formals.results
                } else if Self.typeTags.contains(tag), !isDeclaration(&entry), let name = name(of: &entry), facts.types[name] == nil,
                          let type = typeFacts(of: &entry, tag: tag, name: name, goRuntimeTypes: goRuntimeTypes) {
                    facts.types[name] = type
                }
            }
        }
        return facts
    }

    /// Maps DWARF register locations to registers: `DW_OP_regN` alone (the whole value, `valueSize`
    /// bytes) or `DW_OP_regN DW_OP_piece(size)…`. Anything else (stack slots, a piece with no
    /// location, computed values) is nil.
    static func registerPieces(_ operations: [DWARFOperation], valueSize: Int) -> [RegisterPiece]? {
        var pieces: [RegisterPiece] = []
        var pendingRegister: Register?
        for operation in operations {
            switch Int(operation.atom) {
            case Int(DW_OP_reg0)...Int(DW_OP_reg31), Int(DW_OP_regx):
                let number = operation.atom == DW_OP_regx ? operation.operand : UInt64(operation.atom) - UInt64(DW_OP_reg0)
                guard pendingRegister == nil, let register = Int(exactly: number).flatMap(Register.init(rawValue:)) else {
                    return nil
                }
                pendingRegister = register
            case Int(DW_OP_piece):
                guard let register = pendingRegister else { return nil }
                guard let size = Int(exactly: operation.operand) else { return nil }
                pieces.append(RegisterPiece(register: register, size: size))
                pendingRegister = nil
            default:
                return nil
            }
        }
        if let register = pendingRegister {
            return pieces.isEmpty ? [RegisterPiece(register: register, size: valueSize)] : nil
        }
        return pieces.isEmpty ? nil : repairingGo119Pieces(pieces, valueSize: valueSize)
    }

    /// Go 1.19 describes some interface parameters with repeated pieces, e.g. RBX,RBX,RCX,RCX
    /// for a 16-byte value (golang/go#61700). When the pieces add up to more than the value,
    /// consecutive pieces naming the same register are one word.
    static func repairingGo119Pieces(_ pieces: [RegisterPiece], valueSize: Int) -> [RegisterPiece] {
        guard pieces.reduce(0, { $0 + $1.size }) > valueSize else { return pieces }
        var words: [RegisterPiece] = []
        for piece in pieces where words.last?.register != piece.register {
            words.append(RegisterPiece(register: piece.register, size: pointerSize))
        }
        return words.count * pointerSize == valueSize ? words : pieces
    }

    // MARK: - Types

    private func typeFacts(of entry: inout Dwarf_Die, tag: Int32, name: String, goRuntimeTypes: Range<UInt64>?) -> TypeFacts? {
        var target = Dwarf_Die()
        // Go follows each interface's real typedef with a second one naming it again; keep the real one.
        if tag == Int32(DW_TAG_typedef), referencedType(of: &entry, into: &target), self.name(of: &target) == name {
            return nil
        }
        let layout = self.layout(of: entry)
        let kind = goKind(of: &entry).map(Self.kind(goKind:)) ?? Self.kind(tag: layout.tag)
        return TypeFacts(
            name: name, kind: kind, byteSize: layout.byteSize,
            pointee: kind == .pointer ? layout.pointee : nil, members: layout.members,
            runtimeTypeAddress: goRuntimeTypes.flatMap { runtimeTypeAddress(of: &entry, goRuntimeTypes: $0) })
    }

    /// C and C++ forward declarations (`struct foo;`) name a type without describing it.
    private func isDeclaration(_ entry: inout Dwarf_Die) -> Bool {
        dwarf_hasattr(&entry, UInt32(DW_AT_declaration)) != 0
    }

    private func runtimeTypeAddress(of entry: inout Dwarf_Die, goRuntimeTypes: Range<UInt64>) -> UInt64? {
        var attribute = Dwarf_Attribute()
        var value: Dwarf_Addr = 0
        guard dwarf_attr(&entry, Self.goRuntimeTypeAttribute, &attribute) != nil,
              dwarf_formaddr(&attribute, &value) == 0, value != 0
        else { return nil }
        if goRuntimeTypes.contains(value) { return value }
        return value < goRuntimeTypes.upperBound - goRuntimeTypes.lowerBound ? goRuntimeTypes.lowerBound + value : nil
    }

    private func layout(of entry: Dwarf_Die) -> Layout {
        var entry = entry
        var tag = dwarf_tag(&entry)
        var depth = 0
        while Self.aliasTags.contains(tag), depth < Self.maximumAliasDepth {
            var target = Dwarf_Die()
            guard referencedType(of: &entry, into: &target) else { break }
            entry = target
            tag = dwarf_tag(&entry)
            depth += 1
        }
        let size = dwarf_bytesize(&entry)
        var pointee = Dwarf_Die()
        return Layout(
            tag: tag,
            byteSize: size >= 0 ? Int(size) : (tag == Int32(DW_TAG_pointer_type) ? Self.pointerSize : nil),
            pointee: referencedType(of: &entry, into: &pointee) ? name(of: &pointee) : nil,
            members: Self.aggregateTags.contains(tag) ? members(of: &entry) : [])
    }

    private func members(of aggregate: inout Dwarf_Die) -> [Member] {
        var members: [Member] = []
        forEachChild(of: &aggregate) { member in
            guard dwarf_tag(&member) == Int32(DW_TAG_member), let offset = memberOffset(&member) else { return }
            members.append(Member(name: name(of: &member) ?? "", typeName: typeName(of: &member), offset: offset))
        }
        return members
    }

    /// `DW_AT_data_member_location` as a constant; union members have none and sit at 0.
    /// Nil for the DWARF 2 expression form, which no supported compiler emits.
    private func memberOffset(_ member: inout Dwarf_Die) -> Int? {
        var attribute = Dwarf_Attribute()
        guard dwarf_attr(&member, UInt32(DW_AT_data_member_location), &attribute) != nil else { return 0 }
        var offset: Dwarf_Word = 0
        return dwarf_formudata(&attribute, &offset) == 0 ? Int(exactly: offset) : nil
    }

    private func goKind(of entry: inout Dwarf_Die) -> UInt64? {
        var attribute = Dwarf_Attribute()
        var value: Dwarf_Word = 0
        guard dwarf_attr(&entry, Self.goKindAttribute, &attribute) != nil, dwarf_formudata(&attribute, &value) == 0 else {
            return nil
        }
        return value
    }

    /// From Go's `reflect.Kind`.
    private static func kind(goKind: UInt64) -> TypeFacts.Kind {
        switch goKind {
        case 1...16, 24: return .base // bool, integers, floats, complexes; string
        case 20: return .interface
        case 22, 26: return .pointer // *T, unsafe.Pointer
        case 25: return .structure
        default: return .other // arrays, chans, funcs, maps, slices
        }
    }

    private static func kind(tag: Int32) -> TypeFacts.Kind {
        switch Int(tag) {
        case Int(DW_TAG_structure_type), Int(DW_TAG_class_type), Int(DW_TAG_union_type): return .structure
        case Int(DW_TAG_pointer_type): return .pointer
        case Int(DW_TAG_interface_type): return .interface
        case Int(DW_TAG_base_type): return .base
        default: return .other
        }
    }

    // MARK: - Parameters

    /// Parameters, with their registers at entry, and Go results, in declaration order.
    private func formalParameters(of subprogram: inout Dwarf_Die, entryAddress: Dwarf_Addr) -> (parameters: [Parameter], results: [Parameter]) {
        var parameters: [Parameter] = []
        var results: [Parameter] = []
        forEachChild(of: &subprogram) { entry in
            guard dwarf_tag(&entry) == Int32(DW_TAG_formal_parameter) else { return }
            var type = Dwarf_Die()
            let hasType = referencedType(of: &entry, into: &type)
            let typeName = hasType ? name(of: &type) ?? "" : ""
            if isGoResult(&entry) {
                // Go 1.19 repeats some result entries; the first of each name counts.
                let resultName = name(of: &entry) ?? ""
                if !results.contains(where: { $0.name == resultName }) {
                    results.append(Parameter(name: resultName, typeName: typeName, registers: nil))
                }
                return
            }
            let valueSize = hasType ? layout(of: type).byteSize : nil
            parameters.append(Parameter(
                name: name(of: &entry) ?? "", typeName: typeName,
                registers: registerPieces(of: &entry, at: entryAddress, valueSize: valueSize ?? Self.pointerSize)))
        }
        return (parameters, results)
    }

    /// Go lists results as formal parameters marked `DW_AT_variable_parameter`.
    private func isGoResult(_ entry: inout Dwarf_Die) -> Bool {
        var attribute = Dwarf_Attribute()
        var flag = false
        return dwarf_attr_integrate(&entry, UInt32(DW_AT_variable_parameter), &attribute) != nil
            && dwarf_formflag(&attribute, &flag) == 0 && flag
    }

    private func registerPieces(of entry: inout Dwarf_Die, at address: Dwarf_Addr, valueSize: Int) -> [RegisterPiece]? {
        var attribute = Dwarf_Attribute()
        var expression: UnsafeMutablePointer<Dwarf_Op>?
        var length = 0
        guard dwarf_attr(&entry, UInt32(DW_AT_location), &attribute) != nil,
              dwarf_getlocation_addr(&attribute, address, &expression, &length, 1) > 0,
              let expression
        else { return nil }
        let operations = UnsafeBufferPointer(start: expression, count: length).map {
            DWARFOperation(atom: $0.atom, operand: $0.number)
        }
        return Self.registerPieces(operations, valueSize: valueSize)
    }

    // MARK: - Entries

    /// dwarf.h's tag constants, in the type `dwarf_tag` returns.
    private static func tags<Tag: BinaryInteger>(_ tags: Tag...) -> Set<Int32> {
        Set(tags.map { Int32($0) })
    }

    private func forEachChild(of parent: inout Dwarf_Die, _ body: (inout Dwarf_Die) -> Void) {
        var child = Dwarf_Die()
        guard dwarf_child(&parent, &child) == 0 else { return }
        while true {
            body(&child)
            var sibling = Dwarf_Die()
            guard dwarf_siblingof(&child, &sibling) == 0 else { return }
            child = sibling
        }
    }

    /// The entry's name, following `DW_AT_abstract_origin` (Go's out-of-line copies of inlined functions).
    private func name(of entry: inout Dwarf_Die) -> String? {
        dwarf_diename(&entry).map { String(cString: $0) }
    }

    private func typeName(of entry: inout Dwarf_Die) -> String {
        var type = Dwarf_Die()
        return referencedType(of: &entry, into: &type) ? name(of: &type) ?? "" : ""
    }

    /// The entry `DW_AT_type` points to, following `DW_AT_abstract_origin`.
    private func referencedType(of entry: inout Dwarf_Die, into type: inout Dwarf_Die) -> Bool {
        var attribute = Dwarf_Attribute()
        return dwarf_attr_integrate(&entry, UInt32(DW_AT_type), &attribute) != nil && dwarf_formref_die(&attribute, &type) != nil
    }
}
