import CycleTimeCore
import Foundation

/// Progress of a long loop: on a terminal one line rewritten in place (step, rate, ETA, loss);
/// otherwise a plain line every `every` steps. `update` returns the plain line when one is due,
/// for the run's log.
public final class ProgressReporter {
    public let terminal: Bool
    public let every: Int
    public let unit: String
    let line: ProgressLine
    var total = 0, first = 0
    var start = DispatchTime.now().uptimeNanoseconds
    var smoothed: Double? = nil

    /// - Parameters: `terminal` nil = whether stderr is a terminal; `write` receives the text
    ///   (stderr by default).
    public init(every: Int, unit: String = "clips", terminal: Bool? = nil,
                write: @escaping (String) -> Void = { FileHandle.standardError.write(Data($0.utf8)) }) {
        self.terminal = terminal ?? (isatty(STDERR_FILENO) == 1)
        self.every = max(1, every)
        self.unit = unit
        line = ProgressLine(terminal: self.terminal, plainInterval: 0, write: write)
    }

    public func start(step: Int, total: Int) {
        first = step
        self.total = total
        start = DispatchTime.now().uptimeNanoseconds
        line.finish(step > 0 ? "resuming at step \(step)/\(total)" : "training for \(total) steps")
    }

    /// Reports a finished step; returns the plain line when one is due (every `every` steps and at the end).
    @discardableResult
    public func update(step: Int, stepSeconds: Double, clips: Double, dataWait: Double, terms: [(String, Double)]) -> String? {
        // Smoothed step time for the rate and ETA (the first step, with warm-up, counts less).
        let s = smoothed.map { 0.8 * $0 + 0.2 * stepSeconds } ?? stepSeconds
        smoothed = s
        let eta = Double(total - step) * s
        let loss = terms.first.map { String(format: "%.4f", $0.1) } ?? "-"
        let parts = terms.dropFirst().map { "\($0.0.replacingOccurrences(of: "loss_", with: "")) \(String(format: "%.4f", $0.1))" }
        let text = String(format: "step %d/%d | %.2f %@/s | %.2f s/step | data wait %.0f%% | ETA %@ | loss %@",
                          step, total, clips / s, unit, s, dataWait * 100, ProgressLine.duration(eta), loss)
            + (parts.isEmpty ? "" : " (" + parts.joined(separator: ", ") + ")")
        let due = step % every == 0 || step == total || step == first + 1
        if terminal || due { line.show(text, force: true) }
        return due ? text : nil
    }

    /// A line of its own between steps (e.g. a validation's scores); the step line goes on below it.
    public func note(_ message: String) {
        line.finish(message)
    }

    public func finish(message: String) {
        line.finish(message)
    }
}
