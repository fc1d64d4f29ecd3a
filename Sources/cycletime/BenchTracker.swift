import ArgumentParser
import CycleTimeTracking
import Foundation

/// `cycletime bench tracker`: whether the TimeCycle localizer learns, on inputs whose answer is
/// known (`TimeCycleProbe`): the readout of Gaussian affinities (grid loss, next to the best
/// constant's), then the whole cycle on fixed positional features with only the localizer trained
/// (held-out direct / skip / long errors at each evaluation, next to the best constants').
struct BenchTracker: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tracker",
        abstract: "TimeCycle localizer learning: Gaussian-affinity readout and the full cycle on positional features.")

    @Option(help: "Training steps of the full cycle.") var steps = 1500
    @Option(help: "Held-out evaluation every this many steps.") var evalEvery = 100
    @Option(help: "Batch of the full cycle.") var batch = 2
    @Option(help: "Held-out clips of the full cycle's evaluations.") var heldOut = 16
    @Option(help: "Training steps of the readout (batch 4).") var readoutSteps = 100
    @Option(help: "Side of the frames' feature map (the original: 30).") var baseGrid = 30
    @Option(help: "Side of the patch's feature map (the original: 10; the localizer needs at least 7).") var patchGrid = 10
    @Option(help: "Seed of every random choice.") var seed = 1
    @Flag(help: "Print the figures as one JSON object.") var json = false

    func validate() throws {
        try checkOption("--steps", steps, 1...1_000_000)
        try checkOption("--eval-every", evalEvery, 1...1_000_000)
        try checkOption("--batch", batch, 1...256)
        try checkOption("--held-out", heldOut, 1...4096)
        try checkOption("--readout-steps", readoutSteps, 1...1_000_000)
        try checkOption("--patch-grid", patchGrid, 7...64)
        try checkOption("--base-grid", baseGrid, patchGrid...128)
        try checkOption("--seed", seed, 0...Int(Int32.max))
    }

    func run() throws {
        let r = BenchReport(json: json)
        var rs = LocalizerReadoutSettings(baseGrid: baseGrid, patchGrid: patchGrid)
        rs.steps = readoutSteps
        rs.seed = UInt64(seed)
        var start = wallSeconds()
        let readout = TimeCycleProbe.trainReadout(rs)
        r.say("Localizer readout: Gaussian affinities (sigma \(fmt(rs.sigma, 0)) cells), grid \(baseGrid)/\(patchGrid), batch \(rs.batch), \(rs.steps) steps, Adam 2e-4 (\(fmt(wallSeconds() - start, 1)) s)")
        r.add("readout_heldout_grid_loss", readout.heldOutLoss, line: "  held-out grid loss \(fmt(readout.heldOutLoss, 4))")
        r.add("readout_constant_grid_loss", readout.constantLoss, line: "  best constant      \(fmt(readout.constantLoss, 4))")

        var cs = CycleProbeSettings(baseGrid: baseGrid, patchGrid: patchGrid)
        cs.steps = steps
        cs.evalEvery = evalEvery
        cs.batch = batch
        cs.heldOut = heldOut
        cs.seed = UInt64(seed)
        r.say("Full cycle on positional features (\(cs.encoding.channels) channels), only the localizer trained, original losses, batch \(batch), \(steps) steps, \(cs.heldOut) held-out clips")
        r.say("  step   direct    skip    long    loss   seconds")
        start = wallSeconds()
        var rows: [[String: Double]] = []
        let result = TimeCycleProbe.trainCycle(cs) { e in
            let t = wallSeconds() - start
            rows.append(["step": Double(e.step), "direct": e.errors.direct, "skip": e.errors.skip, "long": e.errors.long, "loss": e.loss, "seconds": t])
            r.say(String(format: "  %5d  %6.3f  %6.3f  %6.3f  %6.3f  %8.1f", e.step, e.errors.direct, e.errors.skip, e.errors.long, e.loss, t))
            fflush(nil)   // a long run shows each evaluation as it comes (nil: every output stream)
        }
        let c = result.constant
        r.say(String(format: "  const  %6.3f  %6.3f  %6.3f", c.direct, c.skip, c.long))
        let median = result.medianDirect(last: 5)
        r.add("cycle_evaluations", rows)
        r.add("cycle_constant_direct", c.direct)
        r.add("cycle_constant_skip", c.skip)
        r.add("cycle_constant_long", c.long)
        r.add("cycle_median_direct_last5", median,
              line: "  median direct error over the last 5 evaluations \(fmt(median, 3)) = \(fmt(median / c.direct, 2)) x the constant's")
        r.add("cycle_seconds_per_step", (wallSeconds() - start) / Double(steps))
        r.emitJSON()
    }
}
