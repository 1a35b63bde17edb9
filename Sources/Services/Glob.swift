import Glibc

/// Shell-style wildcards (`*`, `?`, `[…]`), as fnmatch(3) reads them without flags: `*` matches
/// `/` too, so `*/front` matches a `front` executable in any folder.
enum Glob {
    static func matches(_ pattern: String, _ text: String) -> Bool {
        fnmatch(pattern, text, 0) == 0
    }
}
