import Foundation
import ProbePacks
import XCTest

final class PackLoaderTests: XCTestCase {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    func testShippedNetHTTPPackLoads() throws {
        let file = Self.repository.appendingPathComponent("probe-packs/go/net-http.yaml").path
        let pack = try PackLoader.load(file: file)
        XCTAssertEqual(pack.name, "go/net-http")
        XCTAssertEqual(pack.language, .go)
        XCTAssertEqual(pack.library.module, "std")
        XCTAssertEqual(pack.library.versions.description, ">=1.17")
        XCTAssertEqual(
            pack.probes.map(\.id),
            ["server", "server-finished", "server-finished-http2", "server-finished-internal-http2", "server-hijacked", "client",
             "client-request-headers"])
        let client = pack.probes[5]
        XCTAssertEqual(client.function, "net/http.(*Transport).roundTrip")
        XCTAssertEqual(client.span?.kind, .client)
        XCTAssertEqual(client.onReturn.map(\.origin), [.result(0), .result(1)])
        XCTAssertEqual(client.onReturn.map(\.type), [.int, .nonNil])
        XCTAssertEqual(client.attributes[1].value, .url(scheme: "scheme", host: "host", path: "path", query: "query"))
        let server = pack.probes[0]
        XCTAssertEqual(server.function, "net/http.serverHandler.ServeHTTP")
        XCTAssertEqual(server.span?.kind, .server)
        XCTAssertEqual(server.span?.name.parts, [.capture("method")], "low-cardinality: a router adds the route")
        XCTAssertEqual(server.traceContext, TraceContextHeaders(
            origin: .argument("req"), path: [.field("Header")], carrier: .goHeaderMap, nameCase: .canonical,
            source: SourceLocation(file: file, line: 36, column: 16)))
        XCTAssertEqual(client.traceContext?.path, [.field("Header")])
        let injector = pack.probes[6]
        XCTAssertEqual(injector.function, "net/http.Header.writeSubset")
        XCTAssertEqual(injector.injection, TraceContextInjection(
            target: "go/net-http/client", headers: .argument("h"),
            writer: BufferedWriter(origin: .argument("w"), dynamicType: "*bufio.Writer", buffer: "buf", used: "n")))
        XCTAssertEqual(server.span?.errorWhen, [])
        XCTAssertEqual(server.onEntry.map(\.name), ["method", "path", "host", "tls"])
        XCTAssertEqual(server.onEntry[1].path, [.field("URL"), .field("Path")])
        XCTAssertEqual(server.onEntry[0].maxLength, 16)
        XCTAssertEqual(server.onEntry[1].maxLength, 128)
        XCTAssertEqual(server.onReturn, [])
        XCTAssertEqual(server.attributes.map(\.key), ["http.request.method", "url.path", "url.scheme", "server.address", "server.port"])
        XCTAssertEqual(server.attributes[2].value, .urlScheme(tls: "tls"))
        XCTAssertEqual(server.attributes[3].value, .hostname(of: "host"))
        XCTAssertEqual(server.attributes[4].value, .port(of: "host"))
        // The server span ends, with its status, where net/http finishes the request.
        let finished = pack.probes[1]
        XCTAssertEqual(finished.function, "net/http.(*response).finishRequest")
        XCTAssertEqual(
            finished.enrichment,
            Enrichment(target: "go/net-http/server", rename: nil, ends: .openCall, errorWhen: [ErrorCondition(capture: "status", test: .atLeast(500))]))
        let status = try XCTUnwrap(finished.onEntry.first)
        XCTAssertEqual(status.origin, .argument("w"))
        XCTAssertEqual(status.path, [.field("status")])
        XCTAssertEqual(status.type, .int)
        XCTAssertEqual(status.ifZero, 200)
        XCTAssertEqual(finished.attributes, [AttributeRule(key: "http.response.status_code", value: .capture("status"))])
        XCTAssertEqual(pack.probes[2].onEntry.first?.path, [.field("rws"), .field("status")])
        XCTAssertEqual(pack.probes[2].onEntry.first?.name, "http2-status")
        XCTAssertEqual(pack.probes[4].enrichment?.ends, .openCall)
        XCTAssertEqual(pack.probes[4].onEntry, [])
    }

    private let validProbe = """
        format: sonde.probe-pack/v1
        pack: go/example
        language: go
        library: { module: std, versions: ">=1.19" }
        probes:
          - id: handler
            function: main.handle
            span: { kind: server, name: "handle {path}" }
            on-entry:
              path: { arg: req, path: URL.Path, type: go-string }
            attributes:
              url.path: path

        """

    private func error(in yaml: String, file: String = "bad.yaml") -> String {
        do {
            _ = try PackLoader.parse(yaml: yaml, file: file)
            return "no error"
        } catch {
            return "\(error)"
        }
    }

    func testValidPackParses() throws {
        let pack = try PackLoader.parse(yaml: validProbe, file: "ok.yaml")
        XCTAssertEqual(pack.probes[0].span?.name.parts, [.literal("handle "), .capture("path")])
        XCTAssertEqual(pack.source, SourceLocation(file: "ok.yaml", line: 1, column: 1))
        XCTAssertEqual(pack.probes[0].onEntry[0].source, SourceLocation(file: "ok.yaml", line: 10, column: 7))
    }

    func testErrorsNameFileLineColumnAndProblem() {
        XCTAssertEqual(
            error(in: validProbe.replacingOccurrences(of: "kind: server", with: "kind: sever")),
            "bad.yaml:8:19: unknown span kind 'sever'; expected one of: server, client, internal, producer, consumer")
        XCTAssertEqual(
            error(in: validProbe.replacingOccurrences(of: "url.path: path", with: "url.path: pth")),
            "bad.yaml:12:17: attribute 'url.path' refers to unknown capture 'pth'; known: path")
        XCTAssertEqual(
            error(in: validProbe.replacingOccurrences(of: "type: go-string", with: "type: text")),
            "bad.yaml:10:47: unknown value type 'text'; expected one of: go-string, c-string, std-string, rust-str, rust-string, int, int32, uint16, bool, non-nil")
        XCTAssertEqual(
            error(in: validProbe.replacingOccurrences(of: "function: main.handle", with: "functon: main.handle")),
            """
            bad.yaml:6:5: a probe is missing 'function'
            bad.yaml:7:5: unknown key 'functon' in a probe; expected one of: id, function, signature, span, follow-goroutine, enrich, end-span, inject-trace-context, extract-trace-context, trace-context, called-from, on-entry, on-return, attributes
            """)
        XCTAssertEqual(
            error(in: validProbe.replacingOccurrences(of: "\"handle {path}\"", with: "\"handle {route}\"")),
            "bad.yaml:8:33: span name refers to unknown capture 'route'; known: path")
        XCTAssertEqual(
            error(in: validProbe.replacingOccurrences(of: "sonde.probe-pack/v1", with: "sonde.probe-pack/v9")),
            "bad.yaml:1:9: unsupported pack format 'sonde.probe-pack/v9'; this Sonde reads 'sonde.probe-pack/v1'")
        XCTAssertEqual(
            error(in: validProbe.replacingOccurrences(of: ">=1.19", with: "at least 1.19")),
            "bad.yaml:4:35: cannot read version range 'at least 1.19'; write comparisons like '>=1.19 <1.28'")
        XCTAssertEqual(
            error(in: validProbe.replacingOccurrences(of: "path: URL.Path", with: "path: URL..Path")),
            "bad.yaml:10:31: path step '' is not a field name")
        XCTAssertEqual(
            error(in: validProbe.replacingOccurrences(of: "  - id: handler\n", with: "  - id: handler\n    id: again\n")),
            "bad.yaml:6:5: this key appears more than once in its mapping")
    }

    func testResultsAndErrorConditionLists() throws {
        let pack = try PackLoader.parse(yaml: """
            format: sonde.probe-pack/v1
            pack: go/client
            language: go
            library: { module: std, versions: ">=1.19" }
            probes:
              - id: call
                function: main.call
                span:
                  kind: client
                  name: call
                  error-when: [{ capture: status, at-least: 400 }, { capture: failure, not-zero: true }]
                on-entry:
                  scheme: { arg: req, path: URL.Scheme, type: go-string }
                  host: { arg: req, path: URL.Host, type: go-string }
                on-return:
                  status: { result: 0, path: StatusCode, type: int }
                  failure: { result: 1, type: int }
                attributes:
                  url.full: url(scheme, host, scheme, host)
            """, file: "client.yaml")
        let probe = pack.probes[0]
        XCTAssertEqual(probe.span?.errorWhen, [
            ErrorCondition(capture: "status", test: .atLeast(400)), ErrorCondition(capture: "failure", test: .nonZero),
        ])
        XCTAssertEqual(probe.onReturn.map(\.origin), [.result(0), .result(1)])
        XCTAssertEqual(probe.attributes[0].value, .url(scheme: "scheme", host: "host", path: "scheme", query: "host"))
        XCTAssertEqual(
            error(in: validProbe.replacingOccurrences(of: "path: { arg: req,", with: "path: { result: 0,")),
            "bad.yaml:10:23: results exist only on return; move capture 'path' to on-return")
        XCTAssertEqual(
            error(in: validProbe.replacingOccurrences(of: "path: { arg: req,", with: "path: {")),
            "bad.yaml:10:7: capture 'path' needs exactly one of 'arg' (a parameter name) or 'result' (a result position)")
    }

    func testShippedRuntimePackFollowsGoroutines() throws {
        let pack = try PackLoader.load(file: Self.repository.appendingPathComponent("probe-packs/go/runtime.yaml").path)
        XCTAssertEqual(pack.name, "go/runtime")
        XCTAssertEqual(pack.probes.map(\.function), ["runtime.newproc.func1"])
        XCTAssertNil(pack.probes[0].span)
        XCTAssertEqual(
            pack.probes[0].goroutineHandoff,
            GoroutineHandoff(child: CalleeArgument(callee: "runtime.runqput", argument: "gp"), creator: [.field("m"), .field("curg")]))
        XCTAssertEqual(pack.probes[0].signatureFunctions, ["runtime.runqput"])
        func follower(_ handoff: String) -> String {
            """
            format: sonde.probe-pack/v1
            pack: go/example
            language: go
            library: { module: std, versions: ">=1.19" }
            probes:
              - id: creation
                function: runtime.newproc.func1
                follow-goroutine: \(handoff)

            """
        }
        XCTAssertEqual(
            error(in: follower("{ child: { result: 0 }, parent: { running-goroutine: m.curg } }")),
            "bad.yaml:8:34: unknown key 'result' in follow-goroutine.child; expected one of: call, arg")
        XCTAssertEqual(
            error(in: follower("{ child: { call: runtime.runqput, arg: gp }, parent: { call: runtime.newproc1, arg: callergp } }")),
            """
            bad.yaml:8:78: unknown key 'call' in follow-goroutine.parent; expected one of: running-goroutine
            bad.yaml:8:102: unknown key 'arg' in follow-goroutine.parent; expected one of: running-goroutine
            """)
        XCTAssertEqual(
            error(in: follower("{ child: { call: runtime.runqput, arg: gp }, parent: { running-goroutine: \"(*runtime.m).curg\" } }")),
            "bad.yaml:8:97: follow-goroutine.parent.running-goroutine is a path of field names from runtime.g, e.g. m.curg")
        XCTAssertEqual(
            error(in: follower("{ child: { call: runtime.runqput, arg: gp }, parent: { running-goroutine: m. } }")),
            "bad.yaml:8:97: follow-goroutine.parent.running-goroutine ends with '.'")
        XCTAssertEqual(
            error(in: follower("{ child: { call: runtime.runqput, arg: gp } }")),
            "bad.yaml:8:23: follow-goroutine is missing 'parent'")
        XCTAssertEqual(
            error(in: validProbe.replacingOccurrences(of: "    span: { kind: server, name: \"handle {path}\" }\n", with: "")),
            "bad.yaml:6:5: probe 'handler' needs exactly one of 'span' (make a span), 'enrich' (add to another probe's span), 'end-span' (add to and end another probe's span), 'follow-goroutine' (carry trace context to new goroutines), 'inject-trace-context' (send a client span's trace context) or 'extract-trace-context' (continue an incoming trace context)")
    }

    func testShippedMuxPackEnrichesTheServerSpan() throws {
        let pack = try PackLoader.load(file: Self.repository.appendingPathComponent("probe-packs/go/gorilla-mux.yaml").path)
        XCTAssertEqual(pack.library.module, "github.com/gorilla/mux")
        let probe = try XCTUnwrap(pack.probes.first)
        XCTAssertNil(probe.span)
        XCTAssertEqual(probe.enrichment, Enrichment(target: "go/net-http/server", rename: NameTemplate(parts: [.capture("method"), .literal(" "), .capture("route")])))
        XCTAssertEqual(probe.onEntry.map(\.path), [[.field("routeConf"), .field("regexp"), .field("path"), .field("template")]])
        XCTAssertEqual(probe.attributes, [AttributeRule(key: "http.route", value: .capture("route"))])
    }

    func testShippedGRPCPackUsesExpressionsAndEnrichment() throws {
        let pack = try PackLoader.load(file: Self.repository.appendingPathComponent("probe-packs/go/grpc.yaml").path)
        XCTAssertEqual(
            pack.probes.map(\.id), ["server-headers", "server", "server-status", "client", "client-end", "stream-client", "stream-client-end"])
        let probes = Array(pack.probes.dropFirst())  // after the trace-context probe (TraceContextPackTests)
        let server = probes[0]
        XCTAssertEqual(server.span?.name.parts, [.expression(.rpcService(of: "method")), .literal("/"), .expression(.rpcMethod(of: "method"))])
        XCTAssertEqual(server.attributes.first, AttributeRule(key: "rpc.system", value: .literal("grpc")))
        XCTAssertEqual(probes[1].enrichment, Enrichment(target: "go/grpc/server", rename: nil, ends: .openCall))
        // A unary call's status is grpc_status(code, error), of the error finish is given or, for a
        // call that failed before its stream existed, of the one invoke returns. The error is read
        // first, since the code's type check ends the program for an error that is no *status.Error.
        XCTAssertEqual(
            probes[2].span?.endsAtReturn, .afterFailedCall(CallResultEnd(function: "google.golang.org/grpc.newClientStream", result: 1)))
        XCTAssertEqual(probes[2].onReturn.map(\.name), ["returned-error", "returned-code"])
        let code = probes[2].onReturn[1]
        XCTAssertEqual(code.path, [.assertType("*google.golang.org/grpc/internal/status.Error"), .field("e"), .field("Code")])
        XCTAssertNil(code.ifAbsent)
        XCTAssertEqual(
            probes[2].attributes.last,
            AttributeRule(key: "rpc.grpc.status_code", value: .grpcStatus(code: "returned-code", error: "returned-error")))
        XCTAssertEqual(probes[3].enrichment?.target, "go/grpc/client")
        XCTAssertEqual(probes[3].enrichment?.ends, .openCall)
        XCTAssertEqual(
            probes[3].enrichment?.errorWhen,
            [ErrorCondition(capture: "code", test: .atLeast(1)), ErrorCondition(capture: "call-error", test: .nonZero)])
        XCTAssertEqual(probes[3].onEntry.map(\.name), ["call-error", "code"])
        XCTAssertEqual(
            probes[3].attributes, [AttributeRule(key: "rpc.grpc.status_code", value: .grpcStatus(code: "code", error: "call-error"))])
        XCTAssertEqual(
            error(in: validProbe.replacingOccurrences(of: "\"handle {path}\"", with: "\"{rpc_method(verb)}\"")),
            "bad.yaml:8:33: span name refers to unknown capture 'verb'; known: path")
        XCTAssertEqual(
            error(in: validProbe.replacingOccurrences(of: "url.path: path", with: "url.path: lower(path)")),
            "bad.yaml:12:17: unknown function 'lower(path)'; expected hostname(host), port(host), url(scheme, host, path, query), url_scheme(tls), rpc_service(method), rpc_method(method), grpc_status(code, error) or sql_operation(query)")
    }

    /// A stream's span stays open under the stream after the call returns, and another probe ends it.
    func testSpansThatOutliveTheirCall() throws {
        let pack = try PackLoader.load(file: Self.repository.appendingPathComponent("probe-packs/go/grpc.yaml").path)
        let stream = try XCTUnwrap(pack.probes.first { $0.id == "stream-client" })
        XCTAssertEqual(stream.span?.outlivesCall, ObjectReference(origin: .result(0), dynamicType: "*google.golang.org/grpc.clientStream"))
        let end = try XCTUnwrap(pack.probes.first { $0.id == "stream-client-end" }?.enrichment)
        XCTAssertEqual(end.target, "go/grpc/stream-client")
        XCTAssertEqual(end.ends, .object(.argument("cs")))
        XCTAssertEqual(end.errorWhen, [ErrorCondition(capture: "code", test: .atLeast(1))])

        let ender = validProbe.replacingOccurrences(
            of: "span: { kind: server, name: \"handle {path}\" }", with: "end-span: { span: go/example/open, object: { arg: s } }")
        XCTAssertEqual(try PackLoader.parse(yaml: ender, file: "ok.yaml").probes[0].enrichment?.ends, .object(.argument("s")))
        XCTAssertEqual(
            error(in: ender.replacingOccurrences(of: "object: { arg: s }", with: "object: { result: 0 }")),
            "bad.yaml:8:50: unknown key 'result' in end-span.object; expected one of: arg")
        // Without an object, it ends the target's call open on its own goroutine/thread (here a
        // span of another pack, which planning checks).
        let callEnder = ender.replacingOccurrences(of: ", object: { arg: s }", with: "").replacingOccurrences(of: "go/example/open", with: "go/other/open")
        XCTAssertEqual(try PackLoader.parse(yaml: callEnder, file: "ok.yaml").probes[0].enrichment?.ends, .openCall)
        XCTAssertEqual(
            error(in: ender.replacingOccurrences(of: "object: { arg: s }", with: "object: { arg: s }, error-when: { capture: code, at-least: 1 }")),
            "bad.yaml:8:83: error-when refers to unknown capture 'code'")
        XCTAssertEqual(
            error(in: validProbe.replacingOccurrences(of: "name: \"handle {path}\" }", with: "name: \"handle {path}\", outlives-call: { arg: s } }")),
            "bad.yaml:8:67: unknown key 'arg' in span.outlives-call; expected one of: result, path")
        XCTAssertEqual(
            error(in: validProbe.replacingOccurrences(of: "name: \"handle {path}\" }", with: "name: \"handle {path}\", outlives-call: { result: 0, path: s.id } }")),
            "bad.yaml:8:84: span.outlives-call.path can only check the dynamic type, e.g. \"(*pkg.Stream)\"")
    }

    /// An end-span probe that ends a span of its own pack in place of the span's return is checked
    /// against that span when the pack is read.
    func testEndSpanWithoutObjectIsCheckedAgainstItsTargetInThePack() {
        let pack = """
            format: sonde.probe-pack/v1
            pack: go/example
            language: go
            library: { module: std, versions: ">=1.19" }
            probes:
              - id: handler
                function: main.handle
                span: { kind: server, name: "handle" }
                on-return:
                  status: { arg: w, path: status, type: int }
              - id: finished
                function: main.finish
                end-span: { span: go/example/handler }
                on-entry:
                  code: { arg: w, path: code, type: int }
              - id: done
                function: main.done
                end-span: { span: go/example/missing }

            """
        XCTAssertEqual(error(in: pack), """
            bad.yaml:11:5: 'go/example/handler' ends here, before its return, so its on-return capture 'status' would never be read; capture it here, on entry
            bad.yaml:16:5: end-span.span 'go/example/missing' names no probe of this pack
            """)
        let reusing = pack.replacingOccurrences(of: "    on-return:\n      status", with: "    on-entry:\n      code")
            .replacingOccurrences(of: "go/example/missing", with: "go/example/handler")
        XCTAssertEqual(error(in: reusing), """
            bad.yaml:11:5: capture 'code' is also a capture of 'go/example/handler' or of another probe adding to it; probes adding to one span need distinct capture names
            """)
    }

    func testYAMLSyntaxErrorHasPosition() {
        XCTAssertEqual(
            error(in: "format: sonde.probe-pack/v1\npack: [go/x\n"),
            "bad.yaml:3:1: YAML syntax error: while parsing a flow sequence did not find expected ',' or ']'")
        XCTAssertEqual(error(in: ""), "bad.yaml:1:1: the file is empty")
    }

    func testVersionRanges() throws {
        let range = try XCTUnwrap(VersionRange(parsing: ">=1.19 <1.28"))
        XCTAssertTrue(range.contains(try XCTUnwrap(Version(parsing: "go1.19.8"))))
        XCTAssertTrue(range.contains(try XCTUnwrap(Version(parsing: "go1.27.3"))))
        XCTAssertFalse(range.contains(try XCTUnwrap(Version(parsing: "go1.28"))))
        XCTAssertFalse(range.contains(try XCTUnwrap(Version(parsing: "go1.18.10"))))
        XCTAssertTrue(range.contains(try XCTUnwrap(Version(parsing: "go1.21rc2"))))
        XCTAssertNil(VersionRange(parsing: "~1.2"))
        XCTAssertEqual(Version(parsing: "v1.8.0")?.components, [1, 8, 0])
    }

    func testCatalogReportsBadPacksAndUnknownSelections() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("sonde-catalog-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        try validProbe.write(to: directory.appendingPathComponent("good.yaml"), atomically: true, encoding: .utf8)
        try "format: sonde.probe-pack/v1\npack: nope\n".write(to: directory.appendingPathComponent("broken.yaml"), atomically: true, encoding: .utf8)
        let catalog = PackCatalog.load(paths: [directory.path], only: ["go/example", "go/missing"])
        XCTAssertEqual(catalog.packs.map(\.name), ["go/example"])
        XCTAssertEqual(catalog.errors.map(\.message), [
            "the pack is missing 'language'",
            "the pack is missing 'library'",
            "the pack is missing 'probes'",
            "pack name 'nope' must look like language/library, e.g. go/net-http",
        ])
        XCTAssertEqual(catalog.unmatched, ["go/missing"])
        XCTAssertEqual(catalog.available, ["go/example"])
        XCTAssertEqual(catalog.errors[3].location, SourceLocation(file: directory.path + "/broken.yaml", line: 2, column: 7))
    }
}

/// The trace-context keys: where a request keeps its headers, and the probes that read or write them.
final class TraceContextPackTests: XCTestCase {
    private func pack(_ probe: String) -> String {
        """
        format: sonde.probe-pack/v1
        pack: go/example
        language: go
        library: { module: std, versions: ">=1.19" }
        probes:
        \(probe)
        """
    }

    private func errors(in probe: String) -> [String] {
        do {
            _ = try PackLoader.parse(yaml: pack(probe), file: "tc.yaml")
            return []
        } catch let error as PackLoadError {
            return error.errors.map(\.description)
        } catch {
            return ["\(error)"]
        }
    }

    func testGRPCPackExtractsFromTheHeadersFrame() throws {
        let file = PackLoaderTests.repository.appendingPathComponent("probe-packs/go/grpc.yaml").path
        let grpc = try PackLoader.load(file: file)
        let headers = try XCTUnwrap(grpc.probes.first { $0.id == "server-headers" })
        XCTAssertEqual(headers.function, "google.golang.org/grpc/internal/transport.(*http2Server).operateHeaders")
        XCTAssertEqual(headers.extraction?.span, "go/grpc/server")
        XCTAssertEqual(headers.extraction?.headers.carrier, .hpackHeaderFields)
        XCTAssertEqual(headers.extraction?.headers.nameCase, .lower)
        XCTAssertEqual(headers.extraction?.headers.path, [.field("Fields")])
        XCTAssertNil(headers.span)
    }

    func testAnExtractionNamesASpanOfItsPack() {
        let extraction = """
              - id: headers
                function: g
                extract-trace-context:
                  span: %@
                  headers: { arg: frame, path: Fields, type: hpack-header-fields, case: lower }
            """
        let span = """
              - id: s
                function: f
                span: { kind: server, name: "s" }
              - id: ender
                function: h
                end-span: { span: go/example/s }
            """
        XCTAssertEqual(errors(in: span + "\n" + extraction.replacingOccurrences(of: "%@", with: "go/example/s")), [])
        XCTAssertEqual(errors(in: span + "\n" + extraction.replacingOccurrences(of: "%@", with: "go/example/nope")), [
            "tc.yaml:12:5: extract-trace-context.span 'go/example/nope' names no probe of this pack"
        ])
        XCTAssertEqual(errors(in: span + "\n" + extraction.replacingOccurrences(of: "%@", with: "go/example/ender")), [
            "tc.yaml:12:5: extract-trace-context.span 'go/example/ender' is not a span probe"
        ])
        XCTAssertEqual(errors(in: extraction.replacingOccurrences(of: "%@", with: "server")), [
            "tc.yaml:9:13: extract-trace-context.span 'server' must name a probe as pack/probe, e.g. go/net-http/server"
        ])
    }

    func testMistakesAreLocated() {
        XCTAssertEqual(errors(in: """
              - id: s
                function: f
                span: { kind: server, name: "s" }
                trace-context:
                  headers: { arg: req, path: Header, type: go-headers, case: upper }
            """), [
            "tc.yaml:10:48: unknown trace-context.headers.type 'go-headers'; expected one of: go-header-map, hpack-header-fields",
            "tc.yaml:10:66: unknown trace-context.headers.case 'upper'; expected one of: canonical, lower",
        ])
        XCTAssertEqual(errors(in: """
              - id: e
                function: f
                enrich: { span: go/example/s }
                trace-context:
                  headers: { arg: req, path: Header, type: go-header-map, case: canonical }
            """), ["tc.yaml:9:5: trace-context belongs to a span probe: it says where that span's request keeps its headers"])
        XCTAssertEqual(errors(in: """
              - id: w
                function: f
                inject-trace-context:
                  span: go/example/client
                  headers: { arg: h }
                  writer: { arg: w, path: "(*bufio.Writer)", buffer: buf }
                on-entry:
                  x: { arg: h, type: int }
            """), [
            "tc.yaml:11:15: inject-trace-context.writer is missing 'used'",
            "tc.yaml:12:5: an inject-trace-context probe makes no span, so it takes no 'on-entry'",
        ])
    }
}
