import CFFmpeg

// Owners of FFmpeg C handles: each frees its handle in deinit.

final class FormatContext {
    let p: UnsafeMutablePointer<AVFormatContext>
    let path: String
    init(openInput path: String) throws {
        self.path = path
        FFmpegLog.ensureConfigured()
        var ctx: UnsafeMutablePointer<AVFormatContext>? = nil
        let r = avformat_open_input(&ctx, path, nil, nil)
        guard r >= 0, let opened = ctx else { throw MediaError(file: path, ffmpeg: r, during: "cannot open") }
        p = opened
        try check(avformat_find_stream_info(p, nil), path, "cannot read stream information")
    }
    deinit { var q: UnsafeMutablePointer<AVFormatContext>? = p; avformat_close_input(&q) }
}

final class CodecContext {
    let p: UnsafeMutablePointer<AVCodecContext>
    init(codec: UnsafePointer<AVCodec>?, file: String) throws {
        guard let c = avcodec_alloc_context3(codec) else { throw MediaError(file: file, "cannot allocate codec context") }
        p = c
    }
    deinit { var q: UnsafeMutablePointer<AVCodecContext>? = p; avcodec_free_context(&q) }
}

final class Packet {
    let p: UnsafeMutablePointer<AVPacket>
    init(file: String) throws {
        guard let a = av_packet_alloc() else { throw MediaError(file: file, "cannot allocate a packet") }
        p = a
    }
    deinit { var q: UnsafeMutablePointer<AVPacket>? = p; av_packet_free(&q) }
}

final class Frame {
    let p: UnsafeMutablePointer<AVFrame>
    init(file: String) throws {
        guard let a = av_frame_alloc() else { throw MediaError(file: file, "cannot allocate a frame") }
        p = a
    }
    deinit { var q: UnsafeMutablePointer<AVFrame>? = p; av_frame_free(&q) }
}

final class Scaler {
    var p: OpaquePointer?
    var key: (Int32, Int32, Int32, Int32, Int32) = (0, 0, -1, 0, 0)
    /// (Re)configures for a source size/format and destination size; true when it changed.
    @discardableResult
    func configure(srcW: Int32, srcH: Int32, srcFmt: Int32, dstW: Int32, dstH: Int32, dstFmt: AVPixelFormat, flags: Int32, file: String) throws -> Bool {
        if p != nil && key == (srcW, srcH, srcFmt, dstW, dstH) { return false }
        p = sws_getCachedContext(p, srcW, srcH, AVPixelFormat(srcFmt), dstW, dstH, dstFmt, flags, nil, nil, nil)
        if p == nil { throw MediaError(file: file, "cannot convert \(srcW)x\(srcH) pixel format \(srcFmt) to \(dstW)x\(dstH) RGB") }
        key = (srcW, srcH, srcFmt, dstW, dstH)
        return true
    }
    deinit { if p != nil { sws_freeContext(p) } }
}

/// A buffer from av_malloc (aligned for swscale), freed in deinit.
final class AlignedBuffer {
    let p: UnsafeMutablePointer<UInt8>
    let count: Int
    init(count: Int, file: String) throws {
        self.count = count
        guard let m = av_malloc(max(count, 1) + 64) else { throw MediaError(file: file, "cannot allocate \(count) bytes for a frame") }
        p = m.assumingMemoryBound(to: UInt8.self)
    }
    deinit { av_free(p) }
}
