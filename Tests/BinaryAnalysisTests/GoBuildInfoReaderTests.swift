@testable import BinaryAnalysis
import XCTest

/// Build info laid out by hand the way the Go ≥ 1.18 linker writes it.
final class GoBuildInfoReaderTests: XCTestCase {
    /// Go's module info sentinels (runtime/debug `modinfoStart` / `modinfoEnd`), not valid UTF-8.
    private let startSentinel: [UInt8] = [0x30, 0x77, 0xaf, 0x0c, 0x92, 0x74, 0x08, 0x02, 0x41, 0xe1, 0xc1, 0x07, 0xe6, 0xd6, 0x18, 0xe6]
    private let endSentinel: [UInt8] = [0xf9, 0x32, 0x43, 0x31, 0x86, 0x18, 0x20, 0x72, 0x00, 0x82, 0x42, 0x10, 0x41, 0x16, 0xd8, 0xf2]

    private func header(flags: UInt8) -> [UInt8] {
        GoBuildInfoReader.magic + [8, flags] + [UInt8](repeating: 0, count: 16)
    }

    private func lengthPrefixed(_ bytes: [UInt8]) -> [UInt8] {
        var length = bytes.count
        var encoded: [UInt8] = []
        repeat {
            encoded.append(UInt8(length & 0x7f) | (length >= 0x80 ? 0x80 : 0))
            length >>= 7
        } while length > 0
        return encoded + bytes
    }

    private func parse(_ bytes: [UInt8]) throws -> GoBuildInfo? {
        try bytes.withUnsafeBytes { try GoBuildInfoReader.parse($0) }
    }

    func testParsesVersionModulesAndReplacements() throws {
        let moduleInfo = """
            path\texample.com/server
            mod\texample.com/server\t(devel)\t
            dep\tgithub.com/gorilla/mux\tv1.8.0\th1:i40aqfkR1h2SlN9hojwV5ZA91wcXFOvkdNIeFDP5koI=
            dep\tgoogle.golang.org/grpc\tv1.33.0
            =>\tgithub.com/fork/grpc\tv1.33.1-fork\th1:abc=
            build\t-compiler=gc

            """
        // Long enough that its length takes a two-byte uvarint.
        let info = try parse(
            header(flags: 2) + lengthPrefixed(Array("go1.21.4".utf8))
                + lengthPrefixed(startSentinel + Array(moduleInfo.utf8) + endSentinel))
        XCTAssertEqual(info, GoBuildInfo(goVersion: "go1.21.4", mainModule: "example.com/server", dependencies: [
            GoModule(path: "github.com/gorilla/mux", version: "v1.8.0"),
            GoModule(path: "google.golang.org/grpc", version: "v1.33.1-fork"),
        ]))
    }

    func testGOPATHBuildHasNoMainModule() throws {
        let moduleInfo = "path\tcommand-line-arguments\nbuild\t-compiler=gc\n"
        let info = try parse(header(flags: 2) + lengthPrefixed(Array("go1.19.8".utf8))
            + lengthPrefixed(startSentinel + Array(moduleInfo.utf8) + endSentinel))
        XCTAssertEqual(info, GoBuildInfo(goVersion: "go1.19.8", mainModule: "", dependencies: []))
    }

    func testPreGo118LayoutIsRejected() {
        XCTAssertThrowsError(try parse(header(flags: 0) + [UInt8](repeating: 0, count: 32)))
    }

    func testWithoutMagicIsNotGo() throws {
        XCTAssertNil(try parse([UInt8](repeating: 0x41, count: 64)))
    }

    func testTruncatedStringsAreNotGo() throws {
        XCTAssertNil(try parse(header(flags: 2) + [0x7f, 0x67, 0x6f]))
    }
}
