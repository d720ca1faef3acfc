#!/usr/bin/env python3
"""Build tiny Stable Diffusion pipelines with random weights + reference outputs.

Re-runnable and deterministic (fixed torch seeds everywhere).  Writes:

  Tests/LeanDiffusionTests/Fixtures/pipelines/sd1-tiny/     SD 1.x style (epsilon, PNDM)
  Tests/LeanDiffusionTests/Fixtures/pipelines/sd2-tiny-v/   SD 2.x style (v-prediction, DDIM)
      <diffusers layout>  model_index.json, unet/, vae/, text_encoder/, tokenizer/, scheduler/
      reference/components.safetensors  per-component reference tensors (float32)
      reference/<case>.safetensors      end-to-end image ("image", N x 64 x 64 x 3, float in [0,1])
      reference/<case>.png              the PNG(s) diffusers produces with output_type="pil"
      reference/cases.json              every end-to-end case with all its parameters
  Tests/LeanDiffusionTests/Fixtures/pipelines/README.md
  Models/tiny-sd/                       copy of sd1-tiny (fp32 weights only, no reference/)

Usage:  python3 tools/make_tiny_pipelines.py [--only sd1-tiny|sd2-tiny-v]
        python3 tools/make_tiny_pipelines.py --cases-only   # only the few-step cases, on the committed sd1-tiny

Requires torch, diffusers (0.42), transformers (5.x), safetensors.  CPU only.
"""

import argparse
import copy
import json
import os
import shutil
import sys
import time

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from diffusers import (
    AutoencoderKL,
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    LCMScheduler,
    PNDMScheduler,
    StableDiffusionPipeline,
    UNet2DConditionModel,
    UniPCMultistepScheduler,
)
from diffusers.utils.torch_utils import randn_tensor
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from random_weights import reinit_  # noqa: E402

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
FIXTURES = os.path.join(REPO, "Tests", "LeanDiffusionTests", "Fixtures", "pipelines")
TOKENIZER_SRC = os.path.join(REPO, "Models", "clip-tokenizer")
TINY_SD = os.path.join(REPO, "Models", "tiny-sd")
TOKENIZER_FILES = ["merges.txt", "special_tokens_map.json", "tokenizer_config.json", "vocab.json"]

PROMPT = "a red circle on a blue background"
NEGATIVE = "blurry"
SEED = 42
STEPS = 8
GUIDANCE = 7.5
WIDTH = HEIGHT = 64

SCHEDULERS = [
    ("pndm", PNDMScheduler),
    ("ddim", DDIMScheduler),
    ("euler", EulerDiscreteScheduler),
    ("euler-a", EulerAncestralDiscreteScheduler),
    ("dpm++2m", DPMSolverMultistepScheduler),
    ("unipc", UniPCMultistepScheduler),
]

# Real runwayml/stable-diffusion-v1-5 scheduler/scheduler_config.json, verbatim.  Note it has
# no "timestep_spacing"/"prediction_type": Cls.from_config() then uses each class's own default
# (e.g. Euler/DPM/UniPC -> "linspace", DDIM/PNDM -> "leading").  "clip_sample" is not a PNDM
# argument but diffusers keeps it in the config, so DDIM.from_config() picks it up.
SD1_SCHEDULER_CONFIG = {
    "_class_name": "PNDMScheduler",
    "_diffusers_version": "0.6.0",
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "num_train_timesteps": 1000,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "trained_betas": None,
    "clip_sample": False,
}

# stabilityai/stable-diffusion-2 scheduler config, plus an explicit timestep_spacing "leading"
# (so here every from_config() scheduler gets "leading").  "skip_prk_steps" is not a DDIM
# argument but is kept, so PNDM.from_config() gets skip_prk_steps=True.
SD2_SCHEDULER_CONFIG = {
    "_class_name": "DDIMScheduler",
    "_diffusers_version": "0.8.0",
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "clip_sample": False,
    "num_train_timesteps": 1000,
    "prediction_type": "v_prediction",
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "timestep_spacing": "leading",
    "trained_betas": None,
}


def log(*a):
    print(*a, flush=True)


# --------------------------------------------------------------------------------------------
# model construction


def count_zero_params(model):
    return [n for n, p in model.named_parameters() if p.detach().abs().max() == 0]


def make_unet(kind):
    common = dict(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32,
        norm_num_groups=32,
    )
    if kind == "sd1":
        return UNet2DConditionModel(**common, attention_head_dim=8, use_linear_projection=False)
    return UNet2DConditionModel(
        **common, attention_head_dim=(2, 4), use_linear_projection=True, upcast_attention=True
    )


def make_vae():
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        # 4 blocks -> 3 downsamples -> latent = image / 8 as in real SD (with the 2-block
        # (32, 64) of diffusers' own tests the factor would be 2: 64x64 images <-> 32x32 latents)
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        # channel change 32->64 (encoder) / 64->32 (decoder) exercises the resnet conv_shortcut;
        # mid block at the widest width like SD's (128, 256, 512, 512).  Kept narrow for size.
        block_out_channels=(32, 32, 32, 64),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=32,
        sample_size=64,
        scaling_factor=0.18215,
    )


def make_text_encoder(kind):
    cfg = CLIPTextConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        vocab_size=49408,
        max_position_embeddings=77,
        hidden_act="quick_gelu" if kind == "sd1" else "gelu",
        projection_dim=32,
        # mirror the real SD1.5 / SD2 text_encoder configs (legacy ids; the EOS used for
        # pooling is then found by argmax(input_ids), which is irrelevant for SD)
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
    )
    return CLIPTextModel(cfg)


def write_tokenizer(dst, kind):
    if os.path.isdir(dst):
        shutil.rmtree(dst)
    os.makedirs(dst)
    for f in TOKENIZER_FILES:
        shutil.copyfile(os.path.join(TOKENIZER_SRC, f), os.path.join(dst, f))
    if kind == "sd2":
        # SD 2.x tokenizer pads with "!" (id 0) instead of <|endoftext|> (id 49407)
        for f in ("tokenizer_config.json", "special_tokens_map.json"):
            path = os.path.join(dst, f)
            with open(path) as fh:
                d = json.load(fh)
            d["pad_token"] = "!"
            with open(path, "w") as fh:
                json.dump(d, fh, indent=2)
                fh.write("\n")


def add_text_model_prefix(path):
    sd = load_file(path)
    assert not any(k.startswith("text_model.") for k in sd), "already prefixed"
    save_file({"text_model." + k: v for k, v in sd.items()}, path, metadata={"format": "pt"})


def save_fp16_variant(model, component_dir, weights_name):
    """save a float16 copy as <weights_name> (e.g. diffusion_pytorch_model.fp16.safetensors)
    without touching config.json (transformers would rewrite dtype in it)."""
    tmp = component_dir + ".fp16tmp"
    if os.path.isdir(tmp):
        shutil.rmtree(tmp)
    m = copy.deepcopy(model).to(torch.float16)
    m.save_pretrained(tmp, safe_serialization=True, variant="fp16")
    src = os.path.join(tmp, weights_name)
    assert os.path.exists(src), os.listdir(tmp)
    shutil.move(src, os.path.join(component_dir, weights_name))
    shutil.rmtree(tmp)


# --------------------------------------------------------------------------------------------
# checks


def check_all_params_contribute(name, params, loss):
    grads = torch.autograd.grad(loss, [p for _, p in params], allow_unused=True)
    dead = [n for (n, _), gr in zip(params, grads) if gr is None or gr.abs().max() == 0]
    if dead:
        raise RuntimeError(f"{name}: parameters without gradient: {dead}")
    log(f"  {name}: all {len(params)} parameter tensors receive gradient")


def contribution_checks(unet, vae, te, tokenizer):
    g = torch.Generator("cpu").manual_seed(7)
    x = torch.randn(2, 4, 8, 8, generator=g)
    ehs = torch.randn(2, 77, 32, generator=g)
    out = unet(x, torch.tensor([981.0]), encoder_hidden_states=ehs).sample
    w = torch.randn(out.shape, generator=g)
    check_all_params_contribute("unet", list(unet.named_parameters()), (out * w).sum())

    lat = torch.randn(1, 4, 8, 8, generator=g)
    dec = vae.decode(lat).sample
    dec_params = [(n, p) for n, p in vae.named_parameters() if n.startswith(("decoder.", "post_quant_conv."))]
    check_all_params_contribute("vae.decode", dec_params, (dec * torch.randn(dec.shape, generator=g)).sum())
    img = torch.rand(1, 3, 64, 64, generator=g) * 2 - 1
    dist = vae.encode(img).latent_dist
    enc_params = [(n, p) for n, p in vae.named_parameters() if n.startswith(("encoder.", "quant_conv."))]
    loss = (dist.mean * torch.randn(dist.mean.shape, generator=g)).sum() + (
        dist.logvar * torch.randn(dist.logvar.shape, generator=g)
    ).sum()
    check_all_params_contribute("vae.encode", enc_params, loss)

    ids = tokenizer(PROMPT, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
    # every vocab row can't get a gradient from one prompt; check all but the token table
    h = te(ids).last_hidden_state
    params = [(n, p) for n, p in te.named_parameters() if "token_embedding" not in n]
    check_all_params_contribute("text_encoder", params, (h * torch.randn(h.shape, generator=g)).sum())


# --------------------------------------------------------------------------------------------
# references


@torch.no_grad()
def component_references(pipe, kind):
    unet, vae, te, tok = pipe.unet, pipe.vae, pipe.text_encoder, pipe.tokenizer
    ref = {}
    ids = tok(PROMPT, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
    ref["text.input_ids"] = ids.float()
    ref["text.last_hidden_state"] = te(ids).last_hidden_state

    g = torch.Generator("cpu").manual_seed(1234)
    ref["unet.sample"] = torch.randn(2, 4, 8, 8, generator=g)
    ref["unet.timestep"] = torch.tensor([981.0])
    ref["unet.encoder_hidden_states"] = torch.randn(2, 77, 32, generator=g)
    ref["unet.out"] = unet(ref["unet.sample"], ref["unet.timestep"], encoder_hidden_states=ref["unet.encoder_hidden_states"]).sample

    ref["unet2.sample"] = torch.randn(1, 4, 8, 16, generator=g)
    ref["unet2.timestep"] = torch.tensor([500.0])
    ref["unet2.encoder_hidden_states"] = torch.randn(1, 77, 32, generator=g)
    ref["unet2.out"] = unet(ref["unet2.sample"], ref["unet2.timestep"], encoder_hidden_states=ref["unet2.encoder_hidden_states"]).sample

    ref["vae.latents"] = torch.randn(1, 4, 8, 8, generator=g)
    ref["vae.decoded"] = vae.decode(ref["vae.latents"]).sample
    ref["vae.image"] = torch.rand(1, 3, 64, 64, generator=g) * 2 - 1
    dist = vae.encode(ref["vae.image"]).latent_dist
    ref["vae.encoded_mean"] = dist.mean
    ref["vae.encoded_logvar"] = dist.logvar

    # what the pipeline feeds the UNet for the default seed-42 case
    f = pipe.vae_scale_factor
    assert f == 8, f
    shape = (1, 4, HEIGHT // f, WIDTH // f)
    ref["e2e.initial_latents"] = randn_tensor(shape, generator=torch.Generator("cpu").manual_seed(SEED), dtype=torch.float32)
    ref["e2e.initial_latents_batch"] = randn_tensor((4,) + shape[1:], generator=torch.Generator("cpu").manual_seed(SEED), dtype=torch.float32)
    pe, ne = pipe.encode_prompt(PROMPT, "cpu", 1, True, NEGATIVE)
    ref["e2e.prompt_embeds"] = pe
    ref["e2e.negative_prompt_embeds"] = ne

    for k in ("unet.out", "unet2.out", "vae.decoded", "vae.encoded_mean", "text.last_hidden_state"):
        s = ref[k].std().item()
        log(f"  {k}: shape {tuple(ref[k].shape)} std {s:.4f} mean {ref[k].mean().item():+.4f}")
        if s <= 0.1:
            raise RuntimeError(f"{k} std {s} <= 0.1")
    return {k: v.detach().float().contiguous() for k, v in ref.items()}


def run_case(pipe, sched_cls, case, refdir, capture):
    # diffusers' Cls.from_config(config, **overrides), e.g. timestep_spacing="trailing" for SD-Turbo style sampling
    pipe.scheduler = sched_cls.from_config(pipe.scheduler_base_config, **case.get("scheduler_overrides", {}))
    kw = dict(
        prompt=case["prompt"],
        negative_prompt=case["negative_prompt"],
        num_inference_steps=case["steps"],
        guidance_scale=case["guidance_scale"],
        width=case["width"],
        height=case["height"],
        num_images_per_prompt=case["num_images_per_prompt"],
    )
    captured = {}
    orig = pipe.prepare_latents

    def hook(*a, **k):
        lat = orig(*a, **k)
        captured["latents"] = lat.clone()
        return lat

    pipe.prepare_latents = hook
    try:
        out_np = pipe(**kw, generator=torch.Generator("cpu").manual_seed(case["seed"]), output_type="np").images
        timesteps = [float(t) for t in pipe.scheduler.timesteps]
        out_pil = pipe(**kw, generator=torch.Generator("cpu").manual_seed(case["seed"]), output_type="pil").images
    finally:
        pipe.prepare_latents = orig
    img = torch.from_numpy(np.ascontiguousarray(out_np)).float()
    assert tuple(img.shape) == (case["num_images"], HEIGHT, WIDTH, 3), img.shape
    save_file({"image": img.contiguous()}, os.path.join(refdir, case["image_file"]))
    assert len(out_pil) == len(case["png_files"])
    for im, fn in zip(out_pil, case["png_files"]):
        im.save(os.path.join(refdir, fn))
        # the np and pil runs must agree (same generator, deterministic)
        assert np.array_equal(np.asarray(im), (out_np[case["png_files"].index(fn)] * 255).round().astype(np.uint8))
    cfg = {k: v for k, v in dict(pipe.scheduler.config).items() if not k.startswith("_")}
    case["scheduler_class"] = type(pipe.scheduler).__name__
    case["scheduler_config"] = json.loads(json.dumps(cfg))
    case["init_noise_sigma"] = float(pipe.scheduler.init_noise_sigma)
    case["timesteps"] = timesteps
    sat = float(((img <= 0) | (img >= 1)).float().mean())
    case["stats"] = {"mean": float(img.mean()), "std": float(img.std()), "saturated_fraction": sat}
    log(f"  {case['name']:10s} {case['scheduler_class']:34s} mean {img.mean():.4f} std {img.std():.4f} sat {sat:.3f} t={timesteps}")
    capture[case["name"]] = captured["latents"]


def e2e_cases():
    cases = []
    for name, cls in SCHEDULERS:
        cases.append(dict(name=name, scheduler=name, prompt=PROMPT, negative_prompt=NEGATIVE, steps=STEPS,
                          guidance_scale=GUIDANCE, seed=SEED, width=WIDTH, height=HEIGHT,
                          num_images_per_prompt=1, num_images=1,
                          image_file=f"{name}.safetensors", png_files=[f"{name}.png"]))
    cases.append(dict(name="pndm-nocfg", scheduler="pndm", prompt=PROMPT, negative_prompt=None, steps=STEPS,
                      guidance_scale=1.0, seed=SEED, width=WIDTH, height=HEIGHT,
                      num_images_per_prompt=1, num_images=1,
                      image_file="pndm-nocfg.safetensors", png_files=["pndm-nocfg.png"]))
    cases.append(dict(name="pndm-batch", scheduler="pndm", prompt=["a red circle", "two green squares"],
                      negative_prompt=[NEGATIVE, NEGATIVE], steps=STEPS, guidance_scale=GUIDANCE, seed=SEED,
                      width=WIDTH, height=HEIGHT, num_images_per_prompt=2, num_images=4,
                      image_file="pndm-batch.safetensors",
                      png_files=[f"pndm-batch-{i}.png" for i in range(4)],
                      image_order="prompt-major: [p0 img0, p0 img1, p1 img0, p1 img1]; initial latents are one randn((4,4,8,8)) draw"))
    return cases


def few_step_cases():
    """sd1-tiny only: LCM as it is used (4 steps, guidance off, and with CFG since StableDiffusionPipeline just
    does CFG) and an SD-Turbo style configuration (Euler ancestral, trailing spacing, guidance off, 1 and 4 steps)."""
    def case(name, scheduler, steps, guidance, negative, overrides=None):
        c = dict(name=name, scheduler=scheduler, prompt=PROMPT, negative_prompt=negative, steps=steps,
                 guidance_scale=guidance, seed=SEED, width=WIDTH, height=HEIGHT, num_images_per_prompt=1,
                 num_images=1, image_file=f"{name}.safetensors", png_files=[f"{name}.png"])
        if overrides:
            c["scheduler_overrides"] = overrides
        return c
    return [
        case("lcm-4", "lcm", 4, 1.0, None),
        case("lcm-4-cfg", "lcm", 4, 2.0, NEGATIVE),
        case("turbo-euler-a-1", "euler-a", 1, 0.0, None, {"timestep_spacing": "trailing"}),
        case("turbo-euler-a-4", "euler-a", 4, 0.0, None, {"timestep_spacing": "trailing"}),
    ]


BYNAME = {**dict(SCHEDULERS), "lcm": LCMScheduler}


def add_cases(name):
    """--cases-only: run the few-step cases on the committed pipeline (weights untouched) and merge them into its
    reference/cases.json, replacing cases of the same name."""
    out = os.path.join(FIXTURES, name)
    refdir = os.path.join(out, "reference")
    pipe = StableDiffusionPipeline.from_pretrained(out, torch_dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    pipe.scheduler_base_config = pipe.scheduler.config
    with open(os.path.join(refdir, "cases.json")) as fh:
        meta = json.load(fh)
    captured = {}
    for case in few_step_cases():
        run_case(pipe, BYNAME[case["scheduler"]], case, refdir, captured)
        meta["cases"] = [c for c in meta["cases"] if c["name"] != case["name"]] + [case]
    with open(os.path.join(refdir, "cases.json"), "w") as fh:
        json.dump(meta, fh, indent=2)
        fh.write("\n")


# --------------------------------------------------------------------------------------------


def build(name, kind):
    t0 = time.time()
    out = os.path.join(FIXTURES, name)
    log(f"== {name} -> {out}")
    if os.path.isdir(out):
        shutil.rmtree(out)

    torch.manual_seed(0)
    unet = make_unet(kind)
    torch.manual_seed(1)
    vae = make_vae()
    torch.manual_seed(2)
    te = make_text_encoder(kind)
    for n, m in (("unet", unet), ("vae", vae), ("text_encoder", te)):
        z = count_zero_params(m)
        if z:
            log(f"  {n}: {len(z)} all-zero parameter tensors after default init, e.g. {z[:4]}")
    seed_base = {"sd1": 100, "sd2": 200}[kind]
    reinit_(unet, seed_base + 0)
    reinit_(vae, seed_base + 1)
    reinit_(te, seed_base + 2)
    for m in (unet, vae, te):
        m.eval()
        assert not count_zero_params(m)

    tokenizer = CLIPTokenizer.from_pretrained(TOKENIZER_SRC, pad_token="!" if kind == "sd2" else "<|endoftext|>")
    contribution_checks(unet, vae, te, tokenizer)

    cfg = SD1_SCHEDULER_CONFIG if kind == "sd1" else SD2_SCHEDULER_CONFIG
    sched_cls = PNDMScheduler if kind == "sd1" else DDIMScheduler
    scheduler = sched_cls.from_config(cfg)
    pipe = StableDiffusionPipeline(
        vae=vae, text_encoder=te, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    pipe.save_pretrained(out, safe_serialization=True)

    # scheduler: write the checkpoint-style config verbatim (see comments on the dicts)
    with open(os.path.join(out, "scheduler", "scheduler_config.json"), "w") as fh:
        json.dump(cfg, fh, indent=2)
        fh.write("\n")
    # tokenizer: transformers 5 saves tokenizer.json only; use the classic 4-file layout
    write_tokenizer(os.path.join(out, "tokenizer"), kind)
    # text encoder: transformers 5 saves keys without "text_model."; real SD1.x checkpoints have it
    te_file = os.path.join(out, "text_encoder", "model.safetensors")
    if kind == "sd1":
        add_text_model_prefix(te_file)
    keys = list(load_file(te_file).keys())
    te_prefixed = all(k.startswith("text_model.") for k in keys)
    assert te_prefixed == (kind == "sd1"), keys[:3]
    if kind == "sd1":
        save_fp16_variant(unet, os.path.join(out, "unet"), "diffusion_pytorch_model.fp16.safetensors")
        save_fp16_variant(vae, os.path.join(out, "vae"), "diffusion_pytorch_model.fp16.safetensors")
        save_fp16_variant(te, os.path.join(out, "text_encoder"), "model.fp16.safetensors")
        add_text_model_prefix(os.path.join(out, "text_encoder", "model.fp16.safetensors"))

    # reload from disk: references come from exactly what was written
    loaded = StableDiffusionPipeline.from_pretrained(out, torch_dtype=torch.float32)
    loaded.set_progress_bar_config(disable=True)
    for n, a, b in (("unet", unet, loaded.unet), ("vae", vae, loaded.vae), ("text_encoder", te, loaded.text_encoder)):
        pa, pb = dict(a.named_parameters()), dict(b.named_parameters())
        assert pa.keys() == pb.keys(), n
        for k in pa:
            assert torch.equal(pa[k], pb[k]), f"{n}.{k} differs after reload"
    assert type(loaded.scheduler) is sched_cls
    assert loaded.tokenizer.pad_token == ("!" if kind == "sd2" else "<|endoftext|>")
    if kind == "sd1":
        half = StableDiffusionPipeline.from_pretrained(out, variant="fp16", torch_dtype=torch.float16)
        for n, a, b in (("unet", unet, half.unet), ("vae", vae, half.vae), ("text_encoder", te, half.text_encoder)):
            pa, pb = dict(a.named_parameters()), dict(b.named_parameters())
            for k in pa:
                assert torch.equal(pa[k].half(), pb[k]), f"fp16 {n}.{k} differs"
        del half
    log("  reload (fp32" + (" + fp16 variant" if kind == "sd1" else "") + ") matches")

    refdir = os.path.join(out, "reference")
    os.makedirs(refdir)
    comps = component_references(loaded, kind)

    loaded.scheduler_base_config = loaded.scheduler.config
    cases = e2e_cases() + (few_step_cases() if kind == "sd1" else [])
    captured = {}
    for case in cases:
        run_case(loaded, BYNAME[case["scheduler"]], case, refdir, captured)
    loaded.scheduler = sched_cls.from_config(loaded.scheduler_base_config)
    # prepare_latents returns randn * init_noise_sigma; PNDM's sigma is 1, so it is the raw draw
    assert torch.equal(captured["pndm"], comps["e2e.initial_latents"])
    assert torch.equal(captured["pndm-batch"], comps["e2e.initial_latents_batch"])
    save_file(comps, os.path.join(refdir, "components.safetensors"), metadata={"format": "pt"})

    meta = {
        "pipeline": name,
        "generated_by": "tools/make_tiny_pipelines.py",
        "versions": {"torch": torch.__version__, "diffusers": __import__("diffusers").__version__,
                     "transformers": __import__("transformers").__version__},
        "text_encoder_keys": "text_model.-prefixed" if te_prefixed else "unprefixed (transformers 5 style)",
        "prediction_type": loaded.scheduler.config.prediction_type,
        "notes": [
            "image tensors are output_type='np' (float32, [0,1], NHWC); PNGs are output_type='pil' of the same run",
            "initial latents: randn_tensor(shape, generator=torch.Generator('cpu').manual_seed(seed)) * "
            "scheduler.init_noise_sigma; raw draws are e2e.initial_latents / e2e.initial_latents_batch in components.safetensors",
            "guidance_scale 1.0 disables classifier-free guidance (negative prompt unused)",
            "euler-a draws its per-step noise from the same generator after the initial latents",
        ],
        "components": {k: list(v.shape) for k, v in comps.items()},
        "cases": cases,
    }
    with open(os.path.join(refdir, "cases.json"), "w") as fh:
        json.dump(meta, fh, indent=2)
        fh.write("\n")
    log(f"  {name} done in {time.time() - t0:.1f}s")
    return out


README = """# Tiny Stable Diffusion pipelines (random weights)

Generated by `tools/make_tiny_pipelines.py` (deterministic; re-run to regenerate).  Weights are
random (every parameter re-initialised with scaled Gaussian noise so no layer is zero), so the
images are meaningless; they exist to compare LeanDiffusion against diffusers numerically.

| pipeline | style | text encoder keys | unet | text act | tokenizer pad | scheduler (model_index) | prediction |
|---|---|---|---|---|---|---|---|
| `sd1-tiny` | SD 1.x | **`text_model.`-prefixed** (like real SD1.x checkpoints), fp32 + `fp16` variant files | attention_head_dim 8, conv proj_in/out | quick_gelu | `<\\|endoftext\\|>` (49407) | PNDM (real SD1.5 scheduler_config.json, no timestep_spacing) | epsilon |
| `sd2-tiny-v` | SD 2.x | **unprefixed** (what transformers 5 `save_pretrained` writes), fp32 only | attention_head_dim (2, 4), linear proj, upcast_attention | gelu | `!` (0) | DDIM, timestep_spacing leading | v_prediction |

Sizes: UNet block_out_channels (32, 64), 1 layer per block, cross_attention_dim 32, sample_size 8;
VAE block_out_channels (32, 32, 32, 64) (4 blocks -> latent = image/8 as in real SD), 1 layer per block, latent 4, scaling 0.18215, 64x64 images;
CLIP text: hidden 32, 2 layers, 4 heads, intermediate 37, vocab 49408, 77 positions.

`<name>/reference/`:
- `components.safetensors` (float32): `text.input_ids` (1,77, ids as float), `text.last_hidden_state` (1,77,32);
  `unet.sample` (2,4,8,8), `unet.timestep` [981], `unet.encoder_hidden_states` (2,77,32), `unet.out`;
  `unet2.sample` (1,4,8,16), `unet2.timestep` [500], `unet2.encoder_hidden_states` (1,77,32), `unet2.out`;
  `vae.latents` (1,4,8,8), `vae.decoded` (1,3,64,64), `vae.image` (1,3,64,64 in [-1,1]),
  `vae.encoded_mean`, `vae.encoded_logvar` (1,4,8,8);
  `e2e.initial_latents` (1,4,8,8) and `e2e.initial_latents_batch` (4,4,8,8): raw randn draws of
  `torch.Generator("cpu").manual_seed(42)`; `e2e.prompt_embeds` / `e2e.negative_prompt_embeds` (1,77,32)
  for the prompt "a red circle on a blue background" / "blurry".
- `<case>.safetensors` (tensor `image`, (N,64,64,3) float in [0,1]) and `<case>.png` for cases
  pndm, ddim, euler, euler-a, dpm++2m, unipc, pndm-nocfg; `pndm-batch` has `pndm-batch-0..3.png`;
  sd1-tiny also has the few-step cases lcm-4 (LCM, 4 steps, guidance 1), lcm-4-cfg (guidance 2) and
  turbo-euler-a-1 / -4 (Euler ancestral with `timestep_spacing="trailing"`, guidance 0: SD-Turbo style;
  `scheduler_overrides` in cases.json are passed to `from_config`).  `--cases-only` reruns just these on the
  committed weights.
- `cases.json`: every case's parameters, the effective scheduler config and the timesteps used.

Scheduler configs: each case's scheduler is `Cls.from_config(pipe.scheduler.config)`.  In
`sd1-tiny` the config has no `timestep_spacing` (as in the real SD1.5 repo), so Euler, Euler-a,
DPM++ and UniPC fall back to their own default (`linspace`) while PNDM/DDIM use `leading`; in
`sd2-tiny-v` it is explicitly `leading` for all.  See `cases.json` for the exact values.
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", choices=["sd1-tiny", "sd2-tiny-v"])
    ap.add_argument("--cases-only", action="store_true",
                    help="keep the committed sd1-tiny weights; (re)run only the few-step (LCM, SD-Turbo style) cases")
    args = ap.parse_args()
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    torch.use_deterministic_algorithms(True)
    if args.cases_only:
        add_cases("sd1-tiny")
        return
    t0 = time.time()
    os.makedirs(FIXTURES, exist_ok=True)
    with open(os.path.join(FIXTURES, "README.md"), "w") as fh:
        fh.write(README)
    todo = [("sd1-tiny", "sd1"), ("sd2-tiny-v", "sd2")]
    if args.only:
        todo = [t for t in todo if t[0] == args.only]
    for name, kind in todo:
        out = build(name, kind)
        if name == "sd1-tiny":
            if os.path.isdir(TINY_SD):
                shutil.rmtree(TINY_SD)
            shutil.copytree(out, TINY_SD, ignore=shutil.ignore_patterns("reference", "*.fp16.safetensors"))
            log(f"  copied to {TINY_SD}")

    def du(path):
        return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)

    total = du(FIXTURES)
    for name in sorted(os.listdir(FIXTURES)):
        p = os.path.join(FIXTURES, name)
        if os.path.isdir(p):
            log(f"size {name}: {du(p) / 1e6:.2f} MB")
    log(f"size Fixtures/pipelines total: {total / 1e6:.2f} MB" + ("" if total < 30e6 else "  (OVER 30 MB!)"))
    if os.path.isdir(TINY_SD):
        log(f"size Models/tiny-sd: {du(TINY_SD) / 1e6:.2f} MB")
    log(f"total time {time.time() - t0:.1f}s")


if __name__ == "__main__":
    main()
