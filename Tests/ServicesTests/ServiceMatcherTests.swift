import Foundation
@testable import Services
import XCTest

final class ServiceMatcherTests: XCTestCase {
    private func process(
        _ executable: String, name: String, commandLine: String, cgroup: String = "/user.slice"
    ) -> ObservedProcess {
        ObservedProcess(
            pid: 10, startTime: 1, executable: executable, executableFile: FileIdentity(path: "/")!, name: name,
            commandLine: commandLine, cgroup: cgroup)
    }

    func testFirstServiceWhoseSelectorMatchesWins() {
        let matcher = ServiceMatcher(config: ServiceConfig(services: [
            .init(name: "api", selectors: [ProcessSelector(executable: "*/api", port: 8080)]),
            .init(name: "debug-api", selectors: [ProcessSelector(commandLine: "-debug( |$)")]),
            .init(name: "pods", selectors: [ProcessSelector(cgroup: "/kubepods.slice/*"), ProcessSelector(processName: "worker")]),
        ]))
        XCTAssertTrue(matcher.needsPorts)
        let api = process("/srv/bin/api", name: "api", commandLine: "/srv/bin/api -debug")
        XCTAssertEqual(matcher.service(of: api, ports: [8080, 9090])?.name, "api")
        XCTAssertEqual(matcher.service(of: api, ports: [9090])?.name, "debug-api", "all of a selector's conditions must hold")
        XCTAssertNil(matcher.service(of: process("/srv/bin/api", name: "api", commandLine: "/srv/bin/api -debugger"), ports: []))
        XCTAssertEqual(matcher.service(of: process("/bin/w", name: "worker", commandLine: "w"))?.name, "pods")
        XCTAssertEqual(
            matcher.service(of: process("/bin/x", name: "x", commandLine: "x", cgroup: "/kubepods.slice/kubepods-pod1.slice/cri-containerd-ab.scope"))?.name,
            "pods")
        XCTAssertNil(matcher.service(of: process("/bin/x", name: "x", commandLine: "x")))
    }

    /// A process is seen as it starts, before it listens: the tracker looks again at those a
    /// port selector would claim once they listen, and only those.
    func testAwaitsAPortOnlyWhereASelectorsOtherConditionsHold() {
        let matcher = ServiceMatcher(config: ServiceConfig(services: [
            .init(name: "api", selectors: [ProcessSelector(executable: "*/api", port: 8080)]),
            .init(name: "worker", selectors: [ProcessSelector(processName: "worker")]),
        ]))
        XCTAssertTrue(matcher.awaitsPort(process("/srv/bin/api", name: "api", commandLine: "api")))
        XCTAssertFalse(matcher.awaitsPort(process("/srv/bin/web", name: "web", commandLine: "web")), "its executable is not the selector's")
        XCTAssertFalse(matcher.awaitsPort(process("/bin/worker", name: "worker", commandLine: "worker")), "no port in its service's selector")
        let anyListener = ServiceMatcher(config: ServiceConfig(services: [.init(name: "web", selectors: [ProcessSelector(port: 80)])]))
        XCTAssertTrue(anyListener.awaitsPort(process("/bin/x", name: "x", commandLine: "x")))
    }

    func testReadsThisProcess() throws {
        let pid = getpid()
        let this = try XCTUnwrap(ObservedProcess.read(pid: pid))
        XCTAssertEqual(this.executable, try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe"))
        XCTAssertEqual(this.commandLine, CommandLine.arguments.joined(separator: " "))
        XCTAssertEqual(this.name, String(URL(fileURLWithPath: this.executable).lastPathComponent.prefix(15)))
        XCTAssertTrue(this.cgroup.hasPrefix("/"), this.cgroup)
        XCTAssertTrue(ObservedProcess.allPIDs().contains(pid))
        XCTAssertNil(ObservedProcess.read(pid: 0), "no such process")
    }

    /// Read from inside a cgroup namespace, another container's path climbs out of it first.
    func testCgroupPathsAreReadFromTheRoot() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("sonde-proc-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: root) }
        for (pid, text) in [
            (1, "0::/../../kubepods.slice/kubepods-pod1.slice/cri-containerd-a.scope\n"), (2, "0::/system.slice/api.service\n"),
            (3, "12:cpu:/x\n0::/..\n"), (4, "0::/..data/x\n"),
        ] {
            try FileManager.default.createDirectory(atPath: "\(root)/\(pid)", withIntermediateDirectories: true)
            try text.write(toFile: "\(root)/\(pid)/cgroup", atomically: true, encoding: .utf8)
        }
        XCTAssertEqual(ObservedProcess.cgroup(pid: 1, procRoot: root), "/kubepods.slice/kubepods-pod1.slice/cri-containerd-a.scope")
        XCTAssertEqual(ObservedProcess.cgroup(pid: 2, procRoot: root), "/system.slice/api.service")
        XCTAssertEqual(ObservedProcess.cgroup(pid: 3, procRoot: root), "/")
        XCTAssertEqual(ObservedProcess.cgroup(pid: 4, procRoot: root), "/..data/x", "a folder named ..data is not a climb")
        XCTAssertEqual(ObservedProcess.cgroup(pid: 5, procRoot: root), "")
    }

    func testStartTimeSkipsANameWithSpacesAndParentheses() {
        let stat = "42 (a) b (c) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10"
        XCTAssertEqual(ObservedProcess.startTime(stat: stat), 987654)
    }

    func testFindsTheListeningPortOfThisProcess() throws {
        let socket = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(socket) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        XCTAssertEqual(withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(socket, $0, length) } }, 0)
        XCTAssertEqual(listen(socket, 1), 0)
        XCTAssertEqual(withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(socket, $0, &length) } }, 0)
        let port = Int(UInt16(bigEndian: address.sin_port))
        XCTAssertTrue(ObservedProcess.listeningPorts(pid: getpid()).contains(port))
        close(socket)
        XCTAssertFalse(ObservedProcess.listeningPorts(pid: getpid()).contains(port))
    }
}
