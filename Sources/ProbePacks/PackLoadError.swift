/// Every problem found in one pack file, in file order, so that a pack's author fixes them all
/// in one pass instead of one per run.
///
/// ``PackLoader/load(file:)`` and ``PackLoader/parse(yaml:file:)`` throw it. Its description
/// is one located line per problem, so code that prints the error as a whole stays correct.
public struct PackLoadError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The pack file, as it was named to the loader.
    public var file: String
    /// The problems by line, then column; never empty.
    public var errors: [PackError]

    public init(file: String, errors: [PackError]) {
        self.file = file
        self.errors = errors
    }

    /// A file with one problem that stopped reading it (unreadable, not text, not YAML).
    init(_ error: PackError) {
        self.init(file: error.location.file, errors: [error])
    }

    public var description: String { errors.map(\.description).joined(separator: "\n") }
}
