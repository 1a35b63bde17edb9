import Foundation
import TestSupport
import XCTest

/// What rust/hyper refuses without building a Rust program; its scenarios, with builds, are in
/// NativeScenarios.swift.
final class HyperTests: XCTestCase {
    func testProgramWithoutTheCrateIsSaidWhy() throws {
        let other = try runSonde(["plan", "--exe", "/bin/ls", "--pack", "rust/hyper"])
        XCTAssertEqual(other.exit, 1)
        XCTAssertTrue(other.output.contains(
            "  rust/hyper/server: /bin/ls names no hyper-VERSION/src/ folder in its panic locations, so the hyper it was built with is unknown; "
                + "the pack covers >=0.14 <0.15\n"), other.output)
    }
}
