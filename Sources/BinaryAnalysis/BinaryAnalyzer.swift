import CLibELF
import Glibc

/// Reads a target executable: ELF symbols (or Go's function table when stripped), Go build info,
/// DWARF, and decoded instructions.
public enum BinaryAnalyzer {
    /// The program's build id (Go's, else the GNU linker's), prefixed by its kind; nil when the
    /// file has none or is no ELF file. Reading it costs the ELF headers only, not an analysis.
    public static func buildID(path: String) -> String? {
        (try? ELFImage(path: path))?.buildID
    }

    /// Analyses `path`, decoding the named functions and resolving the named data symbols, and
    /// finding which version of each of `crates` (Rust) it was built with.
    /// Missing functions or symbols are simply absent from the result; functions whose sources
    /// disagree on their bounds are in ``BinaryFacts/rejectedFunctions`` instead (FunctionBounds.swift).
    /// DWARF that cannot be read is left unused and said why in ``BinaryFacts/unreadableDWARF``.
    ///
    /// - Throws: `BinaryAnalysisError` for unreadable, truncated, corrupt or non-ELF files.
    /// `functionPatterns` (FunctionNamePattern) stand for every function they match, found as if named.
    public static func analyze(
        path: String, functions: [String], functionPatterns: [String] = [], dataSymbols: [String], crates: Set<String> = []
    ) throws -> BinaryFacts {
        // What the analysis freed goes back to the system, not only to malloc's free lists: the
        // agent's peak memory is its analysis plus what it holds after (about 0.1 MiB less).
        defer { malloc_trim(0) }
        let image = try ELFImage(path: path)
        let patterns = Set(functionPatterns).map(FunctionNamePattern.init)
        let named = Set(functions)
        let (symbols, patternMatches) = image.definedSymbols(
            named: named.union(dataSymbols + [goTypesStart, goTypesEnd]), matching: patterns)
        // A pattern stands for the functions it matches, analysed as if named.
        let wanted = named.union(patternMatches.values.joined())
        let functionSymbols = symbols.filter { wanted.contains($0.key) && $0.value.isFunction }
        let goBuild = try GoBuildInfoReader.read(from: image)
        // Go's function table: what stripped binaries (-ldflags=-s -w) keep of their functions, and
        // the authority on where each starts in any Go binary.
        let goFunctionTable = image.lookUpGoFunctions(named: wanted)
        let soname = image.soname
        let crateVersions = image.crateVersions(named: crates)
        image.releaseReadPages()

        var unreadableDWARF: String?
        var dwarfFacts: DWARFReader.Facts?
        do {
            let candidates = wanted.sorted().compactMap { functionSymbols[$0] ?? goFunctionTable?[$0] }
            // DWARF is read through an image of its own, released before capstone is loaded:
            // the debug sections it inflates (megabytes) and the disassembler (megabytes more)
            // are never in memory together.
            dwarfFacts = try DWARFReader(image: try ELFImage(path: path))?.read(
                functions: candidates, goRuntimeTypes: goTypeDescriptors(in: symbols))
        } catch let unreadable as DWARFReader.Unreadable {
            unreadableDWARF = unreadable.reason
        }
        let decoder = try InstructionDecoder()

        var functionFacts: [String: FunctionFacts] = [:]
        var rejectedFunctions: [String: String] = [:]
        for name in wanted {
            let bounds = FunctionBounds.check(
                name, symbol: functionSymbols[name], goFunctionTable: goFunctionTable,
                isGo: goBuild != nil || goFunctionTable != nil, dwarf: dwarfFacts?.bounds[name])
            switch bounds {
            case .absent:
                continue
            case .rejected(let reason):
                rejectedFunctions[name] = reason
            case .agreed(let address, let size):
                // A function must have its bytes in the file, in code, for uprobes to attach to it.
                guard let fileOffset = image.fileOffset(ofCode: address..<address + size),
                      let body = image.bytes(atFileOffset: fileOffset, count: size)
                else {
                    let code = "0x\(String(address, radix: 16))-0x\(String(address + size, radix: 16))"
                    rejectedFunctions[name] =
                        "\(name): its code (\(code)) is not in an executable segment of the file; no probe is placed on it"
                    continue
                }
                functionFacts[name] = FunctionFacts(
                    name: name, address: address, size: size, fileOffset: fileOffset,
                    parameters: dwarfFacts?.parameters[name],
                    results: dwarfFacts?.results[name],
                    instructions: decoder.decode(body, address: address, fileOffset: fileOffset))
                functionFacts[name]?.namesakes = functionSymbols[name]?.namesakes ?? 0
            }
        }
        var facts = BinaryFacts(
            path: path,
            isPositionIndependent: image.isPositionIndependent,
            goBuild: goBuild,
            hasDWARF: dwarfFacts != nil,
            functions: functionFacts,
            dataSymbols: dataSymbols.reduce(into: [:]) { addresses, name in addresses[name] = symbols[name]?.address },
            types: dwarfFacts?.types ?? [:],
            rejectedFunctions: rejectedFunctions,
            unreadableDWARF: unreadableDWARF,
            soname: soname,
            libraryVersion: soname == nil ? nil : libraryVersion(fileAt: path), crateVersions: crateVersions)
        facts.patternMatches = Dictionary(uniqueKeysWithValues: patterns.map { ($0.text, patternMatches[$0] ?? []) })
        return facts
    }

    /// What follows `.so.` in the name of the file `path` leads to (through symbolic links:
    /// `libpq.so.5` names `libpq.so.5.15`).
    static func libraryVersion(fileAt path: String) -> String? {
        guard let resolved = realpath(path, nil) else { return nil }
        defer { free(resolved) }
        let name = String(cString: resolved).split(separator: "/").last.map(String.init) ?? ""
        let parts = name.split(separator: ".", omittingEmptySubsequences: false)
        guard let so = parts.firstIndex(of: "so"), so + 1 < parts.count else { return nil }
        return parts[(so + 1)...].joined(separator: ".")
    }

    /// Symbols bounding Go's type descriptors, which Go's DWARF locates types relative to.
    private static let goTypesStart = "runtime.types"
    private static let goTypesEnd = "runtime.etypes"

    private static func goTypeDescriptors(in symbols: [String: ELFSymbol]) -> Range<UInt64>? {
        guard let start = symbols[goTypesStart]?.address, let end = symbols[goTypesEnd]?.address, start < end else { return nil }
        return start..<end
    }
}
