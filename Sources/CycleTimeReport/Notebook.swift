import CycleTimeVideo
import Foundation

/// A figure of a report: an SVG document or PNG bytes, with the file name it gets beside the
/// Markdown page.
public struct Figure: Sendable {
    public enum Content: Sendable {
        case svg(String)
        case png(Data, width: Int, height: Int)
    }
    public var name: String
    public var caption: String
    public var content: Content
    public init(name: String, caption: String, content: Content) {
        self.name = name; self.caption = caption; self.content = content
    }

    public static func svg(_ name: String, _ caption: String, _ svg: String) -> Figure {
        Figure(name: name + ".svg", caption: caption, content: .svg(svg))
    }

    /// A PNG figure; photographs are stored as 256-colour palette PNGs (`quantize`) to keep reports small.
    public static func png(_ name: String, _ caption: String, _ canvas: Canvas, quantize: Bool = true) throws -> Figure {
        Figure(name: name + ".png", caption: caption,
               content: .png(try canvas.pngData(quantize: quantize), width: canvas.width, height: canvas.height))
    }

    public var data: Data {
        switch content {
        case .svg(let s): return Data(s.utf8)
        case .png(let d, _, _): return d
        }
    }
}

/// One block of a report, rendered both as notebook cells and as Markdown.
public enum ReportBlock: Sendable {
    case markdown(String)
    case figure(Figure)
}

extension Array where Element == ReportBlock {
    /// The Markdown text of the blocks, joined by newlines.
    public var markdownText: String {
        compactMap { if case .markdown(let t) = $0 { return t } else { return nil } }.joined(separator: "\n")
    }

    /// The file names of the figures, in order.
    public var figureNames: [String] {
        compactMap { if case .figure(let f) = $0 { return f.name } else { return nil } }
    }
}

/// nbformat 4.5 notebooks without code: Markdown cells, and code cells with empty source whose
/// `display_data` outputs carry `image/png` (base64), `image/svg+xml` or `text/markdown`, so
/// the notebook renders in Jupyter, VS Code and on GitHub without running anything.
public enum Notebook {
    /// The notebook JSON (keys sorted, so the same report gives the same bytes). Cell ids are
    /// `cell-<index>`.
    public static func json(_ blocks: [ReportBlock], title: String) throws -> Data {
        var cells: [[String: Any]] = []
        for (i, b) in blocks.enumerated() {
            let id = String(format: "cell-%04d", i)
            switch b {
            case .markdown(let text):
                cells.append(["cell_type": "markdown", "id": id, "metadata": [String: Any](), "source": sourceLines(text)])
            case .figure(let f):
                var data: [String: Any] = ["text/plain": [f.caption]]
                var meta: [String: Any] = [:]
                switch f.content {
                case .svg(let s):
                    data["image/svg+xml"] = sourceLines(s)
                case .png(let d, let w, let h):
                    data["image/png"] = d.base64EncodedString()
                    meta["image/png"] = ["width": w, "height": h]
                }
                let output: [String: Any] = ["output_type": "display_data", "data": data, "metadata": meta]
                let caption: [String: Any] = ["output_type": "display_data", "data": ["text/markdown": sourceLines("*" + f.caption + "*"),
                                                                                      "text/plain": [f.caption]],
                                              "metadata": [String: Any]()]
                cells.append(["cell_type": "code", "id": id, "execution_count": NSNull(),
                              "metadata": ["jupyter": ["source_hidden": true], "tags": ["figure"]],
                              "outputs": [output, caption], "source": [String]()])
            }
        }
        let nb: [String: Any] = [
            "cells": cells,
            "metadata": ["title": title, "kernelspec": ["display_name": "Python 3", "language": "python", "name": "python3"],
                         "language_info": ["name": "python"]],
            "nbformat": 4, "nbformat_minor": 5,
        ]
        return try JSONSerialization.data(withJSONObject: nb, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
    }

    /// Jupyter's multi-line string form: lines keeping their newline, the last without.
    static func sourceLines(_ text: String) -> [String] {
        var lines = text.components(separatedBy: "\n").map { $0 + "\n" }
        if var last = lines.popLast() {
            last.removeLast()
            if !last.isEmpty { lines.append(last) }
        }
        return lines
    }

    /// The Markdown page: text as is, figures as images in `figuresFolder` with their caption.
    public static func markdown(_ blocks: [ReportBlock], figuresFolder: String) -> String {
        var out = ""
        for b in blocks {
            switch b {
            case .markdown(let t): out += t + "\n\n"
            case .figure(let f): out += "![\(f.caption)](\(figuresFolder)/\(f.name))\n\n*\(f.caption)*\n\n"
            }
        }
        return out
    }
}
