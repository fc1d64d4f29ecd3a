import CycleTimeCore
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
        // One atomic writer (AtomicFile): the folder appears complete or not at all, and a previous
        // report is replaced whole.
        do {
            try AtomicFile.withTemporary(for: outPath) { tmp in
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
                    try AtomicFile.write(f.data, to: tmp + "/" + files + "/" + n)
                    unique.append(.figure(f))
                }
                try AtomicFile.write(try Notebook.json(unique, title: title), to: tmp + "/\(name).ipynb")
                try AtomicFile.write(Notebook.markdown(unique, figuresFolder: files), to: tmp + "/\(name).md")
            }
        } catch let e as FileWriteError {
            throw ReportError("\(outPath): cannot write the report (\(e.reason))")
        } catch {
            throw ReportError("\(outPath): cannot write the report (\(error.localizedDescription))")
        }
        return (outPath + "/\(name).ipynb", outPath + "/\(name).md")
    }
}
