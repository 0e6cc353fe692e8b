"""PyTorch's own float16 error on the tiny fixture modules, to set beside `wgsd verify --precision f16`:
each module run by diffusers/transformers in float16 (CPU) against the fixture's float32 reference, as
relative L2. Needs torch, diffusers, transformers, safetensors (not needed to build or test wgsd).

usage: torch_fp16_error.py [FIXTURE_DIR]     (default ../shared/fixtures/tiny)
"""
import os, sys
import numpy as np
import torch
from safetensors.numpy import load_file
from diffusers import UNet2DConditionModel, AutoencoderKL
from transformers import CLIPTextModel

fx = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "..", "shared", "fixtures", "tiny")
t = load_file(os.path.join(fx, "cases.safetensors"))
rel = lambda a, b: float(np.linalg.norm(a.astype(np.float64) - b) / np.linalg.norm(b.astype(np.float64)))
h = torch.float16

for m in ["sd15", "sd2"]:
    te = CLIPTextModel.from_pretrained(os.path.join(fx, m, "text_encoder")).to(h)
    ids = torch.tensor(t[f"text.{m}.ids"]).long()
    with torch.no_grad():
        out = te(ids).last_hidden_state.float().numpy()
    print(f"text.{m}.last_hidden_state fp16 rel_l2 {rel(out, t[f'text.{m}.last_hidden_state']):.2e}")

for m in ["sd15", "sd2", "sd15-inpaint", "sd2-depth"]:
    unet = UNet2DConditionModel.from_pretrained(os.path.join(fx, m, "unet")).to(h)
    for step in ["t999", "t500", "t1"]:
        k = f"unet.{m}.{step}"
        if f"{k}.sample" not in t:
            continue
        x = torch.tensor(t[f"{k}.sample"]).to(h)
        c = torch.tensor(t[f"{k}.encoder_hidden_states"]).to(h)
        ts = int(step[1:])
        with torch.no_grad():
            out = unet(x, ts, encoder_hidden_states=c).sample.float().numpy()
        print(f"{k} fp16 rel_l2 {rel(out, t[f'{k}.out']):.2e}")

vae = AutoencoderKL.from_pretrained(os.path.join(fx, "sd15", "vae")).to(h)
with torch.no_grad():
    img = vae.decode(torch.tensor(t["vae.decode.latent"]).to(h)).sample.float().numpy()
    post = vae.encode(torch.tensor(t["vae.encode.image"]).to(h)).latent_dist
print(f"vae.decode fp16 rel_l2 {rel(img, t['vae.decode.image']):.2e}")
print(f"vae.encode fp16 rel_l2 {rel(post.mean.float().numpy(), t['vae.encode.mean']):.2e}")
