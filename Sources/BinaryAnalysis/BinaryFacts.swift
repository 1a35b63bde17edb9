/// What the planner needs to know about one target executable, read once and handed on as a value.
public struct BinaryFacts: Sendable, Equatable {
    public var path: String
    /// ELF type: PIE executables (ET_DYN) are loaded at a random base.
    public var isPositionIndependent: Bool
    /// Nil when the binary carries no Go build info (not a Go program).
    public var goBuild: GoBuildInfo?
    /// A shared library's `DT_SONAME` (`libpq.so.5`); nil for executables.
    public var soname: String?
    /// A shared library's version, from its file's name (`libpq.so.5.15`: `5.15`); nil when the
    /// name carries none.
    public var libraryVersion: String?
    /// Rust: the version of each crate asked for that the program was built with.
    public var crateVersions: [String: String]
    /// Whether the binary has DWARF debug info that could be read (`-ldflags=-s -w` removes it).
    public var hasDWARF: Bool
    /// Why the binary's DWARF could not be read although it has some (a damaged compressed
    /// section, say); `hasDWARF` is then false, and planning falls back as for a stripped binary.
    public var unreadableDWARF: String?
    /// The functions asked for that exist in the symbol table, by symbol name.
    public var functions: [String: FunctionFacts]
    /// Functions asked for that the binary has but that no probe may go on, by name, each with
    /// the reason: its sources (`.symtab`, `.gopclntab`, DWARF) disagree on where it starts or ends.
    public var rejectedFunctions: [String: String]
    /// For each function pattern asked for (`Handler<*>::run()`), the names of the functions it
    /// matched, in symbol-table order; their facts are in `functions` under those names.
    public var patternMatches: [String: [String]] = [:]
    /// Addresses of the data symbols asked for (e.g. Go itabs), by symbol name.
    public var dataSymbols: [String: UInt64]
    /// Every named type in DWARF, by its DWARF name (Go: `net/http.Request`, `*net/http.Request`).
    public var types: [String: TypeFacts]

    public init(
        path: String, isPositionIndependent: Bool, goBuild: GoBuildInfo?, hasDWARF: Bool,
        functions: [String: FunctionFacts], dataSymbols: [String: UInt64], types: [String: TypeFacts],
        rejectedFunctions: [String: String] = [:], unreadableDWARF: String? = nil, soname: String? = nil, libraryVersion: String? = nil,
        crateVersions: [String: String] = [:]
    ) {
        self.soname = soname
        self.libraryVersion = libraryVersion
        self.crateVersions = crateVersions
        self.path = path
        self.isPositionIndependent = isPositionIndependent
        self.goBuild = goBuild
        self.hasDWARF = hasDWARF
        self.unreadableDWARF = unreadableDWARF
        self.functions = functions
        self.rejectedFunctions = rejectedFunctions
        self.dataSymbols = dataSymbols
        self.types = types
    }
}

public struct GoBuildInfo: Sendable, Equatable {
    /// As the toolchain writes it, e.g. `go1.19.8`.
    public var goVersion: String
    /// Main module path; empty for GOPATH-mode builds.
    public var mainModule: String
    /// Modules linked in, by the path they are imported as; a replaced module (`=>`) carries the
    /// replacement's version, since that is the code in the binary.
    public var dependencies: [GoModule]

    public init(goVersion: String, mainModule: String, dependencies: [GoModule]) {
        self.goVersion = goVersion
        self.mainModule = mainModule
        self.dependencies = dependencies
    }
}

public struct GoModule: Sendable, Equatable {
    public var path: String
    public var version: String
    public init(path: String, version: String) {
        self.path = path
        self.version = version
    }
}

public struct FunctionFacts: Sendable, Equatable {
    public var name: String
    /// Virtual address from the symbol table (link-time, before any PIE relocation).
    public var address: UInt64
    public var size: UInt64
    /// Offset in the file of `address`: what uprobes attach to.
    public var fileOffset: UInt64
    /// Formal parameters from DWARF, in declaration order (Go: receiver first); nil without DWARF.
    public var parameters: [Parameter]?
    /// Go results from DWARF, in order, without register locations (DWARF gives none at the
    /// return instructions; the register ABI decides them); nil without DWARF.
    public var results: [Parameter]?
    /// The whole function body, decoded.
    public var instructions: [Instruction]
    /// Other functions of the same name, not probed (a Rust generic's other instances).
    public var namesakes = 0

    public init(
        name: String, address: UInt64, size: UInt64, fileOffset: UInt64, parameters: [Parameter]?, results: [Parameter]? = nil,
        instructions: [Instruction]
    ) {
        self.name = name
        self.address = address
        self.size = size
        self.fileOffset = fileOffset
        self.parameters = parameters
        self.results = results
        self.instructions = instructions
    }
}

public struct Parameter: Sendable, Equatable, Codable {
    public var name: String
    /// DWARF type name, e.g. `*net/http.Request`, `net/http.ResponseWriter`, `string`.
    public var typeName: String
    /// Where the value lives at the function's first instruction: one piece per register;
    /// nil when DWARF gives no register location there (e.g. passed on the stack).
    public var registers: [RegisterPiece]?

    public init(name: String, typeName: String, registers: [RegisterPiece]?) {
        self.name = name
        self.typeName = typeName
        self.registers = registers
    }
}

public struct RegisterPiece: Sendable, Equatable, Codable {
    public var register: Register
    /// Bytes of the value held in this register.
    public var size: Int
    public init(register: Register, size: Int) {
        self.register = register
        self.size = size
    }
}

/// x86-64 general purpose registers, in DWARF numbering order.
public enum Register: Int, Sendable, Equatable, CaseIterable, CustomStringConvertible, Codable {
    case rax = 0, rdx, rcx, rbx, rsi, rdi, rbp, rsp, r8, r9, r10, r11, r12, r13, r14, r15

    private static let names = ["RAX", "RDX", "RCX", "RBX", "RSI", "RDI", "RBP", "RSP", "R8", "R9", "R10", "R11", "R12", "R13", "R14", "R15"]

    public var description: String { Self.names[rawValue] }

    /// Encoded by name, so recorded tables read like the disassembly.
    public init(from decoder: Decoder) throws {
        let container = try decoder.singleValueContainer()
        let name = try container.decode(String.self)
        guard let index = Self.names.firstIndex(of: name) else {
            throw DecodingError.dataCorruptedError(in: container, debugDescription: "'\(name)' is not an x86-64 register name")
        }
        self.init(rawValue: index)!
    }

    public func encode(to encoder: Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}

public struct Instruction: Sendable, Equatable {
    public var address: UInt64
    public var fileOffset: UInt64
    public var length: Int
    public var mnemonic: String
    public var operands: String
    /// Whether the kernel's uprobe code emulates this instruction (cheap) rather than single-stepping it.
    public var kernelEmulates: Bool
    public var isReturn: Bool
    /// General purpose registers the instruction writes (full-width, sub-registers folded in).
    public var writtenRegisters: [Register]

    public init(address: UInt64, fileOffset: UInt64, length: Int, mnemonic: String, operands: String, kernelEmulates: Bool, isReturn: Bool, writtenRegisters: [Register]) {
        self.address = address
        self.fileOffset = fileOffset
        self.length = length
        self.mnemonic = mnemonic
        self.operands = operands
        self.kernelEmulates = kernelEmulates
        self.isReturn = isReturn
        self.writtenRegisters = writtenRegisters
    }

    /// `mnemonic operands`, as a disassembler prints it.
    public var text: String { operands.isEmpty ? mnemonic : "\(mnemonic) \(operands)" }
}

public struct TypeFacts: Sendable, Equatable, Codable {
    public enum Kind: String, Sendable, Equatable, Codable {
        case structure
        case pointer
        /// Go interface (two words: type/itab pointer, data pointer).
        case interface
        case base
        case other
    }
    public var name: String
    public var kind: Kind
    public var byteSize: Int?
    /// For pointers: the pointee's type name.
    public var pointee: String?
    /// For structures, and for the runtime layout behind Go interfaces and strings: members in order.
    public var members: [Member]
    /// Go: link-time address of the runtime type descriptor (DW_AT_go_runtime_type), which is
    /// what an interface value points at; lets a probe check an interface's dynamic type.
    public var runtimeTypeAddress: UInt64?
    /// Go, recorded in offset tables where runtime type addresses mean nothing: for each interface
    /// this type is asserted from, the method an itab's first slot points at. That function's
    /// address identifies the dynamic type in any build that links it.
    public var itabFirstMethods: [String: String]?

    public init(
        name: String, kind: Kind, byteSize: Int?, pointee: String?, members: [Member], runtimeTypeAddress: UInt64? = nil,
        itabFirstMethods: [String: String]? = nil
    ) {
        self.name = name
        self.kind = kind
        self.byteSize = byteSize
        self.pointee = pointee
        self.members = members
        self.runtimeTypeAddress = runtimeTypeAddress
        self.itabFirstMethods = itabFirstMethods
    }
}

public struct Member: Sendable, Equatable, Codable {
    public var name: String
    public var typeName: String
    public var offset: Int
    public init(name: String, typeName: String, offset: Int) {
        self.name = name
        self.typeName = typeName
        self.offset = offset
    }
}
