import XCTest

@testable import Exporters

final class BatchingConfigurationTests: XCTestCase {
    private func configurationError(_ environment: [String: String]) -> ExporterConfigurationError? {
        do {
            _ = try BatchingSpanProcessor.Configuration.fromEnvironment(environment)
            return nil
        } catch {
            return error
        }
    }

    func testEmptyOrBlankEnvironmentKeepsTheDefaults() throws {
        let blank = ["OTEL_BSP_SCHEDULE_DELAY": "", "OTEL_BSP_MAX_QUEUE_SIZE": " "]

        XCTAssertEqual(try BatchingSpanProcessor.Configuration.fromEnvironment([:]), BatchingSpanProcessor.Configuration())
        XCTAssertEqual(try BatchingSpanProcessor.Configuration.fromEnvironment(blank), BatchingSpanProcessor.Configuration())
    }

    func testBatchSpanProcessorVariablesAreRead() throws {
        let configuration = try BatchingSpanProcessor.Configuration.fromEnvironment([
            "OTEL_BSP_SCHEDULE_DELAY": "250", "OTEL_BSP_EXPORT_TIMEOUT": "4000",
            "OTEL_BSP_MAX_QUEUE_SIZE": "10000", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "1000",
        ])

        XCTAssertEqual(configuration.scheduleDelay, .milliseconds(250))
        XCTAssertEqual(configuration.exportTimeout, .milliseconds(4000))
        XCTAssertEqual(configuration.queueCapacity, 10_000)
        XCTAssertEqual(configuration.maxBatchSize, 1_000)
    }

    func testZeroExportTimeoutMeansNoLimit() throws {
        XCTAssertNil(try BatchingSpanProcessor.Configuration.fromEnvironment(["OTEL_BSP_EXPORT_TIMEOUT": "0"]).exportTimeout)
    }

    func testBatchLargerThanTheQueueIsRejected() {
        XCTAssertEqual(
            configurationError(["OTEL_BSP_MAX_QUEUE_SIZE": "100", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "200"]),
            ExporterConfigurationError(
                "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
                "200 is larger than the queue (OTEL_BSP_MAX_QUEUE_SIZE: 100); it must be at most that"))
        XCTAssertEqual(
            configurationError(["OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "4096"]),
            ExporterConfigurationError(
                "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
                "4096 is larger than the queue (OTEL_BSP_MAX_QUEUE_SIZE: 2048); it must be at most that"))
    }

    func testASmallQueueAloneAlsoShrinksTheDefaultBatch() throws {
        let configuration = try BatchingSpanProcessor.Configuration.fromEnvironment(["OTEL_BSP_MAX_QUEUE_SIZE": "100"])

        XCTAssertEqual(configuration.queueCapacity, 100)
        XCTAssertEqual(configuration.maxBatchSize, 100)
    }

    func testMalformedValuesNameTheVariableAndTheProblem() {
        let cases: [(variable: String, value: String, problem: String)] = [
            ("OTEL_BSP_SCHEDULE_DELAY", "1s", "'1s' is not a positive number of milliseconds"),
            ("OTEL_BSP_SCHEDULE_DELAY", "0", "'0' is not a positive number of milliseconds"),
            ("OTEL_BSP_EXPORT_TIMEOUT", "-1", "'-1' is not a number of milliseconds (0 for no limit)"),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "0", "'0' is not a positive number of spans"),
            ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "lots", "'lots' is not a positive number of spans"),
        ]
        for (variable, value, problem) in cases {
            XCTAssertEqual(configurationError([variable: value]), ExporterConfigurationError(variable, problem), value)
        }
    }
}
