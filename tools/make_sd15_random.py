#!/usr/bin/env python3
"""Build an SD1.5-shaped StableDiffusionPipeline with random weights (for benchmarks).

Same shapes, compute and memory as runwayml/stable-diffusion-v1-5, built with diffusers' and transformers' own
constructors from the real SD1.5 configs (docs: /work/shared/reference/diffusers-spec.md sections 6/7, appendix A):

  unet          UNet2DConditionModel   686 tensors, 859,520,964 params
  vae           AutoencoderKL          248 tensors,  83,653,863 params
  text_encoder  CLIPTextModel (CLIP-L) 196 tensors, 123,060,480 params, keys WITH the "text_model." prefix
  tokenizer     the classic 4 files of Models/clip-tokenizer
  scheduler     SD1.5's PNDM config, verbatim

Weights are re-initialised (Linear/Conv ~ N(0, 1/fan_in), biases 0.1 N(0,1), norm weights 1 + 0.1 N(0,1), norm biases
0.1 N(0,1), embeddings 0.5 N(0,1); the same scheme as tools/make_tiny_pipelines.py) so activations stay finite.
Writes fp32 files plus fp16 variant files (*.fp16.safetensors).  The output is ~6.4 GB and is NOT committed.

Usage:  python3 tools/make_sd15_random.py [OUT_DIR]        (default /work/sd15-random)
        add --no-fp16 to skip the fp16 variant files, --seed N to change the weights
Takes ~1-2 minutes and ~8 GB of RAM on a 2-core machine.
"""

import argparse
import json
import os
import resource
import shutil
import sys
import time

import torch
from safetensors.torch import load_file, save_file

from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from random_weights import reinit_  # noqa: E402

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
TOKENIZER_SRC = os.path.join(REPO, "Models", "clip-tokenizer")
TOKENIZER_FILES = ["merges.txt", "special_tokens_map.json", "tokenizer_config.json", "vocab.json"]

EXPECTED_PARAMS = {"unet": 859_520_964, "vae": 83_653_863, "text_encoder": 123_060_480}
EXPECTED_TENSORS = {"unet": 686, "vae": 248, "text_encoder": 196}

# runwayml/stable-diffusion-v1-5 unet/config.json (values from diffusers-spec.md section 6)
UNET_CONFIG = dict(
    sample_size=64,
    in_channels=4,
    out_channels=4,
    center_input_sample=False,
    flip_sin_to_cos=True,
    freq_shift=0,
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    mid_block_type="UNetMidBlock2DCrossAttn",
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    only_cross_attention=False,
    block_out_channels=(320, 640, 1280, 1280),
    layers_per_block=2,
    downsample_padding=1,
    mid_block_scale_factor=1,
    act_fn="silu",
    norm_num_groups=32,
    norm_eps=1e-5,
    cross_attention_dim=768,
    transformer_layers_per_block=1,
    attention_head_dim=8,
    use_linear_projection=False,
    upcast_attention=False,
    time_embedding_type="positional",
)

# runwayml/stable-diffusion-v1-5 vae/config.json (section 1)
VAE_CONFIG = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    block_out_channels=(128, 256, 512, 512),
    layers_per_block=2,
    act_fn="silu",
    latent_channels=4,
    norm_num_groups=32,
    sample_size=512,
    scaling_factor=0.18215,
)

# openai/clip-vit-large-patch14 text tower as in SD1.5's text_encoder/config.json (section 7)
TEXT_CONFIG = dict(
    vocab_size=49408,
    hidden_size=768,
    intermediate_size=3072,
    projection_dim=768,
    num_hidden_layers=12,
    num_attention_heads=12,
    max_position_embeddings=77,
    hidden_act="quick_gelu",
    layer_norm_eps=1e-5,
    attention_dropout=0.0,
    initializer_range=0.02,
    initializer_factor=1.0,
    bos_token_id=0,
    eos_token_id=2,
    pad_token_id=1,
)

# runwayml/stable-diffusion-v1-5 scheduler/scheduler_config.json, verbatim
SD15_SCHEDULER_CONFIG = {
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

T0 = time.time()


def log(*a):
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"[{time.time() - T0:6.1f}s, peak RSS {rss:6.0f} MB]", *a, flush=True)


def half_state_dict(model):
    return {k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items()}


def prefixed(sd):
    """text encoder keys with the "text_model." prefix of real SD1.x checkpoints"""
    out = {k if k.startswith("text_model.") else "text_model." + k: v for k, v in sd.items()}
    assert len(out) == len(sd) and all(k.startswith("text_model.") for k in out), list(out)[:3]
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", nargs="?", default="/work/sd15-random")
    ap.add_argument("--seed", type=int, default=1500)
    ap.add_argument("--no-fp16", action="store_true", help="skip the fp16 variant files")
    args = ap.parse_args()
    out = os.path.abspath(args.out)
    torch.set_num_threads(max(1, os.cpu_count() or 1))

    torch.manual_seed(args.seed)
    unet = UNet2DConditionModel(**UNET_CONFIG)
    log("unet constructed")
    vae = AutoencoderKL(**VAE_CONFIG)
    te = CLIPTextModel(CLIPTextConfig(**TEXT_CONFIG))
    log("vae, text encoder constructed")
    models = {"unet": unet, "vae": vae, "text_encoder": te}
    for i, (name, m) in enumerate(models.items()):
        reinit_(m, args.seed + 1 + i)
        m.eval()
        n_params = sum(p.numel() for p in m.parameters())
        n_tensors = len(m.state_dict())
        assert n_params == EXPECTED_PARAMS[name], (name, n_params)
        assert n_tensors == EXPECTED_TENSORS[name], (name, n_tensors)
        log(f"{name}: {n_tensors} tensors, {n_params:,} params, re-initialised")

    tokenizer = CLIPTokenizer.from_pretrained(TOKENIZER_SRC)
    scheduler = PNDMScheduler.from_config(SD15_SCHEDULER_CONFIG)
    pipe = StableDiffusionPipeline(
        vae=vae, text_encoder=te, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    if os.path.isdir(out):
        shutil.rmtree(out)
    pipe.save_pretrained(out, safe_serialization=True)
    log(f"saved fp32 pipeline to {out}")

    # scheduler: the checkpoint's config verbatim (keys it lacks take each class's defaults on from_config)
    with open(os.path.join(out, "scheduler", "scheduler_config.json"), "w") as fh:
        json.dump(SD15_SCHEDULER_CONFIG, fh, indent=2)
        fh.write("\n")
    # tokenizer: transformers 5 writes tokenizer.json only; use the classic 4-file layout of the real checkpoint
    tok_dir = os.path.join(out, "tokenizer")
    shutil.rmtree(tok_dir)
    os.makedirs(tok_dir)
    for f in TOKENIZER_FILES:
        shutil.copyfile(os.path.join(TOKENIZER_SRC, f), os.path.join(tok_dir, f))
    # text encoder: transformers 5 saves (and its state_dict() has) keys without "text_model."; the real checkpoint
    # has the prefix, so rewrite the file with it.
    te_file = os.path.join(out, "text_encoder", "model.safetensors")
    on_disk = load_file(te_file)
    save_file(prefixed(on_disk), te_file, metadata={"format": "pt"})
    del on_disk

    if not args.no_fp16:
        save_file(half_state_dict(unet), os.path.join(out, "unet", "diffusion_pytorch_model.fp16.safetensors"),
                  metadata={"format": "pt"})
        save_file(half_state_dict(vae), os.path.join(out, "vae", "diffusion_pytorch_model.fp16.safetensors"),
                  metadata={"format": "pt"})
        save_file(prefixed(half_state_dict(te)), os.path.join(out, "text_encoder", "model.fp16.safetensors"),
                  metadata={"format": "pt"})
        log("saved fp16 variant files")

    # check: diffusers reloads it (fp32 and fp16 variant) with identical weights
    del pipe
    loaded = StableDiffusionPipeline.from_pretrained(out, torch_dtype=torch.float32)
    for name, m in models.items():
        pa, pb = dict(m.named_parameters()), dict(getattr(loaded, name).named_parameters())
        assert pa.keys() == pb.keys(), name
        for k in pa:
            assert torch.equal(pa[k], pb[k]), f"{name}.{k} differs after reload"
    assert type(loaded.scheduler) is PNDMScheduler
    del loaded
    if not args.no_fp16:
        half = StableDiffusionPipeline.from_pretrained(out, variant="fp16", torch_dtype=torch.float16)
        for name, m in models.items():
            pa, pb = dict(m.named_parameters()), dict(getattr(half, name).named_parameters())
            for k in pa:
                assert torch.equal(pa[k].half(), pb[k]), f"fp16 {name}.{k} differs after reload"
        del half
    log("reload check passed (fp32" + ("" if args.no_fp16 else " + fp16 variant") + ")")

    total = 0
    for root, _, files in os.walk(out):
        total += sum(os.path.getsize(os.path.join(root, f)) for f in files)
    log(f"done: {out}, {total / 1e9:.2f} GB on disk")


if __name__ == "__main__":
    sys.exit(main())
