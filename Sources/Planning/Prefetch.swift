import BinaryAnalysis
import SondeABI

/// A block of memory at an argument register that a span probe's entry reads in one go: the
/// entry and trace-context programs' fixed-offset reads inside it then come from that copy
/// instead of one kernel read each, which is most of what an entry costs (e.g. the Method, URL,
/// Header, Host and TLS fields of an `*http.Request`: five reads become one).
public struct Prefetch: Sendable, Equatable, CustomStringConvertible {
    public var register: Register
    /// Bytes read from the register's address.
    public var length: Int
    /// Reads of the programs that the block serves.
    public var reads: Int

    /// The most bytes one block holds (the BPF program's buffer).
    public static let maxLength = Int(SONDE_PREFETCH_SIZE)
    /// A block is read only when it replaces at least this many reads: the block is a read too.
    static let minReads = 3

    public init(register: Register, length: Int, reads: Int) {
        self.register = register
        self.length = length
        self.reads = reads
    }

    public var description: String { "prefetch \(length) bytes at \(register): \(reads) reads come from that copy" }

    /// The block for these programs, or nil when none replaces enough reads: the register whose
    /// address, plus a fixed offset, most reads start from (8-byte loads and Go string headers)
    /// within the first `maxLength` bytes.
    public static func choose(for programs: [[FetchOp]]) -> Prefetch? {
        var reads: [Register: [(offset: Int64, size: Int64)]] = [:]
        for program in programs {
            // The register the working value came from, and the offset added to it since.
            var base: (register: Register, offset: Int64)?
            for op in program {
                switch op {
                case .loadRegister(let register):
                    base = (register, 0)
                case .add(let offset):
                    base?.offset += offset
                case .save:
                    break   // keeps the value
                case .dereference, .readInteger(size: 8, into: _):
                    if let base { reads[base.register, default: []].append((base.offset, 8)) }
                    base = nil
                case .readGoString:
                    if let base { reads[base.register, default: []].append((base.offset, 16)) }
                    base = nil
                default:
                    base = nil
                }
            }
        }
        let candidates = reads.compactMap { register, reads -> Prefetch? in
            let inside = reads.filter { $0.offset >= 0 && $0.offset + $0.size <= Int64(maxLength) }
            guard inside.count >= minReads, let end = inside.map({ $0.offset + $0.size }).max() else { return nil }
            return Prefetch(register: register, length: Int(end), reads: inside.count)
        }
        return candidates.max { ($0.reads, -$0.length, -$0.register.rawValue) < ($1.reads, -$1.length, -$1.register.rawValue) }
    }
}
