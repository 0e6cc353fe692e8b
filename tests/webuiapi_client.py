#!/usr/bin/env python3
"""Drives a running `wgsd serve` with the `webuiapi` client from PyPI, as an A1111 user would.

Run by tests/server.rs (which starts the server on the tiny fixture models); by hand:
    wgsd serve --model ../shared/fixtures/tiny/sd15 --models-dir ../shared/fixtures/tiny --api-auth user:pw --port 7860
    python3 tests/webuiapi_client.py --port 7860 --user user --password pw --out /tmp \
        --init ../shared/fixtures/tiny/init.png --mask ../shared/fixtures/tiny/mask.png
Exits non-zero on the first failed check; prints "webuiapi: all checks passed" at the end.
"""
import argparse
import os
import sys

import webuiapi
from PIL import Image


def check(cond, what):
    if not cond:
        print(f"FAILED: {what}")
        sys.exit(1)
    print(f"ok: {what}")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--user")
    p.add_argument("--password")
    p.add_argument("--out", required=True)
    p.add_argument("--init", required=True)
    p.add_argument("--mask", required=True)
    a = p.parse_args()

    api = webuiapi.WebUIApi(host=a.host, port=a.port, sampler="Euler a", steps=2, username=a.user, password=a.password)
    print(f"webuiapi {getattr(webuiapi, '__version__', '')} against http://{a.host}:{a.port}")

    r = api.txt2img(prompt="a red fox", seed=42, width=64, height=64, cfg_scale=7)
    check(len(r.images) == 1 and r.image.size == (64, 64), "txt2img returns one 64x64 image")
    check(r.info["all_seeds"] == [42], f"txt2img reports its seed: {r.info['all_seeds']}")
    check("Sampler: Euler a" in r.info["infotexts"][0], f"txt2img infotext: {r.info['infotexts'][0]!r}")
    r.image.save(os.path.join(a.out, "txt2img.png"))
    first = r.image

    r2 = api.txt2img(prompt="a red fox", seed=-1, width=64, height=64, batch_size=2)
    check(len(r2.images) == 2 and r2.info["seed"] >= 0, f"seed -1 gives a seed: {r2.info['seed']}")

    init, mask = Image.open(a.init), Image.open(a.mask)
    r = api.img2img(images=[init], mask_image=mask, prompt="a fox", seed=5, width=64, height=64, denoising_strength=0.8, steps=3)
    check(r.image.size == (64, 64) and r.info["all_seeds"] == [5], "img2img with a mask returns a 64x64 image with its seed")
    check("Denoising strength: 0.8" in r.info["infotexts"][0], f"img2img infotext: {r.info['infotexts'][0]!r}")
    r = api.img2img(images=[init], prompt="a fox", seed=6, width=64, height=64, denoising_strength=0.5)
    check(r.image.size == (64, 64), "img2img without a mask")

    names = api.util_get_model_names()
    check("sd15" in names and "sd2" in names, f"model names: {names}")
    api.util_set_model("sd2")
    check(api.util_get_current_model() == "sd2", "util_set_model switches the checkpoint")
    r = api.txt2img(prompt="x", seed=1, width=64, height=64)
    check("Model: sd2" in r.info["infotexts"][0], "generation uses the new checkpoint")
    api.set_options({"sd_model_checkpoint": "sd15"})
    check(api.get_options()["sd_model_checkpoint"] == "sd15", "set_options / get_options")

    samplers = [s["name"] for s in api.get_samplers()]
    check("Euler a" in samplers and "DPM++ 2M" in samplers, f"samplers: {samplers}")
    check([s["name"] for s in api.get_schedulers()] == ["automatic", "karras"], "schedulers")
    r = api.txt2img(prompt="x", seed=1, width=64, height=64, sampler_name="DPM++ 2M", scheduler="karras")
    check("Sampler: DPM++ 2M Karras" in r.info["infotexts"][0], "DPM++ 2M with the Karras scheduler")

    # webuiapi re-encodes the image with the text chunks PIL read from it.
    info = api.png_info(first)
    check("Seed: 42" in str(info.info), f"png_info: {info.info!r}")
    prog = api.get_progress()
    check(prog["progress"] == 0.0 and prog["state"]["job_count"] == 0, "progress when idle")
    api.util_wait_for_ready(check_interval=0.1)
    check(isinstance(api.get_embeddings()["loaded"], dict), "embeddings")
    print("webuiapi: all checks passed")


if __name__ == "__main__":
    main()
