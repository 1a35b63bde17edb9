import Foundation

/// Decides which service of a config a process belongs to.
public struct ServiceMatcher: Sendable {
    public let config: ServiceConfig
    /// Compiled once: every new process is matched against them.
    private let commandLines: [String: RegexBox]
    /// Whether any selector needs the listening ports, which cost a walk of the process's descriptors.
    public let needsPorts: Bool

    public init(config: ServiceConfig) {
        self.config = config
        var compiled: [String: RegexBox] = [:]
        for pattern in config.services.flatMap(\.selectors).compactMap(\.commandLine) {
            // The reader refused invalid patterns.
            compiled[pattern] = (try? NSRegularExpression(pattern: pattern)).map(RegexBox.init)
        }
        commandLines = compiled
        needsPorts = config.services.contains { $0.selectors.contains { $0.port != nil } }
    }

    /// The first service in file order with a selector that matches, or nil.
    /// - Parameter ports: The ports the process listens on; read only when ``needsPorts``.
    public func service(of process: ObservedProcess, ports: @autoclosure () -> Set<Int> = []) -> ServiceConfig.Service? {
        let listening = needsPorts ? ports() : []
        return config.services.first { $0.selectors.contains { matches($0, process, listening) } }
    }

    /// Whether a service would claim the process once it listened on a port: a process is seen
    /// as it starts, before it listens, so such a one is looked at again.
    public func awaitsPort(_ process: ObservedProcess) -> Bool {
        config.services.contains { $0.selectors.contains { $0.port != nil && matches($0, process, [], ignoringPort: true) } }
    }

    private func matches(_ selector: ProcessSelector, _ process: ObservedProcess, _ ports: Set<Int>, ignoringPort: Bool = false) -> Bool {
        if let pattern = selector.executable, !Glob.matches(pattern, process.executable) { return false }
        if let name = selector.processName, name != process.name { return false }
        if let pattern = selector.commandLine {
            let text = process.commandLine
            guard let regex = commandLines[pattern]?.regex,
                regex.firstMatch(in: text, range: NSRange(text.startIndex..., in: text)) != nil
            else { return false }
        }
        if let port = selector.port, !ignoringPort, !ports.contains(port) { return false }
        if let pattern = selector.cgroup, !Glob.matches(pattern, process.cgroup) { return false }
        return true
    }
}

/// NSRegularExpression is immutable and thread-safe once made, but not marked Sendable.
private struct RegexBox: @unchecked Sendable {
    let regex: NSRegularExpression
}
