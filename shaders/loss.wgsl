// Weighted mean-squared-error loss: loss = Σ_b w[b] · mean over sample b of (pred − target)².
// Entry points: mse_partial, mse_combine (forward, two nodes: many elements → partial sums → one value),
// mse_combine_grad, mse_partial_grad (backward). Bindings: 1, 2, 3 = inputs (entries with fewer inputs get
// an unread one bound to fill the slot), 4 = output.

struct Params {
    per_sample: u32,  // elements of one sample
    parts: u32,       // partial sums per sample
    per_part: u32,    // elements per partial sum (the last part of a sample may be short)
    batch: u32,
    scale: f32,       // 1 / per_sample
    n: u32,           // outputs (the grad entries)
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> in0: array<f32>;
@group(0) @binding(2) var<storage, read> in1: array<f32>;
@group(0) @binding(3) var<storage, read> in2: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

const WG: u32 = 256u;
var<workgroup> red: array<f32, WG>;

// Tree sum of `red` over the workgroup; the result is in red[0].
fn reduce_workgroup(lid: u32) {
    for (var s = WG / 2u; s > 0u; s = s / 2u) {
        workgroupBarrier();
        if (lid < s) {
            red[lid] += red[lid + s];
        }
    }
    workgroupBarrier();
}

// in0 = pred, in1 = target, both [batch, per_sample]; out = [batch, parts]: Σ (pred − target)² over each part.
// One workgroup per (sample, part); lanes stride through the part (coalesced), then a tree sum.
@compute @workgroup_size(256)
fn mse_partial(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let g = wg.x + wg.y * nwg.x;
    let live = g < p.batch * p.parts;
    let sample = g / p.parts;
    let part = g - sample * p.parts;
    let begin = part * p.per_part;
    let end = min(p.per_sample, begin + p.per_part);
    var acc = 0.0;
    if (live) {
        let base = sample * p.per_sample;
        for (var e = begin + lid; e < end; e += WG) {
            let dv = in0[base + e] - in1[base + e];
            acc += dv * dv;
        }
    }
    red[lid] = acc;
    reduce_workgroup(lid);
    if (live && lid == 0u) {
        out[g] = red[0];
    }
}

// in0 = partial sums [batch, parts], in1 = weights [batch]; out = [1] = scale · Σ_b w[b] Σ_parts partial.
// One workgroup.
@compute @workgroup_size(256)
fn mse_combine(@builtin(local_invocation_index) lid: u32) {
    var acc = 0.0;
    for (var i = lid; i < p.batch * p.parts; i += WG) {
        acc += in0[i] * in1[i / p.parts];
    }
    red[lid] = acc;
    reduce_workgroup(lid);
    if (lid == 0u) {
        out[0] = red[0] * p.scale;
    }
}

// in0 = dy [1], in1 = weights [batch]; out = d partials [batch, parts] = dy · w[b] · scale.
@compute @workgroup_size(256)
fn mse_combine_grad(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
    let i = (wg.x + wg.y * nwg.x) * WG + lid;
    if (i >= p.n) { return; }
    out[i] = in0[0] * in1[i / p.parts] * p.scale;
}

// in0 = pred, in1 = target, in2 = d partials [batch, parts]; out = d pred = 2 (pred − target) · d partial.
@compute @workgroup_size(256)
fn mse_partial_grad(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
    let i = (wg.x + wg.y * nwg.x) * WG + lid;
    if (i >= p.n) { return; }
    let sample = i / p.per_sample;
    let part = (i - sample * p.per_sample) / p.per_part;
    out[i] = 2.0 * (in0[i] - in1[i]) * in2[sample * p.parts + part];
}
