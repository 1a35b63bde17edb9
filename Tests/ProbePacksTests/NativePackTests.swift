import Foundation
import ProbePacks
import XCTest

/// C, C++ and Rust packs: C declarations, the shipped libpq pack, and the mistakes a native
/// pack can make, each reported at its file:line:column.
final class NativePackTests: XCTestCase {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    func testCTypesAreSpelledAsSizedIntegersAndPointers() {
        func spelled(_ text: String) -> String {
            switch CType.parse(text) {
            case .success(let type): return type.name
            case .failure(let error): return "error: \(error.reason)"
            }
        }
        XCTAssertEqual(spelled("const char *"), "*char")
        XCTAssertEqual(spelled("char* const*"), "**char")
        XCTAssertEqual(spelled("struct pg_conn*"), "*pg_conn")
        XCTAssertEqual(spelled("unsigned long"), "uint64")
        XCTAssertEqual(spelled("int"), "int32")
        XCTAssertEqual(spelled("size_t"), "uint64")
        XCTAssertEqual(spelled("_Bool"), "bool")
        XCTAssertEqual(spelled("double"), "float64")
        XCTAssertEqual(spelled("void*"), "*void")
        XCTAssertEqual(spelled("PGresult"), "PGresult")
        XCTAssertEqual(spelled("void"), "error: 'void' is no value's type")
        XCTAssertEqual(spelled("int[4]"), "error: 'int[4]' is not a C type Sonde reads ('[' is not allowed: no function pointers, and arrays only as struct members)")
        // A struct member may be a character array held in place.
        XCTAssertEqual(try CType.parse("char[]", asMember: true).get().name, "[]char")
        XCTAssertEqual(try CType.parse("unsigned char [64]", asMember: true).get().name, "[]char")
        XCTAssertEqual(try CType.parse("char*", asMember: true).get().name, "*char")
        for refused in ["int[4]", "char[x]", "char*[2]"] {
            XCTAssertThrowsError(try CType.parse(refused, asMember: true).get()) { error in
                XCTAssertEqual((error as? CDeclarationError)?.reason,
                    "'\(refused)': the only arrays Sonde reads are character arrays (char[] or char[N]), as c-string")
            }
        }
        XCTAssertEqual(spelled("long double"), "error: 'long double': 'long double' is not a C type name")
        XCTAssertEqual(spelled("char * x"), "error: 'char * x': nothing but '*', '&' and const may follow a '*' or '&'")
        // C++: references are pointers in the ABI, qualified names stay whole.
        XCTAssertEqual(spelled("const httplib::Request&"), "*httplib::Request")
        XCTAssertEqual(spelled("std::string&&"), "*std::string")
        XCTAssertEqual(spelled("std::string"), "std::string")
        XCTAssertEqual(spelled("Request *&"), "**Request")
        XCTAssertEqual(spelled("std::"), "error: 'std::' is not a C type Sonde reads ('std::' is not allowed: no function pointers, and arrays only as struct members)")
        XCTAssertEqual(spelled("const"), "error: 'const' names no type")
    }

    func testPrototypesGiveResultAndNamedParameters() throws {
        let source = SourceLocation(file: "p.yaml", line: 3, column: 5)
        let parsed = try NativeSignature.parse("PGresult* PQexec(PGconn* conn, const char *query)", function: "PQexec", source: source).get()
        XCTAssertEqual(parsed.result, CType(name: "*PGresult"))
        XCTAssertEqual(parsed.parameters, [
            NativeSignature.Parameter(name: "conn", type: CType(name: "*PGconn")),
            NativeSignature.Parameter(name: "query", type: CType(name: "*char")),
        ])
        XCTAssertEqual(parsed.source, source)
        let none = try NativeSignature.parse("void PQreset(void)", function: "PQreset", source: source).get()
        XCTAssertEqual(none.result, nil)
        XCTAssertEqual(none.parameters, [])
        func failure(_ text: String, _ function: String? = "f") -> String {
            guard case .failure(let error) = NativeSignature.parse(text, function: function, source: source) else { return "parsed" }
            return error.reason
        }
        XCTAssertEqual(failure("int f(int)"), "parameter 1 ('int') needs a type and a name")
        XCTAssertEqual(failure("int g(int a)"), "the prototype must declare the probed function f, as in '... f(...)'")
        XCTAssertEqual(failure("int g(int a)", nil), "parsed", "no function given: any name is taken")
        XCTAssertEqual(failure("int f(int a, long a)"), "two parameters are named 'a'")
        XCTAssertEqual(failure("int f"), "'int f' is not a prototype like 'int f(const char *name)'")
        XCTAssertEqual(failure("int f(int a[2])"), "parameter 1 ('int a[2]') needs a type and a name")
        XCTAssertEqual(failure("float[2] f(int a)"), "result: 'float[2]' is not a C type Sonde reads ('[' is not allowed: no function pointers, and arrays only as struct members)")
    }

    /// A C++ or Rust function is named as demangled; its prototype declares the last part of
    /// that name, and a member function writes its `this`.
    func testCppPrototypesDeclareTheUnqualifiedName() throws {
        let routing = "httplib::Server::routing(httplib::Request&, httplib::Response&, httplib::Stream&)"
        XCTAssertEqual(NativeSignature.declaredName(of: routing), "routing")
        XCTAssertEqual(NativeSignature.declaredName(of: "hyper::proto::h1::role::Server::parse"), "parse")
        XCTAssertEqual(NativeSignature.declaredName(of: "std::vector<int>::push_back(int const&)"), "push_back")
        XCTAssertEqual(NativeSignature.declaredName(of: "PQexec"), "PQexec")
        let source = SourceLocation(file: "p.yaml", line: 1, column: 1)
        let parsed = try NativeSignature.parse(
            "bool routing(Server* this, Request& req, const httplib::Response& res, Stream& strm)", function: "routing", source: source
        ).get()
        XCTAssertEqual(parsed.result, CType(name: "bool"))
        XCTAssertEqual(parsed.parameters.map(\.name), ["this", "req", "res", "strm"])
        XCTAssertEqual(parsed.parameters.map(\.type.name), ["*Server", "*Request", "*httplib::Response", "*Stream"])
    }

    /// A Rust pack names its crate; any pack may say what it does not do yet.
    func testRustPackNamesItsCrateAndWhatItLacks() throws {
        let file = Self.repository.appendingPathComponent("probe-packs/rust/hyper.yaml").path
        let pack = try PackLoader.load(file: file)
        XCTAssertEqual(pack.language, .rust)
        XCTAssertEqual(pack.library.module, "hyper")
        XCTAssertNil(pack.library.soname)
        XCTAssertEqual(pack.experimental, "method and path are not read: hyper passes the request head to recv_msg inside a Result, "
            + "whose variants Sonde does not read yet; spans are named HTTP")
        XCTAssertEqual(pack.probes.map(\.function), [
            "<hyper::proto::h1::dispatch::Server<S,hyper::body::body::Body> as hyper::proto::h1::dispatch::Dispatch>::recv_msg",
            "hyper::proto::h1::conn::Conn<I,B,T>::encode_head",
        ])
        XCTAssertTrue(pack.probes.allSatisfy { $0.signature == nil }, "parameters come from the program's DWARF")

        let yaml = try String(contentsOfFile: file, encoding: .utf8)
        func errors(_ old: String, _ new: String) -> [String] {
            do {
                _ = try PackLoader.parse(yaml: yaml.replacingOccurrences(of: old, with: new), file: "bad.yaml")
                return []
            } catch let error as PackLoadError {
                return error.errors.map(\.description)
            } catch {
                return ["\(error)"]
            }
        }
        XCTAssertEqual(errors("  crate: hyper\n", "  soname: libhyper.so\n"), [
            "bad.yaml:24:3: unknown key 'soname' in library; expected one of: crate, versions",
            "bad.yaml:24:3: library is missing 'crate'",
        ])
        let note = "experimental: >-\n  method and path are not read: hyper passes the request head to recv_msg inside a\n"
            + "  Result, whose variants Sonde does not read yet; spans are named HTTP\n"
        XCTAssertEqual(errors(note, "experimental: ' '\n"), [
            "bad.yaml:26:15: experimental must say what the pack does not do yet",
        ])
    }

    func testShippedLibpqPackLoads() throws {
        let file = Self.repository.appendingPathComponent("probe-packs/c/libpq.yaml").path
        let pack = try PackLoader.load(file: file)
        XCTAssertEqual(pack.name, "c/libpq")
        XCTAssertEqual(pack.language, .c)
        XCTAssertEqual(pack.library.soname, "libpq.so.5")
        XCTAssertEqual(pack.library.module, "")
        XCTAssertEqual(pack.library.versions.description, ">=5.15 <5.16")
        XCTAssertEqual(pack.types.map(\.name), ["PGconn", "PGresult", "PGMessageField"])
        XCTAssertEqual(pack.types[0].members, [
            DeclaredType.Member(name: "pghost", offset: 0, type: CType(name: "*char")),
            DeclaredType.Member(name: "dbName", offset: 0x48, type: CType(name: "*char")),
        ])
        XCTAssertEqual(pack.types[1].members, [
            DeclaredType.Member(name: "resultStatus", offset: 0x28, type: CType(name: "int32")),
            DeclaredType.Member(name: "errFields", offset: 0xa8, type: CType(name: "*PGMessageField")),
        ])
        XCTAssertEqual(pack.types[2].members, [
            DeclaredType.Member(name: "next", offset: 0, type: CType(name: "*PGMessageField")),
            DeclaredType.Member(name: "code", offset: 8, type: CType(name: "char")),
            DeclaredType.Member(name: "contents", offset: 9, type: CType(name: "[]char")),
        ])
        // A list of spans makes one probe per span, named after it.
        XCTAssertEqual(
            pack.probes.map(\.id),
            ["query", "query-params", "prepare", "query-prepared",
             "result-query", "result-query-params", "result-prepare", "result-query-prepared",
             "done-query", "done-query-params", "done-prepare", "done-query-prepared"])
        XCTAssertEqual(pack.probes.map(\.function), ["PQsendQuery", "PQsendQueryParams", "PQsendPrepare", "PQsendQueryPrepared"]
            + Array(repeating: "PQgetResult", count: 8))
        let query = pack.probes[0]
        XCTAssertEqual(query.signature?.parameters.map(\.type.name), ["*PGconn", "*char"])
        XCTAssertEqual(query.signature?.result, CType(name: "int32"))
        XCTAssertEqual(query.onEntry.map(\.type), [.cString, .cString, .cString])
        XCTAssertEqual(query.span?.name.parts, [.expression(.sqlOperation(of: "query"))])
        XCTAssertEqual(query.span?.endsAtReturn, nil)
        XCTAssertEqual(pack.probes[1].span?.endsAtReturn, .result(.zero))
        XCTAssertEqual(pack.probes[1].signature?.parameters.map(\.type.name),
                       ["*PGconn", "*char", "int32", "*Oid", "**char", "*int32", "*int32", "int32"])
        let result = pack.probes[5]
        XCTAssertEqual(result.enrichment, Enrichment(
            target: "c/libpq/query-params", rename: nil, errorWhen: [ErrorCondition(capture: "status", test: .oneOf([5, 7, 11]))],
            atReturn: ReturnTrigger(whenResult: .nonZero)))
        XCTAssertEqual(result.onReturn.map(\.ifAbsent), [7, nil])
        XCTAssertEqual(result.onReturn.map(\.path), [
            [.field("resultStatus")], [.findInList(field: "errFields", key: "code", equals: 67), .field("contents")],
        ])
        XCTAssertEqual(pack.probes[11].enrichment, Enrichment(
            target: "c/libpq/query-prepared", rename: nil, ends: .openCall, atReturn: ReturnTrigger(whenResult: .zero)))
    }

    static let nativePack = """
        format: sonde.probe-pack/v1
        pack: c/demo
        language: c
        library:
          soname: libdemo.so.1
          versions: ">=1.0"
        types:
          Conn:
            name: { offset: 0x10, type: "char*" }
        probes:
          - id: send
            function: demo_send
            signature: "int demo_send(Conn* conn, const char* text)"
            span:
              kind: client
              name: "{text}"
              ends-at-return: { when-result: zero }
            on-entry:
              text: { arg: text, type: c-string }
          - id: done
            function: demo_wait
            end-span:
              span: c/demo/send
              at: return
              when-result: zero
        """

    func testNativePackParses() throws {
        let pack = try PackLoader.parse(yaml: Self.nativePack, file: "demo.yaml")
        XCTAssertEqual(pack.types, [DeclaredType(
            name: "Conn", members: [DeclaredType.Member(name: "name", offset: 16, type: CType(name: "*char"))],
            source: SourceLocation(file: "demo.yaml", line: 8, column: 3))])
        XCTAssertEqual(pack.probes[1].enrichment?.atReturn, ReturnTrigger(whenResult: .zero))
        XCTAssertEqual(pack.probes[0].signature?.source, SourceLocation(file: "demo.yaml", line: 13, column: 16))
    }

    func testNativeMistakesAreLocated() {
        func errors(_ replacements: [(String, String)]) -> [String] {
            let yaml = replacements.reduce(Self.nativePack) { $0.replacingOccurrences(of: $1.0, with: $1.1) }
            do {
                _ = try PackLoader.parse(yaml: yaml, file: "bad.yaml")
                return []
            } catch let error as PackLoadError {
                return error.errors.map(\.description)
            } catch {
                return ["\(error)"]
            }
        }
        XCTAssertEqual(errors([("soname: libdemo.so.1", "soname: libdemo")]), [
            "bad.yaml:5:11: library.soname 'libdemo' must be a shared library's name as programs link it, e.g. libpq.so.5",
        ])
        XCTAssertEqual(errors([("offset: 0x10", "offset: -4")]), [
            "bad.yaml:9:21: member Conn.name.offset must be a byte offset, decimal or 0x-hexadecimal, below 1 MiB",
        ])
        XCTAssertEqual(errors([("type: \"char*\" }", "type: \"int[8]\" }")]), [
            "bad.yaml:9:33: member Conn.name.type: 'int[8]': the only arrays Sonde reads are character arrays (char[] or char[N]), as c-string",
        ])
        for selector in ["name[code]", "name[code='CC']", "name[=1]", "name[code=x]"] {
            XCTAssertEqual(errors([("text: { arg: text, type: c-string }", "text: { arg: conn, path: \"\(selector).x\", type: c-string }")]).first ?? "",
                "bad.yaml:19:32: '\(selector)' selects a list node as 'name[member=value]', value an integer or a character such as 'C'")
        }
        XCTAssertEqual(errors([("text: { arg: text, type: c-string }", "text: { arg: conn, path: \"name[code=1\", type: c-string }")]), [
            "bad.yaml:19:32: path has '[' without ']'",
        ])
        XCTAssertEqual(errors([("function: demo_send", "function: { pattern: demo_send }")]), [
            "bad.yaml:12:26: function.pattern 'demo_send' has no '*'; write function: demo_send",
        ])
        XCTAssertEqual(errors([("function: demo_send", "function: { patern: \"demo_*\" }")]), [
            "bad.yaml:12:17: unknown key 'patern' in function; expected one of: pattern",
        ])
        XCTAssertEqual(errors([("int demo_send(", "int demo_sent(")]), [
            "bad.yaml:13:16: signature: the prototype must declare the probed function demo_send, as in '... demo_send(...)'",
        ])
        XCTAssertEqual(errors([("      at: return\n      when-result: zero", "      when-result: zero")]), [
            "bad.yaml:24:20: end-span.when-result tests the function's result, which exists at: return only",
        ])
        XCTAssertEqual(errors([("at: return", "at: exit")]), ["bad.yaml:24:11: end-span.at must be entry or return"])
        XCTAssertEqual(errors([("      when-result: zero", "      when-result: null")]), [
            "bad.yaml:25:20: end-span.when-result must be one of: zero, non-zero (of the first result)",
        ])
        XCTAssertEqual(errors([("span: c/demo/send\n", "span: [c/demo/send, c/demo/send]\n")]), [
            "bad.yaml:23:13: end-span.span names c/demo/send twice",
        ])
        XCTAssertEqual(errors([("      when-result: zero", "      when-result: zero\n    on-entry:\n      t: { arg: text, type: c-string }")]), [
            "bad.yaml:26:5: an end-span probe at: return reads its function's results (on-return); its arguments are gone by then",
        ])
        XCTAssertEqual(
            errors([("language: c", "language: go"), ("soname: libdemo.so.1", "module: example.com/demo")]), [
                "bad.yaml:8:3: types belong to C, C++ and Rust packs; a Go pack reads layouts from DWARF or its offset table",
                "bad.yaml:13:16: signature belongs to C, C++ and Rust probes; a Go probe's parameters come from DWARF or its offset table",
                Self.goWhenResult(line: 17),
            ])
        XCTAssertEqual(
            errors([("language: c", "language: go"), ("soname: libdemo.so.1", "module: example.com/demo"), ("types:\n  Conn:\n    name: { offset: 0x10, type: \"char*\" }\n", ""),
                    ("    signature: \"int demo_send(Conn* conn, const char* text)\"\n", ""), ("function: demo_send", "function: { pattern: \"demo_*\" }")]), [
                "bad.yaml:9:26: function.pattern is for C, C++ and Rust packs; a Go probe names its function",
                Self.goWhenResult(line: 13),
            ])
        XCTAssertEqual(errors([("soname: libdemo.so.1", "module: example.com/demo")]), [
            "bad.yaml:5:3: unknown key 'module' in library; expected one of: soname, versions",
        ])
        XCTAssertEqual(errors([("ends-at-return: { when-result: zero }", "ends-after-call: { function: demo_recv, when-nil: { result: 0 } }")]), [
            "bad.yaml:17:24: span.ends-after-call is for Go packs; a native span returns through a return probe, which is cheap already",
        ])
        XCTAssertEqual(errors([("ends-at-return: { when-result: zero }", "ends-at-return: { after-call: demo_recv, when-not-nil: { result: 0 } }")]), [
            "bad.yaml:17:23: span.ends-at-return.after-call is for Go packs; a native span tests its result at the return (when-result)",
        ])
        // A typo is offered the keys of the pack's own language only.
        XCTAssertEqual(errors([("ends-at-return: { when-result: zero }", "ends-at-return: { when-results: zero }")]), [
            "bad.yaml:17:25: unknown key 'when-results' in span.ends-at-return; expected one of: when-result",
        ])
    }

    /// A Go span's RETs cannot be chosen by what they return.
    static func goWhenResult(line: Int) -> String {
        "bad.yaml:\(line):23: span.ends-at-return.when-result is for native packs: a Go span's RETs are single-stepped whatever they "
            + "return, so name the call whose failure makes the function return at once instead (after-call, when-not-nil)"
    }
}
