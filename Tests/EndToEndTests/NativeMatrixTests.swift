import Engine
import Foundation
import TestSupport
import XCTest

/// Every native scenario (NativeScenarios.swift) with each compiler and flags, and the table in
/// docs/native-matrix.md that this test produces.
final class NativeMatrixTests: XCTestCase {
    struct Row {
        var pack: String
        var program: String
        var build: String
        var run: (_ database: PostgresServer, _ directory: String) async throws -> Void
    }

    static let matrixFile = "\(Repository.root)/docs/native-matrix.md"

    static func rows() throws -> [Row] {
        let (gcc, gxx) = (try TestEnvironment.tool("GCC"), try TestEnvironment.tool("GXX"))
        let (clang, clangxx) = (try TestEnvironment.tool("CLANG"), try TestEnvironment.tool("CLANGXX"))
        let client = "C client: PQexec, PQexecParams, PQprepare, PQexecPrepared"
        let server = "C++ server whose handlers query PostgreSQL"
        return [
            Row(pack: "c/libpq", program: client, build: "gcc -O2") { database, directory in
                try LibpqScenarios.cClient(database: database, compiler: gcc, flags: ["-O2"], directory: directory)
            },
            Row(pack: "c/libpq", program: client, build: "clang -O0 -g") { database, directory in
                try LibpqScenarios.cClient(database: database, compiler: clang, flags: ["-O0", "-g"], directory: directory)
            },
            Row(pack: "c/libpq", program: "psql: PQsendQuery, PQgetResult", build: "Debian's postgresql-client 15") { database, _ in
                try LibpqScenarios.psql(database: database)
            },
            Row(pack: "c/libpq", program: "Python psycopg2", build: "Debian's python3-psycopg2") { database, _ in
                try LibpqScenarios.psycopg2(database: database)
            },
            Row(pack: "cpp/httplib + c/libpq", program: server, build: "g++ -O2") { database, directory in
                try await HttplibScenario.serve(database: database, compiler: gxx, flags: ["-O2"], directory: directory)
            },
            Row(pack: "cpp/httplib + c/libpq", program: server, build: "clang++ -O0 -g") { database, directory in
                try await HttplibScenario.serve(database: database, compiler: clangxx, flags: ["-O0", "-g"], directory: directory)
            },
            Row(pack: "rust/hyper", program: "hyper 0.14 server (tokio)", build: "cargo --release, debug = true") { _, directory in
                try await HyperScenario.serve(directory: directory)
            },
        ]
    }

    override func setUpWithError() throws {
        let missing = KernelCapabilities.missing()
        if !missing.isEmpty { throw TestEnvironment.missingKernelCapability(missing) }
    }

    func testEveryNativeScenario() async throws {
        let database = try PostgresServer()
        defer { database.stop() }
        var lines: [String] = []
        for row in try Self.rows() {
            let failuresBefore = testRun?.totalFailureCount ?? 0
            do {
                try await row.run(database, try temporaryDirectory())
            } catch {
                XCTFail("\(row.pack), \(row.program), \(row.build): \(error)")
            }
            let result = (testRun?.totalFailureCount ?? 0) == failuresBefore ? "pass" : "FAIL"
            lines.append("| \(row.pack) | \(row.program) | \(row.build) | \(result) |")
        }
        // Unoptimised Rust is refused with its reason: the row says so when the refusal is as expected.
        let failuresBefore = testRun?.totalFailureCount ?? 0
        do {
            try HyperScenario.refuseUnoptimised(directory: try temporaryDirectory())
        } catch {
            XCTFail("rust/hyper, dev profile: \(error)")
        }
        let refused = (testRun?.totalFailureCount ?? 0) == failuresBefore
            ? "not supported: parameters live on the stack at entry, the status probe is refused with that reason" : "FAIL"
        lines.append("| rust/hyper | hyper 0.14 server (tokio) | cargo, dev profile (unoptimised) | \(refused) |")

        let table = """
            # Native compatibility matrix

            Produced by `NativeMatrixTests` (Tests/EndToEndTests): each program built as the row says
            and traced end to end with `sonde run --pid`, against a real PostgreSQL where it queries
            one, spans checked at an independent OTLP receiver (NativeScenarios.swift says what each
            checks). The libraries are Debian 12's: libpq 15 (`libpq.so.5.15`), cpp-httplib 0.11.4
            (`libcpp-httplib.so.0.11`), and hyper 0.14.19 with tokio 1.24 from Debian's crates; the
            Rust compiler is the image's rustc. Rewrite it with
            `SONDE_WRITE_MATRIX=1 swift test --filter NativeMatrixTests`; otherwise the test checks it.

            | pack | program | built with | result |
            | --- | --- | --- | --- |
            \(lines.joined(separator: "\n"))

            """
        if ProcessInfo.processInfo.environment["SONDE_WRITE_MATRIX"] == "1" {
            try table.write(toFile: Self.matrixFile, atomically: true, encoding: .utf8)
        } else {
            XCTAssertEqual(try String(contentsOfFile: Self.matrixFile, encoding: .utf8), table, "docs/native-matrix.md differs from this run")
        }
    }
}
