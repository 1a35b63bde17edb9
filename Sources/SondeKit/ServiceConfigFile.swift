import Engine
import Exporters
import ProbePacks
import Services

/// Loads `sonde.yaml` and checks it whole: the file's exporter and sampler values are checked by
/// the very parsers that read their OpenTelemetry variables, each mistake located at its key.
public enum ServiceConfigFile {
    /// - Throws: ``ServiceConfigError`` with every problem, in file order.
    public static func load(file: String) throws(ServiceConfigError) -> ServiceConfig {
        let config = try ServiceConfigReader.load(file: file)
        var errors: [PackError] = []
        func check(_ variables: [String: String], setAt sources: [String: SourceLocation]) {
            func locate(_ variable: String, _ problem: String) {
                errors.append(PackError(sources[variable] ?? SourceLocation(wholeFile: file), problem))
            }
            do { _ = try OTLPExporterConfiguration.fromEnvironment(variables) } catch { locate(error.variable, error.problem) }
            do { _ = try BatchingSpanProcessor.Configuration.fromEnvironment(variables) } catch { locate(error.variable, error.problem) }
            do { _ = try TraceSampler.fromEnvironment(variables) } catch {
                locate(error.description.hasPrefix("OTEL_TRACES_SAMPLER_ARG") ? "OTEL_TRACES_SAMPLER_ARG" : "OTEL_TRACES_SAMPLER", error.description)
            }
        }
        // Each value alone first, so every wrong one is reported (the parsers stop at the first);
        // then together, for what only a combination gets wrong (a batch larger than the queue).
        for (variable, value) in config.environment.sorted(by: { $0.key < $1.key }) {
            check([variable: value], setAt: config.environmentSources)
        }
        check(config.environment, setAt: config.environmentSources)
        for service in config.services where !service.sampler.isEmpty { check(service.sampler, setAt: service.samplerSources) }
        errors = errors.reduce(into: []) { unique, error in if !unique.contains(error) { unique.append(error) } }
        errors.sort { ($0.location.line, $0.location.column) < ($1.location.line, $1.location.column) }
        guard errors.isEmpty else { throw ServiceConfigError(file: file, errors: errors) }
        return config
    }
}
