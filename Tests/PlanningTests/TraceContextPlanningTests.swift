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

    func testHeadersThatAreNotAHeaderMapAreRefused() throws {
        let pack = try PackLoader.parse(yaml: """
            format: sonde.probe-pack/v1
            pack: go/odd
            language: go
            library: { module: std, versions: ">=1.17" }
            probes:
              - id: server
                function: net/http.serverHandler.ServeHTTP
                span: { kind: server, name: "x" }
                trace-context:
                  headers: { arg: req, path: Method, type: go-header-map, case: canonical }
            """, file: "odd.yaml")
        let plan = PlanCompiler.compile(packs: [pack], facts: facts())
        XCTAssertEqual(plan.skipped.map(\.reason), [
            "trace-context.headers (odd.yaml:10:16): the headers have Go type string; a go-header-map is a map[string][]string such as net/http.Header",
        ])
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
