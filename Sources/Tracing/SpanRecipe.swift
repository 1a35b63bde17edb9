import Planning
import ProbePacks
import Spans

/// A span probe's rules with its enrichments merged in, worked out once per plan so that
/// assembling a span concatenates and filters nothing. A class, so that using it for a span
/// retains one object rather than each of its arrays and strings.
final class SpanRecipe: Sendable {
    /// The rules that hold for one way the span ended, over the probe's capture indexes.
    final class Rules: Sendable {
        let attributes: [CompiledAttribute]
        /// Enrichments' names, in plan order: the last one that can be filled in wins.
        let renames: [CompiledName]
        let errorWhen: [CompiledCondition]

        init(attributes: [CompiledAttribute], renames: [CompiledName], errorWhen: [CompiledCondition]) {
            self.attributes = attributes
            self.renames = renames
            self.errorWhen = errorWhen
        }
    }

    let captureLayouts: [CaptureLayout]
    /// The captures' names, in slot order.
    let captureNames: [String]
    let name: CompiledName
    /// The capture holding an incoming `tracestate`, when the probe reads one.
    let traceStateIndex: Int?
    let kind: SpanKind
    /// Shared by every span of the probe, so exporters compare it by identity first.
    let scope: InstrumentationScope
    /// When the call returned: enrichments that end the span (`end-span`) do not apply.
    let returned: Rules
    /// When an `end-span` probe ended the span: every enrichment applies.
    let endedByObjectProbe: Rules

    /// Nil for a probe that makes no span.
    init?(_ probe: PlannedProbe) {
        guard let span = probe.probe.span else { return nil }
        captureLayouts = probe.captureSlots.map(CaptureLayout.init)
        let names = probe.captureSlots.map(\.name)
        captureNames = names
        name = CompiledName(span.name, names: names)
        traceStateIndex = names.firstIndex(of: CaptureSlot.traceStateName)
        kind = SpanKind(span.kind)
        scope = InstrumentationScope(name: "sonde/\(probe.pack)", version: ProbePack.currentFormat)
        func rules(_ enrichments: [EnrichmentRule]) -> Rules {
            Rules(
                attributes: (probe.probe.attributes + enrichments.flatMap(\.attributes)).map { CompiledAttribute($0, names: names) },
                renames: enrichments.compactMap(\.rename).map { CompiledName($0, names: names) },
                errorWhen: (span.errorWhen + enrichments.flatMap(\.errorWhen)).map { CompiledCondition($0, names: names) })
        }
        returned = rules(probe.enrichments.filter { !$0.endsSpan })
        endedByObjectProbe = rules(probe.enrichments)
    }
}

extension SpanKind {
    init(_ kind: SpanRule.Kind) {
        switch kind {
        case .server: self = .server
        case .client: self = .client
        case .internal: self = .internal
        case .producer: self = .producer
        case .consumer: self = .consumer
        }
    }
}
