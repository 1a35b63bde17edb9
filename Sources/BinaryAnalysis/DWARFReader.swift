import CLibDW
import CLibELF

/// Reads named types and function parameters from DWARF with libdw (which also inflates the
/// SHF_COMPRESSED debug sections Go writes), and the location lists of those parameters itself
/// (DWARFReader+LocationLists.swift).
final class DWARFReader {
    struct Facts {
        var types: [String: TypeFacts] = [:]
        /// Formal parameters by function name, for the functions found in DWARF.
        var parameters: [String: [Parameter]] = [:]
        /// Go results by function name (registers left nil: the register ABI places them).
        var results: [String: [Parameter]] = [:]
        /// Where each function found in DWARF starts (`DW_AT_low_pc`) and ends (`DW_AT_high_pc`, when given).
        var bounds: [String: (start: UInt64, end: UInt64?)] = [:]
    }

    /// DWARF that the file has but libelf or libdw cannot read; `reason` quotes their error.
    struct Unreadable: Error {
        var reason: String
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
    /// Sizes and member offsets believed from DWARF: planning adds them up along field paths, so
    /// damaged DWARF must not hand it numbers near the top of `Int`.
    private static let plausibleSizes: ClosedRange<Int64> = 0...Int64(UInt32.max)

    /// Kept so libelf's handle outlives libdw's use of it.
    private let image: ELFImage
    private let dwarf: OpaquePointer
    /// The first libdw failure met while walking entries, which `read` throws.
    private var walkError: String?
    /// `.debug_loc` and `.debug_loclists`, by those names also when the file has `.zdebug_loc`.
    let locationListSections: [String: LocationListSection]
    /// The inflated `.debug_addr`, where DWARF 5 location lists find addresses by index.
    let addressSection: UnsafeRawBufferPointer

    /// The sections libdw reads entries and types from. Line tables, call frame information and
    /// address ranges are never read, so they stay compressed (megabytes in a Go binary).
    private static let sectionsRead: Set<String> = [
        ".debug_info", ".debug_abbrev", ".debug_str", ".debug_str_offsets", ".debug_line_str", ".debug_addr",
        ".debug_types",
    ]
    /// Sections read without libdw, so that they are never inflated whole (LocationListSection.swift).
    private static let locationListSectionNames: Set<String> = [".debug_loc", ".debug_loclists"]

    /// Nil when the binary has no DWARF (stripped, or built with `-ldflags=-w`).
    ///
    /// - Throws: ``Unreadable`` when it has a `.debug_info` that cannot be read.
    init?(image: ELFImage) throws {
        let debugSections = image.sections.filter { $0.name.hasPrefix(".debug_") || $0.name.hasPrefix(".zdebug_") }
        let hasEntries = debugSections.contains { $0.name == ".debug_info" || $0.name == ".zdebug_info" }
        guard hasEntries else { return nil }
        let isRead = { Self.sectionsRead.contains(Self.uncompressedName(of: $0)) }
        try Self.inflate(debugSections.filter(isRead), of: image)
        Self.hideFromLibdw(debugSections.filter { !isRead($0) })
        locationListSections = try Dictionary(
            debugSections.filter { Self.locationListSectionNames.contains(Self.uncompressedName(of: $0)) }
                .map { (Self.uncompressedName(of: $0), try LocationListSection($0, in: image)) },
            uniquingKeysWith: { first, _ in first })
        addressSection = Self.inflatedBytes(of: debugSections.first { Self.uncompressedName(of: $0) == ".debug_addr" })
        guard let dwarf = dwarf_begin_elf(image.elf, DWARF_C_READ, nil) else {
            throw Unreadable(reason: "libdw cannot read it: \(Self.libdwError())")
        }
        self.image = image
        self.dwarf = dwarf
    }

    /// `.debug_*` for GNU's compressed `.zdebug_*` too.
    private static func uncompressedName(of section: ELFImage.Section) -> String {
        ".debug_" + section.name.drop { $0 != "_" }.dropFirst()
    }

    /// The bytes libelf holds for a section once inflated; empty when there is no such section.
    private static func inflatedBytes(of section: ELFImage.Section?) -> UnsafeRawBufferPointer {
        guard let section, let data = elf_getdata(section.handle, nil), let bytes = data.pointee.d_buf else {
            return UnsafeRawBufferPointer(start: nil, count: 0)
        }
        return UnsafeRawBufferPointer(start: bytes, count: data.pointee.d_size)
    }

    /// Inflates the compressed debug sections in place (SHF_COMPRESSED `.debug_*`, or GNU's
    /// `.zdebug_*`). libdw would do it on first use, but reads a section that fails to inflate as
    /// empty and says nothing (elfutils 0.188): one flipped byte would then look like DWARF
    /// without the functions asked for.
    private static func inflate(_ sections: [ELFImage.Section], of image: ELFImage) throws {
        for section in sections {
            guard let compressed = try CompressedSection(section, in: image) else { continue }
            let status =
                compressed.isGNUStyle ? elf_compress_gnu(section.handle, 0, 0) : elf_compress(section.handle, 0, 0)
            guard status >= 0 else {
                throw Unreadable(reason: "decompressing \(section.name) failed (libelf: \(ELFImage.libelfError()))")
            }
        }
    }

    /// libdw inflates every compressed debug section it knows as it starts (elfutils 0.188), also
    /// the line tables, call frame information and address ranges Sonde never reads (3 MB of a
    /// gRPC client's 12 MB Go binary, at the moment Sonde's memory peaks) and the location lists
    /// Sonde reads itself (4.85 MB more). Their names are blanked in libelf's copy of the section
    /// headers (the file is opened read-only and never written), and libdw passes over sections
    /// it does not recognise.
    private static func hideFromLibdw(_ sections: [ELFImage.Section]) {
        for section in sections {
            var header = GElf_Shdr()
            guard gelf_getshdr(section.handle, &header) != nil else { continue }
            header.sh_name = 0   // the empty string every section-name table starts with
            _ = gelf_update_shdr(section.handle, &header)
        }
    }

    private static func libdwError() -> String {
        dwarf_errmsg(-1).map { String(cString: $0) } ?? "unknown libdw error"
    }

    deinit {
        dwarf_end(dwarf)
    }

    /// One pass over the top-level entries of every unit: every named type, and the parameters of
    /// `functions`, whose subprogram entries are found by entry address or, failing that, by name.
    /// `goRuntimeTypes` spans Go's type descriptors (`runtime.types` to `runtime.etypes`), when known.
    ///
    /// - Throws: ``Unreadable`` when libdw fails part way through the entries, whose facts would
    ///   then be incomplete in ways nobody could tell.
    func read(functions: [ELFSymbol], goRuntimeTypes: Range<UInt64>?) throws -> Facts {
        let functionsByAddress = Dictionary(functions.map { ($0.address, $0) }, uniquingKeysWith: { first, _ in first })
        let functionsByName = Dictionary(functions.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        var facts = Facts()
        // Every formal parameter found, and those of each function: their registers wait for
        // the location lists, which are read after the walk.
        var parameters: [FoundParameter] = []
        var parametersOfFunction: [String: Range<Int>] = [:]
        // An entry at the function's address wins over one that only has its name.
        var foundByAddress = Set<String>()
        var unit: OpaquePointer?
        var nextUnit: OpaquePointer?
        var unitEntry = Dwarf_Die()
        var status: Int32 = 0
        while true {
            status = dwarf_get_units(dwarf, unit, &nextUnit, nil, nil, &unitEntry, nil)
            guard status == 0, let current = nextUnit else { break }
            unit = current
            let listUnit = locationListUnit(current, entry: &unitEntry)
            forEachEntry(of: &unitEntry) { entry in
                let tag = dwarf_tag(&entry)
                if tag == Int32(DW_TAG_subprogram) {
                    var entryAddress: Dwarf_Addr = 0
                    guard dwarf_lowpc(&entry, &entryAddress) == 0 else { return }
                    let byAddress = functionsByAddress[entryAddress]
                    guard let function = byAddress ?? name(of: &entry).flatMap({ functionsByName[$0] }),
                          !foundByAddress.contains(function.name),
                          byAddress != nil || parametersOfFunction[function.name] == nil
                    else { return }
                    if byAddress != nil { foundByAddress.insert(function.name) }
                    let formals = formalParameters(of: &entry, entryAddress: entryAddress, unit: listUnit)
                    parametersOfFunction[function.name] = parameters.count..<parameters.count + formals.parameters.count
                    parameters += formals.parameters
                    facts.results[function.name] = formals.results
                    var endAddress: Dwarf_Addr = 0
                    let hasEnd = dwarf_highpc(&entry, &endAddress) == 0
                    facts.bounds[function.name] = (entryAddress, hasEnd ? endAddress : nil)
                } else if Self.typeTags.contains(tag), !isDeclaration(&entry), let name = name(of: &entry), facts.types[name] == nil,
                          let type = typeFacts(of: &entry, tag: tag, name: name, goRuntimeTypes: goRuntimeTypes) {
                    facts.types[name] = type
                }
            }
        }
        // 1 is the end of the units; -1 a unit header libdw could not read.
        if status < 0 {
            // libdw sets no error when the section it reads is empty.
            let code = dwarf_errno()
            throw Unreadable(reason: "libdw cannot read the compilation units of .debug_info"
                + (code == 0 ? "" : " (\(dwarf_errmsg(code).map { String(cString: $0) } ?? "error \(code)"))"))
        }
        if let walkError { throw Unreadable(reason: walkError) }
        let operations = try locationOperations(of: parameters)
        facts.parameters = parametersOfFunction.mapValues { range in
            range.map { Self.parameter(parameters[$0], at: operations[$0]) }
        }
        // Types passed by reference, whose pointer types are added: of every subprogram entry's
        // parameters, also of an entry that one at the function's address replaced.
        let indirectTypes = Set(zip(parameters, operations).compactMap { parameter, operations in
            Self.indirectRegister(operations) != nil && !parameter.typeName.isEmpty ? parameter.typeName : nil
        })
        for name in indirectTypes where facts.types[Self.indirectTypeName(name)] == nil {
            facts.types[Self.indirectTypeName(name)] = TypeFacts(
                name: Self.indirectTypeName(name), kind: .pointer, byteSize: Self.pointerSize, pointee: name, members: [])
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
                // A piece of a general purpose register holds at most its 8 bytes.
                guard (1...UInt64(pointerSize)).contains(operation.operand) else { return nil }
                let size = Int(operation.operand)
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
        // Piece sizes are the file's: a sum that overflows is certainly more than the value.
        let total = pieces.reduce(Optional(0)) { sum, piece in
            sum.flatMap { let (next, overflow) = $0.addingReportingOverflow(piece.size); return overflow ? nil : next }
        }
        guard total.map({ $0 > valueSize }) ?? true else { return pieces }
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
            byteSize: Self.plausibleSizes.contains(Int64(size))
                ? Int(size) : (tag == Int32(DW_TAG_pointer_type) ? Self.pointerSize : nil),
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
        guard dwarf_formudata(&attribute, &offset) == 0, Self.plausibleSizes.contains(Int64(clamping: offset)) else {
            return nil
        }
        return Int(offset)
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

    /// Parameters, with their locations at entry, and Go results, in declaration order.
    private func formalParameters(
        of subprogram: inout Dwarf_Die, entryAddress: Dwarf_Addr, unit: LocationListUnit
    ) -> (parameters: [FoundParameter], results: [Parameter]) {
        var parameters: [FoundParameter] = []
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
            parameters.append(FoundParameter(
                name: name(of: &entry) ?? "", typeName: typeName, valueSize: hasType ? layout(of: type).byteSize : nil,
                location: location(of: &entry, at: entryAddress, unit: unit)))
        }
        return (parameters, results)
    }

    /// The parameter with its registers at entry, from the operations of its location there.
    private static func parameter(_ found: FoundParameter, at operations: [DWARFOperation]?) -> Parameter {
        if let register = indirectRegister(operations), !found.typeName.isEmpty {
            // Passed by reference: the register holds its address, as a pointer's would.
            return Parameter(
                name: found.name, typeName: indirectTypeName(found.typeName),
                registers: [RegisterPiece(register: register, size: pointerSize)])
        }
        return Parameter(
            name: found.name, typeName: found.typeName,
            registers: operations.flatMap { registerPieces($0, valueSize: found.valueSize ?? pointerSize) })
    }

    /// Go lists results as formal parameters marked `DW_AT_variable_parameter`.
    private func isGoResult(_ entry: inout Dwarf_Die) -> Bool {
        var attribute = Dwarf_Attribute()
        var flag = false
        return dwarf_attr_integrate(&entry, UInt32(DW_AT_variable_parameter), &attribute) != nil
            && dwarf_formflag(&attribute, &flag) == 0 && flag
    }

    /// A value passed by reference in a register (C++ objects, Rust's larger values): its
    /// location is `DW_OP_bregN 0`, the memory the register points to.
    static func indirectRegister(_ operations: [DWARFOperation]?) -> Register? {
        guard let operations, operations.count == 1, let operation = operations.first, operation.operand == 0,
              (Int(DW_OP_breg0)...Int(DW_OP_breg31)).contains(Int(operation.atom))
        else { return nil }
        return Register(rawValue: Int(operation.atom) - Int(DW_OP_breg0))
    }

    /// The name a parameter passed by reference is given: a pointer to its type, in Sonde's
    /// spelling of pointers.
    static func indirectTypeName(_ typeName: String) -> String { "*" + typeName }

    // MARK: - Entries

    /// dwarf.h's tag constants, in the type `dwarf_tag` returns.
    private static func tags<Tag: BinaryInteger>(_ tags: Tag...) -> Set<Int32> {
        Set(tags.map { Int32($0) })
    }

    /// Calls `body` with each child of `parent` and, through namespaces (C++ and Rust nest
    /// their types and functions in them; Go has none), their children.
    private func forEachEntry(of parent: inout Dwarf_Die, _ body: (inout Dwarf_Die) -> Void) {
        forEachChild(of: &parent) { entry in
            if dwarf_tag(&entry) == Int32(DW_TAG_namespace) {
                forEachEntry(of: &entry, body)
            } else {
                body(&entry)
            }
        }
    }

    /// Calls `body` with each child of `parent`. Where libdw fails (-1, against 1 for "none"), the
    /// walk stops and ``walkError`` keeps the first failure for `read` to throw.
    private func forEachChild(of parent: inout Dwarf_Die, _ body: (inout Dwarf_Die) -> Void) {
        var child = Dwarf_Die()
        let first = dwarf_child(&parent, &child)
        guard first == 0 else {
            if first < 0 { noteWalkError(at: &parent) }
            return
        }
        while true {
            body(&child)
            var sibling = Dwarf_Die()
            let next = dwarf_siblingof(&child, &sibling)
            guard next == 0 else {
                if next < 0 { noteWalkError(at: &child) }
                return
            }
            child = sibling
        }
    }

    private func noteWalkError(at entry: inout Dwarf_Die) {
        guard walkError == nil else { return }
        let offset = String(dwarf_dieoffset(&entry), radix: 16)
        walkError = "libdw cannot read the entries after .debug_info offset 0x\(offset) (\(Self.libdwError()))"
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
