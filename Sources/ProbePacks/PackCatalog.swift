import Foundation

/// The packs available to a run: the user's packs and the shipped ones, with the errors of those
/// that did not load kept for reporting rather than dropped.
public struct PackCatalog: Sendable {
    public var packs: [ProbePack]
    public var errors: [PackError]
    /// Names asked for (`--pack`) that no pack on the search path has.
    public var unmatched: [String]
    /// The name of every pack that loaded, selected or not.
    public var available: [String]
    /// Shipped packs that a user's pack of the same name replaces, said so a user sees which one runs.
    public var replacedShippedPacks: [String]

    /// Where packs are looked for, first definition of a name winning: the user's folders and files
    /// (`--packs`, in the order given, then `SONDE_PACK_PATH`'s colon-separated entries), then the
    /// shipped packs. A user's packs add to the shipped ones, and one named like a shipped pack
    /// replaces it.
    public struct SearchPath: Sendable, Equatable {
        public var userPaths: [String]
        /// The `probe-packs` folder shipped with sonde, when one is found.
        public var shipped: String?

        public init(userPaths: [String], shipped: String?) {
            self.userPaths = userPaths
            self.shipped = shipped
        }

        /// Every place searched, in order of precedence.
        public var description: String { (userPaths + (shipped.map { [$0] } ?? [])).joined(separator: ":") }
    }

    /// The search path of a run given `--packs` folders: those, then `SONDE_PACK_PATH`, then the
    /// `probe-packs` folder shipped next to the sonde binary (or in a source checkout above it), or
    /// `/usr/share/sonde/probe-packs`.
    public static func searchPath(
        userPaths: [String] = [],
        environment: [String: String] = ProcessInfo.processInfo.environment,
        executable: String = CommandLine.arguments.first ?? ""
    ) -> SearchPath {
        var paths = userPaths
        if let path = environment["SONDE_PACK_PATH"], !path.isEmpty {
            // Empty entries are kept, for the search to report: '::' is a mistake, not "here".
            paths += path.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        }
        return SearchPath(userPaths: paths, shipped: shippedFolder(executable: executable))
    }

    private static func shippedFolder(executable: String) -> String? {
        var directory = URL(fileURLWithPath: executable).resolvingSymlinksInPath().deletingLastPathComponent()
        while directory.path != "/" {
            let candidate = directory.appendingPathComponent("probe-packs").path
            if FileManager.default.fileExists(atPath: candidate) { return candidate }
            directory.deleteLastPathComponent()
        }
        let installed = "/usr/share/sonde/probe-packs"
        return FileManager.default.fileExists(atPath: installed) ? installed : nil
    }

    /// Loads every pack under `paths` (all of them the user's).
    public static func load(paths: [String], only selection: [String] = []) -> PackCatalog {
        load(SearchPath(userPaths: paths, shipped: nil), only: selection)
    }

    /// Loads every pack on the search path; with `only`, keeps just the packs named there and lists
    /// names that match nothing. Places on the path that yield no pack are reported too (see
    /// ``PackSearch``), as is every problem of each pack that does not load.
    public static func load(_ path: SearchPath, only selection: [String] = []) -> PackCatalog {
        var catalog = PackCatalog(packs: [], errors: [], unmatched: [], available: [], replacedShippedPacks: [])
        var searches = [(PackSearch.find(in: path.userPaths), isShipped: false)]
        if let shipped = path.shipped { searches.append((PackSearch.find(in: [shipped]), isShipped: true)) }
        var userPackCount = 0
        for (search, isShipped) in searches {
            catalog.errors += search.problems
            for file in search.files {
                do {
                    let pack = try PackLoader.load(file: file)
                    if let earlier = catalog.packs.firstIndex(where: { $0.name == pack.name }) {
                        if isShipped && earlier < userPackCount {
                            catalog.replacedShippedPacks.append(
                                "pack '\(pack.name)' from \(catalog.packs[earlier].source.file) replaces the shipped one at \(file)")
                        } else {
                            catalog.errors.append(
                                PackError(pack.source, "pack '\(pack.name)' is also defined at \(catalog.packs[earlier].source); the first one is used"))
                        }
                    } else {
                        catalog.packs.append(pack)
                    }
                } catch let error as PackLoadError {
                    catalog.errors += error.errors
                } catch {
                    catalog.errors.append(PackError(SourceLocation(wholeFile: file), "\(error)"))
                }
            }
            if !isShipped { userPackCount = catalog.packs.count }
        }
        catalog.available = catalog.packs.map(\.name)
        guard !selection.isEmpty else { return catalog }
        catalog.unmatched = selection.filter { name in !catalog.packs.contains { $0.name == name } }
        catalog.packs.removeAll { !selection.contains($0.name) }
        return catalog
    }
}
