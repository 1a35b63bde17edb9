import Foundation
import PackagePlugin

/// `swift package --allow-writing-to-package-directory generate-offset-tables [--toolchain GO]...`
///
/// Builds the Go packs' reference program (probe-packs/go/reference) with every Go toolchain, and
/// has `sonde packs record-offsets` write what each build's DWARF says into the packs' offset
/// tables (`probe-packs/go/*.offsets.json`). Sonde uses those tables for binaries built with
/// `-ldflags=-s -w`. Without `--toolchain`, it uses Debian's Go and every toolchain that
/// scripts/setup.sh installs under /opt/sonde/toolchains.
@main
struct GenerateOffsetTables: CommandPlugin {
    func performCommand(context: PluginContext, arguments: [String]) async throws {
        let sonde = try context.tool(named: "sonde").url
        let packs = context.package.directoryURL.appending(path: "probe-packs/go")
        let reference = packs.appending(path: "reference")
        var arguments = ArgumentExtractor(arguments)
        let requested = arguments.extractOption(named: "toolchain")
        let toolchains = requested.isEmpty ? Self.installedToolchains() : requested
        guard !toolchains.isEmpty else { throw PluginFailure("no Go toolchain found; run scripts/setup.sh or pass --toolchain PATH") }

        let libraryVersions = try Self.debianLibraryVersions(modules: Self.modules(packs: packs, sonde: sonde))
        let workDirectory = context.pluginWorkDirectoryURL
        for (index, toolchain) in toolchains.enumerated() {
            let output = workDirectory.appending(path: "reference-\(index)")
            print("building the reference program with \(toolchain)")
            try Self.run(toolchain, ["build", "-o", output.path, "."], in: reference, environment: [
                "GO111MODULE": "off", "GOPATH": "/usr/share/gocode", "GOTOOLCHAIN": "local", "GOFLAGS": "",
            ])
            let recorded = try Self.run(sonde.path, ["packs", "record-offsets", "--binary", output.path, "--packs", packs.path]
                + libraryVersions.flatMap { ["--library-version", "\($0.key)=\($0.value)"] })
            print(recorded, terminator: "")
        }
    }

    static func installedToolchains() -> [String] {
        let debian = "/usr/lib/go-1.19/bin/go"
        let root = "/opt/sonde/toolchains"
        let installed = ((try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []).sorted().map { "\(root)/\($0)/go/bin/go" }
        return ([debian] + installed).filter { FileManager.default.isExecutableFile(atPath: $0) }
    }

    /// The non-std modules the Go packs probe, from `sonde packs list` (language second, module
    /// third), which lists the other shipped packs too.
    static func modules(packs: URL, sonde: URL) throws -> [String] {
        let listing = try run(sonde.path, ["packs", "list", "--packs", packs.path])
        let modules = listing.split(separator: "\n").compactMap { line -> String? in
            let columns = line.split(separator: " ", omittingEmptySubsequences: true)
            return columns.count > 2 && columns[1] == "go" && columns[2] != "std" ? String(columns[2]) : nil
        }
        return Array(Set(modules)).sorted()
    }

    /// GOPATH builds record no module versions; the Debian package that ships each module's
    /// source in /usr/share/gocode says which version the reference build used.
    static func debianLibraryVersions(modules: [String]) throws -> [String: String] {
        var versions: [String: String] = [:]
        for module in modules {
            let owner = try run("/usr/bin/dpkg", ["-S", "/usr/share/gocode/src/\(module)"])
            guard let package = owner.split(separator: ":").first.map(String.init) else {
                throw PluginFailure("no Debian package ships /usr/share/gocode/src/\(module)")
            }
            let debianVersion = try run("/usr/bin/dpkg-query", ["-W", "-f=${Version}", package])
            // 1:1.33.3+ds-2 → v1.33.3
            let upstream = debianVersion.split(separator: ":").last.map(String.init) ?? debianVersion
            versions[module] = "v" + upstream.prefix { $0.isNumber || $0 == "." }
        }
        return versions
    }

    @discardableResult
    static func run(_ executable: String, _ arguments: [String], in directory: URL? = nil, environment: [String: String] = [:]) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.currentDirectoryURL = directory
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { _, new in new }
        let output = Pipe()
        process.standardOutput = output
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let text = String(decoding: data, as: UTF8.self)
        guard process.terminationStatus == 0 else {
            throw PluginFailure("\(executable) \(arguments.joined(separator: " ")) failed with status \(process.terminationStatus)\n\(text)")
        }
        return text
    }
}

struct PluginFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
