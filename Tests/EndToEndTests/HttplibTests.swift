import Foundation
import TestSupport
import XCTest

/// The cpp/httplib plan on Debian's library; its scenario is in NativeScenarios.swift.
final class HttplibTests: XCTestCase {
    static let library = "/usr/lib/x86_64-linux-gnu/libcpp-httplib.so.0.11"

    /// `sonde plan` on the library: the span opens at routing's first push and ends at the tail
    /// jump of either response writer, every site one the kernel emulates.
    func testPlanOfTheLibraryUsesOnlyEmulatedSites() throws {
        let plan = try ChildProcess.run(Repository.sonde, ["plan", "--exe", Self.library, "--pack", "cpp/httplib"])
        XCTAssertTrue(plan.hasPrefix("attach plan for \(Self.library) (not Go, shared library libcpp-httplib.so.0.11 0.11.4)"), plan)
        let sites = plan.split(separator: "\n").filter { $0.hasPrefix("  entry  0x") || $0.hasPrefix("  return 0x") }
        XCTAssertEqual(sites.count, 3, plan)
        XCTAssertTrue(sites[0].contains("  push r15  [emulated (cheap)]"), plan)
        XCTAssertTrue(sites[1...].allSatisfy { $0.contains("  jmp 0x") && $0.hasSuffix("[emulated (cheap)]") }, plan)
        XCTAssertTrue(plan.hasSuffix("per request, if each probed function runs once: 3 emulated + 0 single-stepped hits ≈ 1.95 µs of traps\n"), plan)
    }
}
