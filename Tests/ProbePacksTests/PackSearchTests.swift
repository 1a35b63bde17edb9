import Foundation
import ProbePacks
import XCTest

/// Looking for pack files: bounded, and every place that yields nothing says why.
final class PackSearchTests: XCTestCase {
    private var directory: URL!

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("sonde-search-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: directory)
    }

    private static let tooBig =
        "not searched: a pack folder may hold at most 10000 files and folders, at most 8 levels deep, and this one is bigger;"
        + " point --packs or SONDE_PACK_PATH at the folder that holds the packs"

    func testSearchRefusesFoldersNestedDeeperThanTheLimit() throws {
        let deep = (1...9).reduce(directory) { folder, level in folder.appendingPathComponent("level\(level)") }
        try FileManager.default.createDirectory(at: deep, withIntermediateDirectories: true)
        try PackLoaderRobustnessTests.validProbe.write(
            to: deep.appendingPathComponent("deep.yaml"),
            atomically: true,
            encoding: .utf8
        )
        let catalog = PackCatalog.load(paths: [directory.path])
        XCTAssertEqual(catalog.packs.map(\.name), [])
        XCTAssertEqual(catalog.errors.map(\.description), ["\(directory.path): \(Self.tooBig)"])
    }

    func testSearchRefusesFoldersWithMoreEntriesThanTheLimit() throws {
        for index in 0..<4 {
            try PackLoaderRobustnessTests.validProbe.write(
                to: directory.appendingPathComponent("pack\(index).yaml"),
                atomically: true,
                encoding: .utf8
            )
        }
        let search = PackSearch.find(in: [directory.path], limits: PackSearch.Limits(depth: 8, entries: 3))
        XCTAssertEqual(search.files, [])
        XCTAssertEqual(
            search.problems.map(\.description),
            [
                "\(directory.path): not searched: a pack folder may hold at most 3 files and folders, at most 8 levels deep, and this one is bigger;"
                    + " point --packs or SONDE_PACK_PATH at the folder that holds the packs"
            ]
        )
        XCTAssertEqual(
            PackSearch.find(in: [directory.path], limits: PackSearch.Limits(depth: 8, entries: 4)).files.count,
            4
        )
    }

    func testFolderSymbolicLinkLoopIsReportedAndTheRestSearched() throws {
        let folder = directory.appendingPathComponent("go")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        try PackLoaderRobustnessTests.validProbe.write(
            to: folder.appendingPathComponent("example.yaml"),
            atomically: true,
            encoding: .utf8
        )
        try FileManager.default.createSymbolicLink(
            atPath: folder.appendingPathComponent("up").path,
            withDestinationPath: ".."
        )
        let catalog = PackCatalog.load(paths: [directory.path])
        XCTAssertEqual(catalog.packs.map(\.name), ["go/example"])
        XCTAssertEqual(
            catalog.errors.map(\.description),
            [
                "\(folder.path)/up: not searched: it leads back to \(directory.path), a folder that contains it (a symbolic link or mount loop)"
            ]
        )
    }

    /// A user's packs add to the shipped ones; the first definition of a name wins, in the order
    /// `--packs`, `SONDE_PACK_PATH`, shipped; a shipped pack a user's replaces is noted, not an error.
    func testUserPacksAddToTheShippedOnesAndReplaceThoseOfTheSameName() throws {
        func folder(_ name: String, packs: [String]) throws -> String {
            let folder = directory.appendingPathComponent(name)
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            for pack in packs {
                let text = PackLoaderRobustnessTests.validProbe.replacingOccurrences(of: "pack: go/example", with: "pack: \(pack)")
                try text.write(to: folder.appendingPathComponent(pack.replacingOccurrences(of: "/", with: "-") + ".yaml"), atomically: true, encoding: .utf8)
            }
            return folder.path
        }
        let flag = try folder("flag", packs: ["go/mine", "go/net-http"])
        let environment = try folder("environment", packs: ["go/mine", "go/theirs"])
        let shipped = try folder("shipped", packs: ["go/net-http", "go/grpc"])
        var path = PackCatalog.searchPath(userPaths: [flag], environment: ["SONDE_PACK_PATH": environment], executable: "/nonexistent/sonde")
        XCTAssertEqual(path.userPaths, [flag, environment])
        path.shipped = shipped
        let catalog = PackCatalog.load(path)
        XCTAssertEqual(catalog.packs.map(\.name), ["go/mine", "go/net-http", "go/theirs", "go/grpc"])
        XCTAssertEqual(catalog.packs.map(\.source.file), [
            "\(flag)/go-mine.yaml", "\(flag)/go-net-http.yaml", "\(environment)/go-theirs.yaml", "\(shipped)/go-grpc.yaml",
        ])
        XCTAssertEqual(catalog.errors.map(\.description), [
            "\(environment)/go-mine.yaml:1:1: pack 'go/mine' is also defined at \(flag)/go-mine.yaml:1:1; the first one is used"
        ])
        XCTAssertEqual(catalog.replacedShippedPacks, [
            "pack 'go/net-http' from \(flag)/go-net-http.yaml replaces the shipped one at \(shipped)/go-net-http.yaml"
        ])
        let selected = PackCatalog.load(path, only: ["go/grpc", "go/mine", "go/nope"])
        XCTAssertEqual(selected.packs.map(\.name), ["go/mine", "go/grpc"])
        XCTAssertEqual(selected.unmatched, ["go/nope"])
    }

    /// `SONDE_PACK_PATH=':::'` used to search nothing and say nothing.
    func testEmptySearchPathEntriesAreReported() {
        let path = PackCatalog.searchPath(environment: ["SONDE_PACK_PATH": ":::"], executable: "/nonexistent/sonde")
        XCTAssertEqual(path, PackCatalog.SearchPath(userPaths: ["", "", "", ""], shipped: nil))
        let catalog = PackCatalog.load(path)
        XCTAssertEqual(
            catalog.errors.map(\.description),
            [
                "the pack search path ':::' has 4 empty entries (a leading, trailing or doubled ':'); each entry must name a folder or a pack file"
            ]
        )
    }

    func testFoldersWithoutPacksAndMissingPathsAreReported() throws {
        let missing = directory.appendingPathComponent("missing").path
        let catalog = PackCatalog.load(paths: [directory.path, missing])
        XCTAssertEqual(
            catalog.errors.map(\.description),
            [
                "\(directory.path): no pack files (*.yaml or *.yml) in this folder",
                "\(missing): no such file or folder",
            ]
        )
    }
}
