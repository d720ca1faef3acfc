"""VAE tiling/slicing references from diffusers' AutoencoderKL (tiled_decode, _tiled_encode, slicing) on the tiny
sd1-tiny VAE, with tile sizes small enough that tiling triggers on tiny inputs, and with diffusers' default tile taken
from the VAE config's sample_size (64, and 44 by a config override).
Run from the repository root: python3 tools/make_vae_tiling_fixtures.py
Writes Tests/LeanDiffusionTests/Fixtures/vae-tiling/sd1-tiny.safetensors."""
import os, torch
from diffusers import AutoencoderKL
from safetensors.torch import save_file

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "LeanDiffusionTests", "Fixtures")
vae = AutoencoderKL.from_pretrained(os.path.join(root, "pipelines", "sd1-tiny", "vae")).eval()
factor = 2 ** (len(vae.config.block_out_channels) - 1)
torch.manual_seed(0)
ref = {
    "latent_12x10": torch.randn(1, 4, 12, 10),
    "latent_b2_8x8": torch.randn(2, 4, 8, 8),
    "image_96x80": torch.rand(1, 3, 96, 80) * 2 - 1,
}


def configure(sample, overlap=0.25, tiling=True, slicing=False):
    # diffusers' own attribute names (autoencoder_kl.py __init__)
    vae.tile_sample_min_size = sample
    vae.tile_latent_min_size = sample // factor
    vae.tile_overlap_factor = overlap
    vae.use_tiling = tiling
    vae.use_slicing = slicing


with torch.no_grad():
    for sample in (32, 64):  # latent tiles of 4 and 8
        configure(sample)
        ref[f"t{sample}.decode_12x10"] = vae.decode(ref["latent_12x10"]).sample
        ref[f"t{sample}.decode_b2_8x8"] = vae.decode(ref["latent_b2_8x8"]).sample
        post = vae.encode(ref["image_96x80"]).latent_dist
        ref[f"t{sample}.encode_96x80.mean"] = post.mean
        ref[f"t{sample}.encode_96x80.logvar"] = post.logvar
    configure(32, slicing=True)  # slicing per image, tiling within
    ref["t32.decode_b2_8x8_sliced"] = vae.decode(ref["latent_b2_8x8"]).sample
    # overlap 0.5 (stride 2 latent px, blend 16 px) at the 32 px tile
    configure(32, overlap=0.5)
    ref["t32o50.decode_12x10"] = vae.decode(ref["latent_12x10"]).sample
    post = vae.encode(ref["image_96x80"]).latent_dist
    ref["t32o50.encode_96x80.mean"] = post.mean
    ref["t32o50.encode_96x80.logvar"] = post.logvar
    configure(32, tiling=False)
    untiled = vae.decode(ref["latent_12x10"]).sample
    # diffusers' default tile from the VAE config (no sizes set by hand): sd1-tiny's sample_size 64 (latent 8), and
    # the same weights with sample_size 44 (latent int(44 / 8) = 5, not a multiple of the scale factor)
    vae_dir = os.path.join(root, "pipelines", "sd1-tiny", "vae")
    for key, overrides, sample, latent in (("default", {}, 64, 8), ("s44", {"sample_size": 44}, 44, 5)):
        fresh = AutoencoderKL.from_pretrained(vae_dir, **overrides).eval()
        fresh.enable_tiling()
        assert (fresh.tile_sample_min_size, fresh.tile_latent_min_size, fresh.tile_overlap_factor) == (sample, latent, 0.25)
        ref[f"{key}.decode_12x10"] = fresh.decode(ref["latent_12x10"]).sample
        post = fresh.encode(ref["image_96x80"]).latent_dist
        ref[f"{key}.encode_96x80.mean"] = post.mean
        ref[f"{key}.encode_96x80.logvar"] = post.logvar

out = os.path.join(root, "vae-tiling")
os.makedirs(out, exist_ok=True)
save_file({k: v.contiguous().float() for k, v in ref.items()}, os.path.join(out, "sd1-tiny.safetensors"))
for k, v in ref.items():
    print(k, tuple(v.shape))
t, u = ref["t32.decode_12x10"], untiled
print("tiled vs untiled max|diff|", (t - u).abs().max().item(), "max|untiled|", u.abs().max().item())
