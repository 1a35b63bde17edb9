import Foundation
import SondeABI

/// Engine failures, each saying what to do about it.
public enum EngineError: Error, CustomStringConvertible, Equatable {
    case missingCapabilities([String])
    case bpfLoadFailed(step: String, errno: Int32)
    case programTooLong(ops: Int, limit: Int)
    case literalsTooLong([String], slots: Int, bytes: Int)
    case nothingAttached(failures: [String])
    case layoutMismatch(map: String, bpfSize: Int, swiftSize: Int)
    case configurationsFull(needed: Int, free: Int)

    public var description: String {
        switch self {
        case .missingCapabilities(let missing):
            return "cannot trace on this machine:\n" + missing.map { "  - \($0)" }.joined(separator: "\n")
        case .bpfLoadFailed(let step, let errno):
            return "loading the BPF program failed at \(step): \(errorText(errno)) (libbpf's log above has the verifier's reasons)"
        case .programTooLong(let ops, let limit):
            return "a fetch program has \(ops) ops; the BPF program runs at most \(limit) for this probe. Capture fewer values, or reach them by shorter paths"
        case .literalsTooLong(let literals, let slots, let bytes):
            return "a probe compares or writes the header names \(literals); the BPF program holds at most \(slots) names of 1 to \(bytes) bytes"
        case .layoutMismatch(let map, let bpfSize, let swiftSize):
            return "internal error: map \(map) holds \(bpfSize)-byte values but Engine/RecordLayout.swift encodes \(swiftSize); update it with bpf/sonde_abi.h"
        case .configurationsFull(let needed, let free):
            return "no room for another binary's probes: it needs \(needed) probe configurations and at most \(free) are free "
                + "(\(SONDE_MAX_PROBE_CONFIGS) in all, shared by every binary traced); trace fewer distinct binaries or enable fewer packs"
        case .nothingAttached(let failures):
            return "no probe site could be attached:\n" + failures.map { "  - \($0)" }.joined(separator: "\n")
        }
    }
}

func errorText(_ code: Int32) -> String {
    String(cString: strerror(code))
}
