// Sinusoidal timestep embedding (diffusers `get_timestep_embedding`).
// Entry points: timestep_embedding.
//
// The frequencies come from the host as a table (computed in f32 exactly as PyTorch does), so the only
// GPU math is one f32 multiply and sin/cos. Arguments reach ~1000 radians, where the accuracy of a
// GPU's native sin/cos is not specified tightly (Vulkan allows 2^-11 absolute error in [-π, π] and less
// outside), so sin/cos here use an explicit three-constant π/2 reduction and minimax polynomials.

struct Params {
    batch: u32,
    dim: u32,        // output width
    half: u32,       // number of frequencies
    flip: u32,       // 1: [cos, sin] (flip_sin_to_cos), 0: [sin, cos]
    scale: f32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> timesteps: array<f32>;
@group(0) @binding(2) var<storage, read> freqs: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

// sin (want_cos = false) or cos of x, accurate to a few ulp for |x| up to ~1e4.
fn sincos_accurate(x: f32, want_cos: bool) -> f32 {
    let k = round(x * 0.6366197723675814);
    // π/2 split into three parts; k * PIO2_1 is exact for |k| < 2^15.
    let r = ((x - k * 1.5703125) - k * 4.837512969970703125e-4) - k * 7.549789954891882e-8;
    var q = i32(k) & 3;
    if (want_cos) { q = (q + 1) & 3; }
    let z = r * r;
    let s = r + r * z * (-1.6666654611e-1 + z * (8.3321608736e-3 + z * -1.9515295891e-4));
    let c = 1.0 - 0.5 * z + z * z * (4.166664568298827e-2 + z * (-1.388731625493765e-3 + z * 2.443315711809948e-5));
    switch q {
        case 0: { return s; }
        case 1: { return c; }
        case 2: { return -s; }
        default: { return -c; }
    }
}

@compute @workgroup_size(64)
fn timestep_embedding(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    if (i >= p.batch * p.dim) { return; }
    let b = i / p.dim;
    let j = i - b * p.dim;
    if (j >= 2u * p.half) {
        out[i] = 0.0;  // odd dim: zero pad, as diffusers does
        return;
    }
    let f = j % p.half;
    let arg = p.scale * (timesteps[b] * freqs[f]);
    let first_half = j < p.half;
    // Unflipped: [sin, cos]; flipped: [cos, sin].
    let want_cos = first_half == (p.flip == 1u);
    out[i] = sincos_accurate(arg, want_cos);
}
