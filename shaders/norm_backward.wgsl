// Backward of the normalisation family (src/kernels/norm_backward.rs). Entry points:
//   gn_bwd_sums   per (plane, chunk): A = Σ dyp, B = Σ dyp · xhat, where dyp = dy · act'(pre-activation)
//   gn_bwd_coef   per (b, g): m1 = mean(dxhat), m2 = mean(dxhat · xhat) with dxhat = dyp · w[c]
//   gn_bwd_param  per channel: Σ over batch and chunks of B (weight) or A (bias)
//   gn_bwd_dx     dx = rstd · (dxhat − m1 − xhat · m2)
//   ln_stats      per row: (K, md, rstd, 0) as GroupNorm's finals (mean = K + md)
//   ln_bwd_dx     dx of LayerNorm, the row's two means reduced in the same dispatch
//   ln_bwd_dweight partial column sums of dy · xhat over parts of the rows
//   softmax_bwd   dx = scale · y · (dy − Σ dy · y)
//
// GroupNorm's pre-activation and xhat are recomputed from x and the forward's statistics exactly as gn_apply
// forms them ((x − K) · a + t and ((x − K) − md) · rstd), so the shift K keeps them accurate when |mean| ≫ std.
//
// Bindings (one declaration per number, shared by the entry points; unused ones get a harmless buffer):
//   1 x     the input (softmax_bwd: the forward output y), a sub-range; x_shift is this dispatch's start
//   2 dy    the output gradient, a sub-range (dy_shift)
//   3 dst   the output
//   4 st    statistics: GroupNorm's tensor (finals first) or LayerNorm's per-row (K, md, rstd, 0), st_shift
//   5 w     weight [C]
//   6 bias  bias [C] (GroupNorm: needed to recompute the pre-activation)
//   7 aux   gn_bwd_dx: coefficients (m1, m2) per (b, g); gn_bwd_coef/param: the partial sums (A, B)

struct Params {
    units: u32,      // gn: planes of this dispatch; gn_bwd_coef: B·G; gn_bwd_param: C; rows otherwise
    len: u32,        // elements per plane / row
    count: u32,      // gn: elements of each plane this dispatch covers (< len when a plane is split)
    chunk: u32,      // gn_bwd_sums/dx: elements per unit; ln_bwd_dweight: rows per part; rows: threads per row
    chunks: u32,     // gn_bwd_sums/dx: units per plane in this dispatch; ln_bwd_dweight: parts of this dispatch
    x_shift: u32,
    dy_shift: u32,
    out_shift: u32,
    st_shift: u32,
    unit0: u32,      // gn: global index of plane 0; ln_bwd_dweight: global index of part 0
    k0: u32,         // gn_bwd_sums: index, inside its plane, of this dispatch's first chunk
    parts: u32,      // gn: partial sums per plane (P); gn_bwd_dx: planes per workgroup
    channels: u32,
    cpg: u32,        // channels per group
    groups: u32,
    batch: u32,
    flags: u32,      // bit 0: weight given, bit 1: bias given, bit 2 (gn_bwd_param): sum B, not A
    act: u32,        // ACT_* code fused after GroupNorm's affine
    tpu: u32,        // gn_bwd_sums: threads per unit (a power of two ≤ 256)
    scale: f32,      // softmax_bwd: the forward's scale; gn_bwd_coef: 1 / elements per group; ln_stats: eps
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
    _pad3: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> dy: array<f32>;
@group(0) @binding(3) var<storage, read_write> dst: array<f32>;
@group(0) @binding(4) var<storage, read> st: array<f32>;
@group(0) @binding(5) var<storage, read> w: array<f32>;
@group(0) @binding(6) var<storage, read> bias: array<f32>;
@group(0) @binding(7) var<storage, read> aux: array<f32>;

const WG: u32 = 256u;

var<workgroup> sh_a: array<f32, 256>;
var<workgroup> sh_b: array<f32, 256>;
var<workgroup> sh_c: array<f32, 256>;

fn sigmoid(z: f32) -> f32 {
    return 1.0 / (1.0 + exp(-z));
}

// d act(z) / dz for the ACT_* codes of activations.wgsl.
fn act_grad(z: f32, act: u32) -> f32 {
    switch act {
        case 1u: {
            let s = sigmoid(z);
            return s * (1.0 + z * (1.0 - s));
        }
        case 2u: {
            // Φ(z) + z · φ(z)
            return 0.5 * (1.0 + erf_approx(z * 0.7071067811865476)) + z * 0.3989422804014327 * exp(-0.5 * z * z);
        }
        case 3u: {
            let k = 0.7978845608028654;
            let t = tanh(k * (z + 0.044715 * z * z * z));
            return 0.5 * (1.0 + t) + 0.5 * z * (1.0 - t * t) * k * (1.0 + 3.0 * 0.044715 * z * z);
        }
        case 4u: {
            let s = sigmoid(1.702 * z);
            return s * (1.0 + 1.702 * z * (1.0 - s));
        }
        case 5u: { return select(0.0, 1.0, z > 0.0); }
        case 6u: { let t = tanh(z); return 1.0 - t * t; }
        default: { return 1.0; }
    }
}

fn weight_of(c: u32) -> f32 {
    if ((p.flags & 1u) != 0u) { return w[c]; }
    return 1.0;
}

fn bias_of(c: u32) -> f32 {
    if ((p.flags & 2u) != 0u) { return bias[c]; }
    return 0.0;
}

// ---------------------------------------------------------------------------------------------------------
// GroupNorm

// One unit = one chunk (≤ p.chunk elements) of one channel plane, reduced by p.tpu threads (strided, so a
// warp reads contiguously); WG / tpu units per workgroup, so small planes (8 × 8) do not leave threads idle.
// The unit's first thread adds its threads' partials after the one barrier. Output slot 2·(plane·P + k).
@compute @workgroup_size(256)
fn gn_bwd_sums(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_id) lid3: vec3<u32>) {
    let lid = lid3.x;
    let tpu = p.tpu;
    let lane = lid % tpu;
    let unit = (wg.x + wg.y * nwg.x) * (WG / tpu) + lid / tpu;
    let live = unit < p.units * p.chunks;
    let u = unit / p.chunks;
    let k = unit - u * p.chunks;
    let plane = p.unit0 + u;
    var sa = 0.0;
    var sb = 0.0;
    if (live) {
        let c0 = k * p.chunk;
        let n = min(p.chunk, p.count - c0);
        let c = plane % p.channels;
        let g = 4u * (plane / p.cpg);   // = 4 · (b·G + c / cpg)
        let shift = st[g];
        let md = st[g + 1u];
        let rstd = st[g + 2u];
        let a = rstd * weight_of(c);
        let t = bias_of(c) - md * a;
        let xb = p.x_shift + u * p.len + c0;
        let db = p.dy_shift + u * p.len + c0;
        let act = p.act;
        if (act == ACT_NONE) {
            for (var i = lane; i < n; i += tpu) {
                let d = dy[db + i];
                sa += d;
                sb += d * (x[xb + i] - shift - md);
            }
        } else {
            for (var i = lane; i < n; i += tpu) {
                let xs = x[xb + i] - shift;
                let d = dy[db + i] * act_grad(xs * a + t, act);
                sa += d;
                sb += d * (xs - md);
            }
        }
        sb *= rstd;
    }
    sh_a[lid] = sa;
    sh_b[lid] = sb;
    workgroupBarrier();
    if (live && lane == 0u) {
        var ta = 0.0;
        var tb = 0.0;
        for (var j = 0u; j < tpu; j++) {
            ta += sh_a[lid + j];
            tb += sh_b[lid + j];
        }
        let slot = 2u * (plane * p.parts + p.k0 + k);
        dst[slot] = ta;
        dst[slot + 1u] = tb;
    }
}

// One thread per (b, g): m1 = Σ_c w[c]·A_c / n, m2 = Σ_c w[c]·B_c / n over the group's channels and chunks.
@compute @workgroup_size(256)
fn gn_bwd_coef(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_id) lid3: vec3<u32>) {
    let bg = (wg.x + wg.y * nwg.x) * WG + lid3.x;
    if (bg >= p.units) { return; }
    let b = bg / p.groups;
    let c_first = (bg - b * p.groups) * p.cpg;
    var m1 = 0.0;
    var m2 = 0.0;
    for (var ci = 0u; ci < p.cpg; ci++) {
        let c = c_first + ci;
        let first = 2u * (b * p.channels + c) * p.parts;
        var sa = 0.0;
        var sb = 0.0;
        for (var k = 0u; k < p.parts; k++) {
            sa += aux[first + 2u * k];
            sb += aux[first + 2u * k + 1u];
        }
        let wc = weight_of(c);
        m1 += wc * sa;
        m2 += wc * sb;
    }
    dst[2u * bg] = m1 * p.scale;
    dst[2u * bg + 1u] = m2 * p.scale;
}

// One thread per channel: the weight (flags bit 2) or bias gradient, summed over batch and chunks.
@compute @workgroup_size(256)
fn gn_bwd_param(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_id) lid3: vec3<u32>) {
    let c = (wg.x + wg.y * nwg.x) * WG + lid3.x;
    if (c >= p.units) { return; }
    let which = select(0u, 1u, (p.flags & 4u) != 0u);
    var s = 0.0;
    for (var b = 0u; b < p.batch; b++) {
        let first = 2u * (b * p.channels + c) * p.parts + which;
        for (var k = 0u; k < p.parts; k++) {
            s += aux[first + 2u * k];
        }
    }
    dst[c] = s;
}

// dx = rstd·w·dyp − rstd·m1 − rstd²·m2·(x − mean), folded per plane. Work split as gn_apply: p.parts whole
// planes per workgroup (small planes) or one chunk of one plane (large ones).
@compute @workgroup_size(256)
fn gn_bwd_dx(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_id) lid3: vec3<u32>) {
    let wid = wg.x + wg.y * nwg.x;
    let blk = wid / p.chunks;
    let k = wid - blk * p.chunks;
    let c0 = k * p.chunk;
    if (blk * p.parts >= p.units) { return; }
    let n = min(p.chunk, p.count - c0);
    let u_end = min(blk * p.parts + p.parts, p.units);
    let act = p.act;
    for (var u = blk * p.parts; u < u_end; u++) {
        let plane = p.unit0 + u;
        let c = plane % p.channels;
        let bg = plane / p.cpg;
        let shift = st[4u * bg];
        let md = st[4u * bg + 1u];
        let rstd = st[4u * bg + 2u];
        let wc = weight_of(c);
        let a = rstd * wc;
        let t = bias_of(c) - md * a;
        let c1 = rstd * aux[2u * bg];
        let c2 = rstd * rstd * aux[2u * bg + 1u];
        let xb = p.x_shift + u * p.len + c0;
        let db = p.dy_shift + u * p.len + c0;
        let ob = p.out_shift + u * p.len + c0;
        if (act == ACT_NONE) {
            for (var i = lid3.x; i < n; i += WG) {
                dst[ob + i] = a * dy[db + i] - c1 - c2 * ((x[xb + i] - shift) - md);
            }
        } else {
            for (var i = lid3.x; i < n; i += WG) {
                let xs = x[xb + i] - shift;
                let d = dy[db + i] * act_grad(xs * a + t, act);
                dst[ob + i] = a * d - c1 - c2 * (xs - md);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// Row kernels: p.chunk threads per row (a power of two), WG / p.chunk rows per workgroup, one barrier.

struct Row {
    live: bool,
    r: u32,       // row index inside this dispatch
    lane: u32,
    first: u32,   // local id of the row's first thread
}

fn row_of(wg: vec3<u32>, nwg: vec3<u32>, lid: u32) -> Row {
    let tpr = p.chunk;
    let lane = lid % tpr;
    let r = (wg.x + wg.y * nwg.x) * (WG / tpr) + lid / tpr;
    return Row(r < p.units, r, lane, lid - lane);
}

// LayerNorm statistics of each row relative to its first element K: every thread keeps Welford's (n, mean,
// M2) of its strided elements; the row's threads are merged with Chan's formula.
@compute @workgroup_size(256)
fn ln_stats(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_id) lid3: vec3<u32>) {
    let lid = lid3.x;
    let tpr = p.chunk;
    let rw = row_of(wg, nwg, lid);
    let start = p.x_shift + rw.r * p.len;
    var shift = 0.0;
    var n = 0.0;
    var mean = 0.0;
    var m2 = 0.0;
    if (rw.live) {
        shift = x[start];
        for (var j = rw.lane; j < p.len; j += tpr) {
            let v = x[start + j] - shift;
            n += 1.0;
            let d = v - mean;
            mean += d / n;
            m2 += d * (v - mean);
        }
    }
    sh_a[lid] = n;
    sh_b[lid] = mean;
    sh_c[lid] = m2;
    workgroupBarrier();
    if (!rw.live || rw.lane != 0u) { return; }
    var tn = 0.0;
    var s = 0.0;
    for (var j = 0u; j < tpr; j++) {
        tn += sh_a[rw.first + j];
        s += sh_a[rw.first + j] * sh_b[rw.first + j];
    }
    let md = s / tn;
    var q = 0.0;
    for (var j = 0u; j < tpr; j++) {
        let dm = sh_b[rw.first + j] - md;
        q += sh_c[rw.first + j] + sh_a[rw.first + j] * dm * dm;
    }
    let o = p.out_shift + 4u * rw.r;
    dst[o] = shift;
    dst[o + 1u] = md;
    dst[o + 2u] = inverseSqrt(q / tn + p.scale);   // scale holds eps here
    dst[o + 3u] = 0.0;
}

// LayerNorm dx: dxhat = dy · w[j], xhat = ((x − K) − md) · rstd; dx = rstd · (dxhat − mean(dxhat) −
// xhat · mean(dxhat · xhat)), the two means reduced by the row's threads.
@compute @workgroup_size(256)
fn ln_bwd_dx(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_id) lid3: vec3<u32>) {
    let lid = lid3.x;
    let tpr = p.chunk;
    let rw = row_of(wg, nwg, lid);
    let xs0 = p.x_shift + rw.r * p.len;
    let ds0 = p.dy_shift + rw.r * p.len;
    let so = p.st_shift + 4u * rw.r;
    var shift = 0.0;
    var md = 0.0;
    var rstd = 0.0;
    var s1 = 0.0;
    var s2 = 0.0;
    let has_w = (p.flags & 1u) != 0u;
    if (rw.live) {
        shift = st[so];
        md = st[so + 1u];
        rstd = st[so + 2u];
        for (var j = rw.lane; j < p.len; j += tpr) {
            var d = dy[ds0 + j];
            if (has_w) { d *= w[j]; }
            s1 += d;
            s2 += d * ((x[xs0 + j] - shift) - md);
        }
    }
    sh_a[lid] = s1;
    sh_b[lid] = s2;
    workgroupBarrier();
    if (!rw.live) { return; }
    var t1 = 0.0;
    var t2 = 0.0;
    for (var j = 0u; j < tpr; j++) {
        t1 += sh_a[rw.first + j];
        t2 += sh_b[rw.first + j];
    }
    let inv_n = 1.0 / f32(p.len);
    // dx = rstd·d − rstd·m1 − rstd³·(x − mean)·Σ d·(x − mean) / n
    let c1 = rstd * t1 * inv_n;
    let c2 = rstd * rstd * rstd * t2 * inv_n;
    let os = p.out_shift + rw.r * p.len;
    for (var j = rw.lane; j < p.len; j += tpr) {
        var d = dy[ds0 + j];
        if (has_w) { d *= w[j]; }
        dst[os + j] = rstd * d - c1 - c2 * ((x[xs0 + j] - shift) - md);
    }
}

// Partial column sums of dy · xhat: workgroup (column tile of WG, part) adds the part's p.chunk rows; the
// threads of a workgroup read consecutive columns of a row. Output [parts, C], summed by a reduce node.
@compute @workgroup_size(256)
fn ln_bwd_dweight(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_id) lid3: vec3<u32>) {
    let wid = wg.x + wg.y * nwg.x;
    let tiles = (p.len + WG - 1u) / WG;
    let part = wid / tiles;
    let j = (wid - part * tiles) * WG + lid3.x;
    if (part >= p.chunks || j >= p.len) { return; }
    let r0 = part * p.chunk;
    let r1 = min(r0 + p.chunk, p.units);
    var s = 0.0;
    for (var r = r0; r < r1; r++) {
        let so = p.st_shift + 4u * r;
        let xh = ((x[p.x_shift + r * p.len + j] - st[so]) - st[so + 1u]) * st[so + 2u];
        s += dy[p.dy_shift + r * p.len + j] * xh;
    }
    dst[(p.unit0 + part) * p.len + j] = s;
}

// Softmax of scale · x: dx = scale · y · (dy − Σ dy · y) per row.
@compute @workgroup_size(256)
fn softmax_bwd(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_id) lid3: vec3<u32>) {
    let lid = lid3.x;
    let tpr = p.chunk;
    let rw = row_of(wg, nwg, lid);
    let ys = p.x_shift + rw.r * p.len;
    let ds = p.dy_shift + rw.r * p.len;
    var s = 0.0;
    if (rw.live) {
        for (var j = rw.lane; j < p.len; j += tpr) {
            s += dy[ds + j] * x[ys + j];
        }
    }
    sh_a[lid] = s;
    workgroupBarrier();
    if (!rw.live) { return; }
    var t = 0.0;
    for (var j = 0u; j < tpr; j++) {
        t += sh_a[rw.first + j];
    }
    let os = p.out_shift + rw.r * p.len;
    for (var j = rw.lane; j < p.len; j += tpr) {
        dst[os + j] = p.scale * x[ys + j] * (dy[ds + j] - t);
    }
}
