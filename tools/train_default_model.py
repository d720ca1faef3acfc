#!/usr/bin/env python3
"""Trains the embedded default model (Models/tiny-sd): a tiny Stable Diffusion 1.x pipeline of the real architecture
(CLIPTextModel, UNet2DConditionModel, AutoencoderKL, PNDMScheduler with SD1.5 betas, the real CLIP tokenizer) on the
synthetic captioned shapes of tools/shapes_dataset.py, so that `lean-diffusion generate --prompt "a red circle on a
blue background"` draws that.

  phase 1 (--vae-fraction of the budget): the VAE alone, L1 + MSE reconstruction with shape pixels weighted 5x, a
           small KL; then the latent scaling_factor is set from data as SD does (1 / std of the latents).
  phase 2: text encoder + UNet jointly, DDPM epsilon loss with offset noise, 10% empty captions (classifier-free
           guidance), AdamW, EMA weights (what is saved); optionally an auxiliary position probe on the text states.

Every --checkpoint-minutes (and at the end, or on Ctrl-C) the pipeline folder --out is rewritten atomically
(save_pretrained(safe_serialization=True), tokenizer files, model_index.json, scheduler_config.json), so a run
stopped at any time leaves a usable pipeline. Weights are saved fp32 when the folder stays <= --max-mb, else fp16.
A full training state (fp32, optimizer, EMA) goes to --state for --resume or --init-from.

    python3 tools/train_default_model.py --minutes 5 --threads 1 --out /tmp/tiny-sd          # smoke test

The committed Models/tiny-sd came from three stages on a 2-core Zen 5 (budgets are wall-clock, so step counts vary
with the machine; stages 1-2 were stopped early with Ctrl-C at the step given):

    # 1. VAE 21 min (3,767 steps), then a 3-level UNet (32,64,128); stopped at step 2,003, resumed with a lower LR
    #    and stopped at step 3,245: colours and backgrounds right, positions ignored
    python3 tools/train_default_model.py --minutes 85 --vae-fraction 0.25 --threads 2 --out /tmp/t7/tiny-sd \
        --state /tmp/t7/state.pt
    python3 tools/train_default_model.py --resume --minutes 62 --lr 7.5e-4 --threads 2 --out /tmp/t7/tiny-sd \
        --state /tmp/t7/state.pt
    # 2. a 4th UNet level (2x2 cells: one per quadrant), more captions with a position, half the timesteps >= 500;
    #    stopped at step 944: positions still ignored
    python3 tools/train_default_model.py --init-from /tmp/t7/state.pt --unet-channels 32,64,128,64 --heads 2,4,8,4 \
        --position-share 0.85 --high-t 0.5 --lr 7.5e-4 --minutes 38 --threads 2 --out /tmp/t8/tiny-sd \
        --state /tmp/t8/state.pt
    # 3. + the position probe: positions learned within 600 steps
    python3 tools/train_default_model.py --init-from /tmp/t8/state.pt --unet-channels 32,64,128,64 --heads 2,4,8,4 \
        --position-share 0.85 --high-t 0.5 --position-probe 0.1 --lr 7.5e-4 --minutes 32 --threads 2 \
        --out /tmp/t9/tiny-sd --state /tmp/t9/state.pt
"""
import argparse
import copy
import json
import math
import os
import shutil
import signal
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import shapes_dataset as shapes  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOKENIZER_DIR = os.path.join(REPO, "Models", "clip-tokenizer")

SCHEDULER_CONFIG = {  # the SD1.5 PNDM config (as runwayml/stable-diffusion-v1-5 ships it)
    "_class_name": "PNDMScheduler",
    "_diffusers_version": "0.42.1",
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "clip_sample": False,
    "num_train_timesteps": 1000,
    "prediction_type": "epsilon",
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "timestep_spacing": "leading",
    "trained_betas": None,
}


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, flush=True)


def build_models(args):
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    text_config = CLIPTextConfig(
        vocab_size=49408, hidden_size=args.text_hidden, intermediate_size=args.text_hidden * 4,
        num_hidden_layers=args.text_layers, num_attention_heads=max(1, args.text_hidden // 32),
        max_position_embeddings=77, hidden_act="quick_gelu", projection_dim=args.text_hidden,
        bos_token_id=49406, eos_token_id=49407, pad_token_id=49407)
    text_encoder = CLIPTextModel(text_config)

    n_vae = int(round(math.log2(args.vae_down))) + 1
    vae_channels = [int(c) for c in args.vae_channels.split(",")][:n_vae]
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, sample_size=shapes.SIZE,
        down_block_types=["DownEncoderBlock2D"] * n_vae, up_block_types=["UpDecoderBlock2D"] * n_vae,
        block_out_channels=vae_channels, layers_per_block=1, norm_num_groups=16, scaling_factor=0.18215)

    chans = [int(c) for c in args.unet_channels.split(",")]
    unet = UNet2DConditionModel(
        sample_size=shapes.SIZE // args.vae_down, in_channels=4, out_channels=4,
        down_block_types=["CrossAttnDownBlock2D"] * len(chans),
        up_block_types=["CrossAttnUpBlock2D"] * len(chans),
        block_out_channels=chans, layers_per_block=args.unet_layers, cross_attention_dim=args.text_hidden,
        # Heads per block (diffusers' `attention_head_dim` is the head count): 16-channel heads. With SD's default of 8
        # heads, a 32-channel level gets 4-dimensional heads, whose dot products barely separate the caption's tokens;
        # 16-dimensional ones learned to follow the prompt several times faster here, and train 1.6x faster on a CPU.
        attention_head_dim=[int(h) for h in args.heads.split(",")], norm_num_groups=args.norm_groups)
    return text_encoder, vae, unet


def nbytes(model, bytes_per=4):
    return sum(p.numel() for p in model.parameters()) * bytes_per


def to_tensor(images):  # uint8 [n,64,64,3] -> float [-1,1] [n,3,64,64]
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def tokenize(tokenizer, captions):
    return tokenizer(captions, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids


def save_pipeline(out, text_encoder, vae, unet, max_mb):
    """Writes the pipeline folder atomically: OUT.tmp, then rename."""
    from diffusers import PNDMScheduler

    tok_bytes = sum(os.path.getsize(os.path.join(TOKENIZER_DIR, f)) for f in os.listdir(TOKENIZER_DIR))
    fp32_total = nbytes(text_encoder) + nbytes(vae) + nbytes(unet) + tok_bytes
    dtype = torch.float32 if fp32_total <= max_mb * 1e6 else torch.float16
    tmp = out.rstrip("/") + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    for name, model in (("text_encoder", text_encoder), ("vae", vae), ("unet", unet)):
        copy.deepcopy(model).to(dtype).save_pretrained(os.path.join(tmp, name), safe_serialization=True)
    # the classic CLIP files the Swift loader and diffusers both read (transformers 5 would write tokenizer.json)
    shutil.copytree(TOKENIZER_DIR, os.path.join(tmp, "tokenizer"))
    PNDMScheduler.from_config(SCHEDULER_CONFIG).save_pretrained(os.path.join(tmp, "scheduler"))
    with open(os.path.join(tmp, "scheduler", "scheduler_config.json"), "w") as f:
        json.dump(SCHEDULER_CONFIG, f, indent=2)
    index = {
        "_class_name": "StableDiffusionPipeline", "_diffusers_version": "0.42.1",
        "feature_extractor": [None, None], "image_encoder": [None, None], "requires_safety_checker": False,
        "safety_checker": [None, None], "scheduler": ["diffusers", "PNDMScheduler"],
        "text_encoder": ["transformers", "CLIPTextModel"], "tokenizer": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"]}
    with open(os.path.join(tmp, "model_index.json"), "w") as f:
        json.dump(index, f, indent=2)
    if os.path.exists(out):
        old = out.rstrip("/") + ".old"
        shutil.rmtree(old, ignore_errors=True)
        os.rename(out, old)
        os.rename(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, out)
    total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(out) for f in fs)
    return dtype, total


def shape_weights(x, weight):
    """Per-pixel loss weights: 1 + `weight` on pixels away from the image's border colour (the shapes). Shapes cover
    ~5% of an image, so a plain mean lets the VAE trade their colour for a sharper background."""
    border = torch.cat([x[:, :, :2].flatten(2), x[:, :, -2:].flatten(2)], 2).median(dim=2).values[:, :, None, None]
    return 1.0 + weight * ((x - border).abs().sum(1, keepdim=True) > 0.3).float()


@torch.no_grad()
def reconstruction_report(vae, seed, n=64):
    """Mean absolute error (0-255) of VAE reconstructions of fresh samples: all pixels and shape pixels."""
    images, _ = shapes.batch(seed, 10_000_000, n)
    x = to_tensor(images)
    rec = vae.decode(vae.encode(x).latent_dist.mean).sample.float().clamp(-1, 1)
    err = (rec - x).abs().mean(1, keepdim=True) * 127.5
    mask = shape_weights(x, 1.0) > 1
    return f"reconstruction error {err.mean():.2f}/255 (shape pixels {err[mask].mean():.2f}/255)"


def position_labels(captions):
    """Index of the caption's position phrase in shapes.POSITION_NAMES, or len(POSITION_NAMES) when it names none."""
    names = shapes.POSITION_NAMES
    return torch.tensor([names.index(c.split(", ")[1]) if ", " in c else len(names) for c in captions])


class LatentCache:
    """Samples 0..<n of data set `seed`, VAE-encoded once: the first pass over them encodes as it goes (no start-up
    wait), later batches are random draws from memory. Keeps the posterior's mean and std, so every draw is a fresh
    `latent_dist.sample()` as without the cache; saves the rendering and the encoder (~25% of a step)."""

    def __init__(self, n, seed, vae, tokenizer, autocast):
        self.n, self.seed, self.vae, self.tokenizer, self.autocast = n, seed, vae, tokenizer, autocast
        self.filled = 0
        self.mean = self.std = self.ids = self.labels = None
        self.gen = torch.Generator().manual_seed(seed + 17)

    def _fill(self, count):
        images, captions = shapes.batch(self.seed, self.filled, count)
        with torch.no_grad(), self.autocast():
            dist = self.vae.encode(to_tensor(images)).latent_dist
        mean, std, ids = dist.mean.float(), dist.std.float(), tokenize(self.tokenizer, captions)
        if self.mean is None:
            self.mean = torch.empty((self.n,) + mean.shape[1:])
            self.std = torch.empty_like(self.mean)
            self.ids = torch.empty((self.n, ids.shape[1]), dtype=ids.dtype)
            self.labels = torch.empty((self.n,), dtype=torch.long)
        rows = slice(self.filled, self.filled + count)
        self.mean[rows], self.std[rows], self.ids[rows] = mean, std, ids
        self.labels[rows] = position_labels(captions)
        self.filled += count
        return rows

    def batch(self, size):
        if self.filled < self.n:
            rows = self._fill(min(size, self.n - self.filled))
            mean, std, ids, labels = self.mean[rows], self.std[rows], self.ids[rows], self.labels[rows]
        else:
            pick = torch.randint(0, self.n, (size,), generator=self.gen)
            mean, std, ids, labels = self.mean[pick], self.std[pick], self.ids[pick], self.labels[pick]
        return mean + std * torch.randn(mean.shape, generator=self.gen), ids.clone(), labels


class EMA:
    def __init__(self, models, decay):
        self.decay = decay
        self.shadow = [copy.deepcopy(m).eval().requires_grad_(False) for m in models]

    @torch.no_grad()
    def update(self, models, step):
        d = min(self.decay, (1 + step) / (10 + step))
        for s, m in zip(self.shadow, models):
            for ps, pm in zip(s.parameters(), m.parameters()):
                ps.mul_(d).add_(pm.detach(), alpha=1 - d)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=5.0, help="wall-clock budget for both phases")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=os.path.join(REPO, "Models", "tiny-sd"))
    ap.add_argument("--state", default=None, help="training state file (default: /tmp/<out name>-train-state.pt)")
    ap.add_argument("--resume", action="store_true", help="continue from --state (skips the VAE phase if done)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--vae-lr", type=float, default=1e-3)
    ap.add_argument("--vae-fraction", type=float, default=0.2, help="share of --minutes for the VAE phase")
    ap.add_argument("--vae-max-minutes", type=float, default=25.0)
    ap.add_argument("--amp", action=argparse.BooleanOptionalAction, default=True, help="bf16 autocast forward passes")
    ap.add_argument("--kl-weight", type=float, default=1e-6)
    ap.add_argument("--ema", type=float, default=0.995)
    ap.add_argument("--uncond", type=float, default=0.1, help="share of empty captions")
    ap.add_argument("--offset-noise", type=float, default=0.15,
                    help="std of a per-(sample, channel) constant added to the noise (0 = plain DDPM noise)")
    ap.add_argument("--checkpoint-minutes", type=float, default=10.0)
    ap.add_argument("--log-every", type=int, default=10)
    ap.add_argument("--max-mb", type=float, default=20.0, help="save fp32 when the folder stays under this, else fp16")
    ap.add_argument("--text-hidden", type=int, default=64)
    ap.add_argument("--text-layers", type=int, default=3)
    ap.add_argument("--unet-channels", default="32,64,128")
    ap.add_argument("--unet-layers", type=int, default=1)
    ap.add_argument("--heads", default="2,4,8", help="attention heads per UNet block")
    ap.add_argument("--norm-groups", type=int, default=16,
                    help="UNet group norm groups: 16 keeps 2+ channels a group, so the first level's norms do not "
                         "erase each channel's mean (the background colour)")
    ap.add_argument("--cache", type=int, default=48_000,
                    help="phase 2 draws from this many samples, rendered and VAE-encoded once (first epoch) and kept "
                         "in memory as latent mean/std; 0 = a new sample every time")
    ap.add_argument("--vae-down", type=int, default=4, choices=[4, 8])
    ap.add_argument("--vae-channels", default="16,32,64,64", help="VAE block_out_channels (norm groups 16)")
    ap.add_argument("--vae-batch", type=int, default=16)
    ap.add_argument("--vae-shape-weight", type=float, default=4.0, help="extra loss weight of shape pixels")
    ap.add_argument("--vae-from", default=None, help="take the trained VAE (and scaling factor) from this state file")
    ap.add_argument("--position-share", type=float, default=2 / 3, help="share of captions that name a position")
    ap.add_argument("--high-t", type=float, default=0.0,
                    help="share of each batch whose timesteps are drawn from [500, 1000) instead of [0, 1000): the "
                         "noisy steps where the layout is decided")
    ap.add_argument("--position-probe", type=float, default=0.0,
                    help="weight of an auxiliary loss: a linear probe reads the named position from the text states")
    ap.add_argument("--init-from", default=None,
                    help="start phase 2 from the (EMA) text encoder and UNet of this state file, taking every UNet "
                         "tensor whose name and shape fit; with more levels, the old up blocks move one place out")
    ap.add_argument("--simple-data", action="store_true",
                    help="sanity check of the loop: captions 'a <colour> circle on a <colour> background' only")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)

    def autocast():
        """bf16 autocast for the forward passes (weights, optimizer and loss stay fp32): ~1.3x on AVX512-BF16 CPUs."""
        return torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.amp)
    torch.manual_seed(args.seed)
    from diffusers import DDPMScheduler
    from transformers import CLIPTokenizer

    out = os.path.abspath(args.out)
    state_path = args.state or f"/tmp/{os.path.basename(out.rstrip('/'))}-train-state.pt"
    tokenizer = CLIPTokenizer.from_pretrained(TOKENIZER_DIR)
    text_encoder, vae, unet = build_models(args)
    for name, m in (("text_encoder", text_encoder), ("vae", vae), ("unet", unet)):
        log(f"{name}: {sum(p.numel() for p in m.parameters()) / 1e6:.2f} M params, {nbytes(m) / 1e6:.1f} MB fp32")

    start = time.time()
    budget = args.minutes * 60
    vae_budget = min(budget * args.vae_fraction, args.vae_max_minutes * 60)
    data_index = 0  # samples are a pure function of (seed, index): every batch is new
    vae_done, step = False, 0
    state = None

    def take_vae(saved):
        """The trained VAE and its latent scaling factor from a state file's dict."""
        vae.load_state_dict(saved["vae"])
        vae.register_to_config(scaling_factor=saved["scaling_factor"])

    if args.resume and os.path.exists(state_path):
        state = torch.load(state_path, weights_only=False)
        text_encoder.load_state_dict(state["text_encoder"])
        take_vae(state)
        unet.load_state_dict(state["unet"])
        data_index, vae_done, step = state["data_index"], state["vae_done"], state["step"]
        log(f"resumed from {state_path}: step {step}, data index {data_index}, vae done {vae_done}")

    if args.simple_data:
        shapes.MODE["simple"] = True
    shapes.MODE["position_share"] = args.position_share
    if args.init_from and state is None:
        init = torch.load(args.init_from, weights_only=False)
        take_vae(init)
        vae_done = True
        text_encoder.load_state_dict(init["ema_text_encoder"])
        old = init["ema_unet"]
        old_levels = 1 + max(int(k.split(".")[1]) for k in old if k.startswith("up_blocks."))
        shift = len(unet.config.block_out_channels) - old_levels
        new = unet.state_dict()
        taken = 0
        for k, v in old.items():
            if k.startswith("up_blocks."):
                parts = k.split(".")
                k = ".".join([parts[0], str(int(parts[1]) + shift)] + parts[2:])
            if k in new and new[k].shape == v.shape:
                new[k] = v
                taken += 1
        unet.load_state_dict(new)
        log(f"init from {args.init_from}: VAE, text encoder, {taken}/{len(new)} UNet tensors")
    if args.vae_from and state is None:
        vs = torch.load(args.vae_from, weights_only=False)
        take_vae(vs)
        vae_done = True
        log(f"VAE from {args.vae_from} (scaling_factor {vs['scaling_factor']:.5f})")

    stop = {"now": False}
    signal.signal(signal.SIGINT, lambda *_: stop.__setitem__("now", True))
    signal.signal(signal.SIGTERM, lambda *_: stop.__setitem__("now", True))

    def next_batch(n):
        nonlocal data_index
        images, captions = shapes.batch(args.seed, data_index, n)
        data_index += n
        return to_tensor(images), captions

    # ---- phase 1: VAE ----
    if not vae_done:
        opt = torch.optim.AdamW(vae.parameters(), lr=args.vae_lr, weight_decay=0.0)
        vae.train()
        vstep, t0 = 0, time.time()
        while time.time() - start < vae_budget and not stop["now"]:
            x, _ = next_batch(args.vae_batch)
            # cosine decay over the phase: the last steps settle the colours
            progress = min(1.0, (time.time() - start) / vae_budget)
            for g in opt.param_groups:
                g["lr"] = args.vae_lr * min(1.0, (vstep + 1) / 50) * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))
            with autocast():
                post = vae.encode(x).latent_dist
                rec = vae.decode(post.sample()).sample.float()
            w = shape_weights(x, args.vae_shape_weight)
            l1, mse = (w * (rec - x).abs()).mean(), (w * (rec - x) ** 2).mean()
            kl = post.kl().mean()
            loss = l1 + mse + args.kl_weight * kl
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            vstep += 1
            if vstep % args.log_every == 0 or vstep == 1:
                log(f"vae step {vstep}: weighted l1 {l1.item():.4f} mse {mse.item():.4f} kl {kl.item():.1f} "
                    f"({(time.time() - t0) / vstep:.2f} s/step)")
        vae.eval()
        with torch.no_grad():
            lat = torch.cat([vae.encode(next_batch(args.batch)[0]).latent_dist.sample() for _ in range(4)])
            sf = float(1.0 / lat.flatten().std())
        vae.register_to_config(scaling_factor=sf)
        vae_done = True
        log(f"vae done after {vstep} steps; latent std {1 / sf:.4f} -> scaling_factor {sf:.5f}; "
            f"{reconstruction_report(vae, args.seed + 1)}")
        torch.save({"vae": vae.state_dict(), "scaling_factor": sf}, state_path + ".vae.pt")
    vae.eval().requires_grad_(False)
    sf = vae.config.scaling_factor

    # ---- phase 2: text encoder + UNet ----
    noise_sched = DDPMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                                beta_schedule="scaled_linear", prediction_type="epsilon")
    probe = torch.nn.Linear(args.text_hidden, len(shapes.POSITION_NAMES) + 1)
    params = list(text_encoder.parameters()) + list(unet.parameters()) + list(probe.parameters())
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=1e-2)
    ema = EMA([text_encoder, unet], args.ema)
    if state is not None and "opt" in state:
        opt.load_state_dict(state["opt"])
        for s, k in zip(ema.shadow, ("ema_text_encoder", "ema_unet")):
            s.load_state_dict(state[k])
    text_encoder.train()
    unet.train()
    empty_ids = tokenize(tokenizer, [""])

    def checkpoint(reason):
        dtype, total = save_pipeline(out, ema.shadow[0], vae, ema.shadow[1], args.max_mb)
        torch.save({"text_encoder": text_encoder.state_dict(), "vae": vae.state_dict(), "unet": unet.state_dict(),
                    "ema_text_encoder": ema.shadow[0].state_dict(), "ema_unet": ema.shadow[1].state_dict(),
                    "opt": opt.state_dict(), "scaling_factor": sf, "data_index": data_index,
                    "vae_done": vae_done, "step": step, "args": vars(args)}, state_path)
        log(f"checkpoint ({reason}) step {step}: {out} ({str(dtype).replace('torch.', '')}, "
            f"{total / 1e6:.2f} MB); state {state_path}")

    last_ckpt, t0, first, running, probe_losses = time.time(), time.time(), step, [], []
    phase2_start = time.time()
    cache = LatentCache(args.cache, args.seed, vae, tokenizer, autocast)
    while time.time() - start < budget and not stop["now"]:
        if args.cache:
            latents, ids, labels = cache.batch(args.batch)
            latents = latents * sf
        else:
            x, captions = next_batch(args.batch)
            ids = tokenize(tokenizer, captions)
            labels = position_labels(captions)
            with torch.no_grad(), autocast():
                latents = vae.encode(x).latent_dist.sample().float() * sf
        drop = torch.rand(len(ids)) < args.uncond
        ids[drop] = empty_ids
        labels = torch.where(drop, len(shapes.POSITION_NAMES), labels)
        noise = torch.randn_like(latents)
        if args.offset_noise > 0:
            # Offset noise: SD's schedule leaves ~7% of the signal at t=999, and on 16x16 latents the mean of pure
            # noise is as large as that, so a model trained without it learns the image's mean colour from the
            # noise and cannot follow "on a blue background" at sampling time.
            noise = noise + args.offset_noise * torch.randn(latents.shape[0], latents.shape[1], 1, 1)
        t = torch.randint(0, 1000, (latents.shape[0],))
        high = torch.rand(latents.shape[0]) < args.high_t
        t[high] = torch.randint(500, 1000, (int(high.sum()),))
        noisy = noise_sched.add_noise(latents, noise, t)
        with autocast():
            cond = text_encoder(ids)[0]
            pred = unet(noisy, t, encoder_hidden_states=cond).sample.float()
        loss = F.mse_loss(pred, noise)
        if args.position_probe > 0:
            # Auxiliary loss, not part of the pipeline: a linear probe must read the named position from the mean of
            # the text encoder's states. Without it the position words stay faint in those states (norm 1 against
            # 10 for a colour word), the UNet cannot use what it barely sees, and neither side starts to learn
            # positions: after 3,000 steps images ignored "top left" entirely.
            probe_loss = F.cross_entropy(probe(cond.float().mean(1)), labels)
            loss = loss + args.position_probe * probe_loss
            probe_losses.append(probe_loss.item())
        # linear warm-up, then cosine decay to 10% over the budget: a sharper end point for the EMA weights
        progress = min(1.0, (time.time() - phase2_start) / max(1.0, budget - (phase2_start - start)))
        warm = min(1.0, (step + 1) / 200) * (0.55 + 0.45 * math.cos(math.pi * progress))
        for g in opt.param_groups:
            g["lr"] = args.lr * warm
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        ema.update([text_encoder, unet], step)
        step += 1
        running.append(loss.item())
        if step % args.log_every == 0 or step == first + 1:
            log(f"step {step}: loss {np.mean(running):.4f} (mean of {len(running)}) "
                f"{(time.time() - t0) / (step - first):.2f} s/step, {(time.time() - start) / 60:.1f} min"
                + (f", position probe {np.mean(probe_losses):.3f}" if probe_losses else ""))
            running, probe_losses = [], []
        if time.time() - last_ckpt > args.checkpoint_minutes * 60:
            checkpoint("periodic")
            last_ckpt = time.time()
    checkpoint("interrupted" if stop["now"] else "end")


if __name__ == "__main__":
    main()
