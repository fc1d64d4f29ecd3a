#ifndef CYCLETIME_CPNG_SHIM_H
#define CYCLETIME_CPNG_SHIM_H
// libpng (Debian: libpng-dev). libpng reports errors by longjmp; the whole read/write happens in
// these C functions under setjmp, so an error (wrong CRC, truncated file) returns -1 with libpng's
// message instead of crashing.
#include <png.h>
#include <errno.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int width, height;
    int channels;        // 1 gray (or palette indices), 2 gray+alpha, 3 RGB, 4 RGBA
    int isPalette;       // 1 when `pixels` holds palette indices
    int paletteCount;    // entries of `palette` (RGB triples)
    unsigned char palette[256 * 3];
    unsigned char *pixels; // malloc'd, width*height*channels bytes, row-major; free with ct_png_free
} ct_png_image;

typedef struct { jmp_buf jmp; char message[256]; } ct_png_err;

static void ct_png_error_fn(png_structp png, png_const_charp msg) {
    ct_png_err *e = (ct_png_err *)png_get_error_ptr(png);
    snprintf(e->message, sizeof e->message, "%s", msg);
    longjmp(e->jmp, 1);
}
static void ct_png_warning_fn(png_structp png, png_const_charp msg) { (void)png; (void)msg; }

static inline void ct_png_free(unsigned char *p) { free(p); }

/// The most pixels a PNG header may declare (as for JPEG: 16384 x 16384).
#define CT_PNG_MAX_PIXELS ((size_t)1 << 28)

/// Reads a PNG file. Returns 0, or -1 with a message in `err`.
static inline int ct_png_read(const char *path, ct_png_image *out, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    FILE *volatile fp = fopen(path, "rb");
    if (!fp) { snprintf(err, errlen, "cannot open file"); return -1; }
    unsigned char sig[8];
    if (fread(sig, 1, 8, fp) != 8 || png_sig_cmp(sig, 0, 8) != 0) {
        fclose(fp); snprintf(err, errlen, "not a PNG file (bad signature)"); return -1;
    }
    ct_png_err e; e.message[0] = 0;
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &e, ct_png_error_fn, ct_png_warning_fn);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!png || !info) { fclose(fp); snprintf(err, errlen, "libpng initialisation failed"); return -1; }
    unsigned char *volatile pixels = NULL;
    png_bytep *volatile rows = NULL;
    if (setjmp(e.jmp)) {
        png_destroy_read_struct(&png, &info, NULL);
        fclose(fp); free(pixels); free(rows);
        snprintf(err, errlen, "%s", e.message[0] ? e.message : "libpng error");
        return -1;
    }
    png_init_io(png, fp);
    png_set_sig_bytes(png, 8);
    png_read_info(png, info);
    /* What the header declares is bounded before anything is allocated from it. */
    if ((size_t)png_get_image_width(png, info) * png_get_image_height(png, info) > CT_PNG_MAX_PIXELS) {
        snprintf(e.message, sizeof e.message, "image of %ux%u pixels is larger than the limit of 2^28 pixels",
                 (unsigned)png_get_image_width(png, info), (unsigned)png_get_image_height(png, info));
        longjmp(e.jmp, 1);
    }
    int colorType = png_get_color_type(png, info);
    int depth = png_get_bit_depth(png, info);
    if (depth == 16) png_set_strip_16(png);
    if (depth < 8) {
        if (colorType == PNG_COLOR_TYPE_PALETTE) png_set_packing(png);
        else png_set_expand_gray_1_2_4_to_8(png);
    }
    if (colorType == PNG_COLOR_TYPE_PALETTE) {
        png_colorp pal; int n = 0;
        if (png_get_PLTE(png, info, &pal, &n) & PNG_INFO_PLTE) {
            out->paletteCount = n;
            for (int i = 0; i < n; i++) {
                out->palette[3 * i] = pal[i].red; out->palette[3 * i + 1] = pal[i].green; out->palette[3 * i + 2] = pal[i].blue;
            }
        }
        out->isPalette = 1;
    } else if (png_get_valid(png, info, PNG_INFO_tRNS)) {
        png_set_tRNS_to_alpha(png);
    }
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    int w = (int)png_get_image_width(png, info), h = (int)png_get_image_height(png, info);
    int ch = png_get_channels(png, info);
    if (out->isPalette) ch = 1;
    size_t rowbytes = png_get_rowbytes(png, info);
    if (rowbytes != (size_t)w * ch) { png_error(png, "unexpected row layout"); }
    pixels = (unsigned char *)malloc((size_t)w * h * ch + 1);
    rows = (png_bytep *)malloc(sizeof(png_bytep) * (h > 0 ? h : 1));
    if (!pixels || !rows) png_error(png, "out of memory");
    for (int y = 0; y < h; y++) rows[y] = pixels + (size_t)y * w * ch;
    png_read_image(png, rows);
    png_read_end(png, NULL);
    png_destroy_read_struct(&png, &info, NULL);
    fclose(fp); free(rows);
    out->width = w; out->height = h; out->channels = ch; out->pixels = pixels;
    return 0;
}

/// Writes a PNG: channels 1 (gray, or palette indices when paletteCount > 0), 2, 3 or 4.
static inline int ct_png_write(const char *path, int width, int height, int channels,
                               const unsigned char *pixels, const unsigned char *palette, int paletteCount,
                               char *err, size_t errlen) {
    FILE *volatile fp = fopen(path, "wb");
    if (!fp) { snprintf(err, errlen, "cannot create file: %s", strerror(errno)); return -1; }
    ct_png_err e; e.message[0] = 0;
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &e, ct_png_error_fn, ct_png_warning_fn);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!png || !info) { fclose(fp); snprintf(err, errlen, "libpng initialisation failed"); return -1; }
    png_bytep *volatile rows = NULL;
    if (setjmp(e.jmp)) {
        /* A failed fwrite (libpng says only "Write Error") keeps its reason in errno: say it. */
        int saved = errno, failedWrite = ferror(fp);
        png_destroy_write_struct(&png, &info);
        fclose(fp); free(rows);
        if (failedWrite && saved) snprintf(err, errlen, "%s", strerror(saved));
        else snprintf(err, errlen, "%s", e.message[0] ? e.message : "libpng error");
        return -1;
    }
    png_init_io(png, fp);
    int colorType;
    if (paletteCount > 0) colorType = PNG_COLOR_TYPE_PALETTE;
    else if (channels == 1) colorType = PNG_COLOR_TYPE_GRAY;
    else if (channels == 2) colorType = PNG_COLOR_TYPE_GRAY_ALPHA;
    else if (channels == 3) colorType = PNG_COLOR_TYPE_RGB;
    else colorType = PNG_COLOR_TYPE_RGB_ALPHA;
    png_set_IHDR(png, info, width, height, 8, colorType, PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    if (paletteCount > 0) {
        png_color pal[256];
        for (int i = 0; i < paletteCount && i < 256; i++) {
            pal[i].red = palette[3 * i]; pal[i].green = palette[3 * i + 1]; pal[i].blue = palette[3 * i + 2];
        }
        png_set_PLTE(png, info, pal, paletteCount > 256 ? 256 : paletteCount);
    }
    png_write_info(png, info);
    rows = (png_bytep *)malloc(sizeof(png_bytep) * (height > 0 ? height : 1));
    if (!rows) png_error(png, "out of memory");
    for (int y = 0; y < height; y++) rows[y] = (png_bytep)(pixels + (size_t)y * width * channels);
    png_write_image(png, rows);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    free(rows);
    if (fclose(fp) != 0) { snprintf(err, errlen, "%s", strerror(errno)); return -1; }
    return 0;
}
#endif
