import Foundation
import Spans

/// Prints one line per span, for watching what Sonde captures without running a collector.
///
/// Line format (`ConsoleExporter.line(for:)`), fields separated by single spaces:
///
///     KIND name duration [status=OK|status=ERROR[:message]] trace=<32 hex> span=<16 hex> parent=<16 hex or -> [key=value ...]
///
/// e.g. `SERVER GET /hello 1.234ms trace=4bf92f3577b34da6a3ce929d0e0e4736 span=00f067aa0ba902b7 parent=- http.request.method=GET`.
/// The duration is in milliseconds with three decimals; attributes keep the span's order; a status
/// is shown only when set. Strings that are empty or contain spaces, quotes, `=` or control
/// characters are quoted with backslash escapes, so a line never breaks in two.
public struct ConsoleExporter: SpanExporter {
    private let writeText: @Sendable (String) -> Void

    /// Sends each batch's lines, each ending in a newline, to `writeText` at once.
    public init(writeText: @escaping @Sendable (String) -> Void) {
        self.writeText = writeText
    }

    /// Writes to `fileHandle`: one write per batch, not per span (a write per line took most of
    /// the exporter's time: issue 7).
    public init(fileHandle: FileHandle = .standardOutput) {
        self.init { text in fileHandle.write(Data(text.utf8)) }
    }

    public func export(_ spans: [Span]) async {
        write(spans)
    }

    /// What `export` does, without waiting: the capacity benchmark times it.
    public func write(_ spans: [Span]) {
        guard !spans.isEmpty else { return }
        var text = ""
        text.reserveCapacity(spans.count * 256)
        for span in spans {
            Self.appendLine(for: span, to: &text)
            text += "\n"
        }
        writeText(text)
    }

    public static func line(for span: Span) -> String {
        var line = ""
        appendLine(for: span, to: &line)
        return line
    }

    /// Appends field by field to one string: building a field array and joining it cost as much
    /// as all the fields.
    private static func appendLine(for span: Span, to line: inout String) {
        line += span.kind.consoleName
        line += " "
        line += escaped(span.name)
        line += " "
        line += duration(of: span)
        switch span.status {
        case .unset: break
        case .ok: line += " status=OK"
        case .error(let message): line += message.isEmpty ? " status=ERROR" : " status=ERROR:" + quotedIfNeeded(message)
        }
        line += " trace="
        line += span.traceID.description
        line += " span="
        line += span.spanID.description
        line += " parent="
        line += span.parentSpanID?.description ?? "-"
        if !span.traceState.isEmpty {
            line += " tracestate="
            line += quotedIfNeeded(span.traceState)
        }
        for attribute in span.attributes {
            line += " "
            line += quotedIfNeeded(attribute.key)
            line += "="
            switch attribute.value {
            case .string(let string): line += quotedIfNeeded(string)
            case .int, .double, .bool: line += attribute.value.description
            }
        }
    }

    private static func duration(of span: Span) -> String {
        let nanoseconds = span.endTimeUnixNano >= span.startTimeUnixNano ? span.endTimeUnixNano - span.startTimeUnixNano : 0
        let microseconds = nanoseconds / 1_000 % 1_000
        let paddedMicroseconds = String(repeating: "0", count: 3 - String(microseconds).count) + String(microseconds)
        return "\(nanoseconds / 1_000_000).\(paddedMicroseconds)ms"
    }

    private static func quotedIfNeeded(_ text: String) -> String {
        // Most values are plain ASCII; deciding that byte-wise avoids Unicode property lookups per span.
        if !text.isEmpty, text.utf8.allSatisfy({ isPlainASCII($0) && $0 != UInt8(ascii: " ") && $0 != UInt8(ascii: "=") }) {
            return text
        }
        // ASCII text that got here holds a byte the check above refused (a space, `=`, a quote, a
        // backslash, a control), each needing quotes: no Unicode property lookup for it.
        let needsQuotes = text.isEmpty || text.utf8.allSatisfy { $0 < 0x80 } || text.unicodeScalars.contains {
            $0 == "\"" || $0 == "=" || $0 == "\\" || $0.properties.isWhitespace || $0.value < 0x20 || $0.value == 0x7f
        }
        return needsQuotes ? "\"\(escaped(text))\"" : text
    }

    /// Printable ASCII other than the quote and backslash, which never need escaping.
    private static func isPlainASCII(_ byte: UInt8) -> Bool {
        byte >= 0x20 && byte < 0x7f && byte != UInt8(ascii: "\"") && byte != UInt8(ascii: "\\")
    }

    /// Backslash-escapes quotes, backslashes and control characters so the text stays on one line.
    private static func escaped(_ text: String) -> String {
        if text.utf8.allSatisfy(isPlainASCII) { return text }
        var result = ""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": result += "\\\""
            case "\\": result += "\\\\"
            case "\n": result += "\\n"
            case "\r": result += "\\r"
            case "\t": result += "\\t"
            case _ where scalar.value < 0x20 || scalar.value == 0x7f || (scalar.properties.isWhitespace && scalar != " "):
                result += "\\u{\(String(scalar.value, radix: 16))}"
            default: result.unicodeScalars.append(scalar)
            }
        }
        return result
    }
}

extension SpanKind {
    /// How a line starts: `SERVER`, `CLIENT`, …
    fileprivate var consoleName: String {
        switch self {
        case .internal: "INTERNAL"
        case .server: "SERVER"
        case .client: "CLIENT"
        case .producer: "PRODUCER"
        case .consumer: "CONSUMER"
        }
    }
}
