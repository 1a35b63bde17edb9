/// The name a shared library is linked by (`DT_SONAME`), which C, C++ and Rust packs name it by.
extension ELFImage {
    /// Nil for executables and for files without a dynamic section.
    var soname: String? {
        guard let dynamic = section(named: ".dynamic"), let strings = section(named: ".dynstr"),
              let entries = bytes(atFileOffset: dynamic.fileOffset, count: dynamic.size),
              let table = bytes(atFileOffset: strings.fileOffset, count: strings.size)
        else { return nil }
        let entrySize = 16  // Elf64_Dyn: d_tag, d_val
        for start in stride(from: 0, to: entries.count - entrySize + 1, by: entrySize) {
            let tag = entries.loadUnaligned(fromByteOffset: start, as: Int64.self)
            if tag == 0 { return nil }  // DT_NULL ends the table
            guard tag == 14 else { continue }  // DT_SONAME: an offset into .dynstr
            let offset = Int(clamping: entries.loadUnaligned(fromByteOffset: start + 8, as: UInt64.self))
            guard offset < table.count else { return nil }
            let name = table[offset...].prefix { $0 != 0 }
            return name.isEmpty ? nil : String(decoding: name, as: UTF8.self)
        }
        return nil
    }
}
