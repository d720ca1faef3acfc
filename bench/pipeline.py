#!/usr/bin/env python3
"""Side-by-side pipeline benchmark: LeanDiffusion's CLI vs diffusers, same SD1.5-shaped pipeline, same machine.

    python3 bench/pipeline.py --model /work/sd15-random [--configs fp32,bf16,...] [--steps N] [--size 512]
                              [--results bench/results/pipeline-<date>.jsonl] [--binary .build/release/lean-diffusion]

Build the model with tools/make_sd15_random.py and the CLI with `swift build -c release --product lean-diffusion`.

For each configuration it runs, one after the other, each in its own child process:
  * diffusers: StableDiffusionPipeline.from_pretrained(model) + the configuration's setup, one image with the model's
    scheduler (PNDM for SD1.5), guidance 7.5, seed 0 (torch.Generator("cpu")).  Phases are timed inside the child:
    load, text encoding (encode_prompt), each UNet step (UNet pre-hook -> callback_on_step_end), VAE decode
    (vae.decode), and the whole pipe() call.
  * ours: `lean-diffusion generate --model M --steps N --width S --height S --seed 0 --quiet --dtype D ...`.  If the CLI
    has `--report FILE.json` its phase times are used; otherwise s/step is estimated as
    (wall(N steps) - wall(1 step)) / (N - 1) from a second, 1-step run (marked "est" in the table).
The peak RSS of each child comes from os.wait4() on its pid (ru_maxrss).  Linux starts a child's ru_maxrss at its
parent's RSS, so this parent never imports torch (it stays ~15 MB, printed in the header).  "total s" is the child's wall time end to
end (process start, imports, weight loading, generation, PNG/no PNG), for both sides.

Configurations (name: diffusers / ours; a side is skipped when it has no equivalent or the CLI lacks the flag):
  fp32            defaults                                   / --dtype fp32
  bf16            torch_dtype=torch.bfloat16                 / --dtype bf16
  bf16-sliced     bf16 + pipe.enable_attention_slicing()     / --dtype bf16 --attention sliced
  fp32-offload    (skipped: model offload is meaningless on CPU) / --dtype fp32 --offload model
  fp32-seqoffload (skipped)                                  / --dtype fp32 --offload sequential
  bf16-seqoffload (skipped)                                  / --dtype bf16 --offload sequential (default budget)
  bf16-seqoffload-40 (skipped)                               / ... --offload-budget 40
  bf16-vae-tiling bf16 + pipe.vae.enable_tiling()            / --dtype bf16 --vae-tiling
  bf16-vae-slicing bf16 + pipe.vae.enable_slicing()          / --dtype bf16 --vae-slicing
"""

import argparse
import datetime
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
PROMPT = "a photograph of an astronaut riding a horse"

# name -> (diffusers setup or None, our flags, CLI options our flags need)
CONFIGS = {
    "fp32": ({"dtype": "fp32"}, ["--dtype", "fp32"], []),
    "bf16": ({"dtype": "bf16"}, ["--dtype", "bf16"], []),
    "bf16-sliced": ({"dtype": "bf16", "attention_slicing": True}, ["--dtype", "bf16", "--attention", "sliced"], []),
    "fp32-offload": (None, ["--dtype", "fp32", "--offload", "model"], ["--offload"]),
    "fp32-seqoffload": (None, ["--dtype", "fp32", "--offload", "sequential"], ["--offload"]),
    "bf16-offload": (None, ["--dtype", "bf16", "--offload", "model"], ["--offload"]),
    "bf16-seqoffload": (None, ["--dtype", "bf16", "--offload", "sequential"], ["--offload"]),
    "bf16-seqoffload-40": (None, ["--dtype", "bf16", "--offload", "sequential", "--offload-budget", "40"], ["--offload"]),
    "bf16-noplan": (None, ["--dtype", "bf16", "--no-plan"], ["--no-plan"]),
    "bf16-nchw": ({"dtype": "bf16"}, ["--dtype", "bf16", "--layout", "nchw"], ["--layout"]),
    "bf16-vae-tiling": ({"dtype": "bf16", "vae_tiling": True}, ["--dtype", "bf16", "--vae-tiling"], ["--vae-tiling"]),
    "bf16-vae-slicing": ({"dtype": "bf16", "vae_slicing": True}, ["--dtype", "bf16", "--vae-slicing"],
                         ["--vae-slicing"]),
}
DEFAULT_CONFIGS = ["fp32", "bf16", "bf16-sliced", "bf16-offload", "bf16-seqoffload", "bf16-seqoffload-40", "bf16-noplan",
                   "bf16-vae-tiling"]


# ------------------------------------------------------------------------------------------------------------------
# child: diffusers


def diffusers_child(spec_path):
    with open(spec_path) as fh:
        spec = json.load(fh)
    t_start = time.perf_counter()
    import torch
    from diffusers import StableDiffusionPipeline

    torch.set_num_threads(os.cpu_count() or 1)
    t_import = time.perf_counter()
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[spec["setup"]["dtype"]]
    pipe = StableDiffusionPipeline.from_pretrained(spec["model"], torch_dtype=dtype)
    pipe.set_progress_bar_config(disable=True)
    if spec["setup"].get("attention_slicing"):
        pipe.enable_attention_slicing()
    if spec["setup"].get("vae_tiling"):
        pipe.vae.enable_tiling()
    if spec["setup"].get("vae_slicing"):
        pipe.vae.enable_slicing()
    t_loaded = time.perf_counter()

    marks = {"encode": [], "unet_start": [], "step_end": [], "decode": []}

    def timed(name, fn):
        def wrapper(*a, **k):
            t0 = time.perf_counter()
            r = fn(*a, **k)
            marks[name].append(time.perf_counter() - t0)
            return r
        return wrapper

    pipe.encode_prompt = timed("encode", pipe.encode_prompt)
    pipe.vae.decode = timed("decode", pipe.vae.decode)
    pipe.unet.register_forward_pre_hook(lambda m, a: marks["unet_start"].append(time.perf_counter()))

    def on_step_end(p, i, t, kw):
        marks["step_end"].append(time.perf_counter())
        return kw

    g = torch.Generator("cpu").manual_seed(spec["seed"])
    t0 = time.perf_counter()
    with torch.inference_mode():
        out = pipe(PROMPT, num_inference_steps=spec["steps"], width=spec["size"], height=spec["size"],
                   generator=g, callback_on_step_end=on_step_end, output_type="np")
    t1 = time.perf_counter()
    img = out.images[0]
    steps = [e - s for s, e in zip(marks["unet_start"], marks["step_end"])]
    res = {
        "import_s": t_import - t_start,
        "load_s": t_loaded - t_import,
        "text_s": sum(marks["encode"]),
        "step_s": steps,
        "decode_s": sum(marks["decode"]),
        "generate_s": t1 - t0,
        "image_finite": bool(__import__("numpy").isfinite(img).all()),
        "image_mean": float(img.mean()),
        "image_std": float(img.std()),
    }
    with open(spec["result"], "w") as fh:
        json.dump(res, fh)


# ------------------------------------------------------------------------------------------------------------------
# parent


def run_child(argv, log_path, env=None):
    """Run argv to completion; return (exit code, wall seconds, peak RSS MB) using wait4 on the child's pid."""
    with open(log_path, "w") as log:
        t0 = time.perf_counter()
        p = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
    return p.returncode, wall, ru.ru_maxrss / 1024.0  # Linux: ru_maxrss in KiB


def parent_rss_mb():
    """This process's RSS: every child's ru_maxrss is at least this."""
    try:
        with open("/proc/self/status") as fh:
            return next(int(l.split()[1]) for l in fh if l.startswith("VmRSS:")) / 1024.0
    except (OSError, StopIteration):
        return float("nan")


def tail(path, n=6):
    try:
        with open(path, errors="replace") as fh:
            return "".join(fh.readlines()[-n:]).strip()
    except OSError:
        return ""


def machine_name():
    model, cpus = platform.processor() or "?", os.cpu_count()
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        m = re.search(r"^Model name:\s*(.+)$", out, re.M)
        if m:
            model = m.group(1).strip()
        flags = re.search(r"^Flags:\s*(.+)$", out, re.M)
        isa = [f for f in ("avx512f", "avx512_bf16", "amx_bf16") if flags and f in flags.group(1).split()]
    except OSError:
        isa = []
    return f"{model}, {cpus} CPUs" + (f" ({', '.join(isa)})" if isa else "")


def run_diffusers(args, name, setup, workdir):
    result = os.path.join(workdir, f"diffusers-{name}.json")
    spec = os.path.join(workdir, f"diffusers-{name}.spec.json")
    with open(spec, "w") as fh:
        json.dump({"model": args.model, "setup": setup, "steps": args.steps, "size": args.size, "seed": 0,
                   "result": result}, fh)
    log = os.path.join(workdir, f"diffusers-{name}.log")
    rc, wall, rss = run_child([sys.executable, os.path.abspath(__file__), "--child-diffusers", spec], log)
    if rc != 0 or not os.path.exists(result):
        return {"error": f"exit {rc}: {tail(log)}", "total_s": wall, "peak_rss_mb": rss}
    with open(result) as fh:
        r = json.load(fh)
    steps = r["step_s"]
    return {"total_s": wall, "peak_rss_mb": rss, "s_per_step": sum(steps) / len(steps) if steps else None,
            "per_step": "measured", **r}


def our_flags_available(binary):
    out = subprocess.run([binary, "generate", "--help"], capture_output=True, text=True)
    text = out.stdout + out.stderr
    return set(re.findall(r"(--[a-z][a-z0-9-]*)", text))


LOAD_RE = re.compile(r"loaded .* in ([0-9.e+-]+) (seconds|ms|milliseconds)")


CALLS_RE = re.compile(r"(\d+) UNet calls")


def parse_calls(log_path):
    try:
        with open(log_path, errors="replace") as fh:
            m = CALLS_RE.search(fh.read())
    except OSError:
        return None
    return int(m.group(1)) if m else None


def parse_load(log_path):
    try:
        with open(log_path, errors="replace") as fh:
            m = LOAD_RE.search(fh.read())
    except OSError:
        return None
    if not m:
        return None
    v = float(m.group(1))
    return v / 1000 if m.group(2) != "seconds" else v


def steps_from_report(rep):
    """Mean seconds per UNet call from our --report JSON (phases named "step N"), like diffusers' side: every call,
    the first (which creates primitives and records the plan) included."""
    phases = rep.get("phases")
    if isinstance(phases, list):
        secs = [p["seconds"] for p in phases if isinstance(p, dict) and str(p.get("name", "")).startswith("step ")]
        if secs:
            return sum(secs) / len(secs)
    for key in ("step_seconds", "steps_s", "step_s", "unet_steps_s", "steps"):
        v = rep.get(key)
        if isinstance(v, list) and v and all(isinstance(x, (int, float)) for x in v):
            return sum(v) / len(v)
        if isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            secs = [x.get("seconds", x.get("s")) for x in v]
            if all(isinstance(x, (int, float)) for x in secs):
                return sum(secs) / len(secs)
    for key in ("seconds_per_step", "s_per_step", "mean_step_s"):
        if isinstance(rep.get(key), (int, float)):
            return rep[key]
    for v in rep.values():
        if isinstance(v, dict):
            s = steps_from_report(v)
            if s is not None:
                return s
    return None


def run_ours(args, name, flags, workdir, available):
    def argv(steps, out, extra=()):
        return [args.binary, "generate", "--model", args.model, "--prompt", PROMPT, "--steps", str(steps),
                "--width", str(args.size), "--height", str(args.size), "--seed", "0", "--quiet",
                "--output", out, *flags, *extra]

    png = os.path.join(workdir, f"ours-{name}.png")
    log = os.path.join(workdir, f"ours-{name}.log")
    extra = ["--verbose"] if "--verbose" in available else []
    report = None
    if "--report" in available:
        report = os.path.join(workdir, f"ours-{name}.report.json")
        extra += ["--report", report]
    rc, wall, rss = run_child(argv(args.steps, png, extra), log)
    if rc != 0:
        return {"error": f"exit {rc}: {tail(log)}", "total_s": wall, "peak_rss_mb": rss}
    res = {"total_s": wall, "peak_rss_mb": rss, "load_s": parse_load(log), "unet_calls": parse_calls(log)}
    if report and os.path.exists(report):
        with open(report) as fh:
            rep = json.load(fh)
        res["report"] = rep
        s = steps_from_report(rep) if isinstance(rep, dict) else None
        if s is not None:
            res.update(s_per_step=s, per_step="report")
            return res
    if args.steps > 1:
        log1 = os.path.join(workdir, f"ours-{name}-1step.log")
        rc1, wall1, rss1 = run_child(argv(1, os.path.join(workdir, f"ours-{name}-1step.png"),
                                          ["--verbose"] if "--verbose" in available else []), log1)
        if rc1 == 0:
            calls1 = parse_calls(log1)
            extra_calls = (res["unet_calls"] - calls1) if res["unet_calls"] and calls1 else args.steps - 1
            res.update(s_per_step=(wall - wall1) / max(extra_calls, 1), per_step="est", total_1step_s=wall1,
                       peak_rss_1step_mb=rss1, unet_calls_1step=calls1)
            return res
        res["error_1step"] = f"exit {rc1}: {tail(log1)}"
    res.update(s_per_step=None, per_step="n/a")
    return res


def fmt(v, f="{:.1f}"):
    return "—" if v is None else f.format(v)


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--child-diffusers":
        return diffusers_child(sys.argv[2])
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="/work/sd15-random")
    ap.add_argument("--configs", default=",".join(DEFAULT_CONFIGS),
                    help=f"comma-separated, from: {', '.join(CONFIGS)}")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--binary", default=os.path.join(REPO, ".build", "release", "lean-diffusion"))
    ap.add_argument("--results", default=None, help="JSON-lines output (default bench/results/pipeline-<time>.jsonl)")
    ap.add_argument("--skip-diffusers", action="store_true")
    ap.add_argument("--skip-ours", action="store_true")
    args = ap.parse_args()
    args.model = os.path.abspath(args.model)
    names = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = [n for n in names if n not in CONFIGS]
    if unknown:
        ap.error(f"unknown configs {unknown}; known: {list(CONFIGS)}")
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    results = args.results or os.path.join(REPO, "bench", "results", f"pipeline-{stamp}.jsonl")
    os.makedirs(os.path.dirname(os.path.abspath(results)), exist_ok=True)

    available = set()
    if not args.skip_ours:
        if not os.access(args.binary, os.X_OK):
            sys.exit(f"{args.binary} not found: swift build -c release --product lean-diffusion")
        available = our_flags_available(args.binary)

    machine = machine_name()
    # Versions from a child: importing torch here would make this process ~700 MB, and a child's ru_maxrss starts
    # at its parent's RSS (Linux carries it across fork/vfork + exec), which would floor every peak we measure.
    probe = subprocess.run([sys.executable, "-c", "import diffusers, torch; print(diffusers.__version__, torch.__version__)"],
                           capture_output=True, text=True)
    versions = ("diffusers {}, torch {}".format(*probe.stdout.split()) if probe.returncode == 0
                else "diffusers not importable")
    header = (f"# {machine}; bench parent RSS {parent_rss_mb():.0f} MB; {args.size}x{args.size}, {args.steps} steps, PNDM, CFG 7.5 (UNet batch 2), seed 0; "
              f"{versions}; model {args.model}")
    print(header, flush=True)
    rows = []
    workdir = tempfile.mkdtemp(prefix="lean-bench-pipeline-")
    with open(results, "a") as out:
        for name in names:
            setup, flags, needs = CONFIGS[name]
            row = {"config": name, "machine": machine, "steps": args.steps, "size": args.size, "time": stamp,
                   "diffusers_setup": setup, "our_flags": flags}
            if setup is None or args.skip_diffusers:
                row["diffusers"] = {"skipped": "no diffusers equivalent on CPU" if setup is None else "--skip-diffusers"}
            else:
                print(f"  {name}: diffusers ...", flush=True)
                row["diffusers"] = run_diffusers(args, name, setup, workdir)
            missing = [f for f in needs if f not in available]
            if args.skip_ours:
                row["ours"] = {"skipped": "--skip-ours"}
            elif missing:
                row["ours"] = {"skipped": f"CLI lacks {' '.join(missing)}"}
            else:
                print(f"  {name}: ours ...", flush=True)
                row["ours"] = run_ours(args, name, flags, workdir, available)
            out.write(json.dumps(row) + "\n")
            out.flush()
            rows.append(row)
            for side in ("diffusers", "ours"):
                if "error" in row[side]:
                    print(f"  {name}: {side} FAILED: {row[side]['error']}", flush=True)

    print()
    print(header)
    cols = ["config", "diffusers total s", "diffusers s/step", "diffusers peak RSS MB", "ours total s", "ours s/step",
            "ours peak RSS MB", "speedup", "RSS ratio"]
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for row in rows:
        d, o = row["diffusers"], row["ours"]
        dok, ook = "total_s" in d and "error" not in d, "total_s" in o and "error" not in o
        step_o = fmt(o.get("s_per_step"), "{:.2f}") + (" (est)" if o.get("per_step") == "est" else "") if ook else "—"
        cells = [row["config"],
                 fmt(d.get("total_s")) if dok else ("skip" if "skipped" in d else "FAIL"),
                 fmt(d.get("s_per_step"), "{:.2f}") if dok else "—",
                 fmt(d.get("peak_rss_mb"), "{:.0f}") if dok else "—",
                 fmt(o.get("total_s")) if ook else ("skip" if "skipped" in o else "FAIL"),
                 step_o,
                 fmt(o.get("peak_rss_mb"), "{:.0f}") if ook else "—",
                 f"{d['total_s'] / o['total_s']:.2f}x" if dok and ook else "—",
                 f"{o['peak_rss_mb'] / d['peak_rss_mb']:.2f}" if dok and ook else "—"]
        print("| " + " | ".join(cells) + " |")
    print("\ns/step = seconds per UNet call (batch 2 with CFG; PNDM makes steps+1 calls); diffusers: mean of measured "
          "calls; (est) = (wall(N steps) - wall(1 step)) / extra UNet calls.")
    print("speedup = diffusers total / ours total (>1: ours faster); RSS ratio = ours peak / diffusers peak.")
    print("diffusers phases (s): " + "; ".join(
        f"{r['config']}: import {r['diffusers']['import_s']:.1f}, load {r['diffusers']['load_s']:.1f}, "
        f"pipe() {r['diffusers']['generate_s']:.1f}, "
        f"text {r['diffusers']['text_s']:.2f}, steps {' '.join(f'{s:.1f}' for s in r['diffusers']['step_s'])}, "
        f"decode {r['diffusers']['decode_s']:.1f}"
        for r in rows if "load_s" in r["diffusers"]))
    ours_load = [f"{r['config']}: {r['ours']['load_s']:.2f}" for r in rows if r["ours"].get("load_s") is not None]
    if ours_load:
        print("ours load s (from --verbose): " + "; ".join(ours_load))
    for r in rows:
        if "skipped" in r["ours"]:
            print(f"ours {r['config']}: skipped ({r['ours']['skipped']})")
    print(f"results appended to {results}; logs in {workdir}")


if __name__ == "__main__":
    sys.exit(main())
