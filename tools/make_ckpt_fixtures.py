#!/usr/bin/env python3
"""PyTorch .ckpt fixtures for the restricted unpickler (Tests/LeanDiffusionTests/Fixtures/ckpt):
  state.ckpt          torch.save of a Lightning-style checkpoint: {"global_step", "epoch", "state_dict": OrderedDict}
                      with f32 / f16 / bf16 / int64 tensors, a transposed (non-contiguous) view, two views sharing one
                      storage at different offsets, a 0-d tensor and an empty one
  state.safetensors   the same state_dict (contiguous), what converting state.ckpt must give
  evil.ckpt           a zip checkpoint whose data.pkl calls posix.system to create a marker file: it must be refused
                      and the marker never appear (the test checks both)
Run: python3 tools/make_ckpt_fixtures.py
"""
import collections
import io
import os
import pickle
import zipfile

import torch
from safetensors.torch import save_file

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(REPO, "Tests/LeanDiffusionTests/Fixtures/ckpt")
MARKER = "/tmp/lean-diffusion-ckpt-marker"


def main():
    os.makedirs(OUT, exist_ok=True)
    g = torch.Generator().manual_seed(0)
    base = torch.randn(6, 4, generator=g)
    shared = torch.randn(10, generator=g)
    sd = collections.OrderedDict()
    sd["model.a.weight"] = torch.randn(3, 5, generator=g)
    sd["model.b.weight"] = torch.randn(2, 3, 3, 3, generator=g).half()
    sd["model.c.bias"] = torch.randn(7, generator=g).bfloat16()
    sd["model.t.weight"] = base.t()                      # strides (1, 4): not contiguous
    sd["model.s1"] = shared[2:5]                          # offset 2 into a shared storage
    sd["model.s2"] = shared[5:9].view(2, 2)               # offset 5, same storage
    sd["model.scalar"] = torch.tensor(3.5)
    sd["model.empty"] = torch.zeros(0, 4)
    sd["model.steps"] = torch.arange(4, dtype=torch.int64)
    ckpt = {"epoch": 3, "global_step": 1234, "pytorch-lightning_version": "1.4.2", "state_dict": sd}
    torch.save(ckpt, os.path.join(OUT, "state.ckpt"))
    save_file({k: v.contiguous() for k, v in sd.items()}, os.path.join(OUT, "state.safetensors"))

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {MARKER}",))
    buf = io.BytesIO()
    pickle.dump({"state_dict": Evil()}, buf, protocol=2)
    with zipfile.ZipFile(os.path.join(OUT, "evil.ckpt"), "w", zipfile.ZIP_STORED) as z:
        z.writestr("evil/data.pkl", buf.getvalue())
        z.writestr("evil/version", "3\n")
    print("wrote", OUT)


if __name__ == "__main__":
    main()
