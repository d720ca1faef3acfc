#!/usr/bin/env python3
"""Fixtures for image input (Tests/LeanDiffusionTests/ImageInputTests.swift): small PNG and JPEG files and what
diffusers makes of them.

    python3 tools/make_image_fixtures.py     # writes Tests/LeanDiffusionTests/Fixtures/images/

Deterministic (numpy RandomState patterns; PIL and zlib for the files). Needs Pillow, numpy, safetensors and
diffusers (for diffusers.utils.load_image and VaeImageProcessor).

Files: PNG of every colour type and bit depth (PIL writes what it can; a small writer below does 2/4-bit grey,
16-bit RGB/RGBA/grey+alpha, Adam7 interlacing and an eXIf chunk after the image data), JPEG baseline 4:2:0,
4:2:2, 4:4:4, progressive, greyscale and CMYK, JPEGs with EXIF orientation 2..8 (PIL's Image.Exif), a PNG with
eXIf orientation, XMP and ImageMagick "Raw profile type exif" orientations, and bad inputs (text named .png, empty,
truncated JPEG and PNG, headers claiming 20000x20000 pixels).

versions.json records the Pillow, libjpeg-turbo, diffusers and numpy versions used. expected.safetensors holds:
  decoded/<file>       uint8 (H, W, 3): diffusers.utils.load_image(path) (PIL open, exif_transpose, convert RGB)
  grey/<file>          uint8 (H, W): PIL convert("L") of that
  resize/rgb/<W>x<H>   uint8 (H, W, 3): PIL resize((W, H), LANCZOS) of decoded/png-rgb8.png (50x20 and 40x28
                       widen and shrink the height: Pillow >= 12.2 runs its vertical pass first for those)
  resize/l/<W>x<H>     uint8 (H, W): the same for grey/png-rgb8.png
  preprocess/<name>    float32 (1, 3, H, W): VaeImageProcessor(vae_scale_factor=8).preprocess(image, height, width)
  mask/<name>          uint8 (1, 1, H, W): the inpainting mask processor's preprocess(mask, height, width), whose
                       float32 values are all 0.0 or 1.0 (checked), stored as bytes to keep the file small

One deviation from PIL, by choice: a 16-bit greyscale PNG (PIL mode "I;16") is clipped to 255 by PIL's
convert("RGB") (every value above 255 becomes white); we keep the high byte, as PIL itself does for 16-bit RGB,
RGBA and grey+alpha. decoded/png-grey16.png is therefore the high byte computed here, not PIL's output.
"""
import json
import os
import struct
import zlib

import numpy as np
import PIL.features
from PIL import Image, PngImagePlugin
from safetensors.numpy import save_file
from diffusers.image_processor import VaeImageProcessor
from diffusers.utils import load_image

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "LeanDiffusionTests", "Fixtures",
                   "images")


def pattern(w, h, seed, channels=3):
    """Smooth gradients, a few discs and mild noise: edges and texture for JPEG and resampling, still small files."""
    rs = np.random.RandomState(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    out = np.zeros((h, w, channels))
    for c in range(channels):
        fx, fy, ph = rs.uniform(0.5, 3.0), rs.uniform(0.5, 3.0), rs.uniform(0, 6.3)
        out[..., c] = 128 + 90 * np.sin(fx * x / w * 6.3 + ph) * np.cos(fy * y / h * 6.3)
    for _ in range(3):
        cx, cy, r = rs.uniform(0, w), rs.uniform(0, h), rs.uniform(2, max(3, min(w, h) / 3))
        colour = rs.uniform(0, 255, channels)
        inside = (x - cx) ** 2 + (y - cy) ** 2 < r * r
        out[inside] = colour
    out += rs.normal(0, 6, out.shape)
    return np.clip(out, 0, 255).round().astype(np.uint8)


# --- A small PNG writer for what PIL cannot write -------------------------------------------------------------

def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def pack_rows(samples, bit_depth):
    """samples: (h, w, channels) integers -> list of packed row bytes (big-endian 16-bit, MSB-first sub-byte)."""
    rows = []
    for row in samples:
        flat = row.reshape(-1)
        if bit_depth == 16:
            rows.append(b"".join(struct.pack(">H", int(v)) for v in flat))
        elif bit_depth == 8:
            rows.append(bytes(int(v) for v in flat))
        else:
            per = 8 // bit_depth
            out = bytearray()
            for i in range(0, len(flat), per):
                byte = 0
                for j in range(per):
                    v = int(flat[i + j]) if i + j < len(flat) else 0
                    byte |= v << (8 - bit_depth * (j + 1))
                out.append(byte)
            rows.append(bytes(out))
    return rows


def filtered(rows, bpp):
    """Filter types 0 (None), 1 (Sub) and 2 (Up) in turn, so libpng's unfiltering is exercised."""
    out = bytearray()
    prev = bytes(len(rows[0])) if rows else b""
    for i, row in enumerate(rows):
        kind = i % 3
        out.append(kind)
        if kind == 0:
            out += row
        elif kind == 1:
            out += bytes((row[j] - (row[j - bpp] if j >= bpp else 0)) & 0xFF for j in range(len(row)))
        else:
            out += bytes((row[j] - prev[j]) & 0xFF for j in range(len(row)))
        prev = row
    return bytes(out)


ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]


def write_png(path, samples, bit_depth, color_type, interlace=False, before=(), after=(), palette=None):
    h, w, channels = samples.shape
    bpp = max(1, channels * bit_depth // 8)
    if interlace:
        raw = b""
        for x0, y0, dx, dy in ADAM7:
            sub = samples[y0::dy, x0::dx]
            if sub.shape[0] and sub.shape[1]:
                raw += filtered(pack_rows(sub, bit_depth), bpp)
    else:
        raw = filtered(pack_rows(samples, bit_depth), bpp)
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, bit_depth, color_type, 0, 0,
                                                                 1 if interlace else 0))
    if palette is not None:
        data += chunk(b"PLTE", palette)
    for kind, body in before:
        data += chunk(kind, body)
    data += chunk(b"IDAT", zlib.compress(raw, 9))
    for kind, body in after:
        data += chunk(kind, body)
    data += chunk(b"IEND", b"")
    with open(path, "wb") as f:
        f.write(data)


def exif_bytes(orientation):
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif.tobytes()  # b"Exif\0\0" + TIFF


# --- The fixtures ---------------------------------------------------------------------------------------------

def main():
    os.makedirs(OUT, exist_ok=True)
    for name in os.listdir(OUT):
        os.remove(os.path.join(OUT, name))
    expected = {}
    p = lambda name: os.path.join(OUT, name)

    rgb = pattern(37, 29, 1)
    alpha = pattern(37, 29, 2, 1)
    grey = pattern(37, 29, 3, 1)[..., 0]

    # PNG through PIL.
    Image.fromarray(rgb).save(p("png-rgb8.png"))
    Image.fromarray(np.dstack([rgb, alpha])).save(p("png-rgba8.png"))
    Image.fromarray(grey).save(p("png-grey8.png"))
    Image.fromarray(grey > 128).save(p("png-grey1.png"))  # mode "1": 1-bit greyscale
    Image.fromarray(np.dstack([grey, alpha[..., 0]]), "LA").save(p("png-greyalpha8.png"))
    Image.fromarray(grey).save(p("png-grey-trns.png"), transparency=int(grey[3, 4]))
    pal = Image.fromarray(rgb).quantize(colors=200, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    pal.save(p("png-palette8.png"))
    pal.save(p("png-palette-trns.png"), transparency=bytes(range(0, 256))[:200])
    pal16 = Image.fromarray(rgb).quantize(colors=16, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    pal16.save(p("png-palette4.png"), bits=4)
    Image.fromarray(rgb).save(p("png-exif6.png"), exif=exif_bytes(6))
    info = PngImagePlugin.PngInfo()
    info.add_itxt("XML:com.adobe.xmp", '<x:xmpmeta><rdf:Description tiff:Orientation="3"/></x:xmpmeta>')
    Image.fromarray(rgb).save(p("png-xmp3.png"), pnginfo=info)
    raw = exif_bytes(5)
    hexed = raw.hex()
    text = "\nexif\n%8d\n" % len(raw) + "\n".join(hexed[i:i + 72] for i in range(0, len(hexed), 72)) + "\n"
    info = PngImagePlugin.PngInfo()
    info.add_text("Raw profile type exif", text, zip=True)
    Image.fromarray(rgb).save(p("png-rawprofile5.png"), pnginfo=info)

    # PNG through the writer above.
    rgb16 = rgb.astype(np.uint16) * 257 + pattern(37, 29, 4).astype(np.uint16)  # a low byte unlike the high
    write_png(p("png-rgb16.png"), rgb16, 16, 2)
    write_png(p("png-rgba16.png"), np.dstack([rgb16, alpha.astype(np.uint16) * 257]), 16, 6)
    grey16 = grey.astype(np.uint16) * 256 + pattern(37, 29, 5, 1)[..., 0]
    write_png(p("png-grey16.png"), grey16[..., None], 16, 0)
    write_png(p("png-greyalpha16.png"), np.dstack([grey16, alpha[..., 0].astype(np.uint16) * 257]), 16, 4)
    write_png(p("png-grey2.png"), (grey >> 6)[..., None], 2, 0)
    write_png(p("png-grey4.png"), (grey >> 4)[..., None], 4, 0)
    write_png(p("png-interlaced-rgb8.png"), rgb, 8, 2, interlace=True)
    write_png(p("png-interlaced-grey2.png"), (grey >> 6)[..., None], 2, 0, interlace=True)
    write_png(p("png-exif8-after-idat.png"), rgb, 8, 2, after=[(b"eXIf", exif_bytes(8)[6:])])
    # Indices past a 6-entry palette (invalid, but seen): PIL and libpng both show them black.
    write_png(p("png-palette-short.png"), (np.arange(9 * 5, dtype=np.uint8) * 37).reshape(5, 9, 1), 8, 3,
              palette=bytes([10, 20, 30, 40, 50, 60, 70, 80, 90, 200, 210, 220, 1, 2, 3, 250, 0, 5]))

    # JPEG.
    im = Image.fromarray(rgb)
    im.save(p("jpeg-420.jpg"), quality=90)
    im.save(p("jpeg-422.jpg"), quality=90, subsampling=1)
    im.save(p("jpeg-444.jpg"), quality=90, subsampling=0)
    im.save(p("jpeg-progressive.jpg"), quality=90, progressive=True)
    Image.fromarray(grey).save(p("jpeg-grey.jpg"), quality=90)
    im.convert("CMYK").save(p("jpeg-cmyk.jpg"), quality=90)
    small = Image.fromarray(pattern(21, 13, 6))
    for orientation in range(1, 9):
        small.save(p(f"jpeg-exif{orientation}.jpg"), quality=90, exif=exif_bytes(orientation))
    small.save(p("jpeg-xmp6.jpg"), quality=90,
               xmp=b'<x:xmpmeta><rdf:Description><tiff:Orientation>6</tiff:Orientation></rdf:Description></x:xmpmeta>')
    # An Exif block whose IFD offset points past its end: Pillow warns and finds no orientation.
    bad = b"Exif\x00\x00MM\x00\x2a\x00\x00\xff\xf0"
    small.save(p("jpeg-exif-bad-offset.jpg"), quality=90, exif=bad)
    with open(p("jpeg-420.jpg"), "rb") as f:
        jpeg = f.read()
    with open(p("jpeg-as.png"), "wb") as f:  # a JPEG under a PNG name: the bytes decide
        f.write(jpeg)

    decoded_names = sorted(n for n in os.listdir(OUT))
    for name in decoded_names:
        if name == "png-grey16.png":
            continue
        img = load_image(p(name))
        expected[f"decoded/{name}"] = np.array(img)
    # The deviation (see the docstring): PIL clips "I;16"; we keep the high byte.
    clipped = np.array(load_image(p("png-grey16.png")))
    assert clipped.max() == 255 and (clipped[..., 0] == np.minimum(grey16, 255)).all()
    expected["decoded/png-grey16.png"] = np.repeat((grey16 >> 8).astype(np.uint8)[..., None], 3, axis=2)
    # Orientation sanity: PIL transposed what we said it would.
    assert expected["decoded/jpeg-exif6.jpg"].shape == (21, 13, 3)
    assert (expected["decoded/jpeg-exif-bad-offset.jpg"] == np.array(Image.open(p("jpeg-exif-bad-offset.jpg")))).all()
    assert expected["decoded/png-xmp3.png"].tolist() == np.array(Image.fromarray(rgb).rotate(180)).tolist()

    # Bad inputs.
    with open(p("text.png"), "w") as f:
        f.write("hello, this is not an image\n")
    open(p("empty.png"), "wb").close()
    with open(p("truncated.jpg"), "wb") as f:
        f.write(jpeg[: len(jpeg) * 6 // 10])
    with open(p("png-rgb8.png"), "rb") as f:
        png = f.read()
    with open(p("truncated.png"), "wb") as f:
        f.write(png[: len(png) * 6 // 10])
    for name in ["truncated.jpg", "truncated.png", "text.png", "empty.png"]:
        try:
            load_image(p(name))
        except Exception:
            pass
        else:
            raise AssertionError(f"PIL read {name}")
    # Headers claiming 20000x20000 pixels, nothing else valid after them.
    with open(p("too-large.png"), "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 20000, 20000, 8, 2, 0, 0, 0))
                + chunk(b"IEND", b""))
    sof = jpeg.index(b"\xff\xc0")
    big = jpeg[: sof + 5] + struct.pack(">HH", 20000, 20000) + jpeg[sof + 9:]
    with open(p("too-large.jpg"), "wb") as f:
        f.write(big)

    # PIL's Lanczos, down, up and mixed, odd sizes.
    base = Image.fromarray(expected["decoded/png-rgb8.png"])
    expected["grey/png-rgb8.png"] = np.array(base.convert("L"))
    expected["grey/jpeg-420.jpg"] = np.array(load_image(p("jpeg-420.jpg")).convert("L"))
    for size in [(23, 17), (61, 45), (50, 20), (15, 29), (37, 60), (5, 4), (79, 41), (40, 28)]:
        expected[f"resize/rgb/{size[0]}x{size[1]}"] = np.array(base.resize(size, Image.LANCZOS))
        expected[f"resize/l/{size[0]}x{size[1]}"] = np.array(base.convert("L").resize(size, Image.LANCZOS))

    # diffusers' preprocessing: an image and a mask of 45x35 (not multiples of 8).
    Image.fromarray(pattern(45, 35, 7)).save(p("pre-45x35.png"))
    mask = np.zeros((35, 45, 3), np.uint8)
    mask[...] = pattern(45, 35, 8)  # values on both sides of 128 after convert("L")
    Image.fromarray(mask).save(p("mask-45x35.png"))
    Image.fromarray(pattern(24, 16, 9)).save(p("pre-24x16.png"))
    image = load_image(p("pre-45x35.png"))
    mask_image = load_image(p("mask-45x35.png"))
    processor = VaeImageProcessor(vae_scale_factor=8)
    mask_processor = VaeImageProcessor(vae_scale_factor=8, do_normalize=False, do_binarize=True,
                                       do_convert_grayscale=True)
    f32 = lambda t: t.numpy().astype(np.float32)
    expected["preprocess/default"] = f32(processor.preprocess(image))  # 40x32
    expected["preprocess/48x40"] = f32(processor.preprocess(image, height=40, width=48))
    expected["preprocess/24x16"] = f32(processor.preprocess(load_image(p("pre-24x16.png"))))  # no resize
    expected["mask/default"] = f32(mask_processor.preprocess(mask_image))
    expected["mask/48x40"] = f32(mask_processor.preprocess(mask_image, height=40, width=48))
    for key in ["mask/default", "mask/48x40"]:
        m = expected[key]
        assert 0.2 < m.mean() < 0.8 and set(np.unique(m).tolist()) == {0.0, 1.0}
        expected[key] = m.astype(np.uint8)

    import diffusers
    import PIL
    versions = {"pillow": PIL.__version__, "diffusers": diffusers.__version__, "numpy": np.__version__,
                "libjpeg_turbo": str(PIL.features.version("libjpeg_turbo"))}
    save_file({k: np.ascontiguousarray(v) for k, v in sorted(expected.items())}, p("expected.safetensors"))
    # A separate file: safetensors writes its metadata map in hash order, which would change the bytes each run.
    with open(p("versions.json"), "w") as f:
        json.dump(versions, f, indent=1, sort_keys=True)
        f.write("\n")
    total = sum(os.path.getsize(p(n)) for n in os.listdir(OUT))
    print(f"{len(os.listdir(OUT))} files, {total} bytes in {os.path.normpath(OUT)}")


if __name__ == "__main__":
    main()
