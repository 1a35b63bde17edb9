/// The problems found in one pack file so far.
///
/// Reading goes on past a mistake in one key, capture or probe, with the mistake recorded
/// here, so that `sonde packs validate` shows every mistake of a file at once. Reading one
/// file is single-threaded, hence a plain class.
package final class PackDiagnostics {
    package let file: String
    private var found: [PackError] = []

    package init(file: String) {
        self.file = file
    }

    package var count: Int { found.count }

    package func report(_ error: PackError) {
        found.append(error)
    }

    /// Runs `read`; when it fails, records why and returns nil so that the caller can go on.
    package func attempt<T>(_ read: () throws -> T) -> T? {
        do {
            return try read()
        } catch let error as PackError {
            report(error)
        } catch is AlreadyReported {
        } catch {
            report(PackError(SourceLocation(wholeFile: file), "\(error)"))
        }
        return nil
    }

    /// The problems by line, then column; problems at the same place keep the order they were found in.
    package var inFileOrder: [PackError] {
        found.enumerated()
            .sorted {
                ($0.element.location.line, $0.element.location.column, $0.offset) < (
                    $1.element.location.line, $1.element.location.column, $1.offset
                )
            }
            .map(\.element)
    }
}

/// Thrown by a reader whose parts failed and were reported one by one, so that its caller
/// stops without reporting the failure again.
package struct AlreadyReported: Error {
    package init() {}
}
