/// Where one function's code starts and ends, once every source the binary has agrees on it.
///
/// A uprobe must sit on the first byte of an instruction: one inside an instruction corrupts it,
/// and the program dies (SIGSEGV, SIGILL) when it gets there. Instructions are known only by
/// decoding from the function's first byte, so that byte must be right, and the end must be right
/// for every return to be found and none taken from the next function. `.symtab` is not what runs:
/// Go never reads it, so a symbol moved by a tool leaves a program that works. Go's own function
/// table (`.gopclntab`), which the runtime's tracebacks and stack maps depend on, is the authority
/// for Go; DWARF's `DW_AT_low_pc`/`DW_AT_high_pc`, where present, must agree as well.
enum FunctionBounds {
    enum Verdict: Equatable {
        /// No source has the function.
        case absent
        /// Start and size that every source agrees on.
        case agreed(address: UInt64, size: UInt64)
        /// The sources disagree, or the authority is missing; the reason is phrased for the user.
        case rejected(String)
    }

    /// Checks `name`'s bounds across the binary's sources.
    ///
    /// - Parameters:
    ///   - symbol: its `.symtab` (or `.dynsym`) entry, when that is a function.
    ///   - goFunctionTable: nil when the binary has no readable Go function table; otherwise the
    ///     table's functions among those asked for (a size there runs to the next function).
    ///   - isGo: whether the binary is a Go program, which must then have a function table.
    ///   - dwarf: the start and, when DWARF gives one, the end of the function's DWARF entry.
    /// - Returns: ``Verdict/agreed(address:size:)`` with the exact size where `.symtab` or DWARF
    ///   gives one, else up to the next function.
    static func check(
        _ name: String, symbol: ELFSymbol?, goFunctionTable: [String: ELFSymbol]?, isGo: Bool,
        dwarf: (start: UInt64, end: UInt64?)?
    ) -> Verdict {
        let tableEntry = goFunctionTable?[name]
        guard symbol != nil || tableEntry != nil else { return .absent }
        if isGo, let symbol, tableEntry == nil {
            let claim = "\(name): .symtab puts it at 0x\(hex(symbol.address)), but"
            return .rejected(
                goFunctionTable == nil
                    ? "\(claim) this Go program's function table (.gopclntab) is missing or unreadable, so that address "
                        + "cannot be checked; no probe is placed on it (the file may be damaged)"
                    : "\(claim) .gopclntab, Go's function table, does not list it; no probe is placed on an address "
                        + "only one source vouches for (the file may be damaged)")
        }

        let starts = [
            symbol.map { (Self.symbolTable, $0.address) }, tableEntry.map { (Self.goTable, $0.address) },
            dwarf.map { ("DWARF", $0.start) },
        ].compactMap { $0 }
        let start = starts[0].1
        guard starts.allSatisfy({ $0.1 == start }) else {
            let claims = starts.map { "\($0.0): 0x\(hex($0.1))" }.joined(separator: "; ")
            return .rejected(
                "\(name): the binary disagrees with itself on where it starts (\(claims)); a probe inside an instruction "
                    + "would crash the program, so none is placed on it \(Self.alteredHint)")
        }

        // .symtab and DWARF say where the code ends; the function table where the next function starts.
        let symbolEnd = symbol.flatMap { $0.size == 0 ? nil : endAddress(start, $0.size) }
        let tableEnd = tableEntry.flatMap { endAddress(start, $0.size) }
        let exactEnds = [symbolEnd.map { (Self.symbolTable, $0) }, dwarf?.end.map { ("DWARF", $0) }].compactMap { $0 }
        let overflows =
            (symbol.map { $0.size != 0 && symbolEnd == nil } ?? false) || (tableEntry != nil && tableEnd == nil)
        if exactEnds.isEmpty, tableEntry == nil, !overflows {
            return .rejected(
                "\(name): .symtab gives it no size and no other source says where it ends; no probe is placed on it")
        }
        let end = exactEnds.first?.1 ?? tableEnd
        guard let end, !overflows, end >= start,
            exactEnds.allSatisfy({ $0.1 == end }), tableEnd.map({ end <= $0 }) ?? true
        else {
            var claims: [String] = []
            if let symbol {
                let claim =
                    symbol.size == 0
                    ? "no size"
                    : symbolEnd.map { "0x\(hex($0))" } ?? "0x\(hex(symbol.size)) bytes, past the top of memory"
                claims.append("\(Self.symbolTable): \(claim)")
            }
            if tableEntry != nil {
                claims.append(
                    "\(Self.goTable): the next function at "
                        + (tableEnd.map { "0x\(hex($0))" } ?? "an address past the top of memory"))
            }
            if let dwarfEnd = dwarf?.end {
                claims.append("DWARF: 0x\(hex(dwarfEnd))")
            }
            return .rejected(
                "\(name): the binary disagrees with itself on where it ends (\(claims.joined(separator: "; "))); "
                    + "return probes past its end would land in other code, so none is placed on it \(Self.alteredHint)")
        }
        return .agreed(address: start, size: end - start)
    }

    private static let symbolTable = ".symtab"
    private static let goTable = ".gopclntab, Go's function table"
    private static let alteredHint = "(was the file altered after linking?)"

    private static func endAddress(_ start: UInt64, _ size: UInt64) -> UInt64? {
        let (end, overflow) = start.addingReportingOverflow(size)
        return overflow ? nil : end
    }

    private static func hex(_ value: UInt64) -> String { String(value, radix: 16) }
}
