#ifndef LEAN_IMAGE_DECODE_H
#define LEAN_IMAGE_DECODE_H
#include <stddef.h>
#include <stdint.h>

/// What a decode call returns.
enum {
    LEAN_IMAGE_OK = 0,
    /// Damaged or truncated data; `message` has the library's reason.
    LEAN_IMAGE_CORRUPT = 1,
    /// A valid file of a kind we do not take (12-bit JPEG, a JPEG with 2 components); `message` says which.
    LEAN_IMAGE_UNSUPPORTED = 2,
    /// The header's size is over the limits; `width` and `height` are set, nothing was allocated for pixels.
    LEAN_IMAGE_TOO_LARGE = 3,
    LEAN_IMAGE_NO_MEMORY = 4,
};

/// A decoded image and the metadata that can carry an orientation. Every pointer is malloc'd (or NULL) and freed
/// by `lean_decoded_image_free`.
typedef struct {
    uint32_t width;
    uint32_t height;
    /// width * height * 3 bytes, RGB, row-major.
    unsigned char *pixels;
    /// The Exif block: a JPEG's first APP1 "Exif\0\0" segment (prefix included) with the payload of any later ones
    /// appended, as Pillow joins them; a PNG's eXIf chunk (a bare TIFF header, no prefix).
    unsigned char *exif;
    size_t exif_length;
    /// XMP text: a JPEG's last APP1 "http://ns.adobe.com/xap/1.0/" payload, a PNG's last "XML:com.adobe.xmp" text.
    unsigned char *xmp;
    size_t xmp_length;
    /// A PNG's last "Raw profile type exif" text chunk (ImageMagick's hex-encoded Exif).
    unsigned char *raw_profile_exif;
    size_t raw_profile_exif_length;
    /// For messages: the PNG bit depth and colour type, or the JPEG component count in `color_type`.
    int bit_depth;
    int color_type;
} lean_decoded_image;

/// Frees the buffers of `image` and clears it (safe on a zeroed or already freed struct).
void lean_decoded_image_free(lean_decoded_image *image);

/// Decodes a PNG held in memory to 8-bit RGB the way Pillow's `Image.open(...).convert("RGB")` does: 16-bit samples
/// keep their high byte, grey, grey+alpha and palette images expand to RGB, alpha (and tRNS) is dropped without
/// compositing, no gamma or colour-profile transform. Interlaced images are deinterlaced. The size is checked
/// against `max_side` and `max_pixels` from the header before any pixel buffer is allocated.
int lean_png_read_rgb8(const unsigned char *data, size_t size, uint32_t max_side, uint64_t max_pixels,
                       lean_decoded_image *out, char *message, size_t message_size);

/// Decodes a JPEG held in memory to 8-bit RGB as Pillow does (libjpeg's default islow DCT and fancy upsampling;
/// greyscale replicated; 4-component CMYK/YCCK inverted as Pillow's "CMYK;I" and converted with its cmyk2rgb).
/// A truncated file or corrupt entropy-coded data (libjpeg's "Corrupt JPEG data" and "Premature end of JPEG file"
/// warnings before the last row) is an error, never a grey-filled image.
int lean_jpeg_read_rgb(const unsigned char *data, size_t size, uint32_t max_side, uint64_t max_pixels,
                       lean_decoded_image *out, char *message, size_t message_size);

#endif
