import Dispatch
import Foundation
import Synchronization

/// A thread of its own that runs one export loop and the blocking calls it makes, as a task
/// executor. An exporter whose client blocks (``OTLPHTTPExporter``) posts here; the batching
/// processor's export task prefers this executor, so a batch is encoded and posted on the thread
/// its wakeup landed on, with no hop to a second thread and back (issue 7: two of the four
/// context switches an export cost).
///
/// The thread runs in the kernel's idle scheduling class (SCHED_IDLE) while the queue it exports
/// from keeps up: it then takes only CPU time nothing else wants, so a traced service that keeps
/// its cores busy is not preempted by an export (issue 7, the net/http demo under `wrk`: up to 2 %
/// more requests a second, and 7 % less of Sonde's CPU a span). Whenever the queue has no room for
/// what the reader hands over, it takes its share again until it has kept up for a while (see
/// ``ExportYieldPolicy``); the reader, which fills the queue, stays in the normal class and
/// tells it (``exportBacklog(_:)``). A reader that cannot tell it, because the thread was
/// preempted in the idle class holding a lock the reader waits for (glibc's malloc arenas), is
/// SondeKit's `ExportStallGuard`'s to rescue: it says the same when the span ring buffer is half
/// full.
final class ExportThread: TaskExecutor {
    /// Nil asks the thread to end.
    private let jobs = Mutex<[UnownedJob?]>([])
    private let jobsWaiting = DispatchSemaphore(value: 0)
    /// The policy, and the thread's id once it runs (0 before): moves are made under this lock.
    private let scheduling = Mutex<(policy: ExportYieldPolicy, threadID: pid_t)>((ExportYieldPolicy(), 0))

    /// - Parameter name: The thread's name, as `top -H` and `perf` show it (15 bytes at most).
    init(name: String) {
        // The thread keeps this executor alive until `stop()`.
        Thread { [self] in
            nameCurrentThread(name)
            scheduling.withLock { state in
                state.threadID = Self.currentThreadID()
                Self.move(state.threadID, to: state.policy.current)
            }
            runJobs()
        }.start()
    }

    /// How full the queue this thread exports from is (0...1; 1 when everything queued must go
    /// now): moves the thread between the idle and the normal scheduling class as
    /// ``ExportYieldPolicy`` says. Called by the threads that fill the queue.
    func exportBacklog(_ fill: Double) {
        scheduling.withLock { state in
            guard let change = state.policy.observe(fill: fill, at: .now) else { return }
            Self.move(state.threadID, to: change)
        }
    }

    /// The thread's id, for tests; 0 until it runs.
    var threadID: pid_t { scheduling.withLock { $0.threadID } }

    /// SCHED_IDLE in <linux/sched.h>; Glibc's Swift module leaves it out.
    static let idleSchedulingPolicy: Int32 = 5

    /// A kernel that refuses the idle class (a sandbox without it) leaves the thread in the
    /// normal class, which is how exports ran before.
    private static func move(_ thread: pid_t, to schedulingClass: ExportYieldPolicy.SchedulingClass) {
        guard thread != 0 else { return }
        var parameters = sched_param()
        _ = sched_setscheduler(thread, schedulingClass == .idle ? idleSchedulingPolicy : Int32(SCHED_OTHER), &parameters)
    }

    /// The calling thread's id, from "/proc/thread-self" ("PID/task/TID"; Glibc's gettid is not imported).
    private static func currentThreadID() -> pid_t {
        ((try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/thread-self"))?.split(separator: "/").last)
            .flatMap { pid_t($0) } ?? 0
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

/// Names the calling thread as `top -H` and `perf` show it (15 bytes at most), through /proc:
/// Foundation's `Thread.name` does not reach the kernel on Linux, and Glibc's pthread_setname_np is
/// not imported.
public func nameCurrentThread(_ name: String) {
    try? name.write(toFile: "/proc/thread-self/comm", atomically: false, encoding: .utf8)
}

/// When the export thread yields the CPU and when it takes its share back, from how full its
/// queue is at each submission. It is behind when the queue is full, or has no room for what the
/// reader hands over next: the reader then leaves spans in the ring buffer, which is the slack
/// left for the thread to be scheduled (under load, one wakeup of the reader hands over about
/// 1,100 spans, half the default queue, so a lower mark would hold the thread in the normal class
/// all the time). It has kept up after ``calmPeriod`` without being behind. A machine too busy for
/// the idle class to keep up would move it back and forth: each time it falls behind again within
/// the calm period after yielding, that period doubles, up to ``longestCalmPeriod``.
struct ExportYieldPolicy: Sendable {
    enum SchedulingClass: Sendable, Equatable {
        case idle, normal
    }

    static let behindFill = 1.0
    static let firstCalmPeriod: Duration = .seconds(1)
    static let longestCalmPeriod: Duration = .seconds(64)

    private(set) var current = SchedulingClass.idle
    private(set) var calmPeriod = firstCalmPeriod
    private var behindAt: ContinuousClock.Instant?
    private var yieldedAt: ContinuousClock.Instant?

    /// The class a reading calls for, when it is not the current one.
    mutating func observe(fill: Double, at now: ContinuousClock.Instant) -> SchedulingClass? {
        if fill >= Self.behindFill {
            behindAt = now
            guard current == .idle else { return nil }
            let relapsed = yieldedAt.map { now - $0 < calmPeriod } ?? false
            calmPeriod = relapsed ? min(calmPeriod * 2, Self.longestCalmPeriod) : Self.firstCalmPeriod
            current = .normal
            return .normal
        }
        guard current == .normal, let behindAt, now - behindAt >= calmPeriod else { return nil }
        current = .idle
        yieldedAt = now
        return .idle
    }
}
