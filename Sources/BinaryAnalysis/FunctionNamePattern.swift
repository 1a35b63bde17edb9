/// A pack's function name with `*` wildcards, matching every function whose (demangled) name
/// it fits: the instances of a C++ template (`Handler<*>::run()`), or a long parameter list left
/// out (`httplib::Server::routing(*)`). `*` matches any run of characters; nothing else is special.
public struct FunctionNamePattern: Sendable, Hashable {
    public let text: String
    private let pieces: [Substring]

    public init(_ text: String) {
        self.text = text
        pieces = text.split(separator: "*", omittingEmptySubsequences: false)
    }

    public func matches(_ name: String) -> Bool {
        // The first piece anchors the start, the last the end; the ones between are found in order.
        guard let first = pieces.first, let last = pieces.last, name.hasPrefix(first) else { return false }
        var rest = name.dropFirst(first.count)
        for piece in pieces.dropFirst().dropLast() where !piece.isEmpty {
            guard let found = rest.firstRange(of: piece) else { return false }
            rest = rest[found.upperBound...]
        }
        return rest.hasSuffix(last)
    }
}
