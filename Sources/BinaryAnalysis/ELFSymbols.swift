import CLibELF

/// One defined symbol from the ELF symbol table.
struct ELFSymbol {
    var name: String
    var address: UInt64
    var size: UInt64
    var isFunction: Bool
    /// Other symbols of the same name at other addresses (C `static`s, instances of a Rust
    /// generic, which demangle alike); only this first one is used.
    var namesakes = 0
}

extension ELFImage {
    /// The defined symbols among `names`, from `.symtab` or, in a stripped binary, `.dynsym`.
    /// When a name is defined twice (C `static`s in several files, a C++ constructor's complete
    /// and base variants), the first one wins. C++ and Rust names are matched demangled.
    func definedSymbols(named names: Set<String>) -> [String: ELFSymbol] {
        definedSymbols(named: names, matching: []).symbols
    }

    /// The same, with the names of the function symbols each pattern matches (in table order)
    /// found too; those names are keys of `symbols`.
    func definedSymbols(named names: Set<String>, matching patterns: [FunctionNamePattern])
        -> (symbols: [String: ELFSymbol], matches: [FunctionNamePattern: [String]])
    {
        let demangling = names.contains(where: Demangler.isDemangledName) || patterns.contains { Demangler.isDemangledName($0.text) }
        guard !names.isEmpty || !patterns.isEmpty,
              let table = section(ofType: SHT_SYMTAB) ?? section(ofType: SHT_DYNSYM),
              case let (data, count)? = symbolData(of: table)
        else { return ([:], [:]) }

        var found: [String: ELFSymbol] = [:]
        var matches: [FunctionNamePattern: [String]] = [:]
        for index in 0..<count {
            var symbol = GElf_Sym()
            guard gelf_getsym(data, index, &symbol) != nil,
                  symbol.st_shndx != UInt16(SHN_UNDEF),
                  let cName = elf_strptr(elf, Int(table.link), Int(symbol.st_name))
            else { continue }
            var name = String(cString: cName)
            if demangling, !names.contains(name), let readable = Demangler.readableName(ofSymbol: cName) { name = readable }
            let isFunction = Int32(symbol.st_info & 0xf) == STT_FUNC
            let matching = isFunction ? patterns.filter { $0.matches(name) } : []
            guard names.contains(name) || !matching.isEmpty else { continue }
            for pattern in matching where !(matches[pattern]?.contains(name) ?? false) { matches[pattern, default: []].append(name) }
            if found[name] != nil {
                if found[name]?.address != symbol.st_value { found[name]?.namesakes += 1 }
                continue
            }
            found[name] = ELFSymbol(name: name, address: symbol.st_value, size: symbol.st_size, isFunction: isFunction)
        }
        return (found, matches)
    }

    fileprivate func section(ofType type: Int32) -> Section? {
        sections.first { $0.type == UInt32(type) }
    }

    /// The table's data and its number of entries; nil unless its entries are `Elf64_Sym`s. The
    /// size is the file's, already checked to lie inside it, and gelf_getsym checks each index.
    fileprivate func symbolData(of table: Section) -> (data: UnsafeMutablePointer<Elf_Data>, count: Int32)? {
        guard table.entrySize == UInt64(MemoryLayout<Elf64_Sym>.size),
              let data = elf_getdata(table.handle, nil)
        else { return nil }
        return (data, Int32(clamping: table.size / table.entrySize))
    }
}

extension ELFImage {
    /// The function symbol that starts exactly at `address`.
    func functionSymbol(at address: UInt64) -> ELFSymbol? {
        guard let table = section(ofType: SHT_SYMTAB), case let (data, count)? = symbolData(of: table) else {
            return nil
        }
        for index in 0..<count {
            var symbol = GElf_Sym()
            guard gelf_getsym(data, index, &symbol) != nil, symbol.st_value == address, Int32(symbol.st_info & 0xf) == STT_FUNC,
                  let cName = elf_strptr(elf, Int(table.link), Int(symbol.st_name))
            else { continue }
            return ELFSymbol(name: String(cString: cName), address: address, size: symbol.st_size, isFunction: true)
        }
        return nil
    }
}
