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

    /// ASCII text is judged byte by byte, other text by its Unicode properties: a no-break space
    /// is white space and is quoted, as an ASCII space or a DEL is; a letter outside ASCII is not.
    func testQuotingOfAsciiAndNonAsciiText() {
        var span = makeServerSpan()
        span.traceID = TraceID(high: 0, low: 1)
        span.spanID = SpanID(0xa)
        span.attributes = [
            Attribute("plain", .string("café")),
            Attribute("nbsp", .string("a\u{a0}b")),
            Attribute("space", .string("a b")),
            Attribute("del", .string("a\u{7f}")),
            Attribute("ascii", .string("/x?y-z")),
        ]

        XCTAssertEqual(
            ConsoleExporter.line(for: span),
            "SERVER GET /hello 1.234ms trace=00000000000000000000000000000001 span=000000000000000a parent=- "
                + #"plain=café nbsp="a\u{a0}b" space="a b" del="a\u{7f}" ascii=/x?y-z"#)
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

    func testExportWritesABatchsLinesInOrderInOneWrite() async {
        let writes = Mutex<[String]>([])
        let exporter = ConsoleExporter { text in writes.withLock { $0.append(text) } }

        await exporter.export([makeServerSpan(), makeClientSpan()])
        await exporter.export([])

        XCTAssertEqual(writes.withLock { $0 }, [
            ConsoleExporter.line(for: makeServerSpan()) + "\n" + ConsoleExporter.line(for: makeClientSpan()) + "\n",
        ])
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
