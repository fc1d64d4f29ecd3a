import CycleTimeCore
import Foundation

/// Decodes a whole video, resizing to short side `shortSide` and converting every frame to a Float32
/// RGB tensor [3,H,W] (frame-threaded decoder, lookup-table uint8 -> float). For `cycletime bench video`.
public func benchmarkVideoDecode(path: String, shortSide: Int) throws -> (frames: Int, seconds: Double) {
    let start = DispatchTime.now().uptimeNanoseconds
    let reader = try VideoReader(path, resize: .shortSide(shortSide), threads: 0)
    let lut = ColorLUT()
    let t = Tensor(uninitialized: [3, reader.outputHeight, reader.outputWidth])
    var n = 0
    while try reader.nextFrame(into: t.data, lut: lut) != nil { n += 1 }
    let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
    return (n, seconds)
}
