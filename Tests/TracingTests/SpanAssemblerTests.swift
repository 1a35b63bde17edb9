import Planning
import ProbePacks
import Spans
import XCTest

@testable import Tracing

final class SpanAssemblerTests: XCTestCase {
    static func makePlan() throws -> AttachPlan {
        let pack = try PackLoader.parse(yaml: """
            format: sonde.probe-pack/v1
            pack: go/test
            language: go
            library: { module: std, versions: ">=1.17" }
            probes:
              - id: server
                function: main.serve
                span: { kind: server, name: "{method} {path}", error-when: { capture: status, at-least: 500 } }
                on-entry:
                  method: { arg: req, path: Method, type: go-string, max-length: 16 }
                  path: { arg: req, path: URL.Path, type: go-string }
                  host: { arg: req, path: Host, type: go-string, max-length: 64 }
                on-return:
                  status: { arg: rw, path: "(*main.rw).status", type: int, if-zero: 200 }
                attributes:
                  http.request.method: method
                  url.path: path
                  server.address: hostname(host)
                  server.port: port(host)
                  http.response.status_code: status
            """, file: "test.yaml")
        let slots = [
            CaptureSlot(name: "method", type: .goString, offset: 0, maxLength: 16, ifZero: nil, origin: "DWARF"),
            CaptureSlot(name: "path", type: .goString, offset: 24, maxLength: 128, ifZero: nil, origin: "DWARF"),
            CaptureSlot(name: "host", type: .goString, offset: 160, maxLength: 64, ifZero: nil, origin: "DWARF"),
            CaptureSlot(name: "status", type: .int, offset: 232, maxLength: 128, ifZero: 200, origin: "DWARF"),
        ]
        let site = ProbeSite(role: .entry, function: "main.serve", address: 0x1000, fileOffset: 0x1000, instruction: "nop", kernelEmulates: true, skipFlagsMask: 0)
        let probe = PlannedProbe(
            pack: "go/test", packVersion: ">=1.17", probe: pack.probes[0], spanSlot: 3, keyMode: .goroutine, entry: site, returns: [site],
            entryProgram: [], returnProgram: [], captureSlots: slots)
        return AttachPlan(binaryPath: "/srv/app", isPositionIndependent: false, goVersion: "go1.19", probes: [probe], skipped: [])
    }

    static func event(method: String, path: String, host: String, status: Int64?, slot: UInt32 = 3) -> SpanEvent {
        var data = [UInt8](repeating: 0xAA, count: 769)  // stale bytes must never leak into values
        func put(_ text: String, at offset: Int) {
            let bytes = Array(text.utf8)
            data[offset] = UInt8(bytes.count)
            data[offset + 1] = 0
            data.replaceSubrange((offset + 2)..<(offset + 2 + bytes.count), with: bytes)
        }
        put(method, at: 0)
        put(path, at: 24)
        put(host, at: 160)
        var mask: UInt32 = 0b0111
        if let status {
            withUnsafeBytes(of: status.littleEndian) { data.replaceSubrange(232..<240, with: $0) }
            mask |= 0b1000
        }
        return SpanEvent(
            traceIDHigh: 0x0102_0304_0506_0708, traceIDLow: 0x1112_1314_1516_1718, spanID: 0x2122_2324_2526_2728, parentSpanID: 0,
            startMonotonicNanos: 1_000, endMonotonicNanos: 2_500, callKey: 0xc000_0001, processID: 4242, spanSlot: slot,
            failedReads: 0, stoppedEarly: status == nil, capturedMask: mask, data: data)
    }

    func assembler() throws -> SpanAssembler {
        let clock = WallClock(fixed: ClockOffset(realtimeMinusMonotonic: 1_700_000_000_000_000_000))
        return try SpanAssembler(plan: Self.makePlan(), clock: clock)
    }

    /// Plans configured side by side carry their slot base in the kernel's span slots: an
    /// assembler takes its own plan's events and no other's.
    func testSlotBaseSelectsThePlansOwnEvents() throws {
        let plan = try Self.makePlan()
        let assembler = SpanAssembler(plan: plan, slotBase: 40, clock: WallClock(fixed: ClockOffset(realtimeMinusMonotonic: 0)))
        let own = try XCTUnwrap(assembler.assemble(Self.event(method: "GET", path: "/a", host: "h:1", status: 200, slot: 43)))
        XCTAssertEqual(own.name, "GET /a")
        XCTAssertNil(assembler.assemble(Self.event(method: "GET", path: "/a", host: "h:1", status: 200, slot: 3)), "another plan's slot 3")
        XCTAssertNil(assembler.assemble(Self.event(method: "GET", path: "/a", host: "h:1", status: 200, slot: 39)), "below the base")
    }

    /// A string the BPF program cut at its bound carries the flag in its length and ends in "…";
    /// bytes that are not UTF-8 become U+FFFD, never something else.
    func testTruncatedAndNonUTF8StringsAreMarked() throws {
        var event = Self.event(method: "GET", path: String(repeating: "a", count: 128), host: "h:1", status: 200)
        event.data[25] |= 0x80   // the path's u16 length: 128 | truncated
        event.data[27] = 0xff    // not UTF-8
        let span = try XCTUnwrap(try assembler().assemble(event))
        let path = try XCTUnwrap(span.attributes.first { $0.key == "url.path" }?.value)
        XCTAssertEqual(path, .string("a\u{FFFD}" + String(repeating: "a", count: 126) + "…"))
        XCTAssertEqual(span.name, "GET a\u{FFFD}" + String(repeating: "a", count: 126) + "…")
    }

    func testServerSpanFromEvent() throws {
        let span = try XCTUnwrap(try assembler().assemble(Self.event(method: "GET", path: "/items/7", host: "localhost:8080", status: 404)))
        XCTAssertEqual(span.name, "GET /items/7")
        XCTAssertEqual(span.kind, .server)
        XCTAssertEqual(span.traceID.description, "01020304050607081112131415161718")
        XCTAssertEqual(span.spanID.description, "2122232425262728")
        XCTAssertNil(span.parentSpanID)
        XCTAssertEqual(span.startTimeUnixNano, 1_700_000_000_000_001_000)
        XCTAssertEqual(span.endTimeUnixNano, 1_700_000_000_000_002_500)
        XCTAssertEqual(span.attributes, [
            Attribute("http.request.method", .string("GET")),
            Attribute("url.path", .string("/items/7")),
            Attribute("server.address", .string("localhost")),
            Attribute("server.port", .int(8080)),
            Attribute("http.response.status_code", .int(404)),
        ])
        XCTAssertEqual(span.status, .unset)
        XCTAssertEqual(span.resource.attributes, ["process.pid": .int(4242)])
        XCTAssertEqual(span.scope.name, "sonde/go/test")
    }

    func testImplicitStatusAndServerErrors() throws {
        let implicit = try XCTUnwrap(try assembler().assemble(Self.event(method: "GET", path: "/", host: "[::1]:9000", status: 0)))
        XCTAssertEqual(implicit.attribute("http.response.status_code"), .int(200))
        XCTAssertEqual(implicit.attribute("server.address"), .string("::1"))
        XCTAssertEqual(implicit.attribute("server.port"), .int(9000))
        let failed = try XCTUnwrap(try assembler().assemble(Self.event(method: "POST", path: "/fail", host: "example", status: 503)))
        XCTAssertEqual(failed.status, .error(message: "status 503"))
        XCTAssertEqual(failed.attribute("server.address"), .string("example"))
        XCTAssertNil(failed.attribute("server.port"))
    }

    func testCapturesNotTakenAreLeftOut() throws {
        let span = try XCTUnwrap(try assembler().assemble(Self.event(method: "GET", path: "/h2", host: "", status: nil)))
        XCTAssertNil(span.attribute("http.response.status_code"))
        XCTAssertNil(span.attribute("server.address"))
        XCTAssertEqual(span.status, .unset)
    }

    func testUnknownSlotIsRejected() throws {
        XCTAssertNil(try assembler().assemble(Self.event(method: "GET", path: "/", host: "", status: 200, slot: 9)))
    }

    func testURLExpressionAndNonZeroErrors() {
        let values: CapturedValues = [
            "scheme": .string("http"), "host": .string("127.0.0.1:80"), "path": .string("/a"), "query": .string("x=1"),
            "empty": .string(""), "failure": .int(0x7f00_1000),
        ]
        XCTAssertEqual(SpanAssembler.evaluate(.url(scheme: "scheme", host: "host", path: "path", query: "query"), values), .string("http://127.0.0.1:80/a?x=1"))
        XCTAssertEqual(SpanAssembler.evaluate(.url(scheme: "scheme", host: "host", path: "path", query: "empty"), values), .string("http://127.0.0.1:80/a"))
        XCTAssertNil(SpanAssembler.evaluate(.url(scheme: "scheme", host: "empty", path: "path", query: "query"), values))
        XCTAssertEqual(SpanAssembler.failure(ErrorCondition(capture: "failure", test: .nonZero), values), "failure set")
        XCTAssertNil(SpanAssembler.failure(ErrorCondition(capture: "failure", test: .atLeast(Int64.max)), values))
        XCTAssertNil(SpanAssembler.failure(ErrorCondition(capture: "absent", test: .nonZero), values))
    }

    func testEnrichmentAddsRouteAndRenamesOnlyWhenRouteWasRead() throws {
        var plan = try Self.makePlan()
        plan.probes[0].captureSlots.append(CaptureSlot(name: "route", type: .goString, offset: 240, maxLength: 128, ifZero: nil, origin: "DWARF"))
        plan.probes[0].enrichments = [EnrichmentRule(
            source: "go/router/route", attributes: [AttributeRule(key: "http.route", value: .capture("route"))],
            rename: NameTemplate(parts: [.capture("method"), .literal(" "), .capture("route")]))]
        let assembler = SpanAssembler(plan: plan, clock: WallClock(fixed: ClockOffset(realtimeMinusMonotonic: 0)))

        var routed = Self.event(method: "GET", path: "/items/7", host: "h:1", status: 200)
        let route = Array("/items/{id}".utf8)
        routed.data.replaceSubrange(240..<(242 + route.count), with: [UInt8(route.count), 0] + route)
        routed.capturedMask |= 1 << 4
        let span = try XCTUnwrap(assembler.assemble(routed))
        XCTAssertEqual(span.name, "GET /items/{id}")
        XCTAssertEqual(span.attribute("http.route"), .string("/items/{id}"))

        let unrouted = try XCTUnwrap(assembler.assemble(Self.event(method: "GET", path: "/nothing", host: "h:1", status: 404)))
        XCTAssertEqual(unrouted.name, "GET /nothing")
        XCTAssertNil(unrouted.attribute("http.route"))
    }

    /// An end-span (or enrich) probe's error-when fails the span it ends, on its own captures.
    func testEnrichmentErrorConditionsFailTheTargetSpan() throws {
        var plan = try Self.makePlan()
        plan.probes[0].captureSlots.append(CaptureSlot(name: "code", type: .int32, offset: 240, maxLength: 0, ifZero: nil, origin: "DWARF"))
        plan.probes[0].enrichments = [EnrichmentRule(
            source: "go/grpc/stream-client-end", attributes: [AttributeRule(key: "rpc.grpc.status_code", value: .capture("code"))],
            rename: nil, errorWhen: [ErrorCondition(capture: "code", test: .atLeast(1))], endsSpan: true)]
        let assembler = SpanAssembler(plan: plan, clock: WallClock(fixed: ClockOffset(realtimeMinusMonotonic: 0)))

        func ended(code: UInt8) -> SpanEvent {
            var record = Self.event(method: "GET", path: "/watch", host: "h:1", status: 200)
            record.data.replaceSubrange(240..<244, with: [code, 0, 0, 0])
            record.capturedMask |= 1 << 4 | SpanEvent.endedByObjectProbe
            return record
        }
        let cancelled = try XCTUnwrap(assembler.assemble(ended(code: 1)))
        XCTAssertEqual(cancelled.status, .error(message: "code 1"))
        XCTAssertEqual(cancelled.attribute("rpc.grpc.status_code"), .int(1))
        XCTAssertEqual(try XCTUnwrap(assembler.assemble(ended(code: 0))).status, .unset)
        // Ended at its call's return instead (the stream never opened): the end probe's rules do not apply.
        var atReturn = ended(code: 1)
        atReturn.capturedMask &= ~SpanEvent.endedByObjectProbe
        let unopened = try XCTUnwrap(assembler.assemble(atReturn))
        XCTAssertEqual(unopened.status, .unset)
        XCTAssertNil(unopened.attribute("rpc.grpc.status_code"))
    }

    func testGRPCExpressionsLiteralsAndAbsentDefaults() {
        let values: CapturedValues = ["method": .string("/grpc.health.v1.Health/Check"), "bare": .string("Ping")]
        XCTAssertEqual(SpanAssembler.evaluate(.rpcService(of: "method"), values), .string("grpc.health.v1.Health"))
        XCTAssertEqual(SpanAssembler.evaluate(.rpcMethod(of: "method"), values), .string("Check"))
        XCTAssertNil(SpanAssembler.evaluate(.rpcService(of: "bare"), values))
        XCTAssertEqual(SpanAssembler.evaluate(.rpcMethod(of: "bare"), values), .string("Ping"))
        let odd: CapturedValues = ["nested": .string("/pkg/ünïcode.Svc/Dö"), "slash": .string("/"), "empty": .string("")]
        XCTAssertEqual(SpanAssembler.evaluate(.rpcService(of: "nested"), odd), .string("pkg/ünïcode.Svc"), "the last slash splits")
        XCTAssertEqual(SpanAssembler.evaluate(.rpcMethod(of: "nested"), odd), .string("Dö"))
        XCTAssertNil(SpanAssembler.evaluate(.rpcMethod(of: "slash"), odd))
        XCTAssertNil(SpanAssembler.evaluate(.rpcMethod(of: "empty"), odd))
        XCTAssertEqual(CompiledAttribute(AttributeRule(key: "rpc.system", value: .literal("grpc")), names: []).literal, .string("grpc"))
        XCTAssertNil(CompiledAttribute(AttributeRule(key: "rpc.system", value: .literal("grpc")), names: []).expression)
        XCTAssertEqual(
            SpanAssembler.name(NameTemplate(parts: [.expression(.rpcService(of: "method")), .literal("/"), .expression(.rpcMethod(of: "method"))]), values),
            "grpc.health.v1.Health/Check")

        var code = CaptureSlot(name: "code", type: .int32, offset: 0, maxLength: 128, ifZero: nil, origin: "DWARF")
        code.ifAbsent = 0
        let event = SpanEvent(
            traceIDHigh: 1, traceIDLow: 1, spanID: 1, parentSpanID: 0, startMonotonicNanos: 0, endMonotonicNanos: 0, callKey: 0,
            processID: 1, spanSlot: 0, failedReads: 0, stoppedEarly: true, capturedMask: 0, data: [UInt8](repeating: 0x55, count: 16))
        XCTAssertEqual(CaptureDecoder.decode(event, layouts: [CaptureLayout(code)], names: ["code"])["code"], .int(0))
    }

    /// One span's expressions share what they parsed of a capture (a method path for rpc.service,
    /// rpc.method and the name; a host for hostname and port), never what another capture held.
    func testExpressionsOfOneSpanParseEachCaptureForItself() {
        var values: CapturedValues = [
            "method": .string("/grpc.health.v1.Health/Check"), "other": .string("/shop.Cart/Add"),
            "host": .string("shop:8443"), "peer": .string("[::1]:50051"),
        ]
        func evaluate(_ expression: ValueExpression) -> AttributeValue? {
            SpanAssembler.evaluate(CompiledExpression(expression, names: values.names)!, &values)
        }
        XCTAssertEqual(
            [.rpcService(of: "method"), .rpcMethod(of: "other"), .rpcMethod(of: "method"), .rpcService(of: "other")].map(evaluate),
            [.string("grpc.health.v1.Health"), .string("Add"), .string("Check"), .string("shop.Cart")])
        XCTAssertEqual(
            [.hostname(of: "host"), .port(of: "peer"), .port(of: "host"), .hostname(of: "peer")].map(evaluate),
            [.string("shop"), .int(50051), .int(8443), .string("::1")])
    }

    /// A record ends with its last capture: a string is read when its bytes are there, whatever
    /// its slot's bound, and a capture cut off by the record's end is absent, never read past it.
    func testCapturesAreReadUpToTheEndOfAShortRecord() {
        let path = CaptureSlot(name: "path", type: .goString, offset: 0, maxLength: 6, ifZero: nil, origin: "DWARF")
        let status = CaptureSlot(name: "status", type: .int, offset: 8, maxLength: 0, ifZero: nil, origin: "DWARF")
        func values(_ data: [UInt8]) -> [AttributeValue?] {
            let event = SpanEvent(
                traceIDHigh: 1, traceIDLow: 1, spanID: 1, parentSpanID: 0, startMonotonicNanos: 0, endMonotonicNanos: 0, callKey: 0,
                processID: 1, spanSlot: 0, failedReads: 0, stoppedEarly: false, capturedMask: 0b11, data: data)
            let decoded = CaptureDecoder.decode(event, layouts: [CaptureLayout(path), CaptureLayout(status)], names: ["path", "status"])
            return [decoded["path"], decoded["status"]]
        }
        let whole: [UInt8] = [2, 0, 0x2f, 0x61, 0, 0, 0, 0, 200, 0, 0, 0, 0, 0, 0, 0]
        XCTAssertEqual(values(whole), [.string("/a"), .int(200)])
        XCTAssertEqual(values(Array(whole.prefix(4))), [.string("/a"), nil])
        XCTAssertEqual(values(Array(whole.prefix(3))), [nil, nil])
    }

    /// grpc-go's status.Code(err): the status's code, UNKNOWN (2) for an error that carries no
    /// status (an interceptor's), OK (0) for no error, nothing when the error was not read.
    func testGRPCStatusFollowsStatusCodeOfTheCallsError() {
        let status = ValueExpression.grpcStatus(code: "code", error: "call-error")
        XCTAssertEqual(SpanAssembler.evaluate(status, ["code": .int(5), "call-error": .bool(true)]), .int(5))
        XCTAssertEqual(SpanAssembler.evaluate(status, ["call-error": .bool(true)]), .int(2))
        XCTAssertEqual(SpanAssembler.evaluate(status, ["call-error": .bool(false)]), .int(0))
        XCTAssertNil(SpanAssembler.evaluate(status, [:]))
    }

    func testHostPortParsing() {
        XCTAssertEqual(HostPort("a.example:80"), HostPort(host: "a.example", port: 80))
        XCTAssertEqual(HostPort("a.example"), HostPort(host: "a.example", port: nil))
        XCTAssertEqual(HostPort("[2001:db8::1]:443"), HostPort(host: "2001:db8::1", port: 443))
        XCTAssertEqual(HostPort("2001:db8::1"), HostPort(host: "2001:db8::1", port: nil))
        XCTAssertEqual(HostPort("h:1"), HostPort(host: "h", port: 1))
        XCTAssertEqual(HostPort("h:65535"), HostPort(host: "h", port: 65535))
        XCTAssertEqual(HostPort("h:00080"), HostPort(host: "h", port: 80))
        XCTAssertNil(HostPort(""))
    }

    /// A Host header is whatever the client sent: only 1…65535 written in digits is a port.
    func testHostPortIgnoresPortsThatAreNotDigitsOrOutOfRange() {
        for text in ["h:-5", "h:+80", "h:0", "h:65536", "h:99999999999999999999", "h:8a", "h:", "h: 80", "h:٨٠"] {
            XCTAssertEqual(HostPort(text), HostPort(host: "h", port: nil), text)
        }
        for text in ["[::1]:-1", "[::1]:0", "[::1]:+443", "[::1]:", "[::1]x"] {
            XCTAssertEqual(HostPort(text), HostPort(host: "::1", port: nil), text)
        }
    }

    func testHostHeaderWithNegativePortKeepsTheAddressButNoPort() throws {
        let span = try XCTUnwrap(try assembler().assemble(Self.event(method: "GET", path: "/", host: "h:-5", status: 200)))

        XCTAssertEqual(span.attributes, [
            Attribute("http.request.method", .string("GET")),
            Attribute("url.path", .string("/")),
            Attribute("server.address", .string("h")),
            Attribute("http.response.status_code", .int(200)),
        ])
    }

    func testHostHeaderWithOutOfRangePortKeepsTheAddressButNoPort() throws {
        let span = try XCTUnwrap(try assembler().assemble(Self.event(method: "GET", path: "/", host: "[::1]:70000", status: 200)))

        XCTAssertEqual(span.attributes, [
            Attribute("http.request.method", .string("GET")),
            Attribute("url.path", .string("/")),
            Attribute("server.address", .string("::1")),
            Attribute("http.response.status_code", .int(200)),
        ])
    }
}

/// Captures by name, for testing expressions without a record.
/// The pack's own forms, compiled against the captures at hand, as a recipe compiles them.
extension SpanAssembler {
    static func failure(_ condition: ErrorCondition, _ values: CapturedValues) -> String? {
        failure(CompiledCondition(condition, names: values.names), values)
    }

    static func name(_ template: NameTemplate, _ values: CapturedValues) -> String {
        var values = values
        return filledIn(CompiledName(template, names: values.names), &values, whenIncomplete: "?")!
    }

    static func evaluate(_ expression: ValueExpression, _ values: CapturedValues) -> AttributeValue? {
        var values = values
        return evaluate(CompiledExpression(expression, names: values.names)!, &values)
    }
}

extension CapturedValues: ExpressibleByDictionaryLiteral {
    public init(dictionaryLiteral elements: (String, AttributeValue)...) {
        self.init(names: elements.map(\.0), values: elements.map(\.1))
    }
}

extension SpanAssemblerTests {
    func testURLSchemeFollowsTheTLSState() {
        func scheme(_ tls: AttributeValue?) -> AttributeValue? {
            SpanAssembler.evaluate(.urlScheme(tls: "tls"), CapturedValues(names: ["tls"], values: [tls]))
        }
        XCTAssertEqual(scheme(.bool(true)), .string("https"))
        XCTAssertEqual(scheme(.bool(false)), .string("http"))
        XCTAssertNil(scheme(nil), "not read: left out")
    }

    /// W3C trace context lets a tracestate lose list members from its end, never part of one.
    func testATraceStateCutAtItsBoundKeepsItsWholeMembers() {
        XCTAssertEqual(SpanAssembler.wholeMembers(of: "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"), "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7")
        XCTAssertEqual(SpanAssembler.wholeMembers(of: "congo=t61rcWkgMzE,rojo=00f0…"), "congo=t61rcWkgMzE")
        XCTAssertEqual(SpanAssembler.wholeMembers(of: "congo=t61rc…"), "")
    }
}

extension SpanAssembler {
    /// The span with the resource a session gives each process: its pid.
    func assemble(_ event: SpanEvent) -> Span? {
        assemble(event, resource: Resource(attributes: ["process.pid": .int(Int64(event.processID))]))
    }
}
