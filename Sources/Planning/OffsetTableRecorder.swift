import BinaryAnalysis
import ProbePacks

/// Records, from a reference build that has DWARF, the facts a pack's probes need, as one offset
/// table entry. Every probe is planned against the reference exactly as it would be against a
/// target, so the entry holds precisely the parameters and types planning consults.
public enum OffsetTableRecorder {
    /// `itabFirstMethod(interfaceType, dynamicType)`: the function the first method slot of the
    /// reference binary's itab for that pair points at (runtime type addresses in, symbol out).
    public static func record(
        pack: ProbePack, facts: BinaryFacts, libraryVersion: String, itabFirstMethod: (UInt64, UInt64) -> String?
    ) throws -> OffsetTable.Entry {
        guard let goVersion = facts.goBuild?.goVersion else {
            throw OffsetTableError(path: facts.path, reason: "not a Go program: no build info to key the entry by")
        }
        var functions: [String: RecordedFunction] = [:]
        var types: [String: TypeFacts] = [:]
        // A function this toolchain does not have (e.g. net/http's HTTP/2 before and after it
        // moved package) is recorded by no entry; planning says so for binaries built with it.
        for probe in pack.probes where facts.functions[probe.function] != nil {
            do {
                var signatures: [String: ProbeSignature] = [:]
                _ = try PlanCompiler.compile(probe: probe, facts: facts) { name in
                    let signature = try ProbeSignature.resolve(PlanCompiler.function(name, in: facts), of: pack, facts: facts, table: nil)
                    signatures[name] = signature
                    return signature
                }
                for (name, signature) in signatures {
                    functions[name] = RecordedFunction(parameters: signature.parameters, results: signature.results ?? [])
                }
                for (name, type) in signatures.values.flatMap(\.types.consulted) {
                    var portable = type
                    // Addresses are specific to the reference binary; what earlier probes
                    // recorded about the type stays.
                    portable.runtimeTypeAddress = nil
                    portable.itabFirstMethods = types[name]?.itabFirstMethods
                    types[name] = portable
                }
                for (interfaceType, assertedType) in signatures[probe.function].map({ typeAssertions(in: probe, signature: $0) }) ?? [] {
                    guard let interfaceAddress = facts.types[interfaceType]?.runtimeTypeAddress,
                          let assertedAddress = facts.types[assertedType]?.runtimeTypeAddress,
                          let method = itabFirstMethod(interfaceAddress, assertedAddress),
                          var asserted = types[assertedType]
                    else {
                        throw PlanProblem("found no itab for \(assertedType) as \(interfaceType) in the reference build")
                    }
                    asserted.itabFirstMethods = (asserted.itabFirstMethods ?? [:]).merging([interfaceType: method]) { _, new in new }
                    types[assertedType] = asserted
                }
            } catch let problem as PlanProblem {
                throw OffsetTableError(path: facts.path, reason: "\(pack.name)/\(probe.id) cannot be recorded: \(problem.reason)")
            }
        }
        return OffsetTable.Entry(goVersion: goVersion, libraryVersion: libraryVersion, functions: functions, types: types)
    }

    /// (interface type, asserted type) for each capture whose path starts with a type assertion,
    /// and for a dynamic type an `outlives-call` object must have.
    private static func typeAssertions(in probe: Probe, signature: ProbeSignature) -> [(String, String)] {
        var assertions: [(ValueOrigin, String)] = probe.captures.compactMap { capture in
            guard case .assertType(let assertedType)? = capture.path.first else { return nil }
            return (capture.origin, assertedType)
        }
        if let object = probe.span?.outlivesCall, let dynamicType = object.dynamicType { assertions.append((object.origin, dynamicType)) }
        if let writer = probe.injection?.writer, let dynamicType = writer.dynamicType { assertions.append((writer.origin, dynamicType)) }
        return assertions.compactMap { origin, assertedType in
            let value: Parameter?
            switch origin {
            case .argument(let name): value = signature.parameters.first { $0.name == name }
            case .result(let index): value = signature.results.flatMap { index < $0.count ? $0[index] : nil }
            }
            return value.map { ($0.typeName, assertedType) }
        }
    }
}
