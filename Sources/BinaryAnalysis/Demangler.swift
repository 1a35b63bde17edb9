import CDemangle
import Glibc

/// C++ (Itanium) and Rust (legacy and v0) symbols as packs name them: demangled by libiberty,
/// the demangler binutils and GDB use, so a pack's name is what `c++filt` and `nm -C` print.
enum Demangler {
    /// `httplib::Server::routing(httplib::Request&, …)` for `_ZN7httplib6Server7routingE…`; nil for
    /// names that are not mangled (C symbols).
    static func readableName(ofSymbol symbol: UnsafePointer<CChar>) -> String? {
        guard symbol[0] == 0x5F, symbol[1] == 0x5A || symbol[1] == 0x52, let readable = sonde_demangle(symbol) else { return nil }
        defer { free(readable) }
        return String(cString: readable)
    }

    /// Whether a pack's function name is a demangled one (`ns::f`, `f(int)`), which symbols are
    /// demangled to find. Go and C names never are: Go's use `.`, and neither has `::` or ends in `)`.
    static func isDemangledName(_ name: String) -> Bool {
        name.contains("::") || name.hasSuffix(")")
    }
}
