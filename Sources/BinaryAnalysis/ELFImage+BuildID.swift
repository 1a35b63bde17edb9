/// The build id a linker writes into a note: the same id means the same program, whatever the
/// file's path or inode (a container image's binary in each of its containers).
extension ELFImage {
    /// Go's (`.note.go.buildid`, owner "Go", type 4: text) first, then the GNU linkers'
    /// (`.note.gnu.build-id`, owner "GNU", type 3: bytes, in hex); nil when the file has neither.
    var buildID: String? {
        if let go = note(in: ".note.go.buildid", owner: "Go", type: 4) {
            return "go:" + String(decoding: go, as: UTF8.self)
        }
        if let gnu = note(in: ".note.gnu.build-id", owner: "GNU", type: 3) {
            return "gnu:" + gnu.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
        }
        return nil
    }

    /// The descriptor of the section's first note when its owner and type are these.
    private func note(in sectionName: String, owner: String, type: UInt32) -> [UInt8]? {
        guard let section = section(named: sectionName), let bytes = bytes(atFileOffset: section.fileOffset, count: section.size),
            bytes.count >= 12
        else { return nil }
        func word(_ offset: Int) -> Int { Int(bytes.loadUnaligned(fromByteOffset: offset, as: UInt32.self)) }
        let nameSize = word(0)
        let descriptorSize = word(4)
        let paddedName = (nameSize + 3) & ~3
        guard word(8) == Int(type), nameSize <= bytes.count, 12 + paddedName + descriptorSize <= bytes.count,
            // Go pads the owner's name with NULs inside its size ("Go\0\0", 4); GNU counts one ("GNU\0").
            Array(bytes[12..<12 + nameSize].prefix { $0 != 0 }) == Array(owner.utf8)
        else { return nil }
        let descriptor = 12 + paddedName
        return Array(bytes[descriptor..<descriptor + descriptorSize])
    }
}
