#!/usr/bin/env python3
"""VAE tiling side by side: one tiled decode of seeded random latents at each --sizes, by diffusers
(`AutoencoderKL.enable_tiling()`, torch_dtype) and by LeanDiffusion (`lean-bench-vae`), each in its own child process.
Prints decode seconds and peak RSS per side, and the growth of the peak from the smallest to the largest size
(issue target: within 10%, and within 1 GB above the weights).

    swift build -c release --product lean-bench-vae
    python3 bench/vae_tiling.py --model /work/sd15-random --sizes 1024,2048 --dtype bf16

Peak RSS of a child is its own VmHWM (read by the child at the end), so the parent's size never leaks into it.
"""
import argparse
import datetime
import json
import os
import subprocess
import sys
import time

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))


def diffusers_child(vae_dir, size, dtype, tiled):
    t0 = time.perf_counter()
    import torch
    from diffusers import AutoencoderKL

    torch.set_num_threads(os.cpu_count() or 1)
    dt = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
    vae = AutoencoderKL.from_pretrained(vae_dir, torch_dtype=dt)
    if tiled:
        vae.enable_tiling()
    loaded = time.perf_counter()
    g = torch.Generator().manual_seed(7)
    z = (torch.rand(1, 4, size // 8, size // 8, generator=g) * 2 - 1).to(dt)
    t1 = time.perf_counter()
    with torch.inference_mode():
        img = vae.decode(z).sample
    t2 = time.perf_counter()
    hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:")) / 1024
    print(json.dumps({"impl": "diffusers", "size": size, "dtype": dtype, "tiled": tiled, "load_s": loaded - t0,
                      "decode_s": t2 - t1, "peak_rss_mb": hwm, "finite": bool(torch.isfinite(img).all())}))


def run(argv):
    p = subprocess.run(argv, capture_output=True, text=True, cwd=REPO)
    if p.returncode != 0:
        return {"error": (p.stderr or p.stdout).strip()[-400:]}
    return json.loads(p.stdout.strip().splitlines()[-1])


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        return diffusers_child(sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5] == "tiled")
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="/work/sd15-random", help="a pipeline folder (its vae/ is used)")
    ap.add_argument("--sizes", default="1024,2048")
    ap.add_argument("--dtype", default="bf16", choices=["fp32", "bf16", "fp16"])
    ap.add_argument("--binary", default=os.path.join(REPO, ".build", "release", "lean-bench-vae"))
    ap.add_argument("--skip-diffusers", action="store_true")
    ap.add_argument("--results", default=None)
    args = ap.parse_args()
    vae_dir = os.path.join(args.model, "vae")
    sizes = [int(s) for s in args.sizes.split(",")]
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    results = args.results or os.path.join(REPO, "bench", "results", f"vae-tiling-{stamp}.jsonl")
    rows = []
    for size in sizes:
        row = {"size": size, "dtype": args.dtype, "time": stamp}
        print(f"  {size}x{size}: ours ...", flush=True)
        row["ours"] = run([args.binary, vae_dir, str(size), args.dtype, "tiled"])
        if not args.skip_diffusers:
            print(f"  {size}x{size}: diffusers ...", flush=True)
            row["diffusers"] = run([sys.executable, __file__, "--child", vae_dir, str(size), args.dtype, "tiled"])
        rows.append(row)
        with open(results, "a") as fh:
            fh.write(json.dumps(row) + "\n")
    print(f"# tiled VAE decode, {args.dtype}, tile 512 px / overlap 0.25, {os.cpu_count()} threads; {vae_dir}")
    print(f"{'size':>10} {'diffusers s':>12} {'diffusers peak MB':>18} {'ours s':>8} {'ours peak MB':>13} "
          f"{'ours weights MB':>16} {'speedup':>8}")
    for r in rows:
        d, o = r.get("diffusers", {}), r["ours"]
        sp = d.get("decode_s", 0) / o["decode_s"] if d.get("decode_s") and o.get("decode_s") else float("nan")
        print(f"{r['size']:>10} {d.get('decode_s', float('nan')):>12.1f} {d.get('peak_rss_mb', float('nan')):>18.0f} "
              f"{o.get('decode_s', float('nan')):>8.1f} {o.get('peak_rss_mb', float('nan')):>13.0f} "
              f"{o.get('weights_mb', float('nan')):>16.0f} {sp:>7.2f}x")
    for side in ("ours", "diffusers"):
        peaks = [r[side]["peak_rss_mb"] for r in rows if side in r and "peak_rss_mb" in r[side]]
        if len(peaks) >= 2:
            print(f"{side}: peak RSS {sizes[-1]} vs {sizes[0]}: {100 * (peaks[-1] / peaks[0] - 1):+.1f}%")
    print(f"results appended to {results}")


if __name__ == "__main__":
    main()
