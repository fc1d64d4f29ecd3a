import Foundation

// MARK: - writing

public enum ReportWriter {
    /// Writes `<out>/<name>.ipynb`, `<out>/<name>.md` and `<out>/<name>_files/` (name = last path
    /// component of `out`). Everything is written into a temporary folder beside `out`, then renamed
    /// into place, so an interrupted report leaves the previous one (or none), never half of one.
    @discardableResult
    public static func write(_ blocks: [ReportBlock], title: String, to out: String) throws -> (notebook: String, markdown: String) {
        let fm = FileManager.default
        var outPath = out
        while outPath.count > 1 && outPath.hasSuffix("/") { outPath.removeLast() }
        let name = (outPath as NSString).lastPathComponent
        let parent = (outPath as NSString).deletingLastPathComponent
        let parentDir = parent.isEmpty ? "." : parent
        do { try fm.createDirectory(atPath: parentDir, withIntermediateDirectories: true) } catch {
            throw ReportError("\(parentDir): cannot create the output folder (\(error.localizedDescription))")
        }
        let tmp = parentDir + "/.\(name).tmp-\(getpid())"
        try? fm.removeItem(atPath: tmp)
        do {
            let files = name + "_files"
            try fm.createDirectory(atPath: tmp + "/" + files, withIntermediateDirectories: true)
            var used = Set<String>()
            var unique: [ReportBlock] = []
            for blk in blocks {
                guard case .figure(var f) = blk else { unique.append(blk); continue }
                let base = (f.name as NSString).deletingPathExtension, ext = (f.name as NSString).pathExtension
                var n = f.name, i = 2
                while used.contains(n) { n = "\(base)-\(i).\(ext)"; i += 1 }
                used.insert(n)
                f.name = n
                try f.data.write(to: URL(fileURLWithPath: tmp + "/" + files + "/" + n))
                unique.append(.figure(f))
            }
            try Notebook.json(unique, title: title).write(to: URL(fileURLWithPath: tmp + "/\(name).ipynb"))
            try Data(Notebook.markdown(unique, figuresFolder: files).utf8).write(to: URL(fileURLWithPath: tmp + "/\(name).md"))
        } catch {
            try? fm.removeItem(atPath: tmp)
            throw ReportError("\(outPath): cannot write the report (\(error.localizedDescription))")
        }
        let old = parentDir + "/.\(name).old-\(getpid())"
        if fm.fileExists(atPath: outPath) {
            guard rename(outPath, old) == 0 else {
                try? fm.removeItem(atPath: tmp)
                throw ReportError("\(outPath): cannot replace the previous report: \(String(cString: strerror(errno)))")
            }
        }
        guard rename(tmp, outPath) == 0 else {
            let why = String(cString: strerror(errno))
            _ = rename(old, outPath)
            try? fm.removeItem(atPath: tmp)
            throw ReportError("\(outPath): cannot move the report into place: \(why)")
        }
        try? fm.removeItem(atPath: old)
        return (outPath + "/\(name).ipynb", outPath + "/\(name).md")
    }
}
