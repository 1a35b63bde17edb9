import CZlib

/// Inflates a compressed section a piece at a time, so that its reader keeps only the bytes it
/// needs instead of the whole inflated section (megabytes of location lists in a Go binary).
///
/// The corresponding C functions are `inflateInit` (through `sonde_inflate_init` in
/// `Sources/CZlib/shim.h`), `inflate` and `inflateEnd`.
final class SectionInflater {
    private let section: CompressedSection
    /// zlib's state points back at this address, so it lives on the heap and never moves.
    private let stream: UnsafeMutablePointer<z_stream>
    /// Where each piece is inflated to, reused from piece to piece.
    private let piece: UnsafeMutableRawBufferPointer
    /// How much of the zlib stream has been handed to zlib.
    private var inputOffset = 0
    private var isFinished = false

    /// The most one piece holds: a few pages, against the megabytes of a whole section.
    static let pieceSize = 64 * 1024

    /// - Throws: ``DWARFReader/Unreadable`` when zlib cannot start (it can only run out of memory).
    init(_ section: CompressedSection) throws {
        self.section = section
        stream = .allocate(capacity: 1)
        stream.initialize(to: z_stream())
        piece = .allocate(byteCount: Self.pieceSize, alignment: 1)
        let status = sonde_inflate_init(stream)
        guard status == Z_OK else {
            stream.deallocate()
            piece.deallocate()
            throw DWARFReader.Unreadable(reason: "zlib cannot start inflating \(section.name) (zlib status \(status))")
        }
    }

    deinit {
        inflateEnd(stream)
        stream.deallocate()
        piece.deallocate()
    }

    /// The next inflated bytes of the section, at most ``pieceSize``, valid until the next call.
    ///
    /// - Returns: nil once the whole section has been inflated and zlib has checked it against
    ///   its Adler-32 checksum.
    /// - Throws: ``DWARFReader/Unreadable`` when the stream is corrupt, ends early, or inflates to
    ///   another size than the section's header claims.
    func nextPiece() throws -> UnsafeRawBufferPointer? {
        guard !isFinished else { return nil }
        if stream.pointee.avail_in == 0 {
            // avail_in is 32 bits wide: a larger stream is handed over in parts.
            let count = min(section.zlibStream.count - inputOffset, Int(UInt32.max))
            let input = section.zlibStream.baseAddress.map { $0 + inputOffset }
            // zlib reads next_in without writing it; the field is not const only for old compilers.
            stream.pointee.next_in = UnsafeMutablePointer(mutating: input?.assumingMemoryBound(to: Bytef.self))
            stream.pointee.avail_in = uInt(count)
            inputOffset += count
        }
        stream.pointee.next_out = piece.baseAddress?.assumingMemoryBound(to: Bytef.self)
        stream.pointee.avail_out = uInt(piece.count)
        let status = inflate(stream, Z_NO_FLUSH)
        let inflatedPiece = UnsafeRawBufferPointer(rebasing: piece[..<(piece.count - Int(stream.pointee.avail_out))])
        let inflated = UInt64(stream.pointee.total_out)
        guard inflated <= section.inflatedSize else {
            throw DWARFReader.Unreadable(
                reason: "\(section.name) inflates to more than the \(section.inflatedSize) bytes its header claims")
        }
        switch status {
        case Z_OK:
            return inflatedPiece
        case Z_STREAM_END:
            guard inflated == section.inflatedSize else {
                throw DWARFReader.Unreadable(
                    reason:
                        "\(section.name) inflates to \(inflated) bytes, not the \(section.inflatedSize) its header claims"
                )
            }
            isFinished = true
            return inflatedPiece
        case Z_BUF_ERROR:  // no progress with room to write: the input has run out
            throw DWARFReader.Unreadable(
                reason: "the zlib stream of \(section.name) ends after \(inflated) of its \(section.inflatedSize) bytes"
            )
        default:
            let message = stream.pointee.msg.map { String(cString: $0) } ?? "status \(status)"
            throw DWARFReader.Unreadable(reason: "inflating \(section.name) failed (zlib: \(message))")
        }
    }
}
