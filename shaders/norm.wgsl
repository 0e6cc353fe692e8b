// Normalisation family: GroupNorm (a statistics pass, a finalize and an apply), LayerNorm and softmax over the
// last dimension. Entry points: gn_stats, gn_finalize, gn_apply, layer_norm, softmax; gn_stats4, gn_apply4 and
// layer_norm4 are gn_stats, gn_apply and layer_norm reading (and writing) 4 elements at a time where every
// offset, chunk, row and count is a multiple of 4 (chosen per dispatch when lowering): on CPU drivers a
// vector access costs about what a scalar one does. gn_apply4h is gn_apply4 writing f16 (two per word);
// the *_w8 forms (gn_stats4, gn_apply4, gn_apply4h, layer_norm4) run 8-invocation workgroups for CPU
// adapters.
//
// Statistics are f32 and numerically stable, never E[x²] − E[x]²: each thread reduces its elements serially
// (exact two-pass statistics of batches of 8 held in registers, Welford's update for the tail) and partial
// results (n, mean, M2) are combined with the exact parallel formula (Chan et al.): n = Σ nᵢ,
// mean = Σ nᵢ·meanᵢ / n, M2 = Σ M2ᵢ + Σ nᵢ·(meanᵢ − mean)². Values are taken relative to a shift K, an element of
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
// x, dst and layer_norm's weight and bias 4 elements at a time, for the *4 entry points only (they use no
// other view of these bindings; WGSL lets entry points that do not share variables bind one slot to both).
// x4, in1v and in2v are read only through their accessors, so that CPU adapters can read them from textures.
@group(0) @binding(1) var<storage, read> x4: array<vec4<f32>>;
fn x4_at4(i: u32) -> vec4<f32> { return x4[i]; }
@group(0) @binding(2) var<storage, read_write> dst4: array<vec4<f32>>;
// gn_apply4h's output: 4 values as 4 halves in 2 words.
@group(0) @binding(2) var<storage, read_write> dsth: array<vec2<u32>>;
@group(0) @binding(3) var<storage, read> in1v: array<vec4<f32>>;
fn in1v_at4(i: u32) -> vec4<f32> { return in1v[i]; }
@group(0) @binding(4) var<storage, read> in2v: array<vec4<f32>>;
fn in2v_at4(i: u32) -> vec4<f32> { return in2v[i]; }

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

// Statistics of x[start + i·stride] − shift for i·stride < n, relative to shift. Batches of 8 values: exact
// two-pass statistics of the batch in registers merged into the running ones (one division per batch, 8
// independent loads in flight); Welford's update for the tail.
fn strided_stats(start: u32, n: u32, stride: u32, shift: f32) -> vec3<f32> {
    var acc = vec3<f32>(0.0);
    var i = 0u;
    for (; i + 7u * stride < n; i += 8u * stride) {
        var v: array<f32, 8>;
        var s = 0.0;
        for (var t = 0u; t < 8u; t++) {
            v[t] = x[start + i + t * stride] - shift;
            s += v[t];
        }
        let mb = s * 0.125;
        var qb = 0.0;
        for (var t = 0u; t < 8u; t++) {
            let e = v[t] - mb;
            qb += e * e;
        }
        let nn = acc.x + 8.0;
        let d = mb - acc.y;
        let f = 8.0 / nn;
        acc = vec3<f32>(nn, acc.y + d * f, acc.z + qb + d * d * acc.x * f);
    }
    for (; i < n; i += stride) {
        acc = welford(acc, x[start + i] - shift);
    }
    return acc;
}

fn store_partial(lid: u32, acc: vec3<f32>) {
    sh_n[lid] = acc.x;
    sh_m[lid] = acc.y;
    sh_q[lid] = acc.z;
}

// One workgroup reduces one chunk (≤ p.chunk elements) of one group block to a partial (K, n, md, M2).
// Threads read with a stride of WG (coalesced) and reduce serially; then one barrier, and thread 0 combines
// the 256 partials (on lavapipe as fast as a 16 × 16 tree, which needs a second barrier).
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
    let acc = strided_stats(base + lid, n - min(lid, n), WG, shift);
    store_partial(lid, acc);
    workgroupBarrier();
    if (lid == 0u) {
        let r = combine(0u, WG, 1u);
        let slot = 4u * (p.unit0 + u * p.parts + k);
        dst[slot] = shift;
        dst[slot + 1u] = r.x;
        dst[slot + 2u] = r.y;
        dst[slot + 3u] = r.z;
    }
}

// strided_stats over x4: vec4s start4 + i·stride for i·stride < n4, two vec4s (8 values) per batch.
fn strided_stats4(start4: u32, n4: u32, stride: u32, shift: f32) -> vec3<f32> {
    var acc = vec3<f32>(0.0);
    var i = 0u;
    for (; i + stride < n4; i += 2u * stride) {
        let v0 = x4_at4(start4 + i) - shift;
        let v1 = x4_at4(start4 + i + stride) - shift;
        let mb = dot(v0 + v1, vec4<f32>(0.125));
        let e0 = v0 - mb;
        let e1 = v1 - mb;
        let qb = dot(e0, e0) + dot(e1, e1);
        let nn = acc.x + 8.0;
        let d = mb - acc.y;
        let f = 8.0 / nn;
        acc = vec3<f32>(nn, acc.y + d * f, acc.z + qb + d * d * acc.x * f);
    }
    for (; i < n4; i += stride) {
        let v = x4_at4(start4 + i) - shift;
        acc = welford(welford(welford(welford(acc, v.x), v.y), v.z), v.w);
    }
    return acc;
}

// gn_stats with vec4 reads (the chunk start, p.chunk, p.count and p.len multiples of 4): workgroup `wid`
// with `n_inv` invocations. Entry points gn_stats4 (256, for GPUs) and gn_stats4_w8 (8, for CPU adapters,
// where each invocation then reduces more values per set-up and the combine is of 8 partials).
fn stats4(wid: u32, lid: u32, n_inv: u32) {
    if (wid >= p.units * p.chunks) { return; }
    let u = wid / p.chunks;
    let k = wid - u * p.chunks;
    let c0 = k * p.chunk;
    let n4 = min(p.chunk, p.count - c0) / 4u;
    let base4 = (p.x_shift + u * p.len + c0) / 4u;
    let shift = x4_at4(base4).x;
    let acc = strided_stats4(base4 + lid, n4 - min(lid, n4), n_inv, shift);
    store_partial(lid, acc);
    workgroupBarrier();
    if (lid == 0u) {
        let r = combine(0u, n_inv, 1u);
        let slot = 4u * (p.unit0 + u * p.parts + k);
        dst4[slot / 4u] = vec4<f32>(shift, r.x, r.y, r.z);
    }
}

@compute @workgroup_size(256)
fn gn_stats4(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_id) lid: vec3<u32>) {
    stats4(wg.x + wg.y * nwg.x, lid.x, 256u);
}

@compute @workgroup_size(8)
fn gn_stats4_w8(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_id) lid: vec3<u32>) {
    stats4(wg.x + wg.y * nwg.x, lid.x, 8u);
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

// The apply's map of one channel plane (b, c): y = ((x − K) − md) · rstd · w[c] + b[c] folded to
// (x − K)·a + t; returns (K, a, t).
fn plane_affine(plane: u32) -> vec3<f32> {
    let c = plane % p.channels;
    let g = 4u * (plane / p.cpg);   // = b·G + c / cpg
    var w = 1.0;
    if ((p.flags & 1u) != 0u) { w = in2[c]; }
    var b = 0.0;
    if ((p.flags & 2u) != 0u) { b = in3[c]; }
    let a = in1[g + 2u] * w;
    return vec3<f32>(in1[g], a, b - in1[g + 1u] * a);
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
    let act = act_code(p.act);
    for (var u = blk * p.parts; u < u_end; u++) {
        let f = plane_affine(p.unit0 + u);
        let shift = f.x;
        let a = f.y;
        let t = f.z;
        let xb = p.x_shift + u * p.len + c0;
        let ob = p.out_shift + u * p.len + c0;
        // The activation switch is hoisted out of the loop for the common cases.
        if (act == ACT_SILU) {
            for (var i = lid3.x; i < n; i += WG) {
                dst[ob + i] = silu((x[xb + i] - shift) * a + t);
            }
        } else if (act == ACT_NONE) {
            for (var i = lid3.x; i < n; i += WG) {
                dst[ob + i] = (x[xb + i] - shift) * a + t;
            }
        } else {
            for (var i = lid3.x; i < n; i += WG) {
                dst[ob + i] = activate((x[xb + i] - shift) * a + t, act);
            }
        }
    }
}

// gn_apply with vec4 reads and writes (plane starts, chunks and counts multiples of 4): the work of
// workgroup `wid`'s invocation `lid` of `n_inv`. Entry points gn_apply4 (256 invocations, for GPUs) and
// gn_apply4_w8 (8, for CPU adapters: there every 8 invocations repeat a plane's parameter loads and
// index divisions, so fewer invocations per plane normalise more values per set-up).
fn apply4(wid: u32, lid: u32, n_inv: u32) {
    let blk = wid / p.chunks;
    let k = wid - blk * p.chunks;
    let c0 = k * p.chunk;
    if (blk * p.parts >= p.units) { return; }
    let n4 = min(p.chunk, p.count - c0) / 4u;
    let u_end = min(blk * p.parts + p.parts, p.units);
    let act = act_code(p.act);
    for (var u = blk * p.parts; u < u_end; u++) {
        let f = plane_affine(p.unit0 + u);
        let xb = (p.x_shift + u * p.len + c0) / 4u;
        let ob = (p.out_shift + u * p.len + c0) / 4u;
        if (act == ACT_SILU) {
            for (var i = lid; i < n4; i += n_inv) {
                let y = (x4_at4(xb + i) - f.x) * f.y + f.z;
                dst4[ob + i] = y / (1.0 + exp(-y));
            }
        } else if (act == ACT_NONE) {
            for (var i = lid; i < n4; i += n_inv) {
                dst4[ob + i] = (x4_at4(xb + i) - f.x) * f.y + f.z;
            }
        } else {
            for (var i = lid; i < n4; i += n_inv) {
                let y = (x4_at4(xb + i) - f.x) * f.y + f.z;
                dst4[ob + i] = vec4<f32>(activate(y.x, act), activate(y.y, act), activate(y.z, act), activate(y.w, act));
            }
        }
    }
}

// apply4 writing the output as f16 (rounded once; planes whole vec4s, checked at record time). Entry
// points gn_apply4h and gn_apply4h_w8.
fn apply4h(wid: u32, lid: u32, n_inv: u32) {
    let blk = wid / p.chunks;
    let k = wid - blk * p.chunks;
    let c0 = k * p.chunk;
    if (blk * p.parts >= p.units) { return; }
    let n4 = min(p.chunk, p.count - c0) / 4u;
    let u_end = min(blk * p.parts + p.parts, p.units);
    let act = act_code(p.act);
    let silu_on = act == ACT_SILU;
    for (var u = blk * p.parts; u < u_end; u++) {
        let f = plane_affine(p.unit0 + u);
        let xb = (p.x_shift + u * p.len + c0) / 4u;
        let ob = (p.out_shift + u * p.len + c0) / 4u;
        for (var i = lid; i < n4; i += n_inv) {
            var y = (x4_at4(xb + i) - f.x) * f.y + f.z;
            if (silu_on) {
                y = y / (1.0 + exp(-y));
            } else if (act != ACT_NONE) {
                y = vec4<f32>(activate(y.x, act), activate(y.y, act), activate(y.z, act), activate(y.w, act));
            }
            dsth[ob + i] = vec2<u32>(pack2x16float(y.xy), pack2x16float(y.zw));
        }
    }
}

@compute @workgroup_size(256)
fn gn_apply4(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_id) lid: vec3<u32>) {
    apply4(wg.x + wg.y * nwg.x, lid.x, 256u);
}

@compute @workgroup_size(8)
fn gn_apply4_w8(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_id) lid: vec3<u32>) {
    apply4(wg.x + wg.y * nwg.x, lid.x, 8u);
}

@compute @workgroup_size(256)
fn gn_apply4h(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_id) lid: vec3<u32>) {
    apply4h(wg.x + wg.y * nwg.x, lid.x, 256u);
}

@compute @workgroup_size(8)
fn gn_apply4h_w8(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_id) lid: vec3<u32>) {
    apply4h(wg.x + wg.y * nwg.x, lid.x, 8u);
}

// Row kernels (layer_norm, softmax): p.chunk threads per row (a power of two, 1 to 64), WG / p.chunk rows per
// workgroup, so a workgroup's one or two barriers serve many rows. Each pass re-reads the row (from cache on a
// GPU): keeping it in a private array measured slower on lavapipe, where every array access costs alike.
struct Row {
    live: bool,
    lane: u32,
    first: u32,   // local id of the row's first thread
    start: u32,   // the row's first element in x
    ostart: u32,  // ... in dst
}

fn row_of(wg: vec3<u32>, nwg: vec3<u32>, lid: u32) -> Row {
    let tpr = p.chunk;
    let lane = lid % tpr;
    let r = (wg.x + wg.y * nwg.x) * (WG / tpr) + lid / tpr;
    return Row(r < p.units, lane, lid - lane, p.x_shift + r * p.len, p.out_shift + r * p.len);
}

// LayerNorm: y = ((x − K) − md) · rstd · w[j] + b[j], one barrier per workgroup.
@compute @workgroup_size(256)
fn layer_norm(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_id) lid3: vec3<u32>) {
    let lid = lid3.x;
    let tpr = p.chunk;
    let rw = row_of(wg, nwg, lid);
    var shift = 0.0;
    var acc = vec3<f32>(0.0);
    if (rw.live) {
        shift = x[rw.start];
        acc = strided_stats(rw.start + rw.lane, p.len - min(rw.lane, p.len), tpr, shift);
    }
    store_partial(lid, acc);
    workgroupBarrier();
    let st = combine(rw.first, tpr, 1u);
    if (!rw.live) { return; }
    let md = st.y;
    let rstd = inverseSqrt(st.z / st.x + p.eps);
    let has_w = (p.flags & 1u) != 0u;
    let has_b = (p.flags & 2u) != 0u;
    for (var j = rw.lane; j < p.len; j += tpr) {
        var y = ((x[rw.start + j] - shift) - md) * rstd;
        if (has_w) { y *= in1[j]; }
        if (has_b) { y += in2[j]; }
        dst[rw.ostart + j] = y;
    }
}

// layer_norm with vec4 reads and writes: rows, their starts and the weight and bias are whole vec4s.
@compute @workgroup_size(256)
fn layer_norm4(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_id) lid3: vec3<u32>) {
    let lid = lid3.x;
    let tpr = p.chunk;
    let rw = row_of(wg, nwg, lid);
    let len4 = p.len / 4u;
    let s4 = rw.start / 4u;
    var shift = 0.0;
    var acc = vec3<f32>(0.0);
    if (rw.live) {
        shift = x4_at4(s4).x;
        acc = strided_stats4(s4 + rw.lane, len4 - min(rw.lane, len4), tpr, shift);
    }
    store_partial(lid, acc);
    workgroupBarrier();
    let st = combine(rw.first, tpr, 1u);
    if (!rw.live) { return; }
    let md = st.y;
    let rstd = inverseSqrt(st.z / st.x + p.eps);
    let has_w = (p.flags & 1u) != 0u;
    let has_b = (p.flags & 2u) != 0u;
    let o4 = rw.ostart / 4u;
    for (var j = rw.lane; j < len4; j += tpr) {
        var y = ((x4_at4(s4 + j) - shift) - md) * rstd;
        if (has_w) { y *= in1v_at4(j); }
        if (has_b) { y += in2v_at4(j); }
        dst4[o4 + j] = y;
    }
}

// layer_norm4 for CPU adapters: one row per invocation, 8 invocations per workgroup, so no partials to
// combine and no barrier (on lavapipe each 8 invocations of a 256-invocation workgroup repeat the row's
// index divisions, and the combine reads workgroup memory lane by lane).
@compute @workgroup_size(8)
fn layer_norm4_w8(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_id) lid: vec3<u32>) {
    let r = (wg.x + wg.y * nwg.x) * 8u + lid.x;
    if (r >= p.units) { return; }
    let len4 = p.len / 4u;
    let s4 = (p.x_shift + r * p.len) / 4u;
    let o4 = (p.out_shift + r * p.len) / 4u;
    let shift = x4_at4(s4).x;
    let st = strided_stats4(s4, len4, 1u, shift);
    let md = st.y;
    let rstd = inverseSqrt(st.z / st.x + p.eps);
    let has_w = (p.flags & 1u) != 0u;
    let has_b = (p.flags & 2u) != 0u;
    for (var j = 0u; j < len4; j++) {
        var y = ((x4_at4(s4 + j) - shift) - md) * rstd;
        if (has_w) { y *= in1v_at4(j); }
        if (has_b) { y += in2v_at4(j); }
        dst4[o4 + j] = y;
    }
}

// (a − b) · scale, and 0 for a == b so that masked entries (−inf, −inf) give 0, not NaN.
fn gap(a: f32, b: f32, scale: f32) -> f32 {
    return select((a - b) * scale, 0.0, a == b);
}

// Softmax of p.scale · x in one reduction (one barrier per workgroup): each thread keeps the running
// maximiser m of scale · x and s = Σ exp((x − m) · scale), rescaling s when m changes; the row's threads then
// merge their (m, s). Exponents are formed as (x − m) · scale, differences of inputs, so no rounding of
// scale · x at |x| ≫ 1 leaks into them. Two exps per element: one in the reduction, one for the output.
@compute @workgroup_size(256)
fn softmax(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_id) lid3: vec3<u32>) {
    let lid = lid3.x;
    let tpr = p.chunk;
    let rw = row_of(wg, nwg, lid);
    let sc = p.scale;
    let sgn = select(-1.0, 1.0, sc >= 0.0);
    var m = 0.0;
    var s = 0.0;
    if (rw.live && rw.lane < p.len) {
        m = x[rw.start + rw.lane];
        s = 1.0;
        for (var j = rw.lane + tpr; j < p.len; j += tpr) {
            let v = x[rw.start + j];
            let big = sgn * v > sgn * m;
            // exp of minus the gap: rescales s when v is the new maximiser, else is v's own term.
            let e = exp(-abs(gap(v, m, sc)));
            s = select(s + e, s * e + 1.0, big);
            m = select(m, v, big);
        }
    }
    sh_m[lid] = m;
    sh_n[lid] = s;
    workgroupBarrier();
    if (!rw.live) { return; }
    var mm = sh_m[rw.first];   // lane 0 always has elements (tpr ≤ len)
    for (var j = 1u; j < tpr; j++) {
        let i = rw.first + j;
        if (sh_n[i] > 0.0 && sgn * sh_m[i] > sgn * mm) { mm = sh_m[i]; }
    }
    var total = 0.0;
    for (var j = 0u; j < tpr; j++) {
        let i = rw.first + j;
        total += sh_n[i] * exp(-abs(gap(sh_m[i], mm, sc)));
    }
    let inv = 1.0 / total;
    for (var j = rw.lane; j < p.len; j += tpr) {
        dst[rw.ostart + j] = exp((x[rw.start + j] - mm) * sc) * inv;
    }
}
