#!/usr/bin/env python3
"""Regenerates Tests/LeanDiffusionTests/Fixtures/schedulers/* from real torch + diffusers (CPU, float32).

Usage: python tools/make_scheduler_fixtures.py [output_dir]
CI never runs this; the Swift tests only read its output.
"""
import json, math, os, sys
import numpy as np
import torch
import diffusers
from diffusers import (DDIMScheduler, PNDMScheduler, EulerDiscreteScheduler, EulerAncestralDiscreteScheduler,
                       DPMSolverMultistepScheduler, UniPCMultistepScheduler, LCMScheduler)

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "LeanDiffusionTests", "Fixtures", "schedulers")
os.makedirs(OUT, exist_ok=True)

SD15 = {"_class_name": "PNDMScheduler", "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
        "num_train_timesteps": 1000, "set_alpha_to_one": False, "skip_prk_steps": True, "steps_offset": 1,
        "trained_betas": None, "clip_sample": False}
SD2V = {"_class_name": "DDIMScheduler", "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
        "num_train_timesteps": 1000, "set_alpha_to_one": False, "skip_prk_steps": True, "steps_offset": 1,
        "trained_betas": None, "clip_sample": False, "prediction_type": "v_prediction"}
CLASSES = {"pndm": PNDMScheduler, "ddim": DDIMScheduler, "euler": EulerDiscreteScheduler,
           "euler-a": EulerAncestralDiscreteScheduler, "dpm++2m": DPMSolverMultistepScheduler,
           "unipc": UniPCMultistepScheduler, "lcm": LCMScheduler}
SHAPE = (1, 4, 8, 8)
STEPS = 10
NOISE_SEED = 1234  # generator passed to step() (Euler ancestral draws from it)

def randn(seed, shape):
    return torch.randn(shape, generator=torch.Generator("cpu").manual_seed(seed), dtype=torch.float32)

latent0 = randn(0, SHAPE)
fixed_noise = randn(1, SHAPE)
blob = bytearray()
blob += latent0.numpy().astype("<f4").tobytes()
blob += fixed_noise.numpy().astype("<f4").tobytes()
cases = []

def run_case(name, kind, folder_config, steps=STEPS, extra=None):
    """folder_config: the scheduler_config.json dict; the scheduler is built like a pipeline would when the user
    picks `kind`: folder class loaded from the json, then Kind.from_config(folder.config) if the class differs."""
    cfg = dict(folder_config)
    if extra:
        cfg.update(extra)
    folder_cls = getattr(diffusers, cfg["_class_name"])
    folder = folder_cls.from_config(cfg)
    cls = CLASSES[kind]
    sched = folder if cls is folder_cls else cls.from_config(folder.config)
    sched.set_timesteps(steps)
    gen = torch.Generator("cpu").manual_seed(NOISE_SEED)
    ins = float(sched.init_noise_sigma)
    x = latent0 * sched.init_noise_sigma
    coeffs, offset = [], len(blob)
    ts = sched.timesteps
    for i, t in enumerate(ts):
        inp = sched.scale_model_input(x, t)
        c = float(np.float32(0.05 * math.cos(float(t) / 100.0)))
        mo = 0.1 * inp + c * fixed_noise
        # PNDM/UniPC step() take no generator; Euler ancestral draws randn_tensor(shape, generator=gen) each step
        kw = {"generator": gen} if kind in ("euler-a", "euler", "ddim", "dpm++2m", "lcm") else {}
        x = sched.step(mo, t, x, **kw).prev_sample
        coeffs.append(c)
        blob.extend(x.numpy().astype("<f4").tobytes())
    sig = getattr(sched, "sigmas", None)
    cases.append({
        "name": name, "kind": kind, "config": cfg, "steps": steps,
        "timesteps": [float(v) for v in ts.tolist()],
        "sigmas": [float(v) for v in sig.tolist()] if sig is not None else None,
        "init_noise_sigma": ins, "coeffs": coeffs, "offset": offset, "count": len(ts),
        "resolved_spacing": sched.config.timestep_spacing, "resolved_prediction": sched.config.prediction_type,
    })

for kind in CLASSES:
    for pname, base in (("eps", SD15), ("v", SD2V)):
        # the from_config class change with the folder's own keys only (diffusers' defaults for the rest)
        run_case(f"{kind}-{pname}-fromconfig", kind, base)
        for spacing in ("leading", "trailing", "linspace"):
            run_case(f"{kind}-{pname}-{spacing}", kind, base, extra={"timestep_spacing": spacing})
for pname, base in (("eps", SD15), ("v", SD2V)):
    run_case(f"dpm++2m-{pname}-karras", "dpm++2m", base, extra={"use_karras_sigmas": True})
    run_case(f"dpm++2m-{pname}-karras-25", "dpm++2m", base, steps=25, extra={"use_karras_sigmas": True})
run_case("unipc-eps-karras", "unipc", SD15, extra={"use_karras_sigmas": True})
run_case("euler-eps-karras", "euler", SD15, extra={"use_karras_sigmas": True})
run_case("pndm-eps-leading-50", "pndm", SD15, steps=50)
run_case("ddim-eps-linear", "ddim", {**SD15, "beta_schedule": "linear", "beta_start": 0.0001, "beta_end": 0.02})
run_case("ddim-eps-cos", "ddim", {**SD15, "beta_schedule": "squaredcos_cap_v2"})
run_case("euler-a-eps-fromconfig-7", "euler-a", SD15, steps=7)
run_case("unipc-v-trailing-3", "unipc", SD2V, steps=3, extra={"timestep_spacing": "trailing"})
# LCM: few steps (its use), one step (no noise), as many as original_inference_steps, its own settings
for steps in (1, 2, 4, 8, 50):
    run_case(f"lcm-eps-{steps}", "lcm", SD15, steps=steps)
run_case("lcm-v-4", "lcm", SD2V, steps=4)
run_case("lcm-sample-4", "lcm", {**SD15, "prediction_type": "sample"}, steps=4)
# LCM-only keys as an LCM folder's scheduler_config.json carries them (another class would drop them)
LCM15 = {**SD15, "_class_name": "LCMScheduler"}
run_case("lcm-eps-original25-6", "lcm", LCM15, steps=6, extra={"original_inference_steps": 25})
run_case("lcm-eps-original7-7", "lcm", LCM15, steps=7, extra={"original_inference_steps": 7})
run_case("lcm-eps-scaling2.5-4", "lcm", LCM15, steps=4, extra={"timestep_scaling": 2.5})
run_case("lcm-eps-clip-4", "lcm", SD15, steps=4, extra={"clip_sample": True, "clip_sample_range": 0.5})
run_case("lcm-eps-linear-3", "lcm", {**SD15, "beta_schedule": "linear", "beta_start": 0.0001, "beta_end": 0.02}, steps=3)
# LCM's own class defaults (a folder config with only the class name)
run_case("lcm-defaults-4", "lcm", {"_class_name": "LCMScheduler"}, steps=4)

# beta / alpha tables for the sanity constants (SD1.5)
tables = {}
for sched_name, cfg in (("scaled_linear", SD15), ("linear", {**SD15, "beta_schedule": "linear"}),
                        ("cos", {**SD15, "beta_schedule": "squaredcos_cap_v2"})):
    s = DDIMScheduler.from_config(cfg)
    tables[sched_name] = {"offset": len(blob)}
    blob.extend(s.betas.numpy().astype("<f4").tobytes())
    blob.extend(s.alphas_cumprod.numpy().astype("<f4").tobytes())

# randn
rn = []
for seed in (0, 1, 42, 2**32 + 5, 1234567):
    for n in (1, 7, 15, 16, 17, 100):
        rn.append({"seed": seed, "sizes": [n], "offset": len(blob)})
        blob.extend(torch.randn(n, generator=torch.Generator("cpu").manual_seed(seed)).numpy().astype("<f4").tobytes())
seq = [7, 3, 100, 1, 1, 33, 4 * 64 * 64]
g = torch.Generator("cpu").manual_seed(42)
rn.append({"seed": 42, "sizes": seq, "offset": len(blob)})
blob.extend(torch.cat([torch.randn(n, generator=g) for n in seq]).numpy().astype("<f4").tobytes())

with open(os.path.join(OUT, "data.bin"), "wb") as f:
    f.write(bytes(blob))
with open(os.path.join(OUT, "cases.json"), "w") as f:
    json.dump({"torch": torch.__version__, "diffusers": diffusers.__version__, "shape": list(SHAPE),
               "latent_offset": 0, "noise_offset": 256 * 4, "noise_seed": NOISE_SEED, "cases": cases,
               "tables": tables, "randn": rn}, f, indent=0)
print(len(cases), "cases,", len(blob), "bytes")
