#!/usr/bin/env python3
"""PyTorch's figures for the same ops as bench/LeanBench, as JSON lines (run by bench/ops.sh)."""
import json
import resource
import sys
import time

import torch
import torch.nn.functional as F

reps = int(sys.argv[1]) if len(sys.argv) > 1 else 5
torch.manual_seed(0)


def best(fn, n):
    fn()
    t = float("inf")
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        t = min(t, time.perf_counter() - t0)
    return t


def emit(op, config, sec, flops, peak=None):
    d = {"impl": "torch", "op": op, "config": config, "ms": sec * 1000, "gflops": flops / sec / 1e9}
    if peak is not None:
        d["peak_mb"] = peak
    print(json.dumps(d), flush=True)


with torch.inference_mode():
    x = torch.randn(2, 320, 64, 64)
    w = torch.randn(320, 320, 3, 3) * 0.05
    b = torch.randn(320)
    flops = 2.0 * 2 * 320 * 64 * 64 * 320 * 9
    for dt in (torch.float32, torch.bfloat16):
        for fmt in (torch.channels_last, torch.contiguous_format):
            xx = x.to(dt).contiguous(memory_format=fmt)
            ww = w.to(dt).contiguous(memory_format=fmt)
            bb = b.to(dt)
            t = best(lambda: F.conv2d(xx, ww, bb, padding=1), reps)
            emit("conv3x3_320", f"{'f32' if dt == torch.float32 else 'bf16'} "
                 f"{'nhwc' if fmt == torch.channels_last else 'nchw'}", t, flops)

    B, N, H, D = 2, 4096, 8, 40
    q, k, v = (torch.randn(B, H, N, D) for _ in range(3))
    flops = 4.0 * B * H * N * N * D

    def standard(q, k, v):
        s = torch.baddbmm(torch.empty(B * H, N, N, dtype=q.dtype), q.reshape(B * H, N, D),
                          k.reshape(B * H, N, D).transpose(1, 2), beta=0, alpha=D ** -0.5)
        return torch.bmm(s.softmax(-1), v.reshape(B * H, N, D))

    for dt in (torch.float32, torch.bfloat16):
        qq, kk, vv = q.to(dt), k.to(dt), v.to(dt)
        name = "f32" if dt == torch.float32 else "bf16"
        t = best(lambda: F.scaled_dot_product_attention(qq, kk, vv), max(1, reps // 2))
        emit("attention_4096", f"{name} flash", t, flops)
        t = best(lambda: standard(qq, kk, vv), max(1, reps // 2))
        emit("attention_4096", f"{name} standard", t, flops, peak=(B * H * N * N * qq.element_size() * 2) / 2**20)
