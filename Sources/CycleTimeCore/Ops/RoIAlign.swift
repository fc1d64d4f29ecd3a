// RoIAlign (Mask R-CNN), with exactly torchvision.ops.roi_align's CPU semantics.

/// Bilinear sampling taps of one RoI: for each output bin (row-major) and each of its `samples`
/// points, four plane offsets and weights (weight 0 for points outside the feature map).
struct RoIAlignTaps {
    var pos: [Int32]
    var weight: [Float]
    let samples: Int
    let batch: Int
}

extension F {
    /// torchvision.ops.roi_align on `x` [N, C, H, W] with `rois` [K, 5] (batch index, x1, y1, x2, y2
    /// in input-image coordinates); output [K, C, outputSize[0], outputSize[1]].
    /// Box coordinates are multiplied by `spatialScale`; `aligned` shifts them by -0.5 pixel (and then
    /// allows boxes smaller than one pixel); `samplingRatio` > 0 samples that many points per bin side,
    /// <= 0 ceil(roi size / output size) (adaptive). Each bin is the mean of its bilinear samples;
    /// samples beyond one pixel outside the map count as 0. Differentiable w.r.t. x (not the boxes,
    /// as in torchvision). Parallel over (roi, channel) forward and over channels backward.
    public static func roiAlign(_ x: Tensor, rois: Tensor, outputSize: [Int], spatialScale: Float = 1,
                                samplingRatio: Int = -1, aligned: Bool = false) -> Tensor {
        precondition(x.rank == 4, "roiAlign: input must be [N, C, H, W], got \(x.shape)")
        precondition(rois.rank == 2 && rois.shape[1] == 5, "roiAlign: rois must be [K, 5] (batch, x1, y1, x2, y2), got \(rois.shape)")
        precondition(outputSize.count == 2 && outputSize[0] > 0 && outputSize[1] > 0, "roiAlign: outputSize must be [h, w] (positive), got \(outputSize)")
        let n = x.shape[0], c = x.shape[1], h = x.shape[2], w = x.shape[3]
        let ph = outputSize[0], pw = outputSize[1], k = rois.shape[0]
        let taps: [RoIAlignTaps] = (0..<k).map { r in
            let b = rois.data[r * 5]
            precondition(b >= 0 && Int(b) < n && b == b.rounded(), "roiAlign: roi \(r) has batch index \(b), input has \(n) images")
            return roiAlignTaps(Array(UnsafeBufferPointer(start: rois.data + r * 5 + 1, count: 4)), batch: Int(b),
                                height: h, width: w, ph: ph, pw: pw, scale: spatialScale, samplingRatio: samplingRatio, aligned: aligned)
        }
        let bins = ph * pw, plane = h * w
        let out = Tensor(uninitialized: [k, c, ph, pw])
        let px = SendablePointer(x.data), po = SendablePointer(out.data)
        let maxSamples = taps.map(\.samples).max() ?? 1
        Parallel.chunks(k * c, costPerItem: bins * maxSamples * 8 + 1) { range in
            for rc in range {
                let t = taps[rc / c], ch = rc % c
                let src = px + (t.batch * c + ch) * plane, o = po + rc * bins
                let inv = 1 / Float(max(t.samples, 1))
                t.pos.withUnsafeBufferPointer { pos in
                    t.weight.withUnsafeBufferPointer { wt in
                        for bin in 0..<bins {
                            var acc: Float = 0
                            for s in 0..<t.samples {
                                let q = (bin * t.samples + s) * 4
                                acc += wt[q] * src[Int(pos[q])] + wt[q + 1] * src[Int(pos[q + 1])]
                                    + wt[q + 2] * src[Int(pos[q + 2])] + wt[q + 3] * src[Int(pos[q + 3])]
                            }
                            o[bin] = acc * inv
                        }
                    }
                }
            }
        }
        return out.recording("roiAlign", [x]) { g in
            let gx = Tensor.zeros(x.shape)
            let pg = SendablePointer(g.data), pgx = SendablePointer(gx.data)
            Parallel.chunks(c, costPerItem: k * bins * maxSamples * 8 + 1) { range in
                for ch in range {
                    for (r, t) in taps.enumerated() {
                        let dst = pgx + (t.batch * c + ch) * plane, gp = pg + (r * c + ch) * bins
                        let inv = 1 / Float(max(t.samples, 1))
                        for bin in 0..<bins {
                            let v = gp[bin] * inv
                            for s in 0..<t.samples {
                                let q = (bin * t.samples + s) * 4
                                for j in 0..<4 where t.weight[q + j] != 0 { dst[Int(t.pos[q + j])] += v * t.weight[q + j] }
                            }
                        }
                    }
                }
            }
            return [gx]
        }
    }
}

/// torchvision's pre_calc_for_bilinear_interpolate for one box (all arithmetic in Float, as its
/// float kernel does).
func roiAlignTaps(_ box: [Float], batch: Int, height: Int, width: Int, ph: Int, pw: Int,
                  scale: Float, samplingRatio: Int, aligned: Bool) -> RoIAlignTaps {
    let offset: Float = aligned ? 0.5 : 0
    let startW = box[0] * scale - offset, startH = box[1] * scale - offset
    let endW = box[2] * scale - offset, endH = box[3] * scale - offset
    var roiW = endW - startW, roiH = endH - startH
    if !aligned { roiW = max(roiW, 1); roiH = max(roiH, 1) }
    let binH = roiH / Float(ph), binW = roiW / Float(pw)
    let gridH = samplingRatio > 0 ? samplingRatio : Int((roiH / Float(ph)).rounded(.up))
    let gridW = samplingRatio > 0 ? samplingRatio : Int((roiW / Float(pw)).rounded(.up))
    let samples = max(gridH, 0) * max(gridW, 0)
    var pos = [Int32](repeating: 0, count: ph * pw * samples * 4)
    var weight = [Float](repeating: 0, count: ph * pw * samples * 4)
    var q = 0
    for i in 0..<ph {
        for j in 0..<pw {
            for iy in 0..<max(gridH, 0) {
                let yy = startH + Float(i) * binH + (Float(iy) + 0.5) * binH / Float(gridH)
                for ix in 0..<max(gridW, 0) {
                    let xx = startW + Float(j) * binW + (Float(ix) + 0.5) * binW / Float(gridW)
                    defer { q += 4 }
                    var y = yy, x = xx
                    if y < -1 || y > Float(height) || x < -1 || x > Float(width) { continue }
                    if y <= 0 { y = 0 }
                    if x <= 0 { x = 0 }
                    var yl = Int(y), xl = Int(x), yh: Int, xh: Int
                    if yl >= height - 1 { yl = height - 1; yh = yl; y = Float(yl) } else { yh = yl + 1 }
                    if xl >= width - 1 { xl = width - 1; xh = xl; x = Float(xl) } else { xh = xl + 1 }
                    let ly = y - Float(yl), lx = x - Float(xl), hy = 1 - ly, hx = 1 - lx
                    pos[q] = Int32(yl * width + xl); pos[q + 1] = Int32(yl * width + xh)
                    pos[q + 2] = Int32(yh * width + xl); pos[q + 3] = Int32(yh * width + xh)
                    weight[q] = hy * hx; weight[q + 1] = hy * lx; weight[q + 2] = ly * hx; weight[q + 3] = ly * lx
                }
            }
        }
    }
    return RoIAlignTaps(pos: pos, weight: weight, samples: samples, batch: batch)
}
