#!/usr/bin/env python3
"""PNGs with generation parameters written by PIL as AUTOMATIC1111 writes them (`PngInfo.add_text("parameters",
text)`: a tEXt chunk when the text is Latin-1, else iTXt), for the reader and infotext parser tests.

Usage: python3 tools/make_metadata_fixtures.py
Writes Tests/LeanDiffusionTests/Fixtures/metadata/{a1111-latin1.png, a1111-utf8.png, after-idat.png,
no-parameters.png, expected.json}; expected.json also holds the SHA-256 of a byte pattern (hashlib) for the
model-hash tests. CI never runs this.
"""
import hashlib, json, os, zlib
import struct
from PIL import Image
from PIL.PngImagePlugin import PngInfo

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "LeanDiffusionTests", "Fixtures",
                   "metadata")
os.makedirs(OUT, exist_ok=True)

LATIN1 = ('masterpiece, a "red" circle: on blue, café\nsecond line of the prompt\n'
          'Negative prompt: blurry, lowres\n'
          'Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 965400086, Size: 512x768, '
          'Model hash: 45dee52b12, Model: v1-5-pruned-emaonly, VAE hash: 735e4c3a44, VAE: vae-ft-mse, '
          'Lora hashes: "add_detail: 7c6bad76eb54, more_art: 64e2c4a9c6", TI hashes: "easyneg: c74b4e810b03", '
          'Version: v1.10.1')
UTF8 = ('日本の庭園, 桜\nNegative prompt: 低品質\n'
        'Steps: 4, Sampler: LCM, Schedule type: Automatic, CFG scale: 1.0, Seed: 1, Size: 64x64, '
        'Model: "tiny, sd", Version: LeanDiffusion 0.1.0')

image = Image.new("RGB", (8, 6), (200, 30, 40))
expected = {"a1111-latin1.png": LATIN1, "a1111-utf8.png": UTF8, "after-idat.png": LATIN1}
for name, text in (("a1111-latin1.png", LATIN1), ("a1111-utf8.png", UTF8)):
    info = PngInfo()
    info.add_text("parameters", text)
    info.add_text("Software", "PIL")
    image.save(os.path.join(OUT, name), pnginfo=info)
    assert Image.open(os.path.join(OUT, name)).info["parameters"] == text
image.save(os.path.join(OUT, "no-parameters.png"))

# A tEXt chunk after the image data (allowed by the PNG spec; PIL writes them before): spliced in before IEND.
data = open(os.path.join(OUT, "no-parameters.png"), "rb").read()
body = b"parameters\0" + LATIN1.encode("latin-1")
chunk = struct.pack(">I", len(body)) + b"tEXt" + body + struct.pack(">I", zlib.crc32(b"tEXt" + body) & 0xFFFFFFFF)
iend = data.rindex(b"IEND") - 4
open(os.path.join(OUT, "after-idat.png"), "wb").write(data[:iend] + chunk + data[iend:])
assert Image.open(os.path.join(OUT, "after-idat.png")).text["parameters"] == LATIN1

# SHA-256 of a pattern the Swift test rebuilds: byte i = (i * 7 + i // 251) % 256, 5,000,003 bytes (spans chunks).
pattern = bytes(((i * 7 + i // 251) % 256) for i in range(5_000_003))
hashes = {"pattern_5000003": hashlib.sha256(pattern).hexdigest(), "empty": hashlib.sha256(b"").hexdigest(),
          "abc": hashlib.sha256(b"abc").hexdigest()}
for n in (55, 56, 63, 64, 65, 119, 120):
    hashes[f"a_{n}"] = hashlib.sha256(b"a" * n).hexdigest()
with open(os.path.join(OUT, "expected.json"), "w", encoding="utf-8") as f:
    json.dump({"parameters": expected, "sha256": hashes}, f, ensure_ascii=False, indent=1)
print("wrote", sorted(os.listdir(OUT)))
