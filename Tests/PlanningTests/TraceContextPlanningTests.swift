import BinaryAnalysis
import Foundation
import Planning
import ProbePacks
import XCTest

/// W3C trace context in the plan: the program that reaches a request's headers before its span
/// starts, the header layout of the binary's Go release, and what outgoing propagation adds.
extension PlanCompilerTests {
    /// net/http's server probe and its finishRequest ender, from the shipped pack.
    private func shippedServer() throws -> ProbePack {
        var pack = try PackLoader.load(file: Self.shippedPackFile)
        pack.probes = pack.probes.filter { $0.id == "server" }
        return pack
    }

    func testServerSpanReadsItsRequestsHeadersBeforeItStarts() throws {
        let plan = PlanCompiler.compile(packs: [try shippedServer()], facts: facts())
        let server = try XCTUnwrap(plan.probes.first)
        XCTAssertEqual(server.contextProgram, [.loadRegister(.rdi), .add(56), .dereference], "req.Header, a map pointer")
        let traceState = try XCTUnwrap(server.captureSlots.last)
        XCTAssertEqual(traceState.name, CaptureSlot.traceStateName)
        XCTAssertEqual([traceState.offset, traceState.maxLength], [240, 96], "after the probe's own captures")
        XCTAssertEqual(server.contextAction, .extract(HeaderExtraction(
            layout: .goMap(.buckets), traceparent: "Traceparent", tracestate: "Tracestate", traceState: traceState, setsCarrier: false)))
        XCTAssertFalse(server.writesTargetMemory)
    }

    /// The server's entry reads Method, URL, Host and TLS of the request, and its trace-context
    /// program the Header pointer: five reads within the first 240 bytes of the `*Request` in RDI,
    /// which the entry reads in one go.
    func testTheServersEntryPrefetchesTheRequest() throws {
        let plan = PlanCompiler.compile(packs: [try shippedServer()], facts: facts())
        XCTAssertEqual(plan.probes.first?.prefetch, Prefetch(register: .rdi, length: 240, reads: 5))
    }

    func testAPrefetchNeedsThreeReadsInsideItsBlock() {
        let strings: [FetchOp] = [
            .loadRegister(.rbx), .readGoString(into: 0, maxLength: 16),
            .loadRegister(.rbx), .add(40), .readGoString(into: 24, maxLength: 16),
        ]
        XCTAssertNil(Prefetch.choose(for: [strings]), "two reads: the block would save one")
        XCTAssertEqual(
            Prefetch.choose(for: [strings, [.loadRegister(.rbx), .add(8), .dereference, .add(16), .dereference]]),
            Prefetch(register: .rbx, length: 56, reads: 3), "the second dereference starts from a loaded pointer, not RBX")
        XCTAssertNil(
            Prefetch.choose(for: [strings, [.loadRegister(.rbx), .add(300), .readInteger(size: 8, into: 48)]]),
            "past the block's 256 bytes")
        XCTAssertEqual(
            Prefetch.choose(for: [strings, [.loadRegister(.rbx), .save(slot: 0), .add(248), .readInteger(size: 8, into: 48)]]),
            Prefetch(register: .rbx, length: 256, reads: 3), "saving keeps the value")
        XCTAssertNil(
            Prefetch.choose(for: [strings, [.loadRegister(.rbx), .add(248), .readInteger(size: 4, into: 48)]]),
            "only 8-byte integers come from the block")
    }

    /// A client request's entry: its method in the `*Request` (RBX), and four string headers in the
    /// `*url.URL` whose pointer is 16 bytes into it. The `*url.URL` is read as a second block.
    func testAPointerThatThreeReadsStartFromIsASecondBlock() {
        let url: [FetchOp] = [.loadRegister(.rbx), .add(16), .dereference]
        let client: [[FetchOp]] = [
            [.loadRegister(.rbx), .readGoString(into: 0, maxLength: 16)],
            url + [.readGoString(into: 24, maxLength: 16)],
            url + [.add(40), .readGoString(into: 48, maxLength: 64)],
            url + [.add(56), .readGoString(into: 120, maxLength: 128)],
            url + [.add(96), .readGoString(into: 256, maxLength: 64)],
            [.loadRegister(.rbx), .add(56), .dereference, .add(8), .dereference],
        ]
        XCTAssertEqual(
            Prefetch.choose(for: client),
            Prefetch(register: .rbx, length: 64, reads: 6, object: Prefetch.ObjectBlock(pointerOffset: 16, length: 112, reads: 4)),
            "RBX+56 leads to one read only: no block there")
        XCTAssertEqual(
            Prefetch.choose(for: [client[0], client[1], client[2], [.loadRegister(.rbx), .add(300), .dereference, .add(8), .dereference]]),
            Prefetch(register: .rbx, length: 24, reads: 3), "two reads at the URL are too few for a block")
        let pastTheBlock: [FetchOp] = [.loadRegister(.rbx), .add(8), .save(slot: 0), .add(292), .dereference]
        XCTAssertNil(
            Prefetch.choose(for: [
                client[0], client[1], client[2],
                pastTheBlock + [.readGoString(into: 0, maxLength: 8)], pastTheBlock + [.add(16), .readGoString(into: 16, maxLength: 8)],
                pastTheBlock + [.add(32), .readGoString(into: 32, maxLength: 8)],
            ])?.object,
            "three reads at the pointer at RBX+300, which the first block (24 bytes) does not hold")
        XCTAssertNil(
            Prefetch.choose(for: [client[0], client[1], url + [.add(8), .dereference, .add(8), .dereference, .add(8), .dereference]])?.object,
            "the URL's string header and one pointer in it: the reads through that pointer are no reads of the URL")
    }

    func testGo124AndLaterSearchSwissTables() throws {
        let plan = PlanCompiler.compile(packs: [try shippedServer()], facts: facts(goVersion: "go1.27.3"))
        guard case .extract(let extraction)? = plan.probes.first?.contextAction else { return XCTFail("\(plan)") }
        XCTAssertEqual(extraction.layout, .goMap(.swiss))
    }

    func testMapLayoutFollowsTheGoRelease() {
        XCTAssertEqual(
            ["go1.19.8", "go1.23.9", "go1.24.0", "go1.27.3", "go1.24.1 X:noswissmap", "devel +abc"].map { GoMapLayout(goVersion: $0) },
            [.buckets, .buckets, .swiss, .swiss, .buckets, nil])
    }

    /// A std pack `go/odd` in `odd.yaml` with these probes (indented as under `probes:`).
    private func oddPack(_ probes: String) throws -> ProbePack {
        try PackLoader.parse(yaml: """
            format: sonde.probe-pack/v1
            pack: go/odd
            language: go
            library: { module: std, versions: ">=1.17" }
            probes:
            \(probes)
            """, file: "odd.yaml")
    }

    func testHeadersThatAreNotAHeaderMapAreRefused() throws {
        let pack = try oddPack("""
              - id: server
                function: net/http.serverHandler.ServeHTTP
                span: { kind: server, name: "x" }
                trace-context:
                  headers: { arg: req, path: Method, type: go-header-map, case: canonical }
            """)
        let plan = PlanCompiler.compile(packs: [pack], facts: facts())
        XCTAssertEqual(plan.skipped.map(\.reason), [
            "trace-context.headers (odd.yaml:10:16): the headers have Go type string; a go-header-map is a map[string][]string such as net/http.Header",
        ])
    }

    /// An extraction elsewhere (grpc's transport) names the span that continues it: that span
    /// keeps the remote parent's tracestate after its own captures.
    func testTheSpanAnExtractionNamesKeepsTheTracestate() throws {
        let pack = try oddPack("""
              - id: headers
                function: net/http.serverHandler.ServeHTTP
                extract-trace-context:
                  span: go/odd/server
                  headers: { arg: req, path: Header, type: go-header-map, case: canonical }
              - id: server
                function: net/http.serverHandler.ServeHTTP
                span: { kind: server, name: "x" }
                on-entry:
                  method: { arg: req, path: Method, type: go-string, max-length: 16 }
              - id: elsewhere
                function: net/http.serverHandler.ServeHTTP
                extract-trace-context:
                  span: go/absent/server
                  headers: { arg: req, path: Header, type: go-header-map, case: canonical }
            """)
        let plan = PlanCompiler.compile(packs: [pack], facts: facts())
        XCTAssertEqual(plan.probes.map(\.probe.id), ["server", "headers"])
        let server = plan.probes[0]
        XCTAssertEqual(server.captureSlots.map(\.name), ["method", CaptureSlot.traceStateName])
        let traceState = server.captureSlots[1]
        XCTAssertEqual([traceState.offset, traceState.maxLength], [24, 96], "after method's 2 + 16 bytes, aligned")
        XCTAssertEqual(server.contextAction, .keepRemoteTraceState(traceState))
        XCTAssertEqual(server.contextProgram, [])
        XCTAssertEqual(plan.probes[1].contextAction, .extract(HeaderExtraction(
            layout: .goMap(.buckets), traceparent: "Traceparent", tracestate: "Tracestate", traceState: nil)))
        XCTAssertEqual(plan.skipped.map(\.reason), ["its trace context is continued by go/absent/server, which is not planned for this binary"])
    }

    /// Without outgoing propagation nothing writes to the traced process and no client span waits
    /// to be written; incoming trace context is still read.
    func testDroppingInjectionLeavesExtraction() throws {
        let extraction = HeaderExtraction(layout: .goMap(.swiss), traceparent: "Traceparent", tracestate: "Tracestate", traceState: nil, setsCarrier: true)
        let site = ProbeSite(role: .entry, function: "f", address: 1, fileOffset: 1, instruction: "jbe", kernelEmulates: true, skipFlagsMask: 0)
        func probe(_ id: String, _ action: TraceContextAction) -> PlannedProbe {
            let source = SourceLocation(file: "p.yaml", line: 1, column: 1)
            var planned = PlannedProbe(
                pack: "go/p", packVersion: "", probe: Probe(id: id, function: "f", span: nil, onEntry: [], onReturn: [], attributes: [], source: source),
                spanSlot: 0, keyMode: .goroutine, entry: site, returns: [], entryProgram: [], returnProgram: [], captureSlots: [])
            planned.contextAction = action
            return planned
        }
        let plan = AttachPlan(
            binaryPath: "/srv/app", isPositionIndependent: false, goVersion: "go1.27.3",
            probes: [probe("client", .extract(extraction)), probe("writer", .injectHeaderLine(name: "Traceparent", bufferOffset: 16, usedOffset: 40))],
            skipped: [])
        XCTAssertTrue(plan.injectsTraceContext)
        let dropped = plan.droppingTraceContextInjection()
        XCTAssertFalse(dropped.injectsTraceContext)
        XCTAssertEqual(dropped.probes.map(\.probe.id), ["client"])
        var readOnly = extraction
        readOnly.setsCarrier = false
        XCTAssertEqual(dropped.probes[0].contextAction, .extract(readOnly))
    }
}
