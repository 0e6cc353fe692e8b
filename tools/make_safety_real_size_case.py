# A safety-checker case at the published SD 1.5 size (CLIP ViT-L/14 at 224x224, projection 768) with random
# weights, its image_embeds computed by diffusers/transformers in float64. Needs torch, diffusers 0.42.1 and
# transformers 5.24. Writes /tmp/safetyreal (1.2 GB); then:
#
#   wgsd verify --fixtures /tmp/safetyreal --only safety
import json, os, numpy as np, torch
from transformers import CLIPConfig
from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
from safetensors.torch import save_file
FX = os.path.abspath(os.environ.get('WGSD_FIXTURES', '../shared/fixtures/tiny'))
OUT = '/tmp/safetyreal'
torch.manual_seed(0)
cfg = CLIPConfig.from_pretrained(os.path.join(FX, '..', 'configs', 'sd15', 'safety_checker'))
m = StableDiffusionSafetyChecker(cfg).eval()
with torch.no_grad():
    for n, p in m.named_parameters():
        if p.dim() == 1 or 'embeds' in n:
            p.add_(0.05 * torch.randn_like(p))
m.save_pretrained(f'{OUT}/m/safety_checker', safe_serialization=True)
x = torch.randn(2, 3, 224, 224)
with torch.no_grad():
    e32 = m.visual_projection(m.vision_model(x)[1])
    m64 = m.double()
    e64 = m64.visual_projection(m64.vision_model(x.double())[1])
print('f32 vs f64', (torch.linalg.norm(e32 - e64) / torch.linalg.norm(e64)).item())
save_file({'safety.pixel_values': x.contiguous(), 'safety.image_embeds': e64.float().contiguous()}, f'{OUT}/cases.safetensors')
json.dump({'models': ['m'], 'about': 'random SD 1.5-size safety checker, image_embeds in float64'}, open(f'{OUT}/cases.json', 'w'))
