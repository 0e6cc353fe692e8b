// Normalisation family: GroupNorm (a statistics pass, a finalize and an apply), LayerNorm and softmax over the
// last dimension. Entry points: gn_stats, gn_finalize, gn_apply, layer_norm, softmax.
//
// Statistics are f32 and numerically stable: each thread runs Welford's update over its elements and the
// partial results are combined with the exact parallel formula (Chan et al.): n = Σ nᵢ, mean = Σ nᵢ·meanᵢ / n,
// M2 = Σ M2ᵢ + Σ nᵢ·(meanᵢ − mean)², never E[x²] − E[x]². Values are taken relative to a shift K, an element of
// the data (the first of the chunk or row), and the mean is kept as K + md with md small: (x − K) − md stays
// exact to a few ulps of the spread even when |mean| ≫ std (1000 + noise), where a plain f32 mean would
// already be off by ulp(1000) ≈ 6e-5.
//
// Bindings (one declaration per number, shared by the entry points):
//   1 x    the input, a sub-range of it; x_shift is this dispatch's first element inside the binding
//   2 dst  the output (gn_stats, gn_finalize: the statistics tensor)
//   3..5   small read-only inputs: gn_apply: statistics, weight, bias; layer_norm: weight, bias.
//          A missing weight or bias is bound to something harmless and ignored (flags).
//
// Statistics tensor of GroupNorm, in 4-float slots: slot bg (for bg = b·G + g < BG) holds the finals
// (K, md, rstd, 0); slot BG + bg·P + k holds partial k of block bg: (K, n, md, M2).

struct Params {
    units: u32,      // gn_stats: group blocks; gn_finalize: B·G; gn_apply: channel planes; rows otherwise
    len: u32,        // elements per unit (block, plane, row)
    count: u32,      // elements of each unit this dispatch covers (< len when one unit is split)
    chunk: u32,      // gn_stats/gn_apply: elements per workgroup; layer_norm/softmax: threads per row
    chunks: u32,     // gn_stats/gn_apply: workgroups per unit (or per plane block)
    x_shift: u32,
    out_shift: u32,
    unit0: u32,      // gn_stats: slot of unit 0's first partial; gn_apply: global index of plane 0
    parts: u32,      // gn_stats/gn_finalize: partials per block (P); gn_apply: planes per workgroup
    channels: u32,   // gn_apply: C
    cpg: u32,        // gn_apply: channels per group
    flags: u32,      // bit 0: weight given, bit 1: bias given
    act: u32,        // gn_apply: ACT_* code applied after the affine
    eps: f32,
    scale: f32,      // softmax: multiplier applied before the softmax
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;
@group(0) @binding(3) var<storage, read> in1: array<f32>;
@group(0) @binding(4) var<storage, read> in2: array<f32>;
@group(0) @binding(5) var<storage, read> in3: array<f32>;

const WG: u32 = 256u;
const F32_MAX: f32 = 3.40282347e38;

// Per-thread partial statistics (count, shifted mean, M2) for the workgroup reductions.
var<workgroup> sh_n: array<f32, 256>;
var<workgroup> sh_m: array<f32, 256>;
var<workgroup> sh_q: array<f32, 256>;

// Welford's update of (n, mean, M2) with one value.
fn welford(acc: vec3<f32>, d: f32) -> vec3<f32> {
    let n = acc.x + 1.0;
    let delta = d - acc.y;
    let mean = acc.y + delta / n;
    return vec3<f32>(n, mean, acc.z + delta * (d - mean));
}

// Combines the partials sh_*[first + j·stride], j < count (all relative to the same shift).
fn combine(first: u32, count: u32, stride: u32) -> vec3<f32> {
    var n = 0.0;
    var s = 0.0;
    for (var j = 0u; j < count; j++) {
        let i = first + j * stride;
        n += sh_n[i];
        s += sh_n[i] * sh_m[i];
    }
    let mean = select(0.0, s / n, n > 0.0);
    var q = 0.0;
    for (var j = 0u; j < count; j++) {
        let i = first + j * stride;
        let dm = sh_m[i] - mean;
        q += sh_q[i] + sh_n[i] * dm * dm;
    }
    return vec3<f32>(n, mean, q);
}

fn store_partial(lid: u32, acc: vec3<f32>) {
    sh_n[lid] = acc.x;
    sh_m[lid] = acc.y;
    sh_q[lid] = acc.z;
}

// One workgroup reduces one chunk (≤ p.chunk elements) of one group block to a partial (K, n, md, M2).
// Threads read with a stride of WG (coalesced) and reduce serially; then two barriers only: 16 threads
// combine 16 partials each, thread 0 combines those 16.
@compute @workgroup_size(256)
fn gn_stats(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_id) lid3: vec3<u32>) {
    let wid = wg.x + wg.y * nwg.x;
    if (wid >= p.units * p.chunks) { return; }
    let lid = lid3.x;
    let u = wid / p.chunks;
    let k = wid - u * p.chunks;
    let c0 = k * p.chunk;
    let n = min(p.chunk, p.count - c0);
    let base = p.x_shift + u * p.len + c0;
    let shift = x[base];
    var acc = vec3<f32>(0.0);
    for (var i = lid; i < n; i += WG) {
        acc = welford(acc, x[base + i] - shift);
    }
    store_partial(lid, acc);
    workgroupBarrier();
    // Thread t < 16 overwrites slot 16·t only, inside the range it alone reads.
    if (lid < 16u) {
        store_partial(lid * 16u, combine(lid * 16u, 16u, 1u));
    }
    workgroupBarrier();
    if (lid == 0u) {
        let r = combine(0u, 16u, 16u);
        let slot = 4u * (p.unit0 + u * p.parts + k);
        dst[slot] = shift;
        dst[slot + 1u] = r.x;
        dst[slot + 2u] = r.y;
        dst[slot + 3u] = r.z;
    }
}

// One thread per (b, g): merges the P partials of its block, rebasing each onto the first partial's shift,
// and writes the finals (K, md, rstd, 0).
@compute @workgroup_size(256)
fn gn_finalize(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_id) lid3: vec3<u32>) {
    let bg = (wg.x + wg.y * nwg.x) * WG + lid3.x;
    if (bg >= p.units) { return; }
    let first = 4u * (p.units + bg * p.parts);
    let k0 = dst[first];
    var n = 0.0;
    var s = 0.0;
    for (var j = 0u; j < p.parts; j++) {
        let o = first + 4u * j;
        let nj = dst[o + 1u];
        n += nj;
        s += nj * ((dst[o] - k0) + dst[o + 2u]);
    }
    let mean = s / n;
    var q = 0.0;
    for (var j = 0u; j < p.parts; j++) {
        let o = first + 4u * j;
        let dm = (dst[o] - k0) + dst[o + 2u] - mean;
        q += dst[o + 3u] + dst[o + 1u] * dm * dm;
    }
    let o = 4u * bg;
    dst[o] = k0;
    dst[o + 1u] = mean;
    dst[o + 2u] = inverseSqrt(q / n + p.eps);
    dst[o + 3u] = 0.0;
}

// y = act(((x − K) − md) · rstd · w[c] + b[c]), folded to (x − K)·a + t per channel. A workgroup covers
// p.parts whole planes (small planes) or one chunk of one plane (large ones): no per-element division.
@compute @workgroup_size(256)
fn gn_apply(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_id) lid3: vec3<u32>) {
    let wid = wg.x + wg.y * nwg.x;
    let blk = wid / p.chunks;
    let k = wid - blk * p.chunks;
    let c0 = k * p.chunk;
    if (blk * p.parts >= p.units) { return; }
    let n = min(p.chunk, p.count - c0);
    let u_end = min(blk * p.parts + p.parts, p.units);
    for (var u = blk * p.parts; u < u_end; u++) {
        let plane = p.unit0 + u;
        let c = plane % p.channels;
        let g = 4u * (plane / p.cpg);   // = b·G + c / cpg
        let shift = in1[g];
        var w = 1.0;
        if ((p.flags & 1u) != 0u) { w = in2[c]; }
        var b = 0.0;
        if ((p.flags & 2u) != 0u) { b = in3[c]; }
        let a = in1[g + 2u] * w;
        let t = b - in1[g + 1u] * a;
        let xb = p.x_shift + u * p.len + c0;
        let ob = p.out_shift + u * p.len + c0;
        for (var i = lid3.x; i < n; i += WG) {
            dst[ob + i] = activate((x[xb + i] - shift) * a + t, p.act);
        }
    }
}

// LayerNorm over rows of p.len elements: p.chunk threads per row, WG / p.chunk rows per workgroup, one
// barrier per workgroup. y = ((x − K) − md) · rstd · w[j] + b[j].
@compute @workgroup_size(256)
fn layer_norm(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_id) lid3: vec3<u32>) {
    let lid = lid3.x;
    let tpr = p.chunk;
    let lane = lid % tpr;
    let r = (wg.x + wg.y * nwg.x) * (WG / tpr) + lid / tpr;
    let live = r < p.units;
    let row = p.x_shift + r * p.len;
    var shift = 0.0;
    var acc = vec3<f32>(0.0);
    if (live) {
        shift = x[row];
        for (var j = lane; j < p.len; j += tpr) {
            acc = welford(acc, x[row + j] - shift);
        }
    }
    store_partial(lid, acc);
    workgroupBarrier();
    let st = combine(lid - lane, tpr, 1u);
    if (!live) { return; }
    let md = st.y;
    let rstd = inverseSqrt(st.z / st.x + p.eps);
    let has_w = (p.flags & 1u) != 0u;
    let has_b = (p.flags & 2u) != 0u;
    let orow = p.out_shift + r * p.len;
    for (var j = lane; j < p.len; j += tpr) {
        var y = ((x[row + j] - shift) - md) * rstd;
        if (has_w) { y *= in1[j]; }
        if (has_b) { y += in2[j]; }
        dst[orow + j] = y;
    }
}

// Softmax of p.scale · x over rows of p.len elements, laid out like layer_norm. The exponent is computed as
// (x − x*) · scale with x* the element that maximises scale · x, so no rounding of scale · x at |x| ≫ 1 leaks
// into it. exp is evaluated once per element: stored, then rescaled by 1 / Σ in place.
@compute @workgroup_size(256)
fn softmax(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_id) lid3: vec3<u32>) {
    let lid = lid3.x;
    let tpr = p.chunk;
    let lane = lid % tpr;
    let r = (wg.x + wg.y * nwg.x) * (WG / tpr) + lid / tpr;
    let live = r < p.units;
    let row = p.x_shift + r * p.len;
    let orow = p.out_shift + r * p.len;
    let sgn = select(-1.0, 1.0, p.scale >= 0.0);
    var m = -F32_MAX;
    if (live) {
        for (var j = lane; j < p.len; j += tpr) {
            m = max(m, sgn * x[row + j]);
        }
    }
    sh_m[lid] = m;
    workgroupBarrier();
    let first = lid - lane;
    for (var j = 0u; j < tpr; j++) {
        m = max(m, sh_m[first + j]);
    }
    let xm = sgn * m;
    var s = 0.0;
    if (live) {
        for (var j = lane; j < p.len; j += tpr) {
            let e = exp((x[row + j] - xm) * p.scale);
            dst[orow + j] = e;
            s += e;
        }
    }
    sh_n[lid] = s;
    workgroupBarrier();
    s = 0.0;
    for (var j = 0u; j < tpr; j++) {
        s += sh_n[first + j];
    }
    if (!live) { return; }
    let inv = 1.0 / s;
    for (var j = lane; j < p.len; j += tpr) {
        dst[orow + j] *= inv;
    }
}
