/// The keys of C, C++ and Rust packs: the shared library (`library.soname`), the structs their
/// captures read (`types`) and each probed function's prototype (`signature`).
extension PackReader {
    static func readSoname(_ node: YAMLNode) throws -> String {
        let soname = try node.string("library.soname")
        guard soname.contains(".so"), !soname.contains("/") else {
            throw node.error("library.soname '\(soname)' must be a shared library's name as programs link it, e.g. libpq.so.5")
        }
        return soname
    }

    /// `types: { Name: { member: { offset: N, type: "C type" } } }`.
    static func readTypes(_ node: YAMLNode, language: Language?) throws -> [DeclaredType] {
        if language == .go {
            throw node.error("types belong to C, C++ and Rust packs; a Go pack reads layouts from DWARF or its offset table")
        }
        let report = node.diagnostics
        let entries = try node.mapping("types").entries
        let types = entries.compactMap { entry in
            report.attempt { () throws -> DeclaredType in
                guard CType.isIdentifier(entry.key) else { throw entry.keyNode.error("type name '\(entry.key)' is not a C identifier") }
                let memberEntries = try entry.value.mapping("type \(entry.key)").entries
                guard !memberEntries.isEmpty else { throw entry.value.error("type \(entry.key) needs at least one member") }
                let members = memberEntries.compactMap { member in report.attempt { try readMember(member, of: entry.key) } }
                guard members.count == memberEntries.count else { throw AlreadyReported() }
                return DeclaredType(name: entry.key, members: members, source: entry.keyNode.location)
            }
        }
        guard types.count == entries.count else { throw AlreadyReported() }
        return types
    }

    private static func readMember(_ entry: (key: String, keyNode: YAMLNode, value: YAMLNode), of typeName: String) throws
        -> DeclaredType.Member
    {
        let what = "member \(typeName).\(entry.key)"
        let map = try entry.value.mapping(what, allowed: ["offset", "type"])
        let offsetNode = try map.required("offset")
        let offsetText = try offsetNode.string("\(what).offset")
        let parsed = offsetText.hasPrefix("0x") ? Int(offsetText.dropFirst(2), radix: 16) : Int(offsetText)
        guard let offset = parsed, (0..<(1 << 20)).contains(offset) else {
            throw offsetNode.error("\(what).offset must be a byte offset, decimal or 0x-hexadecimal, below 1 MiB")
        }
        let typeNode = try map.required("type")
        switch CType.parse(try typeNode.string("\(what).type"), asMember: true) {
        case .success(let type): return DeclaredType.Member(name: entry.key, offset: offset, type: type)
        case .failure(let error): throw typeNode.error("\(what).type: \(error.reason)")
        }
    }

    static func readSignature(_ node: YAMLNode, of function: (name: String, isPattern: Bool)?, language: Language?) throws -> NativeSignature {
        if language == .go {
            throw node.error("signature belongs to C, C++ and Rust probes; a Go probe's parameters come from DWARF or its offset table")
        }
        guard let function else { throw AlreadyReported() }
        // A pattern's last part may itself be one (`handle_*`): then the prototype may name any function.
        let declared = NativeSignature.declaredName(of: function.name)
        let checked = function.isPattern && declared.contains("*") ? nil : declared
        switch NativeSignature.parse(try node.string("signature"), function: checked, source: node.location) {
        case .success(let signature): return signature
        case .failure(let error): throw node.error("signature: \(error.reason)")
        }
    }
}
