import BinaryAnalysis
import SondeABI

/// A block of memory at an argument register that a span probe's entry reads in one go: the
/// entry and trace-context programs' fixed-offset reads inside it then come from that copy
/// instead of one kernel read each, which is most of what an entry costs (e.g. the Method, URL,
/// Header, Host and TLS fields of an `*http.Request`: five reads become one). With it, a second
/// block at a pointer the first one holds, when several reads start from that pointer (a client
/// request's `*url.URL`: its scheme, host, path and query headers, four reads become one).
public struct Prefetch: Sendable, Equatable, CustomStringConvertible {
    public var register: Register
    /// Bytes read from the register's address.
    public var length: Int
    /// Reads of the programs that the block serves.
    public var reads: Int
    /// The block at a pointer inside this one, or nil.
    public var object: ObjectBlock?

    /// The second block: `length` bytes at the pointer `pointerOffset` bytes into the first.
    public struct ObjectBlock: Sendable, Equatable {
        public var pointerOffset: Int
        public var length: Int
        public var reads: Int

        public init(pointerOffset: Int, length: Int, reads: Int) {
            self.pointerOffset = pointerOffset
            self.length = length
            self.reads = reads
        }
    }

    /// The most bytes one block holds (the BPF program's buffer).
    public static let maxLength = Int(SONDE_PREFETCH_SIZE)
    /// A block is read only when it replaces at least this many reads: the block is a read too.
    static let minReads = 3

    public init(register: Register, length: Int, reads: Int, object: ObjectBlock? = nil) {
        self.register = register
        self.length = length
        self.reads = reads
        self.object = object
    }

    public var description: String {
        let first = "prefetch \(length) bytes at \(register): \(reads) reads come from that copy"
        guard let object else { return first }
        return first + "; \(object.length) bytes at the pointer at \(register)+\(object.pointerOffset): \(object.reads) more"
    }

    /// Where a read starts: a register plus an offset, or the pointer read at a register plus an
    /// offset, plus an offset.
    private enum ReadBase: Hashable {
        case register(Register)
        case object(Register, pointerOffset: Int64)
    }

    /// The block for these programs, or nil when none replaces enough reads: the register whose
    /// address, plus a fixed offset, most reads start from (8-byte loads and Go string headers)
    /// within the first `maxLength` bytes; and in it, the pointer that most further reads start
    /// from, likewise.
    public static func choose(for programs: [[FetchOp]]) -> Prefetch? {
        var reads: [ReadBase: [(offset: Int64, size: Int64)]] = [:]
        for program in programs {
            // What the working value came from, and the offset added to it since.
            var base: (from: ReadBase, offset: Int64)?
            for op in program {
                switch op {
                case .loadRegister(let register):
                    base = (.register(register), 0)
                case .add(let offset):
                    base?.offset += offset
                case .save:
                    break   // keeps the value
                case .dereference, .readInteger(size: 8, into: _):
                    if let base { reads[base.from, default: []].append((base.offset, 8)) }
                    // A pointer read at a register plus an offset: the reads after it start from that object.
                    if case .dereference = op, let pointer = base, case .register(let register) = pointer.from {
                        base = (.object(register, pointerOffset: pointer.offset), 0)
                    } else {
                        base = nil
                    }
                case .readGoString:
                    if let base { reads[base.from, default: []].append((base.offset, 16)) }
                    base = nil
                default:
                    base = nil
                }
            }
        }
        /// The length that covers these reads and how many it serves, when enough do.
        func block(_ reads: [(offset: Int64, size: Int64)]) -> (length: Int, reads: Int)? {
            let inside = reads.filter { $0.offset >= 0 && $0.offset + $0.size <= Int64(maxLength) }
            guard inside.count >= minReads, let end = inside.map({ $0.offset + $0.size }).max() else { return nil }
            return (Int(end), inside.count)
        }
        let candidates = reads.compactMap { base, reads -> Prefetch? in
            guard case .register(let register) = base, let block = block(reads) else { return nil }
            return Prefetch(register: register, length: block.length, reads: block.reads)
        }
        guard var chosen = candidates.max(by: {
            ($0.reads, -$0.length, -$0.register.rawValue) < ($1.reads, -$1.length, -$1.register.rawValue)
        }) else { return nil }
        let objects = reads.compactMap { base, reads -> ObjectBlock? in
            guard case .object(chosen.register, let pointerOffset) = base, pointerOffset >= 0,
                  pointerOffset + 8 <= Int64(chosen.length), let block = block(reads) else { return nil }
            return ObjectBlock(pointerOffset: Int(pointerOffset), length: block.length, reads: block.reads)
        }
        chosen.object = objects.max { ($0.reads, -$0.pointerOffset) < ($1.reads, -$1.pointerOffset) }
        return chosen
    }
}
