import Yams

/// A YAML node with the file it came from, so every lookup can fail with file:line:column, and
/// the diagnostics of that file, where lookups report the mistakes that need not stop reading.
package struct YAMLNode {
    package let node: Node
    package let file: String
    package let diagnostics: PackDiagnostics

    package init(node: Node, file: String, diagnostics: PackDiagnostics) {
        self.node = node
        self.file = file
        self.diagnostics = diagnostics
    }

    /// A node inside this one.
    package func child(_ node: Node) -> YAMLNode {
        YAMLNode(node: node, file: file, diagnostics: diagnostics)
    }

    package var location: SourceLocation {
        SourceLocation(file: file, line: node.mark?.line ?? 1, column: node.mark?.column ?? 1)
    }

    package func error(_ message: String) -> PackError { PackError(location, message) }

    package func string(_ what: String) throws -> String {
        guard case .scalar(let scalar) = node else { throw error("\(what) must be a text value") }
        guard !scalar.string.isEmpty else { throw error("\(what) must not be empty") }
        return scalar.string
    }

    package func integer(_ what: String) throws -> Int64 {
        guard case .scalar(let scalar) = node, let value = Int64(scalar.string) else {
            throw error("\(what) must be a whole number")
        }
        return value
    }

    package func sequence(_ what: String) throws -> [YAMLNode] {
        guard case .sequence(let items) = node else { throw error("\(what) must be a list") }
        return items.map(child)
    }

    /// The mapping's entries in file order. Keys outside `allowed` are reported, so that typos
    /// do not pass silently, and left out, so that reading goes on to the other keys. Keys in
    /// `readForItsOwnError` are kept but not offered as expected: the caller refuses them with a
    /// message of their own (a key of another language's packs).
    /// - Throws: ``PackError`` when the node is not a mapping.
    package func mapping(_ what: String, allowed: [String]? = nil, readForItsOwnError: [String] = []) throws -> YAMLMapping {
        guard case .mapping(let mapping) = node else { throw error("\(what) must be a mapping of keys to values") }
        var entries: [(key: String, keyNode: YAMLNode, value: YAMLNode)] = []
        var hasUnknownKeys = false
        for (key, value) in mapping {
            let keyNode = child(key)
            guard let name = diagnostics.attempt({ try keyNode.string("a key in \(what)") }) else {
                hasUnknownKeys = true
                continue
            }
            if let allowed, !allowed.contains(name), !readForItsOwnError.contains(name) {
                diagnostics.report(
                    keyNode.error(
                        "unknown key '\(name)' in \(what); expected one of: \(allowed.joined(separator: ", "))"
                    )
                )
                hasUnknownKeys = true
                continue
            }
            entries.append((name, keyNode, child(value)))
        }
        return YAMLMapping(owner: self, what: what, entries: entries, hasUnknownKeys: hasUnknownKeys)
    }
}

package struct YAMLMapping {
    package let owner: YAMLNode
    package let what: String
    package let entries: [(key: String, keyNode: YAMLNode, value: YAMLNode)]
    /// Whether keys were reported and left out, which may be why an expected one is missing.
    package let hasUnknownKeys: Bool

    package func optional(_ key: String) -> YAMLNode? {
        entries.first { $0.key == key }?.value
    }

    package func required(_ key: String) throws -> YAMLNode {
        guard let value = optional(key) else { throw owner.error("\(what) is missing '\(key)'") }
        return value
    }

    package func contains(_ key: String) -> Bool { optional(key) != nil }
}
