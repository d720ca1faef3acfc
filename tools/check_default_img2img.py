#!/usr/bin/env python3
"""Checks that the embedded default model (Models/tiny-sd) recolours a picture by image-to-image, with diffusers.

The picture is a red circle on a blue background drawn by tools/shapes_dataset.py (the training data's renderer).
For each case diffusers' StableDiffusionImg2ImgPipeline runs on it with the model's defaults (lean_diffusion.json:
steps and guidance) for seeds --seed-base ..< --seed-base + --seeds, and each image is analysed as
tools/check_default_model.py analyses text-to-image results (border median = background, far-from-background
pixels = shape, both named by the nearest palette colour):

  recolour   "a blue circle on a red background" at strength 0.8: a blue shape on red is expected
  keep       the same prompt at strength 0.1 (2 of 20 steps): the red circle on blue, in the centre, is expected to
             stay (the picture outweighs the prompt at low strength; at 0.2 about half the seeds already change,
             at 0.3 most: the model is small)

A seed agrees when the shape colour, the background and (where the case names one) the position are the expected
ones.

    python3 tools/check_default_img2img.py                   # prints the agreement rates
    python3 tools/check_default_img2img.py --write-fixture   # + Tests/LeanDiffusionTests/Fixtures/default-model/
                                                             #   img2img.json and red-circle-on-blue.png

The fixture records the cases, diffusers' analysis per seed, its rate, and threshold = (agreeing seeds - --slack)
/ seeds, the rate DefaultModelTests' image-to-image test must reach with the same analysis.
"""
import argparse
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import shapes_dataset as shapes  # noqa: E402
from check_default_model import DISTANCE, MIN_PIXELS, analyse, unet_sha256  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(REPO, "Tests", "LeanDiffusionTests", "Fixtures", "default-model")
PROMPT = "a blue circle on a red background"
CASES = [
    dict(name="recolour", prompt=PROMPT, strength=0.8, colour="blue", background="red", position=None),
    dict(name="keep", prompt=PROMPT, strength=0.1, colour="red", background="blue", position="center"),
]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=os.path.join(REPO, "Models", "tiny-sd"))
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--seed-base", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--slack", type=int, default=2, help="seeds the Swift test may lose against diffusers")
    ap.add_argument("--write-fixture", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from diffusers import StableDiffusionImg2ImgPipeline

    with open(os.path.join(args.model, "lean_diffusion.json")) as fh:
        defaults = json.load(fh)
    steps, guidance = defaults["num_inference_steps"], defaults["guidance_scale"]
    pipe = StableDiffusionImg2ImgPipeline.from_pretrained(args.model, safety_checker=None,
                                                          requires_safety_checker=False, dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    init = shapes.render("red", "circle", "blue", [(32, 32)], 11)
    picture = os.path.join(FIXTURES, "red-circle-on-blue.png")
    if args.write_fixture:
        init.save(picture)
    if os.path.exists(picture):
        # What the Swift test reads is the PNG: run from its pixels (PNG is lossless; this only guards a stale file).
        from PIL import Image
        init = Image.open(picture).convert("RGB")
    print("picture:", analyse(np.asarray(init)))
    results = []
    for case in CASES:
        ok, per_seed = 0, []
        for seed in range(args.seed_base, args.seed_base + args.seeds):
            img = pipe(case["prompt"], image=init, strength=case["strength"], num_inference_steps=steps,
                       guidance_scale=guidance, generator=torch.Generator("cpu").manual_seed(seed),
                       output_type="np").images[0]
            got = analyse((img * 255).round().clip(0, 255).astype(np.uint8))
            good = (got["colour"] == case["colour"] and got["background"] == case["background"]
                    and (case["position"] is None or got["position"] == case["position"]))
            ok += good
            per_seed.append(dict(seed=seed, colour=got["colour"], background=got["background"],
                                 position=got["position"], pixels=got["pixels"]))
        rate = ok / args.seeds
        print(f"{case['name']}: {case['prompt']!r} at strength {case['strength']}: {ok}/{args.seeds} = {rate:.2f} "
              f"{case['colour']} on {case['background']} (diffusers, {steps} steps, guidance {guidance})")
        results.append(dict(case, diffusers_agreement=rate, threshold=max(0, ok - args.slack) / args.seeds,
                            diffusers=per_seed))
    if args.write_fixture:
        fixture = dict(
            generated_by="tools/check_default_img2img.py", model="Models/tiny-sd", unet_sha256=unet_sha256(args.model),
            unet_bytes=os.path.getsize(os.path.join(args.model, "unet", "diffusion_pytorch_model.safetensors")),
            picture="red-circle-on-blue.png", steps=steps, guidance=guidance, distance=DISTANCE,
            min_pixels=MIN_PIXELS, palette={k: list(v) for k, v in shapes.COLOURS.items()},
            regions={k: list(v) for k, v in shapes.POSITIONS.items()}, seeds=list(range(args.seed_base, args.seed_base + args.seeds)), cases=results)
        path = os.path.join(FIXTURES, "img2img.json")
        with open(path, "w") as fh:
            json.dump(fixture, fh, indent=1)
            fh.write("\n")
        print(f"wrote {path} and {picture}")


if __name__ == "__main__":
    main()
