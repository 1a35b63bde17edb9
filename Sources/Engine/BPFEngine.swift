import CLibBPF
import Foundation
import Planning
import SondeABI

/// Loads the generic BPF program once, writes each probe's configuration, attaches the
/// probe sites as uprobes with cookies, and reads finished spans from the ring buffer.
/// The only part of Sonde that needs root and a kernel.
public final class BPFEngine {
    /// Whom the probes watch.
    public enum Target: Sendable, Equatable {
        /// One running process.
        case process(Int32)
        /// Every process running the executable, now and later.
        case allProcesses
    }

    public struct AttachReport: Sendable, Equatable {
        public var attachedSites: Int
        /// Sites that failed, with the kernel's reason.
        public var failures: [String]
    }

    /// How many entries each state map holds, and the ring buffer's size, set before the program loads.
    public struct Capacities: Sendable, Equatable {
        public var calls = Int(SONDE_MAX_CALLS)
        public var objectSpans = Int(SONDE_MAX_OBJECT_SPANS)
        public var contexts = Int(SONDE_MAX_CONTEXTS)
        /// Bytes of the `spans` ring buffer: a power of two, a multiple of the page size. Its data
        /// pages are mapped twice back to back (so a record can wrap), so every byte here costs two
        /// of Sonde's resident memory once the ring has wrapped. The BPF program wakes the
        /// reader at a quarter unread (512 KiB), and again per quarter written while it lags; 2 MiB
        /// leaves the reader 1.5 MiB of slack (about 1,700 spans of whole records, 3,800 net/http
        /// server spans, whose records end with their last capture: some 40 ms at 100,000 spans a
        /// second), which lost no span under scripts/bench.sh's load where 8 MiB cost 16 MiB of
        /// RSS (issue 7). Its "ring peak" column shows how much of it a run used.
        public var spanBufferBytes = 2 * 1024 * 1024
        public init() {}
    }

    /// The loaded BPF object; its maps are read in BPFEngine+StateMaps.swift.
    let object: OpaquePointer
    private let program: OpaquePointer
    /// The descriptor of the program that takes an entry of the calls or trace-context map from the
    /// probes (see ``reclaim(olderThan:isProcessAlive:)``).
    let claimProgram: Int32
    /// How uprobes are attached on this kernel.
    public let uprobeLinks: UprobeLinkKind
    /// The uprobe links of each attachment.
    private var links: [Int: [UprobeLink]] = [:]
    private var nextAttachmentID = 0
    private var cookies = CookieRanges(capacity: UInt32(SONDE_MAX_PROBE_CONFIGS))
    /// A probe's entry, returns and result branches each have a configuration of their own.
    private static let configsPerProbe = UInt32(SONDE_CONFIGS_PER_PROBE)
    /// Closes the links of detached attachments, one after another.
    private let linkCloser = DispatchQueue(label: "sonde.link-closer")
    private var ringBuffer: OpaquePointer?
    private var sink: EventSink?
    /// Set by ``watchProcesses()``.
    var processWatch: ProcessWatch?
    /// What ``wait(timeoutMilliseconds:)`` sleeps on.
    let waitSet: WaitSet

    /// - Parameters:
    ///   - injectsTraceContext: Loads the program variant that may write trace context into the
    ///     traced processes' memory (the plan's probes say what is written); a kernel in lockdown refuses it (see
    ///     ``KernelCapabilities/traceContextInjectionBlocker()``).
    ///   - uprobeLinks: Multi-links where the kernel has them (6.6), unless told otherwise.
    public init(capacities: Capacities = Capacities(), injectsTraceContext: Bool = false, uprobeLinks: UprobeLinkKind? = nil) throws {
        self.uprobeLinks = uprobeLinks ?? (KernelCapabilities.hasUprobeMultiLinks() ? .multi : .single)
        waitSet = try WaitSet()
        Self.routeLibbpfLogToStderr()
        guard let bytes = Data(base64Encoded: embeddedBPFObjectBase64) else {
            fatalError("the embedded BPF object is not valid base64: the build plugin is broken")
        }
        let opened = bytes.withUnsafeBytes { raw -> OpaquePointer? in
            var options = bpf_object_open_opts()
            options.sz = MemoryLayout<bpf_object_open_opts>.size
            return bpf_object__open_mem(raw.baseAddress, raw.count, &options)
        }
        guard let opened else { throw EngineError.bpfLoadFailed(step: "open", errno: errno) }
        for (map, entries) in [(SONDE_MAP_CALLS, capacities.calls), (SONDE_MAP_OBJECT_SPANS, capacities.objectSpans),
                               (SONDE_MAP_ACTIVE_CONTEXTS, capacities.contexts), (SONDE_MAP_SPANS, capacities.spanBufferBytes)] {
            let result = bpf_object__find_map_by_name(opened, map).map { bpf_map__set_max_entries($0, UInt32(entries)) } ?? -ENOENT
            guard result == 0 else {
                bpf_object__close(opened)
                throw EngineError.bpfLoadFailed(step: "sizing map \(map) to \(entries) entries", errno: -result)
            }
        }
        // Only one variant is loaded: the kernel verifies each program loaded.
        let (used, unused) = injectsTraceContext
            ? (SONDE_WRITING_PROGRAM_NAME, SONDE_PROGRAM_NAME) : (SONDE_PROGRAM_NAME, SONDE_WRITING_PROGRAM_NAME)
        guard let found = bpf_object__find_program_by_name(opened, used), let other = bpf_object__find_program_by_name(opened, unused),
              let claim = bpf_object__find_program_by_name(opened, SONDE_CLAIM_PROGRAM_NAME) else {
            bpf_object__close(opened)
            throw EngineError.bpfLoadFailed(step: "find program \(used)", errno: ENOENT)
        }
        bpf_program__set_autoload(other, false)
        // A program loaded for multi-links attaches through them only.
        if self.uprobeLinks == .multi {
            bpf_program__set_expected_attach_type(found, bpf_attach_type(rawValue: UInt32(SONDE_BPF_TRACE_UPROBE_MULTI)))
        }
        let loadResult = bpf_object__load(opened)
        guard loadResult == 0 else {
            bpf_object__close(opened)
            throw EngineError.bpfLoadFailed(step: "load (verifier)", errno: -loadResult)
        }
        var limits = sonde_limits(kept_call_records: UInt32(capacities.calls / 2), kept_context_entries: UInt32(capacities.contexts / 2))
        var zero: UInt32 = 0
        let limitsWritten = bpf_map_update_elem(bpf_object__find_map_fd_by_name(opened, SONDE_MAP_LIMITS), &zero, &limits, 0)
        guard limitsWritten == 0 else {
            bpf_object__close(opened)
            throw EngineError.bpfLoadFailed(step: "writing map \(SONDE_MAP_LIMITS)", errno: -limitsWritten)
        }
        object = opened
        program = found
        claimProgram = bpf_program__fd(claim)
        try checkLayout()
    }

    /// The Swift encoders and the C structs must agree byte for byte; the BTF-described map
    /// value sizes catch a header changed on one side only.
    private func checkLayout() throws {
        for (map, expected) in [(SONDE_MAP_PROBE_CONFIGS, RecordLayout.configSize), (SONDE_MAP_CALLS, RecordLayout.recordSize),
                                (SONDE_MAP_OBJECT_SPANS, RecordLayout.recordSize)] {
            let size = bpf_object__find_map_by_name(object, map).map { Int(bpf_map__value_size($0)) }
            guard size == expected else {
                throw EngineError.layoutMismatch(map: map, bpfSize: size ?? 0, swiftSize: expected)
            }
        }
    }

    deinit {
        detach()
        bpf_object__close(object)
    }

    /// One plan's probe configurations in the shared config map. Every process running the
    /// plan's binary attaches with the same configurations, so a binary is configured once
    /// however many of its processes are traced.
    public struct ConfiguredPlan: Sendable {
        public let plan: AttachPlan
        /// The probes whose configuration was written, by index in `plan.probes`.
        let probeIndexes: [Int]
        /// The first config-map entry of this plan: probe `i`'s entry site carries cookie
        /// `cookieBase + 3i`, its return sites `cookieBase + 3i + 1`, its result branches `+ 2`; a
        /// called-from probe's other call sites take `+ 1` and `+ 2` instead.
        let cookieBase: UInt32
        /// Probes that could not be configured, with the reason; they are never attached.
        public let failures: [String]

        /// Added to the plan's span slots in the kernel, so that the events of plans configured
        /// side by side (two builds of one executable) tell which plan made them.
        public var slotBase: UInt32 { cookieBase }

        /// Whether an event with this span slot comes from this plan's probes.
        public func made(spanSlot: UInt32) -> Bool {
            spanSlot &- slotBase < UInt32(plan.probes.count)
        }
    }

    /// The uprobe links of one plan in one target, detached together.
    public struct Attachment: Sendable, Equatable {
        let id: Int
        public let report: AttachReport
    }

    /// Writes the plan's probe configurations, in config-map entries no other configured plan uses.
    /// The sampler is part of them, so processes of one binary configured twice (two services)
    /// can record different shares of their traces.
    /// - Throws: ``EngineError/configurationsFull(needed:free:)`` when the map has no room left.
    public func configure(_ plan: AttachPlan, sampler: TraceSampler = .alwaysOn) throws -> ConfiguredPlan {
        let needed = Self.configsPerProbe * UInt32(plan.probes.count)
        guard let base = cookies.allocate(needed) else {
            throw EngineError.configurationsFull(needed: Int(needed), free: cookies.largestFree)
        }
        let configs = bpf_object__find_map_fd_by_name(object, SONDE_MAP_PROBE_CONFIGS)
        var configured: [Int] = []
        var failures: [String] = []
        for (index, probe) in plan.probes.enumerated() {
            let entryCookie = base + Self.configsPerProbe * UInt32(index)
            let entryRole: RecordLayout.Role = switch probe.probe.enrichment?.ends {
            case .object?: .endObjectSpan
            case .openCall?: .endSpan
            case nil:
                probe.probe.enrichment != nil ? .enrich : probe.handoffChild != nil ? .handoff : probe.probe.injection != nil ? .inject
                    : probe.probe.extraction != nil ? .extract : .startSpan
            }
            // One probe that cannot be configured is reported and skipped; the others still attach.
            do {
                // A called-from probe's other call sites take the slots its returns and result branches would.
                for (offset, site) in probe.entries.enumerated() {
                    try writeConfig(
                        fd: configs, index: entryCookie + UInt32(offset),
                        RecordLayout.encodeConfig(
                            role: entryRole, spanSlot: base + probe.spanSlot, keyMode: probe.keyMode, skipFlagsMask: site.skipFlagsMask,
                            siteAddress: site.address, samplingThreshold: sampler.threshold,
                            objectRegister: probe.handoffChild ?? probe.objectKey ?? probe.carrierRegister, guarded: probe.entryGuard,
                            program: probe.entryProgram, captureSlots: probe.captureSlots, contextProgram: probe.contextProgram,
                            contextAction: probe.contextAction, prefetch: probe.prefetch))
                }
                if !probe.returns.isEmpty {
                    let returnSite: RecordLayout.ReturnSite =
                        probe.returnsAfterEndSpan ? .retAfterEndSpan : probe.returns.first?.role == .returnProbe ? .afterReturn : .retInstruction
                    try writeConfig(
                        fd: configs, index: entryCookie + 1,
                        RecordLayout.encodeConfig(
                            role: .endSpan, spanSlot: base + probe.spanSlot, keyMode: probe.keyMode,
                            skipFlagsMask: 0, siteAddress: 0, returnSite: returnSite,
                            guarded: probe.returnGuard, program: probe.returnProgram, captureSlots: probe.captureSlots))
                }
                if !probe.resultBranches.isEmpty {
                    // The return program reads the call's results, still in the registers a RET would find them in.
                    try writeConfig(
                        fd: configs, index: entryCookie + 2,
                        RecordLayout.encodeConfig(
                            role: .endSpan, spanSlot: base + probe.spanSlot, keyMode: probe.keyMode, skipFlagsMask: 0, siteAddress: 0,
                            returnSite: .insideGoFrame, guarded: probe.resultBranchGuard, program: probe.returnProgram, captureSlots: probe.captureSlots))
                }
                configured.append(index)
            } catch {
                failures.append("\(probe.qualifiedID): \(error)")
            }
        }
        return ConfiguredPlan(plan: plan, probeIndexes: configured, cookieBase: base, failures: failures)
    }

    /// Frees the plan's config-map entries for another plan; detach its attachments first. Waits
    /// for the links being closed: until they are, their uprobes still read these entries.
    public func release(_ configured: ConfiguredPlan) {
        linkCloser.sync {}
        cookies.free(configured.cookieBase, count: Self.configsPerProbe * UInt32(configured.plan.probes.count))
    }

    /// Attaches every site of a configured plan. A probe is attached whole or not at all: an
    /// entry without all its returns would leave calls that never end, returns without their entry
    /// would only miss. A probe that fails is reported and the others still attach; nothing
    /// attached at all is an error.
    /// - Parameters:
    ///   - binaryPath: The file the uprobes are set on, e.g. `/proc/PID/exe` of the process
    ///     traced; the plan's own `binaryPath` by default.
    ///   - shouldStop: Asked before each probe; true ends attaching early (a signal arrived).
    public func attach(
        _ configured: ConfiguredPlan, binaryPath: String? = nil, target: Target, shouldStop: () -> Bool = { false }
    ) throws -> Attachment {
        let binary = binaryPath ?? configured.plan.binaryPath
        let sites = configured.probeIndexes.map { index in
            let probe = configured.plan.probes[index]
            let entryCookie = configured.cookieBase + Self.configsPerProbe * UInt32(index)
            let entries = probe.entries.enumerated().map { ($1, entryCookie + UInt32($0)) }
            return entries + probe.returns.map { ($0, entryCookie + 1) } + probe.resultBranches.map { ($0, entryCookie + 2) }
        }
        var failures = configured.failures
        var attachedLinks: [UprobeLink] = []
        var attachedSites = 0
        // All sites in one link; when the kernel refuses one of them, one link per probe finds which.
        if uprobeLinks == .multi, !shouldStop(), case .success(let made) = attachSites(sites.flatMap { $0 }, binary: binary, target: target) {
            attachedLinks = made
            attachedSites = sites.reduce(0) { $0 + $1.count }
        } else {
            for (index, probeSites) in zip(configured.probeIndexes, sites) {
                if shouldStop() { break }
                switch attachSites(probeSites, binary: binary, target: target) {
                case .success(let made):
                    attachedLinks += made
                    attachedSites += probeSites.count
                case .failure(let reason):
                    let addresses = probeSites.map { "0x\(String($0.0.address, radix: 16))" }.joined(separator: ", ")
                    failures.append("\(configured.plan.probes[index].qualifiedID) at \(addresses): \(reason.text); the probe is left out")
                }
            }
        }
        guard !attachedLinks.isEmpty || configured.plan.probes.isEmpty else { throw EngineError.nothingAttached(failures: failures) }
        nextAttachmentID += 1
        links[nextAttachmentID] = attachedLinks
        return Attachment(id: nextAttachmentID, report: AttachReport(attachedSites: attachedSites, failures: failures))
    }

    /// Configures and attaches one plan: the whole job when one binary is traced.
    public func attach(
        plan: AttachPlan, sampler: TraceSampler = .alwaysOn, target: Target, shouldStop: () -> Bool = { false }
    ) throws -> AttachReport {
        try attach(configure(plan, sampler: sampler), target: target, shouldStop: shouldStop).report
    }

    /// Removes one attachment's uprobes. Closing a link waits for a grace period of the kernel
    /// (about 0.1 s on Linux 6.18; once per uprobe with single links), so links are closed on a
    /// background queue: tracing other processes goes on.
    public func detach(_ attachment: Attachment) {
        guard let removed = links.removeValue(forKey: attachment.id) else { return }
        linkCloser.async { removed.forEach { $0.close() } }
    }

    /// Starts delivering finished spans to `handler`, called on the thread that waits for and
    /// drains them. The handler returns whether it takes more now: false pauses the drain after
    /// that span, and the ring buffer holds the rest until the next drain.
    public func onSpan(_ handler: @escaping (SpanEvent) -> Bool) throws {
        try readSpans(into: EventSink(handler: handler))
    }

    /// Drops every span as it is read, before decoding, and counts it (``spansDiscarded``): the
    /// benchmark's measure of what the kernel side alone costs a traced program, told apart from
    /// the agent's work on the spans.
    public func discardSpans() throws {
        try readSpans(into: EventSink(handler: nil))
    }

    /// Spans ``discardSpans()`` dropped, those detaching drained included.
    public var spansDiscarded: Int { sink?.discarded ?? 0 }

    private func readSpans(into sink: EventSink) throws {
        if let ringBuffer { ring_buffer__free(ringBuffer) }
        let fd = bpf_object__find_map_fd_by_name(object, SONDE_MAP_SPANS)
        let context = Unmanaged.passUnretained(sink).toOpaque()
        guard let buffer = ring_buffer__new(fd, { context, data, size in
            guard let context, let data else { return 0 }
            let sink = Unmanaged<EventSink>.fromOpaque(context).takeUnretainedValue()
            // A negative result makes libbpf stop after this record, which it has consumed.
            return sink.deliver(UnsafeRawBufferPointer(start: data, count: size)) ? 0 : -1
        }, context, nil) else {
            throw EngineError.bpfLoadFailed(step: "ring buffer setup", errno: errno)
        }
        self.sink = sink
        ringBuffer = buffer
        try waitSet.watch(fd, as: .spans)
    }

    /// How a drain of the ring buffer ended.
    public enum DrainOutcome: Sendable, Equatable {
        /// Every span the ring buffer held was delivered.
        case drained
        /// The span handler took no more; the ring buffer holds the rest.
        case paused
    }

    /// Drains that delivered every span the ring buffer held; see ``hasDrainedEverything(since:)``.
    public private(set) var completedDrains: UInt64 = 0

    /// Whether every span written before ``completedDrains`` was `mark` has been delivered: a
    /// drain that began after then has completed. Keeps what assembles a detached process's
    /// spans until its last ones are through.
    public func hasDrainedEverything(since mark: UInt64) -> Bool {
        completedDrains > mark
    }

    /// Delivers the spans the ring buffer holds, until the handler pauses. Shared memory only,
    /// no system call; ``wait(timeoutMilliseconds:)`` says when the ring buffer is filling up.
    @discardableResult
    public func drainSpans() -> DrainOutcome {
        guard let ringBuffer else { return .drained }
        // A negative result is the handler's pause; otherwise the number of spans delivered.
        guard ring_buffer__consume(ringBuffer) >= 0 else { return .paused }
        completedDrains += 1
        return .drained
    }

    /// Removes every uprobe; the traced programs keep running untouched.
    public func detach() {
        // Each close waits for a grace period in the kernel: one per link, whatever its uprobes.
        links.values.joined().forEach { $0.close() }
        links.removeAll()
        linkCloser.sync {}   // what single detaches queued is closed too
        if let ringBuffer {
            // Until it is empty, however often the handler pauses: the buffer is freed after.
            while ring_buffer__consume(ringBuffer) < 0 {}
            ring_buffer__free(ringBuffer)
        }
        ringBuffer = nil
    }

    private func writeConfig(fd: Int32, index: UInt32, _ bytes: [UInt8]) throws {
        var key = index
        let result = bytes.withUnsafeBytes { bpf_map_update_elem(fd, &key, $0.baseAddress, UInt64(BPF_ANY)) }
        guard result == 0 else { throw EngineError.bpfLoadFailed(step: "writing probe configuration \(index)", errno: -result) }
    }

    /// Why a site could not be attached.
    private struct AttachFailure: Error {
        let text: String
    }

    /// The uprobes at these sites, each with its cookie: one multi-link, or one link per site;
    /// all of them or none.
    private func attachSites(_ sites: [(ProbeSite, UInt32)], binary: String, target: Target) -> Result<[UprobeLink], AttachFailure> {
        var processID: Int32?
        if case .process(let pid) = target { processID = pid }
        switch uprobeLinks {
        case .multi:
            // A link's uprobes are all entry probes or all return probes: one link for each kind there is.
            var made: [UprobeLink] = []
            for returnProbes in [false, true] {
                let kind = sites.filter { ($0.0.role == .returnProbe) == returnProbes }
                guard !kind.isEmpty else { continue }
                let link = sonde_attach_uprobe_multi(
                    bpf_program__fd(program), binary, kind.map { UInt($0.0.fileOffset) }, kind.map { UInt64($0.1) }, UInt32(kind.count),
                    UInt32(processID ?? 0), returnProbes)  // pid 0: every process
                guard link >= 0 else {
                    made.forEach { $0.close() }
                    return .failure(AttachFailure(text: errorText(-link)))
                }
                made.append(.multi(link))
            }
            return .success(made)
        case .single:
            var options = bpf_uprobe_opts()
            options.sz = MemoryLayout<bpf_uprobe_opts>.size
            var made: [UprobeLink] = []
            for (site, cookie) in sites {
                options.bpf_cookie = UInt64(cookie)
                options.retprobe = site.role == .returnProbe
                // -1: every process
                guard let link = bpf_program__attach_uprobe_opts(program, processID ?? -1, binary, Int(site.fileOffset), &options) else {
                    let failure = AttachFailure(text: errorText(errno))
                    made.forEach { $0.close() }
                    return .failure(failure)
                }
                made.append(.single(link))
            }
            return .success(made)
        }
    }

    private static func routeLibbpfLogToStderr() {
        libbpf_set_print { level, format, arguments in
            guard level.rawValue <= LIBBPF_WARN.rawValue, let format, let arguments else { return 0 }
            return vdprintf(STDERR_FILENO, format, arguments)
        }
    }
}

/// How uprobes are attached.
public enum UprobeLinkKind: String, Sendable, Equatable {
    /// One multi-link per attachment (Linux 6.6): attached in one system call, closed with one
    /// grace period.
    case multi
    /// One link per uprobe, through perf events, for older kernels: closing each waits a grace
    /// period (about 0.1 s on 6.18).
    case single
}

/// One attached link, closed on the link-closing queue.
private enum UprobeLink: @unchecked Sendable {
    case multi(Int32)
    case single(OpaquePointer)

    func close() {
        switch self {
        case .multi(let descriptor): _ = Glibc.close(descriptor)
        case .single(let link): bpf_link__destroy(link)
        }
    }
}

/// Which entries of the `probe_configs` map are in use, as free ranges kept sorted and merged.
struct CookieRanges {
    private var free: [Range<UInt32>]

    init(capacity: UInt32) {
        free = [0..<capacity]
    }

    var largestFree: Int { free.map(\.count).max() ?? 0 }

    /// The first entry of `count` consecutive free entries, now in use; nil when no range is long enough.
    mutating func allocate(_ count: UInt32) -> UInt32? {
        guard let index = free.firstIndex(where: { $0.count >= count }) else { return nil }
        let start = free[index].lowerBound
        free[index] = start + count..<free[index].upperBound
        if free[index].isEmpty { free.remove(at: index) }
        return start
    }

    mutating func free(_ start: UInt32, count: UInt32) {
        guard count > 0 else { return }
        let released = start..<start + count
        let index = free.firstIndex { $0.lowerBound > start } ?? free.endIndex
        free.insert(released, at: index)
        // Merge with the neighbours it touches.
        if index + 1 < free.count, free[index].upperBound == free[index + 1].lowerBound {
            free[index] = free[index].lowerBound..<free[index + 1].upperBound
            free.remove(at: index + 1)
        }
        if index > 0, free[index - 1].upperBound == free[index].lowerBound {
            free[index - 1] = free[index - 1].lowerBound..<free[index].upperBound
            free.remove(at: index)
        }
    }
}

/// Carries the span handler through libbpf's C callback.
private final class EventSink {
    /// Nil when spans are discarded unread.
    let handler: ((SpanEvent) -> Bool)?
    /// Spans dropped unread, for want of a handler.
    private(set) var discarded = 0
    /// Every record is decoded into this one event, so its capture buffer is reused rather than
    /// allocated per record; a handler that keeps the event gets its own copy on the next write.
    /// Only the polling thread touches it, inside libbpf's callback: no access to check per record.
    @exclusivity(unchecked) private var event = SpanEvent(
        traceIDHigh: 0, traceIDLow: 0, spanID: 0, parentSpanID: 0, startMonotonicNanos: 0, endMonotonicNanos: 0, callKey: 0,
        processID: 0, spanSlot: 0, failedReads: 0, stoppedEarly: false, capturedMask: 0, data: [])

    init(handler: ((SpanEvent) -> Bool)?) {
        self.handler = handler
    }

    /// Whether the handler takes more spans now.
    func deliver(_ raw: UnsafeRawBufferPointer) -> Bool {
        guard let handler else {
            discarded += 1
            return true
        }
        return RecordLayout.decodeRecord(raw, into: &event) ? handler(event) : true
    }
}
