import BinaryAnalysis
import Planning
import ProbePacks

/// The stages that need no root: packs × binary → attach plan.
public enum Planner {
    public static func plan(executable: String, packs: [ProbePack]) throws -> AttachPlan {
        let facts = try BinaryAnalyzer.analyze(
            path: executable, functions: PlanCompiler.functionsNeeded(by: packs), dataSymbols: [])
        return PlanCompiler.compile(packs: packs, facts: facts)
    }
}
