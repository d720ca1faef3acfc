#!/usr/bin/env python3
"""Image-to-image and inpainting references from diffusers, on the committed tiny pipelines.

Deterministic and re-runnable.  Writes Tests/LeanDiffusionTests/Fixtures/img2img/:

  init.png, mask.png            the 64x64 input picture (a red disc on a blue ground with a texture) and the mask
                                (white = repaint: a rectangle over part of the disc and the ground)
  init-70x54.png                a picture whose sides are not multiples of 8 (diffusers resizes it to 64x48 with
                                PIL's Lanczos before encoding)
  sd1-tiny-inpaint/unet/        a 9-channel inpainting UNet (sd1-tiny's shape, in_channels 9, random weights); the
                                other components are symlinks to ../../pipelines/sd1-tiny, as the inpainting
                                checkpoints share SD 1.5's text encoder and VAE
  sd1-tiny-inpaint/model_index.json ...
  reference/<case>.png          diffusers' output_type="pil" images
  reference/cases.json          every case with its parameters

Images are read exactly as diffusers.utils.load_image reads them (PIL, exif_transpose, convert("RGB")).
Cases: StableDiffusionImg2ImgPipeline on sd1-tiny with every scheduler at strength 0.75, strengths 0.3 and 1.0
with DDIM and Euler, a batch (2 prompts x 2 images), a v-prediction pipeline (sd2-tiny-v), guidance off, the
70x54 picture, and VAE slicing + tiling (32-pixel tiles: diffusers' tiled encode and decode); StableDiffusionInpaintPipeline with sd1-tiny's 4-channel UNet (diffusers' blending of the known
region at every step) and the 9-channel UNet, at strengths 1.0 and 0.7, with and without guidance, a batch, and
VAE tiling.

Usage:  python3 tools/make_img2img_fixtures.py
Requires torch, diffusers (0.42), transformers (5.x), safetensors, pillow.  CPU only.
"""

import json
import os
import shutil
import sys

import numpy as np
import torch
from PIL import Image, ImageDraw

from diffusers import (
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    LCMScheduler,
    PNDMScheduler,
    StableDiffusionImg2ImgPipeline,
    StableDiffusionInpaintPipeline,
    UNet2DConditionModel,
    UniPCMultistepScheduler,
)
from diffusers.utils import load_image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from random_weights import reinit_  # noqa: E402

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
PIPELINES = os.path.join(REPO, "Tests", "LeanDiffusionTests", "Fixtures", "pipelines")
OUT = os.path.join(REPO, "Tests", "LeanDiffusionTests", "Fixtures", "img2img")
REF = os.path.join(OUT, "reference")
INPAINT = os.path.join(OUT, "sd1-tiny-inpaint")

PROMPT = "a blue circle on a red background"
NEGATIVE = "blurry"
SEED = 42
STEPS = 8

TILED = {"slicing": True, "tiling": True, "tile_sample_min_size": 32}

SCHEDULERS = {
    "pndm": PNDMScheduler,
    "ddim": DDIMScheduler,
    "euler": EulerDiscreteScheduler,
    "euler-a": EulerAncestralDiscreteScheduler,
    "dpm++2m": DPMSolverMultistepScheduler,
    "unipc": UniPCMultistepScheduler,
    "lcm": LCMScheduler,
}


def log(*a):
    print(*a, flush=True)


def make_inputs():
    g = np.random.default_rng(5)
    yy, xx = np.mgrid[0:64, 0:64]
    base = np.zeros((64, 64, 3), np.float64)
    base[..., 2] = 190 + 40 * np.sin(xx / 5.0)  # blue ground with stripes
    base[..., 1] = 40 + 20 * np.cos(yy / 7.0)
    disc = (xx - 30) ** 2 + (yy - 34) ** 2 < 17 ** 2
    base[disc] = [210, 40, 30]
    base += g.normal(0, 6, base.shape)
    init = Image.fromarray(np.clip(base, 0, 255).round().astype(np.uint8), "RGB")
    init.save(os.path.join(OUT, "init.png"))
    mask = Image.new("RGB", (64, 64), (0, 0, 0))
    ImageDraw.Draw(mask).rectangle([20, 8, 55, 40], fill=(255, 255, 255))
    mask.save(os.path.join(OUT, "mask.png"))
    wide = np.concatenate([base[:54], base[:54, :6]], axis=1)  # 70 wide, 54 high
    Image.fromarray(np.clip(wide, 0, 255).round().astype(np.uint8), "RGB").save(os.path.join(OUT, "init-70x54.png"))


def make_inpaint_pipeline():
    if os.path.isdir(INPAINT):
        shutil.rmtree(INPAINT)
    os.makedirs(INPAINT)
    src = os.path.join(PIPELINES, "sd1-tiny")
    cfg = UNet2DConditionModel.load_config(os.path.join(src, "unet"))
    cfg = {k: v for k, v in cfg.items() if not k.startswith("_")}
    cfg["in_channels"] = 9
    torch.manual_seed(0)
    unet = UNet2DConditionModel(**cfg)
    reinit_(unet, 300)
    unet.eval()
    unet.save_pretrained(os.path.join(INPAINT, "unet"), safe_serialization=True)
    for c in ("text_encoder", "tokenizer", "vae", "scheduler"):
        os.symlink(os.path.join("..", "..", "pipelines", "sd1-tiny", c), os.path.join(INPAINT, c))
    with open(os.path.join(src, "model_index.json")) as fh:
        index = json.load(fh)
    with open(os.path.join(INPAINT, "model_index.json"), "w") as fh:
        json.dump(index, fh, indent=2)
        fh.write("\n")


def run(pipe_cls, folder, case, base_config):
    pipe = pipe_cls.from_pretrained(folder, torch_dtype=torch.float32, safety_checker=None,
                                    requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    pipe.scheduler = SCHEDULERS[case["scheduler"]].from_config(pipe.scheduler.config)
    if case.get("vae"):
        # VAE tiling with a 32-pixel tile (the 64x64 picture is encoded and decoded in 4x4... overlapping tiles) and
        # slicing, set as make_vae_tiling_fixtures.py sets them.
        v = case["vae"]
        pipe.vae.enable_slicing()
        pipe.vae.enable_tiling()
        pipe.vae.tile_sample_min_size = v["tile_sample_min_size"]
        pipe.vae.tile_latent_min_size = v["tile_sample_min_size"] // 8
    kw = dict(prompt=case["prompt"], negative_prompt=case["negative_prompt"], num_inference_steps=case["steps"],
              guidance_scale=case["guidance_scale"], num_images_per_prompt=case["num_images_per_prompt"],
              strength=case["strength"], image=load_image(os.path.join(OUT, case["image"])))
    if case.get("mask"):
        kw["mask_image"] = load_image(os.path.join(OUT, case["mask"]))
        kw["width"], kw["height"] = case["width"], case["height"]
    images = pipe(**kw, generator=torch.Generator("cpu").manual_seed(case["seed"]), output_type="pil").images
    again = pipe(**kw, generator=torch.Generator("cpu").manual_seed(case["seed"]), output_type="np").images
    for i, (im, arr) in enumerate(zip(images, again)):
        assert np.array_equal(np.asarray(im), (arr * 255).round().astype(np.uint8)), "pil/np runs differ"
        im.save(os.path.join(REF, case["png_files"][i]))
    case["scheduler_class"] = type(pipe.scheduler).__name__
    case["timesteps"] = [float(t) for t in pipe.scheduler.timesteps]
    case["size"] = list(images[0].size)
    a = np.stack([np.asarray(im) for im in images]).astype(np.float64) / 255
    case["stats"] = {"mean": float(a.mean()), "std": float(a.std())}
    log(f"  {case['name']:28s} {case['scheduler_class']:34s} {images[0].size} mean {a.mean():.3f} std {a.std():.3f}")


def case(name, pipeline, scheduler, strength, guidance=7.5, prompt=PROMPT, negative=NEGATIVE, n=1, image="init.png",
         mask=None, size=(64, 64), vae=None):
    prompts = prompt if isinstance(prompt, list) else [prompt]
    c = dict(name=name, pipeline=pipeline, scheduler=scheduler, strength=strength, prompt=prompt,
             negative_prompt=negative if guidance > 1 else None, steps=STEPS, guidance_scale=guidance, seed=SEED,
             num_images_per_prompt=n, image=image, mask=mask, width=size[0], height=size[1],
             png_files=[f"{name}-{i}.png" for i in range(len(prompts) * n)] if len(prompts) * n > 1 else [f"{name}.png"])
    if vae:
        c["vae"] = vae
    return c


def main():
    os.makedirs(OUT, exist_ok=True)
    if os.path.isdir(REF):
        shutil.rmtree(REF)
    os.makedirs(REF)
    make_inputs()
    make_inpaint_pipeline()
    sd1 = os.path.join(PIPELINES, "sd1-tiny")
    sd2 = os.path.join(PIPELINES, "sd2-tiny-v")
    img2img = [case(f"img2img-{s}-0.75", "sd1-tiny", s, 0.75) for s in SCHEDULERS]
    img2img += [case(f"img2img-{s}-{st}", "sd1-tiny", s, st) for s in ("ddim", "euler") for st in (0.3, 1.0)]
    img2img += [
        case("img2img-dpm++2m-batch", "sd1-tiny", "dpm++2m", 0.6, prompt=[PROMPT, "two green squares"],
             negative=[NEGATIVE, NEGATIVE], n=2),
        case("img2img-euler-a-nocfg", "sd1-tiny", "euler-a", 0.5, guidance=1.0),
        case("img2img-v-ddim-0.6", "sd2-tiny-v", "ddim", 0.6),
        case("img2img-pndm-70x54", "sd1-tiny", "pndm", 0.75, image="init-70x54.png", size=(64, 48)),
        case("img2img-ddim-tiled", "sd1-tiny", "ddim", 0.75, n=2, vae=TILED),
    ]
    inpaint = []
    for unet, folder in (("4ch", "sd1-tiny"), ("9ch", "sd1-tiny-inpaint")):
        for s in ("pndm", "euler-a"):
            for st in (1.0, 0.7):
                inpaint.append(case(f"inpaint-{unet}-{s}-{st}", folder, s, st, mask="mask.png"))
        inpaint.append(case(f"inpaint-{unet}-dpm++2m-nocfg", folder, "dpm++2m", 0.8, guidance=1.0, mask="mask.png"))
        inpaint.append(case(f"inpaint-{unet}-ddim-batch", folder, "ddim", 1.0, prompt=[PROMPT, "a green square"],
                            negative=[NEGATIVE, NEGATIVE], n=2, mask="mask.png"))
    inpaint.append(case("inpaint-9ch-euler-tiled", "sd1-tiny-inpaint", "euler", 0.7, mask="mask.png", vae=TILED))
    folders = {"sd1-tiny": sd1, "sd2-tiny-v": sd2, "sd1-tiny-inpaint": INPAINT}
    for c in img2img:
        run(StableDiffusionImg2ImgPipeline, folders[c["pipeline"]], c, None)
    for c in inpaint:
        run(StableDiffusionInpaintPipeline, folders[c["pipeline"]], c, None)
    meta = {
        "generated_by": "tools/make_img2img_fixtures.py",
        "versions": {"torch": torch.__version__, "diffusers": __import__("diffusers").__version__,
                     "transformers": __import__("transformers").__version__,
                     "pillow": Image.__version__ if hasattr(Image, "__version__") else __import__("PIL").__version__},
        "notes": [
            "pipelines: sd1-tiny and sd2-tiny-v are Fixtures/pipelines/<name>; sd1-tiny-inpaint is here",
            "img2img cases: StableDiffusionImg2ImgPipeline(image=load_image(image), strength=...); its size is the "
            "image's rounded down to a multiple of 8 (init-70x54.png becomes 64x48 by PIL Lanczos)",
            "inpaint cases: StableDiffusionInpaintPipeline(image, mask_image, width, height, strength)",
            "generator: torch.Generator('cpu').manual_seed(seed) passed to the pipeline",
        ],
        "cases": img2img + inpaint,
    }
    with open(os.path.join(REF, "cases.json"), "w") as fh:
        json.dump(meta, fh, indent=2)
        fh.write("\n")


if __name__ == "__main__":
    main()
