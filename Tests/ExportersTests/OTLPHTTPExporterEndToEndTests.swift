import Foundation
import Spans
import XCTest

@testable import Exporters

/// The exporter against `Tests/Support/otlp_receiver.py`, which decodes with Python's
/// opentelemetry-proto: what Sonde sends must be valid OTLP by someone else's reading.
final class OTLPHTTPExporterEndToEndTests: XCTestCase {
    private func exporter(for receiver: OTLPReceiverProcess, environment: [String: String] = [:]) throws -> OTLPHTTPExporter {
        let configuration = try OTLPExporterConfiguration.fromEnvironment(
            ["OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:\(receiver.port)/"].merging(environment) { $1 })
        return OTLPHTTPExporter(configuration: configuration)
    }

    private let fastRetries = BatchingSpanProcessor.Configuration(
        scheduleDelay: .seconds(3600), retry: RetryPolicy(maxAttempts: 3, initialBackoff: .milliseconds(10)))

    func testReceiverDecodesEveryFieldAndTheConfiguredHeadersAndResource() async throws {
        let receiver = try OTLPReceiverProcess()
        let exporter = try exporter(for: receiver, environment: [
            "OTEL_EXPORTER_OTLP_HEADERS": "x-api-key=secret%20value, x-tenant = acme",
            "OTEL_SERVICE_NAME": "checkout",
            "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=staging",
        ])

        try await exporter.export([makeServerSpan(), makeClientSpan()])

        let spans = try receiver.receivedSpans()
        XCTAssertEqual(spans.count, 2)
        let server = try XCTUnwrap(spans.first)
        XCTAssertEqual(server["trace_id"] as? String, "4bf92f3577b34da6a3ce929d0e0e4736")
        XCTAssertEqual(server["span_id"] as? String, "00f067aa0ba902b7")
        XCTAssertEqual(server["parent_span_id"] as? String, "")
        XCTAssertEqual(server["name"] as? String, "GET /hello")
        XCTAssertEqual(server["kind"] as? String, "SPAN_KIND_SERVER")
        XCTAssertEqual((server["start_time_unix_nano"] as? NSNumber)?.uint64Value, 1_700_000_000_000_000_000)
        XCTAssertEqual((server["end_time_unix_nano"] as? NSNumber)?.uint64Value, 1_700_000_000_001_234_567)
        let attributes = try XCTUnwrap(server["attributes"] as? [String: Any])
        XCTAssertEqual(attributes["http.request.method"] as? String, "GET")
        XCTAssertEqual(attributes["url.path"] as? String, "/hello")
        XCTAssertEqual(attributes["http.response.status_code"] as? Int, 200)
        XCTAssertEqual(attributes["sonde.sample_ratio"] as? Double, 0.25)
        XCTAssertEqual(attributes["sonde.go.goroutine_reused"] as? Bool, true)
        XCTAssertEqual(server["status"] as? [String: String], ["code": "STATUS_CODE_UNSET", "message": ""])
        let resource = try XCTUnwrap(server["resource"] as? [String: Any])
        XCTAssertEqual(resource.count, 3)
        XCTAssertEqual(resource["service.name"] as? String, "checkout")
        XCTAssertEqual(resource["deployment.environment"] as? String, "staging")
        XCTAssertEqual(resource["process.pid"] as? Int, 4242, "process.pid is an int, as the resource conventions say")
        XCTAssertEqual(server["scope"] as? [String: String], ["name": "go/net-http", "version": "1.0.0"])
        let request = try XCTUnwrap(server["request"] as? [String: Any])
        XCTAssertEqual(request["path"] as? String, "/v1/traces")
        let headers = try XCTUnwrap(request["headers"] as? [String: String])
        XCTAssertEqual(headers["content-type"], "application/x-protobuf")
        XCTAssertEqual(headers["x-api-key"], "secret value")
        XCTAssertEqual(headers["x-tenant"], "acme")

        let client = try XCTUnwrap(spans.last)
        XCTAssertEqual(client["kind"] as? String, "SPAN_KIND_CLIENT")
        XCTAssertEqual(client["parent_span_id"] as? String, "00f067aa0ba902b7")
        XCTAssertEqual(client["status"] as? [String: String], ["code": "STATUS_CODE_ERROR", "message": "connection refused"])
    }

    func testServiceUnavailableIsRetriedUntilAccepted() async throws {
        let receiver = try OTLPReceiverProcess(arguments: ["--fail-first", "2", "--fail-status", "503"])
        let processor = BatchingSpanProcessor(exporter: try exporter(for: receiver), configuration: fastRetries)

        processor.submit(makeServerSpan())
        await processor.shutdown()

        XCTAssertEqual(processor.statistics, ExportStatistics(submitted: 1, exported: 1))
        let spans = try receiver.receivedSpans()
        XCTAssertEqual(spans.count, 1)
        XCTAssertEqual((spans.first?["request"] as? [String: Any])?["index"] as? Int, 2)
    }

    /// 429 and 503 with `Retry-After`: the next attempt waits as long as the backend asked, not
    /// the 10 ms backoff, and the batch is delivered.
    func testRetryAfterOfThrottlingAndUnavailableAnswersIsWaitedFor() async throws {
        for status in ["429", "503"] {
            let receiver = try OTLPReceiverProcess(arguments: ["--fail-first", "1", "--fail-status", status, "--retry-after", "1"])
            let processor = BatchingSpanProcessor(exporter: try exporter(for: receiver), configuration: fastRetries)

            processor.submit(makeServerSpan())
            await processor.shutdown()

            XCTAssertEqual(processor.statistics, ExportStatistics(submitted: 1, exported: 1), status)
            let request = try XCTUnwrap(try receiver.receivedSpans().first?["request"] as? [String: Any], status)
            XCTAssertEqual(request["index"] as? Int, 1, status)
            let waited = try XCTUnwrap(request["received_unix_nano"] as? UInt64) - (try XCTUnwrap(request["last_failure_unix_nano"] as? UInt64))
            XCTAssertGreaterThanOrEqual(waited, 1_000_000_000, "\(status): the retry came \(waited) ns after the failure")
        }
    }

    /// A collector that takes a second per request loses nothing: each batch waits for its answer.
    func testSlowCollectorGetsEveryBatch() async throws {
        let receiver = try OTLPReceiverProcess(arguments: ["--delay-ms", "1000"])
        var configuration = fastRetries
        configuration.maxBatchSize = 1
        let processor = BatchingSpanProcessor(exporter: try exporter(for: receiver), configuration: configuration)

        makeNumberedSpans(3).forEach(processor.submit)
        let completed = await processor.shutdown(timeout: .seconds(20))

        XCTAssertTrue(completed)
        XCTAssertEqual(processor.statistics, ExportStatistics(submitted: 3, exported: 3))
        let received = try receiver.receivedSpans()
        XCTAssertEqual(received.map { $0["name"] as? String }, ["span 1", "span 2", "span 3"])
        XCTAssertEqual(received.map { ($0["request"] as? [String: Any])?["index"] as? Int }, [0, 1, 2])
    }

    func testRejectedBatchIsDroppedWithoutRetry() async throws {
        let receiver = try OTLPReceiverProcess(arguments: ["--fail-first", "1", "--fail-status", "400"])
        let processor = BatchingSpanProcessor(exporter: try exporter(for: receiver), configuration: fastRetries)

        processor.submit(makeServerSpan())
        await processor.flush()
        processor.submit(makeClientSpan())
        await processor.shutdown()

        XCTAssertEqual(processor.statistics, ExportStatistics(
            submitted: 2, exported: 1, droppedExportFailed: 1, lastFailure: "HTTP 400 from http://127.0.0.1:\(receiver.port)/v1/traces"))
        let spans = try receiver.receivedSpans()
        XCTAssertEqual(spans.map { $0["name"] as? String }, ["POST"])
        XCTAssertEqual((spans.first?["request"] as? [String: Any])?["index"] as? Int, 1, "the rejected batch was sent once")
    }

    func testPartialSuccessRejectionsAreCountedAsDropped() async throws {
        let receiver = try OTLPReceiverProcess(arguments: ["--reject-spans", "1"])
        let processor = BatchingSpanProcessor(exporter: try exporter(for: receiver), configuration: fastRetries)

        processor.submit(makeServerSpan())
        processor.submit(makeClientSpan())
        await processor.shutdown()

        XCTAssertEqual(processor.statistics, ExportStatistics(
            submitted: 2, exported: 1, droppedExportFailed: 1, lastFailure: "1 spans rejected: rejected by --reject-spans"))
    }

    func testGzipCompressedRequestsAreDecodedByTheReceiver() async throws {
        let receiver = try OTLPReceiverProcess()
        let exporter = try exporter(for: receiver, environment: ["OTEL_EXPORTER_OTLP_COMPRESSION": "gzip"])

        try await exporter.export([makeServerSpan(), makeClientSpan()])

        let spans = try receiver.receivedSpans()
        XCTAssertEqual(spans.map { $0["name"] as? String }, ["GET /hello", "POST"])
        let headers = try XCTUnwrap((spans.first?["request"] as? [String: Any])?["headers"] as? [String: String])
        XCTAssertEqual(headers["content-encoding"], "gzip")
    }

    /// The OTLP timeout bounds each request, also below one second (URLSession on Linux rounds
    /// its own timeouts down to whole seconds, and a request's `timeoutInterval` is not used).
    func testTimeoutEndsARequestTheBackendNeverAnswers() async throws {
        let listener = try SilentListener()
        let configuration = try OTLPExporterConfiguration.fromEnvironment([
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:\(listener.port)", "OTEL_EXPORTER_OTLP_TIMEOUT": "100",
        ])
        let exporter = OTLPHTTPExporter(configuration: configuration)

        let started = ContinuousClock.now
        let export = Task { () -> (any Error)? in
            do {
                try await exporter.export([makeServerSpan()])
                return nil
            } catch {
                return error
            }
        }
        let watchdog = Task {
            try await Task.sleep(for: .seconds(5))
            export.cancel()
        }
        let error = await export.value
        watchdog.cancel()

        XCTAssertLessThan(ContinuousClock.now - started, .seconds(2), "the 100 ms timeout was not applied")
        XCTAssertEqual((error as? SpanExportError)?.isRetryable, true, "\(String(describing: error))")
    }

    /// The export timeout (OTEL_BSP_EXPORT_TIMEOUT) cuts a request short through the HTTP client's
    /// own deadline, not a timer racing it, with the same outcome: the batch is given up and counted.
    func testExportTimeoutShorterThanTheOTLPTimeoutGivesUpOnABackendThatNeverAnswers() async throws {
        let listener = try SilentListener()
        let exporter = OTLPHTTPExporter(configuration: OTLPExporterConfiguration(
            endpoint: URL(string: "http://127.0.0.1:\(listener.port)/v1/traces")!, timeout: .seconds(10)))
        let processor = BatchingSpanProcessor(exporter: exporter, configuration: BatchingSpanProcessor.Configuration(
            scheduleDelay: .seconds(3600), exportTimeout: .milliseconds(200)))

        let started = ContinuousClock.now
        processor.submit(makeServerSpan())
        let flushed = await processor.flush(timeout: .seconds(5))

        XCTAssertTrue(flushed)
        XCTAssertLessThan(ContinuousClock.now - started, .seconds(2), "the 200 ms export timeout was not applied")
        XCTAssertEqual(processor.statistics, ExportStatistics(
            submitted: 1, droppedExportFailed: 1, lastFailure: "export did not finish within 200 ms (OTEL_BSP_EXPORT_TIMEOUT)"))
        await processor.shutdown()
    }

    func testUntrustedCertificateIsDroppedWithoutRetry() async throws {
        let server = try SelfSignedTLSServer()
        let configuration = OTLPExporterConfiguration(endpoint: URL(string: "https://127.0.0.1:\(server.port)/v1/traces")!, timeout: .seconds(5))
        let exporter = RecordingFailures(OTLPHTTPExporter(configuration: configuration))
        let processor = BatchingSpanProcessor(exporter: exporter, configuration: fastRetries)

        processor.submit(makeServerSpan())
        await processor.shutdown()

        let attempts = await exporter.attempts
        XCTAssertEqual(attempts, 1, "a certificate problem is not retried")
        XCTAssertEqual(processor.statistics.droppedExportFailed, 1)
        let failure = try XCTUnwrap(processor.statistics.summary.split(separator: "last failure: ").last)
        XCTAssertTrue(failure.contains("certificate"), String(failure))
    }

    func testACertificateAuthorityFileMakesTheServerTrusted() async throws {
        let server = try SelfSignedTLSServer()
        var configuration = OTLPExporterConfiguration(endpoint: URL(string: "https://127.0.0.1:\(server.port)/v1/traces")!, timeout: .seconds(5))
        configuration.certificateFile = server.certificate

        try await OTLPHTTPExporter(configuration: configuration).export([makeServerSpan()])
    }

    func testMutualTLSPresentsTheClientCertificate() async throws {
        let server = try SelfSignedTLSServer(requiringClientCertificate: true)
        var configuration = OTLPExporterConfiguration(endpoint: URL(string: "https://127.0.0.1:\(server.port)/v1/traces")!, timeout: .seconds(5))
        configuration.certificateFile = server.certificate
        do {
            try await OTLPHTTPExporter(configuration: configuration).export([makeServerSpan()])
            XCTFail("a server requiring a client certificate accepted none")
        } catch {
            XCTAssertNotNil(error as? SpanExportError, "\(error)")
        }

        configuration.clientCertificateFile = server.certificate
        configuration.clientKeyFile = server.key
        try await OTLPHTTPExporter(configuration: configuration).export([makeServerSpan()])
    }

    func testPlainHTTPBackendBehindAnHTTPSURLIsNotRetried() async throws {
        let receiver = try OTLPReceiverProcess()
        let configuration = OTLPExporterConfiguration(endpoint: URL(string: "https://127.0.0.1:\(receiver.port)/v1/traces")!, timeout: .seconds(5))

        do {
            try await OTLPHTTPExporter(configuration: configuration).export([makeServerSpan()])
            XCTFail("TLS to a plain HTTP server succeeded")
        } catch {
            XCTAssertEqual((error as? SpanExportError)?.isRetryable, false, "\(error)")
        }
    }

    func testUnreachableEndpointIsRetryable() async throws {
        let configuration = OTLPExporterConfiguration(endpoint: URL(string: "http://127.0.0.1:1/v1/traces")!, timeout: .seconds(5))

        do {
            try await OTLPHTTPExporter(configuration: configuration).export([makeServerSpan()])
            XCTFail("export to a closed port succeeded")
        } catch {
            XCTAssertEqual((error as? SpanExportError)?.isRetryable, true, "\(error)")
        }
    }
}
