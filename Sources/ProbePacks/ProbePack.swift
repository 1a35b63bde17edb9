/// A probe pack: what to hook in one library and how the captured values become spans.
/// Packs are data, so adding a library or a version means adding a file, not code.
public struct ProbePack: Sendable, Equatable {
    /// The only format this Sonde reads; bumped when a pack written for it would mean something else.
    public static let currentFormat = "sonde.probe-pack/v1"

    /// Unique name, `language/library`, e.g. `go/net-http`.
    public var name: String
    public var language: Language
    public var library: LibraryCoverage
    public var probes: [Probe]
    /// C, C++ and Rust packs: the structs their captures read, for libraries without DWARF.
    public var types: [DeclaredType]
    /// What a partial pack does not do yet, said wherever it is listed or planned.
    public var experimental: String?
    /// Where the pack was read from, for messages.
    public var source: SourceLocation

    public init(
        name: String, language: Language, library: LibraryCoverage, probes: [Probe], types: [DeclaredType] = [], experimental: String? = nil,
        source: SourceLocation
    ) {
        self.name = name
        self.language = language
        self.library = library
        self.probes = probes
        self.types = types
        self.experimental = experimental
        self.source = source
    }
}

public enum Language: String, Sendable, Equatable, CaseIterable {
    case go, cpp, rust, c
}

/// Which library and versions a pack covers. For Go, module `std` is versioned by the Go toolchain.
public struct LibraryCoverage: Sendable, Equatable {
    /// Go: the module path. Rust: the crate (`hyper`), whose version the program's panic
    /// locations name. Empty for C and C++.
    public var module: String
    /// C, C++ and Rust: the shared library the probes go on, as programs link it (`libpq.so.5`);
    /// its versions are those of its file name (`libpq.so.5.15` is 5.15). Nil for Go.
    public var soname: String?
    public var versions: VersionRange
    public init(module: String, soname: String? = nil, versions: VersionRange) {
        self.module = module
        self.soname = soname
        self.versions = versions
    }
}

public struct Probe: Sendable, Equatable {
    public var id: String
    /// The function to hook: its symbol, demangled for C++ and Rust (as `c++filt` prints it).
    public var function: String
    /// `function: { pattern: … }` (C, C++, Rust): `function` is a pattern whose `*` matches any
    /// run of characters, and every function it matches is hooked (a template's instances).
    public var functionIsPattern: Bool
    /// C, C++ and Rust: the function's prototype, where its parameters are in the SysV ABI's
    /// registers; stands in for DWARF, which shared libraries rarely ship (without it, the
    /// binary's DWARF locates them).
    public var signature: NativeSignature?
    /// The span the probe makes; nil for probes that only move trace context.
    public var span: SpanRule?
    /// Set for probes on goroutine creation: the new goroutine inherits the active trace context.
    public var goroutineHandoff: GoroutineHandoff?
    /// Set for probes that add to another probe's span while it is open on the same goroutine.
    public var enrichment: Enrichment?
    /// Span probes: where the request's W3C trace context headers are, to continue an incoming
    /// trace and, for a client span an injection targets, to send its own.
    public var traceContext: TraceContextHeaders?
    /// Set for probes that write a client span's trace context into the request it sends.
    public var injection: TraceContextInjection?
    /// Set for probes that read a request's incoming trace context before the code serving it
    /// runs, here or in a goroutine this function starts: it becomes the parent of that code's spans.
    public var extraction: TraceContextExtraction?
    /// `called-from`: the probe acts where this function calls `function` (each direct `call`,
    /// which the kernel emulates, reading `function`'s arguments there) rather than at
    /// `function`'s entry, so calls from elsewhere (a server writing its responses with the same
    /// function a client writes requests with) cost no trap. Entry-only probes.
    public var calledFrom: String?
    public var onEntry: [Capture]
    /// Captures taken when the function returns; their arguments are the values saved at entry.
    public var onReturn: [Capture]
    public var attributes: [AttributeRule]
    public var source: SourceLocation

    public init(
        id: String, function: String, functionIsPattern: Bool = false, signature: NativeSignature? = nil, span: SpanRule?, goroutineHandoff: GoroutineHandoff? = nil, enrichment: Enrichment? = nil,
        traceContext: TraceContextHeaders? = nil, injection: TraceContextInjection? = nil, extraction: TraceContextExtraction? = nil,
        calledFrom: String? = nil, onEntry: [Capture], onReturn: [Capture], attributes: [AttributeRule], source: SourceLocation
    ) {
        self.id = id
        self.function = function
        self.functionIsPattern = functionIsPattern
        self.signature = signature
        self.span = span
        self.goroutineHandoff = goroutineHandoff
        self.enrichment = enrichment
        self.traceContext = traceContext
        self.injection = injection
        self.extraction = extraction
        self.calledFrom = calledFrom
        self.onEntry = onEntry
        self.onReturn = onReturn
        self.attributes = attributes
        self.source = source
    }

    public var captures: [Capture] { onEntry + onReturn }

    /// Every function planning reads in the binary for this probe: the hooked one, those whose
    /// signatures it reads, the caller it sits in (`called-from`) and the call its span ends after.
    public var functionsRead: [String] {
        [function] + signatureFunctions + [calledFrom, span?.endsAfterCall?.function].compactMap { $0 }
    }

    /// The functions whose signatures planning reads: the hooked function's own or, for
    /// `follow-goroutine`, the callee whose argument it reads at its call; and the call whose
    /// failed result ends the span at a return (`ends-at-return`), for that result's register.
    public var signatureFunctions: [String] {
        if let handoff = goroutineHandoff { return [handoff.child.callee] }
        if case .afterFailedCall(let call)? = span?.endsAtReturn { return [function, call.function] }
        return [function]
    }
}

/// Where a goroutine is created, so that spans started in the new goroutine join the creator's
/// trace. One site, the call inside the probed function that is passed the new goroutine: a
/// `call` instruction is emulated by the kernel, a RET (where a creation function's result could
/// be read) is single-stepped.
public struct GoroutineHandoff: Sendable, Equatable {
    /// The call passed the new goroutine, and its `*g` parameter.
    public var child: CalleeArgument
    /// Fields from the running goroutine's `runtime.g` (R14) to the creator's `*g`: Go creates
    /// goroutines on the system stack, where the running goroutine is the thread's g0 and
    /// `m.curg` the goroutine that switched to it.
    public var creator: [PathStep]
    public init(child: CalleeArgument, creator: [PathStep]) {
        self.child = child
        self.creator = creator
    }
}

/// A parameter of a function the probed function calls, read at the `call` instruction, where
/// the register ABI has put the callee's arguments.
public struct CalleeArgument: Sendable, Equatable, CustomStringConvertible {
    public var callee: String
    public var argument: String
    public init(callee: String, argument: String) {
        self.callee = callee
        self.argument = argument
    }
    public var description: String { "argument '\(argument)' of the call to \(callee)" }
}

/// Where a request keeps its headers, read for the W3C `traceparent` and `tracestate`.
public struct TraceContextHeaders: Sendable, Equatable {
    /// How the headers are stored.
    public enum Carrier: String, Sendable, Equatable, CaseIterable {
        /// A Go `map[string][]string` (net/http's `Header`, grpc's `metadata.MD`); the first value counts.
        case goHeaderMap = "go-header-map"
        /// A Go `[]hpack.HeaderField` (HTTP/2 header fields as received, e.g. grpc's MetaHeadersFrame.Fields).
        case hpackHeaderFields = "hpack-header-fields"
    }
    /// How the carrier spells header names.
    public enum NameCase: String, Sendable, Equatable, CaseIterable {
        /// `Traceparent`, as Go's net/http canonicalises them.
        case canonical
        /// `traceparent`, as HTTP/2 and gRPC metadata write them.
        case lower

        public var traceparent: String { self == .canonical ? "Traceparent" : "traceparent" }
        public var tracestate: String { self == .canonical ? "Tracestate" : "tracestate" }
    }
    public var origin: ValueOrigin
    public var path: [PathStep]
    public var carrier: Carrier
    public var nameCase: NameCase
    public var source: SourceLocation
    public init(origin: ValueOrigin, path: [PathStep], carrier: Carrier, nameCase: NameCase, source: SourceLocation) {
        self.origin = origin
        self.path = path
        self.carrier = carrier
        self.nameCase = nameCase
        self.source = source
    }
}

/// Reads a request's trace context where its headers are decoded, before the span serving it
/// starts (maybe on a goroutine this function starts, as grpc's transport does).
public struct TraceContextExtraction: Sendable, Equatable {
    /// `pack/probe` of the span that continues the context: it takes the remote parent and keeps
    /// the tracestate.
    public var span: String
    public var headers: TraceContextHeaders
    public init(span: String, headers: TraceContextHeaders) {
        self.span = span
        self.headers = headers
    }
}

/// Writes the trace context of a client span into the request it sends, where the request is
/// serialised: the span's headers are recognised by identity (the same map), which also works
/// when the request is written on another goroutine.
public struct TraceContextInjection: Sendable, Equatable {
    /// `pack/probe` of the client span, whose `trace-context.headers` this probe's `headers` must be.
    public var target: String
    /// The headers being written: a map pointer in a register.
    public var headers: ValueOrigin
    /// Where the header line goes.
    public var writer: BufferedWriter
    public init(target: String, headers: ValueOrigin, writer: BufferedWriter) {
        self.target = target
        self.headers = headers
        self.writer = writer
    }
}

/// A buffered writer (Go's `bufio.Writer`): a byte slice and the count of bytes it holds. A
/// `traceparent` header line is appended when it fits; otherwise nothing is written.
public struct BufferedWriter: Sendable, Equatable {
    public var origin: ValueOrigin
    /// `(*bufio.Writer)`: the writer is an interface that must hold this type.
    public var dynamicType: String?
    /// The `[]byte` field.
    public var buffer: String
    /// The `int` field counting the bytes of `buffer` in use.
    public var used: String
    public init(origin: ValueOrigin, dynamicType: String?, buffer: String, used: String) {
        self.origin = origin
        self.dynamicType = dynamicType
        self.buffer = buffer
        self.used = used
    }
}

/// Adds attributes to, and may rename, a span another probe opened: a router knows the
/// route template only after the server span has started.
public struct Enrichment: Sendable, Equatable {
    /// `pack/probe` of the span to enrich, e.g. `go/net-http/server`.
    public var target: String
    /// New span name; may use the target probe's captures too. Applied only when every
    /// capture it names was read.
    public var rename: NameTemplate?
    /// `end-span` probes: which open span of the target this probe adds to and then ends.
    public var ends: SpanEnd?
    /// Further reasons the target span failed, tested on this probe's captures.
    public var errorWhen: [ErrorCondition]
    /// `at: return`: the probe acts when its function returns, reading its result, rather than
    /// at its entry (C, C++ and Rust: a return probe). With a test, only returns that pass it.
    public var atReturn: ReturnTrigger?
    public init(
        target: String, rename: NameTemplate?, ends: SpanEnd? = nil, errorWhen: [ErrorCondition] = [], atReturn: ReturnTrigger? = nil
    ) {
        self.target = target
        self.rename = rename
        self.ends = ends
        self.errorWhen = errorWhen
        self.atReturn = atReturn
    }
}

/// When a probe acting at its function's return acts: at every return, or at those whose result
/// (the first, in RAX) passes the test.
public struct ReturnTrigger: Sendable, Equatable {
    public var whenResult: ResultTest?
    public init(whenResult: ResultTest?) {
        self.whenResult = whenResult
    }
}

/// A test of a function's first result: zero is also a null pointer.
public enum ResultTest: String, Sendable, Equatable, CaseIterable {
    case zero
    case nonZero = "non-zero"
}

/// How an `end-span` probe finds the span it ends.
public enum SpanEnd: Sendable, Equatable {
    /// The target's call still open on this goroutine or thread. The target's span then ends
    /// here instead of at its function's return, so no probe goes on that function's RETs
    /// (each a single-stepped trap): e.g. net/http finishing the response after the handler.
    case openCall
    /// The object (e.g. a stream) whose span, left open by the target's `outlives-call`, this
    /// probe ends. It may run on another goroutine.
    case object(ValueOrigin)

    /// The object's origin, for `.object`.
    public var object: ValueOrigin? {
        if case .object(let origin) = self { return origin }
        return nil
    }
}

public struct SpanRule: Sendable, Equatable {
    public enum Kind: String, Sendable, Equatable, CaseIterable {
        case server, client, `internal`, producer, consumer
    }
    public var kind: Kind
    public var name: NameTemplate
    /// The span is marked failed when any of these holds (e.g. HTTP 5xx, a returned error).
    public var errorWhen: [ErrorCondition]
    /// A result (a pointer, or an interface's data word) that, when non-nil at return, keeps the
    /// span open under that object until an `end-span` probe sees it: a stream outlives the call
    /// that creates it.
    public var outlivesCall: ObjectReference?
    /// `ends-at-return`: a span that `end-span` probes usually end still ends at its own return
    /// when the call failed, since nothing would end it otherwise.
    public var endsAtReturn: FailedReturn?
    /// `ends-after-call`: where a Go call usually ends, at an emulated branch instead of a
    /// single-stepped RET (~9.5 µs a call).
    public var endsAfterCall: CallResultEnd?

    public init(
        kind: Kind, name: NameTemplate, errorWhen: [ErrorCondition], outlivesCall: ObjectReference? = nil, endsAtReturn: FailedReturn? = nil,
        endsAfterCall: CallResultEnd? = nil
    ) {
        self.kind = kind
        self.name = name
        self.errorWhen = errorWhen
        self.outlivesCall = outlivesCall
        self.endsAtReturn = endsAtReturn
        self.endsAfterCall = endsAfterCall
    }
}

/// A call of `function` inside the probed function whose result `result` (a pointer, or an
/// error's type word) decides how the probed function goes on.
///
/// `ends-after-call`: once it is nil, the probed function returns that call's results as they are
/// (`if err == nil { return resp, nil }`); the span then ends at the branch testing it, right after
/// the call, where those results are still in their registers for the on-return captures.
/// `ends-at-return`: once it is not nil, the probed function returns at once (`if err != nil {
/// return err }`), the only way out that no `end-span` probe sees.
public struct CallResultEnd: Sendable, Equatable {
    public var function: String
    public var result: Int
    public init(function: String, result: Int) {
        self.function = function
        self.result = result
    }
}

/// How a span that `end-span` probes usually end tells, at its own return, that the call failed
/// and nothing else will end it (`span.ends-at-return`).
public enum FailedReturn: Sendable, Equatable {
    /// Native: the first result passes this test (`PQsendQuery*` return 0: nothing was sent).
    case result(ResultTest)
    /// Go: the function returns right after its call failed. Only the RETs of that way are probed:
    /// each is single-stepped, so the calls that succeed must not reach them.
    case afterFailedCall(CallResultEnd)

    /// Whether it tests the result (native), which nothing but an end-span probe can replace.
    public var isResultTest: Bool {
        if case .result = self { return true }
        return false
    }
}

/// The object a span stays open under.
public struct ObjectReference: Sendable, Equatable {
    public var origin: ValueOrigin
    /// `(*pkg.T)`: the interface must hold this dynamic type, else the span ends at the return.
    /// A wrapper (e.g. an interceptor's stream) would never reach the `end-span` probe.
    public var dynamicType: String?
    public init(origin: ValueOrigin, dynamicType: String? = nil) {
        self.origin = origin
        self.dynamicType = dynamicType
    }
}

public struct ErrorCondition: Sendable, Equatable {
    public enum Test: Sendable, Equatable {
        /// The captured integer is at least this much.
        case atLeast(Int64)
        /// The captured integer is not zero (e.g. a non-nil error interface).
        case nonZero
        /// The captured integer is one of these (e.g. the failure codes of a status enum).
        case oneOf([Int64])
    }
    public var capture: String
    public var test: Test
    public init(capture: String, test: Test) {
        self.capture = capture
        self.test = test
    }
}

/// A span name such as `{method} {path}`: literal text and capture references.
public struct NameTemplate: Sendable, Equatable {
    public enum Part: Sendable, Equatable {
        case literal(String)
        case capture(String)
        /// A function of captures, e.g. `{rpc_method(method)}`.
        case expression(ValueExpression)
    }
    public var parts: [Part]
    public init(parts: [Part]) {
        self.parts = parts
    }

    /// Every capture the name uses.
    public var captureNames: [String] {
        parts.flatMap { part -> [String] in
            switch part {
            case .literal: return []
            case .capture(let name): return [name]
            case .expression(let expression): return expression.captureNames
            }
        }
    }
}

/// One value read from the traced program.
public struct Capture: Sendable, Equatable {
    public var name: String
    public var origin: ValueOrigin
    public var path: [PathStep]
    public var type: ValueType
    /// Value to report when the captured integer is zero (Go's net/http leaves status 0 for an implicit 200).
    public var ifZero: Int64?
    /// Value to report when the capture could not be read, e.g. a gRPC code behind a nil error.
    public var ifAbsent: Int64?
    /// Longest string kept; longer ones are cut.
    public var maxLength: Int
    public var source: SourceLocation

    public init(
        name: String, origin: ValueOrigin, path: [PathStep], type: ValueType, ifZero: Int64?, ifAbsent: Int64? = nil, maxLength: Int,
        source: SourceLocation
    ) {
        self.name = name
        self.origin = origin
        self.path = path
        self.type = type
        self.ifZero = ifZero
        self.ifAbsent = ifAbsent
        self.maxLength = maxLength
        self.source = source
    }
}

/// Where a capture's path starts.
public enum ValueOrigin: Sendable, Equatable, CustomStringConvertible {
    /// A function parameter by its DWARF name (Go receivers count as parameters).
    case argument(String)
    /// The function's result at this position (0 = first), read when it returns.
    case result(Int)

    public var description: String {
        switch self {
        case .argument(let name): return "argument '\(name)'"
        case .result(let index): return "result \(index)"
        }
    }
}

/// A step from a value to a part of it: `Field` follows a struct member (through a pointer
/// if needed), `(*pkg.Type)` asserts the dynamic type held by an interface.
public enum PathStep: Sendable, Equatable, CustomStringConvertible {
    case field(String)
    case assertType(String)
    /// `field[key=value]`: `field` points at the first node of a linked list (a struct with a
    /// pointer to its own type); the step reaches the first node whose `key` member equals
    /// `value`. A C library keeps optional fields this way (libpq's error fields).
    case findInList(field: String, key: String, equals: Int64)

    public var description: String {
        switch self {
        case .field(let name): return name
        case .assertType(let type): return "(\(type))"
        case .findInList(let field, let key, let value): return "\(field)[\(key)=\(value)]"
        }
    }
}

public enum ValueType: String, Sendable, Equatable, CaseIterable {
    case goString = "go-string"
    /// A NUL-terminated string behind a C `char *`.
    case cString = "c-string"
    /// libstdc++'s `std::string` (C++11 ABI): its pointer and length lead, as a Go string's do.
    case stdString = "std-string"
    /// Rust's `&str` (a pointer and a length, in two registers or in memory).
    case rustStr = "rust-str"
    /// Rust's `String`, read through its address: its buffer's pointer and its length.
    case rustString = "rust-string"
    case int
    case int32
    case uint16
    case bool
    /// Whether a pointer or interface (such as a returned `error`) is set.
    case nonNil = "non-nil"

    /// Whether the capture is kept as text (a length and bytes) rather than an 8-byte value.
    public var isText: Bool {
        switch self {
        case .goString, .cString, .stdString, .rustStr, .rustString: true
        case .int, .int32, .uint16, .bool, .nonNil: false
        }
    }
}

extension ProbePack {
    /// Every attribute key the pack's probes set.
    public var attributeKeys: Set<String> { Set(probes.flatMap { $0.attributes.map(\.key) }) }

    /// The pack without the attributes `keys` names, for data a deployment must not export (a
    /// statement's text may hold values). Captures are still read: a span name may use them.
    public func omitting(attributes keys: Set<String>) -> ProbePack {
        var pack = self
        for index in pack.probes.indices { pack.probes[index].attributes.removeAll { keys.contains($0.key) } }
        return pack
    }
}

/// An OpenTelemetry attribute computed from captures.
public struct AttributeRule: Sendable, Equatable {
    public var key: String
    public var value: ValueExpression
    public init(key: String, value: ValueExpression) {
        self.key = key
        self.value = value
    }
}

/// How an attribute value derives from captures: as is, the host or port part of `host:port`,
/// a URL assembled from its parts (user info never included), a URL scheme from whether TLS is on, the service or method part of a
/// gRPC method path (`/pkg.Service/Method`), a gRPC status code as grpc-go's `status.Code(err)`
/// computes it, an SQL statement's operation, or a constant.
public enum ValueExpression: Sendable, Equatable, CustomStringConvertible {
    case capture(String)
    case hostname(of: String)
    case port(of: String)
    case url(scheme: String, host: String, path: String, query: String)
    case rpcService(of: String)
    case rpcMethod(of: String)
    /// `https` when the capture (a `non-nil` one, such as a request's TLS state) is set, else `http`.
    case urlScheme(tls: String)
    /// `code` when the call's error carried a gRPC status, 2 (UNKNOWN) when `error` says the call
    /// failed with any other error (an interceptor's, a wrapped one), 0 (OK) when it did not fail.
    case grpcStatus(code: String, error: String)
    /// The statement's first keyword, upper-cased (`SELECT`, `INSERT`): an SQL text's operation,
    /// low-cardinality where the text itself is not.
    case sqlOperation(of: String)
    case literal(String)

    public var captureNames: [String] {
        switch self {
        case .capture(let name), .hostname(of: let name), .port(of: let name), .rpcService(of: let name), .rpcMethod(of: let name),
            .urlScheme(tls: let name), .sqlOperation(of: let name):
            return [name]
        case .url(let scheme, let host, let path, let query): return [scheme, host, path, query]
        case .grpcStatus(let code, let error): return [code, error]
        case .literal: return []
        }
    }

    public var description: String {
        switch self {
        case .capture(let name): return name
        case .hostname(of: let name): return "hostname(\(name))"
        case .port(of: let name): return "port(\(name))"
        case .url: return "url(\(captureNames.joined(separator: ", ")))"
        case .rpcService(of: let name): return "rpc_service(\(name))"
        case .rpcMethod(of: let name): return "rpc_method(\(name))"
        case .urlScheme(tls: let name): return "url_scheme(\(name))"
        case .grpcStatus(let code, let error): return "grpc_status(\(code), \(error))"
        case .sqlOperation(of: let name): return "sql_operation(\(name))"
        case .literal(let text): return "'\(text)'"
        }
    }
}

/// A position in a pack file, for error messages and `sonde plan`. Line 0 stands for the file
/// or folder as a whole, for problems that have no position in it (it could not be read, or a
/// search for packs stopped there).
public struct SourceLocation: Sendable, Equatable, CustomStringConvertible {
    public var file: String
    public var line: Int
    public var column: Int
    public init(file: String, line: Int, column: Int) {
        self.file = file
        self.line = line
        self.column = column
    }

    /// The file or folder as a whole, printed as its path alone.
    public init(wholeFile file: String) {
        self.init(file: file, line: 0, column: 0)
    }

    public var description: String { line > 0 ? "\(file):\(line):\(column)" : file }
}
