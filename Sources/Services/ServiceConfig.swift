import ProbePacks

/// What one agent traces on a machine, read from `sonde.yaml`: which processes make up which
/// service, and what is enabled for each.
public struct ServiceConfig: Sendable, Equatable {
    public var services: [Service]
    /// What happens to a process no service matches.
    public var unmatched: UnmatchedPolicy
    /// OpenTelemetry variables the file sets (`OTEL_EXPORTER_OTLP_ENDPOINT`, …); the process
    /// environment overrides each of them, as the OpenTelemetry conventions ask.
    public var environment: [String: String]
    /// Where the file sets each variable of `environment`, to locate a value found wrong later.
    public var environmentSources: [String: SourceLocation]

    public init(
        services: [Service], unmatched: UnmatchedPolicy = .ignore, environment: [String: String] = [:],
        sources: [String: SourceLocation] = [:]
    ) {
        self.services = services
        self.unmatched = unmatched
        self.environment = environment
        self.environmentSources = sources
    }

    /// The variables exporting and sampling read: the process's own override the file's.
    public func variables(overriddenBy processEnvironment: [String: String]) -> [String: String] {
        environment.merging(processEnvironment.filter { !$0.value.isEmpty }) { _, process in process }
    }

    /// Variables with where each was set, built while reading.
    struct Environment {
        var values: [String: String] = [:]
        var sources: [String: SourceLocation] = [:]

        mutating func set(_ variable: String, _ value: String, at location: SourceLocation) {
            values[variable] = value
            sources[variable] = location
        }
    }

    public enum UnmatchedPolicy: String, Sendable, Equatable, CaseIterable {
        /// Left alone: no probe is attached to it.
        case ignore
        /// Traced with every pack that applies, named after its executable.
        case trace
    }

    /// One service: the processes that belong to it and how they are traced.
    public struct Service: Sendable, Equatable {
        public var name: String
        /// A process belongs to the service when any one selector matches it.
        public var selectors: [ProcessSelector]
        /// Pack names or globs (`go/*`); nil enables every pack.
        public var packs: [String]?
        /// Pack names or globs left out, even when `packs` names them.
        public var excludedPacks: [String]
        /// Added to the resource of every span of the service.
        public var resourceAttributes: [String: String]
        /// Whether Sonde may write a traceparent into the requests this service sends.
        public var injectTraceContext: Bool
        /// The service's own sampler as OpenTelemetry variables (`OTEL_TRACES_SAMPLER`,
        /// `OTEL_TRACES_SAMPLER_ARG`); empty: the file's or the environment's sampler applies.
        public var sampler: [String: String]
        /// Where the file sets each variable of `sampler`.
        public var samplerSources: [String: SourceLocation]

        public init(
            name: String, selectors: [ProcessSelector], packs: [String]? = nil, excludedPacks: [String] = [],
            resourceAttributes: [String: String] = [:], injectTraceContext: Bool = true, sampler: [String: String] = [:],
            samplerSources: [String: SourceLocation] = [:]
        ) {
            self.name = name
            self.selectors = selectors
            self.packs = packs
            self.excludedPacks = excludedPacks
            self.resourceAttributes = resourceAttributes
            self.injectTraceContext = injectTraceContext
            self.sampler = sampler
            self.samplerSources = samplerSources
        }

        /// Whether the pack is enabled for this service.
        public func enables(pack: String) -> Bool {
            (packs?.contains { Glob.matches($0, pack) } ?? true) && !excludedPacks.contains { Glob.matches($0, pack) }
        }
    }
}

/// Conditions on one process, all of which must hold (a selector with none is refused when read).
public struct ProcessSelector: Sendable, Equatable {
    /// Glob on the executable's absolute path; `*` also matches `/`.
    public var executable: String?
    /// The process name (`/proc/PID/comm`, at most 15 bytes), exactly.
    public var processName: String?
    /// Regular expression searched in the command line, its arguments joined by spaces.
    public var commandLine: String?
    /// A TCP port the process listens on.
    public var port: Int?
    /// Glob on the process's cgroup path (`/kubepods.slice/…`, `/system.slice/x.service`).
    public var cgroup: String?

    public init(executable: String? = nil, processName: String? = nil, commandLine: String? = nil, port: Int? = nil, cgroup: String? = nil) {
        self.executable = executable
        self.processName = processName
        self.commandLine = commandLine
        self.port = port
        self.cgroup = cgroup
    }
}
