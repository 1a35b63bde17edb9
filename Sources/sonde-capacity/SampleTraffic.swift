import Foundation
import Planning
import ProbePacks
import SondeABI
import Spans

/// Span records as the net/http pack's server and client probes produce them, without a kernel:
/// the probes' captures laid out one after another as Planning lays them out, and records filled
/// in as the BPF program fills them.
struct SampleTraffic {
    /// The net/http server and client probes (probe-packs/go/net-http.yaml), kept here so that the
    /// workload stays the same while the shipped pack evolves and figures stay comparable.
    static let pack = """
        format: sonde.probe-pack/v1
        pack: go/net-http
        language: go
        library: { module: std, versions: ">=1.17" }
        probes:
          - id: server
            function: net/http.serverHandler.ServeHTTP
            span: { kind: server, name: "{method} {path}", error-when: { capture: status, at-least: 500 } }
            on-entry:
              method: { arg: req, path: Method, type: go-string, max-length: 16 }
              path:   { arg: req, path: URL.Path, type: go-string }
              host:   { arg: req, path: Host, type: go-string, max-length: 64 }
            on-return:
              status: { arg: rw, path: "(*net/http.response).status", type: int, if-zero: 200 }
            attributes:
              http.request.method: method
              url.path: path
              server.address: hostname(host)
              server.port: port(host)
              http.response.status_code: status
          - id: client
            function: net/http.(*Transport).roundTrip
            span:
              kind: client
              name: "{method}"
              error-when: [{ capture: status, at-least: 400 }, { capture: transport-error, not-zero: true }]
            on-entry:
              method: { arg: req, path: Method, type: go-string, max-length: 16 }
              scheme: { arg: req, path: URL.Scheme, type: go-string, max-length: 16 }
              host:   { arg: req, path: URL.Host, type: go-string, max-length: 64 }
              path:   { arg: req, path: URL.Path, type: go-string }
              query:  { arg: req, path: URL.RawQuery, type: go-string, max-length: 64 }
            on-return:
              status: { result: 0, path: StatusCode, type: int }
              transport-error: { result: 1, type: non-nil }
            attributes:
              http.request.method: method
              url.full: url(scheme, host, path, query)
              server.address: hostname(host)
              server.port: port(host)
              http.response.status_code: status
        """

    static let serverSlot: UInt32 = 1
    static let clientSlot: UInt32 = 2
    /// The capture area of one ring-buffer record (`sonde_span_record.data`).
    static let dataSize = MemoryLayout.size(ofValue: sonde_span_record().data)

    let plan: AttachPlan
    /// Distinct records replayed in turn; every second one is a client call of the server span before it.
    let events: [SpanEvent]

    init(distinctRecords: Int) throws {
        let pack = try PackLoader.parse(yaml: Self.pack, file: "sonde-capacity")
        let server = try Self.plannedProbe(pack, id: "server", slot: Self.serverSlot)
        let client = try Self.plannedProbe(pack, id: "client", slot: Self.clientSlot)
        plan = AttachPlan(
            binaryPath: "/srv/shop", isPositionIndependent: false, goVersion: "go1.22.5", probes: [server, client], skipped: [])

        var random = SystemRandomNumberGenerator()
        var events: [SpanEvent] = []
        for index in 0..<distinctRecords / 2 {
            let traceHigh = random.next() as UInt64, traceLow = random.next() as UInt64, serverSpan = random.next() as UInt64
            let start = 5_000_000_000 + UInt64(index) * 40_000
            let item = 10_000 + index
            let status: Int64 = index % 50 == 0 ? 503 : (index % 10 == 0 ? 404 : 0)  // 0: Go's implicit 200
            events.append(Self.event(
                server, slot: Self.serverSlot, trace: (traceHigh, traceLow), span: serverSpan, parent: 0,
                start: start, end: start + 35_000,
                values: ["method": .string(index % 4 == 0 ? "POST" : "GET"), "path": .string("/api/v1/items/\(item)"),
                         "host": .string("shop.internal:8080"), "status": .int(status)]))
            events.append(Self.event(
                client, slot: Self.clientSlot, trace: (traceHigh, traceLow), span: random.next(), parent: serverSpan,
                start: start + 5_000, end: start + 30_000,
                values: ["method": .string("GET"), "scheme": .string("http"), "host": .string("inventory:9090"),
                         "path": .string("/stock/\(item)"), "query": .string("warehouse=eu-1&fields=count"),
                         "status": .int(200), "transport-error": .int(0)]))
        }
        self.events = events
    }

    /// The probe with its captures in declaration order, each 8-byte aligned after the one before.
    private static func plannedProbe(_ pack: ProbePack, id: String, slot: UInt32) throws -> PlannedProbe {
        guard let probe = pack.probes.first(where: { $0.id == id }) else {
            throw CapacityError("no probe '\(id)' in \(pack.name)")
        }
        var offset = 0
        let slots = probe.captures.map { capture in
            var captureSlot = CaptureSlot(
                name: capture.name, type: capture.type, offset: offset, maxLength: capture.maxLength, ifZero: capture.ifZero,
                origin: "sample")
            captureSlot.ifAbsent = capture.ifAbsent
            offset = captureSlot.alignedEnd
            return captureSlot
        }
        let site = ProbeSite(
            role: .entry, function: probe.function, address: 0x40_0000, fileOffset: 0, instruction: "jbe", kernelEmulates: true,
            skipFlagsMask: 0)
        return PlannedProbe(
            pack: pack.name, packVersion: "\(pack.library.versions)", probe: probe, spanSlot: slot, keyMode: .goroutine,
            entry: site, returns: [site], entryProgram: [], returnProgram: [], captureSlots: slots)
    }

    /// A record whose captures hold `values` (strings with their two-byte length, integers little-endian).
    private static func event(
        _ probe: PlannedProbe, slot: UInt32, trace: (UInt64, UInt64), span: UInt64, parent: UInt64, start: UInt64, end: UInt64,
        values: [String: AttributeValue]
    ) -> SpanEvent {
        var data = [UInt8](repeating: 0, count: dataSize)
        var mask: UInt32 = 0
        for (index, captureSlot) in probe.captureSlots.enumerated() {
            guard let value = values[captureSlot.name] else { continue }
            mask |= 1 << UInt32(index)
            switch value {
            case .string(let text):
                let bytes = Array(text.utf8.prefix(captureSlot.maxLength))
                data[captureSlot.offset] = UInt8(bytes.count)
                data.replaceSubrange((captureSlot.offset + 2)..<(captureSlot.offset + 2 + bytes.count), with: bytes)
            case .int(let number):
                withUnsafeBytes(of: number.littleEndian) {
                    data.replaceSubrange(captureSlot.offset..<(captureSlot.offset + 8), with: $0)
                }
            case .double, .bool:
                preconditionFailure("the net/http pack captures strings and integers")
            }
        }
        return SpanEvent(
            traceIDHigh: trace.0, traceIDLow: trace.1, spanID: span, parentSpanID: parent, startMonotonicNanos: start,
            endMonotonicNanos: end, callKey: 0xc000_1000, processID: 4242, spanSlot: slot, failedReads: 0, stoppedEarly: false,
            capturedMask: mask, data: data)
    }
}

struct CapacityError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) {
        self.description = description
    }
}
