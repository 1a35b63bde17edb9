extension BatchingSpanProcessor.Configuration {
    /// Reads the OpenTelemetry batch span processor variables; unset or empty ones keep the
    /// defaults of `init()`.
    ///
    /// - `OTEL_BSP_SCHEDULE_DELAY`: milliseconds, positive
    /// - `OTEL_BSP_EXPORT_TIMEOUT`: milliseconds per batch, retries included; 0 for no limit
    /// - `OTEL_BSP_MAX_QUEUE_SIZE`: spans, positive
    /// - `OTEL_BSP_MAX_EXPORT_BATCH_SIZE`: spans, positive and at most the queue size. When only
    ///   the queue size is set, below the default batch size, the batch size follows it.
    ///
    /// - Throws: `ExporterConfigurationError` naming the variable, for a malformed value, as
    ///   `OTLPExporterConfiguration.fromEnvironment(_:)` does.
    public static func fromEnvironment(
        _ environment: [String: String]
    ) throws(ExporterConfigurationError) -> BatchingSpanProcessor.Configuration {
        let variables = EnvironmentVariables(environment)
        var configuration = BatchingSpanProcessor.Configuration()
        let positiveMilliseconds = { (value: String) in "'\(value)' is not a positive number of milliseconds" }
        let positiveSpans = { (value: String) in "'\(value)' is not a positive number of spans" }
        if let milliseconds = try variables.integer(
            "OTEL_BSP_SCHEDULE_DELAY", in: 1...Int.max, problem: positiveMilliseconds) {
            configuration.scheduleDelay = .milliseconds(milliseconds)
        }
        let millisecondsOrZero = { (value: String) in "'\(value)' is not a number of milliseconds (0 for no limit)" }
        if let milliseconds = try variables.integer(
            "OTEL_BSP_EXPORT_TIMEOUT", in: 0...Int.max, problem: millisecondsOrZero) {
            configuration.exportTimeout = milliseconds == 0 ? nil : .milliseconds(milliseconds)
        }
        let queueSize = try variables.integer("OTEL_BSP_MAX_QUEUE_SIZE", in: 1...Int.max, problem: positiveSpans)
        let batchSize = try variables.integer("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", in: 1...Int.max, problem: positiveSpans)
        configuration.queueCapacity = queueSize ?? configuration.queueCapacity
        configuration.maxBatchSize = batchSize ?? min(configuration.maxBatchSize, configuration.queueCapacity)
        guard configuration.maxBatchSize <= configuration.queueCapacity else {
            throw ExporterConfigurationError(
                "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
                "\(configuration.maxBatchSize) is larger than the queue "
                    + "(OTEL_BSP_MAX_QUEUE_SIZE: \(configuration.queueCapacity)); it must be at most that")
        }
        return configuration
    }
}
