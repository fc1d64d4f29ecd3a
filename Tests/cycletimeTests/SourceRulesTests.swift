import Foundation
import TestSupport
import XCTest

/// Rules the sources keep mechanically, so that a value from a file, a flag or a config can never
/// reach a trap through them: no force unwrap (`x!`), no `try!`, no `as!` anywhere in `Sources/`.
/// The one exception is `baseAddress!` inside `withUnsafe…BufferPointer` of the program's own
/// buffers (a tensor's storage, a decoded image), whose sizes are checked non-zero where they are read.
final class SourceRulesTests: XCTestCase {
    func testNoSourceFileForceUnwrapsTriesOrCastsByForce() throws {
        let root = repoRoot + "/Sources"
        let files = (FileManager.default.subpaths(atPath: root) ?? []).filter { $0.hasSuffix(".swift") }.sorted()
        XCTAssertGreaterThan(files.count, 50, "the sources were not found under \(root)")
        var offences: [String] = []
        for rel in files {
            let text = try String(contentsOfFile: root + "/" + rel, encoding: .utf8)
            for (line, what) in SourceScanner.forcedOperations(in: text) { offences.append("Sources/\(rel):\(line): \(what)") }
        }
        XCTAssertEqual(offences, [], "\(offences.count) forced operation(s):\n" + offences.joined(separator: "\n"))
    }

    /// The scanner itself: it sees through comments and string literals (but not interpolations).
    func testTheScannerFindsForcedOperationsOnlyInCode() {
        let text = """
        let a = b!                      // x!
        let c = try! f()
        let d = e as! Int
        if x != y, !z { }
        let s = "not code: y! try! as!"
        let t = "code: \\(dict[k]!)"
        /* block: q! */
        let ok = p.baseAddress!
        """
        let found = SourceScanner.forcedOperations(in: text)
        XCTAssertEqual(found.map(\.line), [1, 2, 3, 6], "\(found)")
    }
}

/// A small lexer over Swift source: the code characters outside comments and string literals
/// (string interpolations are code), then the forced operations among them.
enum SourceScanner {
    static func forcedOperations(in source: String) -> [(line: Int, what: String)] {
        let chars = Array(source.unicodeScalars)
        var code: [(Int, Unicode.Scalar)] = []  // (line, char)
        var line = 1, i = 0
        var strings: [String] = []          // open string delimiters (innermost last)
        var interpolationDepth: [Int] = []  // paren depth of each open interpolation
        func starts(_ s: String, at k: Int) -> Bool {
            let u = Array(s.unicodeScalars)
            return k + u.count <= chars.count && Array(chars[k..<(k + u.count)]) == u
        }
        while i < chars.count {
            let c = chars[i]
            if c == "\n" { line += 1 }
            let inString = strings.count > interpolationDepth.count
            if !inString {
                if starts("//", at: i) {
                    while i < chars.count && chars[i] != "\n" { i += 1 }
                    continue
                }
                if starts("/*", at: i) {
                    i += 2
                    while i < chars.count && !starts("*/", at: i) { if chars[i] == "\n" { line += 1 }; i += 1 }
                    i += 2
                    continue
                }
                if starts("\"\"\"", at: i) { strings.append("\"\"\""); i += 3; continue }
                if c == "\"" { strings.append("\""); i += 1; continue }
                if !interpolationDepth.isEmpty {
                    if c == "(" { interpolationDepth[interpolationDepth.count - 1] += 1 }
                    if c == ")" {
                        interpolationDepth[interpolationDepth.count - 1] -= 1
                        if interpolationDepth[interpolationDepth.count - 1] == 0 { interpolationDepth.removeLast(); i += 1; continue }
                    }
                }
                code.append((line, c))
                i += 1
            } else {
                if c == "\\" {
                    if i + 1 < chars.count && chars[i + 1] == "(" { interpolationDepth.append(1); i += 2; continue }
                    i += 2
                    continue
                }
                if let d = strings.last, starts(d, at: i) { strings.removeLast(); i += d.unicodeScalars.count; continue }
                i += 1
            }
        }
        var found: [(line: Int, what: String)] = []
        let text = code.map { Character($0.1) }
        func word(endingAt k: Int) -> String {
            var s = k
            while s > 0 && (text[s - 1].isLetter || text[s - 1].isNumber || text[s - 1] == "_") { s -= 1 }
            return String(text[s...k])
        }
        for k in 1..<max(text.count, 1) where text[k] == "!" {
            if k + 1 < text.count && text[k + 1] == "=" { continue }  // !=
            let prev = text[k - 1]
            guard prev.isLetter || prev.isNumber || prev == "_" || prev == ")" || prev == "]" else { continue }  // prefix !
            let w = prev == ")" || prev == "]" ? String(prev) : word(endingAt: k - 1)
            if w == "baseAddress" { continue }
            found.append((code[k].0, w == "try" || w == "as" ? w + "!" : "force unwrap after '\(w)'"))
        }
        return found
    }
}
