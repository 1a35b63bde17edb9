import Foundation

/// The packs available to a run: every pack file on the search path, with the errors of
/// those that did not load kept for reporting rather than dropped.
public struct PackCatalog: Sendable {
    public var packs: [ProbePack]
    public var errors: [PackError]

    /// Where packs are looked for: `SONDE_PACK_PATH` (colon-separated) if set, else the
    /// `probe-packs` folder shipped next to the sonde binary or in a source checkout above it.
    public static func defaultSearchPath(
        environment: [String: String] = ProcessInfo.processInfo.environment,
        executable: String = CommandLine.arguments.first ?? ""
    ) -> [String] {
        if let path = environment["SONDE_PACK_PATH"], !path.isEmpty {
            // Empty entries are kept, for the search to report: '::' is a mistake, not "here".
            return path.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        }
        var directory = URL(fileURLWithPath: executable).resolvingSymlinksInPath().deletingLastPathComponent()
        while directory.path != "/" {
            let candidate = directory.appendingPathComponent("probe-packs").path
            if FileManager.default.fileExists(atPath: candidate) { return [candidate] }
            directory.deleteLastPathComponent()
        }
        return ["/usr/share/sonde/probe-packs"]
    }

    /// Loads every pack under `paths`; with `only`, keeps just the packs named there and
    /// reports names that match nothing. Places on the path that yield no pack are reported
    /// too (see ``PackSearch``), as is every problem of each pack that does not load.
    public static func load(paths: [String], only selection: [String] = []) -> PackCatalog {
        var packs: [ProbePack] = []
        let search = PackSearch.find(in: paths)
        var errors = search.problems
        for file in search.files {
            do {
                let pack = try PackLoader.load(file: file)
                if let earlier = packs.first(where: { $0.name == pack.name }) {
                    errors.append(
                        PackError(
                            pack.source,
                            "pack '\(pack.name)' is also defined at \(earlier.source); the first one is used"
                        )
                    )
                } else {
                    packs.append(pack)
                }
            } catch let error as PackLoadError {
                errors += error.errors
            } catch {
                errors.append(PackError(SourceLocation(wholeFile: file), "\(error)"))
            }
        }
        guard !selection.isEmpty else { return PackCatalog(packs: packs, errors: errors) }
        for name in selection where !packs.contains(where: { $0.name == name }) {
            let known = packs.map(\.name).joined(separator: ", ")
            errors.append(
                PackError(
                    SourceLocation(file: paths.joined(separator: ":"), line: 1, column: 1),
                    "no pack named '\(name)' (available: \(known))"
                )
            )
        }
        return PackCatalog(packs: packs.filter { selection.contains($0.name) }, errors: errors)
    }
}
