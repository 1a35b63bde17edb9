// swift-tools-version:6.0
import PackageDescription

/// Sonde's pipeline, one target per stage:
/// ProbePacks → BinaryAnalysis → Planning → Engine → Tracing → Exporters, wired by SondeKit.
let package = Package(
    name: "Sonde",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "sonde", targets: ["sonde"]),
    ],
    dependencies: [
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-protobuf", from: "1.39.0"),
    ],
    targets: [
        // C libraries from Debian, seen only by the stage that calls them.
        .systemLibrary(name: "CLibBPF", pkgConfig: "libbpf", providers: [.apt(["libbpf-dev"])]),
        .systemLibrary(name: "CLibELF", pkgConfig: "libelf", providers: [.apt(["libelf-dev"])]),
        .systemLibrary(name: "CLibDW", pkgConfig: "libdw", providers: [.apt(["libdw-dev"])]),
        // Headers only: capstone is loaded at run time, while binaries are analysed.
        .systemLibrary(name: "CCapstone", providers: [.apt(["libcapstone-dev"])]),
        .systemLibrary(name: "CDemangle", providers: [.apt(["libiberty-dev"])]),
        .systemLibrary(name: "CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
        // Headers only: libcurl is loaded at run time, for https:// endpoints alone.
        .systemLibrary(name: "CCurl", providers: [.apt(["libcurl4-openssl-dev"])]),
        /// The kernel ABI (bpf/sonde_abi.h), written once for the BPF program and imported by Planning and Engine.
        .systemLibrary(name: "SondeABI", path: "bpf"),

        .target(name: "ProbePacks", dependencies: [.product(name: "Yams", package: "Yams")]),
        /// sonde.yaml and the processes of the machine: which process is which service.
        .target(name: "Services", dependencies: ["ProbePacks"]),
        .target(name: "BinaryAnalysis", dependencies: ["CLibELF", "CLibDW", "CCapstone", "CDemangle", "CZlib"]),
        .target(name: "Planning", dependencies: ["ProbePacks", "BinaryAnalysis", "SondeABI"]),
        .target(name: "Engine", dependencies: ["Planning", "CLibBPF", "SondeABI"], plugins: ["BPFObjectBuilder"]),
        /// The OpenTelemetry span data model that Tracing produces and Exporters consume.
        .target(name: "Spans"),
        .target(name: "Tracing", dependencies: ["Planning", "Spans", "SondeABI"]),
        .target(name: "HTTPTransport", dependencies: ["CCurl"]),
        .target(name: "Exporters", dependencies: ["Spans", "CZlib", "HTTPTransport"]),
        .target(name: "SondeKit", dependencies: ["ProbePacks", "Services", "BinaryAnalysis", "Planning", "Engine", "Spans", "Tracing", "Exporters"]),
        .executableTarget(name: "sonde", dependencies: ["SondeKit", .product(name: "ArgumentParser", package: "swift-argument-parser")]),
        /// Spans per second per core from records to OTLP bodies, without a kernel (`swift run -c release sonde-capacity`).
        .executableTarget(name: "sonde-capacity", dependencies: ["SondeABI", "ProbePacks", "Planning", "Spans", "Tracing", "Exporters"]),

        /// Compiles bpf/*.bpf.c into the one generic BPF object and embeds it in Engine.
        .plugin(name: "BPFObjectBuilder", capability: .buildTool()),
        /// Regenerates the Go packs' offset tables (probe-packs/go/*.offsets.json) for stripped binaries.
        .plugin(
            name: "GenerateOffsetTables",
            capability: .command(
                intent: .custom(verb: "generate-offset-tables", description: "Record the Go packs' offsets from reference builds with each Go toolchain"),
                permissions: [.writeToPackageDirectory(reason: "writes the offset tables next to the packs in probe-packs/go")]),
            dependencies: ["sonde"]),

        /// Where the tests find what scripts/setup.sh installs (scripts/toolchains.env), and how they skip.
        .target(name: "TestSupport", path: "Tests/TestSupport"),
        .testTarget(name: "ProbePacksTests", dependencies: ["ProbePacks", "TestSupport"]),
        .testTarget(name: "ServicesTests", dependencies: ["Services", "ProbePacks", "TestSupport"]),
        .testTarget(name: "BinaryAnalysisTests", dependencies: ["BinaryAnalysis", "TestSupport"]),
        .testTarget(name: "PlanningTests", dependencies: ["Planning", "TestSupport"]),
        .testTarget(name: "EngineTests", dependencies: ["Engine", "TestSupport", "CLibBPF", "SondeABI"]),
        .testTarget(name: "TracingTests", dependencies: ["Tracing", "TestSupport"]),
        .testTarget(name: "HTTPTransportTests", dependencies: ["HTTPTransport", "TestSupport"]),
        // The tests decode the exporter's bodies with swift-protobuf's generated OTLP types (ExportersTests/OTLP).
        .testTarget(
            name: "ExportersTests",
            dependencies: ["Exporters", "TestSupport", .product(name: "SwiftProtobuf", package: "swift-protobuf")]),
        .testTarget(name: "EndToEndTests", dependencies: ["SondeKit", "Engine", "SondeABI", "TestSupport"]),
    ],
    swiftLanguageModes: [.v6]
)
