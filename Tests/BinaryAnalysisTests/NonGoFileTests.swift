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
