/// Reads a target executable: ELF symbols (or Go's function table when stripped), Go build info,
/// DWARF, and decoded instructions.
public enum BinaryAnalyzer {
    /// Analyses `path`, decoding the named functions and resolving the named data symbols.
    /// Missing functions or symbols are simply absent from the result; unreadable or non-ELF
    /// files throw `BinaryAnalysisError`.
    public static func analyze(path: String, functions: [String], dataSymbols: [String]) throws -> BinaryFacts {
        let image = try ELFImage(path: path)
        var symbols = image.definedSymbols(named: Set(functions + dataSymbols + [goTypesStart, goTypesEnd]))
        // Stripped Go binaries (-ldflags=-s -w) keep function names and bounds in their pclntab.
        let unresolved = Set(functions).subtracting(symbols.keys)
        if !unresolved.isEmpty {
            symbols.merge(image.goFunctions(named: unresolved)) { symbol, _ in symbol }
        }
        let goBuild = try GoBuildInfoReader.read(from: image)
        let decoder = try InstructionDecoder()

        // A function must have bytes in the file for uprobes to attach to it.
        let locatedFunctions = functions.compactMap { name -> (symbol: ELFSymbol, fileOffset: UInt64)? in
            guard let symbol = symbols[name], symbol.isFunction,
                  let fileOffset = image.fileOffset(ofAddress: symbol.address)
            else { return nil }
            return (symbol, fileOffset)
        }
        let dwarf = DWARFReader(image: image)
        let dwarfFacts = dwarf?.read(functions: locatedFunctions.map(\.symbol), goRuntimeTypes: goTypeDescriptors(in: symbols))

        var functionFacts: [String: FunctionFacts] = [:]
        for (symbol, fileOffset) in locatedFunctions {
            let body = image.bytes(atFileOffset: fileOffset, count: symbol.size)
            functionFacts[symbol.name] = FunctionFacts(
                name: symbol.name, address: symbol.address, size: symbol.size, fileOffset: fileOffset,
                parameters: dwarfFacts?.parameters[symbol.name],
                results: dwarfFacts?.results[symbol.name],
                instructions: body.map { decoder.decode($0, address: symbol.address, fileOffset: fileOffset) } ?? [])
        }
        return BinaryFacts(
            path: path,
            isPositionIndependent: image.isPositionIndependent,
            goBuild: goBuild,
            hasDWARF: dwarfFacts != nil,
            functions: functionFacts,
            dataSymbols: dataSymbols.reduce(into: [:]) { addresses, name in addresses[name] = symbols[name]?.address },
            types: dwarfFacts?.types ?? [:])
    }

    /// Symbols bounding Go's type descriptors, which Go's DWARF locates types relative to.
    private static let goTypesStart = "runtime.types"
    private static let goTypesEnd = "runtime.etypes"

    private static func goTypeDescriptors(in symbols: [String: ELFSymbol]) -> Range<UInt64>? {
        guard let start = symbols[goTypesStart]?.address, let end = symbols[goTypesEnd]?.address, start < end else { return nil }
        return start..<end
    }
}
