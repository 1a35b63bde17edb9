import Foundation
import ProbePacks
import TestSupport
import XCTest

/// Mutations of every shipped pack, from a fixed seed: each must load as a pack or be refused
/// with errors that all name a line, never crash or hang the loader. `SONDE_FUZZ_CASES` asks
/// for more cases than the quick default, `SONDE_FUZZ_SEED` for another sequence.
final class PackFuzzTests: XCTestCase {
    static let defaultCases = 10_000

    func testMutatedShippedPacksLoadOrAreRefusedWithLocatedErrors() throws {
        let environment = ProcessInfo.processInfo.environment
        let cases = environment["SONDE_FUZZ_CASES"].flatMap(Int.init) ?? Self.defaultCases
        let seed = environment["SONDE_FUZZ_SEED"].flatMap(UInt64.init) ?? 0x50_4e_44_45
        let folder = TestEnvironment.repositoryRoot + "/probe-packs/go"
        let originals = try FileManager.default.contentsOfDirectory(atPath: folder).filter { $0.hasSuffix(".yaml") }.sorted()
            .map { try String(contentsOfFile: "\(folder)/\($0)", encoding: .utf8) }
        XCTAssertEqual(originals.count, 4)

        var generator = PackMutator(seed: seed)
        var loaded = 0
        var refused = 0
        for number in 0..<cases {
            let text = generator.mutate(originals[number % originals.count])
            do {
                _ = try PackLoader.parse(yaml: text, file: "case-\(number).yaml")
                loaded += 1
            } catch let error as PackLoadError {
                refused += 1
                let unlocated = error.errors.filter { $0.location.line < 1 }
                XCTAssertEqual(unlocated, [], "case \(number) (seed \(seed)) has errors without a line:\n\(text)")
            }
        }
        XCTAssertEqual(loaded + refused, cases)
        XCTAssertGreaterThan(refused, 0, "the mutations must break some packs")
        XCTAssertGreaterThan(loaded, 0, "some mutations (in comments, in values) must leave a valid pack")
        print("pack fuzzing, seed \(seed): \(cases) cases, \(loaded) loaded, \(refused) refused with located errors")
    }
}

/// Seeded, so a failing case can be replayed: SplitMix64 picks mutations of a pack's text.
struct PackMutator {
    private var state: UInt64

    init(seed: UInt64) { state = seed }

    private mutating func next() -> UInt64 {
        state &+= 0x9e37_79b9_7f4a_7c15
        var mixed = state
        mixed = (mixed ^ (mixed >> 30)) &* 0xbf58_476d_1ce4_e5b9
        mixed = (mixed ^ (mixed >> 27)) &* 0x94d0_49bb_1331_11eb
        return mixed ^ (mixed >> 31)
    }

    private mutating func below(_ bound: Int) -> Int { Int(next() % UInt64(max(bound, 1))) }

    /// What YAML and the pack format give meaning to, and values of the wrong kind.
    private static let tokens = [
        ":", "{", "}", "[", "]", ",", "-", "#", "&a", "*a", "!!binary", "|", ">", "'", "\"", "\n", "\t", "  ", "? ", "~", "null",
        "1e999", "-1", "0x", "99999999999999999999", "(*", ")", ".", "go-string", "result: 0", "arg: x", "{capture}", "\u{0}", "é",
        "\u{FEFF}", "%YAML 1.1", "---", "...",
    ]

    /// One to three mutations: a token replacing or inserted at a byte, a cut range, a repeated
    /// or swapped line, or the text cut short.
    mutating func mutate(_ original: String) -> String {
        var bytes = Array(original.utf8)
        for _ in 0...below(3) {
            guard !bytes.isEmpty else { break }
            let at = below(bytes.count)
            switch below(6) {
            case 0:
                bytes.replaceSubrange(at..<(at + 1), with: Array(Self.tokens[below(Self.tokens.count)].utf8))
            case 1:
                bytes.insert(contentsOf: Array(Self.tokens[below(Self.tokens.count)].utf8), at: at)
            case 2:
                bytes.removeSubrange(at..<min(bytes.count, at + 1 + below(20)))
            case 3, 4:
                var lines = bytes.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).map(Array.init)
                let line = below(lines.count)
                if below(2) == 0 {
                    lines.insert(lines[line], at: line)
                } else {
                    lines.swapAt(line, below(lines.count))
                }
                bytes = Array(lines.joined(separator: [UInt8(ascii: "\n")]))
            default:
                bytes.removeSubrange(at...)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
