import BinaryAnalysis
import ProbePacks

/// Everything the Engine attaches and the span assembler needs to read what comes back,
/// for one executable. Printed by `sonde plan`.
public struct AttachPlan: Sendable, Equatable {
    public var binaryPath: String
    public var isPositionIndependent: Bool
    public var goVersion: String?
    /// A shared library's soname and version (`libpq.so.5 5.15`); nil for an executable.
    public var sharedLibrary: String?
    /// What each experimental pack with planned probes does not do yet, by pack name.
    public var experimentalPacks: [String: String] = [:]
    /// What a user should know of probes that are planned: e.g. a name several functions share.
    public var notes: [String] = []
    public var probes: [PlannedProbe]
    /// Probes that cannot run on this binary, each with the reason.
    public var skipped: [SkippedProbe]

    public init(binaryPath: String, isPositionIndependent: Bool, goVersion: String?, probes: [PlannedProbe], skipped: [SkippedProbe]) {
        self.binaryPath = binaryPath
        self.isPositionIndependent = isPositionIndependent
        self.goVersion = goVersion
        self.probes = probes
        self.skipped = skipped
    }
}

extension AttachPlan {
    /// Whether some probe writes trace context into the traced process.
    public var injectsTraceContext: Bool { probes.contains(where: \.writesTargetMemory) }

    /// The plan without outgoing propagation: no probe writes to the traced process, and client
    /// spans no longer wait to be written (their incoming traceparent is still read).
    public func droppingTraceContextInjection() -> AttachPlan {
        var plan = self
        plan.probes.removeAll(where: \.writesTargetMemory)
        for index in plan.probes.indices {
            guard case .extract(var extraction)? = plan.probes[index].contextAction else { continue }
            extraction.setsCarrier = false
            plan.probes[index].contextAction = .extract(extraction)
        }
        return plan
    }

    /// The plan without any trace context work, in or out: what the benchmark compares
    /// propagation's cost against.
    public func droppingTraceContext() -> AttachPlan {
        var plan = droppingTraceContextInjection()
        plan.probes.removeAll { $0.probe.extraction != nil }
        for index in plan.probes.indices {
            plan.probes[index].contextProgram = []
            plan.probes[index].contextAction = nil
        }
        return plan
    }
}

public struct SkippedProbe: Sendable, Equatable, CustomStringConvertible {
    public var pack: String
    public var probe: String
    public var reason: String
    /// A function the probe needs is not in the binary: a version of the library without it, or
    /// code the program never uses (e.g. connection hijacking), so there is nothing to probe.
    public var isFunctionAbsent: Bool
    public init(pack: String, probe: String, reason: String, isFunctionAbsent: Bool = false) {
        self.pack = pack
        self.probe = probe
        self.reason = reason
        self.isFunctionAbsent = isFunctionAbsent
    }
    public var description: String { "\(pack)/\(probe): \(reason)" }
}

public struct PlannedProbe: Sendable, Equatable {
    public var pack: String
    public var packVersion: String
    public var probe: Probe
    /// Ties the entry and return sites of this probe together on the BPF side.
    public var spanSlot: UInt32
    public var keyMode: CallKeyMode
    public var entry: ProbeSite
    /// `called-from`: the other calls of the function in its caller, sites like `entry` (each
    /// with its own configuration, in the slots an entry-only probe leaves unused).
    public var extraEntries: [ProbeSite] = []
    public var returns: [ProbeSite]
    /// Where the probe acts on entry: its entry site, and a called-from probe's other call sites.
    public var entries: [ProbeSite] { [entry] + extraEntries }
    public var entryProgram: [FetchOp]
    public var returnProgram: [FetchOp]
    /// Where each capture lands in the span record's data area. An enricher's list is its
    /// target's, which ends with the enricher's own captures.
    public var captureSlots: [CaptureSlot]
    /// What enrich probes add to this probe's span.
    public var enrichments: [EnrichmentRule] = []
    /// `end-span` probes: the register holding, at entry, the object whose open span they end.
    /// (A span probe with `outlives-call` finds its object in its return program.)
    public var objectKey: Register?
    /// `follow-goroutine` probes: the register holding the created goroutine at the call; the entry
    /// program reaches the creator's `*g`.
    public var handoffChild: Register?
    /// Span probes with `trace-context` and `extract-trace-context` probes: the ops that reach the
    /// request's headers, before the span starts; `inject-trace-context` probes: those that reach
    /// the writer. `contextAction` says what is then done there.
    public var contextProgram: [FetchOp] = []
    public var contextAction: TraceContextAction?
    /// `inject-trace-context` probes: the register holding the headers being written.
    public var carrierRegister: Register?
    /// Span probes: memory their entry reads in one go, for the programs' reads inside it.
    public var prefetch: Prefetch?
    /// The entry site acts only when this holds (an `at: return` probe's `when-result`).
    public var entryGuard: SiteGuard?
    /// The return sites end the span only when this holds (`span.ends-at-return`).
    public var returnGuard: SiteGuard?
    /// `span.ends-after-call`: the branches right after the call whose results the function
    /// returns, where the span usually ends, cheaply; `returns` then holds only the RETs of the
    /// other ways out. They end the span only when `resultBranchGuard` holds (the result is nil).
    public var resultBranches: [ProbeSite] = []
    public var resultBranchGuard: SiteGuard?
    /// `span.ends-at-return.after-call`: the RETs a call that failed leaves through, which alone
    /// are probed once end-span probes end the span otherwise (``returnsOnlyOnFailure``).
    public var failureReturns: FailureReturns?
    /// `span.ends-at-return` in Go with its end-span probes planned: a RET may come after an
    /// end-span probe ended the call (grpc finishes a stream, then returns its error), so only a
    /// call entered at the RET's depth ends there, and finding none is no error.
    public var returnsAfterEndSpan = false
    /// `returns` are `failureReturns`, reached only by calls that failed: a call that succeeds
    /// costs no trap there.
    public var returnsOnlyOnFailure: Bool { returnsAfterEndSpan && failureReturns != nil }
    /// Why a span whose pack says `ends-after-call` or `ends-at-return.after-call` ends at all its
    /// RETs in this binary.
    public var endSiteProblem: String?

    /// The probe writes into the traced process's memory (outgoing trace context).
    public var writesTargetMemory: Bool {
        if case .injectHeaderLine? = contextAction { true } else { false }
    }

    public init(
        pack: String, packVersion: String, probe: Probe, spanSlot: UInt32, keyMode: CallKeyMode, entry: ProbeSite, returns: [ProbeSite],
        entryProgram: [FetchOp], returnProgram: [FetchOp], captureSlots: [CaptureSlot]
    ) {
        self.pack = pack
        self.packVersion = packVersion
        self.probe = probe
        self.spanSlot = spanSlot
        self.keyMode = keyMode
        self.entry = entry
        self.returns = returns
        self.entryProgram = entryProgram
        self.returnProgram = returnProgram
        self.captureSlots = captureSlots
    }

    public var qualifiedID: String { "\(pack)/\(probe.id)" }
}

/// A site that acts only when a register passes a test: a result that is zero, or is not.
public struct SiteGuard: Sendable, Equatable, CustomStringConvertible {
    public var register: Register
    public var test: ResultTest
    public init(register: Register, test: ResultTest) {
        self.register = register
        self.test = test
    }
    public var description: String { "only when \(register) is \(test == .zero ? "zero" : "not zero")" }
}

/// The RETs a function takes right after its call failed, and the register that says so.
public struct FailureReturns: Sendable, Equatable {
    public var sites: [ProbeSite]
    /// Not zero right after the call when it failed.
    public var register: Register
}

/// What identifies one call in flight: Go goroutines hop threads, native calls stay on theirs.
public enum CallKeyMode: UInt32, Sendable, Equatable {
    case goroutine = 0
    case thread = 1
}

/// Attributes and a new name that an enrich probe gives another probe's span.
public struct EnrichmentRule: Sendable, Equatable {
    /// The enrich probe, `pack/probe`.
    public var source: String
    public var attributes: [AttributeRule]
    public var rename: NameTemplate?
    /// Further reasons the span failed, from the enrich probe's captures.
    public var errorWhen: [ErrorCondition]
    /// From an `end-span` probe: applies only to spans that probe ended (a stream that failed to
    /// open ends at its call's return instead, without the end probe's captures).
    public var endsSpan: Bool
    public init(source: String, attributes: [AttributeRule], rename: NameTemplate?, errorWhen: [ErrorCondition] = [], endsSpan: Bool = false) {
        self.source = source
        self.attributes = attributes
        self.rename = rename
        self.errorWhen = errorWhen
        self.endsSpan = endsSpan
    }
}

public struct ProbeSite: Sendable, Equatable {
    public enum Role: String, Sendable, Equatable {
        case entry, `return`
        /// A `call` instruction inside the function, which the kernel emulates.
        case call
        /// The conditional branch right after a call, testing one of its results
        /// (`span.ends-after-call`), which the kernel emulates.
        case resultBranch
        /// The function's return, through the kernel's return probe (uretprobe): it swaps the
        /// return address at the function's first instruction and runs when the call returns,
        /// wherever it returns from (a tail call's callee too). Native code only: Go's stack
        /// walker would meet the swapped address.
        case returnProbe
    }
    public var role: Role
    public var function: String
    public var address: UInt64
    public var fileOffset: UInt64
    public var instruction: String
    /// For a return probe: whether the instruction it is hooked at is (its return is always cheap).
    public var kernelEmulates: Bool
    /// The hit is ignored when any of these EFLAGS bits is set: the stack-check branch is about
    /// to enter morestack, and the function will start over.
    public var skipFlagsMask: UInt64

    public init(role: Role, function: String, address: UInt64, fileOffset: UInt64, instruction: String, kernelEmulates: Bool, skipFlagsMask: UInt64) {
        self.role = role
        self.function = function
        self.address = address
        self.fileOffset = fileOffset
        self.instruction = instruction
        self.kernelEmulates = kernelEmulates
        self.skipFlagsMask = skipFlagsMask
    }
}

public struct CaptureSlot: Sendable, Equatable {
    public var name: String
    public var type: ValueType
    /// Byte offset in the record's data area.
    public var offset: Int
    public var maxLength: Int
    public var ifZero: Int64?
    /// Reported when the capture was not read.
    public var ifAbsent: Int64? = nil
    /// Where the offsets used to reach the value came from, e.g. `DWARF`.
    public var origin: String

    public init(name: String, type: ValueType, offset: Int, maxLength: Int, ifZero: Int64?, origin: String) {
        self.name = name
        self.type = type
        self.offset = offset
        self.maxLength = maxLength
        self.ifZero = ifZero
        self.origin = origin
    }

    /// The capture holding an incoming `tracestate`, which goes to the span's trace state rather
    /// than an attribute. Not a name a pack can give: pack capture names are plain words.
    public static let traceStateName = "(tracestate)"
    /// Bytes of `tracestate` kept: a longer one keeps its first whole list members (W3C allows
    /// dropping members from the end), so that the record's capture area still fits a router's.
    public static let traceStateMaxLength = 96

    /// Bytes the slot takes: strings carry a two-byte length, and a C string's copy ends with
    /// the NUL the kernel writes after the bytes kept.
    public var size: Int {
        switch type {
        case .cString: 2 + maxLength + 1
        default: type.isText ? 2 + maxLength : 8
        }
    }

    /// Where the next slot may start: slots are 8-byte aligned.
    public var alignedEnd: Int { offset + (size + 7) / 8 * 8 }
}
