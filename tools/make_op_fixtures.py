#!/usr/bin/env python3
"""Reference inputs and outputs for every LeanCore op, computed by PyTorch (and diffusers where it owns the op).

Writes one small safetensors file per case into Tests/LeanCoreTests/Fixtures/ops/. Every tensor is float32; scalar
parameters ride in the header metadata. Re-runnable and deterministic; CI never runs it (it needs torch).

    python3 tools/make_op_fixtures.py
"""
import json
import os

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

OUT = os.path.join(os.path.dirname(__file__), "..", "Tests", "LeanCoreTests", "Fixtures", "ops")
os.makedirs(OUT, exist_ok=True)
g = torch.Generator().manual_seed(1234)


def rnd(*shape, scale=1.0):
    return torch.randn(*shape, generator=g) * scale


def save(name, tensors, **meta):
    save_file({k: v.contiguous().float() for k, v in tensors.items()}, os.path.join(OUT, name + ".safetensors"),
              metadata={k: json.dumps(v) for k, v in meta.items()})


with torch.no_grad():
    # Convolutions: 3x3 pad 1 stride 1 and 2, the VAE's pad-then-stride-2, 1x1.
    x = rnd(2, 8, 10, 12)
    w, b = rnd(16, 8, 3, 3, scale=0.2), rnd(16)
    save("conv3x3", {"x": x, "weight": w, "bias": b, "out": F.conv2d(x, w, b, stride=1, padding=1)},
         stride=1, padding=[1, 1, 1, 1])
    save("conv3x3_stride2", {"x": x, "weight": w, "bias": b, "out": F.conv2d(x, w, b, stride=2, padding=1)},
         stride=2, padding=[1, 1, 1, 1])
    save("conv_vae_downsample", {"x": x, "weight": w, "bias": b,
                                 "out": F.conv2d(F.pad(x, (0, 1, 0, 1)), w, b, stride=2, padding=0)},
         stride=2, padding=[0, 0, 1, 1])  # top, left, bottom, right
    w1 = rnd(4, 8, 1, 1, scale=0.3)
    save("conv1x1", {"x": x, "weight": w1, "out": F.conv2d(x, w1, None)}, stride=1, padding=[0, 0, 0, 0])

    # Linear and batched matmul.
    x = rnd(3, 5, 24)
    w, b = rnd(20, 24, scale=0.2), rnd(20)
    save("linear", {"x": x, "weight": w, "bias": b, "out": F.linear(x, w, b)})
    save("linear_nobias", {"x": x, "weight": w, "out": F.linear(x, w)})

    # Normalisations.
    x = rnd(2, 32, 6, 5, scale=2) + 0.5
    gw, gb = rnd(32), rnd(32)
    gn = F.group_norm(x, 8, gw, gb, eps=1e-6)
    save("group_norm", {"x": x, "weight": gw, "bias": gb, "out": gn}, groups=8, eps=1e-6, silu=False)
    save("group_norm_silu", {"x": x, "weight": gw, "bias": gb, "out": F.silu(gn)}, groups=8, eps=1e-6, silu=True)
    x3 = rnd(2, 64, 40) * 3 + 1  # the transformer's (B, C, HW) group norm before proj_in
    gw3, gb3 = rnd(64), rnd(64)
    save("group_norm_3d", {"x": x3, "weight": gw3, "bias": gb3, "out": F.group_norm(x3, 32, gw3, gb3, eps=1e-6)},
         groups=32, eps=1e-6, silu=False)
    x = rnd(2, 7, 48) * 2
    lw, lb = rnd(48), rnd(48)
    save("layer_norm", {"x": x, "weight": lw, "bias": lb, "out": F.layer_norm(x, (48,), lw, lb, eps=1e-5)}, eps=1e-5)

    # Activations.
    x = rnd(1000, scale=3)
    save("silu", {"x": x, "out": F.silu(x)})
    save("gelu", {"x": x, "out": F.gelu(x)})
    save("gelu_tanh", {"x": x, "out": F.gelu(x, approximate="tanh")})
    save("quick_gelu", {"x": x, "out": x * torch.sigmoid(1.702 * x)})
    x = rnd(2, 5, 64, scale=2)
    h, gate = x.chunk(2, dim=-1)
    save("geglu", {"x": x, "out": h * F.gelu(gate)})
    x = rnd(3, 7, 50, scale=4)
    save("softmax", {"x": x, "out": F.softmax(x, dim=-1)})

    # Shape ops.
    x = rnd(2, 3, 5, 4)
    save("upsample_nearest2x", {"x": x, "out": F.interpolate(x, scale_factor=2.0, mode="nearest")})
    a, c = rnd(2, 3, 4, 5), rnd(2, 5, 4, 5)
    save("concat_channels", {"a": a, "b": c, "out": torch.cat([a, c], dim=1)})
    table = rnd(50, 16)
    ids = torch.tensor([49 % 50, 0, 7, 7, 31])
    save("embedding", {"table": table, "ids": ids.float(), "out": F.embedding(ids, table)})
    x, v = rnd(2, 6, 3, 4), rnd(2, 6)
    save("add_channel_bias", {"x": x, "v": v, "out": x + v[:, :, None, None]})
    x, y = rnd(4, 33), rnd(4, 33)
    save("binary", {"a": x, "b": y, "add": x + y, "mul": x * y, "axpby": x * 0.7 + y * -1.3})

    from diffusers.models.embeddings import get_timestep_embedding
    ts = torch.tensor([999.0, 1.0, 500.0, 0.0])
    save("timestep_embedding", {"t": ts, "out": get_timestep_embedding(ts, 320, flip_sin_to_cos=True,
                                                                       downscale_freq_shift=0)},
         dim=320, flip=True, shift=0.0)
    save("timestep_embedding_shift1", {"t": ts, "out": get_timestep_embedding(ts, 64, flip_sin_to_cos=False,
                                                                              downscale_freq_shift=1)},
         dim=64, flip=False, shift=1.0)

    # Attention on (B, N, H*D): self-attention with head dim 40, cross-attention, and CLIP's causal form.
    def attn(q, k, v, heads, causal=False):
        B, Nq, C = q.shape
        d = C // heads
        sh = lambda t: t.reshape(B, -1, heads, d).transpose(1, 2)
        o = F.scaled_dot_product_attention(sh(q), sh(k), sh(v), is_causal=causal)
        return o.transpose(1, 2).reshape(B, Nq, C)

    q, k, v = rnd(2, 130, 80), rnd(2, 130, 80), rnd(2, 130, 80)
    save("attention_self", {"q": q, "k": k, "v": v, "out": attn(q, k, v, 2)}, heads=2, causal=False)
    q, k, v = rnd(2, 70, 64), rnd(2, 77, 64), rnd(2, 77, 64)
    save("attention_cross", {"q": q, "k": k, "v": v, "out": attn(q, k, v, 4)}, heads=4, causal=False)
    q, k, v = rnd(2, 77, 64), rnd(2, 77, 64), rnd(2, 77, 64)
    save("attention_causal", {"q": q, "k": k, "v": v, "out": attn(q, k, v, 4, causal=True)}, heads=4, causal=True)

print("wrote", len(os.listdir(OUT)), "fixtures to", os.path.normpath(OUT))
