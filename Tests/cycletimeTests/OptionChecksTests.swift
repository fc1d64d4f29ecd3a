import Foundation
import TestSupport
import XCTest

/// Every numeric option of every command, found from the executable's own description of its
/// commands (`--experimental-dump-help`), so a new command or flag is covered without editing this
/// test: NaN, infinities, negative, zero and huge values end in a clean exit (64 for a rejected
/// value, 1 when the value is valid and the dummy input files are missing) with one error line,
/// never a crash.
final class OptionChecksTests: XCTestCase {
    final class Flag: @unchecked Sendable { var value = false }

    struct Command {
        let path: [String]
        let options: [String]
        let requiredOptions: [String]
        let positionals: Int
    }

    func commands(_ exe: String) throws -> [Command] {
        let r = try runProcess(exe, ["--experimental-dump-help"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let root = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        var out: [Command] = []
        func walk(_ c: [String: Any], _ path: [String]) {
            let args = c["arguments"] as? [[String: Any]] ?? []
            func name(_ a: [String: Any]) -> String? {
                ((a["names"] as? [[String: Any]])?.first { ($0["kind"] as? String) == "long" }?["name"] as? String).map { "--" + $0 }
            }
            let options = args.filter { ($0["kind"] as? String) == "option" }
            out.append(Command(path: path, options: options.compactMap(name),
                               requiredOptions: options.filter { ($0["isOptional"] as? Bool) == false }.compactMap(name),
                               positionals: args.filter { ($0["kind"] as? String) == "positional" && ($0["isOptional"] as? Bool) == false }.count))
            for s in c["subcommands"] as? [[String: Any]] ?? [] {
                if let n = s["commandName"] as? String, n != "help" { walk(s, path + [n]) }
            }
        }
        walk(try XCTUnwrap(root["command"] as? [String: Any]), [])
        return out.filter { !$0.path.isEmpty }
    }

    func testEveryNumericOptionOfEveryCommandEndsCleanlyOnHostileValues() throws {
        let exe = try cycletimeExecutable()
        let dir = temporaryDirectory("options")
        let missing = dir + "/missing-input"
        var numeric = 0, runs = 0
        for c in try commands(exe) {
            let required = Array(repeating: missing, count: c.positionals) + c.requiredOptions.flatMap { [$0, missing] }
            for option in c.options where !c.requiredOptions.contains(option) {
                // A numeric option is one whose value the parser rejects when it is not a number.
                let probe = try runProcess(exe, c.path + required + [option, "abc"])
                guard probe.status == 64, probe.stderr.contains("is invalid for") else { continue }
                numeric += 1
                for value in ["nan", "inf", "-inf", "-1", "0", "99999999999", "1e300"] {
                    // A command that needs no input (bench tracker) does its work on a valid value:
                    // still running after 5 s, it took the value without crashing; it is stopped.
                    let stopped = Flag()
                    let r = try runProcess(exe, c.path + required + [option, value]) { p in
                        guard required.isEmpty else { return }
                        DispatchQueue.global().asyncAfter(deadline: .now() + 5) { if p.isRunning { stopped.value = true; p.terminate() } }
                    }
                    runs += 1
                    if stopped.value { continue }
                    let what = "\((c.path + [option, value]).joined(separator: " ")): \(r.stderr)"
                    XCTAssertTrue([1, 64].contains(r.status), what)
                    XCTAssertEqual(r.stderr.split(separator: "\n").filter { $0.hasPrefix("Error:") }.count, 1, what)
                }
            }
        }
        // bench, features, propagate (4 tasks), eval, ava, report, video: dozens of numeric options.
        XCTAssertGreaterThan(numeric, 40)
        XCTAssertGreaterThan(runs, 280)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir), [], "a hostile value made a command write output")
    }
}
