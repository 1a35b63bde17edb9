/// A set of versions such as `>=1.19 <1.28`: every comparison must hold.
public struct VersionRange: Sendable, Equatable, CustomStringConvertible {
    public struct Comparison: Sendable, Equatable {
        public enum Operator: String, Sendable, CaseIterable {
            case atLeast = ">=", above = ">", atMost = "<=", below = "<", exactly = "="
        }
        public var op: Operator
        public var version: Version
    }

    public var comparisons: [Comparison]

    /// Parses space-separated comparisons; nil when any part is malformed.
    public init?(parsing text: String) {
        var comparisons: [Comparison] = []
        for word in text.split(separator: " ") {
            // Longest operators first so `>=` is not read as `>`.
            guard let op = Comparison.Operator.allCases.sorted(by: { $0.rawValue.count > $1.rawValue.count })
                .first(where: { word.hasPrefix($0.rawValue) }),
                let version = Version(parsing: String(word.dropFirst(op.rawValue.count)))
            else { return nil }
            comparisons.append(Comparison(op: op, version: version))
        }
        guard !comparisons.isEmpty else { return nil }
        self.comparisons = comparisons
    }

    public func contains(_ version: Version) -> Bool {
        comparisons.allSatisfy { comparison in
            switch comparison.op {
            case .atLeast: return version >= comparison.version
            case .above: return version > comparison.version
            case .atMost: return version <= comparison.version
            case .below: return version < comparison.version
            case .exactly: return version == comparison.version
            }
        }
    }

    public var description: String {
        comparisons.map { "\($0.op.rawValue)\($0.version)" }.joined(separator: " ")
    }
}

/// A dotted numeric version; `go1.21.3`, `v1.8.0` and `1.19` all parse.
public struct Version: Sendable, Comparable, CustomStringConvertible {
    public var components: [Int]

    public init?(parsing text: String) {
        var digits = Substring(text)
        if digits.hasPrefix("go") { digits = digits.dropFirst(2) }
        if digits.hasPrefix("v") { digits = digits.dropFirst() }
        // Pre-release and build suffixes (`-rc1`, `+incompatible`) do not take part in ordering.
        let core = digits.prefix { $0.isNumber || $0 == "." }
        let components = core.split(separator: ".", omittingEmptySubsequences: false).map { Int($0) }
        guard !components.isEmpty, components.allSatisfy({ $0 != nil }) else { return nil }
        self.components = components.map { $0! }
    }

    public static func < (lhs: Version, rhs: Version) -> Bool {
        let count = max(lhs.components.count, rhs.components.count)
        for index in 0..<count {
            let left = index < lhs.components.count ? lhs.components[index] : 0
            let right = index < rhs.components.count ? rhs.components[index] : 0
            if left != right { return left < right }
        }
        return false
    }

    public static func == (lhs: Version, rhs: Version) -> Bool { !(lhs < rhs) && !(rhs < lhs) }

    public var description: String { components.map(String.init).joined(separator: ".") }
}
