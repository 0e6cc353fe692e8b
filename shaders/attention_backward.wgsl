// Backward of multi-head attention out = softmax(q kᵀ · scale [+ causal mask]) v, FlashAttention-2 style:
// the Nq×Nk score / probability matrices are never stored. Every kernel streams the other side's rows in
// blocks of 8 and recomputes the probabilities P = exp(s − L) from the per-row log-sum-exp L.
//
// Layout (as attention.wgsl): q, dO, dQ [B, Nq, H·D]; k, v, dK, dV [B, Nk, H·D]; head h in columns
// h·D..(h+1)·D. Row statistics L and Δ are [B, H, Nq]. Causal: key j > query i is masked.
//
// Entry points (grid x = blocks of 64 rows, y = batch · heads; one invocation owns one row):
// - attn_lse:   bindings q, k, L.           L[i] = log Σ_j exp(s_ij), online max / sum over key blocks.
// - attn_delta: bindings dO, O, Δ.          Δ[i] = Σ_d dO[i,d] · O[i,d].
// - attn_dq:    bindings q, k, v, dO, L, Δ, dQ.  Per query row: dQ = scale · Σ_j P(dP − Δ) k_j.
// - attn_dk:    bindings q, k, v, dO, L, Δ, dK.  Per key row:   dK = scale · Σ_i P(dP − Δ) q_i.
// - attn_dv:    bindings q, k, dO, L, dV.        Per key row:   dV = Σ_i P dO_i.
// where s = scale · q·k and dP = dO·v. The row an invocation owns is its accumulator (zeroed first, then
// read-modified-written once per block of 8 rows): any head dim works and there are no races. The streamed
// rows are read at addresses uniform across the workgroup (broadcast loads, as attention.wgsl's portable
// kernels), so no workgroup memory or barriers are needed.

struct Params {
    nq: u32,       // query rows per batch item
    nk: u32,       // key rows per batch item
    heads: u32,
    d: u32,        // head dim
    causal: u32,   // 1: query i sees keys 0..=i only
    scale: f32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
// attn_dq / attn_dk (attn_lse and attn_dv use q and k too).
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> k: array<f32>;
@group(0) @binding(3) var<storage, read> v: array<f32>;
@group(0) @binding(4) var<storage, read> g_o: array<f32>;
@group(0) @binding(5) var<storage, read> lse: array<f32>;
@group(0) @binding(6) var<storage, read> delta: array<f32>;
@group(0) @binding(7) var<storage, read_write> grad: array<f32>;
// attn_dv: q, k, dO, L, dV.
@group(0) @binding(3) var<storage, read> dv_go: array<f32>;
@group(0) @binding(4) var<storage, read> dv_lse: array<f32>;
@group(0) @binding(5) var<storage, read_write> dv_out: array<f32>;
// attn_lse: q, k, L. attn_delta: dO, O, Δ.
@group(0) @binding(3) var<storage, read_write> stat_out: array<f32>;
@group(0) @binding(1) var<storage, read> dl_go: array<f32>;
@group(0) @binding(2) var<storage, read> dl_o: array<f32>;

const WG: u32 = 64u;
// Score of a masked or padding pair: exp of it minus any real value is 0.
const MASKED: f32 = -1e30;

// Eight values (of the 8 rows of a block): rows 0..3 in a, 4..7 in b.
struct S8 {
    a: vec4<f32>,
    b: vec4<f32>,
}

// Element offsets of the 8 rows r0..r0+7 (clamped to row n−1) of one (batch, head) starting at `base`.
struct R8 {
    a: vec4<u32>,
    b: vec4<u32>,
}

fn rows8(base: u32, r0: u32, n: u32, w: u32) -> R8 {
    let ja = vec4<u32>(r0) + vec4<u32>(0u, 1u, 2u, 3u);
    let last = vec4<u32>(n - 1u);
    return R8(base + min(ja, last) * w, base + min(ja + 4u, last) * w);
}

// Scores of a block with `bad` pairs replaced by MASKED.
fn mask8(s: S8, bad_a: vec4<bool>, bad_b: vec4<bool>) -> S8 {
    return S8(select(s.a, vec4<f32>(MASKED), bad_a), select(s.b, vec4<f32>(MASKED), bad_b));
}

fn hmax(x: vec4<f32>) -> f32 {
    return max(max(x.x, x.y), max(x.z, x.w));
}

fn hsum(x: vec4<f32>) -> f32 {
    return (x.x + x.y) + (x.z + x.w);
}

// One statistic (L or Δ) of each of the 8 query rows i0..i0+7 (clamped) at `base` = (b·H + h)·Nq.
fn stat8_lse(base: u32, i0: u32) -> S8 {
    let r = rows8(base, i0, p.nq, 1u);
    return S8(vec4<f32>(lse[r.a.x], lse[r.a.y], lse[r.a.z], lse[r.a.w]),
              vec4<f32>(lse[r.b.x], lse[r.b.y], lse[r.b.z], lse[r.b.w]));
}

fn stat8_dv_lse(base: u32, i0: u32) -> S8 {
    let r = rows8(base, i0, p.nq, 1u);
    return S8(vec4<f32>(dv_lse[r.a.x], dv_lse[r.a.y], dv_lse[r.a.z], dv_lse[r.a.w]),
              vec4<f32>(dv_lse[r.b.x], dv_lse[r.b.y], dv_lse[r.b.z], dv_lse[r.b.w]));
}

fn stat8_delta(base: u32, i0: u32) -> S8 {
    let r = rows8(base, i0, p.nq, 1u);
    return S8(vec4<f32>(delta[r.a.x], delta[r.a.y], delta[r.a.z], delta[r.a.w]),
              vec4<f32>(delta[r.b.x], delta[r.b.y], delta[r.b.z], delta[r.b.w]));
}

// Dot products of this invocation's row (at xo) with 8 streamed rows r, one helper per (row, rows) pair:
// q·k rows, dO·v rows, k·q rows, v·dO rows.
fn dot_q_krows(xo: u32, r: R8) -> S8 {
    var a = vec4<f32>(0.0);
    var b = vec4<f32>(0.0);
    for (var c = 0u; c < p.d; c++) {
        let x = vec4<f32>(q[xo + c]);
        a = fma(vec4<f32>(k[r.a.x + c], k[r.a.y + c], k[r.a.z + c], k[r.a.w + c]), x, a);
        b = fma(vec4<f32>(k[r.b.x + c], k[r.b.y + c], k[r.b.z + c], k[r.b.w + c]), x, b);
    }
    return S8(a, b);
}

fn dot_go_vrows(xo: u32, r: R8) -> S8 {
    var a = vec4<f32>(0.0);
    var b = vec4<f32>(0.0);
    for (var c = 0u; c < p.d; c++) {
        let x = vec4<f32>(g_o[xo + c]);
        a = fma(vec4<f32>(v[r.a.x + c], v[r.a.y + c], v[r.a.z + c], v[r.a.w + c]), x, a);
        b = fma(vec4<f32>(v[r.b.x + c], v[r.b.y + c], v[r.b.z + c], v[r.b.w + c]), x, b);
    }
    return S8(a, b);
}

fn dot_k_qrows(xo: u32, r: R8) -> S8 {
    var a = vec4<f32>(0.0);
    var b = vec4<f32>(0.0);
    for (var c = 0u; c < p.d; c++) {
        let x = vec4<f32>(k[xo + c]);
        a = fma(vec4<f32>(q[r.a.x + c], q[r.a.y + c], q[r.a.z + c], q[r.a.w + c]), x, a);
        b = fma(vec4<f32>(q[r.b.x + c], q[r.b.y + c], q[r.b.z + c], q[r.b.w + c]), x, b);
    }
    return S8(a, b);
}

fn dot_v_gorows(xo: u32, r: R8) -> S8 {
    var a = vec4<f32>(0.0);
    var b = vec4<f32>(0.0);
    for (var c = 0u; c < p.d; c++) {
        let x = vec4<f32>(v[xo + c]);
        a = fma(vec4<f32>(g_o[r.a.x + c], g_o[r.a.y + c], g_o[r.a.z + c], g_o[r.a.w + c]), x, a);
        b = fma(vec4<f32>(g_o[r.b.x + c], g_o[r.b.y + c], g_o[r.b.z + c], g_o[r.b.w + c]), x, b);
    }
    return S8(a, b);
}

// grad row at xo += Σ_t w_t · (streamed row t), for k rows (dQ), q rows (dK) and dO rows (dV).
fn acc_krows(xo: u32, r: R8, w: S8) {
    for (var c = 0u; c < p.d; c++) {
        let ka = vec4<f32>(k[r.a.x + c], k[r.a.y + c], k[r.a.z + c], k[r.a.w + c]);
        let kb = vec4<f32>(k[r.b.x + c], k[r.b.y + c], k[r.b.z + c], k[r.b.w + c]);
        grad[xo + c] += dot(ka, w.a) + dot(kb, w.b);
    }
}

fn acc_qrows(xo: u32, r: R8, w: S8) {
    for (var c = 0u; c < p.d; c++) {
        let qa = vec4<f32>(q[r.a.x + c], q[r.a.y + c], q[r.a.z + c], q[r.a.w + c]);
        let qb = vec4<f32>(q[r.b.x + c], q[r.b.y + c], q[r.b.z + c], q[r.b.w + c]);
        grad[xo + c] += dot(qa, w.a) + dot(qb, w.b);
    }
}

fn acc_gorows_dv(xo: u32, r: R8, w: S8) {
    for (var c = 0u; c < p.d; c++) {
        let ga = vec4<f32>(dv_go[r.a.x + c], dv_go[r.a.y + c], dv_go[r.a.z + c], dv_go[r.a.w + c]);
        let gb = vec4<f32>(dv_go[r.b.x + c], dv_go[r.b.y + c], dv_go[r.b.z + c], dv_go[r.b.w + c]);
        dv_out[xo + c] += dot(ga, w.a) + dot(gb, w.b);
    }
}

// Key indices j0..j0+7 a query row with key limit `lim` (exclusive) must not see.
fn keys_masked(j0: u32, lim: u32) -> array<vec4<bool>, 2> {
    let ja = vec4<u32>(j0) + vec4<u32>(0u, 1u, 2u, 3u);
    return array<vec4<bool>, 2>(ja >= vec4<u32>(lim), ja + 4u >= vec4<u32>(lim));
}

// Query indices i0..i0+7 a key row j must not see: past Nq, or (causal) before j.
fn queries_masked(i0: u32, j: u32) -> array<vec4<bool>, 2> {
    let ia = vec4<u32>(i0) + vec4<u32>(0u, 1u, 2u, 3u);
    let ib = ia + 4u;
    let n = vec4<u32>(p.nq);
    let jj = vec4<u32>(j);
    let causal = p.causal == 1u;
    return array<vec4<bool>, 2>(
        (ia >= n) | (vec4<bool>(causal) & (ia < jj)),
        (ib >= n) | (vec4<bool>(causal) & (ib < jj)),
    );
}

// Keys query row i sees: 0..lim.
fn key_limit(i: u32) -> u32 {
    return select(p.nk, min(p.nk, i + 1u), p.causal == 1u);
}

// Keys any query row of workgroup block x sees (the uniform loop bound).
fn key_end(x: u32) -> u32 {
    return select(p.nk, min(p.nk, min(x * WG + WG, p.nq)), p.causal == 1u);
}

@compute @workgroup_size(64)
fn attn_lse(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let b = wg.y / p.heads;
    let h = wg.y - b * p.heads;
    let w = p.heads * p.d;
    let i = wg.x * WG + li;
    let qo = (b * p.nq + min(i, p.nq - 1u)) * w + h * p.d;
    let kv0 = b * p.nk * w + h * p.d;
    let lim = key_limit(i);
    var m = MASKED;
    var l = 0.0;
    for (var j0 = 0u; j0 < key_end(wg.x); j0 += 8u) {
        let r = rows8(kv0, j0, p.nk, w);
        let raw = dot_q_krows(qo, r);
        let bad = keys_masked(j0, lim);
        let s = mask8(S8(raw.a * p.scale, raw.b * p.scale), bad[0], bad[1]);
        let mx = max(m, max(hmax(s.a), hmax(s.b)));
        l = l * exp(m - mx) + hsum(exp(s.a - mx)) + hsum(exp(s.b - mx));
        m = mx;
    }
    if (i < p.nq) {
        stat_out[wg.y * p.nq + i] = m + log(l);
    }
}

@compute @workgroup_size(64)
fn attn_delta(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let b = wg.y / p.heads;
    let h = wg.y - b * p.heads;
    let i = wg.x * WG + li;
    if (i >= p.nq) {
        return;
    }
    let o = (b * p.nq + i) * p.heads * p.d + h * p.d;
    var acc = 0.0;
    for (var c = 0u; c < p.d; c++) {
        acc = fma(dl_go[o + c], dl_o[o + c], acc);
    }
    stat_out[wg.y * p.nq + i] = acc;
}

@compute @workgroup_size(64)
fn attn_dq(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let b = wg.y / p.heads;
    let h = wg.y - b * p.heads;
    let w = p.heads * p.d;
    let i = wg.x * WG + li;
    let ok = i < p.nq;
    let ic = min(i, p.nq - 1u);
    let qo = (b * p.nq + ic) * w + h * p.d;
    let kv0 = b * p.nk * w + h * p.d;
    let lim = key_limit(i);
    let li_ = lse[wg.y * p.nq + ic];
    let di = delta[wg.y * p.nq + ic];
    if (ok) {
        for (var c = 0u; c < p.d; c++) {
            grad[qo + c] = 0.0;
        }
    }
    for (var j0 = 0u; j0 < key_end(wg.x); j0 += 8u) {
        let r = rows8(kv0, j0, p.nk, w);
        let raw = dot_q_krows(qo, r);
        let bad = keys_masked(j0, lim);
        let s = mask8(S8(raw.a * p.scale, raw.b * p.scale), bad[0], bad[1]);
        let dp = dot_go_vrows(qo, r);
        let ds = S8(exp(s.a - li_) * (dp.a - di) * p.scale, exp(s.b - li_) * (dp.b - di) * p.scale);
        if (ok) {
            acc_krows(qo, r, ds);
        }
    }
}

@compute @workgroup_size(64)
fn attn_dk(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let b = wg.y / p.heads;
    let h = wg.y - b * p.heads;
    let w = p.heads * p.d;
    let j = wg.x * WG + li;
    let ok = j < p.nk;
    let ko = (b * p.nk + min(j, p.nk - 1u)) * w + h * p.d;
    let q0 = b * p.nq * w + h * p.d;
    let st0 = wg.y * p.nq;
    if (ok) {
        for (var c = 0u; c < p.d; c++) {
            grad[ko + c] = 0.0;
        }
    }
    // Causal: no query before this block's first key sees any of its keys.
    let start = select(0u, min(wg.x * WG, p.nq), p.causal == 1u);
    for (var i0 = start; i0 < p.nq; i0 += 8u) {
        let r = rows8(q0, i0, p.nq, w);
        let raw = dot_k_qrows(ko, r);
        let bad = queries_masked(i0, j);
        let s = mask8(S8(raw.a * p.scale, raw.b * p.scale), bad[0], bad[1]);
        let l8 = stat8_lse(st0, i0);
        let d8 = stat8_delta(st0, i0);
        let dp = dot_v_gorows(ko, r);
        let ds = S8(exp(s.a - l8.a) * (dp.a - d8.a) * p.scale, exp(s.b - l8.b) * (dp.b - d8.b) * p.scale);
        if (ok) {
            acc_qrows(ko, r, ds);
        }
    }
}

@compute @workgroup_size(64)
fn attn_dv(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let b = wg.y / p.heads;
    let h = wg.y - b * p.heads;
    let w = p.heads * p.d;
    let j = wg.x * WG + li;
    let ok = j < p.nk;
    let ko = (b * p.nk + min(j, p.nk - 1u)) * w + h * p.d;
    let q0 = b * p.nq * w + h * p.d;
    let st0 = wg.y * p.nq;
    if (ok) {
        for (var c = 0u; c < p.d; c++) {
            dv_out[ko + c] = 0.0;
        }
    }
    let start = select(0u, min(wg.x * WG, p.nq), p.causal == 1u);
    for (var i0 = start; i0 < p.nq; i0 += 8u) {
        let r = rows8(q0, i0, p.nq, w);
        let raw = dot_k_qrows(ko, r);
        let bad = queries_masked(i0, j);
        let s = mask8(S8(raw.a * p.scale, raw.b * p.scale), bad[0], bad[1]);
        let l8 = stat8_dv_lse(st0, i0);
        let pr = S8(exp(s.a - l8.a), exp(s.b - l8.b));
        if (ok) {
            acc_gorows_dv(ko, r, pr);
        }
    }
}
