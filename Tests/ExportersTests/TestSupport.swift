import Foundation
import Spans
import TestSupport
import XCTest

@testable import Exporters

/// A span with every field set, so a mapping that forgets one shows up.
func makeServerSpan() -> Span {
    Span(
        traceID: TraceID(high: 0x4bf9_2f35_77b3_4da6, low: 0xa3ce_929d_0e0e_4736),
        spanID: SpanID(0x00f0_67aa_0ba9_02b7),
        name: "GET /hello",
        kind: .server,
        startTimeUnixNano: 1_700_000_000_000_000_000,
        endTimeUnixNano: 1_700_000_000_001_234_567,
        attributes: [
            Attribute("http.request.method", .string("GET")),
            Attribute("url.path", .string("/hello")),
            Attribute("http.response.status_code", .int(200)),
            Attribute("sonde.sample_ratio", .double(0.25)),
            Attribute("sonde.go.goroutine_reused", .bool(true)),
        ],
        status: .unset,
        resource: Resource(attributes: ["service.name": .string("hello-server"), "process.pid": .int(4242)]),
        scope: InstrumentationScope(name: "go/net-http", version: "1.0.0"))
}

/// A failed child of `makeServerSpan()`.
func makeClientSpan() -> Span {
    Span(
        traceID: TraceID(high: 0x4bf9_2f35_77b3_4da6, low: 0xa3ce_929d_0e0e_4736),
        spanID: SpanID(0x1122_3344_5566_7788),
        parentSpanID: SpanID(0x00f0_67aa_0ba9_02b7),
        name: "POST",
        kind: .client,
        startTimeUnixNano: 1_700_000_000_000_100_000,
        endTimeUnixNano: 1_700_000_000_000_600_000,
        attributes: [Attribute("server.address", .string("backend:8080"))],
        status: .error(message: "connection refused"),
        resource: Resource(attributes: ["service.name": .string("hello-server"), "process.pid": .int(4242)]),
        scope: InstrumentationScope(name: "go/net-http", version: "1.0.0"))
}

/// `count` distinct root spans, numbered in `name` and `spanID` so order can be checked.
func makeNumberedSpans(_ count: Int) -> [Span] {
    (1..<count + 1).map { number in
        var span = makeServerSpan()
        span.spanID = SpanID(UInt64(number))
        span.name = "span \(number)"
        return span
    }
}

/// Records every batch it is given and succeeds, or first fails as `failures` says.
actor RecordingExporter: SpanExporter {
    private(set) var batches: [[Span]] = []
    private(set) var attempts = 0
    private var failures: [any Error]

    init(failingWith failures: [any Error] = []) {
        self.failures = failures
    }

    var exportedSpans: [Span] { batches.flatMap { $0 } }

    func export(_ spans: [Span]) async throws {
        attempts += 1
        if !failures.isEmpty { throw failures.removeFirst() }
        batches.append(spans)
    }
}

/// Passes batches on to `exporter`, counting the attempts.
actor RecordingFailures<Exporter: SpanExporter>: SpanExporter {
    private let exporter: Exporter
    private(set) var attempts = 0

    init(_ exporter: Exporter) {
        self.exporter = exporter
    }

    func export(_ spans: [Span]) async throws {
        attempts += 1
        try await exporter.export(spans)
    }
}

/// Accepts batches but does not return from `export` until `open()`: a backend that hangs.
actor GatedExporter: SpanExporter {
    private(set) var batches: [[Span]] = []
    private var isOpen = false
    private var blockedExports: [CheckedContinuation<Void, Never>] = []

    func export(_ spans: [Span]) async {
        batches.append(spans)
        guard !isOpen else { return }
        await withCheckedContinuation { blockedExports.append($0) }
    }

    func open() {
        isOpen = true
        blockedExports.forEach { $0.resume() }
        blockedExports.removeAll()
    }
}

/// Polls `condition` until it holds or `timeout` passes; for effects of background tasks.
func waitUntil(
    timeout: Duration = .seconds(5), file: StaticString = #filePath, line: UInt = #line,
    _ condition: () async -> Bool
) async {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if await condition() { return }
        try? await Task.sleep(for: .milliseconds(5))
    }
    XCTFail("condition did not hold within \(timeout)", file: file, line: line)
}

/// Runs `Tests/Support/otlp_receiver.py`, the OTLP receiver that decodes with Python's
/// opentelemetry-proto instead of Sonde's generated types.
final class OTLPReceiverProcess {
    let port: Int
    private let process: Process
    private let outputFile: URL

    static let scriptPath = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Support/otlp_receiver.py").path

    /// Throws `XCTSkip` when python3 or opentelemetry-proto is missing, so the test says why it
    /// did not run instead of passing.
    init(arguments: [String] = []) throws {
        let probe = try? Self.run(["python3", "-c", "import opentelemetry.proto.collector.trace.v1.trace_service_pb2"])
        guard probe == 0 else {
            throw TestEnvironment.missingInstall("python3 with the opentelemetry-proto package, for the OTLP receiver")
        }
        outputFile = FileManager.default.temporaryDirectory.appendingPathComponent("otlp-spans-\(UUID().uuidString).jsonl")
        process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", Self.scriptPath, "--port", "0", "--out", outputFile.path] + arguments
        let stdout = Pipe()
        process.standardOutput = stdout
        try process.run()
        var firstLine = Data()
        while !firstLine.contains(UInt8(ascii: "\n")) {
            let chunk = stdout.fileHandleForReading.availableData
            guard !chunk.isEmpty else { break }
            firstLine.append(chunk)
        }
        guard let port = Int(String(decoding: firstLine, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)) else {
            process.terminate()
            throw ReceiverDidNotStart()  // the receiver's own error is on the test's stderr
        }
        self.port = port
    }

    deinit {
        process.terminate()
        process.waitUntilExit()
        try? FileManager.default.removeItem(at: outputFile)
    }

    /// The JSON objects the receiver wrote, one per received span.
    func receivedSpans() throws -> [[String: Any]] {
        try String(contentsOf: outputFile, encoding: .utf8)
            .split(separator: "\n")
            .map { try XCTUnwrap(JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]) }
    }

    struct ReceiverDidNotStart: Error {}

    static func run(_ arguments: [String]) throws -> Int32 {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = arguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        return process.terminationStatus
    }
}

/// A TCP port that accepts connections (the kernel completes them) but never answers: a backend
/// that hangs, to check that request timeouts apply.
final class SilentListener {
    let port: Int
    private let socketDescriptor: Int32

    init() throws {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let listening = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { address in
                bind(descriptor, address, length) == 0 && listen(descriptor, 16) == 0
                    && getsockname(descriptor, address, &length) == 0
            }
        }
        guard descriptor >= 0, listening else {
            close(descriptor)
            throw TestSetupError("cannot listen on 127.0.0.1: \(String(cString: strerror(errno)))")
        }
        socketDescriptor = descriptor
        port = Int(UInt16(bigEndian: address.sin_port))
    }

    deinit {
        close(socketDescriptor)
    }
}

/// An HTTPS server with a self-signed certificate (made with the openssl tool, for 127.0.0.1),
/// run by python3: a backend Sonde trusts only when given that certificate as its CA file. With
/// `requiringClientCertificate`, it accepts only clients presenting that same certificate.
final class SelfSignedTLSServer {
    let port: Int
    /// The certificate and its key, PEM.
    let certificate: String
    let key: String
    private let process: Process
    private let directory: URL

    private static let script = """
        import http.server, ssl, sys
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()
        server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(sys.argv[1], sys.argv[2])
        if sys.argv[3] == "mtls":
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(sys.argv[1])
        server.socket = context.wrap_socket(server.socket, server_side=True)
        print(server.server_address[1], flush=True)
        server.serve_forever()
        """

    init(requiringClientCertificate: Bool = false) throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("sonde-tls-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        certificate = directory.appendingPathComponent("cert.pem").path
        key = directory.appendingPathComponent("key.pem").path
        let made = try? OTLPReceiverProcess.run([
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", certificate,
            "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ])
        guard made == 0 else { throw TestEnvironment.missingInstall("the openssl tool, to make a self-signed certificate") }
        process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "-c", Self.script, certificate, key, requiringClientCertificate ? "mtls" : "tls"]
        let stdout = Pipe()
        process.standardOutput = stdout
        try process.run()
        let firstLine = stdout.fileHandleForReading.availableData
        guard let port = Int(String(decoding: firstLine, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)) else {
            process.terminate()
            throw TestSetupError("python3 could not start an HTTPS server")
        }
        self.port = port
    }

    deinit {
        // SIGKILL: the server inherits the test process's signal mask, which may block SIGTERM.
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        try? FileManager.default.removeItem(at: directory)
    }
}

/// A test's own set-up failed: the test fails, it is not skipped.
struct TestSetupError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
