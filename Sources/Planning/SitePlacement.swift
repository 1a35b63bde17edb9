/// Where a plan puts its entry sites.
public enum SitePlacement: String, Sendable, Equatable, CaseIterable {
    /// Sonde's: the first instruction of the prologue that the kernel emulates and that leaves the
    /// argument registers intact (Go's stack-check branch), so an entry costs ~0.65 µs, not ~9.5.
    case costAware = "cost-aware"
    /// The peers' (OpenTelemetry Go auto-instrumentation, Beyla): the function's first
    /// instruction, usually single-stepped. For benchmarks that compare the two: a Go function that
    /// grows its stack runs its first instruction again, and that second entry counts the first as
    /// a call that unwound (the peers open a second span there).
    case conventional
}
