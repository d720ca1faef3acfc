"""VAE tiling/slicing references from diffusers' AutoencoderKL (tiled_decode, _tiled_encode, slicing) on the tiny
sd1-tiny VAE, with tile sizes small enough that tiling triggers on tiny inputs.
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

out = os.path.join(root, "vae-tiling")
os.makedirs(out, exist_ok=True)
save_file({k: v.contiguous().float() for k, v in ref.items()}, os.path.join(out, "sd1-tiny.safetensors"))
for k, v in ref.items():
    print(k, tuple(v.shape))
t, u = ref["t32.decode_12x10"], untiled
print("tiled vs untiled max|diff|", (t - u).abs().max().item(), "max|untiled|", u.abs().max().item())
