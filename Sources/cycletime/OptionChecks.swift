import ArgumentParser
import CycleTimeCore
import Foundation

/// Numeric command-line options are checked before any work: a value that is not a finite number
/// in the option's range is one `ValidationError` naming the flag (exit 64).
func checkOption(_ flag: String, _ value: Double?, _ range: ClosedRange<Double>, allowInfinity: Bool = false) throws {
    guard let v = value else { return }
    if allowInfinity && v == .infinity && range.upperBound == .infinity { return }
    guard v.isFinite, range.contains(v) else {
        throw ValidationError("\(flag) must be a finite number in \(range.lowerBound)...\(range.upperBound), got \(v)")
    }
}

func checkOption(_ flag: String, _ value: Int?, _ range: ClosedRange<Int>) throws {
    guard let v = value else { return }
    guard range.contains(v) else { throw ValidationError("\(flag) must be in \(range.lowerBound)...\(range.upperBound), got \(v)") }
}

/// `--precision fp32|bf16` parses straight into the core's `Precision` (any other value is a
/// command-line error naming the flag and the valid values).
extension Precision: ExpressibleByArgument {}
