// PNG decoding through libpng's full API. libpng reports errors by longjmp, which Swift cannot catch: every call
// that can fail runs here behind setjmp and the caller gets a status and libpng's message.
#include "image_decode.h"
#include <png.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const unsigned char *data;
    size_t size;
    size_t position;
    char *message;
    size_t message_size;
} png_source;

static void set_message(char *message, size_t size, const char *text) {
    if (message == NULL || size == 0) return;
    strncpy(message, text ? text : "unknown error", size - 1);
    message[size - 1] = 0;
}

static void on_error(png_structp png, png_const_charp text) {
    png_source *source = (png_source *)png_get_error_ptr(png);
    set_message(source->message, source->message_size, text);
    png_longjmp(png, 1);
}

static void on_warning(png_structp png, png_const_charp text) {
    (void)png;
    (void)text;  // ancillary-chunk problems (a bad CRC on a text chunk, say) are skipped, as libpng does by default
}

static void read_memory(png_structp png, png_bytep out, png_size_t length) {
    png_source *source = (png_source *)png_get_io_ptr(png);
    if (length > source->size - source->position) png_error(png, "the file is truncated");
    memcpy(out, source->data + source->position, length);
    source->position += length;
}

void lean_decoded_image_free(lean_decoded_image *image) {
    if (image == NULL) return;
    free(image->pixels);
    free(image->exif);
    free(image->xmp);
    free(image->raw_profile_exif);
    memset(image, 0, sizeof(*image));
}

static unsigned char *copy_bytes(const void *bytes, size_t length) {
    unsigned char *copy = malloc(length ? length : 1);
    if (copy != NULL && length) memcpy(copy, bytes, length);
    return copy;
}

/// Keeps the eXIf chunk and the text chunks Pillow reads an orientation from. Later chunks replace earlier ones
/// (Pillow's info dictionary does the same), except eXIf, which libpng keeps once (a second one is a benign error).
static void collect_metadata(png_structp png, png_infop info, lean_decoded_image *out) {
    png_uint_32 exif_length = 0;
    png_bytep exif = NULL;
    if (out->exif == NULL && png_get_eXIf_1(png, info, &exif_length, &exif) != 0 && exif != NULL) {
        out->exif = copy_bytes(exif, exif_length);
        out->exif_length = out->exif ? exif_length : 0;
    }
    png_textp text = NULL;
    int count = png_get_text(png, info, &text, NULL);
    for (int i = 0; i < count; i++) {
        if (text[i].key == NULL || text[i].text == NULL) continue;
        int itxt = text[i].compression == PNG_ITXT_COMPRESSION_NONE || text[i].compression == PNG_ITXT_COMPRESSION_zTXt;
        size_t length = itxt ? text[i].itxt_length : text[i].text_length;
        unsigned char **slot = NULL;
        size_t *slot_length = NULL;
        if (strcmp(text[i].key, "XML:com.adobe.xmp") == 0) {
            slot = &out->xmp;
            slot_length = &out->xmp_length;
        } else if (strcmp(text[i].key, "Raw profile type exif") == 0) {
            slot = &out->raw_profile_exif;
            slot_length = &out->raw_profile_exif_length;
        } else {
            continue;
        }
        free(*slot);
        *slot = copy_bytes(text[i].text, length);
        *slot_length = *slot ? length : 0;
    }
}

int lean_png_read_rgb8(const unsigned char *data, size_t size, uint32_t max_side, uint64_t max_pixels,
                       lean_decoded_image *out, char *message, size_t message_size) {
    memset(out, 0, sizeof(*out));
    png_source source = {data, size, 0, message, message_size};
    if (size < 8 || png_sig_cmp(data, 0, 8) != 0) {
        set_message(message, message_size, "no PNG signature");
        return LEAN_IMAGE_CORRUPT;
    }
    // IHDR must be the first chunk: its size is checked before libpng reads on (png_read_info reads every chunk
    // up to the image data, and a file that claims a huge size may be damaged after the header).
    if (size >= 24 && memcmp(data + 12, "IHDR", 4) == 0) {
        uint32_t w = (uint32_t)data[16] << 24 | (uint32_t)data[17] << 16 | (uint32_t)data[18] << 8 | data[19];
        uint32_t h = (uint32_t)data[20] << 24 | (uint32_t)data[21] << 16 | (uint32_t)data[22] << 8 | data[23];
        if (w > max_side || h > max_side || (uint64_t)w * h > max_pixels) {
            out->width = w;
            out->height = h;
            return LEAN_IMAGE_TOO_LARGE;
        }
    }
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &source, on_error, on_warning);
    if (png == NULL) {
        set_message(message, message_size, "out of memory");
        return LEAN_IMAGE_NO_MEMORY;
    }
    png_infop info = png_create_info_struct(png);
    png_infop end = info ? png_create_info_struct(png) : NULL;
    if (info == NULL || end == NULL) {
        png_destroy_read_struct(&png, info ? &info : NULL, NULL);
        set_message(message, message_size, "out of memory");
        return LEAN_IMAGE_NO_MEMORY;
    }
    png_bytepp volatile rows = NULL;
    // 0: header and rows (an error fails the decode); 1: the chunks after the image data.
    volatile int stage = 0;
    if (setjmp(png_jmpbuf(png))) {
        free(rows);
        png_destroy_read_struct(&png, &info, &end);
        if (stage == 1) return LEAN_IMAGE_OK;
        lean_decoded_image_free(out);
        return LEAN_IMAGE_CORRUPT;
    }
    png_set_read_fn(png, &source, read_memory);
    // The PNG format's own limit; ours is checked below so that the error can say what the size was.
    png_set_user_limits(png, 0x7fffffffu, 0x7fffffffu);
    png_read_info(png, info);
    png_uint_32 width = 0, height = 0;
    int bit_depth = 0, color_type = 0, interlace = 0;
    png_get_IHDR(png, info, &width, &height, &bit_depth, &color_type, &interlace, NULL, NULL);
    out->width = width;
    out->height = height;
    out->bit_depth = bit_depth;
    out->color_type = color_type;
    if (width > max_side || height > max_side || (uint64_t)width * height > max_pixels) {
        png_destroy_read_struct(&png, &info, &end);
        return LEAN_IMAGE_TOO_LARGE;
    }
    // Pillow unpacks 16-bit samples with "RGB;16B"-style rawmodes, which keep the high byte: strip_16 does the
    // same (scale_16 would round instead).
    if (bit_depth == 16) png_set_strip_16(png);
    if (color_type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    // Pillow's "L;2"/"L;4" and mode "1" replicate the bits (2-bit 1 becomes 0x55, 1-bit 1 becomes 255), as this does.
    if (color_type == PNG_COLOR_TYPE_GRAY && bit_depth < 8) png_set_expand_gray_1_2_4_to_8(png);
    if (color_type == PNG_COLOR_TYPE_GRAY || color_type == PNG_COLOR_TYPE_GRAY_ALPHA) png_set_gray_to_rgb(png);
    // convert("RGB") drops alpha without compositing; tRNS is not turned into alpha (palette_to_rgb would expand it,
    // and strip_alpha removes it again).
    png_set_strip_alpha(png);
    int passes = png_set_interlace_handling(png);
    (void)passes;  // png_read_image runs every pass
    png_read_update_info(png, info);
    size_t row_bytes = png_get_rowbytes(png, info);
    if (png_get_channels(png, info) != 3 || png_get_bit_depth(png, info) != 8 || row_bytes != (size_t)width * 3) {
        // Not expected for any valid colour type; refuse rather than read rows of another layout.
        set_message(message, message_size, "libpng did not produce 8-bit RGB rows for this colour type");
        png_destroy_read_struct(&png, &info, &end);
        return LEAN_IMAGE_UNSUPPORTED;
    }
    out->pixels = malloc((size_t)width * height * 3);
    rows = malloc(sizeof(png_bytep) * height);
    if (out->pixels == NULL || rows == NULL) png_error(png, "out of memory");
    for (png_uint_32 y = 0; y < height; y++) rows[y] = out->pixels + (size_t)y * row_bytes;
    png_read_image(png, rows);
    collect_metadata(png, info, out);
    // Pillow stops at the last row's data and reads later chunks leniently (a missing IEND or a damaged chunk
    // after the image data does not fail the open): errors from here on keep the pixels.
    stage = 1;
    png_read_end(png, end);
    collect_metadata(png, end, out);
    free(rows);
    png_destroy_read_struct(&png, &info, &end);
    return LEAN_IMAGE_OK;
}
