import CLibBPF
import Foundation
import SondeABI

extension BPFEngine {
    /// The machine's process starts and ends since the last call, in the order they happened.
    public struct ProcessEvents: Sendable, Equatable {
        /// Processes (by pid) that ran `execve`: each runs a new program.
        public var executed: [Int32] = []
        /// Processes whose main thread exited: each has ended, or will when its last thread exits.
        public var exited: [Int32] = []
        public init() {}
    }

    /// Starts reporting the execs and exits of every process on the machine (``processEvents()``),
    /// for a tracker that follows processes as they start instead of scanning /proc. Raw
    /// tracepoints: no tracefs, no BTF, and a program of a few instructions per exec and thread exit.
    public func watchProcesses() throws {
        guard processWatch == nil else { return }
        var links: [OpaquePointer] = []
        for name in [SONDE_EXEC_PROGRAM_NAME, SONDE_EXIT_PROGRAM_NAME] {
            guard let program = bpf_object__find_program_by_name(object, name), let link = bpf_program__attach(program) else {
                let code = errno
                links.forEach { bpf_link__destroy($0) }
                throw EngineError.bpfLoadFailed(step: "attaching \(name) to its tracepoint", errno: code)
            }
            links.append(link)
        }
        let collector = ProcessEventCollector()
        let context = Unmanaged.passUnretained(collector).toOpaque()
        let descriptor = bpf_object__find_map_fd_by_name(object, SONDE_MAP_PROCESS_EVENTS)
        guard let ring = ring_buffer__new(descriptor, { context, data, size in
            guard let context, let data, size >= MemoryLayout<sonde_process_event>.size else { return 0 }
            let event = data.loadUnaligned(as: sonde_process_event.self)
            Unmanaged<ProcessEventCollector>.fromOpaque(context).takeUnretainedValue().add(event)
            return 0
        }, context, nil) else {
            let code = errno
            links.forEach { bpf_link__destroy($0) }
            throw EngineError.bpfLoadFailed(step: "process events ring buffer setup", errno: code)
        }
        processWatch = ProcessWatch(links: links, ring: ring, collector: collector)
        try waitSet.watch(descriptor, as: .processEvents)
    }

    /// What happened since the last call; empty until ``watchProcesses()``. Reads shared memory
    /// only, no system call: cheap enough for every turn of the session's loop. The first report
    /// after a call wakes ``wait(timeoutMilliseconds:)``.
    public func processEvents() -> ProcessEvents {
        guard let processWatch else { return ProcessEvents() }
        ring_buffer__consume(processWatch.ring)
        return processWatch.collector.take()
    }

    /// Process starts and ends the kernel could not report (its ring buffer was full) since the
    /// engine loaded: when it grows, only a scan of /proc knows what happened.
    public func processEventsLost() -> UInt64 {
        counterTotal(SONDE_COUNTER_PROCESS_EVENTS_LOST)
    }
}

/// The tracepoint links and the ring buffer they fill; closed with the engine.
final class ProcessWatch {
    let links: [OpaquePointer]
    let ring: OpaquePointer
    let collector: ProcessEventCollector

    init(links: [OpaquePointer], ring: OpaquePointer, collector: ProcessEventCollector) {
        self.links = links
        self.ring = ring
        self.collector = collector
    }

    deinit {
        links.forEach { bpf_link__destroy($0) }
        ring_buffer__free(ring)
    }
}

/// Gathers the records one drain delivers.
final class ProcessEventCollector {
    private var events = BPFEngine.ProcessEvents()

    func add(_ event: sonde_process_event) {
        switch event.kind {
        case UInt32(SONDE_PROCESS_EXEC.rawValue): events.executed.append(Int32(bitPattern: event.pid))
        case UInt32(SONDE_PROCESS_EXIT.rawValue): events.exited.append(Int32(bitPattern: event.pid))
        default: break
        }
    }

    func take() -> BPFEngine.ProcessEvents {
        defer { events = BPFEngine.ProcessEvents() }
        return events
    }
}
