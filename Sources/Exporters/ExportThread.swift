import Dispatch
import Foundation
import Synchronization

/// A thread of its own that runs one export loop and the blocking calls it makes, as a task
/// executor. An exporter whose client blocks (``OTLPHTTPExporter``) posts here; the batching
/// processor's export task prefers this executor, so a batch is encoded and posted on the thread
/// its wakeup landed on, with no hop to a second thread and back (issue 7: two of the four
/// context switches an export cost).
final class ExportThread: TaskExecutor {
    /// Nil asks the thread to end.
    private let jobs = Mutex<[UnownedJob?]>([])
    private let jobsWaiting = DispatchSemaphore(value: 0)

    /// - Parameter name: The thread's name, as `top -H` and `perf` show it (15 bytes at most).
    init(name: String) {
        // The thread keeps this executor alive until `stop()`. It names itself: Foundation's
        // `Thread.name` does not reach the kernel on Linux, and Glibc's pthread_setname_np is not
        // imported.
        Thread { [self] in
            try? name.write(toFile: "/proc/thread-self/comm", atomically: false, encoding: .utf8)
            runJobs()
        }.start()
    }

    func enqueue(_ job: consuming ExecutorJob) {
        add(UnownedJob(job))
    }

    /// Ends the thread once the jobs queued before have run.
    func stop() {
        add(nil)
    }

    private func add(_ job: UnownedJob?) {
        jobs.withLock { $0.append(job) }
        jobsWaiting.signal()
    }

    private func runJobs() {
        while true {
            jobsWaiting.wait()
            guard let job = jobs.withLock({ $0.removeFirst() }) else { return }
            job.runSynchronously(on: asUnownedTaskExecutor())
        }
    }
}
