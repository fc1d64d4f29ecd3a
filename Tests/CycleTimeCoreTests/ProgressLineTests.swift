import CycleTimeCore
import XCTest

final class ProgressLineTests: XCTestCase {
    final class Sink: @unchecked Sendable { var text = "" }

    func testDurationsReadAsHoursMinutesSeconds() {
        XCTAssertEqual(ProgressLine.duration(12), "12s")
        XCTAssertEqual(ProgressLine.duration(185), "3m05s")
        XCTAssertEqual(ProgressLine.duration(3720), "1h02m")
        XCTAssertEqual(ProgressLine.duration(.infinity), "?")
        XCTAssertEqual(ProgressLine.duration(-1), "?")
    }

    func testTerminalRewritesOneLineAndEndsItOnFinish() {
        let sink = Sink()
        let line = ProgressLine(terminal: true) { sink.text += $0 }
        line.show("a")
        line.show("b")
        line.finish("done")
        XCTAssertEqual(sink.text, "\r\u{1B}[2Ka\r\u{1B}[2Kb\ndone\n")
    }

    func testPlainOutputIsThrottledButForcedLinesAndTheLastCountAlwaysShow() {
        let sink = Sink()
        let line = ProgressLine(terminal: false, plainInterval: 3600) { sink.text += $0 }
        let p = CountProgress(total: 3, unit: "frame", line: line)
        p.tick("seq")
        p.tick("seq")
        p.tick("seq")
        p.finish()
        let lines = sink.text.split(separator: "\n")
        XCTAssertEqual(lines.count, 2, sink.text)  // the first (nothing shown before) and the last
        XCTAssertTrue(lines[0].hasPrefix("seq  frame 1/3  "), sink.text)
        XCTAssertTrue(lines[1].hasPrefix("seq  frame 3/3  ") && lines[1].hasSuffix("ETA 0s"), sink.text)
    }
}
