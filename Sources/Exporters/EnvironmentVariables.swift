import Foundation

/// The environment with empty values removed, as the OpenTelemetry specification asks.
struct EnvironmentVariables {
    private let values: [String: String]

    init(_ environment: [String: String]) {
        values = environment
            .mapValues { $0.trimmingCharacters(in: .whitespaces) }
            .filter { !$0.value.isEmpty }
    }

    subscript(name: String) -> String? { values[name] }

    /// The first of `names` that is set, with its value: for a signal-specific variable
    /// overriding a general one.
    func first(of names: String...) -> (variable: String, value: String)? {
        names.lazy.compactMap { name in self[name].map { (name, $0) } }.first
    }
}

extension EnvironmentVariables {
    /// The whole number in `variable`, nil when unset; throws `problem` unless it is in `range`.
    func integer(
        _ variable: String, in range: ClosedRange<Int>, problem: (String) -> String
    ) throws(ExporterConfigurationError) -> Int? {
        guard let value = self[variable] else { return nil }
        guard let number = Int(value), range.contains(number) else {
            throw ExporterConfigurationError(variable, problem(value))
        }
        return number
    }
}
