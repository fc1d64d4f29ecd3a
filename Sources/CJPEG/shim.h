#ifndef CYCLETIME_CJPEG_SHIM_H
#define CYCLETIME_CJPEG_SHIM_H
// libjpeg-turbo (Debian: libjpeg-dev). Errors longjmp back into ct_jpeg_read, which returns -1.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <setjmp.h>
#include <jpeglib.h>

typedef struct { struct jpeg_error_mgr pub; jmp_buf jmp; char message[JMSG_LENGTH_MAX]; int warned; } ct_jpeg_err;

/// Largest image decoded (pixels): the header's size is checked before any allocation.
#define CT_JPEG_MAX_PIXELS ((size_t)1 << 28)

static void ct_jpeg_error_exit(j_common_ptr cinfo) {
    ct_jpeg_err *e = (ct_jpeg_err *)cinfo->err;
    (*cinfo->err->format_message)(cinfo, e->message);
    longjmp(e->jmp, 1);
}
static void ct_jpeg_output_message(j_common_ptr cinfo) { (void)cinfo; }
/// libjpeg's warnings (e.g. "Premature end of JPEG file": a truncated file it would pad with grey)
/// are kept, and the read fails on them.
static void ct_jpeg_emit_message(j_common_ptr cinfo, int level) {
    ct_jpeg_err *e = (ct_jpeg_err *)cinfo->err;
    if (level < 0 && !e->warned) { (*cinfo->err->format_message)(cinfo, e->message); e->warned = 1; }
}

/// Decodes a JPEG file to RGB24 (libjpeg defaults: islow DCT, fancy upsampling, as Pillow).
static inline int ct_jpeg_read(const char *path, int *width, int *height, unsigned char **pixels, char *err, size_t errlen) {
    *pixels = NULL; *width = 0; *height = 0;
    FILE *volatile fp = fopen(path, "rb");
    if (!fp) { snprintf(err, errlen, "cannot open file"); return -1; }
    struct jpeg_decompress_struct cinfo;
    ct_jpeg_err e; e.message[0] = 0; e.warned = 0;
    cinfo.err = jpeg_std_error(&e.pub);
    e.pub.error_exit = ct_jpeg_error_exit;
    e.pub.output_message = ct_jpeg_output_message;
    e.pub.emit_message = ct_jpeg_emit_message;
    unsigned char *volatile out = NULL;
    if (setjmp(e.jmp)) {
        jpeg_destroy_decompress(&cinfo);
        fclose(fp); free(out);
        snprintf(err, errlen, "%s", e.message[0] ? e.message : "libjpeg error");
        return -1;
    }
    jpeg_create_decompress(&cinfo);
    jpeg_stdio_src(&cinfo, fp);
    jpeg_read_header(&cinfo, TRUE);
    cinfo.out_color_space = JCS_RGB;
    if ((size_t)cinfo.image_width * cinfo.image_height > CT_JPEG_MAX_PIXELS) {
        snprintf(e.message, sizeof e.message, "image of %ux%u pixels is larger than the limit of 2^28 pixels", cinfo.image_width, cinfo.image_height);
        longjmp(e.jmp, 1);
    }
    jpeg_start_decompress(&cinfo);
    int w = cinfo.output_width, h = cinfo.output_height;
    out = (unsigned char *)malloc((size_t)w * h * 3 + 1);
    if (!out) { snprintf(e.message, sizeof e.message, "out of memory"); longjmp(e.jmp, 1); }
    while (cinfo.output_scanline < cinfo.output_height) {
        JSAMPROW row = out + (size_t)cinfo.output_scanline * w * 3;
        jpeg_read_scanlines(&cinfo, &row, 1);
    }
    jpeg_finish_decompress(&cinfo);
    if (e.warned) longjmp(e.jmp, 1);
    jpeg_destroy_decompress(&cinfo);
    fclose(fp);
    *width = w; *height = h; *pixels = out;
    return 0;
}

/// Encodes RGB24 to a JPEG file with the given quality.
static inline int ct_jpeg_write(const char *path, int width, int height, const unsigned char *pixels, int quality, char *err, size_t errlen) {
    FILE *volatile fp = fopen(path, "wb");
    if (!fp) { snprintf(err, errlen, "cannot create file: %s", strerror(errno)); return -1; }
    struct jpeg_compress_struct cinfo;
    ct_jpeg_err e; e.message[0] = 0;
    cinfo.err = jpeg_std_error(&e.pub);
    e.pub.error_exit = ct_jpeg_error_exit;
    e.pub.output_message = ct_jpeg_output_message;
    if (setjmp(e.jmp)) {
        /* A failed fwrite keeps its reason (a full disk) in errno: say it rather than libjpeg's guess. */
        int saved = errno, failedWrite = ferror(fp);
        jpeg_destroy_compress(&cinfo);
        fclose(fp);
        if (failedWrite && saved) snprintf(err, errlen, "%s", strerror(saved));
        else snprintf(err, errlen, "%s", e.message[0] ? e.message : "libjpeg error");
        return -1;
    }
    jpeg_create_compress(&cinfo);
    jpeg_stdio_dest(&cinfo, fp);
    cinfo.image_width = width; cinfo.image_height = height;
    cinfo.input_components = 3; cinfo.in_color_space = JCS_RGB;
    jpeg_set_defaults(&cinfo);
    jpeg_set_quality(&cinfo, quality, TRUE);
    jpeg_start_compress(&cinfo, TRUE);
    while (cinfo.next_scanline < cinfo.image_height) {
        JSAMPROW row = (JSAMPROW)(pixels + (size_t)cinfo.next_scanline * width * 3);
        jpeg_write_scanlines(&cinfo, &row, 1);
    }
    jpeg_finish_compress(&cinfo);
    jpeg_destroy_compress(&cinfo);
    if (fclose(fp) != 0) { snprintf(err, errlen, "%s", strerror(errno)); return -1; }
    return 0;
}
#endif
