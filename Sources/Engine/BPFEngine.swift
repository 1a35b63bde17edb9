import CLibBPF
import Foundation
import Planning

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

    /// Losses and anomalies counted on the BPF side.
    public struct Counters: Sendable, Equatable {
        public var spansLostRingFull: UInt64
        public var returnsWithoutEntry: UInt64
        public var entriesNotRecorded: UInt64
        public var hitsWithoutConfig: UInt64
        /// Spans kept open under an object (a stream) that a later span for the same object replaced.
        public var objectSpansReplaced: UInt64
        /// Spans that could not stay open under their object: the map of open streams was full.
        public var objectSpansFull: UInt64
    }

    private let object: OpaquePointer
    private let program: OpaquePointer
    private var links: [OpaquePointer] = []
    private var ringBuffer: OpaquePointer?
    private var sink: EventSink?

    public init() throws {
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
        let loadResult = bpf_object__load(opened)
        guard loadResult == 0 else {
            bpf_object__close(opened)
            throw EngineError.bpfLoadFailed(step: "load (verifier)", errno: -loadResult)
        }
        guard let found = bpf_object__find_program_by_name(opened, "sonde_probe") else {
            bpf_object__close(opened)
            throw EngineError.bpfLoadFailed(step: "find program sonde_probe", errno: ENOENT)
        }
        object = opened
        program = found
        try checkLayout()
    }

    /// The Swift encoders and the C structs must agree byte for byte; the BTF-described map
    /// value sizes catch a header changed on one side only.
    private func checkLayout() throws {
        for (map, expected) in [("probe_configs", RecordLayout.configSize), ("calls", RecordLayout.recordSize), ("object_spans", RecordLayout.recordSize)] {
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

    /// Writes the plan's probe configurations and attaches every site. A site that fails is
    /// reported and the others still attach; nothing attached at all is an error.
    public func attach(plan: AttachPlan, target: Target) throws -> AttachReport {
        let configs = bpf_object__find_map_fd_by_name(object, "probe_configs")
        var attached = 0
        var failures: [String] = []
        for (index, probe) in plan.probes.enumerated() {
            let entryCookie = UInt32(2 * index)
            let returnCookie = entryCookie + 1
            let handoff = probe.probe.goroutineHandoff != nil
            let entryRole: RecordLayout.Role = switch probe.probe.enrichment {
            case .some(let enrichment): enrichment.endsSpanKeyedBy != nil ? .endObjectSpan : .enrich
            case nil: handoff ? .startHandoff : .startSpan
            }
            try writeConfig(
                fd: configs, index: entryCookie,
                RecordLayout.encodeConfig(
                    role: entryRole, spanSlot: probe.spanSlot, keyMode: probe.keyMode, skipFlagsMask: probe.entry.skipFlagsMask,
                    siteAddress: probe.entry.address, objectRegister: entryRole == .endObjectSpan ? probe.objectKey : nil,
                    program: probe.entryProgram, captureSlots: probe.captureSlots))
            try writeConfig(
                fd: configs, index: returnCookie,
                RecordLayout.encodeConfig(
                    role: handoff ? .endHandoff : .endSpan, spanSlot: probe.spanSlot, keyMode: probe.keyMode, skipFlagsMask: 0,
                    siteAddress: 0, program: probe.returnProgram, captureSlots: probe.captureSlots))
            for (site, cookie) in [(probe.entry, entryCookie)] + probe.returns.map({ ($0, returnCookie) }) {
                if let failure = attachSite(site, cookie: cookie, binary: plan.binaryPath, target: target) {
                    failures.append("\(probe.qualifiedID) \(site.role) at 0x\(String(site.address, radix: 16)): \(failure)")
                } else {
                    attached += 1
                }
            }
        }
        guard attached > 0 || plan.probes.isEmpty else { throw EngineError.nothingAttached(failures: failures) }
        return AttachReport(attachedSites: attached, failures: failures)
    }

    /// Starts delivering finished spans to `handler`, called on the thread that calls `poll`.
    public func onSpan(_ handler: @escaping (SpanEvent) -> Void) throws {
        if let ringBuffer { ring_buffer__free(ringBuffer) }
        let sink = EventSink(handler: handler)
        let fd = bpf_object__find_map_fd_by_name(object, "spans")
        let context = Unmanaged.passUnretained(sink).toOpaque()
        guard let buffer = ring_buffer__new(fd, { context, data, size in
            guard let context, let data else { return 0 }
            let sink = Unmanaged<EventSink>.fromOpaque(context).takeUnretainedValue()
            sink.deliver(UnsafeRawBufferPointer(start: data, count: size))
            return 0
        }, context, nil) else {
            throw EngineError.bpfLoadFailed(step: "ring buffer setup", errno: errno)
        }
        self.sink = sink
        ringBuffer = buffer
    }

    /// Waits up to `timeoutMilliseconds` for the BPF side to wake us, then drains whatever is
    /// buffered: spans are emitted without a wakeup each, so the drain runs on every call.
    /// Returns the number of spans delivered.
    @discardableResult
    public func poll(timeoutMilliseconds: Int32) -> Int {
        guard let ringBuffer else { return 0 }
        let woken = ring_buffer__poll(ringBuffer, timeoutMilliseconds)
        let drained = ring_buffer__consume(ringBuffer)
        return Int(max(woken, 0) + max(drained, 0))
    }

    public func counters() -> Counters {
        let fd = bpf_object__find_map_fd_by_name(object, "counters")
        let cpus = Int(max(libbpf_num_possible_cpus(), 1))
        func total(_ index: UInt32) -> UInt64 {
            var key = index
            var values = [UInt64](repeating: 0, count: cpus)
            guard bpf_map_lookup_elem(fd, &key, &values) == 0 else { return 0 }
            return values.reduce(0, &+)
        }
        return Counters(
            spansLostRingFull: total(0), returnsWithoutEntry: total(1), entriesNotRecorded: total(2), hitsWithoutConfig: total(3),
            objectSpansReplaced: total(4), objectSpansFull: total(5))
    }

    /// Calls whose span has not ended: functions still running, and streams still open.
    public func openCalls() -> Int {
        entries(inMap: "calls") + entries(inMap: "object_spans")
    }

    private func entries(inMap name: String) -> Int {
        let fd = bpf_object__find_map_fd_by_name(object, name)
        var current = [UInt8](repeating: 0, count: RecordLayout.callKeySize)
        var next = current
        var count = 0
        while true {
            let status = current.withUnsafeBytes { currentKey in
                next.withUnsafeMutableBytes { nextKey in
                    bpf_map_get_next_key(fd, count == 0 ? nil : currentKey.baseAddress, nextKey.baseAddress)
                }
            }
            guard status == 0 else { return count }
            count += 1
            swap(&current, &next)
        }
    }

    /// Removes every uprobe; the traced programs keep running untouched.
    public func detach() {
        links.forEach { bpf_link__destroy($0) }
        links.removeAll()
        if let ringBuffer {
            ring_buffer__consume(ringBuffer)
            ring_buffer__free(ringBuffer)
        }
        ringBuffer = nil
        sink = nil
    }

    private func writeConfig(fd: Int32, index: UInt32, _ bytes: [UInt8]) throws {
        var key = index
        let result = bytes.withUnsafeBytes { bpf_map_update_elem(fd, &key, $0.baseAddress, UInt64(BPF_ANY)) }
        guard result == 0 else { throw EngineError.bpfLoadFailed(step: "writing probe configuration \(index)", errno: -result) }
    }

    /// Nil on success, else the reason.
    private func attachSite(_ site: ProbeSite, cookie: UInt32, binary: String, target: Target) -> String? {
        var options = bpf_uprobe_opts()
        options.sz = MemoryLayout<bpf_uprobe_opts>.size
        options.bpf_cookie = UInt64(cookie)
        options.retprobe = false
        let pid: Int32
        switch target {
        case .process(let processID): pid = processID
        case .allProcesses: pid = -1
        }
        guard let link = bpf_program__attach_uprobe_opts(program, pid, binary, Int(site.fileOffset), &options) else {
            return errorText(errno)
        }
        links.append(link)
        return nil
    }

    private static func routeLibbpfLogToStderr() {
        libbpf_set_print { level, format, arguments in
            guard level.rawValue <= LIBBPF_WARN.rawValue, let format, let arguments else { return 0 }
            return vdprintf(STDERR_FILENO, format, arguments)
        }
    }
}

/// Carries the span handler through libbpf's C callback.
private final class EventSink {
    let handler: (SpanEvent) -> Void
    init(handler: @escaping (SpanEvent) -> Void) {
        self.handler = handler
    }
    func deliver(_ raw: UnsafeRawBufferPointer) {
        if let event = RecordLayout.decodeRecord(raw) { handler(event) }
    }
}
