/// Which version of a Rust crate a program was built with. Rust records no crate versions in a
/// binary, but the paths of its panic locations (`…/hyper-0.14.19/src/proto/h1/role.rs`) name
/// the folder cargo unpacked each crate into, `NAME-VERSION`; they are in `.rodata`, stripped
/// builds included. `std` (the standard library, whose folder has no version) is the compiler's
/// version, which rustc writes in `.comment`: a pack for the program's own functions names it.
extension ELFImage {
    func crateVersions(named crates: Set<String>) -> [String: String] {
        var found: [String: String] = [:]
        if crates.contains("std") { found["std"] = rustcVersion }
        let libraries = crates.subtracting(["std"])
        guard !libraries.isEmpty, let rodata = section(named: ".rodata"), let bytes = bytes(atFileOffset: rodata.fileOffset, count: rodata.size) else {
            return found
        }
        return found.merging(Self.crateVersions(named: libraries, in: bytes)) { first, _ in first }
    }

    /// `1.95.0` from `.comment`'s "rustc version 1.95.0 (59807616e 2026-04-14)".
    var rustcVersion: String? {
        guard let comment = section(named: ".comment"), let bytes = bytes(atFileOffset: comment.fileOffset, count: min(comment.size, 4096)) else {
            return nil
        }
        let marker = Array("rustc version ".utf8)
        guard let hit = bytes.firstRange(of: marker) else { return nil }
        let version = bytes[hit.upperBound...].prefix { $0 == UInt8(ascii: ".") || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }
        return version.isEmpty ? nil : String(decoding: version, as: UTF8.self)
    }

    /// The first `/NAME-VERSION/src/` of each crate in `bytes`, VERSION made of digits and dots.
    static func crateVersions(named crates: Set<String>, in bytes: UnsafeRawBufferPointer) -> [String: String] {
        let marker = Array("/src/".utf8)
        var found: [String: String] = [:]
        var offset = 0
        while found.count < crates.count, let hit = bytes[offset...].firstRange(of: marker) {
            let end = hit.lowerBound
            offset = hit.upperBound
            // Back from "/src/" to the '/' before the crate's folder.
            var start = end
            while start > max(0, end - 128), bytes[start - 1] != UInt8(ascii: "/"), bytes[start - 1] >= 0x20 { start -= 1 }
            let folder = String(decoding: bytes[start..<end], as: UTF8.self)
            guard let dash = folder.lastIndex(of: "-") else { continue }
            let name = String(folder[..<dash])
            let version = folder[folder.index(after: dash)...]
            if crates.contains(name), found[name] == nil, version.first?.isNumber == true, version.allSatisfy({ $0.isNumber || $0 == "." }) {
                found[name] = String(version)
            }
        }
        return found
    }
}
