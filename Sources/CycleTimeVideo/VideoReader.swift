import CFFmpeg
import CycleTimeCore
import Foundation

/// Metadata of a video's best video stream.
public struct VideoMetadata: Codable, Equatable, Sendable {
    public var path: String
    public var container: String
    public var codec: String
    public var width: Int
    public var height: Int
    /// Frames per second (average frame rate of the stream, else its real base rate).
    public var fps: Double
    /// Frame count: from the stream header, or counted by demuxing when the header has none.
    public var frameCount: Int
    /// Whether `frameCount` was counted (true) or read from the header (false).
    public var frameCountCounted: Bool
    /// Duration in seconds.
    public var duration: Double
}

/// Output size of decoded frames.
public enum VideoResize: Sendable, Equatable {
    case none
    /// Shorter side to N pixels, aspect kept (longer side rounded).
    case shortSide(Int)
    case size(width: Int, height: Int)

    /// Largest decoded frame: 16384 pixels a side and 2^26 pixels (192 MiB of RGB) in all.
    public static let maxSide = 16384, maxPixels = 1 << 26

    /// The output size (the scaled side saturates instead of overflowing for absurd sizes; see
    /// `checkedOutputSize`).
    public func outputSize(width w: Int, height h: Int) -> (width: Int, height: Int) {
        func scaled(_ long: Int, _ n: Int, _ short: Int) -> Int {
            let v = (Double(long) * Double(n) / Double(max(short, 1))).rounded()
            return v.isFinite ? max(1, Int(min(v, 1e15))) : Int(1e15)
        }
        switch self {
        case .none: return (w, h)
        case .size(let ow, let oh): return (ow, oh)
        case .shortSide(let n):
            if w <= h { return (n, scaled(h, n, w)) }
            return (scaled(w, n, h), n)
        }
    }

    /// The output size when it is positive and within `maxSide` and `maxPixels`; nil otherwise.
    public func checkedOutputSize(width w: Int, height h: Int) -> (width: Int, height: Int)? {
        let o = outputSize(width: w, height: h)
        guard o.width > 0, o.height > 0, o.width <= Self.maxSide, o.height <= Self.maxSide,
              o.width * o.height <= Self.maxPixels else { return nil }
        return o
    }
}

/// One decoded (resampled, resized) frame as packed RGB24 bytes.
public struct VideoFrame: Sendable {
    /// Output frame number (0-based).
    public var index: Int
    /// Presentation time in seconds.
    public var timestamp: Double
    public var width: Int
    public var height: Int
    public var rgb: [UInt8]
    public var image: Image { Image(width: width, height: height, channels: 3, pixels: rgb) }
}

/// Streams the frames of any video FFmpeg can open, one at a time (never the whole video in memory).
///
/// Optional resampling to a frame rate by timestamps (like `ffmpeg -vf fps=F` / `-r F`: output frame
/// n at time n/F shows the last source frame whose timestamp rounds to <= n), and resizing with
/// libswscale (bilinear). Decoding uses FFmpeg frame and slice threads (`threads` 0 = automatic).
public final class VideoReader {
    public let path: String
    public let metadata: VideoMetadata
    /// Requested output frame rate (nil: every source frame).
    public let fps: Double?
    public let outputWidth: Int
    public let outputHeight: Int
    /// Source frames decoded so far, and packets the decoder rejected.
    public private(set) var decodedFrames = 0
    public private(set) var decodeErrors = 0

    private let format: FormatContext
    private let codec: CodecContext
    private let streamIndex: Int32
    private let timeBase: Double
    private let packet: Packet
    private var cur: Frame
    private var nxt: Frame
    private let scaler = Scaler()
    private let resizer = Scaler()
    private let mid: Frame
    private let rgbStride: Int
    private let rgbBuffer: AlignedBuffer
    private let swsFlags: Int32
    private let headerFrames: Int
    // decode state
    private var demuxEOF = false
    private var flushSent = false
    private var decoderEOF = false
    private var seeked = false
    private var lastTime = -Double.infinity
    // output state
    private var started = false
    private var curTime = 0.0, curDuration = 0.0, curK = 0
    private var haveNext = false
    private var nxtTime = 0.0, nxtDuration = 0.0, nxtK = 0
    private var outN = 0
    private var outIndex = 0
    private var seekTarget: Double? = nil

    public init(_ path: String, fps: Double? = nil, resize: VideoResize = .none, threads: Int = 0) throws {
        self.path = path
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else { throw MediaError(file: path, "no such file") }
        if isDir.boolValue { throw MediaError(file: path, "is a folder, not a video file") }
        if let attrs = try? FileManager.default.attributesOfItem(atPath: path), (attrs[.size] as? Int) == 0 {
            throw MediaError(file: path, "empty file")
        }
        if let f = fps, !(f > 0 && f <= 1000) { throw MediaError(file: path, "fps must be in (0, 1000], got \(f)") }
        self.fps = fps
        packet = try Packet(file: path)
        cur = try Frame(file: path)
        nxt = try Frame(file: path)
        mid = try Frame(file: path)
        format = try FormatContext(openInput: path)
        let fmt = format.p
        var decoder: UnsafePointer<AVCodec>? = nil
        let si = av_find_best_stream(fmt, AVMEDIA_TYPE_VIDEO, -1, -1, &decoder, 0)
        if si == ct_averror_stream_not_found() { throw MediaError(file: path, "no video stream (audio-only or data file)", code: si) }
        if si == ct_averror_decoder_not_found() { throw MediaError(file: path, "no decoder for the video stream", code: si) }
        try check(si, path, "no usable video stream")
        streamIndex = si
        guard let stream = fmt.pointee.streams[Int(si)], let par = stream.pointee.codecpar else {
            throw MediaError(file: path, "video stream \(si) has no codec parameters")
        }
        codec = try CodecContext(codec: decoder, file: path)
        let ctx = codec.p
        try check(avcodec_parameters_to_context(ctx, par), path, "bad codec parameters")
        ctx.pointee.thread_count = Int32(max(0, threads))
        ctx.pointee.thread_type = ct_thread_frame_slice()
        ctx.pointee.pkt_timebase = stream.pointee.time_base
        try check(avcodec_open2(ctx, decoder, nil), path, "cannot open decoder")
        let w = Int(par.pointee.width), h = Int(par.pointee.height)
        guard w > 0, h > 0 else { throw MediaError(file: path, "video stream has no frame size") }
        timeBase = av_q2d(stream.pointee.time_base)

        func q(_ r: AVRational) -> Double { r.den != 0 && r.num > 0 ? av_q2d(r) : 0 }
        var rate = q(stream.pointee.avg_frame_rate)
        if rate <= 0 || rate > 1000 { rate = q(stream.pointee.r_frame_rate) }
        var duration = 0.0
        if stream.pointee.duration != ct_nopts_value() && stream.pointee.duration > 0 {
            duration = Double(stream.pointee.duration) * timeBase
        } else if fmt.pointee.duration != ct_nopts_value() && fmt.pointee.duration > 0 {
            duration = Double(fmt.pointee.duration) / Double(ct_av_time_base())
        }
        headerFrames = Int(stream.pointee.nb_frames)
        var count = headerFrames
        var counted = false
        if count <= 0 {
            count = try VideoReader.countPackets(path)
            counted = true
        }
        if rate <= 0 && duration > 0 { rate = Double(count) / duration }
        if duration <= 0 && rate > 0 { duration = Double(count) / rate }
        let container = String(cString: fmt.pointee.iformat.pointee.name)
        let codecName = String(cString: avcodec_get_name(par.pointee.codec_id))
        metadata = VideoMetadata(path: path, container: container, codec: codecName, width: w, height: h, fps: rate,
                                 frameCount: count, frameCountCounted: counted, duration: duration)
        guard let out = resize.checkedOutputSize(width: w, height: h) else {
            let o = resize.outputSize(width: w, height: h)
            throw MediaError(file: path, "resizing the \(w)x\(h) video gives \(o.width)x\(o.height) frames, beyond the limit of \(VideoResize.maxSide) pixels a side and \(VideoResize.maxPixels) pixels")
        }
        outputWidth = out.width
        outputHeight = out.height
        // swscale's SIMD RGB writers work in blocks of 8 pixels and skip the tail when the stride has no room.
        rgbStride = (((outputWidth + 15) / 16 * 16) * 3 + 63) / 64 * 64
        rgbBuffer = try AlignedBuffer(count: rgbStride * outputHeight, file: path)
        swsFlags = Int32(SWS_BILINEAR)  // the same conversion as the ffmpeg command line
    }

    /// Metadata without decoding.
    public static func probe(_ path: String) throws -> VideoMetadata { try VideoReader(path).metadata }

    /// Counts the video packets of the best video stream (one per frame for video codecs).
    public static func countPackets(_ path: String) throws -> Int {
        let f = try FormatContext(openInput: path)
        let si = av_find_best_stream(f.p, AVMEDIA_TYPE_VIDEO, -1, -1, nil, 0)
        try check(si, path, "no usable video stream")
        let pkt = try Packet(file: path)
        var n = 0
        while true {
            let r = av_read_frame(f.p, pkt.p)
            if r == ct_averror_eof() { break }
            try check(r, path, "cannot read packet")
            if pkt.p.pointee.stream_index == si { n += 1 }
            av_packet_unref(pkt.p)
        }
        return n
    }

    // MARK: decoding

    /// Decodes the next source frame into `into`; false at the end of the stream.
    private func decodeNext(into frame: Frame) throws -> Bool {
        let ctx = codec.p
        while true {
            if decoderEOF { return false }
            let r = avcodec_receive_frame(ctx, frame.p)
            if r == 0 {
                decodedFrames += 1
                return true
            }
            if r == ct_averror_eof() {
                decoderEOF = true
                if !seeked && headerFrames > 0 && decodedFrames < headerFrames - max(2, headerFrames / 50) {
                    throw MediaError(file: path, "truncated or corrupt video: decoded \(decodedFrames) of \(headerFrames) frames")
                }
                if decodedFrames == 0 && !seeked { throw MediaError(file: path, "no decodable video frame") }
                return false
            }
            if r != ct_averror_eagain() {
                decodeErrors += 1
                if decodeErrors > 100 { throw MediaError(file: path, ffmpeg: r, during: "decoding failed") }
                continue
            }
            // The decoder needs input.
            if demuxEOF {
                if flushSent { decoderEOF = true; return false }
                _ = avcodec_send_packet(ctx, nil)
                flushSent = true
                continue
            }
            let rr = av_read_frame(format.p, packet.p)
            if rr == ct_averror_eof() { demuxEOF = true; continue }
            if rr < 0 {
                // A damaged container ends the stream early; decide as at EOF.
                if rr == ct_averror(EIO) || decodedFrames > 0 { demuxEOF = true; decodeErrors += 1; continue }
                try check(rr, path, "cannot read packet")
            }
            defer { av_packet_unref(packet.p) }
            if packet.p.pointee.stream_index != streamIndex { continue }
            if let target = seekTarget {
                // Pre-roll after a seek: frames nobody references and that lie well before the target
                // (0.5 s margin for reordering) are not decoded at all.
                let pts = packet.p.pointee.pts != ct_nopts_value() ? packet.p.pointee.pts : packet.p.pointee.dts
                let early = pts != ct_nopts_value() && Double(pts) * timeBase < target - 0.5
                ctx.pointee.skip_frame = early ? AVDISCARD_NONREF : AVDISCARD_DEFAULT
            } else if ctx.pointee.skip_frame != AVDISCARD_DEFAULT {
                ctx.pointee.skip_frame = AVDISCARD_DEFAULT
            }
            let s = avcodec_send_packet(ctx, packet.p)
            if s < 0 && s != ct_averror_eagain() {
                decodeErrors += 1
                if decodeErrors > 100 { throw MediaError(file: path, ffmpeg: s, during: "decoding failed") }
            }
        }
    }

    /// Timestamp (seconds) and duration of a decoded frame.
    private func timing(_ f: Frame) -> (Double, Double) {
        let p = f.p.pointee
        var t: Double
        if p.best_effort_timestamp != ct_nopts_value() { t = Double(p.best_effort_timestamp) * timeBase }
        else if p.pts != ct_nopts_value() { t = Double(p.pts) * timeBase }
        else { t = lastTime.isFinite ? lastTime + 1 / max(metadata.fps, 1e-9) : 0 }
        if t <= lastTime && lastTime.isFinite { t = lastTime + 1e-6 }
        lastTime = t
        var d = p.pkt_duration > 0 ? Double(p.pkt_duration) * timeBase : 0
        if d <= 0 { d = metadata.fps > 0 ? 1 / metadata.fps : 0 }
        return (t, d)
    }

    /// Next source frame at or after the seek target.
    private func nextSource(into f: Frame) throws -> (Double, Double)? {
        while try decodeNext(into: f) {
            let (t, d) = timing(f)
            if let target = seekTarget {
                if t + d <= target + 1e-9 { continue }
                seekTarget = nil
            }
            return (t, d)
        }
        return nil
    }

    /// Advances to the next output frame, leaving it in `cur`; returns its timestamp.
    private func advance() throws -> Double? {
        guard let fps else {
            guard let (t, d) = try nextSource(into: cur) else { return nil }
            curTime = t; curDuration = d
            return t
        }
        if !started {
            guard let (t, d) = try nextSource(into: cur) else { return nil }
            started = true
            curTime = t; curDuration = d; curK = Int((t * fps).rounded())
            outN = max(curK, seekStartN ?? curK)
            seekStartN = nil
            if let (t2, d2) = try nextSource(into: nxt) {
                haveNext = true; nxtTime = t2; nxtDuration = d2; nxtK = Int((t2 * fps).rounded())
            }
        }
        while haveNext && nxtK <= outN {
            swap(&cur, &nxt)
            curTime = nxtTime; curDuration = nxtDuration; curK = nxtK
            if let (t2, d2) = try nextSource(into: nxt) {
                nxtTime = t2; nxtDuration = d2; nxtK = Int((t2 * fps).rounded())
            } else {
                haveNext = false
            }
        }
        if !haveNext {
            let endK = Int(((curTime + curDuration) * fps).rounded())
            if outN >= endK { return nil }
        }
        let t = Double(outN) / fps
        outN += 1
        return t
    }
    private var seekStartN: Int? = nil
    private var lastColorspace = AVCOL_SPC_NB
    private var lastRange: Int32 = -1

    /// Converts `cur` to RGB24 at the output size into the internal buffer.
    private func scaleCurrent() throws {
        var f = cur.p
        if (f.pointee.width != Int32(outputWidth) || f.pointee.height != Int32(outputHeight))
            && sws_isSupportedOutput(AVPixelFormat(f.pointee.format)) != 0 && sws_isSupportedInput(AVPixelFormat(f.pointee.format)) != 0 {
            // Resize in the decoder's own (YUV) format first, then convert the small frame to RGB, as
            // ffmpeg's `-vf scale` does: far cheaper than scaling straight into packed RGB.
            let m = mid.p
            if m.pointee.format != f.pointee.format || m.pointee.width != Int32(outputWidth) || m.pointee.height != Int32(outputHeight) {
                av_frame_unref(m)
                m.pointee.format = f.pointee.format
                m.pointee.width = Int32(outputWidth)
                m.pointee.height = Int32(outputHeight)
                try check(av_frame_get_buffer(m, 0), path, "cannot allocate a frame")
            }
            try resizer.configure(srcW: f.pointee.width, srcH: f.pointee.height, srcFmt: f.pointee.format,
                                  dstW: Int32(outputWidth), dstH: Int32(outputHeight), dstFmt: AVPixelFormat(f.pointee.format),
                                  flags: swsFlags, file: path)
            var srcData = f.pointee.data, srcStride = f.pointee.linesize
            var dstData = m.pointee.data, dstStride = m.pointee.linesize
            let h = f.pointee.height
            let sws = resizer.p
            let r = withUnsafePointer(to: &srcData) { dp in
                withUnsafePointer(to: &srcStride) { sp in
                    withUnsafePointer(to: &dstData) { ddp in
                        withUnsafePointer(to: &dstStride) { dsp in
                            dp.withMemoryRebound(to: UnsafePointer<UInt8>?.self, capacity: 8) { d in
                                sp.withMemoryRebound(to: Int32.self, capacity: 8) { s in
                                    ddp.withMemoryRebound(to: UnsafeMutablePointer<UInt8>?.self, capacity: 8) { dd in
                                        dsp.withMemoryRebound(to: Int32.self, capacity: 8) { ds in
                                            sws_scale(sws, d, s, 0, h, dd, ds)
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            if r <= 0 { throw MediaError(file: path, "resizing failed") }
            m.pointee.colorspace = f.pointee.colorspace
            m.pointee.color_range = f.pointee.color_range
            f = m
        }
        if try scaler.configure(srcW: f.pointee.width, srcH: f.pointee.height, srcFmt: f.pointee.format,
                             dstW: Int32(outputWidth), dstH: Int32(outputHeight), dstFmt: AV_PIX_FMT_RGB24,
                             flags: swsFlags, file: path) { lastColorspace = AVCOL_SPC_NB }
        let cs = f.pointee.colorspace
        let srcRange: Int32 = f.pointee.color_range == AVCOL_RANGE_JPEG ? 1 : 0
        if cs != lastColorspace || srcRange != lastRange {
            // As ffmpeg's scale filter (in_color_matrix=auto): the frame's matrix and range; swscale's
            // defaults otherwise.
            var inv: UnsafeMutablePointer<Int32>? = nil, tab: UnsafeMutablePointer<Int32>? = nil
            var sr: Int32 = 0, dr: Int32 = 0, br: Int32 = 0, co: Int32 = 0, sa: Int32 = 0
            if sws_getColorspaceDetails(scaler.p, &inv, &sr, &tab, &dr, &br, &co, &sa) >= 0 {
                let known = cs != AVCOL_SPC_UNSPECIFIED && cs != AVCOL_SPC_RGB && cs.rawValue < AVCOL_SPC_NB.rawValue
                let newInv = known ? UnsafeMutablePointer(mutating: sws_getCoefficients(Int32(cs.rawValue))) : inv
                if known || (srcRange == 1 && sr == 0) {
                    _ = sws_setColorspaceDetails(scaler.p, newInv, srcRange == 1 ? 1 : sr, tab, dr, br, co, sa)
                }
            }
            lastColorspace = cs; lastRange = srcRange
        }
        var dst: [UnsafeMutablePointer<UInt8>?] = [rgbBuffer.p, nil, nil, nil]
        var dstStride: [Int32] = [Int32(rgbStride), 0, 0, 0]
        var srcData = f.pointee.data
        var srcStride = f.pointee.linesize
        let h = f.pointee.height
        let sws = scaler.p
        let r = withUnsafePointer(to: &srcData) { dp in
            withUnsafePointer(to: &srcStride) { sp in
                dp.withMemoryRebound(to: UnsafePointer<UInt8>?.self, capacity: 8) { d in
                    sp.withMemoryRebound(to: Int32.self, capacity: 8) { s in
                        sws_scale(sws, d, s, 0, h, &dst, &dstStride)
                    }
                }
            }
        }
        if r <= 0 { throw MediaError(file: path, "pixel conversion failed") }
    }

    /// The next frame as packed RGB24 bytes, or nil at the end.
    public func nextFrame() throws -> VideoFrame? {
        guard let t = try advance() else { return nil }
        try scaleCurrent()
        var rgb = [UInt8](repeating: 0, count: outputWidth * outputHeight * 3)
        rgb.withUnsafeMutableBufferPointer { o in
            for y in 0..<outputHeight {
                (o.baseAddress! + y * outputWidth * 3).update(from: rgbBuffer.p + y * rgbStride, count: outputWidth * 3)
            }
        }
        defer { outIndex += 1 }
        return VideoFrame(index: outIndex, timestamp: t, width: outputWidth, height: outputHeight, rgb: rgb)
    }

    /// The next frame as a Float32 RGB tensor [3,H,W] with values 0...1 (or `(x - mean) / std`).
    public func nextTensor(mean: [Float]? = nil, std: [Float]? = nil) throws -> Tensor? {
        let lut = ColorLUT(mean: mean, std: std)
        let t = Tensor(uninitialized: [3, outputHeight, outputWidth])
        guard try nextFrame(into: t.data, lut: lut) != nil else { return nil }
        return t
    }

    /// Writes the next frame as planar Float [3,H,W] into `out`; returns its timestamp or nil at the end.
    @discardableResult
    public func nextFrame(into out: UnsafeMutablePointer<Float>, lut: ColorLUT) throws -> Double? {
        guard let t = try advance() else { return nil }
        try scaleCurrent()
        rgbToPlanarFloat(rgbBuffer.p, rowStride: rgbStride, width: outputWidth, height: outputHeight, out: out, lut: lut)
        outIndex += 1
        return t
    }

    /// Skips the next output frame without converting it; false at the end.
    public func skipFrame() throws -> Bool {
        guard try advance() != nil else { return false }
        outIndex += 1
        return true
    }

    /// Seeks so that the next frame is the one shown at `seconds` (output frame round(seconds*fps)
    /// when resampling).
    public func seek(to seconds: Double) throws {
        // A time from a file (an AVA timestamp) must fit the integer frame arithmetic below.
        guard seconds.isFinite, abs(seconds) <= 1e7 else { throw MediaError(file: path, "cannot seek to \(seconds) s") }
        let ts = Int64((max(0, seconds) / timeBase).rounded(.down))
        try check(av_seek_frame(format.p, streamIndex, ts, AVSEEK_FLAG_BACKWARD), path, "cannot seek to \(seconds) s")
        avcodec_flush_buffers(codec.p)
        demuxEOF = false; flushSent = false; decoderEOF = false; seeked = true
        lastTime = -Double.infinity
        started = false; haveNext = false
        if let fps {
            let start = Int((seconds * fps).rounded())
            seekStartN = start
            outIndex = start
            // Source frames ending before the first output time are skipped.
            seekTarget = Double(start) / fps
        } else {
            seekTarget = seconds
            outIndex = Int((seconds * metadata.fps).rounded())
        }
    }

    /// Reads all remaining frames as a tensor [T,3,H,W] (convenience for short clips).
    public func readAll(mean: [Float]? = nil, std: [Float]? = nil, maxFrames: Int = Int.max) throws -> Tensor {
        var frames: [Tensor] = []
        while frames.count < maxFrames, let t = try nextTensor(mean: mean, std: std) { frames.append(t) }
        let per = 3 * outputHeight * outputWidth
        let out = Tensor(uninitialized: [frames.count, 3, outputHeight, outputWidth])
        for (i, f) in frames.enumerated() { (out.data + i * per).update(from: f.data, count: per) }
        return out
    }
}
