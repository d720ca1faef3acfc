"""Extra model references on the tiny pipelines' own weights (Fixtures/pipelines): clip_skip and a latent whose
size is not a multiple of 2^(#downsamplers) (exercises the UNet's upsample_size path).
Run from the repository root: python3 Tests/LeanDiffusionTests/Fixtures/model-extras/make_model_extras.py"""
import os, torch
from diffusers import UNet2DConditionModel
from transformers import CLIPTextModel
from safetensors.torch import save_file
here = os.path.dirname(os.path.abspath(__file__))
root = os.path.join(here, "..", "pipelines")
for name in ["sd1-tiny", "sd2-tiny-v"]:
    torch.manual_seed(1)
    d = os.path.join(root, name); ref = {}
    te = CLIPTextModel.from_pretrained(os.path.join(d, "text_encoder")).eval()
    ids = torch.tensor([[49406] + list(range(300, 320)) + [49407] * 56], dtype=torch.long)
    with torch.no_grad():
        o = te(ids, output_hidden_states=True)
        ln = getattr(te, "text_model", te).final_layer_norm
        ref["text.input_ids"] = ids.float()
        ref["text.last_hidden_state"] = o.last_hidden_state
        ref["text.clip_skip1"] = ln(o.hidden_states[-2])
    un = UNet2DConditionModel.from_pretrained(os.path.join(d, "unet")).eval()
    with torch.no_grad():
        s = torch.randn(1, 4, 7, 10); ehs = torch.randn(1, 77, un.config.cross_attention_dim)
        ref["unet3.sample"] = s; ref["unet3.timestep"] = torch.tensor([37.0]); ref["unet3.encoder_hidden_states"] = ehs
        ref["unet3.out"] = un(s, torch.tensor(37.0), encoder_hidden_states=ehs).sample
    save_file({k: v.contiguous().float() for k, v in ref.items()}, os.path.join(here, name + ".safetensors"))
    print(name, {k: tuple(v.shape) for k, v in ref.items()})
