import SondeABI

/// Which traces are recorded, decided in the kernel when a root span starts, so an unrecorded
/// request costs its probes a map lookup each and emits nothing; its child spans and the
/// goroutines it starts follow the decision. Configured as OpenTelemetry SDKs are, by
/// `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG`.
///
/// Sonde sees no trace context from outside the process, so a span without a parent in the
/// process is a root: `parentbased_X` samples roots as `X` does, and children always follow.
public struct TraceSampler: Sendable, Hashable, CustomStringConvertible {
    /// The fraction of traces recorded, 0 to 1.
    public let ratio: Double

    public static let alwaysOn = TraceSampler(ratio: 1)
    public static let alwaysOff = TraceSampler(ratio: 0)

    /// - Precondition: `ratio` is in 0...1.
    public init(ratio: Double) {
        precondition((0...1).contains(ratio), "a sampling ratio is a fraction")
        self.ratio = ratio
    }

    /// The sampler `OTEL_TRACES_SAMPLER` names, with `OTEL_TRACES_SAMPLER_ARG` for the ratio
    /// samplers (1 when unset); unset, `parentbased_always_on`, the specification's default.
    public static func fromEnvironment(_ environment: [String: String]) throws(SamplerConfigurationError) -> TraceSampler {
        func setting(_ name: String) -> String? {
            environment[name].map { $0.trimmingCharacters(in: .whitespaces) }.flatMap { $0.isEmpty ? nil : $0 }
        }
        let name = setting("OTEL_TRACES_SAMPLER")?.lowercased() ?? "parentbased_always_on"
        let root = name.hasPrefix("parentbased_") ? String(name.dropFirst("parentbased_".count)) : name
        switch root {
        case "always_on":
            return .alwaysOn
        case "always_off":
            return .alwaysOff
        case "traceidratio":
            guard let argument = setting("OTEL_TRACES_SAMPLER_ARG") else { return .alwaysOn }
            guard let ratio = Double(argument), (0...1).contains(ratio) else {
                throw SamplerConfigurationError(
                    "OTEL_TRACES_SAMPLER_ARG '\(argument)' is not a sampling ratio: give a number from 0 to 1, e.g. 0.1 for 10%")
            }
            return TraceSampler(ratio: ratio)
        default:
            throw SamplerConfigurationError(
                "OTEL_TRACES_SAMPLER '\(name)' is not a sampler sonde knows; use always_on, always_off, traceidratio, "
                    + "parentbased_always_on, parentbased_always_off or parentbased_traceidratio")
        }
    }

    /// The BPF program's threshold: a root whose trace id's low 64 bits, shifted right by one, are
    /// below it is recorded, as OpenTelemetry's TraceIdRatioBased compares them, so an SDK sampling
    /// the same trace id with the same ratio decides the same.
    var threshold: UInt64 {
        ratio >= 1 ? SONDE_SAMPLE_ALL : UInt64(ratio * Double(SONDE_SAMPLE_ALL))
    }

    public var description: String {
        switch ratio {
        case 1: "every trace"
        case 0: "no trace"
        default: "\((ratio * 1000).rounded() / 10)% of traces"
        }
    }
}

/// A sampler variable that cannot be used, with what to set instead.
public struct SamplerConfigurationError: Error, Equatable, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}
