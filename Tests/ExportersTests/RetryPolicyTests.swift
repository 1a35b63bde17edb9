import Spans
import XCTest

@testable import Exporters

final class RetryPolicyTests: XCTestCase {
    private let unavailable = SpanExportError.retryable(reason: "HTTP 503 from http://collector:4318/v1/traces")

    /// Backoff 100 ms doubling up to 1 s, Retry-After bounded at 30 s.
    private func policy(jitter: RetryPolicy.Jitter = .none, maxAttempts: Int = 10) -> RetryPolicy {
        RetryPolicy(
            maxAttempts: maxAttempts, initialBackoff: .milliseconds(100), maxBackoff: .milliseconds(1_000),
            jitter: jitter, maxRetryAfter: .seconds(30))
    }

    private func decision(
        _ policy: RetryPolicy, after error: SpanExportError? = nil, attempt: Int, timeLeft: Duration? = nil,
        random: Double = 0
    ) -> RetryPolicy.Decision {
        policy.decision(after: error ?? unavailable, attempt: attempt, timeLeft: timeLeft, randomFraction: random)
    }

    func testBackoffDoublesUpToTheCap() {
        let waits = (1...7).map { decision(policy(), attempt: $0, random: 0.5) }

        XCTAssertEqual(waits, [100, 200, 400, 800, 1_000, 1_000, 1_000].map { .retry(after: .milliseconds($0)) })
    }

    func testBackoffDoesNotOverflowAfterManyAttempts() {
        XCTAssertEqual(decision(policy(maxAttempts: 1_000), attempt: 200), .retry(after: .milliseconds(1_000)))
    }

    func testFullJitterSpreadsTheWholeBackoff() {
        XCTAssertEqual(decision(policy(jitter: .full), attempt: 3, random: 0), .retry(after: .zero))
        XCTAssertEqual(decision(policy(jitter: .full), attempt: 3, random: 0.25), .retry(after: .milliseconds(100)))
        XCTAssertEqual(decision(policy(jitter: .full), attempt: 9, random: 0.5), .retry(after: .milliseconds(500)))
    }

    func testEqualJitterKeepsAtLeastHalfTheBackoff() {
        XCTAssertEqual(decision(policy(jitter: .equal), attempt: 3, random: 0), .retry(after: .milliseconds(200)))
        XCTAssertEqual(decision(policy(jitter: .equal), attempt: 3, random: 0.5), .retry(after: .milliseconds(300)))
        XCTAssertEqual(decision(policy(jitter: .equal), attempt: 9, random: 0.999), .retry(after: .nanoseconds(999_500_000)))
    }

    func testOutOfRangeRandomnessIsClamped() {
        XCTAssertEqual(decision(policy(jitter: .full), attempt: 1, random: 7), .retry(after: .milliseconds(100)))
        XCTAssertEqual(decision(policy(jitter: .full), attempt: 1, random: -1), .retry(after: .zero))
        XCTAssertEqual(decision(policy(jitter: .full), attempt: 1, random: .nan), .retry(after: .zero))
    }

    func testRetryAfterReplacesTheBackoffAndIsBounded() {
        let throttled = SpanExportError.retryable(reason: "HTTP 429", retryAfter: .seconds(7))
        let throttledForAnHour = SpanExportError.retryable(reason: "HTTP 429", retryAfter: .seconds(3_600))
        let alreadyPassed = SpanExportError.retryable(reason: "HTTP 503", retryAfter: .seconds(-5))

        XCTAssertEqual(decision(policy(jitter: .full), after: throttled, attempt: 1), .retry(after: .seconds(7)))
        XCTAssertEqual(decision(policy(), after: throttledForAnHour, attempt: 1), .retry(after: .seconds(30)))
        XCTAssertEqual(decision(policy(), after: alreadyPassed, attempt: 1), .retry(after: .zero))
    }

    func testPermanentFailuresAreNeverRetried() {
        for failure in [SpanExportError.rejected(reason: "HTTP 400"), .partiallyRejected(count: 1, reason: "bad")] {
            XCTAssertEqual(decision(policy(), after: failure, attempt: 1), .stop(.permanentFailure))
        }
    }

    func testGivesUpAfterMaxAttempts() {
        XCTAssertEqual(decision(policy(maxAttempts: 3), attempt: 2), .retry(after: .milliseconds(200)))
        XCTAssertEqual(decision(policy(maxAttempts: 3), attempt: 3), .stop(.attemptsExhausted))
    }

    func testGivesUpWhenTheWaitWouldPassTheExportDeadline() {
        let throttled = SpanExportError.retryable(reason: "HTTP 429", retryAfter: .seconds(7))

        XCTAssertEqual(decision(policy(), after: throttled, attempt: 1, timeLeft: .seconds(5)), .stop(.exportTimeoutReached))
        XCTAssertEqual(decision(policy(), attempt: 1, timeLeft: .milliseconds(150)), .retry(after: .milliseconds(100)))
        XCTAssertEqual(decision(policy(), attempt: 2, timeLeft: .milliseconds(150)), .stop(.exportTimeoutReached))
    }

    func testDefaultsUseEqualJitterWithACap() {
        let defaults = RetryPolicy()

        XCTAssertEqual(defaults.jitter, .equal)
        XCTAssertEqual(defaults.maxBackoff, .seconds(5))
        XCTAssertEqual(defaults.maxRetryAfter, .seconds(30))
    }
}
