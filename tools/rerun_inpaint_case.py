# Re-runs an inpainting fixture case with diffusers, replaying its recorded noise, in float32 or float64:
# tells float32 noise in the reference from a real difference (needs torch, diffusers 0.42.1).
#
#   python tools/rerun_inpaint_case.py inpaint 64     # writes /tmp/inpaint_64.npy, prints the gap to the fixture
#   (16: the whole pipeline in float16, PyTorch's own half-precision error on the case)
import json, sys, numpy as np, torch
from safetensors.numpy import load_file
from PIL import Image
import diffusers
from diffusers.utils import torch_utils
import os
FX = os.path.abspath(os.environ.get('WGSD_FIXTURES', '../shared/fixtures/tiny'))
case = sys.argv[1]
dtype = {'16': torch.float16, '32': torch.float32, '64': torch.float64}[sys.argv[2]]
meta = json.load(open(f'{FX}/cases.json'))
spec = meta['pipelines'][case]
T = load_file(f'{FX}/cases.safetensors')
draws = [torch.from_numpy(T[f'pipe.{case}.noise.{i}']) for i in range(spec['noise_draws'])]
def fake_randn(shape, generator=None, device=None, dtype=None, layout=None):
    t = draws.pop(0)
    assert tuple(t.shape) == tuple(shape), (t.shape, shape)
    return t.to(dtype or torch.float32)
import diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion_inpaint as pi
import diffusers.models.autoencoders.vae as vae
pi.randn_tensor = fake_randn; vae.randn_tensor = fake_randn
model = f"{FX}/{spec['model']}"
sched = getattr(diffusers, spec['scheduler']).from_config(spec['scheduler_config'])
pipe = diffusers.StableDiffusionInpaintPipeline.from_pretrained(model, safety_checker=None, requires_safety_checker=False, torch_dtype=torch.float32)
pipe.scheduler = sched
pipe.to(dtype)
img = Image.open(f"{FX}/{spec['image']}")
mask = Image.open(f"{FX}/{spec['mask_image']}")
kw = dict(prompt=spec['prompt'], image=img, mask_image=mask, num_inference_steps=spec['num_inference_steps'], guidance_scale=spec['guidance_scale'], output_type='np')
for k in ['height', 'width', 'strength', 'negative_prompt']:
    if k in spec and spec[k] is not None: kw[k] = spec[k]
out = pipe(**kw).images.astype(np.float32)
want = T[f'pipe.{case}.images']
print(case, sys.argv[2], 'vs fixture: rel', np.linalg.norm(out - want) / np.linalg.norm(want), 'max', np.abs(out - want).max(), 'draws left', len(draws))
np.save(f'/tmp/{case}_{sys.argv[2]}.npy', out)
