import Foundation
import TestSupport
import XCTest

@testable import Engine

/// The kernel reports the machine's execs and process exits to a sonde that follows services as
/// they start (sonde.yaml), instead of its scanning /proc. Runs against the real loaded BPF object.
final class ProcessEventTests: XCTestCase {
    private var engine: BPFEngine!

    override func setUpWithError() throws {
        let missing = KernelCapabilities.missing()
        if !missing.isEmpty { throw TestEnvironment.missingKernelCapability(missing) }
        engine = try BPFEngine()
        try engine.watchProcesses()
        _ = engine.processEvents()   // what the machine did before the test
    }

    func testAProcessExecAndExitAreReportedOnceEach() throws {
        let child = Process()
        child.executableURL = URL(fileURLWithPath: "/bin/sh")
        child.arguments = ["-c", "exec /bin/true"]   // two execs in one process: sh, then true
        try child.run()
        child.waitUntilExit()
        let pid = child.processIdentifier

        let events = engine.processEvents()
        XCTAssertEqual(events.executed.filter { $0 == pid }, [pid, pid])
        XCTAssertEqual(events.exited.filter { $0 == pid }, [pid])
        XCTAssertEqual(engine.processEventsLost(), 0)
        XCTAssertEqual(engine.processEvents(), BPFEngine.ProcessEvents(), "a drain takes what it returned")
    }

    /// The session's loop sleeps until something cannot wait: the first report it has not read
    /// wakes it (a service is traced as it starts), the next ones until it reads do not (a burst
    /// of execs is one wakeup), and its waker (a stop request) wakes it whatever else.
    func testTheFirstUnreadReportAndTheWakerWakeTheLoop() throws {
        _ = engine.wait(timeoutMilliseconds: 0)   // a wakeup of the machine's reports before the test
        try runToExit("/bin/true")
        XCTAssertEqual(engine.wait(timeoutMilliseconds: 10_000), [.processEvents])
        try runToExit("/bin/true")
        XCTAssertEqual(engine.wait(timeoutMilliseconds: 300), [], "reports are waiting to be read: no second wakeup")
        _ = engine.processEvents()
        try runToExit("/bin/true")
        XCTAssertEqual(engine.wait(timeoutMilliseconds: 10_000), [.processEvents], "read, so the next report wakes the loop")

        engine.waker.wake()
        engine.waker.wake()
        XCTAssertEqual(engine.wait(timeoutMilliseconds: 10_000), [.waker])
        XCTAssertEqual(engine.wait(timeoutMilliseconds: 0), [], "two rings, one wakeup")
    }

    private func runToExit(_ executable: String) throws {
        let child = Process()
        child.executableURL = URL(fileURLWithPath: executable)
        try child.run()
        child.waitUntilExit()
    }

    /// Threads come and go in a running process (Go starts one per blocked system call); only the
    /// main thread's exit is its process's.
    func testAThreadsExitIsNotItsProcesses() throws {
        let child = Process()
        let output = Pipe()
        child.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        child.arguments = ["-c", "import threading; t = threading.Thread(target=lambda: None); t.start(); t.join(); print(t.native_id)"]
        child.standardOutput = output
        try child.run()
        child.waitUntilExit()
        let pid = child.processIdentifier
        let thread = try XCTUnwrap(Int32(String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            .trimmingCharacters(in: .whitespacesAndNewlines)))
        XCTAssertNotEqual(thread, pid)

        let events = engine.processEvents()
        XCTAssertEqual(events.exited.filter { $0 == pid || $0 == thread }, [pid], "two threads exited, one process")
    }
}
