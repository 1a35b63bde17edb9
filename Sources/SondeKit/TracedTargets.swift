import Engine
import Foundation
import Planning
import Services
import Spans
import Synchronization
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

/// One plan, attached once to one process or to every process of one executable.
final class SingleTarget: TracedTargets {
    private let plan: AttachPlan
    private let executablePath: String
    private let target: TraceSession.Target
    private let sampler: TraceSampler
    private let assembler: SpanAssembler
    /// Under --exe the uprobes sit on the file there at attach time; one that replaces it later
    /// (a deploy) starts processes sonde does not see, which is said once.
    private var attachedFile: FileIdentity?
    private var nextFileCheck = ContinuousClock.now

    init(plan: AttachPlan, executablePath: String, target: TraceSession.Target, sampler: TraceSampler, clock: WallClock) {
        self.plan = plan
        self.executablePath = executablePath
        self.target = target
        self.sampler = sampler
        let resources = ResourceCache(executablePath: executablePath, runtime: plan.goVersion)
        assembler = SpanAssembler(plan: plan, clock: clock, resource: resources.resource(of:))
    }

    var injectsTraceContext: Bool { plan.injectsTraceContext }

    func start(engine: BPFEngine, shouldStop: () -> Bool, log: (String) -> Void) throws {
        let engineTarget: BPFEngine.Target
        switch target {
        case .process(let pid): engineTarget = .process(pid)
        case .executable: engineTarget = .allProcesses
        }
        if sampler != .alwaysOn { log("recording \(sampler) (OTEL_TRACES_SAMPLER)") }
        let report = try engine.attach(plan: plan, sampler: sampler, target: engineTarget, shouldStop: shouldStop)
        report.failures.forEach { log("could not attach \($0)") }
        log("attached \(report.attachedSites) probe sites for \(plan.probes.count) probes in \(executablePath); Ctrl-C to stop")
        attachedFile = target == .executable ? FileIdentity(path: plan.binaryPath) : nil
    }

    func refresh(engine: BPFEngine, log: (String) -> Void) -> Bool {
        if case .process(let pid) = target, kill(pid, 0) != 0, errno == ESRCH {
            log("process \(pid) exited")
            return false
        }
        if let attached = attachedFile, ContinuousClock.now >= nextFileCheck {
            nextFileCheck = ContinuousClock.now + .seconds(5)
            if FileIdentity(path: plan.binaryPath) != attached {
                log("\(executablePath) was replaced or removed on disk: processes started from the new file are not "
                    + "traced (the probes are on the file that was there when sonde attached); restart sonde to trace them, "
                    + "or use --config, which follows replaced executables")
                attachedFile = nil
            }
        }
        return true
    }

    func assemble(_ event: SpanEvent) -> Span? {
        assembler.assemble(event)
    }
}

/// The resource of each process of one executable, made once per process: a span of the same
/// process as the one before costs no dictionary.
private final class ResourceCache: Sendable {
    private let executablePath: String
    private let runtime: (name: String, version: String)?
    private let lastResource = Mutex<(pid: Int32, resource: Resource)?>(nil)

    init(executablePath: String, runtime goVersion: String?) {
        self.executablePath = executablePath
        runtime = goVersion.map { ("go", $0.hasPrefix("go") ? String($0.dropFirst(2)) : $0) }
    }

    func resource(of pid: Int32) -> Resource {
        lastResource.withLock { last in
            if let last, last.pid == pid { return last.resource }
            let cgroup = ObservedProcess.cgroup(pid: pid)
            let resource = ProcessResource.make(
                serviceName: URL(fileURLWithPath: executablePath).lastPathComponent,
                process: .init(pid: pid, executablePath: executablePath, cgroup: cgroup, runtime: runtime))
            last = (pid, resource)
            return resource
        }
    }
}
