#!/usr/bin/env python3
"""Models/configs/<architecture>: the configs, scheduler and tokenizer a single-file checkpoint is read with, one
folder per `SingleFileArchitecture` (no weights). They are the configs diffusers' `from_single_file` fetches for each
model type (`DIFFUSERS_DEFAULT_PIPELINE_PATHS` in loaders/single_file_utils.py):
  sd15             stable-diffusion-v1-5/stable-diffusion-v1-5
  sd21             stabilityai/stable-diffusion-2-1 (every SD 2.x file; 768 px, v-prediction)
  sd15-inpainting  stable-diffusion-v1-5/stable-diffusion-inpainting (9-channel UNet)
  sd2-inpainting   stabilityai/stable-diffusion-2-inpainting (9-channel UNet, epsilon, 512 px)
written through diffusers' and transformers' own config classes (models built on the meta device, so nothing is
allocated). SD1.5 values come from tools/make_sd15_random.py; the SD 2.x ones are those repositories' values
(cross-attention 1024, head dims 5/10/20/20, linear projections, OpenCLIP ViT-H text tower with 23 of its 24 layers,
GELU). Tokenizer files are symlinks to Models/clip-tokenizer (SD 2.x pads with "!").

Run: python3 tools/make_shipped_configs.py
"""
import json
import os
import shutil

import torch
from diffusers import AutoencoderKL, DDIMScheduler, PNDMScheduler, UNet2DConditionModel
from transformers import CLIPTextConfig

import make_sd15_random as sd15

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(REPO, "Models", "configs")

SD2_UNET = dict(sd15.UNET_CONFIG, cross_attention_dim=1024, attention_head_dim=(5, 10, 20, 20),
                use_linear_projection=True)
SD2_TEXT = dict(sd15.TEXT_CONFIG, hidden_size=1024, intermediate_size=4096, projection_dim=512,
                num_hidden_layers=23, num_attention_heads=16, hidden_act="gelu")
SCHEDULER = {k: v for k, v in sd15.SD15_SCHEDULER_CONFIG.items() if not k.startswith("_")}

MODELS = {
    "sd15": dict(unet=sd15.UNET_CONFIG, text=sd15.TEXT_CONFIG, vae=sd15.VAE_CONFIG,
                 scheduler=(PNDMScheduler, SCHEDULER), pad=None),
    "sd21": dict(unet=dict(SD2_UNET, sample_size=96, upcast_attention=True), text=SD2_TEXT,
                 vae=dict(sd15.VAE_CONFIG, sample_size=768),
                 scheduler=(DDIMScheduler, dict(SCHEDULER, prediction_type="v_prediction", clip_sample=False,
                                                set_alpha_to_one=False)), pad="!"),
    "sd15-inpainting": dict(unet=dict(sd15.UNET_CONFIG, in_channels=9), text=sd15.TEXT_CONFIG, vae=sd15.VAE_CONFIG,
                            scheduler=(PNDMScheduler, SCHEDULER), pad=None),
    "sd2-inpainting": dict(unet=dict(SD2_UNET, in_channels=9), text=SD2_TEXT, vae=sd15.VAE_CONFIG,
                           scheduler=(PNDMScheduler, SCHEDULER), pad="!"),
}


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
        f.write("\n")


def main():
    for name, m in MODELS.items():
        root = os.path.join(OUT, name)
        shutil.rmtree(root, ignore_errors=True)
        os.makedirs(root)
        with torch.device("meta"):
            UNet2DConditionModel(**m["unet"]).save_config(os.path.join(root, "unet"))
            AutoencoderKL(**m["vae"]).save_config(os.path.join(root, "vae"))
        te = os.path.join(root, "text_encoder")
        os.makedirs(te)
        cfg = CLIPTextConfig(**m["text"])
        cfg.architectures = ["CLIPTextModel"]
        cfg.save_pretrained(te)
        cls, sched = m["scheduler"]
        cls.from_config(sched)  # diffusers accepts it
        os.makedirs(os.path.join(root, "scheduler"))
        write_json(os.path.join(root, "scheduler", "scheduler_config.json"), {"_class_name": cls.__name__, **sched})
        tok = os.path.join(root, "tokenizer")
        os.makedirs(tok)
        own = ["vocab.json", "merges.txt"] + ([] if m["pad"] == "!" else ["tokenizer_config.json", "special_tokens_map.json"])
        for f in own:
            os.symlink(os.path.join("..", "..", "..", "clip-tokenizer", f), os.path.join(tok, f))
        if m["pad"] == "!":  # SD 2.x: the OpenCLIP tokenizer pads with "!" (id 0)
            for f in ["tokenizer_config.json", "special_tokens_map.json"]:
                cfg = json.load(open(os.path.join(REPO, "Models", "clip-tokenizer", f)))
                cfg["pad_token"] = "!"
                write_json(os.path.join(tok, f), cfg)
        write_json(os.path.join(root, "model_index.json"), {
            "_class_name": "StableDiffusionPipeline", "_diffusers_version": __import__("diffusers").__version__,
            "feature_extractor": [None, None], "requires_safety_checker": False, "safety_checker": [None, None],
            "scheduler": ["diffusers", cls.__name__], "text_encoder": ["transformers", "CLIPTextModel"],
            "tokenizer": ["transformers", "CLIPTokenizer"], "unet": ["diffusers", "UNet2DConditionModel"],
            "vae": ["diffusers", "AutoencoderKL"]})
        print("wrote", root)


if __name__ == "__main__":
    main()
