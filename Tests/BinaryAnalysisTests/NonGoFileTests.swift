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

    /// A C++ library's functions are found by the names `c++filt` prints, at the address its
    /// dynamic symbol table gives the mangled symbol (read here by readelf, not by Sonde).
    func testCppFunctionsAreFoundByTheirDemangledNames() throws {
        let library = "/usr/lib/x86_64-linux-gnu/libcpp-httplib.so.0.11"
        let readelf = Process()
        readelf.executableURL = URL(fileURLWithPath: "/usr/bin/readelf")
        readelf.arguments = ["--dyn-syms", "-W", library]
        let output = Pipe()
        readelf.standardOutput = output
        try readelf.run()
        let symbols = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        readelf.waitUntilExit()
        func address(of mangled: String) throws -> UInt64 {
            let fields = try XCTUnwrap(symbols.split(separator: "\n").map { $0.split(separator: " ") }.first { $0.count >= 8 && $0[7] == mangled })
            return try XCTUnwrap(UInt64(fields[1], radix: 16))
        }
        let routing = "httplib::Server::routing(httplib::Request&, httplib::Response&, httplib::Stream&)"
        let writeResponse = "httplib::Server::write_response(httplib::Stream&, bool, httplib::Request const&, httplib::Response&)"
        let facts = try BinaryAnalyzer.analyze(path: library, functions: [routing, writeResponse, "httplib::Server::routing"], dataSymbols: [])
        XCTAssertEqual(facts.soname, "libcpp-httplib.so.0.11")
        XCTAssertEqual(facts.libraryVersion, "0.11.4")
        XCTAssertEqual(facts.functions[routing]?.address, try address(of: "_ZN7httplib6Server7routingERNS_7RequestERNS_8ResponseERNS_6StreamE"))
        XCTAssertEqual(
            facts.functions[writeResponse]?.address, try address(of: "_ZN7httplib6Server14write_responseERNS_6StreamEbRKNS_7RequestERNS_8ResponseE"))
        XCTAssertNil(facts.functions["httplib::Server::routing"], "a C++ name includes its parameters: overloads differ only there")
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
