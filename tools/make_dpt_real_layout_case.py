# A depth-estimator case at the published DPT-hybrid layout (Intel/dpt-hybrid-midas: BiT [3, 4, 9], ViT-B/16 at
# 384x384, 4-entry backbone hidden_sizes) with random weights, its reference computed by transformers in
# float64. Needs torch and transformers 5.24. Writes /tmp/dptreal (470 MB); then:
#
#   wgsd verify --fixtures /tmp/dptreal --only depth
import json, numpy as np, torch
from transformers import DPTConfig, DPTForDepthEstimation, BitConfig
from safetensors.torch import save_file
torch.manual_seed(0)
bb = BitConfig(global_padding='same', layer_type='bottleneck', depths=[3, 4, 9], out_features=['stage1', 'stage2', 'stage3'], embedding_dynamic_padding=True)
cfg = DPTConfig(is_hybrid=True, backbone_config=bb, backbone_featmap_shape=[1, 1024, 24, 24], neck_ignore_stages=[0, 1],
                reassemble_factors=[4, 2, 1, 0.5], neck_hidden_sizes=[256, 512, 768, 768], image_size=384, hidden_size=768,
                num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072, fusion_hidden_size=256,
                backbone_out_indices=[2, 5, 8, 11], readout_type='project', use_auxiliary_head=False)
m = DPTForDepthEstimation(cfg).eval()
# Perturb the norms away from identity so they are exercised.
with torch.no_grad():
    for n, p in m.named_parameters():
        if p.dim() == 1: p.add_(0.05 * torch.randn_like(p))
m.save_pretrained('/tmp/dptreal/m/depth_estimator', safe_serialization=True)
x = torch.randn(1, 3, 384, 384)
with torch.no_grad():
    y32 = m(x).predicted_depth
    y64 = m.double()(x.double()).predicted_depth
print('f32 vs f64', (torch.linalg.norm(y32 - y64) / torch.linalg.norm(y64)).item(), y32.shape)
save_file({'depth.pixel_values': x.contiguous(), 'depth.predicted_depth': y64.float().contiguous()}, '/tmp/dptreal/cases.safetensors')
json.dump({'models': ['m'], 'about': 'random real-layout DPT-hybrid, reference in float64'}, open('/tmp/dptreal/cases.json', 'w'))
