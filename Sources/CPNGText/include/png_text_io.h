#ifndef LEAN_PNG_TEXT_IO_H
#define LEAN_PNG_TEXT_IO_H
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/// One text chunk to write: `utf8` 0 writes tEXt (the bytes must be Latin-1), 1 writes an uncompressed iTXt (UTF-8).
typedef struct {
    const char *keyword;
    const char *text;
    size_t length;
    int utf8;
} lean_png_text;

/// Writes an 8-bit RGB PNG (rows of width*3 bytes) with an sRGB chunk and the given text chunks before the image
/// data, through libpng's full API with its errors caught (setjmp here, never in Swift). Returns 1 on success, 0 with
/// libpng's message in `message` otherwise.
int lean_png_write_rgb(FILE *file, const unsigned char *rgb, uint32_t width, uint32_t height,
                       const lean_png_text *texts, int count, char *message, size_t message_size);

/// Called once per text chunk read: `compression` is libpng's (-1 tEXt, 0 zTXt: Latin-1; 1, 2 iTXt: UTF-8).
typedef void (*lean_png_text_callback)(void *context, const char *keyword, const char *text, size_t length,
                                       int compression);

/// Reads every text chunk (tEXt, zTXt, iTXt) of a PNG, before and after the image data (the rows are read one at
/// a time into one row buffer and dropped). Returns 1 on success, 0 with a message otherwise (not a PNG, damaged).
int lean_png_read_text(FILE *file, lean_png_text_callback callback, void *context, char *message,
                       size_t message_size);

#endif
