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
    private let writeLine: @Sendable (String) -> Void

    /// Sends each line, without a trailing newline, to `writeLine`.
    public init(writeLine: @escaping @Sendable (String) -> Void) {
        self.writeLine = writeLine
    }

    /// Writes newline-terminated lines to `fileHandle`.
    public init(fileHandle: FileHandle = .standardOutput) {
        self.init { line in fileHandle.write(Data((line + "\n").utf8)) }
    }

    public func export(_ spans: [Span]) async {
        for span in spans {
            writeLine(Self.line(for: span))
        }
    }

    public static func line(for span: Span) -> String {
        var fields = [span.kind.rawValue.uppercased(), escaped(span.name), duration(of: span)]
        switch span.status {
        case .unset: break
        case .ok: fields.append("status=OK")
        case .error(let message): fields.append(message.isEmpty ? "status=ERROR" : "status=ERROR:" + quotedIfNeeded(message))
        }
        fields.append("trace=\(span.traceID)")
        fields.append("span=\(span.spanID)")
        fields.append("parent=\(span.parentSpanID.map(String.init(describing:)) ?? "-")")
        if !span.traceState.isEmpty { fields.append("tracestate=\(quotedIfNeeded(span.traceState))") }
        for attribute in span.attributes {
            let value = switch attribute.value {
            case .string(let string): quotedIfNeeded(string)
            case .int, .double, .bool: attribute.value.description
            }
            fields.append("\(quotedIfNeeded(attribute.key))=\(value)")
        }
        return fields.joined(separator: " ")
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
        let needsQuotes = text.isEmpty || text.unicodeScalars.contains {
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
