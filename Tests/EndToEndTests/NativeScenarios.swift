import Foundation
import TestSupport
import XCTest

/// The end-to-end scenarios of the native packs, each a program built (or installed) one way and
/// traced by sonde, spans checked at an independent OTLP receiver. NativeMatrixTests runs each
/// with every compiler and flags of the matrix in docs/native-matrix.md.

/// c/libpq against a real PostgreSQL, with three clients that share the one pack: a C program,
/// psql and Python's psycopg2. Each client is driven line by line on stdin, so that sonde
/// attaches (--pid) before it sends its statements.
enum LibpqScenarios {
    /// One client statement's span, as the receiver decoded it.
    struct StatementSpan: Equatable, CustomStringConvertible {
        var name: String
        var kind: String
        var status: String
        var attributes: [String: String]

        /// A failed statement's span has an error status and the SQLSTATE the server sent.
        init(_ name: String, failedWith sqlstate: String? = nil, query: String?, operation: String) {
            self.name = name
            kind = "SPAN_KIND_CLIENT"
            status = sqlstate == nil ? "STATUS_CODE_UNSET" : "STATUS_CODE_ERROR status 7"
            attributes = [
                "db.system.name": "postgresql", "db.namespace": PostgresServer.database, "server.address": "127.0.0.1",
                "db.operation.name": operation,
            ]
            attributes["db.query.text"] = query
            attributes["db.response.status_code"] = sqlstate
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
    static func trace(
        _ client: ChildProcess, lines: [String], options: [String] = [], answered: (ChildProcess) throws -> Void
    ) throws -> [StatementSpan] {
        let (spans, sonde) = try traceInput(to: client, sondeArguments: ["--pack", "c/libpq"] + options, lines: lines, answered: answered)
        XCTAssertTrue(sonde.contains("15 probe sites for 12 probes in libpq.so.5.15, which"), sonde)
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

    /// The C client, built with `compiler` and `flags`: the synchronous API, each call of it.
    static func cClient(database: PostgresServer, compiler: String, flags: [String], directory: String) throws {
        let binary = "\(directory)/pq-client"
        _ = try ChildProcess.run(compiler, flags + [
            "-I/usr/include/postgresql", "-o", binary, "\(Repository.root)/Tests/Support/libpq-client/client.c", "-lpq",
        ])
        let client = try ChildProcess(binary, [database.connection], takesInput: true)
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
            StatementSpan("SELECT", failedWith: "42P01", query: "select * from no_such_table", operation: "SELECT"),
            StatementSpan("SELECT", query: "select $1::int + $2::int", operation: "SELECT"),
            StatementSpan("PREPARE s1", query: "select upper($1::text)", operation: "PREPARE"),
            StatementSpan("EXECUTE s1", query: nil, operation: "EXECUTE"),
            StatementSpan("SELECT", query: "select 2; select 3", operation: "SELECT"),
            StatementSpan("EXECUTE no_such_statement", failedWith: "26000", query: nil, operation: "EXECUTE"),
        ])
    }

    /// psql sends what it reads through the asynchronous API (PQsendQuery, PQgetResult).
    static func psql(database: PostgresServer) throws {
        let client = try ChildProcess(database.psql, ["-X", "-A", "-t", database.connection], takesInput: true)
        defer { _ = try? client.stop() }
        try client.send("\\echo ready")
        try client.waitForOutput("ready")
        let spans = try trace(client, lines: ["select 42;", "select * from nope;", "create temp table t (x int);", "\\echo done"]) {
            try $0.waitForOutput("done")
        }
        XCTAssertTrue(client.text.contains("42\n"), client.text)
        XCTAssertEqual(spans, [
            StatementSpan("SELECT", query: "select 42;", operation: "SELECT"),
            StatementSpan("SELECT", failedWith: "42P01", query: "select * from nope;", operation: "SELECT"),
            StatementSpan("CREATE", query: "create temp table t (x int);", operation: "CREATE"),
        ])
    }

    /// psycopg2 interpolates parameters into the text it sends: the span shows the values, which
    /// is why the pack bounds the text (docs/probe-packs.md).
    static func psycopg2(database: PostgresServer) throws {
        let python = try TestEnvironment.tool("DEBIAN_PYTHON")
        let client = try ChildProcess(python, ["-u", "\(Repository.root)/Tests/Support/libpq-client/client.py", database.connection], takesInput: true)
        defer { _ = try? client.stop() }
        try client.waitForOutput("ready")
        let lines = ["exec select %s::int + 1 | 41", "exec select * from missing", "exec create temp table t (x int)"]
        let spans = try trace(client, lines: lines) { try $0.waitForLines(1 + lines.count) }
        XCTAssertEqual(client.text, "ready\nok 42\nerror 42P01\nok CREATE TABLE\n")
        XCTAssertEqual(spans, [
            StatementSpan("SELECT", query: "select 41::int + 1", operation: "SELECT"),
            StatementSpan("SELECT", failedWith: "42P01", query: "select * from missing", operation: "SELECT"),
            StatementSpan("CREATE", query: "create temp table t (x int)", operation: "CREATE"),
        ])
    }
}

/// cpp/httplib on a C++ server built against Debian's libcpp-httplib, whose handler queries a
/// real PostgreSQL through libpq: server spans from one library, client spans from another,
/// joined on the request's thread.
enum HttplibScenario {
    /// The C++ server, built with `compiler` and `flags`, serving requests whose handler queries
    /// PostgreSQL: each request a server span, its statement a client span and its child.
    static func serve(database: PostgresServer, compiler: String, flags: [String], directory: String) async throws {
        let binary = "\(directory)/httplib-server"
        _ = try ChildProcess.run(compiler, flags + [
            "-I/usr/include/postgresql", "-o", binary, "\(Repository.root)/Tests/Support/httplib-server/server.cc",
            "-lcpp-httplib", "-lpq", "-pthread",
        ])
        let server = try ChildProcess(binary, [database.connection])
        defer { _ = try? server.stop() }
        try server.waitForOutput("listening")
        let port = try XCTUnwrap(Int(server.text.split(separator: " ")[1].prefix { $0.isNumber }))
        let receiver = try OTLPReceiver()
        let sonde = try ChildProcess(
            Repository.sonde, ["run", "--pid", String(server.pid), "--pack", "cpp/httplib", "--pack", "c/libpq"],
            environment: ["OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint])
        try sonde.waitForOutput("attached")
        XCTAssertTrue(sonde.text.contains("attached 3 probe sites for 3 probes in libcpp-httplib.so.0.11.4, which \(binary) maps, "), sonde.text)
        XCTAssertTrue(sonde.text.contains("15 probe sites for 12 probes in libpq.so.5.15, which \(binary) maps"), sonde.text)

        let statuses = try await sendRequests(["/hello", "/double/21", "/unavailable", "/throw", "/nope"], port: port, concurrency: 1)
        XCTAssertEqual(statuses, [200, 200, 503, 500, 404])
        XCTAssertEqual(try sonde.stop(signal: SIGINT), 0, sonde.text)
        XCTAssertTrue(sonde.text.contains("returns without a seen entry: 0"), sonde.text)

        let spans = try receiver.spans().filter { ($0["resource"] as? [String: Any])?["process.pid"] as? Int == Int(server.pid) }
        let requests = spans.filter { $0["kind"] as? String == "SPAN_KIND_SERVER" }
            .sorted { ($0["start_time_unix_nano"] as? Int ?? 0) < ($1["start_time_unix_nano"] as? Int ?? 0) }
        func summary(_ span: [String: Any]) -> String {
            var attributes = EndToEndTests.attributes(span).mapValues { "\($0)" }
            XCTAssertGreaterThan(Int(attributes.removeValue(forKey: "client.port") ?? "") ?? 0, 0, "client.port: \(span)")
            let status = span["status"] as? [String: Any]
            return "\(span["name"] ?? "?") [\(status?["code"] ?? "?") \(status?["message"] ?? "")] "
                + attributes.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        }
        func expected(_ path: String, _ status: Int, error: String = "") -> String {
            "GET [\(error.isEmpty ? "STATUS_CODE_UNSET" : "STATUS_CODE_ERROR") \(error)] client.address=127.0.0.1 http.request.method=GET "
                + "http.response.status_code=\(status) server.port=\(port) url.path=\(path)"
        }
        XCTAssertEqual(requests.map(summary), [
            expected("/hello", 200),
            expected("/double/21", 200),
            expected("/unavailable", 503, error: "status 503"),
            expected("/throw", 500, error: "unrouted_status 500"),
            expected("/nope", 404),
        ])
        for request in requests {
            XCTAssertEqual(request["parent_span_id"] as? String, "", "a request without a traceparent starts a trace")
        }

        // The statement the /double handler ran, on the request's thread, is that request's child.
        let statements = spans.filter { $0["kind"] as? String == "SPAN_KIND_CLIENT" }
        XCTAssertEqual(statements.count, 1, "\(statements)")
        let statement = try XCTUnwrap(statements.first)
        XCTAssertEqual(statement["name"] as? String, "SELECT")
        XCTAssertEqual(EndToEndTests.attributes(statement)["db.query.text"] as? String, "select $1::int * 2")
        XCTAssertEqual(statement["trace_id"] as? String, requests[1]["trace_id"] as? String)
        XCTAssertEqual(statement["parent_span_id"] as? String, requests[1]["span_id"] as? String)
        let (start, end) = (statement["start_time_unix_nano"] as? Int ?? 0, statement["end_time_unix_nano"] as? Int ?? 0)
        XCTAssertLessThan(requests[1]["start_time_unix_nano"] as? Int ?? .max, start)
        XCTAssertLessThan(end, requests[1]["end_time_unix_nano"] as? Int ?? 0)
    }
}

/// rust/hyper on a hyper 0.14 server built with cargo, offline, against Debian's crates: probes
/// on the executable, located through its DWARF, the crate's version from its panic paths.
enum HyperScenario {
    /// `release` is optimised with `debug = true`; `dev` is cargo's unoptimised default.
    enum Profile: String {
        case release, dev
    }

    /// Tests/Support/hyper-server, built in a copy of its own (cargo writes Cargo.lock beside it).
    static func build(_ profile: Profile, directory: String) throws -> String {
        let project = "\(directory)/hyper-server"
        try FileManager.default.copyItem(atPath: "\(Repository.root)/Tests/Support/hyper-server", toPath: project)
        _ = try ChildProcess.run(
            try TestEnvironment.tool("CARGO"), ["build", "--quiet"] + (profile == .release ? ["--release"] : []),
            environment: ["CARGO_TARGET_DIR": "\(directory)/target"], workingDirectory: project)
        return "\(directory)/target/\(profile == .release ? "release" : "debug")/hyper-server"
    }

    /// An optimised build: every response ends its request's span, with the status DWARF locates.
    static func serve(directory: String) async throws {
        let binary = try build(.release, directory: directory)
        let plan = try ChildProcess.run(Repository.sonde, ["plan", "--exe", binary, "--pack", "rust/hyper"])
        XCTAssertTrue(plan.hasPrefix("""
            attach plan for \(binary) (not Go, PIE)
            experimental pack rust/hyper: method and path are not read: hyper passes the request head to recv_msg inside a Result, \
            whose variants Sonde does not read yet; spans are named HTTP

            """), plan)
        XCTAssertTrue(plan.contains("    status: uint16 at data[0], offsets from DWARF\n"), plan)
        XCTAssertTrue(plan.hasSuffix("per request, if each probed function runs once: 2 emulated + 0 single-stepped hits ≈ 1.3 µs of traps\n"), plan)
        try refuseOtherVersions(of: binary, directory: directory)

        let server = try ChildProcess(binary, [])
        defer { _ = try? server.stop() }
        try server.waitForOutput("listening")
        let port = try XCTUnwrap(Int(server.text.split(separator: " ")[1].prefix { $0.isNumber }))
        let receiver = try OTLPReceiver()
        let sonde = try ChildProcess(
            Repository.sonde, ["run", "--pid", String(server.pid), "--pack", "rust/hyper"],
            environment: ["OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint])
        try sonde.waitForOutput("attached")
        XCTAssertTrue(sonde.text.contains("attached 2 probe sites for 2 probes in \(binary); "), sonde.text)
        let statuses = try await sendRequests(["/hello", "/unavailable", "/nope", "/hello"], port: port, concurrency: 1)
        XCTAssertEqual(statuses, [200, 503, 404, 200])
        XCTAssertEqual(try sonde.stop(signal: SIGINT), 0, sonde.text)
        XCTAssertTrue(sonde.text.contains("sonde: 4 spans submitted, 4 exported, 0 dropped"), sonde.text)

        let spans = try receiver.spans().sorted { ($0["start_time_unix_nano"] as? Int ?? 0) < ($1["start_time_unix_nano"] as? Int ?? 0) }
        XCTAssertEqual(spans.map { span -> String in
            let status = span["status"] as? [String: Any]
            let code = EndToEndTests.attributes(span)["http.response.status_code"].map { "\($0)" } ?? "-"
            return "\(span["kind"] ?? "?") \(span["name"] ?? "?") \(code) \(status?["code"] ?? "?") \(status?["message"] ?? "")"
        }, [
            "SPAN_KIND_SERVER HTTP 200 STATUS_CODE_UNSET ",
            "SPAN_KIND_SERVER HTTP 503 STATUS_CODE_ERROR status 503",
            "SPAN_KIND_SERVER HTTP 404 STATUS_CODE_UNSET ",
            "SPAN_KIND_SERVER HTTP 200 STATUS_CODE_UNSET ",
        ])
        for span in spans {
            let (start, end) = (span["start_time_unix_nano"] as? Int ?? 0, span["end_time_unix_nano"] as? Int ?? 0)
            XCTAssertGreaterThan(end, start, "\(span)")
            XCTAssertEqual(span["parent_span_id"] as? String, "")
        }
        XCTAssertEqual(Set(spans.compactMap { $0["trace_id"] as? String }).count, 4)
    }

    /// The same pack for another hyper than the program's is refused, with both versions.
    static func refuseOtherVersions(of binary: String, directory: String) throws {
        let packs = "\(directory)/packs"
        try FileManager.default.createDirectory(atPath: packs, withIntermediateDirectories: true)
        let shipped = try String(contentsOfFile: "\(Repository.root)/probe-packs/rust/hyper.yaml", encoding: .utf8)
        try shipped.replacingOccurrences(of: "versions: \">=0.14 <0.15\"", with: "versions: \">=1.0\"")
            .write(toFile: "\(packs)/hyper.yaml", atomically: true, encoding: .utf8)
        let newer = try runSonde(["plan", "--exe", binary, "--packs", packs, "--pack", "rust/hyper"])
        XCTAssertTrue(newer.output.contains("  rust/hyper/server: hyper 0.14.19 is outside the pack's range >=1.0\n"), newer.output)
    }

    /// An unoptimised build keeps parameters on the stack, where DWARF locates them after the
    /// prologue, not at the entry the probe hooks: the status probe is refused, saying so, and
    /// the span would end at recv_msg's return (a single-stepped hook), so the build is unsupported.
    static func refuseUnoptimised(directory: String) throws {
        let binary = try build(.dev, directory: directory)
        let plan = try ChildProcess.run(Repository.sonde, ["plan", "--exe", binary, "--pack", "rust/hyper"])
        XCTAssertTrue(plan.hasSuffix("""
            skipped probes:
              rust/hyper/response-head: capture 'status' (\(Repository.root)/probe-packs/rust/hyper.yaml:43:7): argument 'head' is not in registers

            """), plan)
    }
}
