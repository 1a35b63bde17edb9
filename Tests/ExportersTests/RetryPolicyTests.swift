import Spans
import XCTest

@testable import Exporters

final class RetryPolicyTests: XCTestCase {
    private let unavailable = SpanExportError.retryable(reason: "HTTP 503 from http://collector:4318/v1/traces")

    private func policy(jitter: RetryPolicy.Jitter = .none, maxAttempts: Int = 10) -> RetryPolicy {
        RetryPolicy(
            maxAttempts: maxAttempts, initialBackoff: .milliseconds(100), maxBackoff: .milliseconds(1_000), jitter: jitter,
            maxRetryAfter: .seconds(30))
    }

    func testBackoffDoublesUpToTheCap() {
        let delays = (1...7).map { policy().decision(after: unavailable, attempt: $0, timeLeft: nil, randomFraction: 0.5) }

        XCTAssertEqual(delays, [100, 200, 400, 800, 1_000, 1_000, 1_000].map { .retry(after: .milliseconds($0)) })
    }

    func testBackoffDoesNotOverflowAfterManyAttempts() {
        XCTAssertEqual(
            policy(maxAttempts: 1_000).decision(after: unavailable, attempt: 200, timeLeft: nil, randomFraction: 0.5),
            .retry(after: .milliseconds(1_000)))
    }

    func testFullJitterSpreadsTheWholeBackoff() {
        let full = policy(jitter: .full)

        XCTAssertEqual(full.decision(after: unavailable, attempt: 3, timeLeft: nil, randomFraction: 0), .retry(after: .zero))
        XCTAssertEqual(full.decision(after: unavailable, attempt: 3, timeLeft: nil, randomFraction: 0.25), .retry(after: .milliseconds(100)))
        XCTAssertEqual(full.decision(after: unavailable, attempt: 9, timeLeft: nil, randomFraction: 0.5), .retry(after: .milliseconds(500)))
    }

    func testEqualJitterKeepsAtLeastHalfTheBackoff() {
        let equal = policy(jitter: .equal)

        XCTAssertEqual(equal.decision(after: unavailable, attempt: 3, timeLeft: nil, randomFraction: 0), .retry(after: .milliseconds(200)))
        XCTAssertEqual(equal.decision(after: unavailable, attempt: 3, timeLeft: nil, randomFraction: 0.5), .retry(after: .milliseconds(300)))
        XCTAssertEqual(equal.decision(after: unavailable, attempt: 9, timeLeft: nil, randomFraction: 0.999), .retry(after: .nanoseconds(999_500_000)))
    }

    func testOutOfRangeRandomnessIsClamped() {
        XCTAssertEqual(policy(jitter: .full).decision(after: unavailable, attempt: 1, timeLeft: nil, randomFraction: 7), .retry(after: .milliseconds(100)))
        XCTAssertEqual(policy(jitter: .full).decision(after: unavailable, attempt: 1, timeLeft: nil, randomFraction: -1), .retry(after: .zero))
        XCTAssertEqual(policy(jitter: .full).decision(after: unavailable, attempt: 1, timeLeft: nil, randomFraction: .nan), .retry(after: .zero))
    }

    func testRetryAfterReplacesTheBackoffAndIsBounded() {
        let throttled = SpanExportError.retryable(reason: "HTTP 429", retryAfter: .seconds(7))
        let throttledForAnHour = SpanExportError.retryable(reason: "HTTP 429", retryAfter: .seconds(3_600))
        let alreadyPassed = SpanExportError.retryable(reason: "HTTP 503", retryAfter: .seconds(-5))

        XCTAssertEqual(policy(jitter: .full).decision(after: throttled, attempt: 1, timeLeft: nil, randomFraction: 0), .retry(after: .seconds(7)))
        XCTAssertEqual(policy().decision(after: throttledForAnHour, attempt: 1, timeLeft: nil, randomFraction: 0), .retry(after: .seconds(30)))
        XCTAssertEqual(policy().decision(after: alreadyPassed, attempt: 1, timeLeft: nil, randomFraction: 0), .retry(after: .zero))
    }

    func testPermanentFailuresAreNeverRetried() {
        for failure in [SpanExportError.rejected(reason: "HTTP 400"), .partiallyRejected(count: 1, reason: "bad")] {
            XCTAssertEqual(policy().decision(after: failure, attempt: 1, timeLeft: nil, randomFraction: 0), .stop(.permanentFailure))
        }
    }

    func testGivesUpAfterMaxAttempts() {
        XCTAssertEqual(policy(maxAttempts: 3).decision(after: unavailable, attempt: 2, timeLeft: nil, randomFraction: 0), .retry(after: .milliseconds(200)))
        XCTAssertEqual(policy(maxAttempts: 3).decision(after: unavailable, attempt: 3, timeLeft: nil, randomFraction: 0), .stop(.attemptsExhausted))
    }

    func testGivesUpWhenTheWaitWouldPassTheExportDeadline() {
        let throttled = SpanExportError.retryable(reason: "HTTP 429", retryAfter: .seconds(7))

        XCTAssertEqual(policy().decision(after: throttled, attempt: 1, timeLeft: .seconds(5), randomFraction: 0), .stop(.exportTimeoutReached))
        XCTAssertEqual(policy().decision(after: unavailable, attempt: 1, timeLeft: .milliseconds(150), randomFraction: 0), .retry(after: .milliseconds(100)))
        XCTAssertEqual(policy().decision(after: unavailable, attempt: 2, timeLeft: .milliseconds(150), randomFraction: 0), .stop(.exportTimeoutReached))
    }

    func testDefaultsUseEqualJitterWithACap() {
        let defaults = RetryPolicy()

        XCTAssertEqual(defaults.jitter, .equal)
        XCTAssertEqual(defaults.maxBackoff, .seconds(5))
        XCTAssertEqual(defaults.maxRetryAfter, .seconds(30))
    }
}
