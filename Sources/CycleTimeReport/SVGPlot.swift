import CycleTimeVideo
import Foundation

/// Deterministic SVG figures (fixed number formatting, sans-serif text, no embedded fonts):
/// line plots with axes, ticks, units, a legend and a title, and bar charts.

/// Colours of successive series (matplotlib's tab10).
public let seriesColors = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                           "#bcbd22", "#17becf"]

/// Pixel coordinates as the SVG writes them (two decimals).
func px(_ v: Double) -> String { String(format: "%.2f", v) }

/// Text escaped for XML content and attributes.
public func xmlEscape(_ s: String) -> String {
    var out = ""
    for c in s {
        switch c {
        case "&": out += "&amp;"
        case "<": out += "&lt;"
        case ">": out += "&gt;"
        case "\"": out += "&quot;"
        case "'": out += "&apos;"
        default: out.append(c)
        }
    }
    return out
}

/// Exponential moving average with TensorBoard's debiasing: s_t = (w s_{t-1} + (1-w) y_t) / (1 - w^t).
/// Missing values (nil) stay missing and do not update the average.
public func smoothed(_ ys: [Double?], weight: Double) -> [Double?] {
    var acc = 0.0, n = 0
    return ys.map { y in
        guard let y else { return nil }
        n += 1
        acc = weight * acc + (1 - weight) * y
        return acc / (1 - pow(weight, Double(n)))
    }
}

/// Axis ticks at 1, 2 or 5 x 10^k covering `lo...hi`, and the number of decimals their labels need.
public struct NiceAxis: Equatable {
    public var lo: Double
    public var hi: Double
    public var step: Double
    public var decimals: Int

    public init(lo dataLo: Double, hi dataHi: Double, targetTicks: Int = 5) {
        var a = dataLo, b = dataHi
        if !(a.isFinite && b.isFinite) { a = 0; b = 1 }
        if b < a { swap(&a, &b) }
        if b - a <= max(abs(a), abs(b)) * 1e-9 {
            let pad = a == 0 ? 1 : abs(a) * 0.1
            a -= pad; b += pad
        }
        let raw = (b - a) / Double(max(targetTicks, 1))
        let mag = pow(10, floor(log10(raw)))
        let f = raw / mag
        let m: Double = f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10
        step = m * mag
        lo = floor(a / step + 1e-9) * step
        hi = ceil(b / step - 1e-9) * step
        if hi <= lo { hi = lo + step }
        decimals = max(0, Int(-floor(log10(step) + 1e-9)))
    }

    public var ticks: [Double] {
        let n = Int(((hi - lo) / step).rounded())
        return (0...n).map { lo + Double($0) * step }
    }

    public func label(_ v: Double) -> String {
        let r = abs(v) < step * 1e-6 ? 0 : v
        if decimals > 6 || max(abs(lo), abs(hi)) >= 1e7 { return String(format: "%.3g", r) }
        return String(format: "%.\(decimals)f", r)
    }
}

/// One series of a line plot. Missing y values (nil) break the line.
public struct PlotSeries {
    public var name: String
    public var x: [Double]
    public var y: [Double?]
    public var color: String
    public var width: Double
    public var opacity: Double
    public var dashed: Bool
    public init(name: String, x: [Double], y: [Double?], color: String, width: Double = 2, opacity: Double = 1, dashed: Bool = false) {
        precondition(x.count == y.count, "PlotSeries \(name): \(x.count) x values, \(y.count) y values")
        self.name = name; self.x = x; self.y = y; self.color = color; self.width = width; self.opacity = opacity; self.dashed = dashed
    }
}

/// A line plot: title, axis labels (with units), ticks, grid, legend.
public struct LinePlot {
    public var title: String
    public var xLabel: String
    public var yLabel: String
    public var series: [PlotSeries]
    public var width: Double = 640
    public var height: Double = 360
    public var margin = (left: 78.0, right: 20.0, top: 40.0, bottom: 52.0)

    public init(title: String, xLabel: String, yLabel: String, series: [PlotSeries] = []) {
        self.title = title; self.xLabel = xLabel; self.yLabel = yLabel; self.series = series
    }

    /// A raw series (thin, faint) and its smoothed copy (thick) in one colour.
    public mutating func addRawAndSmoothed(name: String, x: [Double], y: [Double?], color: String, smoothing: Double = 0.6) {
        series.append(PlotSeries(name: "\(name) (raw)", x: x, y: y, color: color, width: 1, opacity: 0.35))
        series.append(PlotSeries(name: "\(name) (smoothed, EMA \(String(format: "%.2g", smoothing)))", x: x,
                                 y: smoothed(y, weight: smoothing), color: color, width: 2.2))
    }

    public var xAxis: NiceAxis {
        let xs = series.flatMap { s in zip(s.x, s.y).compactMap { $1 == nil ? nil : $0 } }
        return NiceAxis(lo: xs.min() ?? 0, hi: xs.max() ?? 1, targetTicks: 6)
    }

    public var yAxis: NiceAxis {
        let ys = series.flatMap { $0.y.compactMap { $0 } }.filter(\.isFinite)
        return NiceAxis(lo: ys.min() ?? 0, hi: ys.max() ?? 1, targetTicks: 5)
    }

    var plotLeft: Double { margin.left }
    var plotRight: Double { width - margin.right }
    var plotTop: Double { margin.top }
    var plotBottom: Double { height - margin.bottom }

    public func svg() -> String {
        let xa = xAxis, ya = yAxis
        func sx(_ v: Double) -> Double { plotLeft + (v - xa.lo) / (xa.hi - xa.lo) * (plotRight - plotLeft) }
        func sy(_ v: Double) -> Double { plotBottom - (v - ya.lo) / (ya.hi - ya.lo) * (plotBottom - plotTop) }
        var s = svgOpen(width: width, height: height, title: title)
        s += "<g class=\"grid\" stroke=\"#e0e0e0\" stroke-width=\"1\">\n"
        for t in ya.ticks { s += "<line x1=\"\(px(plotLeft))\" y1=\"\(px(sy(t)))\" x2=\"\(px(plotRight))\" y2=\"\(px(sy(t)))\"/>\n" }
        for t in xa.ticks { s += "<line x1=\"\(px(sx(t)))\" y1=\"\(px(plotTop))\" x2=\"\(px(sx(t)))\" y2=\"\(px(plotBottom))\"/>\n" }
        s += "</g>\n"
        s += axesFrame(left: plotLeft, right: plotRight, top: plotTop, bottom: plotBottom)
        s += "<g class=\"xticks\" font-size=\"11\" text-anchor=\"middle\">\n"
        for t in xa.ticks {
            s += "<line x1=\"\(px(sx(t)))\" y1=\"\(px(plotBottom))\" x2=\"\(px(sx(t)))\" y2=\"\(px(plotBottom + 5))\" stroke=\"#333\"/>"
            s += "<text class=\"xtick\" data-value=\"\(xa.label(t))\" x=\"\(px(sx(t)))\" y=\"\(px(plotBottom + 18))\">\(xa.label(t))</text>\n"
        }
        s += "</g>\n<g class=\"yticks\" font-size=\"11\" text-anchor=\"end\">\n"
        for t in ya.ticks {
            s += "<line x1=\"\(px(plotLeft - 5))\" y1=\"\(px(sy(t)))\" x2=\"\(px(plotLeft))\" y2=\"\(px(sy(t)))\" stroke=\"#333\"/>"
            s += "<text class=\"ytick\" data-value=\"\(ya.label(t))\" x=\"\(px(plotLeft - 8))\" y=\"\(px(sy(t) + 4))\">\(ya.label(t))</text>\n"
        }
        s += "</g>\n"
        s += axisLabels(x: xLabel, y: yLabel)
        s += "<g class=\"series\" fill=\"none\" stroke-linejoin=\"round\">\n"
        for se in series {
            // One polyline per run of present values.
            var runs: [[(Double, Double)]] = [[]]
            for (x, y) in zip(se.x, se.y) {
                if let y, y.isFinite { runs[runs.count - 1].append((x, y)) } else if !runs[runs.count - 1].isEmpty { runs.append([]) }
            }
            for r in runs where !r.isEmpty {
                let pts = r.map { "\(px(sx($0.0))),\(px(sy($0.1)))" }.joined(separator: " ")
                s += "<polyline data-series=\"\(xmlEscape(se.name))\" stroke=\"\(se.color)\" stroke-width=\"\(px(se.width))\""
                s += se.opacity < 1 ? " stroke-opacity=\"\(px(se.opacity))\"" : ""
                s += se.dashed ? " stroke-dasharray=\"6,4\"" : ""
                s += " points=\"\(pts)\"/>\n"
                if r.count == 1 {
                    s += "<circle cx=\"\(px(sx(r[0].0)))\" cy=\"\(px(sy(r[0].1)))\" r=\"2.5\" fill=\"\(se.color)\"/>\n"
                }
            }
        }
        s += "</g>\n"
        s += legend(series.map { ($0.name, $0.color, $0.width, $0.opacity, $0.dashed) })
        s += "</svg>\n"
        return s
    }

    func axisLabels(x: String, y: String) -> String {
        let cy = (plotTop + plotBottom) / 2
        return "<text class=\"xlabel\" x=\"\(px((plotLeft + plotRight) / 2))\" y=\"\(px(height - 12))\" font-size=\"12\" text-anchor=\"middle\">\(xmlEscape(x))</text>\n"
            + "<text class=\"ylabel\" x=\"16\" y=\"\(px(cy))\" font-size=\"12\" text-anchor=\"middle\" transform=\"rotate(-90 16 \(px(cy)))\">\(xmlEscape(y))</text>\n"
    }

    func legend(_ items: [(String, String, Double, Double, Bool)]) -> String {
        guard !items.isEmpty else { return "" }
        let rowH = 15.0
        let boxW = min(300, 40 + Double(items.map(\.0.count).max() ?? 0) * 6.2)
        let x0 = plotRight - boxW - 6, y0 = plotTop + 6
        var s = "<g class=\"legend\" font-size=\"11\">\n"
        s += "<rect x=\"\(px(x0))\" y=\"\(px(y0))\" width=\"\(px(boxW))\" height=\"\(px(Double(items.count) * rowH + 8))\" fill=\"#ffffff\" fill-opacity=\"0.85\" stroke=\"#cccccc\"/>\n"
        for (i, it) in items.enumerated() {
            let y = y0 + 4 + rowH * (Double(i) + 0.5)
            s += "<line x1=\"\(px(x0 + 6))\" y1=\"\(px(y))\" x2=\"\(px(x0 + 28))\" y2=\"\(px(y))\" stroke=\"\(it.1)\" stroke-width=\"\(px(max(it.2, 1.5)))\""
            s += it.3 < 1 ? " stroke-opacity=\"\(px(max(it.3, 0.5)))\"" : ""
            s += it.4 ? " stroke-dasharray=\"6,4\"" : ""
            s += "/><text x=\"\(px(x0 + 34))\" y=\"\(px(y + 4))\">\(xmlEscape(it.0))</text>\n"
        }
        return s + "</g>\n"
    }
}

func svgOpen(width: Double, height: Double, title: String) -> String {
    "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(width))\" height=\"\(Int(height))\" viewBox=\"0 0 \(Int(width)) \(Int(height))\" font-family=\"sans-serif\">\n"
        + "<rect width=\"100%\" height=\"100%\" fill=\"#ffffff\"/>\n"
        + "<text class=\"title\" x=\"\(px(width / 2))\" y=\"24\" font-size=\"15\" font-weight=\"bold\" text-anchor=\"middle\">\(xmlEscape(title))</text>\n"
}

func axesFrame(left: Double, right: Double, top: Double, bottom: Double) -> String {
    "<g class=\"axes\" stroke=\"#333\" stroke-width=\"1\"><line x1=\"\(px(left))\" y1=\"\(px(bottom))\" x2=\"\(px(right))\" y2=\"\(px(bottom))\"/>"
        + "<line x1=\"\(px(left))\" y1=\"\(px(top))\" x2=\"\(px(left))\" y2=\"\(px(bottom))\"/></g>\n"
}

/// A vertical bar chart; bars sorted by value (highest first) unless `sorted` is false.
public struct BarChart {
    public var title: String
    public var yLabel: String
    public var xLabel: String
    public var bars: [(label: String, value: Double)]
    /// Fixed value range (e.g. 0...1 for scores); nil = from the data (always including 0).
    public var range: ClosedRange<Double>?
    public var width: Double
    public var height: Double = 360
    public var color = seriesColors[0]

    public init(title: String, xLabel: String, yLabel: String, bars: [(label: String, value: Double)], sorted: Bool = true,
                range: ClosedRange<Double>? = nil) {
        self.title = title; self.xLabel = xLabel; self.yLabel = yLabel; self.range = range
        // Stable sort: ties keep their input order.
        self.bars = sorted ? bars.enumerated().sorted { $0.element.value != $1.element.value ? $0.element.value > $1.element.value : $0.offset < $1.offset }.map(\.element) : bars
        width = max(480, 90 + Double(bars.count) * 34)
    }

    /// Labels longer than this, or many bars, are drawn slanted.
    var slanted: Bool { bars.count > 8 || (bars.map(\.label.count).max() ?? 0) > 10 }

    public func svg() -> String {
        let bottomMargin = slanted ? 40 + min(120, Double(bars.map(\.label.count).max() ?? 0) * 5.5) : 52
        let left = 78.0, right = width - 20, top = 40.0, bottom = height - bottomMargin
        let vals = bars.map(\.value).filter(\.isFinite)
        let ya = NiceAxis(lo: range?.lowerBound ?? min(0, vals.min() ?? 0), hi: range?.upperBound ?? max(0, vals.max() ?? 1))
        func sy(_ v: Double) -> Double { bottom - (v - ya.lo) / (ya.hi - ya.lo) * (bottom - top) }
        var s = svgOpen(width: width, height: height, title: title)
        s += "<g class=\"grid\" stroke=\"#e0e0e0\" stroke-width=\"1\">\n"
        for t in ya.ticks { s += "<line x1=\"\(px(left))\" y1=\"\(px(sy(t)))\" x2=\"\(px(right))\" y2=\"\(px(sy(t)))\"/>\n" }
        s += "</g>\n<g class=\"yticks\" font-size=\"11\" text-anchor=\"end\">\n"
        for t in ya.ticks {
            s += "<text class=\"ytick\" data-value=\"\(ya.label(t))\" x=\"\(px(left - 8))\" y=\"\(px(sy(t) + 4))\">\(ya.label(t))</text>\n"
        }
        s += "</g>\n<g class=\"bars\" font-size=\"10\">\n"
        let slot = (right - left) / Double(max(bars.count, 1))
        let bw = slot * 0.7
        for (i, b) in bars.enumerated() {
            let cx = left + slot * (Double(i) + 0.5)
            let v = b.value.isFinite ? b.value : 0
            let y0 = sy(max(min(0, ya.hi), ya.lo)), y1 = sy(v)
            s += "<rect data-label=\"\(xmlEscape(b.label))\" data-value=\"\(String(format: "%.6g", b.value))\" x=\"\(px(cx - bw / 2))\" y=\"\(px(min(y0, y1)))\" width=\"\(px(bw))\" height=\"\(px(abs(y1 - y0)))\" fill=\"\(color)\"/>\n"
            s += "<text x=\"\(px(cx))\" y=\"\(px(min(y0, y1) - 3))\" text-anchor=\"middle\">\(String(format: "%.3f", b.value))</text>\n"
            if slanted {
                s += "<text class=\"xtick\" x=\"\(px(cx))\" y=\"\(px(bottom + 12))\" text-anchor=\"end\" transform=\"rotate(-45 \(px(cx)) \(px(bottom + 12)))\">\(xmlEscape(b.label))</text>\n"
            } else {
                s += "<text class=\"xtick\" x=\"\(px(cx))\" y=\"\(px(bottom + 16))\" text-anchor=\"middle\" font-size=\"11\">\(xmlEscape(b.label))</text>\n"
            }
        }
        s += "</g>\n"
        s += axesFrame(left: left, right: right, top: top, bottom: bottom)
        let cy = (top + bottom) / 2
        s += "<text class=\"xlabel\" x=\"\(px((left + right) / 2))\" y=\"\(px(height - 8))\" font-size=\"12\" text-anchor=\"middle\">\(xmlEscape(xLabel))</text>\n"
        s += "<text class=\"ylabel\" x=\"16\" y=\"\(px(cy))\" font-size=\"12\" text-anchor=\"middle\" transform=\"rotate(-90 16 \(px(cy)))\">\(xmlEscape(yLabel))</text>\n"
        return s + "</svg>\n"
    }
}
