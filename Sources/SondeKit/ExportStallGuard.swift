import Engine
import Exporters
import Foundation
import Synchronization

/// Keeps an export thread that yields the CPU from costing spans. The OTLP exporter's thread runs
/// in the idle scheduling class while it keeps up, and the reader tells it when the export queue
/// has no room (`SpanExporter.exportBacklog`). But preempted while holding a lock the reader also
/// takes (glibc's malloc arenas: it frees the spans the reader allocated), an idle-class thread
/// runs again only when a core is idle, and the reader, waiting for the lock, can tell it nothing:
/// the span ring buffer fills until spans are lost (1,327 in a 5-second run of the net/http
/// benchmark, issue 7). This thread stays in the normal class, wakes with the BPF program's
/// wakeups (a quarter of the ring unread, then each further quarter while the reader lags), and
/// when half the ring is unread tells the exporter it is behind, as the reader would have.
final class ExportStallGuard: Sendable {
    /// The unread share of the span ring buffer at which the export is told it is behind: the
    /// reader drains at a quarter, and the other half leaves the export thread time to be
    /// scheduled and let go of the lock.
    static let behindUnreadFraction = 0.5

    private let watch: Watch
    /// A POSIX thread rather than Foundation's, so that `stop()` can join it.
    private let thread: pthread_t

    init(watching backlog: SpanBacklog, exporter: some SpanExporter) {
        watch = Watch(backlog: backlog, exporter: exporter)
        var thread = pthread_t()
        let started = pthread_create(&thread, nil, { context in
            Unmanaged<Watch>.fromOpaque(context!).takeRetainedValue().run()
            return nil
        }, Unmanaged.passRetained(watch).toOpaque())
        precondition(started == 0, "cannot start the export stall guard's thread: \(String(cString: strerror(started)))")
        self.thread = thread
    }

    /// Ends the thread; returns once it has.
    func stop() {
        watch.stop()
        pthread_join(thread, nil)
    }
}

/// The guard's loop, run on its thread.
private final class Watch: Sendable {
    private let backlog: SpanBacklog
    private let exporter: any SpanExporter
    private let stopping = Atomic<Bool>(false)

    init(backlog: SpanBacklog, exporter: any SpanExporter) {
        self.backlog = backlog
        self.exporter = exporter
    }

    func run() {
        nameCurrentThread("sonde-guard")
        while !stopping.load(ordering: .relaxed) {
            _ = backlog.wait(timeoutMilliseconds: -1)
            if backlog.read().unreadFraction >= ExportStallGuard.behindUnreadFraction { exporter.exportBacklog(1) }
        }
    }

    func stop() {
        stopping.store(true, ordering: .relaxed)
        backlog.waker.wake()
    }
}
