#!/usr/bin/env python3
"""LoRA fixtures for the tiny SD 1.x pipeline, and what diffusers draws with them.

Writes Tests/LeanDiffusionTests/Fixtures/lora/:
  kohya.safetensors  sd-scripts / kohya keys: `lora_unet_<diffusers module path with _>.lora_down.weight` /
                     `.lora_up.weight` / `.alpha` (alpha = rank / 2), UNet attention projections, proj_in (a 1x1 conv),
                     a feed-forward projection, a resnet's 3x3 conv1 (LoCon: down 3x3, up 1x1), and the text encoder's
                     self-attention and MLP (`lora_te_text_model_encoder_layers_N_...`)
  peft.safetensors   diffusers / PEFT keys: `unet.<module>.lora_A.weight` / `lora_B.weight` and
                     `text_encoder.<module>...` (no alpha: alpha = rank), other modules and a resnet conv2
  cases.json + PNGs  diffusers' `load_lora_weights` + `set_adapters(names, adapter_weights)` renders of
                     kohya @1.0, kohya @0.5, peft @1.0, kohya @1.0 + peft @0.5, and the single file
                     (Fixtures/single-file/sd1-tiny.safetensors via from_single_file) + kohya @1.0
Random LoRA weights (seeded) large enough that every case differs visibly from the image without LoRA.

Run: python3 tools/make_lora_fixtures.py   (torch, diffusers 0.42.1, transformers 5, peft; CPU; seconds)
"""
import json
import os

import numpy as np
import torch
from diffusers import PNDMScheduler, StableDiffusionPipeline
from PIL import Image
from safetensors.torch import save_file

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIX = os.path.join(REPO, "Tests/LeanDiffusionTests/Fixtures")
PIPE = os.path.join(FIX, "pipelines/sd1-tiny")
SINGLE = os.path.join(FIX, "single-file/sd1-tiny.safetensors")
OUT = os.path.join(FIX, "lora")
RANK = 4

KOHYA_UNET = ["down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q",
              "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k",
              "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_out.0",
              "down_blocks.0.attentions.0.proj_in",
              "mid_block.attentions.0.transformer_blocks.0.ff.net.0.proj",
              "up_blocks.1.attentions.0.transformer_blocks.0.attn2.to_v",
              "down_blocks.0.resnets.0.conv1"]
# kohya text-encoder keys are written to kohya-te.safetensors only (with the same weights as PEFT keys in
# peft-te.safetensors): diffusers 0.42.1 with transformers 5 does not apply them (its conversion yields legacy
# `to_q_lora` names the model reports as UNEXPECTED, and an MLP LoRA whose B is left at PEFT's zero init), so no
# diffusers reference is made from them; the test checks that the two spellings give the same image instead.
KOHYA_TE = ["text_model.encoder.layers.0.self_attn.q_proj", "text_model.encoder.layers.1.self_attn.v_proj",
            "text_model.encoder.layers.1.mlp.fc1"]
PEFT_UNET = ["down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_k",
             "mid_block.attentions.0.transformer_blocks.0.attn1.to_q",
             "up_blocks.1.attentions.0.proj_out",
             "up_blocks.1.resnets.0.conv2"]
PEFT_TE = ["text_model.encoder.layers.0.self_attn.out_proj"]


def module(root, path):
    if not hasattr(root, "text_model") and path.startswith("text_model."):
        path = path[len("text_model."):]  # transformers 5 flattens CLIPTextModel
    m = root
    for p in path.split("."):
        m = getattr(m, p) if not p.isdigit() else m[int(p)]
    return m


def lora_pair(mod, g, conv_locon):
    w = mod.weight
    out_f, in_f = w.shape[0], w.shape[1]
    if w.dim() == 4:
        k = w.shape[2:] if conv_locon else (1, 1)
        down = torch.randn(RANK, in_f, *k, generator=g) * 0.3
        up = torch.randn(out_f, RANK, 1, 1, generator=g) * 0.3
    else:
        down = torch.randn(RANK, in_f, generator=g) * 0.3
        up = torch.randn(out_f, RANK, generator=g) * 0.3
    return down, up


def render(pipe, seed=42):
    pipe.scheduler = PNDMScheduler.from_config(pipe.scheduler.config)
    g = torch.Generator("cpu").manual_seed(seed)
    out = pipe("a red circle on a blue background", negative_prompt="blurry", num_inference_steps=4,
               guidance_scale=7.5, generator=g, height=64, width=64, output_type="np")
    return (np.clip(out.images[0], 0, 1) * 255).round().astype(np.uint8)


def main():
    os.makedirs(OUT, exist_ok=True)
    base = StableDiffusionPipeline.from_pretrained(PIPE, torch_dtype=torch.float32, safety_checker=None)
    g = torch.Generator().manual_seed(1234)
    kohya = {}
    for path in KOHYA_UNET:
        down, up = lora_pair(module(base.unet, path), g, conv_locon=path.endswith("conv1"))
        name = "lora_unet_" + path.replace(".", "_")
        kohya[name + ".lora_down.weight"], kohya[name + ".lora_up.weight"] = down, up
        kohya[name + ".alpha"] = torch.tensor(RANK / 2)
    save_file({k: v.contiguous() for k, v in kohya.items()}, os.path.join(OUT, "kohya.safetensors"))
    kohya_te, peft_te = {}, {}
    for path in KOHYA_TE:
        down, up = lora_pair(module(base.text_encoder, path), g, False)
        name = "lora_te_" + path.replace(".", "_")
        kohya_te[name + ".lora_down.weight"], kohya_te[name + ".lora_up.weight"] = down, up
        kohya_te[name + ".alpha"] = torch.tensor(RANK / 2)
        peft_te[f"text_encoder.{path}.lora_A.weight"] = down
        peft_te[f"text_encoder.{path}.lora_B.weight"] = up * 0.5  # alpha / rank folded in
    save_file({k: v.contiguous() for k, v in kohya_te.items()}, os.path.join(OUT, "kohya-te.safetensors"))
    save_file({k: v.contiguous() for k, v in peft_te.items()}, os.path.join(OUT, "peft-te.safetensors"))

    peft = {}
    for path in PEFT_UNET:
        down, up = lora_pair(module(base.unet, path), g, conv_locon=path.endswith("conv2"))
        peft[f"unet.{path}.lora_A.weight"], peft[f"unet.{path}.lora_B.weight"] = down, up
    for path in PEFT_TE:
        down, up = lora_pair(module(base.text_encoder, path), g, False)
        # PEFT names the module as the loaded model has it (transformers 5: no text_model.)
        mpath = path if hasattr(base.text_encoder, "text_model") else path[len("text_model."):]
        peft[f"text_encoder.{mpath}.lora_A.weight"], peft[f"text_encoder.{mpath}.lora_B.weight"] = down, up
    save_file({k: v.contiguous() for k, v in peft.items()}, os.path.join(OUT, "peft.safetensors"))

    plain = render(base)
    cases = []

    def case(name, pipe, loras):
        for i, (file, _) in enumerate(loras):
            pipe.load_lora_weights(os.path.join(OUT, file), adapter_name=f"a{i}")
        pipe.set_adapters([f"a{i}" for i in range(len(loras))], adapter_weights=[s for _, s in loras])
        img = render(pipe)
        diff = np.abs(img.astype(int) - plain.astype(int)).max()
        assert diff > 20, f"{name}: the LoRA barely changes the image ({diff})"
        Image.fromarray(img).save(os.path.join(OUT, name + ".png"))
        pipe.unload_lora_weights()
        cases.append({"name": name, "loras": [{"file": f, "scale": s} for f, s in loras], "png": name + ".png",
                      "max_diff_from_plain": int(diff)})
        print(name, "max |diff| from the plain image", diff)

    case("kohya-1.0", base, [("kohya.safetensors", 1.0)])
    case("kohya-0.5", base, [("kohya.safetensors", 0.5)])
    case("peft-1.0", base, [("peft.safetensors", 1.0)])
    case("kohya-1.0+peft-0.5", base, [("kohya.safetensors", 1.0), ("peft.safetensors", 0.5)])
    single = StableDiffusionPipeline.from_single_file(SINGLE, config=PIPE, torch_dtype=torch.float32,
                                                      safety_checker=None)
    case("single-file+kohya-1.0", single, [("kohya.safetensors", 1.0)])
    Image.fromarray(plain).save(os.path.join(OUT, "plain.png"))
    with open(os.path.join(OUT, "cases.json"), "w") as f:
        json.dump({"generated_by": "tools/make_lora_fixtures.py", "rank": RANK, "kohya_alpha": RANK / 2,
                   "request": {"prompt": "a red circle on a blue background", "negative_prompt": "blurry",
                               "steps": 4, "guidance_scale": 7.5, "seed": 42, "width": 64, "height": 64,
                               "scheduler": "pndm"},
                   "cases": cases}, f, indent=2)


if __name__ == "__main__":
    main()
