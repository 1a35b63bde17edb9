import Engine
import Foundation
import Planning
import ProbePacks
import Services
import Spans
import Synchronization
import Tracing

/// Traces the processes of a machine that a ``ServiceConfig`` names: finds them as they start,
/// attaches each with its service's packs, and detaches when they exit.
///
/// A binary is analysed once per pack set (cached by its file), its probe configurations are
/// written once however many of its processes run, and each process gets uprobes filtered to
/// it alone, so a process no service matches is never touched. Used from the session's loop
/// thread only.
final class ServiceTracker: TracedTargets {
    private let matcher: ServiceMatcher
    private let packs: [ProbePack]
    private let placement: SitePlacement
    private let injectionAllowed: Bool
    private let clock: WallClock
    private let ownPID = getpid()
    /// Every process seen, by pid: traced or left alone, so that each is looked at once.
    private var known: [Int32: KnownProcess] = [:]
    /// Processes that exited at the last refresh: their spans may still be in the ring buffer.
    private var exited: [Int32: TracedProcess] = [:]
    private var plans: [PlanKey: CachedPlan] = [:]
    /// Read by the span assemblers' resource closures.
    private let resources = ResourceTable()
    private var lastScan = ContinuousClock.now - ServiceTracker.scanInterval

    /// How often /proc is scanned for new and exited processes: a process is traced within this
    /// plus its analysis and attach time (about 0.3 s for the demo server) of its start.
    static let scanInterval: Duration = .milliseconds(200)
    /// Analysed binaries kept after their last process exits, for a restart or a second process.
    static let keptPlans = 32

    init(config: ServiceConfig, packs: [ProbePack], placement: SitePlacement, injectionAllowed: Bool, clock: WallClock) {
        matcher = ServiceMatcher(config: config)
        self.packs = packs
        self.placement = placement
        self.injectionAllowed = injectionAllowed
        self.clock = clock
    }

    var injectsTraceContext: Bool { injectionAllowed && matcher.config.services.contains(where: \.injectTraceContext) }

    func start(engine: BPFEngine, shouldStop: () -> Bool, log: (String) -> Void) throws {
        let names = matcher.config.services.map(\.name).joined(separator: ", ")
        log("watching for the processes of \(matcher.config.services.count) services (\(names))"
            + (matcher.config.unmatched == .trace ? ", and tracing every other process a pack applies to" : ""))
        _ = refresh(engine: engine, log: log)
    }

    func refresh(engine: BPFEngine, log: (String) -> Void) -> Bool {
        guard ContinuousClock.now - lastScan >= Self.scanInterval else { return true }
        lastScan = ContinuousClock.now
        // Spans of processes that exited a scan ago have been drained by now.
        for (pid, _) in exited { resources.table.withLock { _ = $0.removeValue(forKey: pid) } }
        exited.removeAll()
        let running = Set(ObservedProcess.allPIDs())
        for (pid, process) in known where !running.contains(pid) {
            known[pid] = nil
            if case .traced(let traced) = process.state { stopTracing(traced, engine: engine, log: log, reason: "exited") }
        }
        for pid in running where pid != ownPID {
            // A known process costs two reads per scan: its executable (an exec changes it) and
            // its start time (a reused pid changes it).
            if let previous = known[pid], FileIdentity(path: "/proc/\(pid)/exe") == previous.executableFile,
                ObservedProcess.startTime(pid: pid) == previous.startTime {
                continue
            }
            guard let observed = ObservedProcess.read(pid: pid) else { continue }
            if case .traced(let traced)? = known[pid]?.state { stopTracing(traced, engine: engine, log: log, reason: "ran another executable") }
            known[pid] = KnownProcess(startTime: observed.startTime, executableFile: observed.executableFile, state: .ignored)
            known[pid]?.state = decide(observed, engine: engine, log: log)
        }
        return true
    }

    func assemble(_ event: SpanEvent) -> Span? {
        (known[event.processID]?.tracedProcess ?? exited[event.processID])?.plan.assembler?.assemble(event)
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
            return .ignored
        }
        let key = PlanKey(file: process.executableFile, packs: packs.map(\.name).filter(service.enables(pack:)), injects: injectionAllowed && service.injectTraceContext)
        let cached = plan(for: key, process: process, engine: engine, log: log)
        guard let configured = cached.configured, let assembler = cached.assembler else { return .ignored }
        let attachment: BPFEngine.Attachment
        do {
            attachment = try engine.attach(configured, binaryPath: "/proc/\(process.pid)/exe", target: .process(process.pid))
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
        resources.table.withLock { $0[process.pid] = resource }
        cached.users += 1
        log("tracing pid \(process.pid) (\(process.executable)) as service \(service.name): \(attachment.report.attachedSites) probe sites, "
            + "packs \(Set(configured.plan.probes.map(\.pack)).sorted().joined(separator: ", ")); "
            + "attached \(String(format: "%.2f", process.age)) s after it started")
        return .traced(TracedProcess(pid: process.pid, service: service.name, attachment: attachment, key: key, plan: cached))
    }

    /// The binary's plan for a pack set, analysed and configured once; a binary no pack applies to
    /// is remembered as such, and said once.
    private func plan(for key: PlanKey, process: ObservedProcess, engine: BPFEngine, log: (String) -> Void) -> CachedPlan {
        if let cached = plans[key] {
            cached.lastUsed = .now
            return cached
        }
        let cached = CachedPlan()
        plans[key] = cached
        do {
            var plan = try Planner.plan(executable: "/proc/\(process.pid)/exe", packs: packs.filter { key.packs.contains($0.name) }, placement: placement)
            if !key.injects { plan = plan.droppingTraceContextInjection() }
            guard !plan.probes.isEmpty else {
                log("\(process.executable): no probe of its packs applies; its processes are not traced")
                return cached
            }
            let configured = try engine.configure(plan)
            log("analysed \(process.executable)\(plan.goVersion.map { " (\($0))" } ?? ""): \(plan.probes.count) probes apply")
            cached.configured = configured
            cached.assembler = SpanAssembler(plan: plan, clock: clock) { [resources] pid in
                resources.table.withLock { $0[pid] } ?? Resource(attributes: ["process.pid": .int(Int64(pid))])
            }
        } catch {
            log("\(process.executable): not traced: \(error)")
        }
        evictUnusedPlans(engine: engine)
        return cached
    }

    private func stopTracing(_ traced: TracedProcess, engine: BPFEngine, log: (String) -> Void, reason: String) {
        engine.detach(traced.attachment)
        exited[traced.pid] = traced
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

    private struct PlanKey: Hashable {
        var file: FileIdentity
        var packs: [String]
        var injects: Bool
    }

    /// A binary's plan, shared by its processes; nil parts when no probe applies or it failed.
    private final class CachedPlan {
        var configured: BPFEngine.ConfiguredPlan?
        var assembler: SpanAssembler?
        var users = 0
        var lastUsed = ContinuousClock.now
    }

    private struct TracedProcess {
        let pid: Int32
        let service: String
        let attachment: BPFEngine.Attachment
        let key: PlanKey
        let plan: CachedPlan
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

/// The resource of each traced process, written by the tracker, read by the span assemblers.
private final class ResourceTable: Sendable {
    let table = Mutex<[Int32: Resource]>([:])
}
