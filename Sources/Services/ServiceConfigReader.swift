import Foundation
import ProbePacks

/// Reads `sonde.yaml` into a ``ServiceConfig``, reporting every mistake of the file with its
/// file:line:column; an unknown key is a mistake, never ignored.
public enum ServiceConfigReader {
    /// The largest config file read.
    public static let maximumFileSize = 1 << 20

    static let topKeys = ["services", "unmatched", "exporter", "sampler"]
    static let serviceKeys = ["name", "match", "packs", "exclude-packs", "resource", "inject-trace-context", "sampler"]
    static let selectorKeys = ["executable", "process-name", "command-line", "port", "cgroup"]
    /// Exporter keys, each the OpenTelemetry variable it sets.
    static let exporterVariables: KeyValuePairs<String, String> = [
        "endpoint": "OTEL_EXPORTER_OTLP_ENDPOINT",
        "traces-endpoint": "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "headers": "OTEL_EXPORTER_OTLP_HEADERS",
        "timeout-ms": "OTEL_EXPORTER_OTLP_TIMEOUT",
        "compression": "OTEL_EXPORTER_OTLP_COMPRESSION",
        "certificate": "OTEL_EXPORTER_OTLP_CERTIFICATE",
        "client-certificate": "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
        "client-key": "OTEL_EXPORTER_OTLP_CLIENT_KEY",
        "max-queue-size": "OTEL_BSP_MAX_QUEUE_SIZE",
        "max-export-batch-size": "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
        "schedule-delay-ms": "OTEL_BSP_SCHEDULE_DELAY",
        "export-timeout-ms": "OTEL_BSP_EXPORT_TIMEOUT",
    ]
    static let samplerVariables: KeyValuePairs<String, String> = [
        "name": "OTEL_TRACES_SAMPLER",
        "argument": "OTEL_TRACES_SAMPLER_ARG",
    ]

    /// Reads and checks one config file.
    /// - Throws: ``ServiceConfigError`` with every problem found, in file order.
    public static func load(file: String) throws(ServiceConfigError) -> ServiceConfig {
        let diagnostics = PackDiagnostics(file: file)
        let root: YAMLNode
        do {
            root = try PackLoader.document(file: file, limit: maximumFileSize, document: "a config file", diagnostics: diagnostics)
        } catch let error as PackError {
            throw ServiceConfigError(file: file, errors: [error])
        } catch {
            throw ServiceConfigError(file: file, errors: [PackError(SourceLocation(wholeFile: file), "\(error)")])
        }
        let config = read(root)
        if let config, diagnostics.count == 0 { return config }
        let errors = diagnostics.inFileOrder
        throw ServiceConfigError(
            file: file, errors: errors.isEmpty ? [PackError(SourceLocation(wholeFile: file), "the config could not be read")] : errors)
    }

    private static func read(_ node: YAMLNode) -> ServiceConfig? {
        let report = node.diagnostics
        guard let map = report.attempt({ try node.mapping("the config", allowed: topKeys) }) else { return nil }
        let services = report.attempt { try readServices(map.required("services")) }
        let unmatched = report.attempt { try map.optional("unmatched").map(readUnmatched) ?? .ignore }
        var environment = ServiceConfig.Environment()
        if let exporter = map.optional("exporter") {
            report.attempt { try readVariables(exporter, "exporter", exporterVariables, into: &environment) }
        }
        if let sampler = map.optional("sampler") {
            report.attempt { try readVariables(sampler, "sampler", samplerVariables, into: &environment) }
        }
        guard let services, let unmatched else { return nil }
        return ServiceConfig(services: services, unmatched: unmatched, environment: environment.values, sources: environment.sources)
    }

    private static func readServices(_ node: YAMLNode) throws -> [ServiceConfig.Service] {
        let report = node.diagnostics
        let items = try node.sequence("services")
        var names: [String: SourceLocation] = [:]
        let services = items.compactMap { item -> ServiceConfig.Service? in
            // Checked apart from the rest of the service, which may have mistakes of its own.
            if let name = try? item.mapping("a service").optional("name")?.string("a service's name") {
                if let first = names[name] {
                    report.report(item.error("a service named '\(name)' is already declared at \(first)"))
                }
                names[name] = names[name] ?? item.location
            }
            return report.attempt { try readService(item) }
        }
        guard services.count == items.count else { throw AlreadyReported() }
        return services
    }

    private static func readService(_ node: YAMLNode) throws -> ServiceConfig.Service {
        let report = node.diagnostics
        let before = report.count
        let map = try node.mapping("a service", allowed: serviceKeys)
        let name = report.attempt { try map.required("name").string("a service's name") }
        let selectors = report.attempt { try readSelectors(map.required("match")) }
        let packs = report.attempt { try map.optional("packs").map { try readPackPatterns($0, "packs") } }
        let excluded = report.attempt { try map.optional("exclude-packs").map { try readPackPatterns($0, "exclude-packs") } ?? [] }
        let resource = report.attempt { try map.optional("resource").map(readResource) ?? [:] }
        let inject = report.attempt { try map.optional("inject-trace-context").map { try readBool($0, "inject-trace-context") } ?? true }
        var sampler = ServiceConfig.Environment()
        if let samplerNode = map.optional("sampler") {
            report.attempt { try readVariables(samplerNode, "sampler", samplerVariables, into: &sampler) }
            // A service's sampler replaces the general one whole: an argument alone would be ignored.
            if sampler.values["OTEL_TRACES_SAMPLER"] == nil, let argument = sampler.sources["OTEL_TRACES_SAMPLER_ARG"] {
                report.report(PackError(argument, "a service's sampler argument needs the sampler's name beside it, e.g. name: parentbased_traceidratio"))
            }
        }
        guard let name, let selectors, let packs, let excluded, let resource, let inject, report.count == before, !map.hasUnknownKeys else {
            throw AlreadyReported()
        }
        return ServiceConfig.Service(
            name: name, selectors: selectors, packs: packs, excludedPacks: excluded, resourceAttributes: resource, injectTraceContext: inject,
            sampler: sampler.values, samplerSources: sampler.sources)
    }

    /// One selector mapping, or a list of them (any one matching is enough).
    private static func readSelectors(_ node: YAMLNode) throws -> [ProcessSelector] {
        guard case .sequence = node.node else { return [try readSelector(node)] }
        let items = try node.sequence("match")
        guard !items.isEmpty else { throw node.error("match must list at least one selector") }
        let selectors = items.compactMap { item in node.diagnostics.attempt { try readSelector(item) } }
        guard selectors.count == items.count else { throw AlreadyReported() }
        return selectors
    }

    private static func readSelector(_ node: YAMLNode) throws -> ProcessSelector {
        let report = node.diagnostics
        let before = report.count
        let map = try node.mapping("a match", allowed: selectorKeys)
        var selector = ProcessSelector()
        selector.executable = report.attempt { try map.optional("executable").map { try $0.string("executable") } } ?? nil
        selector.processName = report.attempt {
            try map.optional("process-name").map { node in
                let name = try node.string("process-name")
                // The kernel keeps 15 bytes of a process name: a longer one would never match.
                guard name.utf8.count <= 15 else { throw node.error("process-name '\(name)' is longer than the 15 bytes the kernel keeps; use command-line or executable") }
                return name
            }
        } ?? nil
        selector.commandLine = report.attempt {
            try map.optional("command-line").map { node in
                let pattern = try node.string("command-line")
                do {
                    _ = try NSRegularExpression(pattern: pattern)
                } catch {
                    throw node.error("command-line '\(pattern)' is not a valid regular expression")
                }
                return pattern
            }
        } ?? nil
        selector.port = report.attempt {
            try map.optional("port").map { node in
                let port = try node.integer("port")
                guard (1...65535).contains(port) else { throw node.error("port \(port) is not a TCP port (1 to 65535)") }
                return Int(port)
            }
        } ?? nil
        selector.cgroup = report.attempt { try map.optional("cgroup").map { try $0.string("cgroup") } } ?? nil
        guard report.count == before, !map.hasUnknownKeys else { throw AlreadyReported() }
        guard selector != ProcessSelector() else {
            throw node.error("a match needs at least one of: \(selectorKeys.joined(separator: ", "))")
        }
        return selector
    }

    private static func readPackPatterns(_ node: YAMLNode, _ what: String) throws -> [String] {
        let items = try node.sequence(what)
        let patterns = items.compactMap { item in node.diagnostics.attempt { try item.string("a pack name in \(what)") } }
        guard patterns.count == items.count else { throw AlreadyReported() }
        return patterns
    }

    private static func readResource(_ node: YAMLNode) throws -> [String: String] {
        let map = try node.mapping("resource")
        var attributes: [String: String] = [:]
        for entry in map.entries {
            guard let value = node.diagnostics.attempt({ try entry.value.string("resource attribute '\(entry.key)'") }) else { continue }
            attributes[entry.key] = value
        }
        guard attributes.count == map.entries.count else { throw AlreadyReported() }
        return attributes
    }

    private static func readUnmatched(_ node: YAMLNode) throws -> ServiceConfig.UnmatchedPolicy {
        let text = try node.string("unmatched")
        guard let policy = ServiceConfig.UnmatchedPolicy(rawValue: text) else {
            throw node.error("unmatched must be one of: \(ServiceConfig.UnmatchedPolicy.allCases.map(\.rawValue).joined(separator: ", ")); not '\(text)'")
        }
        return policy
    }

    private static func readBool(_ node: YAMLNode, _ what: String) throws -> Bool {
        switch try node.string(what) {
        case "true": return true
        case "false": return false
        default: throw node.error("\(what) must be true or false")
        }
    }

    /// Keys that each set one OpenTelemetry variable; `headers` is a mapping, the rest are text.
    private static func readVariables(
        _ node: YAMLNode, _ what: String, _ variables: KeyValuePairs<String, String>, into environment: inout ServiceConfig.Environment
    ) throws {
        let map = try node.mapping(what, allowed: variables.map(\.key))
        for entry in map.entries {
            guard let variable = variables.first(where: { $0.key == entry.key })?.value else { continue }
            let value: String? = node.diagnostics.attempt {
                guard entry.key == "headers" else { return try entry.value.string("\(what) \(entry.key)") }
                // W3C baggage-like list, as OTEL_EXPORTER_OTLP_HEADERS takes it: values percent-encoded.
                return try readResource(entry.value).sorted { $0.key < $1.key }.map { key, value in
                    "\(key)=\(value.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? value)"
                }.joined(separator: ",")
            }
            if let value { environment.set(variable, value, at: entry.value.location) }
        }
    }
}

/// Every problem found in one config file, in file order.
public struct ServiceConfigError: Error, Sendable, Equatable, CustomStringConvertible {
    public var file: String
    /// The problems by line, then column; never empty.
    public var errors: [PackError]

    public init(file: String, errors: [PackError]) {
        self.file = file
        self.errors = errors
    }

    public var description: String { errors.map(\.description).joined(separator: "\n") }
}
