// torch.optim.AdamW, one dispatch per trainable tensor, run after the backward pass in the same encoder.
// Entry point: adamw. The gradient is first multiplied by the clipping coefficient of
// torch.nn.utils.clip_grad_norm_ (coef[1], 1 when no clipping applies), then, as PyTorch does:
//   p ← p · (1 − lr·wd);  m ← lerp(m, g, 1 − β1);  v ← β2·v + (1 − β2)·g²;
//   p ← p − (lr / (1 − β1ᵗ)) · m / (√v / √(1 − β2ᵗ) + eps).
// The per-step scalars (lr, the bias corrections) live in the uniform buffer, written once per step.

struct Hyper {
    decay: f32,       // 1 − lr·wd
    beta1: f32,
    beta2: f32,
    step_size: f32,   // lr / (1 − β1ᵗ)
    bc2_sqrt: f32,    // √(1 − β2ᵗ)
    eps: f32,
    one_minus_beta1: f32,   // computed in f64 on the host (1 − 0.999 is not exact in f32)
    one_minus_beta2: f32,
}

@group(0) @binding(0) var<uniform> h: Hyper;
@group(0) @binding(1) var<storage, read_write> param: array<f32>;
@group(0) @binding(2) var<storage, read> grad: array<f32>;
@group(0) @binding(3) var<storage, read_write> m: array<f32>;
@group(0) @binding(4) var<storage, read_write> v: array<f32>;
@group(0) @binding(5) var<storage, read> clip: array<f32>;   // [total norm, coefficient]

@compute @workgroup_size(256)
fn adamw(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = (wg.x + wg.y * nwg.x) * 256u + lid.x;
    if (i >= arrayLength(&grad)) { return; }
    let g = grad[i] * clip[1];
    var p = param[i] * h.decay;
    let mi = m[i] + h.one_minus_beta1 * (g - m[i]);
    let vi = h.beta2 * v[i] + h.one_minus_beta2 * g * g;
    m[i] = mi;
    v[i] = vi;
    p = p - h.step_size * mi / (sqrt(vi) / h.bc2_sqrt + h.eps);
    param[i] = p;
}
