import Foundation
import Spans
import Synchronization
import XCTest

@testable import Exporters

final class ConsoleExporterTests: XCTestCase {
    func testServerSpanLine() {
        XCTAssertEqual(
            ConsoleExporter.line(for: makeServerSpan()),
            "SERVER GET /hello 1.234ms trace=4bf92f3577b34da6a3ce929d0e0e4736 span=00f067aa0ba902b7 parent=- "
                + "http.request.method=GET url.path=/hello http.response.status_code=200 sonde.sample_ratio=0.25 "
                + "sonde.go.goroutine_reused=true")
    }

    func testErrorSpanWithParentLine() {
        XCTAssertEqual(
            ConsoleExporter.line(for: makeClientSpan()),
            "CLIENT POST 0.500ms status=ERROR:\"connection refused\" trace=4bf92f3577b34da6a3ce929d0e0e4736 "
                + "span=1122334455667788 parent=00f067aa0ba902b7 server.address=backend:8080")
    }

    func testStatusDurationAndQuoting() {
        var span = makeServerSpan()
        span.kind = .internal
        span.name = "two\nlines"
        span.status = .ok
        span.startTimeUnixNano = 10_000
        span.endTimeUnixNano = 5_000
        span.attributes = [
            Attribute("empty", .string("")),
            Attribute("quote", .string("say \"hi\"")),
            Attribute("equals", .string("a=b")),
            Attribute("tab", .string("a\tb\\c")),
        ]

        XCTAssertEqual(
            ConsoleExporter.line(for: span),
            "INTERNAL two\\nlines 0.000ms status=OK trace=4bf92f3577b34da6a3ce929d0e0e4736 span=00f067aa0ba902b7 parent=- "
                + #"empty="" quote="say \"hi\"" equals="a=b" tab="a\tb\\c""#)
    }

    func testErrorWithoutMessageAndLongDuration() {
        var span = makeServerSpan()
        span.kind = .consumer
        span.status = .error(message: "")
        span.endTimeUnixNano = span.startTimeUnixNano + 12_345_006_789
        span.attributes = []

        XCTAssertEqual(
            ConsoleExporter.line(for: span),
            "CONSUMER GET /hello 12345.006ms status=ERROR trace=4bf92f3577b34da6a3ce929d0e0e4736 span=00f067aa0ba902b7 parent=-")
    }

    func testExportWritesOneLinePerSpanInOrder() async {
        let lines = Mutex<[String]>([])
        let exporter = ConsoleExporter { line in lines.withLock { $0.append(line) } }

        await exporter.export([makeServerSpan(), makeClientSpan()])

        XCTAssertEqual(lines.withLock { $0 }, [ConsoleExporter.line(for: makeServerSpan()), ConsoleExporter.line(for: makeClientSpan())])
    }

    func testFileHandleOutputEndsEachLineWithNewline() async throws {
        let pipe = Pipe()
        let exporter = ConsoleExporter(fileHandle: pipe.fileHandleForWriting)

        await exporter.export([makeClientSpan()])
        try pipe.fileHandleForWriting.close()

        XCTAssertEqual(
            String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self),
            ConsoleExporter.line(for: makeClientSpan()) + "\n")
    }
}
