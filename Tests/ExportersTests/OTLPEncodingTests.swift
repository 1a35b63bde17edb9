import Foundation
import Spans
import XCTest

@testable import Exporters

final class OTLPEncodingTests: XCTestCase {
    private func decodedRequest(
        for spans: [Span], configuration: OTLPExporterConfiguration = OTLPExporterConfiguration()
    ) throws -> OTLPExportRequest {
        let body = try OTLPHTTPExporter(configuration: configuration).requestBody(for: spans)
        return try OTLPExportRequest(serializedBytes: body)
    }

    func testEverySpanFieldIsMapped() throws {
        let request = try decodedRequest(for: [makeServerSpan()])

        XCTAssertEqual(request.resourceSpans.count, 1)
        let resourceSpans = request.resourceSpans[0]
        XCTAssertEqual(resourceSpans.resource.attributes, [
            OTLPKeyValue(key: "process.pid", value: .int(4242)),
            OTLPKeyValue(key: "service.name", value: .string("hello-server")),
        ])
        XCTAssertEqual(resourceSpans.scopeSpans.count, 1)
        XCTAssertEqual(resourceSpans.scopeSpans[0].scope.name, "go/net-http")
        XCTAssertEqual(resourceSpans.scopeSpans[0].scope.version, "1.0.0")
        XCTAssertEqual(resourceSpans.scopeSpans[0].spans.count, 1)

        let span = resourceSpans.scopeSpans[0].spans[0]
        XCTAssertEqual(span.traceID, Data([0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36]))
        XCTAssertEqual(span.spanID, Data([0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]))
        XCTAssertEqual(span.parentSpanID, Data())
        XCTAssertEqual(span.name, "GET /hello")
        XCTAssertEqual(span.kind, .server)
        XCTAssertEqual(span.startTimeUnixNano, 1_700_000_000_000_000_000)
        XCTAssertEqual(span.endTimeUnixNano, 1_700_000_000_001_234_567)
        var int = OTLPAnyValue(), double = OTLPAnyValue(), bool = OTLPAnyValue(), method = OTLPAnyValue(), path = OTLPAnyValue()
        method.stringValue = "GET"
        path.stringValue = "/hello"
        int.intValue = 200
        double.doubleValue = 0.25
        bool.boolValue = true
        XCTAssertEqual(span.attributes.map(\.key), [
            "http.request.method", "url.path", "http.response.status_code", "sonde.sample_ratio", "sonde.go.goroutine_reused",
        ])
        XCTAssertEqual(span.attributes.map(\.value), [method, path, int, double, bool])
        XCTAssertEqual(span.status.code, .unset)
        XCTAssertEqual(span.status.message, "")
        XCTAssertEqual(span.traceState, "")
        XCTAssertEqual(span.droppedAttributesCount, 0)
    }

    /// The hand-written encoder against swift-protobuf: decoded, its bytes are the expected request
    /// field for field, and they are the very bytes swift-protobuf writes for that request (fields
    /// in number order, defaults left out, oneof members and statuses written even when empty).
    func testEncodedRequestIsTheExpectedMessageFieldForField() throws {
        var server = makeServerSpan()
        server.attributes += [
            Attribute("edge.empty", .string("")), Attribute("edge.zero", .int(0)), Attribute("edge.negative", .int(-1)),
            Attribute("edge.false", .bool(false)), Attribute("edge.zero_double", .double(0)),
            Attribute("edge.long", .string(String(repeating: "é", count: 10_000))),  // a length of 3 varint bytes
        ]
        var client = makeClientSpan()
        client.parentIsRemote = true  // continued from a traceparent, with its tracestate
        client.traceState = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"
        var internalSpan = makeServerSpan()
        internalSpan.spanID = SpanID(0xffff_ffff_ffff_ffff)
        internalSpan.kind = .internal
        internalSpan.status = .ok
        internalSpan.attributes = []
        internalSpan.scope = InstrumentationScope(name: "go/grpc", version: "")
        var otherProcess = makeServerSpan()
        otherProcess.kind = .consumer
        otherProcess.startTimeUnixNano = 0
        otherProcess.resource = Resource(attributes: ["service.name": .string("other"), "process.pid": .int(7)])

        let body = OTLPTraceEncoder().encode([server, client, internalSpan, otherProcess])

        let traceID = Data([0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36])
        let serverSpanID = Data([0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7])
        func span(
            _ spanID: Data, parent: Data = Data(), name: String, _ kind: OTLPSpan.SpanKind, start: UInt64, end: UInt64,
            _ attributes: [OTLPKeyValue], _ code: OTLPStatus.StatusCode = .unset, message: String = "", traceState: String = ""
        ) -> OTLPSpan {
            var span = OTLPSpan()
            span.traceState = traceState
            // Sampled (W3C flag 0x01); a span with a parent says whether it is remote (0x100, 0x200).
            span.flags = parent.isEmpty ? 0x1 : traceState.isEmpty ? 0x101 : 0x301
            span.traceID = traceID
            span.spanID = spanID
            span.parentSpanID = parent
            span.name = name
            span.kind = kind
            span.startTimeUnixNano = start
            span.endTimeUnixNano = end
            span.attributes = attributes
            span.status.code = code
            span.status.message = message
            return span
        }
        func attribute(_ key: String, _ set: (inout OTLPAnyValue) -> Void) -> OTLPKeyValue {
            var keyValue = OTLPKeyValue()
            keyValue.key = key
            set(&keyValue.value)
            return keyValue
        }
        func scopeSpans(_ name: String, _ version: String, _ spans: [OTLPSpan]) -> OTLPScopeSpans {
            var scopeSpans = OTLPScopeSpans()
            scopeSpans.scope.name = name
            scopeSpans.scope.version = version
            scopeSpans.spans = spans
            return scopeSpans
        }
        func resourceSpans(_ attributes: [OTLPKeyValue], _ scopes: [OTLPScopeSpans]) -> OTLPResourceSpans {
            var resourceSpans = OTLPResourceSpans()
            resourceSpans.resource.attributes = attributes
            resourceSpans.scopeSpans = scopes
            return resourceSpans
        }
        let serverAttributes = [
            attribute("http.request.method") { $0.stringValue = "GET" },
            attribute("url.path") { $0.stringValue = "/hello" },
            attribute("http.response.status_code") { $0.intValue = 200 },
            attribute("sonde.sample_ratio") { $0.doubleValue = 0.25 },
            attribute("sonde.go.goroutine_reused") { $0.boolValue = true },
        ]
        var expected = OTLPExportRequest()
        expected.resourceSpans = [
            resourceSpans(
                [attribute("process.pid") { $0.intValue = 4242 }, attribute("service.name") { $0.stringValue = "hello-server" }],
                [
                    scopeSpans("go/net-http", "1.0.0", [
                        span(serverSpanID, name: "GET /hello", .server, start: 1_700_000_000_000_000_000, end: 1_700_000_000_001_234_567,
                             serverAttributes + [
                                attribute("edge.empty") { $0.stringValue = "" },
                                attribute("edge.zero") { $0.intValue = 0 },
                                attribute("edge.negative") { $0.intValue = -1 },
                                attribute("edge.false") { $0.boolValue = false },
                                attribute("edge.zero_double") { $0.doubleValue = 0 },
                                attribute("edge.long") { $0.stringValue = String(repeating: "é", count: 10_000) },
                             ]),
                        span(Data([0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88]), parent: serverSpanID, name: "POST", .client,
                             start: 1_700_000_000_000_100_000, end: 1_700_000_000_000_600_000,
                             [attribute("server.address") { $0.stringValue = "backend:8080" }], .error, message: "connection refused",
                             traceState: "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"),
                    ]),
                    scopeSpans("go/grpc", "", [
                        span(Data(repeating: 0xff, count: 8), name: "GET /hello", .internal, start: 1_700_000_000_000_000_000,
                             end: 1_700_000_000_001_234_567, [], .ok),
                    ]),
                ]),
            resourceSpans(
                [attribute("process.pid") { $0.intValue = 7 }, attribute("service.name") { $0.stringValue = "other" }],
                [scopeSpans("go/net-http", "1.0.0", [
                    span(serverSpanID, name: "GET /hello", .consumer, start: 0, end: 1_700_000_000_001_234_567, serverAttributes),
                ])]),
        ]
        XCTAssertEqual(try OTLPExportRequest(serializedBytes: body), expected)
        XCTAssertEqual(body, try expected.serializedBytes() as [UInt8])
    }

    /// Each message's length is written before its fields, from its size worked out first: across
    /// every length where a length's varint grows from one byte to two (127/128 bytes) in a
    /// `KeyValue`, a `Span`, a `ScopeSpans` and a `ResourceSpans`, the bytes are swift-protobuf's
    /// and hold the values written.
    func testMessageLengthsAroundTheOneToTwoByteVarintBoundary() throws {
        for length in 0..<300 {
            var span = makeServerSpan()
            span.attributes = [Attribute("url.path", .string(String(repeating: "p", count: length)))]
            span.name = String(repeating: "n", count: length % 7)
            span.resource = Resource(attributes: ["service.name": .string(String(repeating: "s", count: length / 2))])
            var client = makeClientSpan()
            client.resource = span.resource
            let body = OTLPTraceEncoder().encode([span, client])

            let request = try OTLPExportRequest(serializedBytes: body)
            XCTAssertEqual(body, try request.serializedBytes() as [UInt8], "url.path of \(length) bytes")
            XCTAssertEqual(request.resourceSpans.map(\.resource.attributes.first?.value.stringValue.count), [length / 2])
            XCTAssertEqual(request.resourceSpans.first?.scopeSpans.first?.spans.map(\.attributes.first?.value.stringValue.count), [length, 12])
        }
    }

    func testParentAndErrorStatusAreMapped() throws {
        let span = try decodedRequest(for: [makeClientSpan()]).resourceSpans[0].scopeSpans[0].spans[0]

        XCTAssertEqual(span.parentSpanID, Data([0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]))
        XCTAssertEqual(span.kind, .client)
        XCTAssertEqual(span.status.code, .error)
        XCTAssertEqual(span.status.message, "connection refused")
    }

    func testEverySpanKindAndOkStatusAreMapped() throws {
        let spans = SpanKind.allCases.map { kind in
            var span = makeServerSpan()
            span.kind = kind
            span.status = .ok
            return span
        }
        let encoded = try decodedRequest(for: spans).resourceSpans[0].scopeSpans[0].spans

        XCTAssertEqual(encoded.map(\.kind), [.internal, .server, .client, .producer, .consumer])
        XCTAssertEqual(Set(encoded.map(\.status.code)), [.ok])
    }

    func testSpansAreGroupedByResourceThenScopeInOrderOfAppearance() throws {
        let otherResource = Resource(attributes: ["service.name": .string("other")])
        let otherScope = InstrumentationScope(name: "go/grpc", version: "2")
        var first = makeServerSpan(), secondResource = makeServerSpan(), otherScopeSpan = makeServerSpan(), last = makeServerSpan()
        first.name = "first"
        secondResource.name = "other resource"
        secondResource.resource = otherResource
        otherScopeSpan.name = "other scope"
        otherScopeSpan.scope = otherScope
        last.name = "last"

        let request = try decodedRequest(for: [first, secondResource, otherScopeSpan, last])

        XCTAssertEqual(request.resourceSpans.count, 2)
        XCTAssertEqual(request.resourceSpans[0].scopeSpans.map(\.scope.name), ["go/net-http", "go/grpc"])
        XCTAssertEqual(request.resourceSpans[0].scopeSpans.map { $0.spans.map(\.name) }, [["first", "last"], ["other scope"]])
        XCTAssertEqual(request.resourceSpans[1].resource.attributes, [OTLPKeyValue(key: "service.name", value: .string("other"))])
        XCTAssertEqual(request.resourceSpans[1].scopeSpans.map { $0.spans.map(\.name) }, [["other resource"]])
    }

    /// Resources group by what they say however each was made: one built apart with the same
    /// attributes joins the first group; one changed after it was made (two processes' spans
    /// interleaved, as one sonde per machine exports them) gets its own, and equals the first
    /// again once changed back.
    func testResourcesAreGroupedByTheirAttributesHoweverEachWasMade() throws {
        var first = makeServerSpan(), rebuilt = makeServerSpan(), otherProcess = makeServerSpan(), last = makeServerSpan()
        first.name = "first"
        rebuilt.name = "rebuilt"
        rebuilt.resource = Resource(attributes: Dictionary(uniqueKeysWithValues: first.resource.attributes.map { ($0.key, $0.value) }))
        otherProcess.name = "other process"
        otherProcess.resource.attributes["process.pid"] = .int(7)
        last.name = "last"

        let request = try decodedRequest(for: [first, otherProcess, rebuilt, otherProcess, last])

        XCTAssertEqual(request.resourceSpans.map { $0.scopeSpans.map { $0.spans.map(\.name) } }, [
            [["first", "rebuilt", "last"]], [["other process", "other process"]],
        ])
        XCTAssertEqual(request.resourceSpans[1].resource.attributes, [
            OTLPKeyValue(key: "process.pid", value: .int(7)), OTLPKeyValue(key: "service.name", value: .string("hello-server")),
        ])
        XCTAssertNotEqual(otherProcess.resource, first.resource)
        XCTAssertEqual(otherProcess.resource, Resource(attributes: ["service.name": .string("hello-server"), "process.pid": .int(7)]))
        otherProcess.resource.attributes["process.pid"] = .int(4242)
        XCTAssertEqual(otherProcess.resource, first.resource)
        XCTAssertEqual(Set([otherProcess.resource, first.resource, rebuilt.resource]).count, 1)
    }

    func testEnvironmentResourceAttributesAndServiceNameOverrideTheSpanResource() throws {
        let configuration = OTLPExporterConfiguration(
            serviceName: "checkout", resourceAttributes: ["deployment.environment": "staging", "process.pid": "1"])

        let resource = try decodedRequest(for: [makeServerSpan()], configuration: configuration).resourceSpans[0].resource

        XCTAssertEqual(resource.attributes, [
            OTLPKeyValue(key: "deployment.environment", value: .string("staging")),
            OTLPKeyValue(key: "process.pid", value: .string("1")),
            OTLPKeyValue(key: "service.name", value: .string("checkout")),
        ])
    }

    func testGzipBodyDecompressesToTheProtobufRequest() throws {
        let spans = makeNumberedSpans(50)
        let plain = try OTLPHTTPExporter(configuration: OTLPExporterConfiguration()).requestBody(for: spans)
        let gzipExporter = OTLPHTTPExporter(configuration: OTLPExporterConfiguration(compression: .gzip))

        let first = try gzipExporter.requestBody(for: spans)
        let second = try gzipExporter.requestBody(for: Array(spans.prefix(3)))

        XCTAssertEqual(Array(first.prefix(2)), [0x1f, 0x8b], "gzip magic")
        XCTAssertLessThan(first.count, plain.count / 2)
        XCTAssertEqual(try gunzip(Data(first)), Data(plain))
        XCTAssertEqual(try gunzip(Data(second)), Data(try OTLPHTTPExporter(configuration: OTLPExporterConfiguration()).requestBody(for: Array(spans.prefix(3)))))
    }

    /// Decompresses with the system's gzip tool, an implementation independent of Sonde's.
    private func gunzip(_ data: Data) throws -> Data {
        let directory = FileManager.default.temporaryDirectory
        let file = directory.appendingPathComponent("sonde-\(UUID().uuidString).gz")
        try data.write(to: file)
        defer { try? FileManager.default.removeItem(at: file) }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["gzip", "-dc", file.path]
        let output = Pipe()
        process.standardOutput = output
        try process.run()
        let decompressed = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 0, "gzip -d failed")
        return decompressed
    }
}
