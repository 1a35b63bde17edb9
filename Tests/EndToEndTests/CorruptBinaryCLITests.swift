import Foundation
import TestSupport
import XCTest

/// `sonde plan` on damaged copies of the demo server, run as a child process so that a trap or a
/// hang shows as a failed test rather than a crashed or stuck test runner. Every damaged file must
/// give a clear error (exit 1) or a plan (exit 0) whose sites are all sites of the intact binary.
final class CorruptBinaryCLITests: XCTestCase {
    private static let serveHTTP = "net/http.serverHandler.ServeHTTP"

    override class func tearDown() {
        try? FileManager.default.removeItem(at: directory)
        super.tearDown()
    }

    private static let directory = FileManager.default.temporaryDirectory.appendingPathComponent(
        "sonde-corrupt-cli-\(getpid())")

    private func demoServer() throws -> (path: String, elf: ELFBytes) {
        guard FileManager.default.isExecutableFile(atPath: GoToolchains.debian) else {
            throw TestEnvironment.missingInstall("Debian's Go at \(GoToolchains.debian)")
        }
        let path = try GoToolchains.build("demo/go-http-server", with: GoToolchains.debian, name: "demo-go119")
        return (path, try ELFBytes(path: path))
    }

    private func sonde(_ arguments: [String], timeout: TimeInterval = 20) throws -> (exit: Int32?, signal: Int32?, output: String) {
        try runSonde(arguments, timeout: timeout)
    }

    private func write(_ elf: ELFBytes, named name: String) throws -> String {
        try FileManager.default.createDirectory(at: Self.directory, withIntermediateDirectories: true)
        let path = Self.directory.appendingPathComponent(name).path
        try Data(elf.bytes).write(to: URL(fileURLWithPath: path))
        return path
    }

    private func hex(_ value: UInt64) -> String { String(value, radix: 16) }

    // MARK: Defects from the review

    /// Go never reads `.symtab`, so the server runs fine with ServeHTTP's symbol moved 10 bytes
    /// into its code; a probe there would split an instruction and kill it on its first request.
    func testSymbolMovedIntoAnInstructionIsRefusedAndOtherProbesStillPlan() throws {
        var (_, elf) = try demoServer()
        let entry = try elf.symbolEntry(named: Self.serveHTTP)
        let start = elf.value(at: entry + 8, size: 8)
        elf.store(start + 10, at: entry + 8, size: 8)
        let result = try sonde(["plan", "--exe", try write(elf, named: "symbol-moved"), "--pack", "go/net-http"])
        XCTAssertEqual(result.exit, 0, result.output)
        let reason =
            "\(Self.serveHTTP): the binary disagrees with itself on where it starts "
            + "(.symtab: 0x\(hex(start + 10)); .gopclntab, Go's function table: 0x\(hex(start)); DWARF: 0x\(hex(start))); "
            + "a probe inside an instruction would crash the program, so none is placed on it (was the file altered after linking?)"
        XCTAssertTrue(result.output.contains("skipped probes:\n  go/net-http/server: \(reason)\n"), result.output)
        XCTAssertFalse(result.output.contains("probe go/net-http/server "), result.output)
        XCTAssertTrue(
            result.output.contains("probe go/net-http/client "), "the client probe is unaffected:\n\(result.output)")
        XCTAssertFalse(
            result.output.contains("0x\(hex(start + 10))  "), "no site at the moved address:\n\(result.output)")
    }

    /// `p_offset + (address - p_vaddr)` used to overflow and trap (SIGILL).
    func testLoadSegmentOffsetThatOverflowsIsAnErrorNotATrap() throws {
        var (_, elf) = try demoServer()
        let text = try XCTUnwrap(elf.loadSegmentIndexes.first)
        let fileSize = elf.value(at: elf.programHeader(text) + 32, size: 8)
        elf.store(0xffff_ffff_ffff_f000, at: elf.programHeader(text) + 8, size: 8)
        let path = try write(elf, named: "load-offset-overflows")
        let result = try sonde(["plan", "--exe", path])
        XCTAssertNil(result.signal, result.output)
        XCTAssertEqual(result.exit, 1, result.output)
        XCTAssertEqual(
            result.output,
            "Error: \(path): truncated or corrupt ELF file: program header \(text) (PT_LOAD) takes "
                + "0x\(hex(fileSize)) bytes from file offset 0xfffffffffffff000, past the end of the \(elf.bytes.count)-byte file; "
                + "the file may be damaged or still being written: copy or build the executable again\n")
    }

    func testFileCutAt64BytesSaysTheProgramHeaderTableIsOutOfBounds() throws {
        let (_, elf) = try demoServer()
        let path = try write(ELFBytes(bytes: Array(elf.bytes.prefix(64))), named: "cut-at-64")
        let result = try sonde(["plan", "--exe", path])
        XCTAssertEqual(result.exit, 1, result.output)
        XCTAssertEqual(
            result.output,
            "Error: \(path): truncated or corrupt ELF file: the program header table "
                + "(\(elf.programHeaderCount) entries of 56 bytes at file offset 0x40) runs past the end of the 64-byte file; "
                + "the file may be damaged or still being written: copy or build the executable again\n")
    }

    /// One flipped byte in the SHF_COMPRESSED `.debug_info`: the plan says DWARF is unreadable and
    /// takes the offsets from the shipped table, as for a stripped build.
    func testCorruptCompressedDWARFFallsBackToTheOffsetTable() throws {
        var (_, elf) = try demoServer()
        let range = try elf.sectionRange(named: ".debug_info")
        elf.bytes[range.lowerBound + range.count / 2] ^= 0xff
        let version = try GoToolchains.version(GoToolchains.debian)
        let result = try sonde(["plan", "--exe", try write(elf, named: "debug-info-flipped"), "--pack", "go/net-http"])
        XCTAssertEqual(result.exit, 0, result.output)
        let origin =
            "offset table \(version) (the binary's DWARF is unreadable: decompressing .debug_info failed (libelf: cannot decompress data))"
        XCTAssertTrue(
            result.output.contains("    method: go-string max 16 at data[0], offsets from \(origin)\n"), result.output)
        XCTAssertTrue(result.output.contains("    status: int at data[344], offsets from \(origin)\n"), result.output)
        // Only what Go 1.19 does not have.
        XCTAssertEqual(
            result.output.components(separatedBy: "skipped probes:\n").last?.split(separator: "\n").map { $0.components(separatedBy: ": ")[0] },
            ["  go/net-http/server-finished-internal-http2"], result.output)
    }

    func testDirectoryFIFOAndDeviceAreRefusedWithoutReading() throws {
        try FileManager.default.createDirectory(at: Self.directory, withIntermediateDirectories: true)
        let fifo = Self.directory.appendingPathComponent("fifo").path
        XCTAssertEqual(mkfifo(fifo, 0o600), 0)
        for (path, kind) in [
            (Self.directory.path, "a directory"), (fifo, "a FIFO (named pipe)"), ("/dev/zero", "a character device"),
        ] {
            let result = try sonde(["plan", "--exe", path], timeout: 10)
            XCTAssertEqual(result.exit, 1, result.output)
            XCTAssertEqual(
                result.output,
                "Error: \(path) is \(kind), not an executable file; give the path of the program's executable\n")
        }
    }

    // MARK: Reproducible damage

    /// A handful of deterministic cuts and flips across the headers, the section table, the Go
    /// function table and the build info. Each must end in exit 0 or 1 with a message, and a plan
    /// may only hold sites the intact binary's plan has.
    func testCutsAndFlipsNeverCrashOrMoveASite() throws {
        let (intactPath, intact) = try demoServer()
        let intactPlan = try sonde(["plan", "--exe", intactPath])
        XCTAssertEqual(intactPlan.exit, 0, intactPlan.output)
        let intactSites = sites(in: intactPlan.output)
        XCTAssertFalse(intactSites.isEmpty, intactPlan.output)

        let size = intact.bytes.count
        let pclntab = try intact.sectionRange(named: ".gopclntab")
        let buildInfo = try intact.sectionRange(named: ".go.buildinfo")
        let text = try XCTUnwrap(intact.loadSegmentIndexes.first)
        let damages: [(String, (inout ELFBytes) throws -> Void)] = [
            ("cut inside the ELF header", { $0.bytes.removeLast(size - 40) }),
            ("cut at 1000", { $0.bytes.removeLast(size - 1000) }),
            ("cut at half", { $0.bytes.removeLast(size / 2) }),
            ("cut inside the section table", { $0.bytes.removeLast(size - $0.sectionHeaderTableOffset - 100) }),
            ("program header table far away", { $0.store(0xffff_ffff_ffff_fff0, at: 0x20, size: 8) }),
            ("section table at the end of the file", { $0.store(UInt64(size - 10), at: 0x28, size: 8) }),
            ("65535 sections", { $0.store(0xffff, at: 0x3c, size: 2) }),
            ("section names index out of range", { $0.store(0xfff0, at: 0x3e, size: 2) }),
            (
                "text segment at the top of memory",
                { $0.store(0xffff_ffff_ffff_f000, at: $0.programHeader(text) + 16, size: 8) }
            ),
            (
                ".symtab entry size 0",
                { $0.store(0, at: $0.sectionHeader(try $0.sectionIndex(named: ".symtab")) + 56, size: 8) }
            ),
            (
                ".symtab links a bogus string table",
                { $0.store(0xffff, at: $0.sectionHeader(try $0.sectionIndex(named: ".symtab")) + 40, size: 4) }
            ),
            (".gopclntab function count huge", { $0.store(0xffff_ffff_ffff, at: pclntab.lowerBound + 8, size: 8) }),
            (
                ".gopclntab function table scrambled",
                { elf in
                    for index in stride(
                        from: pclntab.lowerBound + pclntab.count / 3, to: pclntab.lowerBound + pclntab.count / 3 + 4096,
                        by: 7)
                    {
                        elf.bytes[index] ^= 0x5a
                    }
                }
            ),
            (
                ".gopclntab offset past the end",
                {
                    $0.store(
                        0xffff_ffff_0000_0000, at: $0.sectionHeader(try $0.sectionIndex(named: ".gopclntab")) + 24,
                        size: 8)
                }
            ),
            (".go.buildinfo version length huge", { $0.bytes[buildInfo.lowerBound + 32] = 0xff }),
            (
                ".go.buildinfo cut short",
                { $0.store(20, at: $0.sectionHeader(try $0.sectionIndex(named: ".go.buildinfo")) + 32, size: 8) }
            ),
        ]
        for (name, damage) in damages {
            var damaged = intact
            try damage(&damaged)
            let path = try write(damaged, named: "damaged-\(name.replacingOccurrences(of: " ", with: "-"))")
            let result = try sonde(["plan", "--exe", path])
            XCTAssertNil(result.signal, "\(name): killed by signal \(result.signal ?? 0):\n\(result.output)")
            XCTAssertTrue(
                result.exit == 0 || result.exit == 1,
                "\(name): exit \(String(describing: result.exit)):\n\(result.output)")
            if result.exit == 1 {
                XCTAssertTrue(
                    result.output.contains("Error: ") && result.output.contains(path), "\(name): \(result.output)")
            }
            XCTAssertTrue(
                sites(in: result.output).isSubset(of: intactSites),
                "\(name): a site the intact binary does not have:\n\(result.output)")
        }
    }

    /// The `entry`/`return` lines of a plan: address, file offset and instruction.
    private func sites(in plan: String) -> Set<String> {
        Set(
            plan.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }.filter {
                $0.hasPrefix("entry ") || $0.hasPrefix("return ")
            })
    }
}
