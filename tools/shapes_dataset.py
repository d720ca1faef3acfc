#!/usr/bin/env python3
"""Synthetic captioned shapes: the data set the embedded default model (Models/tiny-sd) is trained on.

Every sample is a 64x64 RGB image of one to three flat-coloured shapes on a flat background, with a caption from a
small regular grammar:

    <count> <colour> <shape>[s] on a <background> background[, <position>]

    count     a | two | three
    colour    red green blue yellow white black          (never the background's colour)
    shape     circle square triangle star diamond
    position  top left | top right | bottom left | bottom right | center   (left out of 1 caption in 3: then anywhere)

e.g. "two green triangles on a white background, top left", "a red circle on a blue background".

Sample i of seed s is a pure function of (s, i) (numpy RandomState), so a data set needs no storage. A fixed set of
caption combinations is held out of training (`is_held_out`); `held_out_prompts` lists evaluation prompts drawn from
it, each with what the analysis in tools/check_default_model.py can verify (shape colour, background, position).

    python3 tools/shapes_dataset.py --count 16 --out /tmp/shapes      # writes PNGs + captions.txt
    python3 tools/shapes_dataset.py --held-out 20                      # prints held-out prompts as JSON
"""
import argparse
import hashlib
import json
import math
import os

import numpy as np
from PIL import Image, ImageDraw

SIZE = 64
COLOURS = {
    "red": (220, 30, 30),
    "green": (30, 170, 50),
    "blue": (30, 60, 220),
    "yellow": (245, 215, 30),
    "white": (245, 245, 245),
    "black": (15, 15, 15),
}
COLOUR_NAMES = list(COLOURS)
SHAPES = ["circle", "square", "triangle", "star", "diamond"]
COUNTS = {"a": 1, "two": 2, "three": 3}
# Centre of each named region, in pixels of the 64x64 image.
POSITIONS = {
    "top left": (17, 17),
    "top right": (47, 17),
    "bottom left": (17, 47),
    "bottom right": (47, 47),
    "center": (32, 32),
}
POSITION_NAMES = list(POSITIONS)
SUPERSAMPLE = 4


def caption(count, colour, shape, background, position=None):
    noun = shape if count == "a" else shape + "s"
    text = f"{count} {colour} {noun} on a {background} background"
    return text + (f", {position}" if position else "")


def is_held_out(count, colour, shape, background, position):
    """About 4% of the caption combinations (count, colour, shape, background, position or None) never appear in
    training; they are the evaluation prompts."""
    key = "|".join([count, colour, shape, background, position or "-"])
    return int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) % 25 == 0


def _shape_polygon(shape, cx, cy, r):
    if shape == "square":
        s = r * 0.85
        return [(cx - s, cy - s), (cx + s, cy - s), (cx + s, cy + s), (cx - s, cy + s)]
    if shape == "diamond":
        return [(cx, cy - r), (cx + r * 0.8, cy), (cx, cy + r), (cx - r * 0.8, cy)]
    if shape == "triangle":
        return [(cx + r * math.cos(a), cy + r * 0.15 + r * math.sin(a))
                for a in (-math.pi / 2, math.pi / 6, 5 * math.pi / 6)]
    if shape == "star":
        pts = []
        for k in range(10):
            a = -math.pi / 2 + k * math.pi / 5
            rr = r if k % 2 == 0 else r * 0.45
            pts.append((cx + rr * math.cos(a), cy + rr * math.sin(a)))
        return pts
    raise ValueError(shape)


def render(colour, shape, background, centres, radius):
    """Draws shapes of one colour at `centres` (pixel coordinates) on a flat background, antialiased."""
    big = SIZE * SUPERSAMPLE
    img = Image.new("RGB", (big, big), COLOURS[background])
    draw = ImageDraw.Draw(img)
    r = radius * SUPERSAMPLE
    for (cx, cy) in centres:
        cx, cy = cx * SUPERSAMPLE, cy * SUPERSAMPLE
        if shape == "circle":
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=COLOURS[colour])
        else:
            draw.polygon(_shape_polygon(shape, cx, cy, r), fill=COLOURS[colour])
    return img.resize((SIZE, SIZE), Image.LANCZOS)


# "simple": one circle, anywhere (the colour words only); a sanity check for the training loop.
MODE = {"simple": False, "position_share": 2 / 3}


def sample_spec(rng):
    """Draws one caption combination (uniform over the grammar, held-out ones redrawn)."""
    while True:
        count = ["a", "two", "three"][rng.randint(3)]
        colour = COLOUR_NAMES[rng.randint(len(COLOUR_NAMES))]
        background = COLOUR_NAMES[rng.randint(len(COLOUR_NAMES))]
        if background == colour:
            continue
        shape = SHAPES[rng.randint(len(SHAPES))]
        position = POSITION_NAMES[rng.randint(len(POSITION_NAMES))] if rng.rand() < MODE["position_share"] else None
        if MODE["simple"]:
            count, shape, position = "a", "circle", None
        if not is_held_out(count, colour, shape, background, position):
            return count, colour, shape, background, position


def layout(rng, count, position):
    """Centres and radius of `count` shapes around `position` (or anywhere, when None)."""
    n = COUNTS[count]
    radius = {1: 11.0, 2: 7.0, 3: 6.0}[n] * rng.uniform(0.85, 1.15)
    if position is None:
        anchor = (rng.uniform(18, 46), rng.uniform(18, 46))
    else:
        ax, ay = POSITIONS[position]
        anchor = (ax + rng.uniform(-3, 3), ay + rng.uniform(-3, 3))
    if n == 1:
        return [anchor], radius
    # n shapes evenly on a small circle around the anchor, random rotation: they do not overlap.
    spread = radius * (1.15 if n == 2 else 1.3)
    phase = rng.uniform(0, 2 * math.pi)
    centres = [(anchor[0] + spread * math.cos(phase + 2 * math.pi * k / n),
                anchor[1] + spread * math.sin(phase + 2 * math.pi * k / n)) for k in range(n)]
    lo, hi = radius + 1, SIZE - radius - 1
    return [(min(max(x, lo), hi), min(max(y, lo), hi)) for x, y in centres], radius


def sample(seed, index):
    """(PIL image, caption) number `index` of data set `seed`."""
    rng = np.random.RandomState((seed * 1_000_003 + index) % (2**32))
    count, colour, shape, background, position = sample_spec(rng)
    centres, radius = layout(rng, count, position)
    return render(colour, shape, background, centres, radius), caption(count, colour, shape, background, position)


def batch(seed, start, n):
    """uint8 array [n, 64, 64, 3] and captions of samples start..<start+n."""
    images, captions = [], []
    for i in range(start, start + n):
        img, cap = sample(seed, i)
        images.append(np.asarray(img, dtype=np.uint8))
        captions.append(cap)
    return np.stack(images), captions


def held_out_prompts(n=20, seed=1234):
    """`n` held-out evaluation prompts, each a dict: prompt, colour, background, position (or null), count, shape.
    Half say where the shape is. Deterministic."""
    combos = []
    for count in COUNTS:
        for colour in COLOUR_NAMES:
            for background in COLOUR_NAMES:
                if background == colour:
                    continue
                for shape in SHAPES:
                    for position in POSITION_NAMES + [None]:
                        if is_held_out(count, colour, shape, background, position):
                            combos.append((count, colour, shape, background, position))
    rng = np.random.RandomState(seed)
    with_pos = [c for c in combos if c[4] is not None]
    without = [c for c in combos if c[4] is None]
    picked = [with_pos[i] for i in rng.permutation(len(with_pos))[: (n + 1) // 2]]
    picked += [without[i] for i in rng.permutation(len(without))[: n - len(picked)]]
    rest = [c for c in with_pos if c not in picked]  # too few position-free ones: more with a position
    picked += [rest[i] for i in rng.permutation(len(rest))[: n - len(picked)]]
    return [dict(prompt=caption(*c), count=c[0], colour=c[1], shape=c[2], background=c[3], position=c[4])
            for c in picked]


def validation_prompts(n=20, seed=99, test_count=20):
    """`n` held-out prompts that are not among the test prompts (`held_out_prompts(test_count)`): for choosing
    sampling settings without looking at the test set. Same dict form."""
    test = {p["prompt"] for p in held_out_prompts(test_count)}
    pool = [p for p in held_out_prompts(10_000, seed=seed) if p["prompt"] not in test]
    return [pool[i] for i in np.random.RandomState(seed).permutation(len(pool))[:n]]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--count", type=int, default=0, help="write this many samples as PNGs to --out")
    ap.add_argument("--out", default="/tmp/shapes")
    ap.add_argument("--held-out", type=int, default=0, help="print this many held-out prompts as JSON")
    args = ap.parse_args()
    if args.count:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "captions.txt"), "w") as f:
            for i in range(args.count):
                img, cap = sample(args.seed, i)
                img.save(os.path.join(args.out, f"{i:05d}.png"))
                f.write(f"{i:05d}.png\t{cap}\n")
        print(f"wrote {args.count} samples to {args.out}")
    if args.held_out:
        print(json.dumps(held_out_prompts(args.held_out), indent=1))


if __name__ == "__main__":
    main()
