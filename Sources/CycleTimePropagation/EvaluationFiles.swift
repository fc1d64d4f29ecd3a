import CycleTimeCore
import Foundation

/// The result files `cycletime eval davis|jhmdb|vip` write beside the results, and their JSON
/// coding (pretty, sorted keys, non-finite numbers as the strings "nan", "inf", "-inf").
/// Readers such as `cycletime report` decode the same types with `read`.
public enum EvaluationFiles {
    /// `cycletime eval davis`: `DAVISEvaluationResult`.
    public static func davis(set: String) -> String { "davis-eval-\(set).json" }
    /// Whether `name` is a `cycletime eval davis` result file (any set).
    public static func isDAVIS(_ name: String) -> Bool { name.hasPrefix("davis-eval-") && name.hasSuffix(".json") }
    /// `cycletime eval jhmdb`: `PCKResult`.
    public static let jhmdb = "pck.json"
    /// `cycletime eval vip`: `VIPResult`.
    public static let vip = "miou.json"

    /// Whether `name` is any file `cycletime eval` writes (JSON and CSV, every task).
    public static func isEvaluationOutput(_ name: String) -> Bool {
        isDAVIS(name) || [jhmdb, vip, "pck.csv", "miou.csv"].contains(name)
            || (name.hasSuffix(".csv") && (name.hasPrefix("global_results-") || name.hasPrefix("per-sequence_results-")))
    }

    /// Removes the evaluation files of an earlier run from a results folder about to receive new
    /// predictions, so no score is left beside masks it was not computed from. Returns their names.
    @discardableResult
    public static func removeStale(in folder: String) -> [String] {
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []).filter(isEvaluationOutput)
        for n in names { try? FileManager.default.removeItem(atPath: folder + "/" + n) }
        return names
    }

    public static func encode<T: Encodable>(_ value: T) throws -> Data {
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        enc.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        return try enc.encode(value)
    }

    /// Decodes the file at `path`; errors name the file.
    public static func read<T: Decodable>(_ type: T.Type, from path: String) throws -> T {
        guard let data = FileManager.default.contents(atPath: path) else { throw EvaluationError("\(path): cannot read the file") }
        let dec = JSONDecoder()
        dec.nonConformingFloatDecodingStrategy = .convertFromString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        do { return try dec.decode(type, from: data) } catch {
            throw EvaluationError("\(path): not a `cycletime eval` result of type \(type) (\(error))")
        }
    }

    /// Encodes `value` and writes it atomically to `path`.
    public static func write<T: Encodable>(_ value: T, to path: String) throws {
        let data: Data
        do { data = try encode(value) } catch { throw EvaluationError("\(path): \(error)") }
        try AtomicFile.write(data, to: path)
    }
}
