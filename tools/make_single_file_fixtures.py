#!/usr/bin/env python3
"""Single-file (original LDM / AUTOMATIC1111 layout) fixtures from the committed tiny pipelines, and what diffusers'
`StableDiffusionPipeline.from_single_file(file, config=<folder>)` draws from them.

For each tiny pipeline folder (Tests/LeanDiffusionTests/Fixtures/pipelines/<name>) this writes
Tests/LeanDiffusionTests/Fixtures/single-file/<name>.safetensors (fp16) with
  - the UNet under `model.diffusion_model.` (input_blocks / middle_block / output_blocks names),
  - the VAE under `first_stage_model.` (encoder.down.i.block.j, decoder.up reversed, mid.attn_1 as 1x1 convs),
  - the text encoder as SD 1.x stores it (`cond_stage_model.transformer.text_model.*`, HF CLIP names) for sd1-tiny,
    and as SD 2.x stores it (OpenCLIP `cond_stage_model.model.*`: fused `attn.in_proj_weight`, `ln_1`, `mlp.c_fc`,
    `positional_embedding`, `text_projection`) for sd2-tiny-v,
  - EMA decoys `model_ema.<flattened key>` for every UNet weight (value + 1), which a reader must ignore (diffusers uses
    the non-EMA weights unless `extract_ema`),
then loads it back with diffusers' `from_single_file(config=folder)`, asserts every weight equals the folder's (rounded
to fp16), and renders the cases of <name>.json with it (PNG + float image), the references our tests compare with.

The layout mapping is the inverse of diffusers' `convert_ldm_unet_checkpoint` / `convert_ldm_vae_checkpoint` /
`convert_open_clip_checkpoint` (loaders/single_file_utils.py), written for any number of levels and layers (diffusers'
scripts/convert_diffusers_to_original_stable_diffusion.py hard-codes SD1.5's 4 levels x 2 layers).

Run: python3 tools/make_single_file_fixtures.py   (torch, diffusers 0.42.1, transformers 5; CPU; a few seconds)
     python3 tools/make_single_file_fixtures.py --convert FOLDER FILE.safetensors [--fp16]
         any SD 1.x folder (e.g. /work/sd15-random for the bench) as one original-layout file; not committed
"""
import json
import os
import sys

import numpy as np
import torch
from diffusers import DDIMScheduler, PNDMScheduler, StableDiffusionPipeline
from safetensors.torch import save_file

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PIPES = os.path.join(REPO, "Tests/LeanDiffusionTests/Fixtures/pipelines")
OUT = os.path.join(REPO, "Tests/LeanDiffusionTests/Fixtures/single-file")

RESNET = [("norm1", "in_layers.0"), ("conv1", "in_layers.2"), ("norm2", "out_layers.0"), ("conv2", "out_layers.3"),
          ("time_emb_proj", "emb_layers.1"), ("conv_shortcut", "skip_connection")]


def resnet_unet(rest):
    for new, old in RESNET:
        if rest.startswith(new + "."):
            return old + rest[len(new):]
    raise KeyError(rest)


def unet_to_ldm(sd, config):
    L = config["layers_per_block"]
    up_attn = ["CrossAttn" in t for t in config["up_block_types"]]
    out = {}
    fixed = {"time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2",
             "conv_in": "input_blocks.0.0", "conv_norm_out": "out.0", "conv_out": "out.2"}
    for k, v in sd.items():
        parts = k.split(".")
        head = ".".join(parts[:2]) if parts[0] == "time_embedding" else parts[0]
        if head in fixed:
            out[fixed[head] + "." + parts[-1]] = v
            continue
        if parts[0] == "down_blocks":
            b = int(parts[1])
            kind = parts[2]
            if kind == "resnets":
                j = int(parts[3])
                out[f"input_blocks.{1 + b * (L + 1) + j}.0." + resnet_unet(".".join(parts[4:]))] = v
            elif kind == "attentions":
                j = int(parts[3])
                out[f"input_blocks.{1 + b * (L + 1) + j}.1." + ".".join(parts[4:])] = v
            elif kind == "downsamplers":
                out[f"input_blocks.{1 + b * (L + 1) + L}.0.op." + parts[-1]] = v
            else:
                raise KeyError(k)
        elif parts[0] == "mid_block":
            if parts[1] == "resnets":
                out[f"middle_block.{0 if parts[2] == '0' else 2}." + resnet_unet(".".join(parts[3:]))] = v
            else:
                out["middle_block.1." + ".".join(parts[3:])] = v
        elif parts[0] == "up_blocks":
            b = int(parts[1])
            kind = parts[2]
            if kind == "resnets":
                j = int(parts[3])
                out[f"output_blocks.{b * (L + 1) + j}.0." + resnet_unet(".".join(parts[4:]))] = v
            elif kind == "attentions":
                j = int(parts[3])
                out[f"output_blocks.{b * (L + 1) + j}.1." + ".".join(parts[4:])] = v
            elif kind == "upsamplers":
                out[f"output_blocks.{b * (L + 1) + L}.{2 if up_attn[b] else 1}.conv." + parts[-1]] = v
            else:
                raise KeyError(k)
        else:
            raise KeyError(k)
    return {"model.diffusion_model." + k: v for k, v in out.items()}


def vae_to_ldm(sd, config):
    n = len(config["block_out_channels"])
    out = {}
    for k, v in sd.items():
        p = k.split(".")
        side = p[0]
        if side in ("quant_conv", "post_quant_conv"):
            out[k] = v
            continue
        rest = p[1:]
        if rest[0] == "conv_norm_out":
            new = f"{side}.norm_out.{rest[-1]}"
        elif rest[0] in ("conv_in", "conv_out"):
            new = k
        elif rest[0] in ("down_blocks", "up_blocks"):
            i = int(rest[1])
            level = i if side == "encoder" else n - 1 - i
            word = "down" if side == "encoder" else "up"
            if rest[2] == "resnets":
                tail = ".".join(rest[4:]).replace("conv_shortcut", "nin_shortcut")
                new = f"{side}.{word}.{level}.block.{rest[3]}.{tail}"
            else:  # downsamplers.0.conv / upsamplers.0.conv
                new = f"{side}.{word}.{level}.{'downsample' if side == 'encoder' else 'upsample'}.conv.{rest[-1]}"
        elif rest[0] == "mid_block":
            if rest[1] == "resnets":
                tail = ".".join(rest[3:]).replace("conv_shortcut", "nin_shortcut")
                new = f"{side}.mid.block_{int(rest[2]) + 1}.{tail}"
            else:
                names = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out": "proj_out"}
                new = f"{side}.mid.attn_1.{names[rest[3]]}.{rest[-1]}"
                if rest[-1] == "weight" and v.dim() == 2:
                    v = v[:, :, None, None]  # LDM stores the attention projections as 1x1 convs
        else:
            raise KeyError(k)
        out[new] = v
    return {"first_stage_model." + k: v for k, v in out.items()}


def clip_keys(sd):
    """transformers 5 saves CLIPTextModel without the text_model. prefix; the LDM layout has it."""
    return {(k if k.startswith("text_model.") else "text_model." + k): v for k, v in sd.items()}


def clip_to_ldm(sd):
    return {"cond_stage_model.transformer." + k: v for k, v in clip_keys(sd).items() if "position_ids" not in k}


def clip_to_open_clip(sd, seed=0):
    sd = clip_keys(sd)
    p = "cond_stage_model.model."
    out = {}
    layers = sorted({int(k.split(".")[3]) for k in sd if k.startswith("text_model.encoder.layers.")})
    e = "text_model.embeddings."
    out[p + "token_embedding.weight"] = sd[e + "token_embedding.weight"]
    out[p + "positional_embedding"] = sd[e + "position_embedding.weight"]
    out[p + "ln_final.weight"] = sd["text_model.final_layer_norm.weight"]
    out[p + "ln_final.bias"] = sd["text_model.final_layer_norm.bias"]
    d = sd[e + "token_embedding.weight"].shape[1]
    g = torch.Generator().manual_seed(seed)
    out[p + "text_projection"] = torch.randn(d, d, generator=g)  # not used by the UNet's conditioning
    for i in layers:
        s = f"text_model.encoder.layers.{i}."
        t = f"{p}transformer.resblocks.{i}."
        out[t + "attn.in_proj_weight"] = torch.cat([sd[s + f"self_attn.{x}_proj.weight"] for x in "qkv"], 0)
        out[t + "attn.in_proj_bias"] = torch.cat([sd[s + f"self_attn.{x}_proj.bias"] for x in "qkv"], 0)
        out[t + "attn.out_proj.weight"] = sd[s + "self_attn.out_proj.weight"]
        out[t + "attn.out_proj.bias"] = sd[s + "self_attn.out_proj.bias"]
        out[t + "ln_1.weight"] = sd[s + "layer_norm1.weight"]
        out[t + "ln_1.bias"] = sd[s + "layer_norm1.bias"]
        out[t + "ln_2.weight"] = sd[s + "layer_norm2.weight"]
        out[t + "ln_2.bias"] = sd[s + "layer_norm2.bias"]
        out[t + "mlp.c_fc.weight"] = sd[s + "mlp.fc1.weight"]
        out[t + "mlp.c_fc.bias"] = sd[s + "mlp.fc1.bias"]
        out[t + "mlp.c_proj.weight"] = sd[s + "mlp.fc2.weight"]
        out[t + "mlp.c_proj.bias"] = sd[s + "mlp.fc2.bias"]
    return out


def ema_decoys(unet_ldm):
    # diffusers' flat EMA key: "model_ema." + the key without "model." and without dots.
    return {"model_ema." + "".join(k.split(".")[1:]): v + 1 for k, v in unet_ldm.items()}


def fp16(sd):
    return {k: v.detach().to(torch.float16).contiguous() for k, v in sd.items()}


def check_equal(name, ours, theirs):
    a, b = clip_keys(ours) if name == "text_encoder" else ours, clip_keys(theirs) if name == "text_encoder" else theirs
    a = {k: v for k, v in a.items() if "position_ids" not in k}
    b = {k: v for k, v in b.items() if "position_ids" not in k}
    assert set(a) == set(b), (name, sorted(set(a) ^ set(b))[:10])
    for k in a:
        x, y = a[k].to(torch.float16).float(), b[k].float()
        assert torch.equal(x, y), (name, k, (x - y).abs().max())


CASES = [
    # name, scheduler, prompt, negative, steps, guidance, seed
    ("pndm", "pndm", "a photo of an astronaut riding a horse", "blurry", 4, 7.5, 42),
    ("ddim", "ddim", "a red cube on a table", "", 5, 5.0, 7),
]


def main():
    os.makedirs(OUT, exist_ok=True)
    manifest = {"generated_by": "tools/make_single_file_fixtures.py",
                "versions": {"torch": torch.__version__, "diffusers": __import__("diffusers").__version__,
                             "transformers": __import__("transformers").__version__},
                "models": {}}
    for name, open_clip in [("sd1-tiny", False), ("sd2-tiny-v", True)]:
        folder = os.path.join(PIPES, name)
        pipe = StableDiffusionPipeline.from_pretrained(folder, torch_dtype=torch.float32, safety_checker=None)
        unet = unet_to_ldm(pipe.unet.state_dict(), pipe.unet.config)
        sd = {}
        sd.update(unet)
        sd.update(vae_to_ldm(pipe.vae.state_dict(), pipe.vae.config))
        te = pipe.text_encoder.state_dict()
        sd.update(clip_to_open_clip(te) if open_clip else clip_to_ldm(te))
        if not open_clip:
            sd.update(ema_decoys(unet))
        path = os.path.join(OUT, name + ".safetensors")
        save_file(fp16(sd), path, metadata={"format": "pt"})

        single = StableDiffusionPipeline.from_single_file(path, config=folder, torch_dtype=torch.float32,
                                                          safety_checker=None)
        check_equal("unet", pipe.unet.state_dict(), single.unet.state_dict())
        check_equal("vae", pipe.vae.state_dict(), single.vae.state_dict())
        check_equal("text_encoder", pipe.text_encoder.state_dict(), single.text_encoder.state_dict())
        print(f"{name}: {len(sd)} tensors, {os.path.getsize(path)} bytes; from_single_file weights equal the folder's")

        cases = []
        for case, sched, prompt, negative, steps, guidance, seed in CASES:
            cls = {"pndm": PNDMScheduler, "ddim": DDIMScheduler}[sched]
            single.scheduler = cls.from_config(single.scheduler.config)
            g = torch.Generator("cpu").manual_seed(seed)
            h = w = single.unet.config.sample_size * 8
            out = single(prompt, negative_prompt=negative or None, num_inference_steps=steps, guidance_scale=guidance,
                         generator=g, height=h, width=w, output_type="np")
            png = f"{name}-{case}.png"
            img = (np.clip(out.images[0], 0, 1) * 255).round().astype(np.uint8)
            from PIL import Image
            Image.fromarray(img).save(os.path.join(OUT, png))
            cases.append({"name": case, "scheduler": sched, "prompt": prompt, "negative_prompt": negative,
                          "steps": steps, "guidance_scale": guidance, "seed": seed, "width": w, "height": h,
                          "png": png})
        manifest["models"][name] = {"file": name + ".safetensors", "config": f"pipelines/{name}",
                                    "text_encoder_layout": "open_clip" if open_clip else "clip",
                                    "ema_decoys": not open_clip, "cases": cases}
    with open(os.path.join(OUT, "cases.json"), "w") as f:
        json.dump(manifest, f, indent=2)
    print("wrote", OUT)


def convert(folder, path, half):
    pipe = StableDiffusionPipeline.from_pretrained(folder, torch_dtype=torch.float32, safety_checker=None)
    sd = {}
    sd.update(unet_to_ldm(pipe.unet.state_dict(), pipe.unet.config))
    sd.update(vae_to_ldm(pipe.vae.state_dict(), pipe.vae.config))
    sd.update(clip_to_ldm(pipe.text_encoder.state_dict()))
    sd = fp16(sd) if half else {k: v.detach().contiguous() for k, v in sd.items()}
    save_file(sd, path, metadata={"format": "pt"})
    print(f"wrote {path}: {len(sd)} tensors, {os.path.getsize(path)} bytes")


if __name__ == "__main__":
    if len(sys.argv) >= 4 and sys.argv[1] == "--convert":
        sys.exit(convert(sys.argv[2], sys.argv[3], "--fp16" in sys.argv))
    sys.exit(main())
