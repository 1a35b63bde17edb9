/// A problem in a pack file, located so an editor can jump to it.
public struct PackError: Error, Sendable, Equatable, CustomStringConvertible {
    public var location: SourceLocation
    public var message: String
    public init(_ location: SourceLocation, _ message: String) {
        self.location = location
        self.message = message
    }

    /// `file:line:column: message`; just the message for a problem of no file or folder in
    /// particular (such as an empty entry in the pack search path).
    public var description: String {
        location.description.isEmpty ? message : "\(location): \(message)"
    }
}
