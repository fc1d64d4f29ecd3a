#ifndef CYCLETIME_CFFMPEG_SHIM_H
#define CYCLETIME_CFFMPEG_SHIM_H
// FFmpeg (libavformat, libavcodec, libswscale, libavutil) through pkg-config (Debian: libav*-dev).
#include <errno.h>
#include <libavformat/avformat.h>
#include <libavcodec/avcodec.h>
#include <libswscale/swscale.h>
#include <libavutil/avutil.h>
#include <libavutil/imgutils.h>
#include <libavutil/opt.h>
#include <libavutil/error.h>

// Macros Swift cannot import.
static inline int ct_averror(int e) { return AVERROR(e); }
static inline int ct_averror_eof(void) { return AVERROR_EOF; }
static inline int ct_averror_eagain(void) { return AVERROR(EAGAIN); }
static inline int ct_averror_stream_not_found(void) { return AVERROR_STREAM_NOT_FOUND; }
static inline int ct_averror_decoder_not_found(void) { return AVERROR_DECODER_NOT_FOUND; }
static inline int64_t ct_nopts_value(void) { return AV_NOPTS_VALUE; }
static inline int ct_thread_frame_slice(void) { return FF_THREAD_FRAME | FF_THREAD_SLICE; }
static inline int ct_av_time_base(void) { return AV_TIME_BASE; }
static inline int ct_codec_flag_global_header(void) { return AV_CODEC_FLAG_GLOBAL_HEADER; }
static inline int ct_fmt_globalheader(void) { return AVFMT_GLOBALHEADER; }
static inline int ct_fmt_nofile(void) { return AVFMT_NOFILE; }
static inline int ct_avio_flag_write(void) { return AVIO_FLAG_WRITE; }
/// FFmpeg's message for an error code (av_err2str is a macro with a compound literal).
static inline void ct_av_strerror(int err, char *buf, size_t size) {
    if (av_strerror(err, buf, size) < 0) snprintf(buf, size, "FFmpeg error %d", err);
}
#endif
