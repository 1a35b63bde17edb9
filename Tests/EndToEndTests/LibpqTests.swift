import Foundation
import TestSupport
import XCTest

/// The c/libpq pack against a real PostgreSQL, with three clients that share the one pack: a C
/// program, psql and Python's psycopg2. Each client is driven line by line on stdin, so that
/// sonde attaches (--pid) before it sends its statements; spans are checked at the receiver.
final class LibpqTests: XCTestCase {
    static let libpq = "/usr/lib/x86_64-linux-gnu/libpq.so.5"
    private var server: PostgresServer!

    override func setUpWithError() throws {
        try TracingTestSetup.requireKernelCapabilities()
        server = try PostgresServer()
        addTeardownBlock { [server] in server?.stop() }
    }

    /// One client statement's span, as the receiver decoded it.
    struct StatementSpan: Equatable, CustomStringConvertible {
        var name: String
        var kind: String
        var status: String
        var attributes: [String: String]

        init(_ name: String, status: String = "STATUS_CODE_UNSET", query: String?, operation: String) {
            self.name = name
            kind = "SPAN_KIND_CLIENT"
            self.status = status
            attributes = [
                "db.system.name": "postgresql", "db.namespace": PostgresServer.database, "server.address": "127.0.0.1",
                "db.operation.name": operation,
            ]
            attributes["db.query.text"] = query
        }

        init(received span: [String: Any]) {
            name = span["name"] as? String ?? "?"
            kind = span["kind"] as? String ?? "?"
            let status = span["status"] as? [String: Any]
            self.status = [status?["code"] as? String ?? "?", status?["message"] as? String ?? ""].filter { !$0.isEmpty }.joined(separator: " ")
            attributes = EndToEndTests.attributes(span).mapValues { "\($0)" }
        }

        var description: String { "\(name) [\(status)] \(attributes.sorted { $0.key < $1.key })" }
    }

    /// Starts `client`, attaches sonde to it, sends `lines` and waits for `answered` to see its
    /// answers; returns its spans in the order they ended, after checking what every one shares.
    func trace(
        _ client: ChildProcess, lines: [String], options: [String] = [], answered: (ChildProcess) throws -> Void
    ) throws -> [StatementSpan] {
        let receiver = try OTLPReceiver()
        let sonde = try ChildProcess(
            Repository.sonde, ["run", "--pid", String(client.pid), "--pack", "c/libpq"] + options,
            environment: ["OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint])
        try sonde.waitForOutput("attached")
        XCTAssertTrue(sonde.text.contains("15 probe sites for 12 probes in libpq.so.5.15, which"), sonde.text)
        for line in lines { try client.send(line) }
        try answered(client)
        XCTAssertEqual(try sonde.stop(signal: SIGINT), 0, sonde.text)
        XCTAssertTrue(sonde.text.contains("returns without a seen entry: 0"), sonde.text)
        let spans = try receiver.spans().filter { ($0["resource"] as? [String: Any])?["process.pid"] as? Int == Int(client.pid) }
        for span in spans {
            let start = span["start_time_unix_nano"] as? Int ?? 0
            let end = span["end_time_unix_nano"] as? Int ?? 0
            XCTAssertGreaterThan(end, start, "a statement takes time: \(span)")
            XCTAssertEqual(span["parent_span_id"] as? String, "", "a statement outside any traced request is a root")
        }
        XCTAssertEqual(Set(spans.compactMap { $0["trace_id"] as? String }).count, spans.count, "one trace per statement")
        return spans.sorted { ($0["end_time_unix_nano"] as? Int ?? 0) < ($1["end_time_unix_nano"] as? Int ?? 0) }
            .map(StatementSpan.init(received:))
    }

    func testCClientStatementsAreClientSpansWithTheirStatusAndText() throws {
        let directory = try temporaryDirectory()
        let binary = "\(directory)/pq-client"
        _ = try ChildProcess.run(try TestEnvironment.tool("GCC"), [
            "-O2", "-I/usr/include/postgresql", "-o", binary, "\(Repository.root)/Tests/Support/libpq-client/client.c", "-lpq",
        ])
        let client = try ChildProcess(binary, [server.connection], takesInput: true)
        defer { _ = try? client.stop() }
        try client.waitForOutput("ready")
        let lines = [
            "exec select 1",
            "exec select * from no_such_table",
            "params select $1::int + $2::int | 20 22",
            "prepare s1 select upper($1::text)",
            "execute s1 hello",
            "exec select 2; select 3",
            "execute no_such_statement",
        ]
        let spans = try trace(client, lines: lines) { try $0.waitForLines(1 + lines.count) }
        XCTAssertEqual(client.text, """
            ready
            PGRES_TUPLES_OK 1
            PGRES_FATAL_ERROR \n\
            PGRES_TUPLES_OK 42
            PGRES_COMMAND_OK \n\
            PGRES_TUPLES_OK HELLO
            PGRES_TUPLES_OK 3
            PGRES_FATAL_ERROR \n
            """)
        XCTAssertEqual(spans, [
            StatementSpan("SELECT", query: "select 1", operation: "SELECT"),
            StatementSpan("SELECT", status: "STATUS_CODE_ERROR status 7", query: "select * from no_such_table", operation: "SELECT"),
            StatementSpan("SELECT", query: "select $1::int + $2::int", operation: "SELECT"),
            StatementSpan("PREPARE s1", query: "select upper($1::text)", operation: "PREPARE"),
            StatementSpan("EXECUTE s1", query: nil, operation: "EXECUTE"),
            StatementSpan("SELECT", query: "select 2; select 3", operation: "SELECT"),
            StatementSpan("EXECUTE no_such_statement", status: "STATUS_CODE_ERROR status 7", query: nil, operation: "EXECUTE"),
        ])
    }

    func testPsqlStatementsThroughTheAsynchronousAPI() throws {
        let client = try ChildProcess(server.psql, ["-X", "-A", "-t", server.connection], takesInput: true)
        defer { _ = try? client.stop() }
        try client.send("\\echo ready")
        try client.waitForOutput("ready")
        let spans = try trace(client, lines: ["select 42;", "select * from nope;", "create temp table t (x int);", "\\echo done"]) {
            try $0.waitForOutput("done")
        }
        XCTAssertTrue(client.text.contains("42\n"), client.text)
        XCTAssertEqual(spans, [
            StatementSpan("SELECT", query: "select 42;", operation: "SELECT"),
            StatementSpan("SELECT", status: "STATUS_CODE_ERROR status 7", query: "select * from nope;", operation: "SELECT"),
            StatementSpan("CREATE", query: "create temp table t (x int);", operation: "CREATE"),
        ])
    }

    /// psycopg2 interpolates parameters into the text it sends: the span shows the values, which
    /// is why the pack bounds the text (docs/probe-packs.md).
    func testPsycopg2StatementsCarryTheirInterpolatedText() throws {
        let python = try TestEnvironment.tool("DEBIAN_PYTHON")
        let client = try ChildProcess(python, ["-u", "\(Repository.root)/Tests/Support/libpq-client/client.py", server.connection], takesInput: true)
        defer { _ = try? client.stop() }
        try client.waitForOutput("ready")
        let lines = ["exec select %s::int + 1 | 41", "exec select * from missing", "exec create temp table t (x int)"]
        let spans = try trace(client, lines: lines) { try $0.waitForLines(1 + lines.count) }
        XCTAssertEqual(client.text, "ready\nok 42\nerror 42P01\nok CREATE TABLE\n")
        XCTAssertEqual(spans, [
            StatementSpan("SELECT", query: "select 41::int + 1", operation: "SELECT"),
            StatementSpan("SELECT", status: "STATUS_CODE_ERROR status 7", query: "select * from missing", operation: "SELECT"),
            StatementSpan("CREATE", query: "create temp table t (x int)", operation: "CREATE"),
        ])
    }

    /// A deployment that must not export statements (their values) omits the attribute; the span
    /// keeps its operation name, and a misspelt attribute is refused rather than exported.
    func testQueryTextOmittedOnRequest() throws {
        let misspelt = try runSonde(["run", "--pid", String(getpid()), "--pack", "c/libpq", "--omit-attribute", "db.qeury.text"])
        XCTAssertEqual(misspelt.exit, 1)
        XCTAssertTrue(misspelt.output.hasSuffix(
            "Error: --omit-attribute db.qeury.text: no chosen pack sets it (they set db.namespace, db.operation.name, db.query.text, "
                + "db.system.name, server.address)\n"), misspelt.output)
        let python = try TestEnvironment.tool("DEBIAN_PYTHON")
        let client = try ChildProcess(python, ["-u", "\(Repository.root)/Tests/Support/libpq-client/client.py", server.connection], takesInput: true)
        defer { _ = try? client.stop() }
        try client.waitForOutput("ready")
        let spans = try trace(client, lines: ["exec select %s::int + 1 | 41"], options: ["--omit-attribute", "db.query.text"]) {
            try $0.waitForLines(2)
        }
        XCTAssertEqual(spans, [StatementSpan("SELECT", query: nil, operation: "SELECT")])
    }

    /// `sonde plan` on the library itself: every site is one the kernel emulates, at the offsets
    /// its dynamic symbol table gives (read here by readelf, not by Sonde).
    func testPlanOfTheLibraryUsesOnlyEmulatedSites() throws {
        let plan = try ChildProcess.run(Repository.sonde, ["plan", "--exe", Self.libpq, "--pack", "c/libpq"])
        let symbols = try ChildProcess.run("/usr/bin/readelf", ["--dyn-syms", "-W", Self.libpq])
        func offset(of name: String) -> UInt64? {
            symbols.split(separator: "\n").lazy.map { $0.split(separator: " ") }
                .first { $0.count >= 8 && $0[7] == name }.flatMap { UInt64($0[1], radix: 16) }
        }
        let sites = plan.split(separator: "\n").filter { $0.hasPrefix("  entry  0x") || $0.hasPrefix("  return 0x") }
        XCTAssertEqual(sites.count, 15, plan)
        XCTAssertTrue(sites.allSatisfy { $0.hasSuffix("[emulated (cheap)]") || $0.hasSuffix("[hook emulated (cheap), return through the kernel (cheap)]") }, plan)
        for function in ["PQsendQueryParams", "PQsendPrepare", "PQsendQueryPrepared", "PQgetResult"] {
            let hex = String(try XCTUnwrap(offset(of: function), function), radix: 16)
            XCTAssertTrue(plan.contains("return 0x\(hex) file offset 0x\(hex)  return probe, hooked at push rbp"), "\(function) at 0x\(hex):\n\(plan)")
        }
        // PQsendQuery is `mov edx, 1; jmp …`: its entry is the jump, 5 bytes in, where conn and query are still in RDI and RSI.
        let sendQuery = String(try XCTUnwrap(offset(of: "PQsendQuery")) + 5, radix: 16)
        XCTAssertTrue(plan.contains("entry  0x\(sendQuery) file offset 0x\(sendQuery)  jmp "), plan)
        XCTAssertTrue(plan.hasPrefix("attach plan for \(Self.libpq) (not Go, shared library libpq.so.5 5.15)"), plan)
        XCTAssertTrue(plan.hasSuffix("per request, if each probed function runs once: 9 emulated + 0 single-stepped hits ≈ 5.85 µs of traps\n"), plan)
    }

    /// A copy of the library whose name says another version is refused, with the reason; a
    /// program is not the library, and without --pid its libraries are not looked for.
    func testAnotherVersionOrFileIsRefusedWithItsReason() throws {
        let directory = try temporaryDirectory()
        let copy = "\(directory)/libpq.so.5.99"
        // The soname is a link: copy the library file it names, not the link.
        try FileManager.default.copyItem(atPath: URL(fileURLWithPath: Self.libpq).resolvingSymlinksInPath().path, toPath: copy)
        let newer = try runSonde(["plan", "--exe", copy, "--pack", "c/libpq"])
        XCTAssertEqual(newer.exit, 1)
        XCTAssertTrue(newer.output.contains("  c/libpq/query: libpq.so.5 5.99 is outside the pack's range >=5.15 <5.16\n"), newer.output)
        let program = try runSonde(["run", "--exe", server.psql, "--pack", "c/libpq"])
        XCTAssertEqual(program.exit, 1)
        XCTAssertTrue(program.output.hasSuffix(
            "Error: no probe of the chosen packs applies to \(server.psql); packs that probe a shared library, c/libpq (libpq.so.5), "
                + "trace it in a running process: --pid\n"), program.output)
    }
}
