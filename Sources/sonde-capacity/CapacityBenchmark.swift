import Exporters
import Foundation
import Planning
import Spans
import Tracing

/// How many spans per second one core of Sonde can turn from ring-buffer records into OTLP
/// request bodies, stage by stage, without a kernel or a network: issue 7's target is at most
/// 2 µs per span. `swift run -c release sonde-capacity [--spans N]`.
@main
struct CapacityBenchmark {
    /// What the exporter sends at once (`OTEL_BSP_MAX_EXPORT_BATCH_SIZE`'s default).
    static let batchSize = 512

    static func main() throws {
        let spanCount = try spanCountArgument()
        let traffic = try SampleTraffic(distinctRecords: 4096)
        let clock = WallClock(fixed: ClockOffset(realtimeMinusMonotonic: 1_700_000_000_000_000_000))
        let resource = Resource(attributes: [
            "service.name": .string("shop"), "process.executable.path": .string("/srv/shop"),
            "telemetry.distro.name": .string("sonde"), "process.pid": .int(4242),
        ])
        let assembler = SpanAssembler(plan: traffic.plan, clock: clock)
        let encoder = OTLPTraceEncoder()
        let compressor = GzipCompressor()
        guard let devNull = FileHandle(forWritingAtPath: "/dev/null") else { throw CapacityError("cannot open /dev/null") }
        let console = ConsoleExporter(fileHandle: devNull)

        var stages = StageTimes()
        var next = 0
        var batch: [Span] = []
        batch.reserveCapacity(batchSize)
        // The first batches warm caches and allocator pools and are not counted.
        let warmupBatches = 20
        for batchNumber in 0..<(warmupBatches + (spanCount + batchSize - 1) / batchSize) {
            let counted = batchNumber >= warmupBatches
            var records: [SpanEvent] = []
            records.reserveCapacity(batchSize)
            stages.time(.copy, counted) {
                for _ in 0..<batchSize {
                    // The Engine copies each record's capture area out of the ring buffer the same way.
                    var event = traffic.events[next]
                    event.data = event.data.withUnsafeBytes { Array($0) }
                    records.append(event)
                    next = (next + 1) % traffic.events.count
                }
            }
            batch.removeAll(keepingCapacity: true)
            stages.time(.assemble, counted) {
                for record in records {
                    if let span = assembler.assemble(record, resource: resource) { batch.append(span) }
                }
            }
            let body = stages.time(.encode, counted) { encoder.encode(batch) }
            let compressed = try stages.time(.gzip, counted) { try compressor.compress(body) }
            stages.time(.console, counted) { console.write(batch) }
            if counted {
                stages.spans += batch.count
                stages.bytes += body.count
                stages.compressedBytes += compressed.count
            }
        }
        print(stages.report())
        print("peak RSS: \(String(format: "%.1f", peakResidentMiB())) MiB")
    }

    private static func spanCountArgument() throws -> Int {
        let arguments = CommandLine.arguments.dropFirst()
        guard let flag = arguments.firstIndex(of: "--spans") else { return 1_000_000 }
        guard flag + 1 < arguments.endIndex, let count = Int(arguments[flag + 1]), count > 0 else {
            throw CapacityError("--spans needs a positive number of spans")
        }
        return count
    }

    /// The largest resident set so far (`getrusage`'s `ru_maxrss`, in KiB on Linux).
    private static func peakResidentMiB() -> Double {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        return Double(usage.ru_maxrss) / 1024
    }
}

/// Time spent per stage over the counted batches.
struct StageTimes {
    enum Stage: Int, CaseIterable {
        case copy, assemble, encode, gzip, console

        var label: String {
            switch self {
            case .copy: "record → SpanEvent (the Engine's copy)"
            case .assemble: "decode + assemble (SpanAssembler)"
            case .encode: "OTLP protobuf encode"
            case .gzip: "gzip, level 1 (only with OTEL_EXPORTER_OTLP_COMPRESSION=gzip)"
            case .console: "console exporter to /dev/null (instead of OTLP)"
            }
        }
    }

    /// CPU time of this thread, so other work on the machine does not count.
    var elapsed = [Duration](repeating: .zero, count: Stage.allCases.count)
    var spans = 0
    var bytes = 0
    var compressedBytes = 0

    mutating func time<T>(_ stage: Stage, _ counted: Bool, _ work: () throws -> T) rethrows -> T {
        let start = Self.threadCPUTime()
        defer { if counted { elapsed[stage.rawValue] += Self.threadCPUTime() - start } }
        return try work()
    }

    private static func threadCPUTime() -> Duration {
        var time = timespec()
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &time)
        return .seconds(time.tv_sec) + .nanoseconds(time.tv_nsec)
    }

    func report() -> String {
        func row(_ label: String, _ time: Duration) -> String {
            let seconds = Double(time.components.seconds) + Double(time.components.attoseconds) * 1e-18
            let perSpan = seconds * 1e6 / Double(spans)
            return label.padding(toLength: 64, withPad: " ", startingAt: 0)
                + String(format: "%8.3f µs %12.0f spans/s", perSpan, Double(spans) / seconds)
        }
        let withoutGzip = elapsed[..<Stage.gzip.rawValue].reduce(.zero, +)
        var lines = ["\(spans) spans (net/http server and client), batches of \(CapacityBenchmark.batchSize); CPU time of one thread:"]
        lines += Stage.allCases.map { row($0.label, elapsed[$0.rawValue]) }
        lines.append(row("total, uncompressed (the default)", withoutGzip))
        lines.append(row("total with gzip", withoutGzip + elapsed[Stage.gzip.rawValue]))
        lines.append("OTLP bytes per span: \(bytes / spans) (gzip: \(compressedBytes / spans))")
        return lines.joined(separator: "\n")
    }
}
