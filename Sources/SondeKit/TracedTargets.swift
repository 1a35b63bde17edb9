import Engine
import Foundation
import Planning
import Services
import Spans
import Tracing

/// What a session traces: one plan attached once (`--pid`, `--exe`), or the processes of
/// configured services, found as they start (`--config`, ``ServiceTracker``).
protocol TracedTargets: AnyObject {
    /// Whether the BPF program variant that writes trace context into processes is needed.
    var injectsTraceContext: Bool { get }
    /// Attaches what is there to trace at start.
    func start(engine: BPFEngine, shouldStop: () -> Bool, log: (String) -> Void) throws
    /// Called on every turn of the session's loop: attaches to what started, detaches from what
    /// ended. False ends the session.
    func refresh(engine: BPFEngine, log: (String) -> Void) -> Bool
    /// The span of an event; nil when no plan of these targets made it.
    func assemble(_ event: SpanEvent) -> Span?
}

/// One plan, attached once to one process or to every process of one executable. Under
/// `--exe`, a new build that replaces the file (a deploy) is analysed and attached beside the old
/// one, which keeps tracing the processes still running it until the last of them exits.
final class SingleTarget: TracedTargets {
    private let executablePath: String
    private let target: TraceSession.Target
    private let sampler: TraceSampler
    private let clock: WallClock
    private let firstPlan: AttachPlan
    /// Analyses another build of the executable with the same packs.
    private let replan: ((String) throws -> AttachPlan)?
    /// Under --pid, the shared libraries of the process that packs probe.
    private let libraryPlans: [AttachPlan]
    // The polling thread alone reads and changes these (in `refresh` and, for each span, in
    // `assemble`): the runtime's check of each access, with its thread-local lookup, is left out.
    /// What is attached of the executable, newest build last; one entry under --pid.
    @exclusivity(unchecked) private var builds: [AttachedBuild] = []
    /// What is attached of the shared libraries, under --pid.
    @exclusivity(unchecked) private var libraries: [AttachedBuild] = []
    /// Builds detached, until a drain of the ring buffer has passed their last spans: the
    /// engine's ``BPFEngine/completedDrains`` when they were detached.
    @exclusivity(unchecked) private var retired: [(build: AttachedBuild, drainsAtDetach: UInt64)] = []
    /// A file found at the path that could not be traced, so that it is said once.
    private var refusedFile: FileIdentity?
    private var nextFileCheck = ContinuousClock.now

    /// How often, under --exe, the file is checked for a new build and old builds for processes.
    static let fileCheckInterval: Duration = .seconds(1)

    /// A class: assembling a span reads its build's assembler through one reference rather than
    /// a copy of the whole build, which retained each of its arrays and closures per span.
    private final class AttachedBuild {
        let file: FileIdentity?
        let configured: BPFEngine.ConfiguredPlan
        let attachment: BPFEngine.Attachment
        let assembler: SpanAssembler
        let resources: ResourceCache

        init(
            file: FileIdentity?, configured: BPFEngine.ConfiguredPlan, attachment: BPFEngine.Attachment, assembler: SpanAssembler,
            resources: ResourceCache
        ) {
            self.file = file
            self.configured = configured
            self.attachment = attachment
            self.assembler = assembler
            self.resources = resources
        }

        func assemble(_ event: SpanEvent) -> Span? {
            assembler.assemble(event, resource: resources.resource(of: event.processID))
        }
    }

    init(
        plan: AttachPlan, executablePath: String, target: TraceSession.Target, sampler: TraceSampler, clock: WallClock,
        replan: ((String) throws -> AttachPlan)? = nil, libraryPlans: [AttachPlan] = []
    ) {
        firstPlan = plan
        self.libraryPlans = libraryPlans
        self.executablePath = executablePath
        self.target = target
        self.sampler = sampler
        self.clock = clock
        self.replan = replan
    }

    var injectsTraceContext: Bool { ([firstPlan] + libraryPlans).contains(where: \.injectsTraceContext) }

    func start(engine: BPFEngine, shouldStop: () -> Bool, log: (String) -> Void) throws {
        let engineTarget: BPFEngine.Target
        switch target {
        case .process(let pid): engineTarget = .process(pid)
        case .executable: engineTarget = .allProcesses
        }
        if sampler != .alwaysOn { log("recording \(sampler) (OTEL_TRACES_SAMPLER)") }
        let build = try attach(firstPlan, engine: engine, target: engineTarget, shouldStop: shouldStop)
        build.attachment.report.failures.forEach { log("could not attach \($0)") }
        builds = [build]
        var attached = libraryPlans.contains(where: { !$0.probes.isEmpty }) && firstPlan.probes.isEmpty
            ? [] : ["\(build.attachment.report.attachedSites) probe sites for \(firstPlan.probes.count) probes in \(executablePath)"]
        for plan in libraryPlans where !plan.probes.isEmpty {
            let library = try attach(plan, engine: engine, target: engineTarget, shouldStop: shouldStop)
            library.attachment.report.failures.forEach { log("could not attach \($0)") }
            libraries.append(library)
            let name = URL(fileURLWithPath: plan.binaryPath).lastPathComponent
            attached.append("\(library.attachment.report.attachedSites) probe sites for \(plan.probes.count) probes in \(name), which \(executablePath) maps")
        }
        log("attached \(attached.joined(separator: ", ")); Ctrl-C to stop")
    }

    private func attach(_ plan: AttachPlan, engine: BPFEngine, target: BPFEngine.Target, shouldStop: () -> Bool = { false }) throws -> AttachedBuild {
        let file = self.target == .executable ? FileIdentity(path: plan.binaryPath) : nil
        let configured = try engine.configure(plan, sampler: sampler)
        do {
            let attachment = try engine.attach(configured, target: target, shouldStop: shouldStop)
            return AttachedBuild(
                file: file, configured: configured, attachment: attachment,
                assembler: SpanAssembler(plan: plan, slotBase: configured.slotBase, clock: clock),
                resources: ResourceCache(executablePath: executablePath, runtime: plan.goVersion))
        } catch {
            engine.release(configured)
            throw error
        }
    }

    func refresh(engine: BPFEngine, log: (String) -> Void) -> Bool {
        if case .process(let pid) = target, kill(pid, 0) != 0, errno == ESRCH {
            log("process \(pid) exited")
            return false
        }
        if target == .executable, ContinuousClock.now >= nextFileCheck {
            nextFileCheck = ContinuousClock.now + Self.fileCheckInterval
            retired.removeAll { engine.hasDrainedEverything(since: $0.drainsAtDetach) }
            followReplacedFile(engine: engine, log: log)
            detachUnusedBuilds(engine: engine, log: log)
        }
        return true
    }

    /// Attaches a new build found at the path (a new file: another inode), once.
    private func followReplacedFile(engine: BPFEngine, log: (String) -> Void) {
        guard let current = FileIdentity(path: firstPlan.binaryPath), current != builds.last?.file, current != refusedFile else { return }
        guard let replan else {
            log("\(executablePath) was replaced on disk: processes started from the new file are not traced; restart sonde to trace them")
            refusedFile = current
            return
        }
        do {
            var plan = try replan(firstPlan.binaryPath)
            if !firstPlan.injectsTraceContext { plan = plan.droppingTraceContextInjection() }
            guard !plan.probes.isEmpty else {
                log("\(executablePath) was replaced on disk by a file no probe applies to; its processes are not traced")
                refusedFile = current
                return
            }
            let build = try attach(plan, engine: engine, target: .allProcesses)
            build.attachment.report.failures.forEach { log("could not attach \($0)") }
            builds.append(build)
            log("\(executablePath) was replaced on disk: analysed the new file\(plan.goVersion.map { " (\($0))" } ?? ""), "
                + "attached \(build.attachment.report.attachedSites) probe sites; processes of the old file stay traced until they exit")
        } catch {
            log("\(executablePath) was replaced on disk; the new file is not traced: \(error)")
            refusedFile = current
        }
    }

    /// Detaches the builds older than the file at the path that no process runs any more.
    private func detachUnusedBuilds(engine: BPFEngine, log: (String) -> Void) {
        guard builds.count > 1 else { return }
        let running = Set(ObservedProcess.allPIDs().compactMap { FileIdentity(path: "/proc/\($0)/exe") })
        let unused = builds.dropLast().filter { build in build.file.map { !running.contains($0) } ?? true }
        for build in unused {
            engine.detach(build.attachment)
            engine.release(build.configured)
            log("no process runs the earlier build of \(executablePath) any more; its probes are detached")
        }
        retired += unused.map { ($0, engine.completedDrains) }
        builds.removeAll { build in unused.contains { $0.attachment == build.attachment } }
    }

    func assemble(_ event: SpanEvent) -> Span? {
        if builds.count == 1, retired.isEmpty, libraries.isEmpty { return builds[0].assemble(event) }
        let maker = { (build: AttachedBuild) in build.configured.made(spanSlot: event.spanSlot) }
        return (builds.first(where: maker) ?? libraries.first(where: maker) ?? retired.lazy.map(\.build).first(where: maker))?.assemble(event)
    }
}

/// The resource of each process of one executable, made once per process: a span of the same
/// process as the one before costs no dictionary. Used on the session's loop thread only.
private final class ResourceCache {
    private let executablePath: String
    private let runtime: (name: String, version: String)?
    @exclusivity(unchecked) private var last: (pid: Int32, resource: Resource)?

    init(executablePath: String, runtime goVersion: String?) {
        self.executablePath = executablePath
        runtime = goVersion.map { ("go", $0.hasPrefix("go") ? String($0.dropFirst(2)) : $0) }
    }

    func resource(of pid: Int32) -> Resource {
        if let last, last.pid == pid { return last.resource }
        let cgroup = ObservedProcess.cgroup(pid: pid)
        let resource = ProcessResource.make(
            serviceName: URL(fileURLWithPath: executablePath).lastPathComponent,
            process: .init(pid: pid, executablePath: executablePath, cgroup: cgroup, runtime: runtime))
        last = (pid, resource)
        return resource
    }
}
