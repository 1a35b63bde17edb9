import Foundation
import Spans
import XCTest

@testable import Exporters

final class OTLPResponseClassificationTests: XCTestCase {
    private let exporter = OTLPHTTPExporter(configuration: OTLPExporterConfiguration(endpoint: URL(string: "http://collector:4318/v1/traces")!))

    private func outcome(status: Int, body: Data = Data()) -> SpanExportError? {
        do {
            try exporter.checkResponse(status: status, body: body)
            return nil
        } catch {
            return error
        }
    }

    func testSuccessWithEmptyOrForeignBodies() {
        XCTAssertNil(outcome(status: 200))
        XCTAssertNil(outcome(status: 202, body: Data("ok".utf8)))
    }

    func testPartialSuccessReportsTheRejectedSpans() throws {
        var response = OTLPExportResponse()
        response.partialSuccess.rejectedSpans = 3
        response.partialSuccess.errorMessage = "attribute too long"

        XCTAssertEqual(
            outcome(status: 200, body: try response.serializedData()),
            .partiallyRejected(count: 3, reason: "attribute too long"))
    }

    func testThrottlingAndGatewayErrorsAreRetryable() {
        for status in [429, 502, 503, 504] {
            XCTAssertEqual(outcome(status: status), .retryable(reason: "HTTP \(status) from http://collector:4318/v1/traces"))
        }
    }

    func testOtherErrorsAreRejectedWithTheReadablePartOfTheBody() {
        for status in [400, 401, 404, 413, 500] {
            XCTAssertEqual(outcome(status: status), .rejected(reason: "HTTP \(status) from http://collector:4318/v1/traces"))
        }
        XCTAssertEqual(
            outcome(status: 400, body: Data("\u{8}\u{3}\u{12}\u{10}invalid  token\n".utf8)),
            .rejected(reason: "HTTP 400 from http://collector:4318/v1/traces: invalid token"))
    }
}
