import BinaryAnalysis
import ProbePacks
import SondeABI

/// Compiles a probe's captures into the entry and return fetch programs, using the parameter
/// locations and struct layouts of its signature (from DWARF or an offset table).
struct CaptureCompiler {
    /// The record's data area.
    static let dataAreaSize = Int(SONDE_DATA_SIZE)
    /// Values one call can keep from entry to return.
    static let savedSlotCount = Int(SONDE_SAVED_SLOTS)
    /// Captures one span record tracks (bits of its `captured` mask; the top bit says an
    /// `end-span` probe ended the span).
    static let maxCaptures = Int(SONDE_MAX_CAPTURES)
    /// Ops one fetch program may have: the BPF program runs no more.
    static let maxOps = Int(SONDE_MAX_OPS)

    let function: String
    let signature: ProbeSignature
    /// Link-time addresses of the binary's functions, for type checks that compare itab method slots.
    let functionAddresses: [String: UInt64]
    private var parameters: [Parameter] { signature.parameters }
    private var results: [Parameter]? { signature.results }
    private var types: TypeCatalog { signature.types }

    private(set) var entryProgram: [FetchOp] = []
    private(set) var returnProgram: [FetchOp] = []
    /// Registers entry captures read: the entry site must come before anything overwrites them.
    private(set) var registersReadAtEntry = Set<Register>()
    private var savedSlots: [Register: Int] = [:]
    private var nextDataOffset: Int

    /// `dataOffset`: where this probe's captures start in the record (after the target's, for enrichers).
    init(function: String, signature: ProbeSignature, functionAddresses: [String: UInt64] = [:], dataOffset: Int = 0) {
        nextDataOffset = dataOffset
        self.function = function
        self.signature = signature
        self.functionAddresses = functionAddresses
    }

    mutating func compile(entry: [Capture], return returnCaptures: [Capture]) throws -> [CaptureSlot] {
        guard entry.count + returnCaptures.count <= Self.maxCaptures else {
            throw PlanProblem("a probe can have at most \(Self.maxCaptures) captures")
        }
        var slots: [CaptureSlot] = []
        var savingOps: [FetchOp] = []
        for capture in entry {
            let slot = try allocate(capture)
            entryProgram += try program(for: capture, into: slot) { register in
                registersReadAtEntry.insert(register)
                return .loadRegister(register)
            }
            slots.append(slot)
        }
        for capture in returnCaptures {
            let slot = try allocate(capture)
            returnProgram += try program(for: capture, into: slot) { register in
                // Results are live in registers at return; arguments were saved at entry.
                if case .result = capture.origin { return .loadRegister(register) }
                return try savedSlot(for: register, savingOps: &savingOps)
            }
            slots.append(slot)
        }
        // Saving goes first so no capture that stops early can skip it.
        entryProgram = savingOps + entryProgram
        return slots
    }

    /// `trace-context`: where the incoming `tracestate` goes in the record, which the
    /// trace-context program fills in when the span has a remote parent.
    mutating func traceStateSlot() throws -> CaptureSlot {
        try allocate(Capture(
            name: CaptureSlot.traceStateName, origin: .argument(""), path: [], type: .goString, ifZero: nil,
            maxLength: CaptureSlot.traceStateMaxLength, source: SourceLocation(wholeFile: "")))
    }

    /// `end-span`: the register holding, at entry, the object whose open span the probe ends.
    mutating func objectRegister(_ origin: ValueOrigin) throws -> Register {
        let register = try objectRegister(try value(origin, context: "end-span.object"), origin: origin, context: "end-span.object")
        registersReadAtEntry.insert(register)
        return register
    }

    /// `outlives-call`: starts the return program with ops that keep the span open under the
    /// object. They run first, so no capture that stops early can end a stream's span by mistake;
    /// when the dynamic type check fails they stop, and the span ends at the return.
    mutating func keepOpen(under reference: ObjectReference) throws {
        let context = "span.outlives-call"
        let value = try value(reference.origin, context: context)
        var ops: [FetchOp] = []
        if let dynamicType = reference.dynamicType {
            // Results are live in registers at return.
            ops = try assertion(dynamicType, on: value, origin: reference.origin, context: context) { .loadRegister($0) }.ops
        } else {
            ops = [.loadRegister(try objectRegister(value, origin: reference.origin, context: context))]
        }
        returnProgram = ops + [.setObject] + returnProgram
    }

    /// A pointer's register, or an interface's data word.
    private func objectRegister(_ value: Parameter, origin: ValueOrigin, context: String) throws -> Register {
        let pieces = value.registers ?? []
        if types[value.typeName]?.kind == .pointer, pieces.count == 1 { return pieces[0].register }
        if isInterface(value.typeName), pieces.count == 2 { return pieces[1].register }
        throw PlanProblem("\(context): \(origin) is \(value.typeName), not a pointer or interface in registers")
    }

    /// The register that is zero when `origin` is nil: a pointer's, or an interface's type word,
    /// which Go's `err == nil` tests (`span.ends-after-call`).
    func nilTestRegister(_ origin: ValueOrigin, context: String) throws -> Register {
        let value = try value(origin, context: context)
        let pieces = value.registers ?? []
        if types[value.typeName]?.kind == .pointer, pieces.count == 1 { return pieces[0].register }
        if isInterface(value.typeName), pieces.count == 2 { return pieces[0].register }
        throw PlanProblem("\(context): \(origin) of \(function) is \(value.typeName), not a pointer or interface in registers")
    }

    /// The ops that reach a goroutine's `*g` from the running one's (R14, Go's register ABI) along
    /// the fields of `path` (`follow-goroutine.parent`), for a program of at most `limit` ops.
    func goroutinePointer(along path: [PathStep], limit: Int, context: String) throws -> [FetchOp] {
        let (goroutine, running) = ("*runtime.g", "runtime.g")
        guard types[running] != nil else {
            throw PlanProblem("\(context): neither the binary's DWARF nor the offset table describes \(running); regenerate the table")
        }
        // R14 is the address of the running goroutine's runtime.g.
        let (ops, typeName) = try walk(path[...], from: running, ops: [.loadRegister(.r14)], context: context)
        guard typeName == goroutine else {
            throw PlanProblem("\(context): \(path.map(\.description).joined(separator: ".")) is \(typeName), not \(goroutine)")
        }
        // The running goroutine's m is the thread's M, whichever goroutine runs (g0 on the system
        // stack): the BPF program reads it once per thread.
        var program = ops + [.dereference]
        if path.first == .field("m"), let first = program.firstIndex(of: .dereference) { program[first] = .dereferencePerThread }
        guard program.count <= limit else {
            let path = path.map(\.description).joined(separator: ".")
            throw PlanProblem("\(context): \(path) needs \(program.count) ops (loads, adds, dereferences); a hand-off's program has at most \(limit)")
        }
        return program
    }

    /// The register a pointer parameter arrives in (`follow-goroutine` reads a callee's `*g`).
    func pointerRegister(_ origin: ValueOrigin, context: String) throws -> Register {
        let value = try value(origin, context: context)
        guard types[value.typeName]?.kind == .pointer, value.registers?.count == 1, let piece = value.registers?.first else {
            throw PlanProblem("\(context): \(origin) of \(function) is \(value.typeName), not a pointer in a register")
        }
        return piece.register
    }

    private mutating func savedSlot(for register: Register, savingOps: inout [FetchOp]) throws -> FetchOp {
        if let slot = savedSlots[register] { return .loadSaved(slot: slot) }
        guard savedSlots.count < Self.savedSlotCount else {
            throw PlanProblem("return captures need more than \(Self.savedSlotCount) saved registers")
        }
        let slot = savedSlots.count
        savedSlots[register] = slot
        registersReadAtEntry.insert(register)
        savingOps += [.loadRegister(register), .save(slot: slot)]
        return .loadSaved(slot: slot)
    }

    private mutating func allocate(_ capture: Capture) throws -> CaptureSlot {
        var slot = CaptureSlot(
            name: capture.name, type: capture.type, offset: nextDataOffset, maxLength: capture.maxLength,
            ifZero: capture.ifZero, origin: signature.origin)
        slot.ifAbsent = capture.ifAbsent
        nextDataOffset = slot.alignedEnd
        guard nextDataOffset <= Self.dataAreaSize else {
            throw PlanProblem("captures need more than the \(Self.dataAreaSize) bytes a span record holds; lower max-length")
        }
        return slot
    }

    /// The ops that read one capture. `load` yields the op that fetches an argument register,
    /// which differs between entry (live registers) and return (values saved at entry).
    private func program(for capture: Capture, into slot: CaptureSlot, load: (Register) throws -> FetchOp) throws -> [FetchOp] {
        let context = "capture '\(capture.name)' (\(capture.source))"
        let parameter = try value(capture.origin, context: context)
        guard let pieces = parameter.registers, !pieces.isEmpty else {
            throw PlanProblem("\(context): \(capture.origin) is not in registers")
        }
        var ops: [FetchOp] = []
        var steps = capture.path[...]
        var typeName = parameter.typeName

        if case .assertType(let assertedType)? = steps.first {
            steps = steps.dropFirst()
            let checked = try assertion(assertedType, on: parameter, origin: capture.origin, context: context, load: load)
            ops = checked.ops
            typeName = checked.pointee
        } else if let pointee = types[typeName]?.pointee, !steps.isEmpty {
            ops.append(try load(pieces[0].register))
            typeName = pointee
        } else {
            guard steps.isEmpty else {
                throw PlanProblem("\(context): \(capture.origin) is a \(typeName) held by value; paths start from pointers or interfaces")
            }
            return try ops + readRegisters(pieces, typeName: typeName, capture: capture, slot: slot, context: context, load: load)
        }

        (ops, typeName) = try walk(steps, from: typeName, ops: ops, context: context)
        try check(typeName, matches: capture.type, context: context)
        switch capture.type {
        case .goString, .stdString: ops.append(.readGoString(into: slot.offset, maxLength: slot.maxLength))
        case .rustStr, .rustString:
            ops += try rustStringPair(in: typeName, context: context) + [.readGoString(into: slot.offset, maxLength: slot.maxLength)]
        case .cString:
            // A character array is read where it is; a char * is followed first.
            ops += (typeName == "[]char" ? [] : [.dereference]) + [.readCString(into: slot.offset, maxLength: slot.maxLength)]
        case .int: ops.append(.readInteger(size: 8, into: slot.offset))
        case .int32: ops.append(.readInteger(size: 4, into: slot.offset))
        case .uint16: ops.append(.readInteger(size: 2, into: slot.offset))
        case .bool: ops.append(.readInteger(size: 1, into: slot.offset))
        case .nonNil: ops.append(.readInteger(size: 8, into: slot.offset))
        }
        return ops
    }

    /// Follows field steps from the address of a `typeName` value in memory (the working value
    /// after `ops`): the ops then leave the address of the last field, of the type returned.
    private func walk(_ steps: ArraySlice<PathStep>, from typeName: String, ops: [FetchOp], context: String) throws
        -> (ops: [FetchOp], typeName: String)
    {
        var (ops, typeName) = (ops, typeName)
        for step in steps {
            let fieldName: String
            switch step {
            case .field(let name), .findInList(let name, _, _): fieldName = name
            case .assertType: throw PlanProblem("\(context): a type assertion can only start a path")
            }
            if let pointee = types[typeName]?.pointee {
                ops.append(.dereference)
                typeName = pointee
            }
            let member = try self.member(fieldName, of: typeName, context: context)
            if member.offset != 0 {
                // Embedded and nested struct fields add up to one offset.
                if case .add(let previous)? = ops.last {
                    ops[ops.count - 1] = .add(previous + Int64(member.offset))
                } else {
                    ops.append(.add(Int64(member.offset)))
                }
            }
            typeName = member.typeName
            if case .findInList(_, let key, let value) = step {
                let node = try listNode(typeName, field: fieldName, context: context)
                let keyMember = try self.member(key, of: node.name, context: context)
                guard let keySize = types[keyMember.typeName].flatMap({ $0.kind == .base ? $0.byteSize : nil }) else {
                    throw PlanProblem("\(context): \(node.name).\(key) is \(keyMember.typeName), not an integer or character to compare")
                }
                ops += [.dereference, .findInList(linkOffset: node.link, keyOffset: keyMember.offset, keySize: keySize, equals: value)]
                typeName = node.name
            }
        }
        return (ops, typeName)
    }

    private func member(_ name: String, of typeName: String, context: String) throws -> Member {
        guard let structure = types[typeName], structure.kind == .structure else {
            throw PlanProblem("\(context): \(typeName) is not a struct with fields, cannot read '.\(name)'")
        }
        guard let member = structure.members.first(where: { $0.name == name }) else {
            throw PlanProblem("\(context): \(typeName) has no field '\(name)'")
        }
        return member
    }

    /// The list a `field[key=value]` step walks: `pointer` leads to a struct with one member
    /// pointing to its own type, the link to the next node.
    private func listNode(_ pointer: String, field: String, context: String) throws -> (name: String, link: Int) {
        guard let node = types[pointer]?.pointee, let structure = types[node], structure.kind == .structure else {
            throw PlanProblem("\(context): '\(field)[…]' walks a list, but \(field) is \(pointer), not a pointer to a struct")
        }
        let links = structure.members.filter { $0.typeName == pointer }
        guard links.count == 1 else {
            throw PlanProblem(
                "\(context): '\(field)[…]' walks a list through the member of \(node) that points to the next \(node); "
                    + (links.isEmpty ? "it has none" : "it has \(links.count) (\(links.map(\.name).joined(separator: ", ")))"))
        }
        return (node, links[0].offset)
    }

    /// `trace-context.headers`: ops leaving the headers as the working value, read at entry: a Go
    /// map's pointer, or the address of a slice's header.
    mutating func headers(_ headers: TraceContextHeaders) throws -> [FetchOp] {
        let context = "trace-context.headers (\(headers.source))"
        let parameter = try value(headers.origin, context: context)
        guard let register = parameter.registers?.first, parameter.registers?.count == 1 else {
            throw PlanProblem("\(context): \(headers.origin) is \(parameter.typeName), not a pointer or map in one register")
        }
        registersReadAtEntry.insert(register.register)
        if headers.path.isEmpty, headers.carrier == .goHeaderMap {
            try checkMap(parameter.typeName, context: context)
            return [.loadRegister(register.register)]
        }
        guard let pointee = types[parameter.typeName]?.pointee, !headers.path.isEmpty else {
            throw PlanProblem("\(context): \(headers.origin) is a \(parameter.typeName); give the path from a pointer to the headers")
        }
        let (ops, typeName) = try walk(headers.path[...], from: pointee, ops: [.loadRegister(register.register)], context: context)
        switch headers.carrier {
        case .goHeaderMap:
            try checkMap(typeName, context: context)
            return ops + [.dereference]
        case .hpackHeaderFields:
            guard typeName.hasPrefix("[]"), typeName.hasSuffix("hpack.HeaderField") else {
                throw PlanProblem("\(context): the headers have Go type \(typeName); hpack-header-fields is a []hpack.HeaderField")
            }
            return ops
        }
    }

    /// `inject-trace-context.headers`: the register holding the headers' map being written.
    mutating func mapRegister(_ origin: ValueOrigin, context: String) throws -> Register {
        let parameter = try value(origin, context: context)
        guard let register = parameter.registers?.first, parameter.registers?.count == 1 else {
            throw PlanProblem("\(context): \(origin) is \(parameter.typeName), not a map in one register")
        }
        try checkMap(parameter.typeName, context: context)
        registersReadAtEntry.insert(register.register)
        return register.register
    }

    /// `inject-trace-context.writer`: ops leaving the writer's address as the working value
    /// (stopping unless it has the asserted dynamic type), and where its buffer and count are.
    mutating func bufferedWriter(_ writer: BufferedWriter) throws -> (ops: [FetchOp], bufferOffset: Int, usedOffset: Int) {
        let context = "inject-trace-context.writer"
        let parameter = try value(writer.origin, context: context)
        let ops: [FetchOp]
        let structureName: String
        if let dynamicType = writer.dynamicType {
            (ops, structureName) = try assertion(dynamicType, on: parameter, origin: writer.origin, context: context) { .loadRegister($0) }
        } else if let pointee = types[parameter.typeName]?.pointee, let register = parameter.registers?.first {
            (ops, structureName) = ([.loadRegister(register.register)], pointee)
        } else {
            throw PlanProblem("\(context): \(writer.origin) is \(parameter.typeName), not a pointer; or assert its type, e.g. path: \"(*bufio.Writer)\"")
        }
        registersReadAtEntry.formUnion(parameter.registers?.map(\.register) ?? [])
        guard let structure = types[structureName], structure.kind == .structure else {
            throw PlanProblem("\(context): \(structureName) is not a struct")
        }
        func member(_ name: String, is expected: Set<String>) throws -> Int {
            guard let member = structure.members.first(where: { $0.name == name }) else {
                throw PlanProblem("\(context): \(structureName) has no field '\(name)'")
            }
            guard expected.contains(member.typeName) else {
                throw PlanProblem("\(context): \(structureName).\(name) is \(member.typeName), not \(expected.sorted().joined(separator: " or "))")
            }
            return member.offset
        }
        return (ops, try member(writer.buffer, is: ["[]uint8", "[]byte"]), try member(writer.used, is: ["int"]))
    }

    /// Headers must be a Go map[string][]string (e.g. net/http.Header), one pointer word.
    private func checkMap(_ typeName: String, context: String) throws {
        let known: Set<String> = ["map[string][]string", "net/http.Header", "google.golang.org/grpc/metadata.MD", "net/textproto.MIMEHeader"]
        guard known.contains(typeName) else {
            throw PlanProblem("\(context): the headers have Go type \(typeName); a go-header-map is a map[string][]string such as net/http.Header")
        }
    }

    /// `(*pkg.T)` on an interface value: ops that stop unless it holds a `*pkg.T`, then leave its data
    /// word (the pointer) as the working value; and the type it points to.
    private func assertion(
        _ assertedType: String, on value: Parameter, origin: ValueOrigin, context: String, load: (Register) throws -> FetchOp
    ) throws -> (ops: [FetchOp], pointee: String) {
        guard isInterface(value.typeName), let pieces = value.registers, pieces.count == 2 else {
            throw PlanProblem("\(context): '(\(assertedType))' needs an interface, \(origin) is \(value.typeName)")
        }
        guard let asserted = types[assertedType], let pointee = asserted.pointee else {
            throw PlanProblem("\(context): \(signature.origin) has no pointer type \(assertedType)")
        }
        let ops = [try load(pieces[0].register)] + (try dynamicTypeCheck(of: value.typeName, is: asserted, context: context))
            + [try load(pieces[1].register)]
        return (ops, pointee)
    }

    /// Ops that stop the program unless the interface whose type word is the working value holds an `asserted`.
    private func dynamicTypeCheck(of interfaceType: String, is asserted: TypeFacts, context: String) throws -> [FetchOp] {
        let isEmptyInterface = interfaceType == "interface {}"
        if let typeAddress = asserted.runtimeTypeAddress {
            // A non-empty interface holds an itab whose second word is the dynamic type.
            return (isEmptyInterface ? [] : [.add(8), .dereference]) + [.expectAddress(typeAddress, meaning: "dynamic type is \(asserted.name)")]
        }
        // Without DWARF there is no type descriptor address; the itab's first method slot (after
        // the interface, type and hash words) points at code only this dynamic type has.
        guard !isEmptyInterface, let method = asserted.itabFirstMethods?[interfaceType] else {
            throw PlanProblem("\(context): \(signature.origin) records no way to recognise \(asserted.name) inside \(interfaceType)")
        }
        guard let address = functionAddresses[method] else {
            throw PlanProblem("\(context): checking for \(asserted.name) needs \(method), which the binary does not contain")
        }
        return [.add(24), .dereference, .expectAddress(address, meaning: "dynamic type's \(method)")]
    }

    private func value(_ origin: ValueOrigin, context: String) throws -> Parameter {
        switch origin {
        case .argument(let name):
            guard let parameter = parameters.first(where: { $0.name == name }) else {
                let known = parameters.map(\.name).joined(separator: ", ")
                throw PlanProblem("\(context): \(function) has no parameter '\(name)' (it has: \(known))")
            }
            return parameter
        case .result(let index):
            guard let results else { throw PlanProblem("\(context): \(signature.origin) lists no results for \(function)") }
            guard index < results.count else {
                throw PlanProblem("\(context): \(function) has \(results.count) result(s), there is no result \(index)")
            }
            return results[index]
        }
    }

    private func readRegisters(
        _ pieces: [RegisterPiece], typeName: String, capture: Capture, slot: CaptureSlot, context: String, load: (Register) throws -> FetchOp
    ) throws -> [FetchOp] {
        // A std::string parameter is read through a reference (`const std::string& name`), and so
        // is a Rust String, which is passed by reference when passed by value.
        let throughReference = capture.type == .stdString || capture.type == .rustString
        let valueType = throughReference ? types[typeName]?.pointee ?? typeName : typeName
        try check(valueType, matches: capture.type, context: context)
        switch capture.type {
        case .goString, .rustStr:
            guard pieces.count == 2 else { throw PlanProblem("\(context): string parameter is not in two registers") }
            guard case .loadRegister = try load(pieces[0].register), case .loadRegister = try load(pieces[1].register) else {
                throw PlanProblem("\(context): string parameters can only be captured on entry")
            }
            return [.readStringRegisters(pointer: pieces[0].register, length: pieces[1].register, into: slot.offset, maxLength: slot.maxLength)]
        case .cString:
            return [try load(pieces[0].register), .readCString(into: slot.offset, maxLength: slot.maxLength)]
        case .stdString:
            return [try load(pieces[0].register), .readGoString(into: slot.offset, maxLength: slot.maxLength)]
        case .rustString:
            return [try load(pieces[0].register)] + (try rustStringPair(in: valueType, context: context))
                + [.readGoString(into: slot.offset, maxLength: slot.maxLength)]
        case .int, .int32, .uint16, .bool, .nonNil:
            // A pointer's only word, or an interface's type word: zero exactly when nil.
            return [try load(pieces[0].register), .storeValue(into: slot.offset)]
        }
    }

    /// From the address of a Rust `&str` or `String`, the ops reaching its pointer and length, side
    /// by side as the string read expects them. `&str` is {data_ptr, length}; a `String` is a
    /// `Vec<u8>` whose buffer's pointer (`buf.inner.ptr` since Rust 1.80, `buf.ptr` before) is
    /// followed by its `len` in the layouts rustc chooses on x86-64, which DWARF confirms here.
    private func rustStringPair(in typeName: String, context: String) throws -> [FetchOp] {
        func offset(_ path: [String]) -> Int? {
            var (type, total) = (typeName, 0)
            for name in path {
                guard let member = try? member(name, of: type, context: context) else { return nil }
                (type, total) = (member.typeName, total + member.offset)
            }
            return total
        }
        let pointer = typeName == "&str" ? offset(["data_ptr"]) : offset(["vec", "buf", "inner", "ptr"]) ?? offset(["vec", "buf", "ptr"])
        let length = typeName == "&str" ? offset(["length"]) : offset(["vec", "len"])
        guard let pointer, let length, length == pointer + 8 else {
            let found = "pointer at \(pointer.map(String.init) ?? "?"), length at \(length.map(String.init) ?? "?")"
            throw PlanProblem("\(context): this \(typeName)'s layout in DWARF (\(found)) is not a pointer followed by its length")
        }
        return pointer == 0 ? [] : [.add(Int64(pointer))]
    }

    private func isInterface(_ typeName: String) -> Bool {
        typeName == "interface {}" || types[typeName]?.kind == .interface
    }

    private func check(_ typeName: String, matches type: ValueType, context: String) throws {
        if type == .nonNil {
            guard isInterface(typeName) || types[typeName]?.kind == .pointer else {
                throw PlanProblem("\(context): the value has Go type \(typeName); non-nil applies to pointers and interfaces")
            }
            return
        }
        let expected: Set<String>
        switch type {
        case .goString: expected = ["string"]
        case .cString: expected = ["*char", "*int8", "*uint8", "[]char"]
        case .stdString: expected = ["std::string"]
        case .rustStr: expected = ["&str"]
        case .rustString: expected = ["String"]
        // Go's names and Sonde's C spellings, then Rust's.
        case .int: expected = ["int", "int64", "uint", "uint64", "uintptr", "i64", "u64", "isize", "usize"]
        case .int32: expected = ["int32", "uint32", "i32", "u32"]
        case .uint16: expected = ["uint16", "int16", "u16", "i16"]
        case .bool: expected = ["bool", "uint8", "int8", "u8", "i8"]
        case .nonNil: expected = []
        }
        guard expected.contains(typeName) else {
            throw PlanProblem("\(context): the value has Go type \(typeName), which is not \(type.rawValue)")
        }
    }
}
