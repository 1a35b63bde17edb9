import BinaryAnalysis
import Foundation
import Planning
import ProbePacks

/// The stages that need no root: packs × binary → attach plan.
public enum Planner {
    public static func plan(executable: String, packs: [ProbePack], placement: SitePlacement = .costAware) throws -> AttachPlan {
        let (tables, unusable) = offsetTables(for: packs)
        let facts = try BinaryAnalyzer.analyze(
            path: executable, functions: PlanCompiler.functionsNeeded(by: packs, offsetTables: tables),
            functionPatterns: PlanCompiler.functionPatterns(in: packs), dataSymbols: [],
            crates: Set(packs.filter { $0.language == .rust }.map(\.library.module)))
        return PlanCompiler.compile(packs: packs, facts: facts, offsetTables: tables, unusableTables: unusable, placement: placement)
    }

    /// The plans for one running process: the executable's, for the packs that probe programs,
    /// and one per shared library a pack names (`library.soname`) that the process maps. The
    /// probes of a library the process does not map are in the executable plan's skipped
    /// probes, as functions the process does not have.
    public static func plans(
        forProcess pid: Int32, executable: String, packs: [ProbePack], placement: SitePlacement = .costAware, procRoot: String = "/proc"
    ) throws -> (executable: AttachPlan, libraries: [AttachPlan]) {
        let librarySonames = Set(packs.compactMap(\.library.soname))
        var executablePlan = try plan(executable: executable, packs: packs.filter { $0.library.soname == nil }, placement: placement)
        var libraries: [AttachPlan] = []
        let mapped = SharedLibraries.mapped(byProcess: pid, procRoot: procRoot)
        for soname in librarySonames.sorted() {
            let libraryPacks = packs.filter { $0.library.soname == soname }
            guard let path = mapped[soname] else {
                executablePlan.skipped += libraryPacks.flatMap { pack in
                    pack.probes.map {
                        SkippedProbe(pack: pack.name, probe: $0.id, reason: "process \(pid) does not map \(soname)", isFunctionAbsent: true)
                    }
                }
                continue
            }
            libraries.append(try plan(executable: path, packs: libraryPacks, placement: placement))
        }
        return (executablePlan, libraries)
    }

    /// The offset tables shipped next to the packs (`<pack>.offsets.json`), by pack name, and why
    /// any that exist cannot be used: that matters only to stripped binaries, so it is no error here.
    public static func offsetTables(for packs: [ProbePack]) -> (tables: [String: OffsetTable], unusable: [String: String]) {
        var tables: [String: OffsetTable] = [:]
        var unusable: [String: String] = [:]
        for pack in packs {
            let path = OffsetTable.path(forPackFile: pack.source.file)
            guard FileManager.default.fileExists(atPath: path) else { continue }
            do {
                let table = try OffsetTable.load(path: path)
                guard table.pack == pack.name, table.module == pack.library.module else {
                    throw OffsetTableError(
                        path: path, reason: "records \(table.pack) (\(table.module)) but sits next to pack \(pack.name) (\(pack.library.module)); regenerate it")
                }
                tables[pack.name] = table
            } catch {
                unusable[pack.name] = "\(error)"
            }
        }
        return (tables, unusable)
    }
}

/// Writes offset tables from reference builds; run by `swift package generate-offset-tables`.
public enum OffsetTableWriter {
    /// Records `reference` (a build with DWARF) into the table next to each pack, adding or
    /// replacing that Go/library version's entry. `libraryVersions` (module → version) names the
    /// versions a GOPATH build does not record. Returns one line per table written.
    public static func record(reference: String, packs: [ProbePack], libraryVersions: [String: String]) throws -> [String] {
        try entries(reference: reference, packs: packs, libraryVersions: libraryVersions).map { pack, entry in
            let path = OffsetTable.path(forPackFile: pack.source.file)
            var table = FileManager.default.fileExists(atPath: path)
                ? try OffsetTable.load(path: path) : OffsetTable(pack: pack.name, module: pack.library.module, entries: [])
            table.merge(entry)
            try table.encoded().write(to: URL(fileURLWithPath: path))
            return "\(path): \(entry.goVersion), \(pack.library.module) \(entry.libraryVersion): \(entry.functions.count) function(s), \(entry.types.count) type(s)"
        }
    }

    /// The entry `reference` gives each Go pack, without writing anything.
    public static func entries(reference: String, packs: [ProbePack], libraryVersions: [String: String]) throws -> [(ProbePack, OffsetTable.Entry)] {
        let facts = try BinaryAnalyzer.analyze(path: reference, functions: PlanCompiler.functionsNeeded(by: packs), dataSymbols: [])
        guard facts.hasDWARF, let build = facts.goBuild else {
            throw OffsetTableError(path: reference, reason: "a reference build must be a Go program with DWARF (no -ldflags=-s -w)")
        }
        return try packs.filter { $0.language == .go }.map { pack in
            let module = pack.library.module
            let version: String
            if module == "std" {
                version = build.goVersion
            } else if let linked = build.dependencies.first(where: { $0.path == module })?.version ?? libraryVersions[module] {
                version = linked
            } else {
                throw OffsetTableError(path: reference, reason: "does not record which \(module) it links (GOPATH build); pass --library-version \(module)=VERSION")
            }
            let entry = try OffsetTableRecorder.record(pack: pack, facts: facts, libraryVersion: version) { interfaceType, dynamicType in
                (try? BinaryAnalyzer.itabFirstMethod(path: reference, interfaceType: interfaceType, dynamicType: dynamicType)) ?? nil
            }
            return (pack, entry)
        }
    }
}
