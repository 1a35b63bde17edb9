import Foundation
import Planning
import ProbePacks
import SondeKit
import TestSupport
import XCTest

/// The shipped offset tables must say what the packs need today: a pack edit that changes the
/// functions or types its captures use, without regenerating the tables, fails here.
final class OffsetTablesAreCurrentTests: XCTestCase {
    func testShippedTablesMatchReferenceBuildsOfEveryToolchain() throws {
        try GoToolchains.requireAll()
        let catalog = PackCatalog.load(paths: ["\(Repository.root)/probe-packs"])
        XCTAssertEqual(catalog.errors, [])
        let packs = catalog.packs.filter { $0.language == .go }
        let (tables, unusable) = Planner.offsetTables(for: packs)
        XCTAssertEqual(unusable, [:])
        XCTAssertEqual(tables.keys.sorted(), packs.map(\.name).sorted(), "every Go pack ships a table")

        for go in GoToolchains.all {
            let version = try GoToolchains.version(go)
            let reference = try GoToolchains.build("probe-packs/go/reference", with: go, name: "reference-\(version)")
            // GOPATH builds carry no module versions; the table says which the reference used.
            var libraryVersions: [String: String] = [:]
            for table in tables.values where table.module != "std" {
                libraryVersions[table.module] = table.entries.first { $0.goVersion == version }?.libraryVersion
            }
            for (pack, entry) in try OffsetTableWriter.entries(reference: reference, packs: packs, libraryVersions: libraryVersions) {
                let shipped = tables[pack.name]?.entries.first { $0.goVersion == version && $0.libraryVersion == entry.libraryVersion }
                XCTAssertEqual(shipped, entry, "\(pack.name) with \(version): the table is stale; run `swift package --allow-writing-to-package-directory generate-offset-tables`")
            }
        }
    }
}
