/// A `.debug_loc` or `.debug_loclists` section, which Sonde reads itself rather than through
/// libdw: libdw would inflate a compressed one whole as it starts (4.85 MB in a 12 MB Go gRPC
/// client, over a third of the analysis's peak memory) to read the few lists of the parameters
/// of the functions probed.
struct LocationListSection {
    enum Contents {
        /// Stored as it is: read in place in the mapped file.
        case stored(UnsafeRawBufferPointer)
        /// Inflated as a stream on each ``LocationListSection/read(_:at:_:)``, keeping only the
        /// bytes from the offset being read on.
        case compressed(CompressedSection)
    }

    var name: String
    var contents: Contents

    /// Runs `read` on the section's bytes from each of `offsets`, in one pass over the section
    /// whatever their order. Only a stream inflated to its end is checked (Adler-32), so a
    /// compressed section is inflated whole even when the offsets read end early.
    ///
    /// - Parameters:
    ///   - what: What lies at the offsets, for errors ("location list").
    ///   - read: Reads from a cursor at the offset with the index it is given in `offsets`;
    ///     throwing ``ByteCursor/End`` means that what it reads runs past the end of the section.
    /// - Returns: What `read` returned, in the order of `offsets`.
    /// - Throws: ``DWARFReader/Unreadable`` when an offset lies past the end of the section, what
    ///   lies there runs past it, `read` throws one, or the section does not inflate.
    func read<Result>(
        _ what: String, at offsets: [UInt64], _ read: (Int, inout ByteCursor) throws -> Result
    ) throws -> [Result] {
        guard !offsets.isEmpty else { return [] }
        switch contents {
        case .stored(let bytes):
            return try zip(offsets.indices, offsets).map { index, offset in
                guard offset < UInt64(bytes.count) else {
                    throw pastTheEnd(what, at: offset, size: UInt64(bytes.count))
                }
                var cursor = ByteCursor(UnsafeRawBufferPointer(rebasing: bytes[Int(offset)...]))
                guard let result = try located(what, at: offset, { try read(index, &cursor) }) else {
                    throw runsPastTheEnd(what, at: offset)
                }
                return result
            }
        case .compressed(let section):
            return try inflating(section, what, at: offsets, read)
        }
    }

    private func inflating<Result>(
        _ section: CompressedSection, _ what: String, at offsets: [UInt64],
        _ read: (Int, inout ByteCursor) throws -> Result
    ) throws -> [Result] {
        func readInflated(_ index: Int, from window: [UInt8]) throws -> Result {
            try window.withUnsafeBytes { bytes in
                var cursor = ByteCursor(bytes)
                return try read(index, &cursor)
            }
        }
        let inflater = try SectionInflater(section)
        var results = [Result?](repeating: nil, count: offsets.count)
        // The inflated bytes from `windowStart` on, which may still be read.
        var window: [UInt8] = []
        var windowStart: UInt64 = 0
        for index in offsets.indices.sorted(by: { offsets[$0] < offsets[$1] }) {
            let offset = offsets[index]
            guard offset < section.inflatedSize else { throw pastTheEnd(what, at: offset, size: section.inflatedSize) }
            while true {
                // What lies before the offset has been read, or is never needed.
                let passed = min(UInt64(window.count), offset - windowStart)
                window.removeFirst(Int(passed))
                windowStart += passed
                if !window.isEmpty,
                    let result = try located(what, at: offset, { try readInflated(index, from: window) })
                {
                    results[index] = result
                    break
                }
                guard let piece = try inflater.nextPiece() else { throw runsPastTheEnd(what, at: offset) }
                window.append(contentsOf: piece)
            }
        }
        while try inflater.nextPiece() != nil {}
        return results.compactMap { $0 }
    }

    /// What `read` returns, nil when it runs out of bytes; the errors it throws say where they are.
    private func located<Result>(_ what: String, at offset: UInt64, _ read: () throws -> Result) throws -> Result? {
        do {
            return try read()
        } catch is ByteCursor.End {
            return nil
        } catch let unreadable as DWARFReader.Unreadable {
            throw DWARFReader.Unreadable(
                reason: "the \(what) at \(name) offset 0x\(String(offset, radix: 16)): \(unreadable.reason)")
        }
    }

    private func pastTheEnd(_ what: String, at offset: UInt64, size: UInt64) -> DWARFReader.Unreadable {
        DWARFReader.Unreadable(
            reason: "a \(what) is said to start at \(name) offset 0x\(String(offset, radix: 16)), "
                + "past the section's end (\(size) bytes)")
    }

    private func runsPastTheEnd(_ what: String, at offset: UInt64) -> DWARFReader.Unreadable {
        DWARFReader.Unreadable(
            reason: "the \(what) at \(name) offset 0x\(String(offset, radix: 16)) runs past the end of the section")
    }
}

extension LocationListSection {
    /// - Throws: ``DWARFReader/Unreadable`` when a compressed section's header is unusable (see
    ///   ``CompressedSection/init(_:in:)``).
    init(_ section: ELFImage.Section, in image: ELFImage) throws {
        name = section.name
        if let compressed = try CompressedSection(section, in: image) {
            contents = .compressed(compressed)
        } else if let bytes = image.bytes(atFileOffset: section.fileOffset, count: section.size) {
            contents = .stored(bytes)
        } else {
            throw DWARFReader.Unreadable(reason: "\(section.name) runs past the end of the file")
        }
    }
}
