import Foundation
import XCTest
@testable import CycleTimeTraining

final class ProgressTests: XCTestCase {
    func testPlainLinesEveryNStepsWithRateETAAndLoss() {
        final class Sink: @unchecked Sendable { var text = "" }
        let sink = Sink()
        let p = ProgressReporter(every: 2, terminal: false) { sink.text += $0 }
        p.start(step: 0, total: 4)
        var logged: [String] = []
        for s in 1...4 {
            if let l = p.update(step: s, stepSeconds: 2, clips: 4, dataWait: 0.1, terms: [("loss", 0.5), ("loss_long", 0.25)]) { logged.append(l) }
        }
        p.finish(message: "done")
        let lines = sink.text.split(separator: "\n").map(String.init)
        XCTAssertEqual(lines.first, "training for 4 steps")
        XCTAssertEqual(lines.last, "done")
        // Steps 1 (the first), 2 and 4 are printed; each line has step, rate, ETA and the loss terms.
        XCTAssertEqual(logged.count, 3)
        XCTAssertEqual(lines.count, 5)
        XCTAssertEqual(logged[1], "step 2/4 | 2.00 clips/s | 2.00 s/step | data wait 10% | ETA 4s | loss 0.5000 (long 0.2500)")
    }
}
