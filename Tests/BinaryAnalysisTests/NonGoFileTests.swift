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
        let notes = try output(of: "/usr/bin/readelf", ["-n", "/bin/ls"])
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
        let symbols = try output(of: "/usr/bin/readelf", ["--dyn-syms", "-W", library])
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

    /// A pattern finds the functions whose demangled names it fits, the ones c++filt gives for
    /// the library's dynamic function symbols (demangled here by binutils, not by Sonde).
    func testFunctionPatternsMatchDemangledNames() throws {
        let library = "/usr/lib/x86_64-linux-gnu/libcpp-httplib.so.0.11"
        let demangled = try output(of: "/bin/sh", [
            "-c", "readelf --dyn-syms -W \(library) | awk '$4 == \"FUNC\" && $7 != \"UND\" { print $8 }' | c++filt",
        ]).split(separator: "\n").map(String.init)
        var expected: [String] = []
        for name in demangled where name.hasPrefix("httplib::Server::write_response") && !expected.contains(name) { expected.append(name) }
        XCTAssertGreaterThanOrEqual(expected.count, 3, "write_response, write_response_core, write_response_with_content")

        let patterns = ["httplib::Server::write_response*", "httplib::Server::routing(*)", "httplib::Nothing*"]
        let facts = try BinaryAnalyzer.analyze(path: library, functions: [], functionPatterns: patterns, dataSymbols: [])
        XCTAssertEqual(facts.patternMatches["httplib::Server::write_response*"], expected)
        XCTAssertEqual(facts.patternMatches["httplib::Server::routing(*)"], [
            "httplib::Server::routing(httplib::Request&, httplib::Response&, httplib::Stream&)",
        ])
        XCTAssertEqual(facts.patternMatches["httplib::Nothing*"], [])
        XCTAssertEqual(Set(facts.functions.keys), Set(expected).union(facts.patternMatches["httplib::Server::routing(*)"] ?? []))
    }

    func testPatternWildcardsMatchAnyRun() {
        func matches(_ pattern: String, _ name: String) -> Bool { FunctionNamePattern(pattern).matches(name) }
        XCTAssertTrue(matches("* twice<*>(*)", "int twice<int>(int)"))
        XCTAssertTrue(matches("* twice<*>(*)", "long twice<long>(long)"))
        XCTAssertFalse(matches("* twice<*>(*)", "int thrice<int>(int)"))
        XCTAssertTrue(matches("ns::f*", "ns::f"), "* matches nothing too")
        XCTAssertFalse(matches("ns::f*", "xns::f"), "the first piece anchors the start")
        XCTAssertFalse(matches("*::run()", "Handler<int>::run() const"), "the last piece anchors the end")
        XCTAssertTrue(matches("a*b*a", "abba"))
        XCTAssertFalse(matches("ab*ba", "aba"), "pieces do not overlap")
    }

    /// What `tool` prints, read to its end.
    private func output(of tool: String, _ arguments: [String]) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: tool)
        process.arguments = arguments
        let output = Pipe()
        process.standardOutput = output
        try process.run()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        return text
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
