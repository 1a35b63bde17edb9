import ArgumentParser
import Exporters
import Foundation
import Planning
import ProbePacks
import Services
import SondeKit

@main
struct Sonde: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Traces programs nobody instrumented: eBPF uprobes described by probe packs, exported as OpenTelemetry spans.",
        subcommands: [Run.self, Plan.self, Packs.self, Config.self])
}

/// Where entry probes go; hidden, for benchmarks that compare Sonde with the peers' placement.
struct PlacementOption: ParsableArguments {
    @Option(name: .customLong("sites"), help: .hidden) var placement: SitePlacement = .costAware
}

extension SitePlacement: ExpressibleByArgument {}
extension TraceSession.UprobeLinks: ExpressibleByArgument {}

/// Options every command that reads packs shares.
struct PackOptions: ParsableArguments {
    @Option(
        name: .customLong("packs"),
        help: "Folder or file of your own probe packs (repeatable), searched before $SONDE_PACK_PATH and the shipped packs; a pack named like a shipped one replaces it.")
    var searchPath: [String] = []

    @Option(name: .customLong("pack"), help: "Use only this pack, e.g. go/net-http (repeatable). Default: all packs.")
    var selection: [String] = []

    /// The packs to use. A pack that fails to load is reported and left out; none loading, or a
    /// `--pack` name that matches no pack, stops the command before anything is attached.
    func load() throws -> [ProbePack] {
        try catalog().packs
    }

    /// The packs on the search path, each pack error and each replaced shipped pack reported.
    func catalog() throws -> PackCatalog {
        let path = PackCatalog.searchPath(userPaths: searchPath)
        let catalog = PackCatalog.load(path, only: selection)
        catalog.errors.forEach { printError("pack error: \($0)") }
        catalog.replacedShippedPacks.forEach { printError("note: \($0)") }
        if let name = catalog.unmatched.first {
            throw Failure("no pack named '\(name)' in \(path.description) (available: \(catalog.available.joined(separator: ", ")))")
        }
        guard !catalog.packs.isEmpty else { throw Failure("no usable probe pack in '\(path.description)'") }
        return catalog
    }
}

struct Plan: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print the attach plan for an executable, without root and without attaching.")

    @Option(help: "The executable to analyse.") var exe: String
    @OptionGroup var packs: PackOptions
    @OptionGroup var sites: PlacementOption

    func run() throws {
        let plan = try Planner.plan(executable: TargetExecutable.atPath(exe).attachPath, packs: packs.load(), placement: sites.placement)
        // Written at once, not through print's buffer: the plan comes before any error below,
        // also when both go to one pipe.
        FileHandle.standardOutput.write(Data((PlanReport.render(plan) + "\n").utf8))
        // Nothing to attach is a failure, as it is for `run`: scripts checking a binary see it.
        guard !plan.probes.isEmpty else { throw Failure("no probe of the chosen packs applies to \(plan.binaryPath)") }
    }
}

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Attach to a process (or every process of an executable) and export its spans until Ctrl-C.",
        discussion: """
            Spans go to the console unless OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT \
            is set and not empty, then to that OTLP/HTTP endpoint. The OpenTelemetry exporter and batch \
            variables are honoured (the README lists them).
            """)

    @Option(help: "Trace this running process.") var pid: Int32?
    @Option(help: "Trace every process running this executable, including ones started later.") var exe: String?
    @Option(help: "Trace the services this sonde.yaml declares, in every process of the machine, as they start (default: $SONDE_CONFIG).")
    var config: String?
    @Option(help: "console or otlp. Default: otlp when an OTLP endpoint is set, else console.") var exporter: ExporterKind?
    @OptionGroup var packs: PackOptions
    @Option(
        name: .customLong("omit-attribute"),
        help: "Never export this attribute, e.g. db.query.text, whose statements may hold values (repeatable).")
    var omittedAttributes: [String] = []
    @OptionGroup var sites: PlacementOption
    @Flag(inversion: .prefixedNo, help: "Write a traceparent header into the requests traced clients send, so the next service continues the trace. Needs a kernel without lockdown.")
    var injectTraceContext = true
    /// No trace context in or out, for the benchmark's comparison.
    @Flag(help: .hidden) var noTraceContext = false
    /// Spans dropped as they are read, counted: the benchmark's measure of the kernel side alone.
    @Flag(help: .hidden) var discardSpans = false
    /// Sizes the map of calls in flight; tests use it to fill the map on purpose.
    @Option(help: .hidden) var maxCalls: Int?
    /// `single`: one link per uprobe, as on kernels before 6.6, so that path is tested here too.
    @Option(help: .hidden) var uprobeLinks: TraceSession.UprobeLinks?

    enum ExporterKind: String, ExpressibleByArgument {
        case console, otlp
    }

    /// The config file: `--config`, else `$SONDE_CONFIG` when neither --pid nor --exe is given.
    private var configFile: String? {
        config ?? (pid == nil && exe == nil ? ProcessInfo.processInfo.environment["SONDE_CONFIG"].flatMap { $0.isEmpty ? nil : $0 } : nil)
    }

    func validate() throws {
        guard [pid != nil, exe != nil, configFile != nil].filter({ $0 }).count == 1 else {
            throw ValidationError("give exactly one of --pid, --exe or --config (or set SONDE_CONFIG)")
        }
    }

    func run() throws {
        if let configFile { return try runServices(configFile) }
        let environment = ProcessInfo.processInfo.environment
        let sampler = try TraceSession.Sampler.fromEnvironment(environment)
        let loaded = try exportedPacks()
        let executable: TargetExecutable
        let target: TraceSession.Target
        if let pid {
            executable = try TargetExecutable.ofProcess(pid)
            target = .process(pid)
        } else {
            executable = try TargetExecutable.atPath(exe!)
            target = .executable
        }
        let (placement, noTraceContext) = (sites.placement, noTraceContext)
        let planFor = { (path: String) throws -> AttachPlan in
            let plan = try Planner.plan(executable: path, packs: loaded, placement: placement)
            return noTraceContext ? plan.droppingTraceContext() : plan
        }
        // A process's shared libraries are traced under --pid; --exe traces the executable's own code.
        let (plan, libraryPlans): (AttachPlan, [AttachPlan])
        if let pid {
            let plans = try Planner.plans(forProcess: pid, executable: executable.attachPath, packs: loaded, placement: placement)
            let strip = { (plan: AttachPlan) in noTraceContext ? plan.droppingTraceContext() : plan }
            (plan, libraryPlans) = (strip(plans.executable), plans.libraries.map(strip))
        } else {
            (plan, libraryPlans) = (try planFor(executable.attachPath), [])
        }
        guard !plan.probes.isEmpty || libraryPlans.contains(where: { !$0.probes.isEmpty }) else {
            (plan.skipped + libraryPlans.flatMap(\.skipped)).forEach { printError("skipped \($0)") }
            let libraryPacks = loaded.filter { $0.library.soname != nil }.map { "\($0.name) (\($0.library.soname!))" }
            let hint = pid == nil && !libraryPacks.isEmpty
                ? "; packs that probe a shared library, \(libraryPacks.joined(separator: ", ")), trace it in a running process: --pid" : ""
            throw Failure("no probe of the chosen packs applies to \(executable.displayPath)\(hint)")
        }
        let summary = try export(environment) { exporter, processorConfiguration in
            try TraceSession(uprobeLinks: uprobeLinks, discardsSpans: discardSpans).run(
                plan: plan, executablePath: executable.displayPath, target: target, exporter: exporter,
                processorConfiguration: processorConfiguration, capacities: capacities(), sampler: sampler,
                injectTraceContext: injectTraceContext, replan: target == .executable ? planFor : nil, libraryPlans: libraryPlans,
                log: printError)
        }
        printError("sonde: \(summary)")
    }

    /// One sonde for the services a config file declares; its exporter and sampler settings
    /// apply where the environment does not set the same variable.
    private func runServices(_ file: String) throws {
        let config: ServiceConfig
        do {
            config = try ServiceConfigFile.load(file: file)
        } catch {
            throw Failure("\(error)")
        }
        let environment = config.variables(overriddenBy: ProcessInfo.processInfo.environment)
        let sampler = try TraceSession.Sampler.fromEnvironment(environment)
        let packs = try exportedPacks()
        let summary = try export(environment) { exporter, processorConfiguration in
            try TraceSession(uprobeLinks: uprobeLinks, discardsSpans: discardSpans).run(
                services: config, packs: packs, placement: sites.placement, exporter: exporter, processorConfiguration: processorConfiguration,
                capacities: capacities(), sampler: sampler, log: printError)
        }
        printError("sonde: \(summary)")
    }

    /// The chosen packs without the attributes `--omit-attribute` names; a name no pack sets is
    /// refused, since a misspelt one would export what it was meant to keep.
    private func exportedPacks() throws -> [ProbePack] {
        let loaded = try packs.load()
        let set = Set(loaded.flatMap(\.attributeKeys))
        if let unknown = omittedAttributes.first(where: { !set.contains($0) }) {
            throw Failure("--omit-attribute \(unknown): no chosen pack sets it (they set \(set.sorted().joined(separator: ", ")))")
        }
        return loaded.map { $0.omitting(attributes: Set(omittedAttributes)) }
    }

    private func capacities() throws -> TraceSession.Capacities {
        var capacities = TraceSession.Capacities()
        if let maxCalls {
            guard (1...1 << 20).contains(maxCalls) else { throw ValidationError("--max-calls must be between 1 and 1048576") }
            capacities.calls = maxCalls
        }
        return capacities
    }

    /// Runs `trace` with the exporter the options and `environment` choose.
    private func export(
        _ environment: [String: String],
        _ trace: (any SpanExporter, BatchingSpanProcessor.Configuration) throws -> TraceSession.Summary
    ) throws -> TraceSession.Summary {
        let useOTLP = exporter.map { $0 == .otlp } ?? OTLPExporterConfiguration.isEndpointConfigured(in: environment)
        let processorConfiguration = try BatchingSpanProcessor.Configuration.fromEnvironment(environment)
        guard useOTLP else { return try trace(ConsoleExporter(), processorConfiguration) }
        let configuration = try OTLPExporterConfiguration.fromEnvironment(environment)
        printError("exporting to \(configuration.endpoint)")
        return try trace(OTLPHTTPExporter(configuration: configuration), processorConfiguration)
    }
}

struct Config: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Work with sonde.yaml, the services one sonde traces.", subcommands: [Validate.self])

    struct Validate: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Check a config file (no root needed); exits non-zero on any error.")

        @Argument(help: "The config file.") var file: String

        /// One line per problem, file:line:column first; or one line saying what the file declares.
        func run() throws {
            do {
                let config = try ServiceConfigFile.load(file: file)
                print("ok  \(file): \(config.services.count) service(s): \(config.services.map(\.name).joined(separator: ", ")); unmatched processes: \(config.unmatched.rawValue)")
            } catch {
                error.errors.forEach { print("bad \($0)") }
                throw ExitCode(1)
            }
        }
    }
}

struct Packs: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Work with probe packs.", subcommands: [Validate.self, List.self, RecordOffsets.self])

    struct Validate: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Check pack files (no root needed); exits non-zero on any error.")

        @Argument(help: "Pack files or folders.") var paths: [String]

        /// One line per pack that loads, and one per problem: of the search (a folder without
        /// packs, one too big to search) and of each pack, every problem of a file in file order.
        func run() throws {
            let search = PackSearch.find(in: paths)
            search.problems.forEach { print("bad \($0)") }
            var failures = search.problems.count
            for file in search.files {
                do {
                    let pack = try PackLoader.load(file: file)
                    print("ok  \(file): \(pack.name), \(pack.probes.count) probe(s)")
                } catch let error as PackLoadError {
                    failures += 1
                    error.errors.forEach { print("bad \($0)") }
                } catch {
                    failures += 1
                    print("bad \(file): \(error)")
                }
            }
            if failures > 0 { throw ExitCode(1) }
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the packs on the search path; exits non-zero when a pack did not load.")
        @OptionGroup var packs: PackOptions

        func run() throws {
            let catalog = try packs.catalog()
            for pack in catalog.packs {
                let library = pack.library.soname ?? pack.library.module
                let experimental = pack.experimental.map { "  EXPERIMENTAL: \($0)" } ?? ""
                print("\(pack.name)  \(pack.language.rawValue) \(library) \(pack.library.versions)  \(pack.probes.map(\.id).joined(separator: ", "))  (\(pack.source.file))\(experimental)")
            }
            if !catalog.errors.isEmpty { throw ExitCode(1) }
        }
    }
}

extension Packs {
    struct RecordOffsets: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "record-offsets",
            abstract: "Record a reference build's DWARF into the packs' offset tables, for tracing binaries built without DWARF.",
            discussion: "Usually run for every toolchain by `swift package generate-offset-tables`.")

        @Option(help: "A Go program built with DWARF that links the packs' libraries.") var binary: String
        @Option(help: "MODULE=VERSION for a library the binary does not record (GOPATH builds); repeatable.")
        var libraryVersion: [String] = []
        @OptionGroup var packs: PackOptions

        func run() throws {
            var versions: [String: String] = [:]
            for pair in libraryVersion {
                let parts = pair.split(separator: "=", maxSplits: 1).map(String.init)
                guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty else {
                    throw ValidationError("--library-version wants MODULE=VERSION, got '\(pair)'")
                }
                versions[parts[0]] = parts[1]
            }
            do {
                try OffsetTableWriter.record(reference: binary, packs: packs.load(), libraryVersions: versions).forEach { print($0) }
            } catch let error as OffsetTableError {
                throw Failure(error.description)
            }
        }
    }
}

/// A run that cannot go on, reported as one line without the usage text.
struct Failure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

@Sendable func printError(_ line: String) {
    FileHandle.standardError.write(Data((line + "\n").utf8))
}
