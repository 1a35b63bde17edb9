import CLibELF

/// One defined symbol from the ELF symbol table.
struct ELFSymbol {
    var name: String
    var address: UInt64
    var size: UInt64
    var isFunction: Bool
}

extension ELFImage {
    /// The defined symbols among `names`, from `.symtab` or, in a stripped binary, `.dynsym`.
    /// When a name is defined twice (C `static`s in several files), the first one wins.
    func definedSymbols(named names: Set<String>) -> [String: ELFSymbol] {
        guard !names.isEmpty,
              let table = section(ofType: SHT_SYMTAB) ?? section(ofType: SHT_DYNSYM),
              table.entrySize > 0,
              let data = elf_getdata(table.handle, nil)
        else { return [:] }

        var found: [String: ELFSymbol] = [:]
        for index in 0..<Int32(table.size / table.entrySize) {
            var symbol = GElf_Sym()
            guard gelf_getsym(data, index, &symbol) != nil,
                  symbol.st_shndx != UInt16(SHN_UNDEF),
                  let cName = elf_strptr(elf, Int(table.link), Int(symbol.st_name))
            else { continue }
            let name = String(cString: cName)
            guard names.contains(name), found[name] == nil else { continue }
            let symbolType = Int32(symbol.st_info & 0xf)
            found[name] = ELFSymbol(
                name: name, address: symbol.st_value, size: symbol.st_size, isFunction: symbolType == STT_FUNC)
        }
        return found
    }

    fileprivate func section(ofType type: Int32) -> Section? {
        sections.first { $0.type == UInt32(type) }
    }
}

extension ELFImage {
    /// The function symbol that starts exactly at `address`.
    func functionSymbol(at address: UInt64) -> ELFSymbol? {
        guard let table = section(ofType: SHT_SYMTAB), table.entrySize > 0, let data = elf_getdata(table.handle, nil) else { return nil }
        for index in 0..<Int32(table.size / table.entrySize) {
            var symbol = GElf_Sym()
            guard gelf_getsym(data, index, &symbol) != nil, symbol.st_value == address, Int32(symbol.st_info & 0xf) == STT_FUNC,
                  let cName = elf_strptr(elf, Int(table.link), Int(symbol.st_name))
            else { continue }
            return ELFSymbol(name: String(cString: cName), address: address, size: symbol.st_size, isFunction: true)
        }
        return nil
    }
}
