/// How often and how patiently a batch is retried after a failure: a pure value, so every
/// decision can be checked with chosen randomness and time.
///
/// Follows OTLP/HTTP: only retryable failures (HTTP 429, 502, 503, 504, unreachable backend) are
/// retried; a `Retry-After` the backend sent replaces the backoff; otherwise the wait grows
/// exponentially, capped and jittered so that many agents failing together do not retry in step.
public struct RetryPolicy: Sendable, Equatable {
    /// How the exponential backoff is randomised (see "Exponential Backoff And Jitter", AWS
    /// Architecture Blog, 2015).
    public enum Jitter: Sendable, Equatable {
        /// Exactly the backoff.
        case none
        /// Uniform in 0…backoff: spreads retries most, but may retry at once.
        case full
        /// Uniform in backoff/2…backoff: spread out, yet always waits at least half.
        case equal
    }

    /// Why a batch is not tried again.
    public enum StopReason: Sendable, Equatable {
        /// Sending the same batch again would fail the same way (HTTP 400, TLS, …).
        case permanentFailure
        case attemptsExhausted
        /// The wait before the next attempt would end after the batch's export deadline.
        case exportTimeoutReached
    }

    public enum Decision: Sendable, Equatable {
        case retry(after: Duration)
        case stop(StopReason)
    }

    /// Attempts per batch, the first included.
    public var maxAttempts: Int
    /// The backoff after the first failed attempt; it doubles after each further one.
    public var initialBackoff: Duration
    /// The longest backoff, before jitter.
    public var maxBackoff: Duration
    public var jitter: Jitter
    /// The longest wait a backend's `Retry-After` can impose; a longer one is cut to this.
    public var maxRetryAfter: Duration

    public init(
        maxAttempts: Int = 3, initialBackoff: Duration = .milliseconds(500), maxBackoff: Duration = .seconds(5),
        jitter: Jitter = .equal, maxRetryAfter: Duration = .seconds(30)
    ) {
        self.maxAttempts = maxAttempts
        self.initialBackoff = initialBackoff
        self.maxBackoff = maxBackoff
        self.jitter = jitter
        self.maxRetryAfter = maxRetryAfter
    }

    /// What to do after attempt number `attempt` (1 for the first) failed with `error`.
    /// - Parameters:
    ///   - timeLeft: Until the batch's export deadline; nil when there is none.
    ///   - randomFraction: Uniform in 0..<1, e.g. `Double.random(in: 0..<1)`; values outside are clamped.
    public func decision(
        after error: SpanExportError, attempt: Int, timeLeft: Duration?, randomFraction: Double
    ) -> Decision {
        guard error.isRetryable else { return .stop(.permanentFailure) }
        guard attempt < maxAttempts else { return .stop(.attemptsExhausted) }
        let wait = error.retryAfter.map { min(max($0, .zero), maxRetryAfter) }
            ?? backoff(afterAttempt: attempt, randomFraction: randomFraction)
        if let timeLeft, wait >= timeLeft { return .stop(.exportTimeoutReached) }
        return .retry(after: wait)
    }

    /// `initialBackoff` doubled `attempt - 1` times, capped at `maxBackoff`, then jittered.
    func backoff(afterAttempt attempt: Int, randomFraction: Double) -> Duration {
        var backoff = min(initialBackoff, maxBackoff)
        for _ in 1..<max(attempt, 1) {
            guard backoff < maxBackoff else { break }
            backoff = min(backoff * 2, maxBackoff)
        }
        let fraction = randomFraction.isNaN ? 0 : min(max(randomFraction, 0), 1)
        switch jitter {
        case .none: return backoff
        case .full: return Self.scaled(backoff, by: fraction)
        case .equal: return backoff / 2 + Self.scaled(backoff / 2, by: fraction)
        }
    }

    /// `duration * fraction`, rounded to the nanosecond.
    private static func scaled(_ duration: Duration, by fraction: Double) -> Duration {
        let (seconds, attoseconds) = duration.components
        let nanoseconds = Double(seconds) * 1e9 + Double(attoseconds / 1_000_000_000)
        return .nanoseconds(Int64((nanoseconds * fraction).rounded()))
    }
}
