import BinaryAnalysis
import ProbePacks

/// A probed function's parameters, results and the types behind them, from the binary's own DWARF
/// or, for binaries built without it, from the pack's offset table.
struct ProbeSignature {
    var parameters: [Parameter]
    /// Without registers; the register ABI assigns them. Nil when the source lists no results.
    var results: [Parameter]?
    var types: TypeCatalog
    /// Shown by `sonde plan` for every capture: `DWARF`, or which table entry.
    var origin: String
    var callingConvention: CallingConvention = .go

    /// Where arguments and results are: Go's register ABI, or the System V ABI of native code.
    enum CallingConvention {
        case go, sysV
    }

    static let dwarfOrigin = "DWARF"

    /// Go results take registers from Go's register ABI: DWARF locates none at the return
    /// instructions. Native results already have theirs (RAX).
    func assigningResultRegisters() -> ProbeSignature {
        guard callingConvention == .go else { return self }
        var assigned = self
        assigned.results = results.map { GoRegisterABI.assigningRegisters(to: $0, types: types) }
        return assigned
    }

    /// A C, C++ or Rust probe's signature: the prototype its pack writes, in SysV registers; else
    /// the binary's DWARF; else, for a probe that reads nothing (a span's timing alone), none.
    static func native(of probe: Probe, in pack: ProbePack, function: FunctionFacts?, facts: BinaryFacts) throws -> ProbeSignature {
        if let declared = probe.signature {
            return SysVABI.signature(declared, types: pack.types, origin: "pack signature (\(declared.source))")
        }
        if facts.hasDWARF, let function, let parameters = function.parameters {
            return ProbeSignature(
                parameters: parameters, results: function.results, types: TypeCatalog(facts.types), origin: dwarfOrigin, callingConvention: .sysV)
        }
        guard probe.captures.isEmpty else {
            let reason = facts.hasDWARF ? "the binary's DWARF does not describe its parameters" : "the binary has no DWARF"
            throw PlanProblem(
                "\(probe.source): \(reason), so its captures need the function's prototype (signature: \"int f(const char* name)\")")
        }
        return ProbeSignature(parameters: [], results: [], types: TypeCatalog([:]), origin: "no arguments read", callingConvention: .sysV)
    }

    /// The signature of `function`, a function one of the pack's probes hooks or calls into.
    static func resolve(_ function: FunctionFacts, of pack: ProbePack, facts: BinaryFacts, table: OffsetTable?) throws -> ProbeSignature {
        if facts.hasDWARF {
            guard let parameters = function.parameters else {
                throw PlanProblem("DWARF describes no parameters for \(function.name)")
            }
            return ProbeSignature(parameters: parameters, results: function.results, types: TypeCatalog(facts.types), origin: dwarfOrigin)
        }
        // DWARF that is there but unreadable is as good as none: the table stands in, and says so.
        guard let table else {
            let tablePath = OffsetTable.path(forPackFile: pack.source.file)
            let generate = "generate the table with `swift package --allow-writing-to-package-directory generate-offset-tables`"
            if let unreadable = facts.unreadableDWARF {
                throw PlanProblem(
                    "the binary's DWARF is unreadable (\(unreadable)) and pack \(pack.name) ships no offset table "
                        + "(\(tablePath)); trace an intact build, or \(generate)")
            }
            throw PlanProblem(
                "the binary has no DWARF (built with -ldflags=-s -w) and pack \(pack.name) ships no offset table "
                    + "(\(tablePath)); trace a build without -s -w, or \(generate)")
        }
        let (entry, origin) = try entry(of: table, for: facts)
        guard let recorded = entry.functions[function.name] else {
            throw PlanProblem("the offset table entry for \(entry.goVersion) does not record \(function.name); regenerate the table")
        }
        let note = facts.unreadableDWARF.map { " (the binary's DWARF is unreadable: \($0))" } ?? ""
        return ProbeSignature(
            parameters: recorded.parameters, results: recorded.results, types: TypeCatalog(entry.types),
            origin: origin + note)
    }

    /// The table entry recorded with the binary's Go version (the same minor release when the exact
    /// patch is missing) and library version, with a description of the match.
    static func entry(of table: OffsetTable, for facts: BinaryFacts) throws -> (OffsetTable.Entry, String) {
        guard let goVersion = facts.goBuild?.goVersion, let binaryGo = Version(parsing: goVersion) else {
            throw PlanProblem("the binary's Go version is unknown, so no offset table entry can be chosen")
        }
        let recordedGo = table.entries.map(\.goVersion).reduce(into: [String]()) { if !$0.contains($1) { $0.append($1) } }
        let sameMinor = table.entries.filter { Version(parsing: $0.goVersion).map { minorRelease($0) == minorRelease(binaryGo) } ?? false }
        let exact = sameMinor.filter { $0.goVersion == goVersion }
        let sameGo = exact.isEmpty ? sameMinor : exact
        guard !sameGo.isEmpty else {
            throw PlanProblem(
                "no offsets recorded for \(goVersion) (the table has \(recordedGo.joined(separator: ", "))); trace a build without -s -w, or add this toolchain to the table")
        }
        let goNote = sameGo[0].goVersion == goVersion ? "" : " (binary: \(goVersion))"

        if table.module == "std" {
            return (sameGo[0], "offset table \(sameGo[0].goVersion)\(goNote)")
        }
        if let module = facts.goBuild?.dependencies.first(where: { $0.path == table.module }) {
            guard let match = sameGo.first(where: { $0.libraryVersion == module.version }) else {
                let recorded = Set(sameGo.map(\.libraryVersion)).sorted().joined(separator: ", ")
                throw PlanProblem("no offsets recorded for \(table.module) \(module.version) with \(goVersion) (the table has \(recorded))")
            }
            return (match, "offset table \(match.goVersion)\(goNote), \(table.module) \(match.libraryVersion)")
        }
        // GOPATH builds record no module versions: usable only when the table leaves no choice.
        let libraryVersions = Set(sameGo.map(\.libraryVersion))
        guard libraryVersions.count == 1 else {
            throw PlanProblem(
                "the binary does not say which \(table.module) it links (GOPATH build) and the table has several (\(libraryVersions.sorted().joined(separator: ", ")))")
        }
        return (sameGo[0], "offset table \(sameGo[0].goVersion)\(goNote), \(table.module) \(sameGo[0].libraryVersion) (version not in the binary)")
    }

    private static func minorRelease(_ version: Version) -> [Int] { Array(version.components.prefix(2)) }
}

/// Type lookups for one probe. It remembers what it was asked for, so an offset table records
/// only the types captures actually use.
final class TypeCatalog {
    private let types: [String: TypeFacts]
    private(set) var consulted: [String: TypeFacts] = [:]

    init(_ types: [String: TypeFacts]) {
        self.types = types
    }

    subscript(name: String) -> TypeFacts? {
        let type = types[name]
        if let type { consulted[name] = type }
        return type
    }
}
