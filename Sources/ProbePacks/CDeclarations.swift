import Foundation

/// What a C, C++ or Rust pack writes down about a library that ships without debug info: the
/// prototypes of the functions it probes and the struct members its captures read.

/// A probed function's C prototype, e.g. `PGresult *PQexec(PGconn *conn, const char *query)`.
/// Types are kept in Sonde's spelling (see ``CType``), so planning treats them as it treats
/// types read from DWARF.
public struct NativeSignature: Sendable, Equatable {
    public struct Parameter: Sendable, Equatable {
        public var name: String
        public var type: CType
        public init(name: String, type: CType) {
            self.name = name
            self.type = type
        }
    }
    /// Nil for `void`.
    public var result: CType?
    public var parameters: [Parameter]
    public var source: SourceLocation
    public init(result: CType?, parameters: [Parameter], source: SourceLocation) {
        self.result = result
        self.parameters = parameters
        self.source = source
    }
}

/// A struct a pack describes member by member (only the members its captures read).
public struct DeclaredType: Sendable, Equatable {
    public struct Member: Sendable, Equatable {
        public var name: String
        public var offset: Int
        public var type: CType
        public init(name: String, offset: Int, type: CType) {
            self.name = name
            self.offset = offset
            self.type = type
        }
    }
    public var name: String
    public var members: [Member]
    public var source: SourceLocation
    public init(name: String, members: [Member], source: SourceLocation) {
        self.name = name
        self.members = members
        self.source = source
    }
}

/// A C type in Sonde's spelling: `*` before a pointer's pointee (`*PGconn`, `*char`), sized
/// integers for C's integer types (`int` is `int32`, `size_t` is `uint64`: x86-64 SysV sizes),
/// and qualifiers (`const`, `struct`, …) dropped. Struct and typedef names stay as written,
/// C++'s qualified ones too (`httplib::Request`); a C++ reference is the pointer it is in the ABI.
public struct CType: Sendable, Equatable, Hashable, CustomStringConvertible {
    /// The spelled name, e.g. `*char`.
    public var name: String

    public init(name: String) { self.name = name }

    public var description: String { name }

    /// Bytes of a base type this spelling names, nil for pointers' pointees and named types.
    public static let baseSizes: [String: Int] = [
        "char": 1, "int8": 1, "uint8": 1, "bool": 1, "int16": 2, "uint16": 2, "int32": 4, "uint32": 4,
        "int64": 8, "uint64": 8, "float32": 4, "float64": 8,
    ]

    /// C's integer type names and the sized names they stand for on x86-64.
    static let synonyms: [String: String] = [
        "signed char": "int8", "int8_t": "int8", "unsigned char": "uint8", "uint8_t": "uint8",
        "short": "int16", "short int": "int16", "signed short": "int16", "int16_t": "int16",
        "unsigned short": "uint16", "unsigned short int": "uint16", "uint16_t": "uint16",
        "int": "int32", "signed": "int32", "signed int": "int32", "int32_t": "int32",
        "unsigned": "uint32", "unsigned int": "uint32", "uint32_t": "uint32",
        "long": "int64", "long int": "int64", "long long": "int64", "long long int": "int64", "signed long": "int64",
        "int64_t": "int64", "ssize_t": "int64", "intptr_t": "int64", "ptrdiff_t": "int64", "off_t": "int64",
        "unsigned long": "uint64", "unsigned long int": "uint64", "unsigned long long": "uint64", "uint64_t": "uint64",
        "size_t": "uint64", "uintptr_t": "uint64",
        "_Bool": "bool", "float": "float32", "double": "float64",
    ]
    static let qualifiers: Set<String> = ["const", "volatile", "restrict", "struct", "union", "enum"]

    /// Parses a type such as `const char *` or `unsigned long`; nil with the reason when it is
    /// not one (function pointers and by-value `void` are not). A struct member may be a
    /// character array held in place (`char[]`, `char[64]`, spelled `[]char`): a c-string is
    /// read at its address; other arrays are refused.
    public static func parse(_ text: String, asMember: Bool = false) -> Result<CType, CDeclarationError> {
        if asMember, let open = text.firstIndex(of: "["), text.hasSuffix("]") {
            let length = text[text.index(after: open)..<text.index(before: text.endIndex)].trimmingCharacters(in: .whitespaces)
            guard length.isEmpty || Int(length) != nil,
                  case .success(let element) = parse(String(text[..<open])), ["char", "int8", "uint8"].contains(element.name)
            else {
                return .failure(CDeclarationError("'\(text)': the only arrays Sonde reads are character arrays (char[] or char[N]), as c-string"))
            }
            return .success(CType(name: "[]char"))
        }
        var words: [String] = []
        var pointers = 0
        var previous = ""
        for token in tokens(text) {
            defer { previous = token }
            if token == "*" || token == "&" {
                // `T&&` is one reference, as `T&` is.
                if !(token == "&" && previous == "&") { pointers += 1 }
            } else if pointers > 0, !qualifiers.contains(token) {
                return .failure(CDeclarationError("'\(text)': nothing but '*', '&' and const may follow a '*' or '&'"))
            } else if isIdentifier(token) {
                if !qualifiers.contains(token) { words.append(token) }
            } else {
                return .failure(CDeclarationError(
                    "'\(text)' is not a C type Sonde reads ('\(token)' is not allowed: no function pointers, and arrays only as struct members)"))
            }
        }
        guard !words.isEmpty else { return .failure(CDeclarationError("'\(text)' names no type")) }
        let base = words.joined(separator: " ")
        let spelled = synonyms[base] ?? base
        guard words.count == 1 || synonyms[base] != nil else {
            return .failure(CDeclarationError("'\(text)': '\(base)' is not a C type name"))
        }
        if spelled == "void", pointers == 0 { return .failure(CDeclarationError("'void' is no value's type")) }
        return .success(CType(name: String(repeating: "*", count: pointers) + spelled))
    }

    /// Identifiers (C++'s qualified ones whole) and `*`, in order; anything else is a token of its own.
    static func tokens(_ text: String) -> [String] {
        var tokens: [String] = []
        var current = ""
        for character in text {
            if character.isLetter || character.isNumber || character == "_" || character == ":" {
                current.append(character)
                continue
            }
            if !current.isEmpty { tokens.append(current) }
            current = ""
            if !character.isWhitespace { tokens.append(String(character)) }
        }
        if !current.isEmpty { tokens.append(current) }
        return tokens
    }

    /// A C identifier, or a C++ qualified name (`std::string`).
    static func isIdentifier(_ token: String) -> Bool {
        token.components(separatedBy: "::").allSatisfy { part in
            guard let first = part.first, first.isLetter || first == "_" else { return false }
            return part.allSatisfy { $0.isLetter || $0.isNumber || $0 == "_" }
        }
    }
}

extension NativeSignature {
    /// The name a prototype of `function` declares: a C function's own, the last part of a C++ or
    /// Rust one's demangled name (`routing` for `httplib::Server::routing(httplib::Request&, …)`).
    public static func declaredName(of function: String) -> String {
        let qualified = function.firstIndex(of: "(").map { function[..<$0] } ?? function[...]
        let last = qualified.components(separatedBy: "::").last ?? String(qualified)
        return String(last.prefix { $0 != "<" })
    }

    /// Parses `RESULT NAME(TYPE NAME, …)`; every parameter needs a name, which captures use.
    /// `function`, when given, is the name the prototype must declare (see ``declaredName(of:)``).
    public static func parse(_ text: String, function: String?, source: SourceLocation) -> Result<NativeSignature, CDeclarationError> {
        guard let open = text.firstIndex(of: "("), text.trimmingTrailingSpaces.hasSuffix(")") else {
            return .failure(CDeclarationError("'\(text)' is not a prototype like 'int f(const char *name)'"))
        }
        let head = String(text[..<open])
        let close = text.lastIndex(of: ")")!
        let list = String(text[text.index(after: open)..<close])
        guard case .success(let (resultText, name)) = splitName(head), function.map({ name == $0 }) ?? true else {
            let shown = function ?? "f"
            return .failure(CDeclarationError("the prototype must declare the probed function \(shown), as in '... \(shown)(...)'"))
        }
        var result: CType?
        if CType.tokens(resultText) != ["void"] {
            switch CType.parse(resultText) {
            case .success(let type): result = type
            case .failure(let error): return .failure(CDeclarationError("result: \(error.reason)"))
            }
        }
        var parameters: [Parameter] = []
        let pieces = list.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
        if !(pieces.count == 1 && ["", "void"].contains(CType.tokens(pieces[0]).joined())) {
            for (index, piece) in pieces.enumerated() {
                let split = splitName(piece)
                guard case .success(let (typeText, parameterName)) = split else {
                    return .failure(CDeclarationError("parameter \(index + 1) ('\(piece.trimmingSpaces)') needs a type and a name"))
                }
                switch CType.parse(typeText) {
                case .success(let type): parameters.append(Parameter(name: parameterName, type: type))
                case .failure(let error): return .failure(CDeclarationError("parameter '\(parameterName)': \(error.reason)"))
                }
                if parameters.dropLast().contains(where: { $0.name == parameterName }) {
                    return .failure(CDeclarationError("two parameters are named '\(parameterName)'"))
                }
            }
        }
        return .success(NativeSignature(result: result, parameters: parameters, source: source))
    }

    /// A declaration's type, as written, and its last identifier, the declared name.
    private static func splitName(_ text: String) -> Result<(String, String), CDeclarationError> {
        let tokens = CType.tokens(text)
        guard let name = tokens.last, CType.isIdentifier(name), tokens.count > 1, !CType.qualifiers.contains(name),
              let range = text.range(of: name, options: .backwards)
        else {
            return .failure(CDeclarationError("no name in '\(text)'"))
        }
        return .success((String(text[..<range.lowerBound]).trimmingSpaces, name))
    }
}

/// Why a pack's C declaration cannot be read.
public struct CDeclarationError: Error, Equatable {
    public let reason: String
    init(_ reason: String) { self.reason = reason }
}

extension String {
    var trimmingSpaces: String { String(drop(while: \.isWhitespace).reversed().drop(while: \.isWhitespace).reversed()) }
    fileprivate var trimmingTrailingSpaces: String { String(reversed().drop(while: \.isWhitespace).reversed()) }
}
