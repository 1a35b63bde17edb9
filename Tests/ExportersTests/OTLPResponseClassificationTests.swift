import Foundation
import Spans
import XCTest

@testable import Exporters

final class OTLPResponseClassificationTests: XCTestCase {
    private let exporter = OTLPHTTPExporter(configuration: OTLPExporterConfiguration(endpoint: URL(string: "http://collector:4318/v1/traces")!))

    private func outcome(status: Int, body: [UInt8] = []) -> SpanExportError? {
        do {
            try exporter.checkResponse(status: status, body: body)
            return nil
        } catch {
            return error
        }
    }

    func testSuccessWithEmptyOrForeignBodies() {
        XCTAssertNil(outcome(status: 200))
        XCTAssertNil(outcome(status: 202, body: Array("ok".utf8)))
    }

    func testPartialSuccessReportsTheRejectedSpans() throws {
        var response = Opentelemetry_Proto_Collector_Trace_V1_ExportTraceServiceResponse()
        response.partialSuccess.rejectedSpans = 3
        response.partialSuccess.errorMessage = "attribute too long"

        XCTAssertEqual(
            outcome(status: 200, body: try response.serializedBytes()),
            .partiallyRejected(count: 3, reason: "attribute too long"))
        response.partialSuccess.rejectedSpans = 0
        XCTAssertNil(outcome(status: 200, body: try response.serializedBytes()), "a message without rejected spans is a success")
    }

    /// The exporter reads the response by hand (OTLPExportResponse.swift): fields it does not know,
    /// of every wire type, are skipped; a `partial_success` sent twice is merged field by field.
    func testResponsesAreReadPastUnknownFieldsAndMerged() {
        let body: [UInt8] = [
            0x10, 0xAC, 0x02,                                   // field 2, varint 300 (unknown)
            0x19, 1, 2, 3, 4, 5, 6, 7, 8,                       // field 3, fixed64 (unknown)
            0x0A, 0x09,                                         // partial_success, 9 bytes:
            0x08, 0x07,                                         //   rejected_spans 7
            0x25, 1, 2, 3, 4,                                   //   field 4, fixed32 (unknown)
            0x30, 0x01,                                         //   field 6, varint (unknown)
            0x22, 0x00,                                         // field 4, empty bytes (unknown)
            0x0A, 0x05, 0x12, 0x03, 0x62, 0x61, 0x64,           // partial_success again: error_message "bad"
        ]
        let response = OTLPExportResponse(serializedBytes: body)
        XCTAssertEqual(response?.rejectedSpans, 7)
        XCTAssertEqual(response?.errorMessage, "bad")
        XCTAssertEqual(outcome(status: 200, body: body), .partiallyRejected(count: 7, reason: "bad"))
    }

    /// A body that is no protobuf message is no partial success: the export succeeded.
    func testMalformedResponsesAreSuccesses() {
        let malformed: [String: [UInt8]] = [
            "a length past the end": [0x0A, 0x05, 0x08, 0x07],
            "a varint cut short": [0x0A, 0x02, 0x08, 0x87],
            "a varint longer than 64 bits": [0x08] + [UInt8](repeating: 0xFF, count: 9) + [0x02],
            "a group (wire type 3)": [0x0B, 0x0C],
            "field number 0": [0x00, 0x01],
            "a fixed64 cut short": [0x09, 1, 2, 3],
        ]
        for (what, body) in malformed {
            XCTAssertNil(OTLPExportResponse(serializedBytes: body), what)
            XCTAssertNil(outcome(status: 200, body: body), what)
        }
        let longestVarint = OTLPExportResponse(serializedBytes: [0x0A, 0x0B, 0x08] + [UInt8](repeating: 0xFF, count: 9) + [0x01])
        XCTAssertEqual(longestVarint?.rejectedSpans, -1, "the longest varint: all 64 bits")
    }

    func testThrottlingAndGatewayErrorsAreRetryable() {
        for status in [429, 502, 503, 504] {
            XCTAssertEqual(outcome(status: status), .retryable(reason: "HTTP \(status) from http://collector:4318/v1/traces"))
        }
    }

    func testRetryAfterInSecondsOrAsAnHTTPDateIsPassedOn() {
        let now = Date(timeIntervalSince1970: 1_700_000_000)  // Tue, 14 Nov 2023 22:13:20 GMT
        func retryAfter(status: Int, header: String?) -> Duration? {
            do {
                try exporter.checkResponse(status: status, retryAfter: header, body: [], now: now)
                return nil
            } catch {
                return error.retryAfter
            }
        }

        XCTAssertEqual(retryAfter(status: 429, header: "7"), .seconds(7))
        XCTAssertEqual(retryAfter(status: 503, header: " 120 "), .seconds(120))
        XCTAssertEqual(retryAfter(status: 503, header: "Tue, 14 Nov 2023 22:13:50 GMT"), .seconds(30))
        XCTAssertEqual(retryAfter(status: 503, header: "Tuesday, 14-Nov-23 22:13:25 GMT"), .seconds(5))
        XCTAssertEqual(retryAfter(status: 429, header: "Tue Nov 14 22:13:21 2023"), .seconds(1))
        XCTAssertEqual(retryAfter(status: 503, header: "Tue, 14 Nov 2023 22:00:00 GMT"), .zero, "a date already passed")
        XCTAssertNil(retryAfter(status: 503, header: nil))
        XCTAssertNil(retryAfter(status: 503, header: "-3"))
        XCTAssertNil(retryAfter(status: 503, header: "soon"))
        XCTAssertNil(retryAfter(status: 400, header: "7"), "a permanent failure is not retried at all")
    }

    func testTransportErrorsAreRetriedUnlessTLSOrTheClientIsAtFault() {
        let endpoint = "http://collector:4318/v1/traces"
        XCTAssertEqual(
            exporter.classify(transportError: .unreachable("connecting failed: Connection refused")),
            .retryable(reason: "cannot reach \(endpoint): connecting failed: Connection refused"))
        XCTAssertEqual(
            exporter.classify(transportError: .timedOut),
            .retryable(reason: "no answer from \(endpoint) within 10 s (OTEL_EXPORTER_OTLP_TIMEOUT)"))
        XCTAssertEqual(
            exporter.classify(transportError: .tls("SSL certificate problem: self-signed certificate")),
            .rejected(reason: "TLS failed with \(endpoint): SSL certificate problem: self-signed certificate"))
        XCTAssertEqual(
            exporter.classify(transportError: .notHTTP("the reply does not start with an HTTP/1 status line: SSH-2.0")),
            .rejected(reason: "\(endpoint) did not answer with HTTP: the reply does not start with an HTTP/1 status line: SSH-2.0"))
        XCTAssertEqual(
            exporter.classify(transportError: .unusable("https:// endpoints need libcurl")),
            .rejected(reason: "cannot send to \(endpoint): https:// endpoints need libcurl"))
    }

    func testOtherErrorsAreRejectedWithTheReadablePartOfTheBody() {
        for status in [400, 401, 403, 404, 413, 500] {
            XCTAssertEqual(outcome(status: status), .rejected(reason: "HTTP \(status) from http://collector:4318/v1/traces"))
        }
        XCTAssertEqual(
            outcome(status: 400, body: Array("\u{8}\u{3}\u{12}\u{10}invalid  token\n".utf8)),
            .rejected(reason: "HTTP 400 from http://collector:4318/v1/traces: invalid token"))
    }
}
