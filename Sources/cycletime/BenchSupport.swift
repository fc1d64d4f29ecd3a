import ArgumentParser
import CycleTimeCore
import Foundation

/// Wall and CPU time of a block. `cpuRatio` = CPU seconds / wall seconds: about 2.0 means both
/// cores of a 2-core machine were busy.
struct Timing {
    var wall: Double
    var cpu: Double
    var cpuRatio: Double { wall > 0 ? cpu / wall : 0 }
}

func cpuSeconds() -> Double {
    var u = rusage()
    getrusage(RUSAGE_SELF.rawValue, &u)
    return Double(u.ru_utime.tv_sec) + Double(u.ru_utime.tv_usec) * 1e-6
        + Double(u.ru_stime.tv_sec) + Double(u.ru_stime.tv_usec) * 1e-6
}

func wallSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
}

/// Times `body` once.
@discardableResult
func measure(_ body: () throws -> Void) rethrows -> Timing {
    let c0 = cpuSeconds(), w0 = wallSeconds()
    try body()
    return Timing(wall: wallSeconds() - w0, cpu: cpuSeconds() - c0)
}

/// Runs `body` `warmup` times untimed, then `runs` times; returns the median run.
func medianTiming(warmup: Int = 1, runs: Int = 3, _ body: () throws -> Void) rethrows -> Timing {
    for _ in 0..<warmup { try body() }
    var ts: [Timing] = []
    for _ in 0..<runs { ts.append(try measure(body)) }
    ts.sort { $0.wall < $1.wall }
    return ts[ts.count / 2]
}

/// Collects a benchmark's figures for the terminal and for `--json`.
final class BenchReport {
    private(set) var fields: [(String, Any)] = []
    let json: Bool
    init(json: Bool) { self.json = json }

    /// Records a figure and prints it as a line unless in JSON mode.
    func add(_ key: String, _ value: Any, line: String? = nil) {
        fields.append((key, value))
        if !json, let line { print(line) }
    }
    func say(_ line: String) { if !json { print(line) } else { FileHandle.standardError.write(Data((line + "\n").utf8)) } }

    func emitJSON() {
        guard json else { return }
        var dict: [String: Any] = [:]
        for (k, v) in fields { dict[k] = v }
        // JSON has no NaN or infinity: a figure that is not a number (a failed comparison run) is null.
        for (k, v) in dict { if let d = v as? Double, !d.isFinite { dict[k] = NSNull() } }
        guard let data = try? JSONSerialization.data(withJSONObject: dict, options: [.sortedKeys, .prettyPrinted]) else {
            FileHandle.standardError.write(Data("error: the benchmark's figures could not be written as JSON\n".utf8))
            return
        }
        print(String(decoding: data, as: UTF8.self))
    }
}

func fmt(_ x: Double, _ digits: Int = 2) -> String { String(format: "%.\(digits)f", x) }
func mib(_ bytes: Int) -> String { String(format: "%.0f MiB", Double(bytes) / 1_048_576) }

/// sgemm GFLOP/s at n x n x n (the machine's ceiling for our convolutions).
func sgemmGFLOPs(n: Int = 2048) -> (gflops: Double, timing: Timing) {
    let a = Tensor.full([n, n], 0.5), b = Tensor.full([n, n], 0.25), c = Tensor.zeros([n, n])
    let t = medianTiming(warmup: 1, runs: 5) {
        BLAS.sgemm(transA: false, transB: false, m: n, n: n, k: n, a: a.data, lda: n, b: b.data, ldb: n, c: c.data, ldc: n)
    }
    return (2 * Double(n) * Double(n) * Double(n) / t.wall / 1e9, t)
}

/// Runs a program; its standard output when it exits 0, else nil.
func runProcess(_ exe: String, _ args: [String]) -> String? {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: exe)
    p.arguments = args
    let pipe = Pipe()
    p.standardOutput = pipe
    p.standardError = FileHandle.nullDevice
    do { try p.run() } catch { return nil }
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    guard p.terminationStatus == 0 else { return nil }
    return String(data: data, encoding: .utf8)
}

/// Runs a program that prints its figures as one JSON object on its last line: that object when
/// the program exits 0 and the line parses, else nil.
func runJSONProcess(_ exe: String, _ args: [String]) -> [String: Any]? {
    guard let out = runProcess(exe, args), let line = out.split(separator: "\n").last else { return nil }
    return (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any]
}

/// One PyTorch reference run of a benchmark case: its layout (default or channels_last), median
/// seconds per step and peak resident memory.
struct TorchRun {
    var layout: String
    var seconds: Double
    var peak: Double
    var version: String

    /// The run from a reference script's JSON (`layout`, `seconds_per_step`, `peak_rss_bytes`), or
    /// nil when the script failed or printed something else.
    init?(_ j: [String: Any]?, layout: String) {
        guard let j, let s = j["seconds_per_step"] as? Double, let p = j["peak_rss_bytes"] as? Double else { return nil }
        self.layout = layout; seconds = s; peak = p; version = "\(j["torch_version"] ?? "")"
    }
}

/// Lines and JSON fields comparing our `seconds` and `peak` with each PyTorch run (`torch_<layout>_*`,
/// `speedup_vs_torch_<layout>`) and with PyTorch at its fastest here, the faster layout
/// (`torch_seconds_per_step`, `torch_peak_rss_bytes`, `torch_fastest_layout`, `speedup_vs_torch`,
/// `memory_vs_torch`). `unit` names a step ("step", "iteration").
func compareWithTorch(seconds: Double, peak: Double, _ torch: [TorchRun], unit: String, into entry: inout [String: Any]) -> String {
    var text = ""
    for t in torch {
        text += "\n    PyTorch \(t.version) \(t.layout): \(fmt(t.seconds, 2)) s/\(unit), peak \(mib(Int(t.peak))) -> CycleTime \(fmt(t.seconds / seconds, 2))x as fast, \(fmt(peak / t.peak, 2))x the memory"
        entry["torch_\(t.layout)_seconds_per_step"] = t.seconds
        entry["torch_\(t.layout)_peak_rss_bytes"] = t.peak
        entry["speedup_vs_torch_\(t.layout)"] = t.seconds / seconds
    }
    if let fastest = torch.min(by: { $0.seconds < $1.seconds }) {
        entry["torch_seconds_per_step"] = fastest.seconds
        entry["torch_peak_rss_bytes"] = fastest.peak
        entry["torch_fastest_layout"] = fastest.layout
        entry["speedup_vs_torch"] = fastest.seconds / seconds
        entry["memory_vs_torch"] = peak / fastest.peak
        text += "\n    against PyTorch's faster layout (\(fastest.layout)): \(fmt(fastest.seconds / seconds, 2))x as fast, \(fmt(peak / fastest.peak, 2))x the memory"
    }
    return text
}

/// A path inside the repository: relative to the working directory when it exists there, else
/// relative to the executable's checkout (.build/<config>/cycletime).
func repoPath(_ relative: String) -> String {
    if FileManager.default.fileExists(atPath: relative) { return relative }
    // The checkout holding this executable: the nearest ancestor with a Package.swift.
    var url = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
    while url.path != "/" {
        if FileManager.default.fileExists(atPath: url.appendingPathComponent("Package.swift").path) {
            return url.appendingPathComponent(relative).path
        }
        url.deleteLastPathComponent()
    }
    return relative
}

/// `--conv-backend native|onednn` (any case).
extension ConvolutionBackend: ExpressibleByArgument {
    public init?(argument: String) {
        guard let b = ConvolutionBackend.allCases.first(where: { $0.rawValue.lowercased() == argument.lowercased() }) else { return nil }
        self = b
    }
}
