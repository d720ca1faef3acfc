// JPEG decoding through libjpeg(-turbo). libjpeg's error_exit must not return, so it longjmps back here: the
// setjmp lives in this file, never in Swift.
#include "image_decode.h"
#include <stdio.h>
#include <jpeglib.h>
#include <jerror.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>

/// More scans than any encoder writes (libjpeg's progressive scripts use 10): a crafted progressive file with
/// thousands of tiny scans makes libjpeg re-walk the coefficient buffers each time (libjpeg-turbo's djpeg has
/// -maxscans for this).
#define LEAN_JPEG_MAX_SCANS 1000

typedef struct {
    struct jpeg_error_mgr pub;
    jmp_buf jump;
    int status;
    /// Warnings count as failures until the last row is read (then only the trailing EOI is left to find).
    int counting_warnings;
    int warned;
    char warning[JMSG_LENGTH_MAX];
    char *message;
    size_t message_size;
} error_state;

static void put_message(error_state *state, const char *text) {
    if (state->message == NULL || state->message_size == 0) return;
    strncpy(state->message, text, state->message_size - 1);
    state->message[state->message_size - 1] = 0;
}

static void on_error_exit(j_common_ptr cinfo) {
    error_state *state = (error_state *)cinfo->err;
    char text[JMSG_LENGTH_MAX];
    (*cinfo->err->format_message)(cinfo, text);
    if (state->warned) {
        // The data warning usually explains the error ("Premature end of JPEG file", then "no image").
        char both[2 * JMSG_LENGTH_MAX + 16];
        snprintf(both, sizeof(both), "%s, then: %s", state->warning, text);
        put_message(state, both);
    } else {
        put_message(state, text);
    }
    switch (cinfo->err->msg_code) {
    case JERR_BAD_PRECISION:
    case JERR_CONVERSION_NOTIMPL:
    case JERR_SOF_UNSUPPORTED:
    case JERR_NOT_COMPILED:
        state->status = LEAN_IMAGE_UNSUPPORTED;
        break;
    case JERR_OUT_OF_MEMORY:
        state->status = LEAN_IMAGE_NO_MEMORY;
        break;
    default:
        state->status = LEAN_IMAGE_CORRUPT;
    }
    longjmp(state->jump, 1);
}

/// The warnings that mean the image data is damaged or missing: libjpeg substitutes grey or zero coefficients for
/// it and carries on, where Pillow raises "image file is truncated" for a short file. Others (an unknown JFIF
/// revision or Adobe transform code, a bad ICC marker) describe metadata and are ignored.
static int is_data_warning(int code) {
    switch (code) {
    case JWRN_JPEG_EOF:
    case JWRN_HIT_MARKER:
    case JWRN_HUFF_BAD_CODE:
    case JWRN_ARITH_BAD_CODE:
    case JWRN_MUST_RESYNC:
    case JWRN_EXTRANEOUS_DATA:
    case JWRN_NOT_SEQUENTIAL:
    case JWRN_BOGUS_PROGRESSION:
        return 1;
    default:
        return 0;
    }
}

static void on_emit_message(j_common_ptr cinfo, int level) {
    error_state *state = (error_state *)cinfo->err;
    if (level >= 0) return;  // trace messages
    cinfo->err->num_warnings++;
    if (state->counting_warnings && !state->warned && is_data_warning(cinfo->err->msg_code)) {
        state->warned = 1;
        (*cinfo->err->format_message)(cinfo, state->warning);
    }
}

static void on_output_message(j_common_ptr cinfo) { (void)cinfo; }

static void on_progress(j_common_ptr cinfo) {
    if (!cinfo->is_decompressor) return;
    j_decompress_ptr d = (j_decompress_ptr)cinfo;
    if (d->input_scan_number > LEAN_JPEG_MAX_SCANS) {
        error_state *state = (error_state *)cinfo->err;
        put_message(state, "more than 1000 scans in a progressive JPEG (a damaged or hostile file)");
        state->status = LEAN_IMAGE_CORRUPT;
        longjmp(state->jump, 1);
    }
}

static int starts_with(const jpeg_saved_marker_ptr marker, const char *prefix, size_t length) {
    return marker->data_length >= length && memcmp(marker->data, prefix, length) == 0;
}

/// Exif and XMP as Pillow's JpegImagePlugin.APP keeps them: the first Exif segment whole, later ones' payloads
/// appended; the last XMP segment's bytes after its namespace's terminating NUL.
static int collect_markers(j_decompress_ptr cinfo, lean_decoded_image *out) {
    static const char exif_id[] = "Exif\0\0";
    static const char xmp_id[] = "http://ns.adobe.com/xap/1.0/";  // + NUL: 29 bytes
    for (jpeg_saved_marker_ptr m = cinfo->marker_list; m != NULL; m = m->next) {
        if (m->marker != JPEG_APP0 + 1) continue;
        if (starts_with(m, exif_id, 6)) {
            size_t skip = out->exif == NULL ? 0 : 6;
            size_t add = m->data_length - skip;
            unsigned char *grown = realloc(out->exif, out->exif_length + add + 1);
            if (grown == NULL) return 0;
            memcpy(grown + out->exif_length, m->data + skip, add);
            out->exif = grown;
            out->exif_length += add;
        } else if (starts_with(m, xmp_id, sizeof(xmp_id))) {
            size_t add = m->data_length - sizeof(xmp_id);
            free(out->xmp);
            out->xmp = malloc(add + 1);
            if (out->xmp == NULL) return 0;
            memcpy(out->xmp, m->data + sizeof(xmp_id), add);
            out->xmp_length = add;
        }
    }
    return 1;
}

/// Pillow opens every 4-component JPEG as "CMYK;I" (inverted, Adobe's convention) and convert("RGB") applies
/// cmyk2rgb: nk = 255 - K, R = clip(nk - MULDIV255(C, nk)), with MULDIV255(a, b) = ((t >> 8) + t) >> 8,
/// t = a * b + 128.
static void cmyk_row_to_rgb(const unsigned char *in, unsigned char *out, uint32_t width) {
    for (uint32_t x = 0; x < width; x++, in += 4, out += 3) {
        int nk = in[3];  // 255 - (255 - k)
        for (int c = 0; c < 3; c++) {
            int inverted = 255 - in[c];
            int t = inverted * nk + 128;
            int v = nk - (((t >> 8) + t) >> 8);
            out[c] = (unsigned char)(v <= 0 ? 0 : v < 256 ? v : 255);
        }
    }
}

int lean_jpeg_read_rgb(const unsigned char *data, size_t size, uint32_t max_side, uint64_t max_pixels,
                       lean_decoded_image *out, char *message, size_t message_size) {
    memset(out, 0, sizeof(*out));
    struct jpeg_decompress_struct cinfo;
    struct jpeg_progress_mgr progress;
    error_state state;
    memset(&state, 0, sizeof(state));
    state.message = message;
    state.message_size = message_size;
    cinfo.err = jpeg_std_error(&state.pub);
    state.pub.error_exit = on_error_exit;
    state.pub.emit_message = on_emit_message;
    state.pub.output_message = on_output_message;
    unsigned char *volatile row = NULL;
    if (setjmp(state.jump)) {
        free(row);
        jpeg_destroy_decompress(&cinfo);
        lean_decoded_image_free(out);
        return state.status;
    }
    jpeg_create_decompress(&cinfo);
    progress.progress_monitor = on_progress;
    cinfo.progress = &progress;
    // libjpeg's memory source feeds a fake EOI at the end of the data with a JWRN_JPEG_EOF warning.
    jpeg_mem_src(&cinfo, data, (unsigned long)size);
    jpeg_save_markers(&cinfo, JPEG_APP0 + 1, 0xFFFF);
    state.counting_warnings = 1;
    jpeg_read_header(&cinfo, TRUE);
    out->width = cinfo.image_width;
    out->height = cinfo.image_height;
    out->bit_depth = cinfo.data_precision;
    out->color_type = cinfo.num_components;
    if (cinfo.image_width > max_side || cinfo.image_height > max_side ||
        (uint64_t)cinfo.image_width * cinfo.image_height > max_pixels) {
        jpeg_destroy_decompress(&cinfo);
        return LEAN_IMAGE_TOO_LARGE;
    }
    int cmyk = 0;
    switch (cinfo.num_components) {
    case 1:
    case 3:
        cinfo.out_color_space = JCS_RGB;  // greyscale is replicated, as Pillow's L -> RGB does
        break;
    case 4:
        cinfo.out_color_space = JCS_CMYK;  // libjpeg turns YCCK into CMYK
        cmyk = 1;
        break;
    default: {
        char text[96];
        snprintf(text, sizeof(text), "a JPEG with %d colour components (Pillow takes 1, 3 or 4)",
                 cinfo.num_components);
        put_message(&state, text);
        jpeg_destroy_decompress(&cinfo);
        return LEAN_IMAGE_UNSUPPORTED;
    }
    }
    // Pillow's decoder keeps libjpeg's defaults: JDCT_ISLOW and fancy upsampling (no draft mode in load_image).
    cinfo.dct_method = JDCT_ISLOW;
    cinfo.do_fancy_upsampling = TRUE;
    if (!collect_markers(&cinfo, out)) {
        put_message(&state, "out of memory");
        jpeg_destroy_decompress(&cinfo);
        lean_decoded_image_free(out);
        return LEAN_IMAGE_NO_MEMORY;
    }
    jpeg_start_decompress(&cinfo);
    if (cinfo.output_width != cinfo.image_width || cinfo.output_height != cinfo.image_height ||
        cinfo.output_components != (cmyk ? 4 : 3)) {
        put_message(&state, "libjpeg did not produce full-size RGB rows");
        state.status = LEAN_IMAGE_UNSUPPORTED;
        longjmp(state.jump, 1);
    }
    uint32_t width = cinfo.output_width, height = cinfo.output_height;
    out->pixels = malloc((size_t)width * height * 3);
    if (cmyk) row = malloc((size_t)width * 4);
    if (out->pixels == NULL || (cmyk && row == NULL)) {
        put_message(&state, "out of memory");
        state.status = LEAN_IMAGE_NO_MEMORY;
        longjmp(state.jump, 1);
    }
    while (cinfo.output_scanline < height) {
        unsigned char *target = out->pixels + (size_t)cinfo.output_scanline * width * 3;
        JSAMPROW rows[1] = {cmyk ? row : target};
        if (jpeg_read_scanlines(&cinfo, rows, 1) != 1) {
            put_message(&state, "libjpeg returned no row");
            state.status = LEAN_IMAGE_CORRUPT;
            longjmp(state.jump, 1);
        }
        if (cmyk) cmyk_row_to_rgb(row, target, width);
    }
    if (state.warned) {
        put_message(&state, state.warning);
        state.status = LEAN_IMAGE_CORRUPT;
        longjmp(state.jump, 1);
    }
    // Every row is decoded: a missing EOI after them is fine (Pillow accepts it too).
    state.counting_warnings = 0;
    jpeg_finish_decompress(&cinfo);
    free(row);
    jpeg_destroy_decompress(&cinfo);
    return LEAN_IMAGE_OK;
}
