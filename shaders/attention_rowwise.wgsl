// Row-wise attention with an optional causal mask: one invocation per (batch, head, query row), keys
// streamed with an online softmax; the output row doubles as the accumulator, so any head dim works.
// Built for short sequences (CLIP's 77 tokens, where the text encoder needs the causal mask); the
// tiled kernels in attention.wgsl serve the UNet and VAE.
// Entry points: attention_rowwise, attention_rowwise_d64 (head dim 64).
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
// attention_rowwise_d64's vec4 views of the same bindings, read only through their accessors so that CPU
// adapters can read them from textures instead (src/kernels/weight_storage.rs).
@group(0) @binding(1) var<storage, read> q4: array<vec4<f32>>;
fn q4_at4(i: u32) -> vec4<f32> { return q4[i]; }
@group(0) @binding(2) var<storage, read> k4: array<vec4<f32>>;
fn k4_at4(i: u32) -> vec4<f32> { return k4[i]; }
@group(0) @binding(3) var<storage, read> v4: array<vec4<f32>>;
fn v4_at4(i: u32) -> vec4<f32> { return v4[i]; }
@group(0) @binding(4) var<storage, read_write> out4: array<vec4<f32>>;

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

// One workgroup of 8 invocations per 8 query rows of one (batch, head), one row each. Every key and value
// address depends on the workgroup only, so CPU drivers load each once for all 8 rows (llvmpipe builds
// lane-varying loads lane by lane), and the query row and accumulator live in registers / on the stack
// instead of the output buffer. Keys go in blocks of 8 with one softmax rescale per block; the causal
// mask is a score of -3e38 (weight 0) for keys past the row, so the loop bounds stay the workgroup's.
// The head dim is a constant (every SD text encoder's 64): with fixed trip counts the row loops unroll
// and the arrays stay out of memory (measured 35% faster than the same loops to p.d / 4).
const D4: u32 = 16u;

@compute @workgroup_size(8)
fn attention_rowwise_d64(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let h = wg.y % p.heads;
    let b = wg.y / p.heads;
    let i_row = wg.x * 8u + lid.x;
    let i = min(i_row, p.nq - 1u);
    let width4 = p.heads * D4;
    let qo = (b * p.nq + i) * width4 + h * D4;
    var qr: array<vec4<f32>, D4>;
    var acc: array<vec4<f32>, D4>;
    for (var c = 0u; c < D4; c++) {
        qr[c] = q4_at4(qo + c);
        acc[c] = vec4(0.0);
    }
    var last = p.nk;
    if (p.causal == 1u) { last = min(p.nk, wg.x * 8u + 8u); }
    var m = -3.0e38;
    var l = 0.0;
    for (var j0 = 0u; j0 < last; j0 += 8u) {
        var s: array<f32, 8>;
        var m_new = m;
        for (var t = 0u; t < 8u; t++) {
            let j = j0 + t;
            var sc = -3.0e38;
            if (j < last) {
                let ko = (b * p.nk + j) * width4 + h * D4;
                var dot = vec4(0.0);
                for (var c = 0u; c < D4; c++) { dot = fma(qr[c], k4_at4(ko + c), dot); }
                sc = (dot.x + dot.y + dot.z + dot.w) * p.scale;
                if (p.causal == 1u && j > i) { sc = -3.0e38; }
            }
            s[t] = sc;
            m_new = max(m_new, sc);
        }
        // Key 0 is in every row's first block, so m_new is a real score from then on.
        let corr = exp(m - m_new);
        l *= corr;
        for (var c = 0u; c < D4; c++) { acc[c] *= corr; }
        for (var t = 0u; t < 8u; t++) {
            let j = j0 + t;
            if (j < last) {
                let w = exp(s[t] - m_new);
                l += w;
                let vo = (b * p.nk + j) * width4 + h * D4;
                for (var c = 0u; c < D4; c++) { acc[c] = fma(vec4(w), v4_at4(vo + c), acc[c]); }
            }
        }
        m = m_new;
    }
    if (i_row < p.nq) {
        let inv = select(0.0, 1.0 / l, l > 0.0);
        for (var c = 0u; c < D4; c++) { out4[qo + c] = acc[c] * inv; }
    }
}
