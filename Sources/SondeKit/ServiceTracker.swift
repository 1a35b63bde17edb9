import BinaryAnalysis
import Engine
import Foundation
import Planning
import ProbePacks
import Services
import Spans
import Tracing

/// Traces the processes of a machine that a ``ServiceConfig`` names: finds them as they start,
/// attaches each with its service's packs, and detaches when they exit.
///
/// A program is analysed once per pack set (cached by its build id, so copies of one binary in
/// several containers share it), its probe configurations are written once per sampler however
/// many of its processes run, and each process gets uprobes filtered to it alone, so a process
/// no service matches is never touched. Used from the session's loop thread only.
final class ServiceTracker: TracedTargets {
    private let matcher: ServiceMatcher
    private let packs: [ProbePack]
    private let placement: SitePlacement
    private let injectionAllowed: Bool
    /// Each service's sampler, by service name; `defaultSampler` for the others.
    private let samplers: [String: TraceSampler]
    private let defaultSampler: TraceSampler
    private let clock: WallClock
    private let ownPID = getpid()
    /// Every process seen, by pid: traced or left alone, so that each is looked at once.
    private var known: [Int32: KnownProcess] = [:]
    /// Pids with nothing to look at (kernel threads, zombies), so that a pass does not read them again.
    private var unobservable: Set<Int32> = []
    /// Processes a service would claim once they listen on its port: looked at again until they do.
    private var awaitingPorts: [Int32: PortWait] = [:]
    private var nextPortCheck = ContinuousClock.Instant.now
    /// What each traced process's spans are made with, read once per span. A process that exits
    /// keeps its route until a drain of the ring buffer has passed its last spans.
    @exclusivity(unchecked) private var spanRoutes: [Int32: SpanRoute] = [:]
    /// Processes that exited, with the engine's ``BPFEngine/completedDrains`` then: a pass
    /// removes their routes once a drain has completed since.
    private var exited: [Int32: UInt64] = [:]
    private var plans: [PlanKey: CachedPlan] = [:]
    private var discovery = Discovery.scanning
    private var lastPass = ContinuousClock.now

    /// How the tracker learns of processes that start and end.
    private enum Discovery {
        /// The kernel reports execs and exits (``BPFEngine/watchProcesses()``), looked at on every
        /// turn of the loop; a pass lists /proc for processes forked without an exec, and reads
        /// every process when the kernel counts reports lost (the count at the last pass).
        case events(lost: UInt64)
        /// Without the kernel's reports, every pass looks at every process of /proc.
        case scanning
    }

    /// How often /proc is listed (kernel reports) or scanned (without them).
    static let passInterval: Duration = .seconds(1)
    static let scanInterval: Duration = .milliseconds(200)
    /// A process awaiting its port is looked at again after this, then twice as long each time, up to ``portCheckLimit``.
    static let firstPortCheck: Duration = .milliseconds(250)
    static let portCheckLimit: Duration = .seconds(30)
    /// Analysed binaries kept after their last process exits, for a restart or a second process.
    static let keptPlans = 32

    /// - Parameter sampler: The sampler of the services that set none of their own.
    init(
        config: ServiceConfig, packs: [ProbePack], placement: SitePlacement, injectionAllowed: Bool, sampler: TraceSampler, clock: WallClock
    ) throws {
        matcher = ServiceMatcher(config: config)
        self.packs = packs
        self.placement = placement
        self.injectionAllowed = injectionAllowed
        defaultSampler = sampler
        samplers = try config.services.reduce(into: [:]) { samplers, service in
            if !service.sampler.isEmpty { samplers[service.name] = try TraceSampler.fromEnvironment(service.sampler) }
        }
        self.clock = clock
    }

    var injectsTraceContext: Bool { injectionAllowed && matcher.config.services.contains(where: \.injectTraceContext) }

    func start(engine: BPFEngine, shouldStop: () -> Bool, log: (String) -> Void) throws {
        let names = matcher.config.services.map(\.name).joined(separator: ", ")
        log("watching for the processes of \(matcher.config.services.count) services (\(names))"
            + (matcher.config.unmatched == .trace ? ", and tracing every other process a pack applies to" : ""))
        do {
            try engine.watchProcesses()
            discovery = .events(lost: engine.processEventsLost())
        } catch {
            log("the kernel does not report process starts to sonde (\(error)): scanning /proc every \(Self.scanInterval) instead")
        }
        if defaultSampler != .alwaysOn { log("recording \(defaultSampler) of services that set no sampler (OTEL_TRACES_SAMPLER)") }
        scan(engine: engine, log: log)
        lastPass = .now
    }

    func refresh(engine: BPFEngine, log: (String) -> Void) -> Bool {
        let now = ContinuousClock.now
        let interval = if case .events = discovery { Self.passInterval } else { Self.scanInterval }
        let passDue = now - lastPass >= interval
        if passDue {
            // A pid traced again since has a route of its new process.
            for (pid, drains) in exited where engine.hasDrainedEverything(since: drains) {
                if known[pid]?.tracedProcess == nil { spanRoutes[pid] = nil }
                exited[pid] = nil
            }
        }
        if case .events = discovery {
            let events = engine.processEvents()
            // A pid is looked at as it is now, once, however many reports it has.
            var seen: Set<Int32> = []
            for pid in events.executed + events.exited where pid != ownPID && seen.insert(pid).inserted {
                examine(pid, engine: engine, log: log)
            }
        }
        if !awaitingPorts.isEmpty, now >= nextPortCheck { checkPorts(now: now, engine: engine, log: log) }
        guard passDue else { return true }
        lastPass = now
        switch discovery {
        case .events(let lost):
            let nowLost = engine.processEventsLost()
            if nowLost != lost {
                log("the kernel could not report \(nowLost - lost) process starts or ends; scanning /proc")
                discovery = .events(lost: nowLost)
                scan(engine: engine, log: log)
            } else {
                list(engine: engine, log: log)
            }
        case .scanning:
            scan(engine: engine, log: log)
        }
        return true
    }

    /// Looks at every process: the new ones, and the known ones for an exec or a reused pid.
    private func scan(engine: BPFEngine, log: (String) -> Void) {
        let running = forgetProcesses(notIn: ObservedProcess.allPIDs(), engine: engine, log: log)
        for pid in running where pid != ownPID && !unobservable.contains(pid) {
            // A known process costs two reads: its executable (an exec changes it) and its start
            // time (a reused pid changes it).
            if let previous = known[pid], FileIdentity(path: "/proc/\(pid)/exe") == previous.executableFile,
                ObservedProcess.startTime(pid: pid) == previous.startTime {
                continue
            }
            examine(pid, engine: engine, log: log, marksUnobservable: true)
        }
    }

    /// Looks at the processes the kernel's reports did not name: those forked without an exec.
    private func list(engine: BPFEngine, log: (String) -> Void) {
        for pid in forgetProcesses(notIn: ObservedProcess.allPIDs(), engine: engine, log: log)
        where pid != ownPID && known[pid] == nil && !unobservable.contains(pid) {
            examine(pid, engine: engine, log: log, marksUnobservable: true)
        }
    }

    /// Forgets the processes /proc no longer lists; returns the running pids.
    private func forgetProcesses(notIn pids: [Int32], engine: BPFEngine, log: (String) -> Void) -> Set<Int32> {
        let running = Set(pids)
        for pid in known.keys where !running.contains(pid) { forget(pid, engine: engine, log: log) }
        unobservable.formIntersection(running)
        return running
    }

    /// Looks at one process as it is now: traced or left alone for what it runs, forgotten once it
    /// has exited (or become a zombie, whose probes would never fire again).
    /// - Parameter marksUnobservable: A pid without a program (a kernel thread) is not read
    ///   again by a pass; a reported exec reads it whatever this says.
    private func examine(_ pid: Int32, engine: BPFEngine, log: (String) -> Void, marksUnobservable: Bool = false) {
        unobservable.remove(pid)
        guard let observed = ObservedProcess.read(pid: pid) else {
            forget(pid, engine: engine, log: log)
            if marksUnobservable { unobservable.insert(pid) }
            return
        }
        if let previous = known[pid] {
            if previous.executableFile == observed.executableFile, previous.startTime == observed.startTime { return }
            forget(pid, engine: engine, log: log, reason: previous.startTime == observed.startTime ? "ran another executable" : "exited")
        }
        known[pid] = KnownProcess(startTime: observed.startTime, executableFile: observed.executableFile, state: .ignored)
        known[pid]?.state = decide(observed, engine: engine, log: log)
    }

    private func forget(_ pid: Int32, engine: BPFEngine, log: (String) -> Void, reason: String = "exited") {
        awaitingPorts[pid] = nil
        guard let process = known.removeValue(forKey: pid) else { return }
        if case .traced(let traced) = process.state { stopTracing(traced, engine: engine, log: log, reason: reason) }
    }

    /// Looks again at the processes awaiting a port whose time has come; each waits twice as long
    /// as before for its next look.
    private func checkPorts(now: ContinuousClock.Instant, engine: BPFEngine, log: (String) -> Void) {
        for (pid, wait) in awaitingPorts where wait.next <= now {
            guard matcher.service(of: wait.process, ports: ObservedProcess.listeningPorts(pid: pid)) != nil else {
                let interval = min(wait.interval * 2, Self.portCheckLimit)
                awaitingPorts[pid] = PortWait(process: wait.process, next: now + interval, interval: interval)
                continue
            }
            awaitingPorts[pid] = nil
            known[pid]?.state = decide(wait.process, engine: engine, log: log)
        }
        nextPortCheck = awaitingPorts.values.map(\.next).min() ?? now
    }

    func assemble(_ event: SpanEvent) -> Span? {
        guard let route = spanRoutes[event.processID] else { return nil }
        return route.assembler.assemble(event, resource: route.resource)
    }

    func stop(engine: BPFEngine) {
        for (_, process) in known {
            if let traced = process.tracedProcess { engine.detach(traced.attachment) }
        }
    }

    /// Traces the process when a service claims it (or the unmatched policy says so) and a pack applies.
    private func decide(_ process: ObservedProcess, engine: BPFEngine, log: (String) -> Void) -> KnownProcess.State {
        let service: ServiceConfig.Service
        if let matched = matcher.service(of: process, ports: ObservedProcess.listeningPorts(pid: process.pid)) {
            service = matched
        } else if matcher.config.unmatched == .trace {
            service = ServiceConfig.Service(name: URL(fileURLWithPath: process.executable).lastPathComponent, selectors: [])
        } else {
            if matcher.awaitsPort(process) {
                let next = ContinuousClock.now + Self.firstPortCheck
                awaitingPorts[process.pid] = PortWait(process: process, next: next, interval: Self.firstPortCheck)
                nextPortCheck = min(nextPortCheck, next)
            }
            return .ignored
        }
        let executable = "/proc/\(process.pid)/exe"
        guard let program = Self.programIdentity(executable) else { return .ignored }
        let sampler = samplers[service.name] ?? defaultSampler
        let analysis = AnalysisKey(
            program: program, packs: packs.map(\.name).filter(service.enables(pack:)), injects: injectionAllowed && service.injectTraceContext)
        let key = PlanKey(analysis: analysis, sampler: sampler)
        let cached = plan(for: key, executable: executable, process: process, engine: engine, log: log)
        guard let configured = cached.configured, let assembler = cached.assembler else { return .ignored }
        let attachment: BPFEngine.Attachment
        do {
            attachment = try engine.attach(configured, binaryPath: executable, target: .process(process.pid))
        } catch {
            log("pid \(process.pid) (\(process.executable)), service \(service.name): not traced: \(error)")
            return .ignored
        }
        attachment.report.failures.forEach { log("pid \(process.pid): could not attach \($0)") }
        let runtime = configured.plan.goVersion.map { ("go", $0.hasPrefix("go") ? String($0.dropFirst(2)) : $0) }
        let resource = ProcessResource.make(
            serviceName: service.name,
            process: .init(pid: process.pid, executablePath: process.executable, cgroup: process.cgroup, runtime: runtime),
            extra: service.resourceAttributes)
        spanRoutes[process.pid] = SpanRoute(assembler: assembler, resource: resource)
        cached.users += 1
        log("tracing pid \(process.pid) (\(process.executable)) as service \(service.name): \(attachment.report.attachedSites) probe sites, "
            + "packs \(Set(configured.plan.probes.map(\.pack)).sorted().joined(separator: ", ")); "
            + (sampler == .alwaysOn ? "" : "recording \(sampler); ")
            + "attached \(String(format: "%.2f", process.age)) s after it started")
        return .traced(TracedProcess(pid: process.pid, service: service.name, attachment: attachment, key: key, plan: cached))
    }

    /// The program's plan for a pack set, analysed once and configured once per sampler; a program
    /// no pack applies to is remembered as such, and said once.
    private func plan(for key: PlanKey, executable: String, process: ObservedProcess, engine: BPFEngine, log: (String) -> Void) -> CachedPlan {
        if let cached = plans[key] {
            cached.lastUsed = .now
            return cached
        }
        let cached = CachedPlan()
        let sibling = plans.first { $0.key.analysis == key.analysis }?.value
        plans[key] = cached
        defer { evictUnusedPlans(engine: engine) }
        do {
            // Another sampler's plan of the same analysis is configured anew, not analysed again.
            guard let plan = try sibling.map(\.plan) ?? analyse(key.analysis, executable: executable, process: process, log: log) else {
                return cached
            }
            cached.plan = plan
            let configured = try engine.configure(plan, sampler: key.sampler)
            cached.configured = configured
            cached.assembler = SpanAssembler(plan: plan, slotBase: configured.slotBase, clock: clock)
        } catch {
            log("\(process.executable): not traced: \(error)")
        }
        return cached
    }

    /// The plan of the process's program for the key's packs; nil when none of their probes applies.
    private func analyse(_ key: AnalysisKey, executable: String, process: ObservedProcess, log: (String) -> Void) throws -> AttachPlan? {
        var plan = try Planner.plan(executable: executable, packs: packs.filter { key.packs.contains($0.name) }, placement: placement)
        if !key.injects { plan = plan.droppingTraceContextInjection() }
        guard !plan.probes.isEmpty else {
            log("\(process.executable): no probe of its packs applies; its processes are not traced")
            return nil
        }
        log("analysed \(process.executable)\(plan.goVersion.map { " (\($0))" } ?? ""): \(plan.probes.count) probes apply")
        return plan
    }

    private func stopTracing(_ traced: TracedProcess, engine: BPFEngine, log: (String) -> Void, reason: String) {
        engine.detach(traced.attachment)
        exited[traced.pid] = engine.completedDrains
        traced.plan.users -= 1
        traced.plan.lastUsed = .now
        log("pid \(traced.pid) (service \(traced.service)) \(reason); its probes are detached")
        evictUnusedPlans(engine: engine)
    }

    /// Keeps at most ``keptPlans`` plans no process uses, dropping the least recently used.
    private func evictUnusedPlans(engine: BPFEngine) {
        let unused = plans.filter { $0.value.users == 0 }.sorted { $0.value.lastUsed < $1.value.lastUsed }
        for (key, cached) in unused.dropLast(Self.keptPlans) {
            if let configured = cached.configured { engine.release(configured) }
            plans[key] = nil
        }
    }

    /// Which program a file holds: its build id and size, or else the file itself as last modified
    /// (an in-place rewrite changes it); nil when the file is gone.
    private static func programIdentity(_ path: String) -> String? {
        var status = stat()
        guard stat(path, &status) == 0 else { return nil }
        if let buildID = BinaryAnalyzer.buildID(path: path) { return "\(buildID) \(status.st_size)" }
        return "file \(status.st_dev):\(status.st_ino) \(status.st_size) \(status.st_mtim.tv_sec).\(status.st_mtim.tv_nsec)"
    }

    /// What an analysis depends on: the program, the packs enabled, whether injection is allowed.
    private struct AnalysisKey: Hashable {
        var program: String
        var packs: [String]
        var injects: Bool
    }

    /// What a configuration depends on: its analysis and the sampler written into it.
    private struct PlanKey: Hashable {
        var analysis: AnalysisKey
        var sampler: TraceSampler
    }

    /// A program's plan, shared by its processes; nil parts when no probe applies or it failed.
    private final class CachedPlan {
        var plan: AttachPlan?
        var configured: BPFEngine.ConfiguredPlan?
        var assembler: SpanAssembler?
        var users = 0
        var lastUsed = ContinuousClock.now
    }

    /// Two references: a span's lookup copies no more.
    private struct SpanRoute {
        let assembler: SpanAssembler
        let resource: Resource
    }

    private struct TracedProcess {
        let pid: Int32
        let service: String
        let attachment: BPFEngine.Attachment
        let key: PlanKey
        let plan: CachedPlan
    }

    /// A process a service claims by port, seen before it listens on it (a process is usually
    /// seen as it starts).
    private struct PortWait {
        let process: ObservedProcess
        let next: ContinuousClock.Instant
        let interval: Duration
    }

    private struct KnownProcess {
        enum State {
            case ignored
            case traced(TracedProcess)
        }
        let startTime: UInt64
        let executableFile: FileIdentity
        var state: State

        var tracedProcess: TracedProcess? {
            if case .traced(let traced) = state { return traced }
            return nil
        }
    }
}
