#!/usr/bin/env python3
"""Checks that a trained default model (tools/train_default_model.py) draws what it is asked, with diffusers.

For each held-out prompt of tools/shapes_dataset.py (never seen in training) it generates a 64x64 image with
diffusers' StableDiffusionPipeline (PNDM, --steps, --guidance, seed = --seed-base + i) and analyses it the way
Tests/LeanDiffusionTests/DefaultModelTests.swift does:

  background colour = per-channel median of the 2-pixel border, named by the nearest palette colour
  shape pixels      = pixels farther than 80 (RGB 0-255 Euclidean) from that background colour (at least 8)
  shape colour      = per-channel median of the shape pixels, named by the nearest palette colour
  position          = centroid of the shape pixels, named by the nearest region centre

A prompt agrees when shape colour, background and (if the prompt names one) position are all as asked.

    python3 tools/check_default_model.py --model Models/tiny-sd                      # prints the agreement rate
    python3 tools/check_default_model.py --model Models/tiny-sd --write-fixture      # + the Swift test's fixture
    python3 tools/check_default_model.py --model /tmp/tiny-sd --grid /tmp/grid.png   # + a picture of the results

--write-fixture also writes MODEL/lean_diffusion.json (this --guidance and --steps: the CLI's defaults for the
model) and records prompts, seeds, settings, the palette/regions, the sha256 and size of the UNet weights and
threshold = the measured rate (minus --slack prompts) in Tests/LeanDiffusionTests/Fixtures/default-model/eval.json.
"""
import argparse
import hashlib
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import shapes_dataset as shapes  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURE = os.path.join(REPO, "Tests", "LeanDiffusionTests", "Fixtures", "default-model", "eval.json")
# 40 prompts: at a 90% bar one failure moves the rate by 2.5 points, not 5.
TEST_PROMPTS = 40
DISTANCE = 80.0
MIN_PIXELS = 8


def nearest(rgb, table):
    return min(table, key=lambda k: sum((float(a) - float(b)) ** 2 for a, b in zip(rgb, table[k])))


def analyse(img):
    """img: uint8 [H, W, 3]. Returns dict(background, colour, position, pixels) (colour/position None when no shape)."""
    a = img.astype(np.float64)
    h, w, _ = a.shape
    border = np.concatenate([a[:2].reshape(-1, 3), a[-2:].reshape(-1, 3),
                             a[2:-2, :2].reshape(-1, 3), a[2:-2, -2:].reshape(-1, 3)])
    bg = np.median(border, axis=0)
    mask = np.sqrt(((a - bg) ** 2).sum(-1)) > DISTANCE
    out = dict(background=nearest(bg, shapes.COLOURS), colour=None, position=None, pixels=int(mask.sum()))
    if mask.sum() >= MIN_PIXELS:
        out["colour"] = nearest(np.median(a[mask], axis=0), shapes.COLOURS)
        ys, xs = np.nonzero(mask)
        # pixel centres, in the 64x64 frame of the region centres
        cx, cy = (xs.mean() + 0.5) * 64 / w, (ys.mean() + 0.5) * 64 / h
        out["position"] = nearest((cx, cy), shapes.POSITIONS)
    return out


def agrees(expected, got):
    return (got["colour"] == expected["colour"] and got["background"] == expected["background"]
            and (expected["position"] is None or got["position"] == expected["position"]))


def unet_sha256(model):
    d = os.path.join(model, "unet")
    f = sorted(x for x in os.listdir(d) if x.endswith(".safetensors"))[0]
    with open(os.path.join(d, f), "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=os.path.join(REPO, "Models", "tiny-sd"))
    ap.add_argument("--prompts", type=int, default=TEST_PROMPTS,
                    help="how many prompts (the test set is always the first TEST_PROMPTS held-out ones)")
    ap.add_argument("--validation", action="store_true",
                    help="held-out prompts disjoint from the test set, for choosing --guidance/--steps without "
                         "looking at the test prompts")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--guidance", type=float, default=7.5)
    ap.add_argument("--seed-base", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--grid", default=None, help="save the generated images side by side here")
    ap.add_argument("--write-fixture", action="store_true")
    ap.add_argument("--slack", type=int, default=0, help="prompts the Swift test may lose against diffusers")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(args.model, safety_checker=None, requires_safety_checker=False,
                                                   torch_dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    if args.validation and args.write_fixture:
        sys.exit("--write-fixture records the test set: drop --validation")
    prompts = (shapes.validation_prompts(args.prompts, test_count=TEST_PROMPTS) if args.validation
               else shapes.held_out_prompts(TEST_PROMPTS)[:args.prompts])
    images, ok = [], 0
    attr = {"background": 0, "colour": 0, "position": 0}
    for i, p in enumerate(prompts):
        p["seed"] = args.seed_base + i
        g = torch.Generator("cpu").manual_seed(p["seed"])
        img = pipe(p["prompt"], height=64, width=64, num_inference_steps=args.steps, guidance_scale=args.guidance,
                   generator=g, output_type="np").images[0]
        img = (img * 255).round().clip(0, 255).astype(np.uint8)
        images.append(img)
        got = analyse(img)
        good = agrees(p, got)
        ok += good
        for k in attr:
            attr[k] += p[k] is not None and got[k] == p[k]
        print(f"{'ok  ' if good else 'FAIL'} {p['prompt']!r}: shape {got['colour']} on {got['background']}, "
              f"at {got['position']} ({got['pixels']} px)", flush=True)
    rate = ok / len(prompts)
    with_position = sum(p["position"] is not None for p in prompts)
    print(f"background {attr['background']}/{len(prompts)}, shape colour {attr['colour']}/{len(prompts)}, "
          f"position {attr['position']}/{with_position}")
    print(f"agreement {ok}/{len(prompts)} = {rate:.2f} (diffusers, {args.steps} steps, guidance {args.guidance})")
    if args.grid:
        from PIL import Image
        cols = 10
        rows = (len(images) + cols - 1) // cols
        grid = Image.new("RGB", (64 * cols, 64 * rows))
        for i, im in enumerate(images):
            grid.paste(Image.fromarray(im), ((i % cols) * 64, (i // cols) * 64))
        grid.resize((128 * cols, 128 * rows), Image.NEAREST).save(args.grid)
        print(f"wrote {args.grid}")
    if args.write_fixture:
        os.makedirs(os.path.dirname(FIXTURE), exist_ok=True)
        fixture = dict(
            model="Models/tiny-sd", unet_sha256=unet_sha256(args.model),
            unet_bytes=os.path.getsize(os.path.join(args.model, "unet", "diffusion_pytorch_model.safetensors")),
            steps=args.steps, guidance=args.guidance,
            width=64, height=64, distance=DISTANCE, min_pixels=MIN_PIXELS,
            palette={k: list(v) for k, v in shapes.COLOURS.items()},
            regions={k: list(v) for k, v in shapes.POSITIONS.items()},
            diffusers_agreement=rate, threshold=max(0, ok - args.slack) / len(prompts),
            prompts=[dict(prompt=p["prompt"], seed=p["seed"], colour=p["colour"], background=p["background"],
                          position=p["position"]) for p in prompts])
        with open(FIXTURE, "w") as f:
            json.dump(fixture, f, indent=1)
        print(f"wrote {FIXTURE} (threshold {fixture['threshold']:.2f})")
        # the settings measured here become what `lean-diffusion generate` uses on this model without options
        defaults = os.path.join(args.model, "lean_diffusion.json")
        with open(defaults, "w") as f:
            json.dump({"guidance_scale": args.guidance, "num_inference_steps": args.steps}, f, indent=1)
        print(f"wrote {defaults}")


if __name__ == "__main__":
    main()
