import Synchronization

/// Thrown when an export did not finish within its limit: by `withTimeLimit`, or by an exporter
/// that keeps to the limit itself (`SpanExporter.export(_:within:)`).
struct TimeLimitExceeded: Error, Equatable {
    var limit: Duration
}

/// Runs `operation` in its own task and returns its result, or throws `TimeLimitExceeded` once
/// `limit` has passed and cancels the operation.
///
/// The caller is resumed at the deadline even if the operation ignores cancellation, unlike a
/// task group, which would wait for it: one hung export must not stall the export loop. When the
/// caller is cancelled, the operation is cancelled and still awaited, until the deadline.
func withTimeLimit<Result: Sendable>(
    _ limit: Duration, _ operation: @escaping @Sendable () async throws -> Result
) async throws -> Result {
    let race = TimeLimitRace<Result>()
    return try await withTaskCancellationHandler {
        try await withCheckedThrowingContinuation { continuation in
            race.start(continuation, limit: limit, operation: operation)
        }
    } onCancel: {
        race.cancelOperation()
    }
}

/// The operation and its deadline race to resume the caller, once.
private final class TimeLimitRace<Result: Sendable>: Sendable {
    private struct State {
        var continuation: CheckedContinuation<Result, any Error>?
        var operation: Task<Void, Never>?
        var deadline: Task<Void, Never>?
        var finished = false
        var cancelled = false
    }

    private let state = Mutex(State())

    func start(
        _ continuation: CheckedContinuation<Result, any Error>, limit: Duration,
        operation: @escaping @Sendable () async throws -> Result
    ) {
        state.withLock { $0.continuation = continuation }
        let work = Task {
            do {
                finish(.success(try await operation()))
            } catch {
                finish(.failure(error))
            }
        }
        let deadline = Task {
            guard (try? await Task.sleep(for: limit)) != nil else { return }  // cancelled: the race is over
            finish(.failure(TimeLimitExceeded(limit: limit)))
        }
        let (finished, cancelled) = state.withLock { state in
            state.operation = work
            state.deadline = deadline
            return (state.finished, state.cancelled)
        }
        if finished { deadline.cancel() }
        if cancelled { work.cancel() }
    }

    /// Forwards the caller's cancellation to the operation.
    func cancelOperation() {
        let operation = state.withLock { state in
            state.cancelled = true
            return state.operation
        }
        operation?.cancel()
    }

    /// Resumes the caller with `result` unless the other side already did; cancels the loser.
    private func finish(_ result: Swift.Result<Result, any Error>) {
        let winner = state.withLock { state -> (CheckedContinuation<Result, any Error>, [Task<Void, Never>])? in
            guard !state.finished, let continuation = state.continuation else { return nil }
            state.finished = true
            state.continuation = nil
            return (continuation, [state.operation, state.deadline].compactMap { $0 })
        }
        guard let (continuation, losers) = winner else { return }
        losers.forEach { $0.cancel() }
        continuation.resume(with: result)
    }
}

extension Duration {
    /// "250 ms", "10 s", "1.5 s": for messages.
    var readable: String {
        let milliseconds = components.seconds * 1_000 + components.attoseconds / 1_000_000_000_000_000
        guard milliseconds >= 1_000 else { return "\(milliseconds) ms" }
        return milliseconds % 1_000 == 0 ? "\(milliseconds / 1_000) s" : "\(Double(milliseconds) / 1_000) s"
    }
}
