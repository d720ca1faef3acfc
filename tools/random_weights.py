"""Random weights that keep every path of a model alive, shared by the fixture builders
(tools/make_tiny_pipelines.py, tools/make_sd15_random.py).

diffusers and transformers initialise some layers to zero (UNet conv_out, attention output projections in some
versions), which would let a Swift bug in the layers behind them pass a parity test unseen; these weights are all
non-zero and sized so activations stay O(1) through deep stacks.
"""
import math

import numpy as np
import torch


def reinit_(model: torch.nn.Module, seed: int):
    """Overwrite EVERY parameter with scaled Gaussian noise so that no path is dead.

    Linear/Conv weights ~ N(0, 1/fan_in), biases ~ 0.1 N(0,1), norm weights 1 + 0.1 N(0,1),
    norm biases 0.1 N(0,1), embeddings 0.5 N(0,1).  Raises on any parameter of another kind.
    """
    g = torch.Generator("cpu").manual_seed(seed)
    seen = set()
    with torch.no_grad():
        for mname, mod in model.named_modules():
            for pname, p in mod.named_parameters(recurse=False):
                full = f"{mname}.{pname}" if mname else pname
                seen.add(full)
                r = torch.randn(p.shape, generator=g, dtype=torch.float32)
                if isinstance(mod, (torch.nn.Linear, torch.nn.Conv2d)):
                    if pname == "weight":
                        fan_in = int(np.prod(p.shape[1:]))
                        p.copy_(r / math.sqrt(fan_in))
                    elif pname == "bias":
                        p.copy_(0.1 * r)
                    else:
                        raise ValueError(full)
                elif isinstance(mod, (torch.nn.GroupNorm, torch.nn.LayerNorm)):
                    if pname == "weight":
                        p.copy_(1.0 + 0.1 * r)
                    elif pname == "bias":
                        p.copy_(0.1 * r)
                    else:
                        raise ValueError(full)
                elif isinstance(mod, torch.nn.Embedding):
                    p.copy_(0.5 * r)
                else:
                    raise ValueError(f"unhandled parameter {full} in {type(mod).__name__}")
    all_names = {n for n, _ in model.named_parameters()}
    assert all_names == seen, all_names ^ seen
