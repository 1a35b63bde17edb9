import Foundation
import Yams

/// Reads pack files into `ProbePack` values, checking everything that can be checked without a
/// target binary.
///
/// Packs may come from anyone, so the loader takes nothing for granted: a pack is read only
/// when it is a regular file of at most ``maximumFileSize`` bytes, it must be UTF-8 text
/// without control characters, and YAML anchors and aliases are refused before Yams builds
/// anything (``YAMLAliasGuard``). Past those checks, every mistake in the file is reported, in
/// file order, as a ``PackLoadError``.
public enum PackLoader {
    /// The largest pack file read, so that a huge or endless file (`/dev/zero` behind a link)
    /// cannot exhaust memory. Sonde's largest pack is under 5 KiB.
    public static let maximumFileSize = 1 << 20

    /// Reads and checks one pack file.
    /// - Throws: ``PackLoadError`` with every problem found, in file order.
    public static func load(file: String) throws -> ProbePack {
        let text: String
        do {
            text = try PackText.decode(PackFileSystem.readRegularFile(file, limit: maximumFileSize), file: file)
        } catch let error as PackError {
            throw PackLoadError(error)
        }
        return try parse(yaml: text, file: file)
    }

    /// Checks a pack given as text; `file` names it in messages.
    /// - Throws: ``PackLoadError`` with every problem found, in file order.
    public static func parse(yaml: String, file: String) throws -> ProbePack {
        let root: Node
        do {
            root = try compose(yaml, file: file)
        } catch let error as PackError {
            throw PackLoadError(error)
        }
        let diagnostics = PackDiagnostics(file: file)
        let pack = PackReader.readPack(YAMLNode(node: root, file: file, diagnostics: diagnostics))
        if let pack, diagnostics.count == 0 { return pack }
        let errors = diagnostics.inFileOrder
        throw PackLoadError(
            file: file,
            errors: errors.isEmpty ? [PackError(SourceLocation(wholeFile: file), "the pack could not be read")] : errors
        )
    }

    /// The YAML tree of another file Sonde reads by the packs' rules (size bound, UTF-8 text
    /// without control characters, no aliases), such as a `sonde.yaml`.
    /// - Throws: ``PackError`` for a file that cannot be read or is not YAML.
    /// - Parameter document: What the file is, in messages: `a config file`.
    package static func document(file: String, limit: Int, document: String, diagnostics: PackDiagnostics) throws -> YAMLNode {
        let text = try PackText.decode(PackFileSystem.readRegularFile(file, limit: limit), file: file)
        let root = try compose(text, file: file, document: document)
        return YAMLNode(node: root, file: file, diagnostics: diagnostics)
    }

    /// The YAML node tree of checked text.
    /// - Throws: ``PackError`` for text that is not YAML, or not allowed in a pack.
    private static func compose(_ yaml: String, file: String, document: String = "a pack") throws -> Node {
        try PackText.checkCharacters(yaml, file: file)
        try YAMLAliasGuard.check(yaml, file: file, document: document)
        let root: Node?
        do {
            // Every value is read as text and checked by the reader, so no tag is resolved: Yams'
            // default resolver matches each scalar against regular expressions, and loading the
            // ICU tables they need cost sonde 4 MiB of memory (issue 7).
            root = try Yams.compose(yaml: yaml, .basic)
        } catch let error as YamlError {
            throw syntaxError(error, file: file)
        }
        guard let root else {
            throw PackError(SourceLocation(file: file, line: 1, column: 1), "the file is empty")
        }
        return root
    }

    /// A located message for Yams' error. Yams' own descriptions quote the offending line, which
    /// for a file that is not a pack could be a secret, so only libyaml's fixed wording is kept.
    private static func syntaxError(_ error: YamlError, file: String) -> PackError {
        switch error {
        case .scanner(let context, let problem, let mark, _), .parser(let context, let problem, let mark, _),
            .composer(let context, let problem, let mark, _):
            let detail = [context?.text, problem].compactMap { $0 }.filter { !$0.isEmpty }.joined(separator: " ")
            return PackError(
                SourceLocation(file: file, line: mark.line, column: mark.column),
                "YAML syntax error: \(detail)"
            )
        case .duplicatedKeysInMapping(_, let context):
            return PackError(
                SourceLocation(file: file, line: context.mark.line, column: context.mark.column),
                "this key appears more than once in its mapping"
            )
        case .reader(let problem, _, _, _):
            return PackError(SourceLocation(wholeFile: file), "YAML cannot read the text: \(problem)")
        default:
            return PackError(SourceLocation(wholeFile: file), "YAML cannot read the text")
        }
    }
}
