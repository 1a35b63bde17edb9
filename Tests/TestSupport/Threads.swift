import Foundation

/// Threads of this process with `name`, as the kernel lists them: how tests see that a thread of
/// the agent's runs, and that it has ended.
public func threadsNamed(_ name: String) -> Int {
    let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task")) ?? []
    return tasks.count { threadName(in: "/proc/self/task/\($0)") == name }
}

/// The kernel's name of the calling thread.
public func currentThreadName() -> String {
    threadName(in: "/proc/thread-self") ?? ""
}

/// The kernel's name of the thread whose /proc directory is `directory`.
private func threadName(in directory: String) -> String? {
    (try? String(contentsOfFile: "\(directory)/comm", encoding: .utf8))?.trimmingCharacters(in: .newlines)
}
