import BinaryAnalysis
import Foundation
import ProbePacks

/// The DWARF facts a pack's probes use, recorded from reference builds of its library with each
/// Go toolchain. Binaries built with `-ldflags=-s -w` carry no DWARF; for them the planner takes
/// argument registers, field offsets and type checks from here instead.
///
/// Written by `swift package generate-offset-tables` (Plugins/GenerateOffsetTables) next to the
/// pack as `<pack file>.offsets.json`; generated, not edited by hand.
public struct OffsetTable: Sendable, Equatable, Codable {
    public var pack: String
    /// The library the pack probes: `std` or a Go module path.
    public var module: String
    /// One per toolchain (and library version) the reference program was built with.
    public var entries: [Entry]

    public struct Entry: Sendable, Equatable, Codable {
        /// As the toolchain writes it into build info, e.g. `go1.27.3`.
        public var goVersion: String
        /// The library's version; the Go version for `std`.
        public var libraryVersion: String
        public var functions: [String: RecordedFunction]
        /// Only the types the pack's captures and result registers consult.
        public var types: [String: TypeFacts]

        public init(goVersion: String, libraryVersion: String, functions: [String: RecordedFunction], types: [String: TypeFacts]) {
            self.goVersion = goVersion
            self.libraryVersion = libraryVersion
            self.functions = functions
            self.types = types
        }
    }

    public init(pack: String, module: String, entries: [Entry]) {
        self.pack = pack
        self.module = module
        self.entries = entries
    }

    /// Where a pack's table lives: next to its YAML file.
    public static func path(forPackFile packFile: String) -> String {
        let base = packFile.hasSuffix(".yaml") ? String(packFile.dropLast(".yaml".count)) : packFile
        return base + ".offsets.json"
    }

    public static func load(path: String) throws -> OffsetTable {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw OffsetTableError(path: path, reason: "cannot be read: \(error.localizedDescription)")
        }
        do {
            return try JSONDecoder().decode(OffsetTable.self, from: data)
        } catch let DecodingError.keyNotFound(key, context) {
            throw OffsetTableError(path: path, reason: "\(Self.describe(context.codingPath + [key])) is missing; regenerate the table")
        } catch let DecodingError.typeMismatch(_, context), let DecodingError.valueNotFound(_, context),
                let DecodingError.dataCorrupted(context) {
            throw OffsetTableError(path: path, reason: "\(Self.describe(context.codingPath)): \(context.debugDescription); regenerate the table")
        } catch {
            throw OffsetTableError(path: path, reason: "\(error)")
        }
    }

    /// Sorted keys and indentation keep regenerated tables diffable.
    public func encoded() throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        var data = try encoder.encode(self)
        data.append(0x0a)
        return data
    }

    /// Adds or replaces the entry for the same Go and library version, keeping entries in version order.
    public mutating func merge(_ entry: Entry) {
        entries.removeAll { $0.goVersion == entry.goVersion && $0.libraryVersion == entry.libraryVersion }
        entries.append(entry)
        entries.sort { left, right in
            let (leftGo, rightGo) = (Version(parsing: left.goVersion), Version(parsing: right.goVersion))
            return leftGo != rightGo ? (leftGo?.components ?? []).lexicographicallyPrecedes(rightGo?.components ?? []) : left.libraryVersion < right.libraryVersion
        }
    }

    private static func describe(_ path: [CodingKey]) -> String {
        path.isEmpty ? "the file" : path.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined()
    }
}

/// A function's DWARF signature: parameters with their entry registers, results without.
public struct RecordedFunction: Sendable, Equatable, Codable {
    public var parameters: [Parameter]
    public var results: [Parameter]

    public init(parameters: [Parameter], results: [Parameter]) {
        self.parameters = parameters
        self.results = results
    }
}

public struct OffsetTableError: Error, CustomStringConvertible {
    public var path: String
    public var reason: String
    public init(path: String, reason: String) {
        self.path = path
        self.reason = reason
    }
    public var description: String { "\(path): \(reason)" }
}
