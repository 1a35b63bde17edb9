import BinaryAnalysis
import Planning
import XCTest

@testable import Engine

/// The bytes the Engine writes for the BPF program (bpf/sonde_abi.h), and the pre-flight checks.
final class EngineEncodingTests: XCTestCase {
    func testOpsEncodeAsSondeOpStructs() {
        func bytes(_ op: FetchOp, captureIndex: [Int: Int]) -> [UInt8] {
            withUnsafeBytes(of: RecordLayout.encode(op, captureIndex: captureIndex)) { Array($0) }
        }
        XCTAssertEqual(
            bytes(.readGoString(into: 24, maxLength: 128), captureIndex: [24: 1]),
            [7, 0, 24, 0, 128, 0, 1, 0] + [UInt8](repeating: 0, count: 8))
        XCTAssertEqual(
            bytes(.readStringRegisters(pointer: .rdi, length: .rsi, into: 0, maxLength: 200), captureIndex: [0: 0]),
            [10, 5, 0, 0, 200, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0])
        XCTAssertEqual(bytes(.setObject, captureIndex: [:]), [11] + [UInt8](repeating: 0, count: 15))
        XCTAssertEqual(bytes(.add(-8), captureIndex: [:]), [4, 0, 0, 0, 0, 0, 0, 0, 0xf8] + [UInt8](repeating: 0xff, count: 7))
        XCTAssertEqual(
            bytes(.expectAddress(0x85_eca0, meaning: "t"), captureIndex: [:]),
            [6, 0, 0, 0, 0, 0, 0, 0, 0xa0, 0xec, 0x85, 0, 0, 0, 0, 0])
    }

    func testConfigHeaderAndLimits() throws {
        let config = try RecordLayout.encodeConfig(
            role: .startSpan, spanSlot: 3, keyMode: .goroutine, skipFlagsMask: 0x41, siteAddress: 0x62_9184,
            program: [.loadRegister(.rdi)], captureSlots: [])
        XCTAssertEqual(config.count, 552)
        XCTAssertEqual(Array(config[0..<32]), [1, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0x41, 0, 0, 0, 0, 0, 0, 0, 0x84, 0x91, 0x62, 0, 0, 0, 0, 0])
        XCTAssertEqual(Array(config[32..<40]), [0xff, 0, 0, 0, 0, 0, 0, 0], "no object key")
        XCTAssertEqual(Array(config[40..<42]), [1, 5])
        let keyed = try RecordLayout.encodeConfig(
            role: .endObjectSpan, spanSlot: 3, keyMode: .goroutine, skipFlagsMask: 0, siteAddress: 0x62_9184, objectRegister: .rax,
            program: [], captureSlots: [])
        XCTAssertEqual(Array(keyed[0..<4]), [6, 0, 0, 0])
        XCTAssertEqual(Array(keyed[32..<40]), [0, 0, 0, 0, 0, 0, 0, 0], "RAX is register 0")
        XCTAssertThrowsError(try RecordLayout.encodeConfig(
            role: .endSpan, spanSlot: 0, keyMode: .thread, skipFlagsMask: 0, siteAddress: 0,
            program: Array(repeating: .dereference, count: 33), captureSlots: [])) { error in
            XCTAssertEqual("\(error)", "a fetch program has 33 ops; the BPF program runs at most 32. Capture fewer values in this probe")
        }
        XCTAssertEqual(RecordLayout.recordSize, 912)
    }

    func testMissingCapabilitiesAreListed() {
        XCTAssertEqual(KernelCapabilities.missing(procStatus: "CapEff:\t0000000000000000\n", kernelRelease: "5.10.0-28-amd64", uprobePMUExists: false), [
            "privileges: run as root, or grant CAP_BPF and CAP_PERFMON (e.g. setcap cap_bpf,cap_perfmon+ep sonde)",
            "uprobes: the kernel has no uprobe event source (/sys/bus/event_source/devices/uprobe); it needs CONFIG_UPROBE_EVENTS",
            "kernel: 5.10.0-28-amd64 is older than 5.17, which the BPF program needs (bpf_loop, BPF cookies, ring buffer)",
        ])
        XCTAssertEqual(KernelCapabilities.missing(procStatus: "CapEff:\t000000c000000000\n", kernelRelease: "6.18.4", uprobePMUExists: true), [])
        XCTAssertEqual(KernelCapabilities.missing(procStatus: "CapEff:\t0000000000200000\n", kernelRelease: "6.1.0", uprobePMUExists: true), [])
    }
}
