import Foundation

/// Checks that a pack file is text that YAML may hold, naming the first place that is not, by
/// line and column. libyaml would refuse the same text, but at a wrong place (Foundation's
/// decoding says only "the file isn't in the correct format", at 1:1) or with the offending
/// line quoted in its message (Yams' reader errors), which could print a secret from a file
/// that was never a pack.
enum PackText {
    /// Decodes the file's bytes as UTF-8.
    /// - Throws: ``PackError`` at the first byte that is not UTF-8.
    static func decode(_ bytes: Data, file: String) throws -> String {
        var decoder = UTF8()
        var iterator = bytes.makeIterator()
        var position = TextPosition()
        var offset = bytes.startIndex
        while true {
            switch decoder.decode(&iterator) {
            case .scalarValue(let scalar):
                position.advance(past: scalar)
                offset += UTF8.width(scalar)
            case .emptyInput:
                return String(decoding: bytes, as: UTF8.self)
            case .error:
                let byte = String(bytes[offset], radix: 16, uppercase: true)
                throw PackError(
                    position.location(in: file),
                    "the pack file is not UTF-8 text: the byte 0x\(byte) here is not valid UTF-8;"
                        + " save the pack as UTF-8"
                )
            }
        }
    }

    /// Refuses the characters YAML does not allow in a stream: control characters but tab and
    /// line breaks, and U+FFFE and U+FFFF (libyaml's reader, `yaml_parser_update_buffer` in
    /// Yams' `CYaml/src/reader.c`, has the same list).
    /// - Throws: ``PackError`` at the first such character.
    static func checkCharacters(_ text: String, file: String) throws {
        var position = TextPosition()
        for scalar in text.unicodeScalars {
            if !scalar.isAllowedInYAML {
                let code = String(scalar.value, radix: 16, uppercase: true)
                let name = String(repeating: "0", count: max(0, 4 - code.count)) + code
                let what =
                    scalar.value == 0
                    ? "a NUL byte"
                    : scalar.properties.generalCategory == .control
                        ? "the control character U+\(name)" : "the character U+\(name)"
                throw PackError(
                    position.location(in: file),
                    "the pack file has \(what) here; a pack is YAML text,"
                        + " which allows no control characters but tab and line breaks"
                )
            }
            position.advance(past: scalar)
        }
    }
}

/// A line and column as libyaml counts them, so that positions found before Yams runs match
/// the ones Yams reports: columns in Unicode scalars, and CR LF, CR, LF, NEL, LS and PS each
/// end a line (`IS_BREAK` and `SKIP_LINE` in Yams' `CYaml/src/yaml_private.h`).
struct TextPosition {
    private(set) var line = 1
    private(set) var column = 1
    private var afterCarriageReturn = false

    mutating func advance(past scalar: Unicode.Scalar) {
        defer { afterCarriageReturn = scalar == "\r" }
        if scalar == "\n" && afterCarriageReturn { return }
        if scalar.isYAMLLineBreak {
            line += 1
            column = 1
        } else {
            column += 1
        }
    }

    func location(in file: String) -> SourceLocation {
        SourceLocation(file: file, line: line, column: column)
    }
}

extension Unicode.Scalar {
    var isYAMLLineBreak: Bool { ["\r", "\n", "\u{85}", "\u{2028}", "\u{2029}"].contains(self) }

    var isYAMLBlank: Bool { self == " " || self == "\t" }

    /// YAML's printable characters (YAML 1.1 §5.1, libyaml's `IS_PRINTABLE`).
    var isAllowedInYAML: Bool {
        switch value {
        case 0x09, 0x0A, 0x0D, 0x20...0x7E, 0x85, 0xA0...0xD7FF, 0xE000...0xFFFD, 0x10000...0x10FFFF: true
        default: false
        }
    }
}
