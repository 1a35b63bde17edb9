/// Where the pack files are: the files given, and every `*.yaml` and `*.yml` file in the
/// folders given, with a reason for each place that yields nothing.
///
/// The search is bounded, so that a mistaken `--packs /` ends at once with a message instead
/// of walking the whole file system: a folder nested deeper or holding more than ``Limits``
/// allows is not searched at all (half a search would load an arbitrary half of its packs).
/// Symbolic links to folders are followed, and one that leads back to a folder containing it
/// is reported and skipped.
public struct PackSearch: Sendable, Equatable {
    /// How big a folder of packs may be.
    public struct Limits: Sendable, Equatable {
        /// Folders below the one given: `probe-packs/go` is 1.
        public var depth: Int
        /// Files and folders examined in all, at every depth.
        public var entries: Int

        public init(depth: Int, entries: Int) {
            self.depth = depth
            self.entries = entries
        }

        /// Far above what a pack collection needs (Sonde's own is 2 deep and holds a dozen entries),
        /// and found to be exceeded in well under a second for `/`.
        public static let standard = Limits(depth: 8, entries: 10_000)
    }

    /// Pack files in the order given, each folder's sorted by path.
    public var files: [String]
    /// Places that yielded no pack file, and why; the files found elsewhere are still listed.
    public var problems: [PackError]

    /// Looks for pack files in `paths`; a path that names a file is used whatever its name,
    /// for the loader to accept or refuse.
    public static func find(in paths: [String], limits: Limits = .standard) -> PackSearch {
        var search = PackSearch(files: [], problems: [])
        let empty = paths.filter(\.isEmpty).count
        if empty > 0 {
            search.problems.append(
                PackError(
                    SourceLocation(wholeFile: ""),
                    "the pack search path '\(paths.joined(separator: ":"))'"
                        + " has \(empty) empty entr\(empty == 1 ? "y" : "ies")"
                        + " (a leading, trailing or doubled ':'); each entry must name a folder or a pack file"
                )
            )
        }
        for path in paths where !path.isEmpty {
            switch PackFileSystem.status(of: path) {
            case .failure(let failure):
                search.problems.append(PackError(SourceLocation(wholeFile: path), failure.reason))
            case .success(let status) where status.isFolder:
                var walk = FolderWalk(limits: limits, rootID: status.id)
                if walk.visit(path, depth: 0, ancestors: [status.id: path]) {
                    search.files += walk.files.sorted()
                    search.problems += walk.problems
                    if walk.files.isEmpty {
                        search.problems.append(
                            PackError(SourceLocation(wholeFile: path), "no pack files (*.yaml or *.yml) in this folder")
                        )
                    }
                } else {
                    search.problems.append(
                        PackError(
                            SourceLocation(wholeFile: path),
                            "not searched: a pack folder may hold at most \(limits.entries) files and folders,"
                                + " at most \(limits.depth) levels deep, and this one is bigger;"
                                + " point --packs or SONDE_PACK_PATH at the folder that holds the packs"
                        )
                    )
                }
            case .success:
                search.files.append(path)
            }
        }
        return search
    }
}

/// A depth-first search of one folder given to ``PackSearch``.
private struct FolderWalk {
    let limits: PackSearch.Limits
    var files: [String] = []
    var problems: [PackError] = []
    private var examined = 0
    private var visited: Set<PackFileSystem.FileID>

    init(limits: PackSearch.Limits, rootID: PackFileSystem.FileID) {
        self.limits = limits
        visited = [rootID]
    }

    /// Searches `folder`, `depth` below the root; false as soon as the search exceeds the limits.
    /// - Parameter ancestors: the folders that contain this one, and this one, by identity.
    mutating func visit(_ folder: String, depth: Int, ancestors: [PackFileSystem.FileID: String]) -> Bool {
        let names: [String]
        do {
            names = try PackFileSystem.contents(ofFolder: folder).sorted()
        } catch {
            problems.append(PackError(SourceLocation(wholeFile: folder), "cannot list this folder: \(error.reason)"))
            return true
        }
        examined += names.count
        guard examined <= limits.entries else { return false }
        for name in names {
            let path = folder.hasSuffix("/") ? folder + name : folder + "/" + name
            guard case .success(let status) = PackFileSystem.status(of: path), status.isFolder else {
                // A file, or a name that cannot be examined (such as a dangling link): a pack
                // name is loaded, so that the loader says what is wrong with it.
                if name.hasSuffix(".yaml") || name.hasSuffix(".yml") { files.append(path) }
                continue
            }
            if let ancestor = ancestors[status.id] {
                problems.append(
                    PackError(
                        SourceLocation(wholeFile: path),
                        "not searched: it leads back to \(ancestor), a folder that contains it"
                            + " (a symbolic link or mount loop)"
                    )
                )
                continue
            }
            // A folder reached again through another link was searched already.
            guard visited.insert(status.id).inserted else { continue }
            guard depth < limits.depth else { return false }
            var inner = ancestors
            inner[status.id] = path
            guard visit(path, depth: depth + 1, ancestors: inner) else { return false }
        }
        return true
    }
}
