import BinaryAnalysis
import Foundation
import XCTest

/// Files that are not Go programs, or not programs at all.
final class NonGoFileTests: XCTestCase {
    func testNativeExecutableHasNoGoBuildInfo() throws {
        let facts = try BinaryAnalyzer.analyze(path: "/bin/ls", functions: ["main", "no_such_function"], dataSymbols: ["no_such_symbol"])
        XCTAssertNil(facts.goBuild)
        XCTAssertTrue(facts.isPositionIndependent, "Debian builds /bin/ls as PIE")
        XCTAssertNil(facts.functions["no_such_function"])
        XCTAssertTrue(facts.dataSymbols.isEmpty)
    }

    /// The GNU linker's id, as `readelf -n` prints it; none in a file that is no program.
    func testBuildIDOfANativeExecutableIsTheGNUOne() throws {
        let readelf = Process()
        readelf.executableURL = URL(fileURLWithPath: "/usr/bin/readelf")
        readelf.arguments = ["-n", "/bin/ls"]
        let output = Pipe()
        readelf.standardOutput = output
        try readelf.run()
        let notes = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        readelf.waitUntilExit()
        let printed = try XCTUnwrap(notes.components(separatedBy: "Build ID: ").dropFirst().first?.prefix { $0.isHexDigit })
        XCTAssertEqual(printed.count, 40, "SHA-1, as Debian links")
        XCTAssertEqual(BinaryAnalyzer.buildID(path: "/bin/ls"), "gnu:\(printed)")
        XCTAssertNil(BinaryAnalyzer.buildID(path: "/etc/hostname"))
        XCTAssertNil(BinaryAnalyzer.buildID(path: "/no/such/file"))
    }

    func testTextFileIsNotELF() throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("sonde-not-elf-\(ProcessInfo.processInfo.processIdentifier).txt")
        try "#!/bin/sh\nexec ./server\n".write(to: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: file) }
        XCTAssertThrowsError(try BinaryAnalyzer.analyze(path: file.path, functions: [], dataSymbols: [])) { error in
            XCTAssertEqual(error as? BinaryAnalysisError, .notELF(path: file.path))
            XCTAssertTrue("\(error)".hasPrefix("\(file.path): not an ELF file"), "\(error)")
        }
    }

    func testMissingFileSaysSo() {
        XCTAssertThrowsError(try BinaryAnalyzer.analyze(path: "/no/such/server", functions: [], dataSymbols: [])) { error in
            XCTAssertEqual("\(error)", "cannot open /no/such/server: No such file or directory")
        }
    }

    func testDirectoryIsRejected() {
        XCTAssertThrowsError(try BinaryAnalyzer.analyze(path: "/tmp", functions: [], dataSymbols: [])) { error in
            XCTAssertNotNil(error as? BinaryAnalysisError, "\(error)")
            XCTAssertTrue("\(error)".contains("/tmp"), "\(error)")
        }
    }
}
