# A second fixture set for the image pipelines, made like ../shared/fixtures/tiny (diffusers, float32,
# every random draw recorded): non-square images, other schedulers, several images per prompt, the
# inpainting pipeline's resize to the UNet's size. Needs torch, torchvision (transformers' image processors
# use it when present, as the reference machine did), diffusers 0.42.1 and transformers 5.24:
#
#   python tools/make_image_fixtures.py /tmp/alt && wgsd verify --fixtures /tmp/alt --only pipe
#
# The models are linked from ../shared/fixtures/tiny; only cases.json, cases.safetensors and two PNGs are
# written.
import json, os, sys, numpy as np, torch
from safetensors.torch import save_file
from PIL import Image
import diffusers
FX = os.path.abspath(os.environ.get('WGSD_FIXTURES', '../shared/fixtures/tiny'))
OUT = sys.argv[1]
os.makedirs(OUT, exist_ok=True)
for m in ['sd15', 'sd15-inpaint', 'sd2-depth', 'sd2']:
    if not os.path.exists(f'{OUT}/{m}'):
        os.symlink(f'{FX}/{m}', f'{OUT}/{m}')
# Non-square inputs: 96x64 image, a mask with an off-grid ellipse (soft edges binarised), a depth map.
rng = np.random.default_rng(5)
yy, xx = np.mgrid[0:64, 0:96]
img = np.stack([128 + 100 * np.sin(xx / 9.0), 128 + 100 * np.cos(yy / 7.0), (xx * 2 + yy) % 256], -1)
img = np.clip(img + rng.normal(0, 10, img.shape), 0, 255).astype(np.uint8)
Image.fromarray(img).save(f'{OUT}/init_ns.png')
mask = (((xx - 50) / 30.0) ** 2 + ((yy - 30) / 19.0) ** 2 < 1).astype(np.uint8) * 255
Image.fromarray(mask, 'L').save(f'{OUT}/mask_ns.png')
depth = torch.from_numpy((np.sin(xx / 20.0) + yy / 40.0).astype(np.float32))[None]
tensors = {'pipe.depth2img_ns.depth_map': depth.contiguous()}

draws = []
def recording_randn(shape, generator=None, device=None, dtype=None, layout=None):
    t = torch.randn(shape, generator=generator, dtype=torch.float32)
    draws.append(t.clone())
    return t.to(dtype or torch.float32)
for name, mod in list(sys.modules.items()):
    if name.startswith('diffusers') and hasattr(mod, 'randn_tensor'):
        mod.randn_tensor = recording_randn
import diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion as p0
import diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion_img2img as p1
import diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion_inpaint as p2
import diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion_depth2img as p3
import diffusers.models.autoencoders.vae as vae
import diffusers.schedulers.scheduling_euler_ancestral_discrete as s1
import diffusers.schedulers.scheduling_dpmsolver_multistep as s2
for mod in [p0, p1, p2, p3, vae, s1, s2]:
    mod.randn_tensor = recording_randn

cases = {
    'img2img_ns': dict(model='sd15', pipeline='img2img', image='init_ns.png', strength=0.75, prompt='a castle on a hill',
                       negative_prompt='fog', num_images_per_prompt=2, num_inference_steps=5, guidance_scale=6.0,
                       scheduler='EulerAncestralDiscreteScheduler', seed=11),
    'inpaint_ns': dict(model='sd15-inpaint', image='init_ns.png', mask_image='mask_ns.png', strength=0.9,
                       prompt='a red door', num_inference_steps=5, guidance_scale=7.0,
                       scheduler='DPMSolverMultistepScheduler', seed=12),
    'inpaint_legacy_ns': dict(model='sd15', pipeline='inpaint', image='init_ns.png', mask_image='mask_ns.png',
                              strength=0.7, prompt='a red door', num_images_per_prompt=2, num_inference_steps=5,
                              guidance_scale=7.0, scheduler='EulerDiscreteScheduler', seed=13),
    'depth2img_ns': dict(model='sd2-depth', image='init_ns.png', depth_map='pipe.depth2img_ns.depth_map', strength=0.5,
                         prompt='a wooden house', negative_prompt='blurry', num_images_per_prompt=2, num_inference_steps=6,
                         guidance_scale=5.0, scheduler='DDIMScheduler', seed=14),
    # Latents 17x12: odd sizes make the UNet upsample to its skip connections' size.
    'txt2img_odd': dict(model='sd15', pipeline='txt2img', prompt='a lighthouse at dusk', negative_prompt='people', height=136,
                        width=96, num_inference_steps=4, guidance_scale=7.5, scheduler='DPMSolverMultistepScheduler', seed=16),
    'txt2img_odd_sd2': dict(model='sd2', pipeline='txt2img', prompt='a lighthouse at dusk', height=72, width=104,
                            num_inference_steps=3, guidance_scale=6.0, scheduler='EulerDiscreteScheduler', seed=17),
    'depth2img_estimated_ns': dict(model='sd2-depth', image='init_ns.png', strength=0.8, prompt='a wooden house',
                                   num_inference_steps=4, guidance_scale=7.5, scheduler='PNDMScheduler', seed=15),
}
for case, spec in cases.items():
    draws.clear()
    model = f"{OUT}/{spec['model']}"
    kind = spec.get('pipeline') or ('inpaint' if 'mask_image' in spec else 'depth' if spec['model'] == 'sd2-depth' else 'img2img')
    cls = {'txt2img': diffusers.StableDiffusionPipeline, 'img2img': diffusers.StableDiffusionImg2ImgPipeline, 'inpaint': diffusers.StableDiffusionInpaintPipeline,
           'depth': diffusers.StableDiffusionDepth2ImgPipeline}[kind]
    extra = {} if kind == 'depth' else dict(safety_checker=None, requires_safety_checker=False)
    pipe = cls.from_pretrained(model, **extra)
    pipe.scheduler = getattr(diffusers, spec['scheduler']).from_config(pipe.scheduler.config)
    spec['scheduler_config'] = dict(pipe.scheduler.config)
    kw = dict(prompt=spec['prompt'],
              num_inference_steps=spec['num_inference_steps'], guidance_scale=spec['guidance_scale'], output_type='np',
              generator=torch.Generator('cpu').manual_seed(spec['seed']))
    for k in ['negative_prompt', 'num_images_per_prompt', 'strength', 'height', 'width']:
        if k in spec: kw[k] = spec[k]
    if 'image' in spec:
        kw['image'] = Image.open(f"{OUT}/{spec['image']}")
    if 'mask_image' in spec:
        kw['mask_image'] = Image.open(f"{OUT}/{spec['mask_image']}")
    if 'depth_map' in spec:
        kw['depth_map'] = tensors[spec['depth_map']]
    images = pipe(**kw).images.astype(np.float32)
    tensors[f'pipe.{case}.images'] = torch.from_numpy(images).contiguous()
    for i, d in enumerate(draws):
        tensors[f'pipe.{case}.noise.{i}'] = d.contiguous()
    spec['noise_draws'] = len(draws)
    spec['nsfw'] = None
    print(case, images.shape, len(draws), 'draws')
meta = {'models': ['sd15', 'sd15-inpaint', 'sd2-depth', 'sd2'], 'pipelines': cases,
        'about': 'wgsd session-made second set: image pipelines on non-square 96x64 inputs, other schedulers, batches'}
json.dump(meta, open(f'{OUT}/cases.json', 'w'), indent=1, default=lambda o: list(o) if isinstance(o, tuple) else str(o))
save_file(tensors, f'{OUT}/cases.safetensors')
