import Foundation
import Spans

/// The OpenTelemetry resource of one traced process, as the resource conventions name it:
/// service, process, runtime, host, container and pod.
enum ProcessResource {
    /// What the process itself says, read from /proc when it is attached. Its command line is
    /// left out: arguments may hold secrets.
    struct Process {
        var pid: Int32
        var executablePath: String
        var cgroup: String
        /// `go` and its version (`go1.27.3` without the prefix) for a Go binary.
        var runtime: (name: String, version: String)?
    }

    static func make(serviceName: String, process: Process, extra: [String: String] = [:]) -> Resource {
        var attributes: [String: AttributeValue] = [
            "service.name": .string(serviceName),
            // One traced process is one instance: unique per host, pid and start, the same for every span of it.
            "service.instance.id": .string(UUID().uuidString.lowercased()),
            "process.pid": .int(Int64(process.pid)),
            "process.executable.path": .string(process.executablePath),
            "process.executable.name": .string(URL(fileURLWithPath: process.executablePath).lastPathComponent),
            "telemetry.sdk.name": .string("sonde"),
            "telemetry.sdk.version": .string(sondeVersion),
            "telemetry.distro.name": .string("sonde"),
            "host.name": .string(host.name),
        ]
        if let (name, version) = process.runtime {
            attributes["process.runtime.name"] = .string(name)
            attributes["process.runtime.version"] = .string(version)
            attributes["telemetry.sdk.language"] = .string(name)
        }
        if let id = host.id { attributes["host.id"] = .string(id) }
        if let container = containerID(cgroup: process.cgroup) { attributes["container.id"] = .string(container) }
        if let pod = podUID(cgroup: process.cgroup) { attributes["k8s.pod.uid"] = .string(pod) }
        for (key, value) in extra { attributes[key] = .string(value) }
        return Resource(attributes: attributes)
    }

    /// Reported as `telemetry.sdk.version`.
    static let sondeVersion = "0.1.0"

    private static let host: (name: String, id: String?) = {
        var buffer = [CChar](repeating: 0, count: 256)
        let name = gethostname(&buffer, buffer.count) == 0
            ? String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self) : "unknown"
        // The conventions' host.id on Linux: the machine id, not the hostname.
        let id = (try? String(contentsOfFile: "/etc/machine-id", encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
        return (name, id.flatMap { $0.isEmpty ? nil : $0 })
    }()

    /// The container of a cgroup path, as Docker, containerd and CRI-O name their scopes
    /// (`docker-<64 hex>.scope`, `cri-containerd-<id>.scope`, `crio-<id>.scope`) or cgroupfs
    /// drivers their folders (`/docker/<id>`, `/kubepods/…/pod<uid>/<id>`).
    static func containerID(cgroup: String) -> String? {
        for component in cgroup.split(separator: "/").reversed() {
            var name = Substring(component)
            if name.hasSuffix(".scope") { name = name.dropLast(6) }
            let id = name.split(separator: "-").last.map(String.init) ?? ""
            if id.count == 64, id.allSatisfy(\.isHexDigit) { return id }
        }
        return nil
    }

    /// The pod of a Kubernetes cgroup path: `pod<uid>` (cgroupfs) or `…-pod<uid with _>.slice` (systemd).
    static func podUID(cgroup: String) -> String? {
        for component in cgroup.split(separator: "/") where component.hasPrefix("kubepods") || component.hasPrefix("pod") {
            var name = Substring(component)
            if name.hasSuffix(".slice") { name = name.dropLast(6) }
            guard let range = name.range(of: "pod", options: .backwards) else { continue }
            let uid = name[range.upperBound...].replacingOccurrences(of: "_", with: "-")
            if uid.count == 36, UUID(uuidString: uid) != nil { return uid.lowercased() }
        }
        return nil
    }
}
