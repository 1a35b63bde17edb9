/// Refuses YAML anchors (`&name`) and aliases (`*name`) in a pack's text, before Yams builds anything.
///
/// Why refuse them rather than bound their expansion: a pack never needs to repeat a value by
/// reference, and aliases are what makes a small file huge. Yams shares an aliased node, which
/// is cheap until something walks it; its duplicate-key check hashes every mapping key in full,
/// so a 400-byte file with eight levels of ten aliases each, the last used as a key
/// (`{ ? *a7 : 1 }`), hashes 10^8 nodes and runs for hours. Yams has no hook between libyaml's
/// events and its nodes, so the check reads the text itself.
///
/// The check errs towards refusing. It follows at once every way the text so far could be
/// read — outside quotes, inside '…', inside "…", in a comment — and reports `&` or `*`
/// followed by an anchor character (`[0-9A-Za-z_-]`, libyaml's `IS_ALPHA`) wherever a token
/// could start in any of them (`yaml_parser_fetch_next_token` in Yams' `CYaml/src/scanner.c`).
/// The reading outside quotes is never dropped, so nothing that libyaml would read as an anchor
/// or alias escapes: not behind a quote (`"a # b", &x`), a quote in a block scalar or a plain
/// scalar's next line, or a comment ended by a lone CR. The cost is that text in a pack, quoted
/// or not, may not start a word with `&name` or `*name` either; comments may.
enum YAMLAliasGuard {
    /// - Parameter document: What the file is, in the message: `a pack`, `a config file`.
    static func message(document: String) -> String {
        "YAML anchors and aliases ('&name', '*name') are not allowed in \(document): a few of them can expand a small file"
            + " beyond any bound; write values out in full, and in text do not start a word with '&' or '*'"
    }

    /// - Throws: ``PackError`` at the first `&` or `*` that could start an anchor or an alias.
    static func check(_ text: String, file: String, document: String = "a pack") throws {
        let scalars = Array(text.unicodeScalars)
        var readings: Readings = .outside
        var position = TextPosition()
        for index in scalars.indices {
            let scalar = scalars[index]
            let previous = index > 0 ? scalars[index - 1] : nil
            let following = index + 1 < scalars.count ? scalars[index + 1] : nil
            var next: Readings = []
            if readings.contains(.outside) {
                if scalar == "#" && (previous.map { $0.isYAMLBlank || $0.isYAMLLineBreak } ?? true) {
                    next.insert(.comment)
                } else {
                    next.insert(.outside)
                    if tokenCanStart(after: previous) {
                        if scalar == "&" || scalar == "*", let following, isAnchorCharacter(following) {
                            throw PackError(position.location(in: file), message(document: document))
                        }
                        if scalar == "\"" { next.insert(.doubleQuoted) }
                        if scalar == "'" { next.insert(.singleQuoted) }
                    }
                }
            }
            if readings.contains(.comment) { next.insert(scalar.isYAMLLineBreak ? .outside : .comment) }
            if readings.contains(.singleQuoted) {
                // '' is a quote inside single quotes.
                next.insert(scalar != "'" ? .singleQuoted : following == "'" ? .singleQuotedEscape : .outside)
            }
            if readings.contains(.singleQuotedEscape) { next.insert(.singleQuoted) }
            if readings.contains(.doubleQuoted) {
                next.insert(scalar == "\\" ? .doubleQuotedEscape : scalar == "\"" ? .outside : .doubleQuoted)
            }
            if readings.contains(.doubleQuotedEscape) { next.insert(.doubleQuoted) }
            readings = next
            position.advance(past: scalar)
        }
    }

    /// The ways the text read so far could be read, all followed at once.
    private struct Readings: OptionSet {
        let rawValue: UInt8
        static let outside = Readings(rawValue: 1 << 0)
        static let comment = Readings(rawValue: 1 << 1)
        static let singleQuoted = Readings(rawValue: 1 << 2)
        /// Just after the first quote of a `''` pair.
        static let singleQuotedEscape = Readings(rawValue: 1 << 3)
        static let doubleQuoted = Readings(rawValue: 1 << 4)
        /// Just after a backslash.
        static let doubleQuotedEscape = Readings(rawValue: 1 << 5)
    }

    /// Whether libyaml could start a token right after `previous`: at the start of the text or
    /// a line, after a blank or byte order mark, or after an indicator or quote that ends the
    /// token before (`{?*a: 1}` and `{a:*b}` are aliases in flow collections). Inside a plain
    /// scalar, `*` and `&` are text.
    private static func tokenCanStart(after previous: Unicode.Scalar?) -> Bool {
        guard let previous else { return true }
        return previous.isYAMLBlank || previous.isYAMLLineBreak
            || "\u{FEFF}[]{},:?\"'".unicodeScalars.contains(previous)
    }

    private static func isAnchorCharacter(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar {
        case "0"..."9", "A"..."Z", "a"..."z", "_", "-": true
        default: false
        }
    }
}
