#!/usr/bin/env python3
"""Writes an original-LDM single-file checkpoint (the `.safetensors` layout A1111 / Civitai distribute) from a
diffusers Stable Diffusion folder, then proves the file exact by converting it back with diffusers' own
converters (`diffusers.loaders.single_file_utils`) and comparing every tensor with the folder's.

    /tmp/tvenv/bin/python tools/make_single_file.py ../shared/fixtures/tiny/sd15 /tmp/wgsd-single-files/sd15.safetensors
    /tmp/tvenv/bin/python tools/make_single_file.py ../shared/fixtures/tiny/sd2  /tmp/wgsd-single-files/sd2.safetensors

Needs torch, safetensors and diffusers (for the proof; `--no-check` skips it). The text encoder is written as
SD 1's HF CLIP (`cond_stage_model.transformer.text_model.*`) when its `hidden_act` is `quick_gelu`, else as
SD 2's OpenCLIP (`cond_stage_model.model.*`, fused q/k/v `in_proj`), with one extra random last resblock and a
`text_projection`, as real SD 2 files have (diffusers' converted SD 2 text encoder keeps all but the last of
OpenCLIP's 24 resblocks: SD 2 conditions on the penultimate layer). The file also carries keys a loader must
ignore (`model_ema.*`, `alphas_cumprod`, `position_ids`).
"""

import argparse
import json
import os
import sys

import torch
from safetensors.torch import load_file, save_file

UNET_RESNET = [("norm1", "in_layers.0"), ("conv1", "in_layers.2"), ("time_emb_proj", "emb_layers.1"),
               ("norm2", "out_layers.0"), ("conv2", "out_layers.3"), ("conv_shortcut", "skip_connection")]
VAE_RESNET = [("conv_shortcut", "nin_shortcut")]
VAE_ATTN = [("group_norm", "norm"), ("to_q", "q"), ("to_k", "k"), ("to_v", "v"), ("to_out.0", "proj_out")]
OPENCLIP_LAYER = [("layer_norm1", "ln_1"), ("layer_norm2", "ln_2"), ("mlp.fc1", "mlp.c_fc"), ("mlp.fc2", "mlp.c_proj"),
                  ("self_attn.out_proj", "attn.out_proj")]
# Old diffusers VAE attention names (SD 2-era folders) → current ones.
VAE_LEGACY = [(".query.", ".to_q."), (".key.", ".to_k."), (".value.", ".to_v."), (".proj_attn.", ".to_out.0.")]


def rename(suffix, leaves):
    for a, b in leaves:
        if suffix == a or suffix.startswith(a + "."):
            return b + suffix[len(a):]
    return suffix


def translate(key, modules):
    """diffusers key → LDM key through (diffusers prefix, LDM prefix, leaf renames) modules, longest prefix first."""
    best = None
    for d, l, leaves in modules:
        if (key == d or key.startswith(d + ".")) and (best is None or len(d) > len(best[0])):
            best = (d, l, leaves)
    if best is None:
        raise KeyError(f"no LDM name for diffusers key {key}")
    d, l, leaves = best
    rest = key[len(d) + 1:]
    return l + ("." + rename(rest, leaves) if rest else "")


def unet_modules(c):
    p = "model.diffusion_model."
    n, lpb = len(c["block_out_channels"]), c["layers_per_block"]
    m = [("time_embedding.linear_1", p + "time_embed.0", []), ("time_embedding.linear_2", p + "time_embed.2", []),
         ("conv_in", p + "input_blocks.0.0", []), ("conv_norm_out", p + "out.0", []), ("conv_out", p + "out.2", [])]
    for i in range(n):
        for j in range(lpb):
            k = 1 + i * (lpb + 1) + j
            m.append((f"down_blocks.{i}.resnets.{j}", f"{p}input_blocks.{k}.0", UNET_RESNET))
            m.append((f"down_blocks.{i}.attentions.{j}", f"{p}input_blocks.{k}.1", []))
        if i + 1 < n:
            m.append((f"down_blocks.{i}.downsamplers.0.conv", f"{p}input_blocks.{1 + i * (lpb + 1) + lpb}.0.op", []))
    m += [("mid_block.resnets.0", p + "middle_block.0", UNET_RESNET), ("mid_block.attentions.0", p + "middle_block.1", []),
          ("mid_block.resnets.1", p + "middle_block.2", UNET_RESNET)]
    for i in range(n):
        attn = c["up_block_types"][i].startswith("CrossAttn")
        for j in range(lpb + 1):
            k = i * (lpb + 1) + j
            m.append((f"up_blocks.{i}.resnets.{j}", f"{p}output_blocks.{k}.0", UNET_RESNET))
            m.append((f"up_blocks.{i}.attentions.{j}", f"{p}output_blocks.{k}.1", []))
        if i + 1 < n:
            m.append((f"up_blocks.{i}.upsamplers.0.conv", f"{p}output_blocks.{i * (lpb + 1) + lpb}.{2 if attn else 1}.conv", []))
    return m


def vae_modules(c):
    p = "first_stage_model."
    n = len(c["block_out_channels"])
    m = [(x, p + x, []) for x in ["encoder.conv_in", "encoder.conv_out", "decoder.conv_in", "decoder.conv_out",
                                  "quant_conv", "post_quant_conv"]]
    m += [("encoder.conv_norm_out", p + "encoder.norm_out", []), ("decoder.conv_norm_out", p + "decoder.norm_out", [])]
    for part in ["encoder", "decoder"]:
        m += [(f"{part}.mid_block.resnets.0", f"{p}{part}.mid.block_1", VAE_RESNET),
              (f"{part}.mid_block.resnets.1", f"{p}{part}.mid.block_2", VAE_RESNET),
              (f"{part}.mid_block.attentions.0", f"{p}{part}.mid.attn_1", VAE_ATTN)]
    for i in range(n):
        for j in range(c["layers_per_block"] + 1):  # the decoder has one resnet more per block
            m.append((f"encoder.down_blocks.{i}.resnets.{j}", f"{p}encoder.down.{i}.block.{j}", VAE_RESNET))
            # Decoder up blocks run in reverse order in LDM.
            m.append((f"decoder.up_blocks.{i}.resnets.{j}", f"{p}decoder.up.{n - 1 - i}.block.{j}", VAE_RESNET))
        m.append((f"encoder.down_blocks.{i}.downsamplers.0.conv", f"{p}encoder.down.{i}.downsample.conv", []))
        m.append((f"decoder.up_blocks.{i}.upsamplers.0.conv", f"{p}decoder.up.{n - 1 - i}.upsample.conv", []))
    return m


def to_ldm(folder, rng):
    out = {}
    uc = json.load(open(os.path.join(folder, "unet/config.json")))
    um = unet_modules(uc)
    for k, v in load_file(os.path.join(folder, "unet/diffusion_pytorch_model.safetensors")).items():
        out[translate(k, um)] = v
    vc = json.load(open(os.path.join(folder, "vae/config.json")))
    vm = vae_modules(vc)
    for k, v in load_file(os.path.join(folder, "vae/diffusion_pytorch_model.safetensors")).items():
        for a, b in VAE_LEGACY:
            k = k.replace(a, b)
        lk = translate(k, vm)
        if ".mid.attn_1." in lk and v.ndim == 2:
            v = v[:, :, None, None]  # LDM's attention q/k/v/proj_out are 1×1 convs
        out[lk] = v.contiguous()
    tc = json.load(open(os.path.join(folder, "text_encoder/config.json")))
    te = load_file(os.path.join(folder, "text_encoder/model.safetensors"))
    te = {(k if k.startswith("text_model.") else "text_model." + k): v for k, v in te.items()}
    if tc["hidden_act"] == "quick_gelu":
        for k, v in te.items():
            out["cond_stage_model.transformer." + k] = v
        out["cond_stage_model.transformer.text_model.embeddings.position_ids"] = torch.arange(
            tc["max_position_embeddings"], dtype=torch.int64)[None]
    else:
        p = "cond_stage_model.model."
        d, nl = tc["hidden_size"], tc["num_hidden_layers"]
        out[p + "token_embedding.weight"] = te.pop("text_model.embeddings.token_embedding.weight")
        out[p + "positional_embedding"] = te.pop("text_model.embeddings.position_embedding.weight")
        out[p + "ln_final.weight"] = te.pop("text_model.final_layer_norm.weight")
        out[p + "ln_final.bias"] = te.pop("text_model.final_layer_norm.bias")
        for i in range(nl):
            src = f"text_model.encoder.layers.{i}."
            dst = f"{p}transformer.resblocks.{i}."
            for wb in ["weight", "bias"]:
                out[dst + "attn.in_proj_" + wb] = torch.cat([te.pop(f"{src}self_attn.{q}_proj.{wb}") for q in "qkv"]).contiguous()
            for k in [k for k in te if k.startswith(src)]:
                out[dst + rename(k[len(src):], OPENCLIP_LAYER)] = te.pop(k)
        assert not te, f"text encoder tensors left unmapped: {sorted(te)}"
        # The last resblock SD 2 skips (its conditioning is the penultimate layer), with random values.
        f = tc["intermediate_size"]
        last = f"{p}transformer.resblocks.{nl}."
        for name, shape in [("attn.in_proj_weight", (3 * d, d)), ("attn.in_proj_bias", (3 * d,)), ("attn.out_proj.weight", (d, d)),
                            ("attn.out_proj.bias", (d,)), ("ln_1.weight", (d,)), ("ln_1.bias", (d,)), ("ln_2.weight", (d,)),
                            ("ln_2.bias", (d,)), ("mlp.c_fc.weight", (f, d)), ("mlp.c_fc.bias", (f,)),
                            ("mlp.c_proj.weight", (d, f)), ("mlp.c_proj.bias", (d,))]:
            out[last + name] = torch.randn(shape, generator=rng)
        out[p + "text_projection"] = torch.randn((d, tc["projection_dim"]), generator=rng)
        out[p + "logit_scale"] = torch.tensor(4.6052)
    # Keys a loader must ignore.
    out["alphas_cumprod"] = torch.linspace(0.999, 0.005, 1000)
    out["model_ema.decay"] = torch.tensor(0.9999)
    out["model_ema.num_updates"] = torch.tensor(1000, dtype=torch.int32)
    return out, uc, vc, tc


def check(path, folder, uc, vc, tc):
    """Converts the file back with diffusers' converters; every original tensor must come back equal."""
    from diffusers.loaders import single_file_utils as sfu
    ckpt = load_file(path)
    originals = {
        "unet": load_file(os.path.join(folder, "unet/diffusion_pytorch_model.safetensors")),
        "vae": load_file(os.path.join(folder, "vae/diffusion_pytorch_model.safetensors")),
        "text_encoder": load_file(os.path.join(folder, "text_encoder/model.safetensors")),
    }
    converted = {
        "unet": sfu.convert_ldm_unet_checkpoint(ckpt, uc),
        "vae": sfu.convert_ldm_vae_checkpoint(ckpt, vc),
    }
    open_clip = tc["hidden_act"] != "quick_gelu"
    if open_clip:
        from transformers import CLIPTextConfig
        holder = type("TextModel", (), {"config": CLIPTextConfig(**{k: v for k, v in tc.items() if not k.startswith("_")})})()
        converted["text_encoder"] = sfu.convert_open_clip_checkpoint(holder, ckpt)
    else:
        converted["text_encoder"] = sfu.convert_ldm_clip_checkpoint(ckpt)
    ok = True
    for comp, orig in originals.items():
        conv = converted[comp]
        canon = {}
        for k, v in orig.items():
            if comp == "vae":
                for a, b in VAE_LEGACY:
                    k = k.replace(a, b)
            if comp == "text_encoder" and not k.startswith("text_model."):
                k = "text_model." + k
            canon[k] = v
        bad = [k for k, v in canon.items() if k not in conv or conv[k].shape != v.shape or not torch.equal(conv[k], v)]
        extra = sorted(set(conv) - set(canon))
        expected_extra = set()
        if comp == "text_encoder":
            # position_ids (SD 1) are a buffer, not a weight; diffusers' OpenCLIP ignore list names resblock 23
            # of the real 24, so with the tiny encoder it passes through the skipped last resblock and
            # text_projection (a CLIPTextModelWithProjection weight), which a CLIPTextModel does not load.
            nl = tc["num_hidden_layers"]
            expected_extra = {k for k in extra if k.endswith("position_ids") or k == "text_projection.weight"
                              or k.startswith(f"text_model.encoder.layers.{nl}.")}
        unexpected = [k for k in extra if k not in expected_extra]
        print(f"{comp}: {len(canon)} tensors, {len(canon) - len(bad)} equal after diffusers' conversion; "
              f"{len(bad)} differ or missing; {len(extra)} extra ({len(unexpected)} unexpected)")
        for k in bad[:10]:
            print("  differs/missing:", k)
        for k in unexpected[:10]:
            print("  unexpected extra:", k)
        ok &= not bad and not unexpected
    return ok


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder", help="diffusers Stable Diffusion folder")
    ap.add_argument("out", help="output .safetensors")
    ap.add_argument("--no-check", action="store_true", help="skip the diffusers round-trip proof")
    ap.add_argument("--seed", type=int, default=0, help="seed of the extra (ignored) OpenCLIP tensors")
    a = ap.parse_args()
    out, uc, vc, tc = to_ldm(a.folder, torch.Generator().manual_seed(a.seed))
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    save_file(out, a.out)
    print(f"wrote {a.out}: {len(out)} tensors")
    if not a.no_check and not check(a.out, a.folder, uc, vc, tc):
        sys.exit("FAILED: the single file does not convert back to the folder's weights")
    if not a.no_check:
        print("OK: diffusers' converters give back every tensor exactly")


if __name__ == "__main__":
    main()
