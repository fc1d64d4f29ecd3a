import CFFmpeg
import CycleTimeCore
import Foundation

/// Output container context (owns its AVIO handle).
final class OutputContext {
    let p: UnsafeMutablePointer<AVFormatContext>
    init(path: String) throws {
        FFmpegLog.ensureConfigured()
        var oc: UnsafeMutablePointer<AVFormatContext>? = nil
        var r = avformat_alloc_output_context2(&oc, nil, nil, path)
        if r < 0 || oc == nil { r = avformat_alloc_output_context2(&oc, nil, "mp4", path) }
        guard r >= 0, let made = oc else { throw MediaError(file: path, ffmpeg: r, during: "cannot create output") }
        p = made
    }
    deinit {
        if (p.pointee.oformat.pointee.flags & ct_fmt_nofile()) == 0 && p.pointee.pb != nil { avio_closep(&p.pointee.pb) }
        avformat_free_context(p)
    }
}

/// Encodes RGB frames to a video file (mp4: H.264 through libx264 when present, else MPEG-4 part 2).
public final class VideoWriter {
    public let path: String
    public let width: Int
    public let height: Int
    public let codecName: String
    private let output: OutputContext
    private let codec: CodecContext
    private let stream: UnsafeMutablePointer<AVStream>
    private let frame: Frame
    private let packet: Packet
    private let scaler = Scaler()
    private var nextPts: Int64 = 0
    private var finished = false

    public init(path: String, width: Int, height: Int, fps: Double = 25, preferH264: Bool = true, quality: Int = 23) throws {
        self.path = path
        guard width > 0, height > 0, width % 2 == 0, height % 2 == 0 else {
            throw MediaError(file: path, "frame size \(width)x\(height) must be positive and even")
        }
        self.width = width; self.height = height
        frame = try Frame(file: path)
        packet = try Packet(file: path)
        output = try OutputContext(path: path)
        let oc = output.p
        var enc: UnsafePointer<AVCodec>? = preferH264 ? avcodec_find_encoder_by_name("libx264") : nil
        if enc == nil { enc = avcodec_find_encoder(AV_CODEC_ID_MPEG4) }
        guard let enc else { throw MediaError(file: path, "no H.264 or MPEG-4 encoder in this FFmpeg") }
        codecName = String(cString: enc.pointee.name)
        guard let st = avformat_new_stream(oc, nil) else { throw MediaError(file: path, "cannot add a stream") }
        stream = st
        codec = try CodecContext(codec: enc, file: path)
        let ctx = codec.p
        let rate = av_d2q(fps, 100_000)
        ctx.pointee.width = Int32(width)
        ctx.pointee.height = Int32(height)
        ctx.pointee.time_base = AVRational(num: rate.den, den: rate.num)
        ctx.pointee.framerate = rate
        ctx.pointee.pix_fmt = AV_PIX_FMT_YUV420P
        ctx.pointee.gop_size = 12
        ctx.pointee.max_b_frames = 0  // no B-frames: exact frame count and duration in mp4 (no edit-list trimming)
        ctx.pointee.thread_count = 0
        if codecName == "libx264" {
            av_opt_set(ctx.pointee.priv_data, "preset", "veryfast", 0)
            av_opt_set(ctx.pointee.priv_data, "crf", "\(quality)", 0)
        } else {
            ctx.pointee.bit_rate = Int64(width * height) * 4
            ctx.pointee.qmax = 8
        }
        if (oc.pointee.oformat.pointee.flags & ct_fmt_globalheader()) != 0 {
            ctx.pointee.flags |= ct_codec_flag_global_header()
        }
        try check(avcodec_open2(ctx, enc, nil), path, "cannot open encoder \(codecName)")
        try check(avcodec_parameters_from_context(st.pointee.codecpar, ctx), path, "encoder parameters")
        st.pointee.time_base = ctx.pointee.time_base
        if (oc.pointee.oformat.pointee.flags & ct_fmt_nofile()) == 0 {
            try check(avio_open(&oc.pointee.pb, path, ct_avio_flag_write()), path, "cannot create file")
        }
        try check(avformat_write_header(oc, nil), path, "cannot write header")
        let f = frame.p
        f.pointee.format = AV_PIX_FMT_YUV420P.rawValue
        f.pointee.width = Int32(width)
        f.pointee.height = Int32(height)
        try check(av_frame_get_buffer(f, 0), path, "cannot allocate frame")
        try scaler.configure(srcW: Int32(width), srcH: Int32(height), srcFmt: AV_PIX_FMT_RGB24.rawValue,
                             dstW: Int32(width), dstH: Int32(height), dstFmt: AV_PIX_FMT_YUV420P,
                             flags: Int32(SWS_BILINEAR), file: path)
    }

    /// Appends one frame of packed RGB24 bytes (width*height*3).
    public func write(rgb: [UInt8]) throws {
        precondition(rgb.count == width * height * 3, "VideoWriter: expected \(width)x\(height) RGB24")
        guard !finished else { throw MediaError(file: path, "writer already finished") }
        let f = frame.p
        try check(av_frame_make_writable(f), path, "frame not writable")
        var dstData = f.pointee.data
        var dstStride = f.pointee.linesize
        let sws = scaler.p
        let stride: [Int32] = [Int32(width * 3)]
        let h = Int32(height)
        rgb.withUnsafeBufferPointer { src in
            var sp: [UnsafePointer<UInt8>?] = [src.baseAddress]
            withUnsafeMutablePointer(to: &dstData) { dp in
                withUnsafePointer(to: &dstStride) { ds in
                    dp.withMemoryRebound(to: UnsafeMutablePointer<UInt8>?.self, capacity: 8) { d in
                        ds.withMemoryRebound(to: Int32.self, capacity: 8) { s in
                            _ = sws_scale(sws, &sp, stride, 0, h, d, s)
                        }
                    }
                }
            }
        }
        f.pointee.pts = nextPts
        nextPts += 1
        try send(f)
    }

    /// Appends one frame from a [3,H,W] tensor with values in 0...1.
    public func write(_ t: Tensor) throws {
        precondition(t.shape == [3, height, width], "VideoWriter: expected [3,\(height),\(width)], got \(t.shape)")
        try write(rgb: Image(rgb: t).pixels)
    }

    private func send(_ f: UnsafeMutablePointer<AVFrame>?) throws {
        let ctx = codec.p
        try check(avcodec_send_frame(ctx, f), path, "encoding failed")
        while true {
            let r = avcodec_receive_packet(ctx, packet.p)
            if r == ct_averror_eagain() || r == ct_averror_eof() { return }
            try check(r, path, "encoding failed")
            if packet.p.pointee.duration <= 0 { packet.p.pointee.duration = 1 }  // one frame (the muxer needs it for the last one)
            av_packet_rescale_ts(packet.p, ctx.pointee.time_base, stream.pointee.time_base)
            packet.p.pointee.stream_index = stream.pointee.index
            let w = av_interleaved_write_frame(output.p, packet.p)
            av_packet_unref(packet.p)
            try check(w, path, "cannot write packet")
        }
    }

    /// Flushes the encoder and writes the trailer.
    public func finish() throws {
        guard !finished else { return }
        finished = true
        try send(nil)
        try check(av_write_trailer(output.p), path, "cannot write trailer")
    }

    deinit { if !finished { try? finish() } }
}
