// libpng's full API reports errors by longjmp, which Swift cannot catch: the calls that can fail live here, each
// behind its own setjmp, and return a status and libpng's message instead.
#include "png_text_io.h"
#include <png.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char *message;
    size_t size;
} error_sink;

static void copy_message(error_sink *sink, const char *text) {
    if (sink == NULL || sink->message == NULL || sink->size == 0) return;
    strncpy(sink->message, text ? text : "unknown libpng error", sink->size - 1);
    sink->message[sink->size - 1] = 0;
}

static void on_error(png_structp png, png_const_charp text) {
    copy_message((error_sink *)png_get_error_ptr(png), text);
    png_longjmp(png, 1);
}

static void on_warning(png_structp png, png_const_charp text) {
    (void)png;
    (void)text;  // ancillary-chunk problems (a bad CRC on a text chunk, say) are skipped, as libpng does by default
}

int lean_png_write_rgb(FILE *file, const unsigned char *rgb, uint32_t width, uint32_t height,
                       const lean_png_text *texts, int count, char *message, size_t message_size) {
    error_sink sink = {message, message_size};
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &sink, on_error, on_warning);
    if (png == NULL) {
        copy_message(&sink, "out of memory");
        return 0;
    }
    png_infop info = png_create_info_struct(png);
    if (info == NULL) {
        png_destroy_write_struct(&png, NULL);
        copy_message(&sink, "out of memory");
        return 0;
    }
    png_textp volatile chunks = NULL;
    if (setjmp(png_jmpbuf(png))) {
        free(chunks);
        png_destroy_write_struct(&png, &info);
        return 0;
    }
    png_init_io(png, file);
    png_set_IHDR(png, info, width, height, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
                 PNG_FILTER_TYPE_DEFAULT);
    // What libpng's simplified writer (png_image_write_*) adds for 8-bit sRGB data.
    png_set_sRGB(png, info, PNG_sRGB_INTENT_PERCEPTUAL);
    if (count > 0) {
        chunks = calloc((size_t)count, sizeof(png_text));
        if (chunks == NULL) png_error(png, "out of memory");
        for (int i = 0; i < count; i++) {
            chunks[i].compression = texts[i].utf8 ? PNG_ITXT_COMPRESSION_NONE : PNG_TEXT_COMPRESSION_NONE;
            chunks[i].key = (png_charp)texts[i].keyword;
            chunks[i].text = (png_charp)texts[i].text;
            chunks[i].text_length = texts[i].length;
            chunks[i].itxt_length = texts[i].utf8 ? texts[i].length : 0;
        }
        png_set_text(png, info, chunks, count);  // copies the strings
    }
    png_write_info(png, info);
    for (uint32_t y = 0; y < height; y++) png_write_row(png, rgb + (size_t)y * width * 3);
    png_write_end(png, NULL);
    free(chunks);
    png_destroy_write_struct(&png, &info);
    return 1;
}

static void report_text(png_structp png, png_infop info, lean_png_text_callback callback, void *context) {
    png_textp text = NULL;
    int n = png_get_text(png, info, &text, NULL);
    for (int i = 0; i < n; i++) {
        int itxt = text[i].compression == PNG_ITXT_COMPRESSION_NONE || text[i].compression == PNG_ITXT_COMPRESSION_zTXt;
        size_t length = itxt ? text[i].itxt_length : text[i].text_length;
        callback(context, text[i].key, text[i].text ? text[i].text : "", text[i].text ? length : 0,
                 text[i].compression);
    }
}

int lean_png_read_text(FILE *file, lean_png_text_callback callback, void *context, char *message,
                       size_t message_size) {
    error_sink sink = {message, message_size};
    unsigned char signature[8];
    if (fread(signature, 1, 8, file) != 8 || png_sig_cmp(signature, 0, 8) != 0) {
        copy_message(&sink, "not a PNG file (no PNG signature)");
        return 0;
    }
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &sink, on_error, on_warning);
    if (png == NULL) {
        copy_message(&sink, "out of memory");
        return 0;
    }
    png_infop info = png_create_info_struct(png);
    png_infop end = info ? png_create_info_struct(png) : NULL;
    if (info == NULL || end == NULL) {
        png_destroy_read_struct(&png, info ? &info : NULL, NULL);
        copy_message(&sink, "out of memory");
        return 0;
    }
    png_bytep volatile row = NULL;
    if (setjmp(png_jmpbuf(png))) {
        free(row);
        png_destroy_read_struct(&png, &info, &end);
        return 0;
    }
    png_init_io(png, file);
    png_set_sig_bytes(png, 8);
    png_set_user_limits(png, 1u << 20, 1u << 20);
    png_read_info(png, info);
    report_text(png, info, callback, context);
    size_t bytes = png_get_rowbytes(png, info);
    row = malloc(bytes ? bytes : 1);
    if (row == NULL) png_error(png, "out of memory");
    int passes = png_set_interlace_handling(png);
    png_read_update_info(png, info);
    uint32_t height = png_get_image_height(png, info);
    for (int p = 0; p < passes; p++) {
        for (uint32_t y = 0; y < height; y++) png_read_row(png, row, NULL);
    }
    png_read_end(png, end);
    report_text(png, end, callback, context);
    free(row);
    png_destroy_read_struct(&png, &info, &end);
    return 1;
}
