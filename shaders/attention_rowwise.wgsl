// Row-wise attention with an optional causal mask: one invocation per (batch, head, query row), keys
// streamed with an online softmax; the output row doubles as the accumulator, so any head dim works.
// Built for short sequences (CLIP's 77 tokens, where the text encoder needs the causal mask); the
// tiled kernels in attention.wgsl serve the UNet and VAE.
// Entry points: attention_rowwise.
//
// Layout as in attention.wgsl: q [B, Nq, H·D], k/v [B, Nk, H·D], out [B, Nq, H·D].

struct Params {
    batch: u32,
    nq: u32,
    nk: u32,
    heads: u32,
    d: u32,
    causal: u32,   // 1: query i sees keys 0..=i only
    scale: f32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> k: array<f32>;
@group(0) @binding(3) var<storage, read> v: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(64)
fn attention_rowwise(@builtin(global_invocation_id) gid: vec3<u32>) {
    let row = gid.x;
    if (row >= p.batch * p.heads * p.nq) { return; }
    let i = row % p.nq;
    let bh = row / p.nq;
    let h = bh % p.heads;
    let b = bh / p.heads;
    let width = p.heads * p.d;
    let qo = (b * p.nq + i) * width + h * p.d;
    var last = p.nk;
    if (p.causal == 1u) { last = min(p.nk, i + 1u); }
    var m = -3.0e38;
    var l = 0.0;
    for (var c = 0u; c < p.d; c++) { out[qo + c] = 0.0; }
    for (var j = 0u; j < last; j++) {
        let ko = (b * p.nk + j) * width + h * p.d;
        var s = 0.0;
        for (var c = 0u; c < p.d; c++) { s += q[qo + c] * k[ko + c]; }
        s *= p.scale;
        let m_new = max(m, s);
        let corr = exp(m - m_new);
        let w = exp(s - m_new);
        l = l * corr + w;
        for (var c = 0u; c < p.d; c++) { out[qo + c] = out[qo + c] * corr + w * v[ko + c]; }
        m = m_new;
    }
    let inv = select(0.0, 1.0 / l, l > 0.0);
    for (var c = 0u; c < p.d; c++) { out[qo + c] *= inv; }
}
