import Yams

/// A YAML node with the file it came from, so every lookup can fail with file:line:column.
struct YAMLNode {
    let node: Node
    let file: String

    var location: SourceLocation {
        SourceLocation(file: file, line: node.mark?.line ?? 1, column: node.mark?.column ?? 1)
    }

    func error(_ message: String) -> PackError { PackError(location, message) }

    func string(_ what: String) throws -> String {
        guard case .scalar(let scalar) = node else { throw error("\(what) must be a text value") }
        guard !scalar.string.isEmpty else { throw error("\(what) must not be empty") }
        return scalar.string
    }

    func integer(_ what: String) throws -> Int64 {
        guard case .scalar(let scalar) = node, let value = Int64(scalar.string) else {
            throw error("\(what) must be a whole number")
        }
        return value
    }

    func sequence(_ what: String) throws -> [YAMLNode] {
        guard case .sequence(let items) = node else { throw error("\(what) must be a list") }
        return items.map { YAMLNode(node: $0, file: file) }
    }

    /// The mapping's entries in file order, rejecting keys outside `allowed` so typos do not pass silently.
    func mapping(_ what: String, allowed: [String]? = nil) throws -> YAMLMapping {
        guard case .mapping(let mapping) = node else { throw error("\(what) must be a mapping of keys to values") }
        var entries: [(key: String, keyNode: YAMLNode, value: YAMLNode)] = []
        for (key, value) in mapping {
            let keyNode = YAMLNode(node: key, file: file)
            let name = try keyNode.string("a key in \(what)")
            if let allowed, !allowed.contains(name) {
                throw keyNode.error("unknown key '\(name)' in \(what); expected one of: \(allowed.joined(separator: ", "))")
            }
            entries.append((name, keyNode, YAMLNode(node: value, file: file)))
        }
        return YAMLMapping(owner: self, what: what, entries: entries)
    }
}

struct YAMLMapping {
    let owner: YAMLNode
    let what: String
    let entries: [(key: String, keyNode: YAMLNode, value: YAMLNode)]

    func optional(_ key: String) -> YAMLNode? {
        entries.first { $0.key == key }?.value
    }

    func required(_ key: String) throws -> YAMLNode {
        guard let value = optional(key) else { throw owner.error("\(what) is missing '\(key)'") }
        return value
    }
}
