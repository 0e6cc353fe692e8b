// Sums over broadcast dimensions (the reverse of a broadcast): x is viewed as [outer, bn, inner] and
// out[part · bn + j] = Σ over this part's share of (o, i) of x[(o·bn + j)·inner + i], squared first when
// `square` is set. Entry point: sum_to. One 64-invocation workgroup per output element and part; large
// reductions run in `parts` slices whose partial sums a second dispatch adds (see src/kernels/reduce.rs).

struct Params {
    outer: u32,
    bn: u32,
    inner: u32,
    parts: u32,
    per_part: u32,   // (o, i) pairs per part
    square: u32,
    x_shift: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

const WG: u32 = 64u;
var<workgroup> partial: array<f32, WG>;

@compute @workgroup_size(64)
fn sum_to(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let g = wg.x + wg.y * nwg.x;
    let live = g < p.parts * p.bn;
    let j = g % p.bn;
    let part = g / p.bn;
    let total = p.outer * p.inner;
    let begin = part * p.per_part;
    let end = min(total, begin + p.per_part);
    var acc = 0.0;
    if (live) {
        for (var e = begin + lid; e < end; e += WG) {
            let o = e / p.inner;
            let i = e - o * p.inner;
            let v = x[p.x_shift + (o * p.bn + j) * p.inner + i];
            acc += select(v, v * v, p.square == 1u);
        }
    }
    partial[lid] = acc;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s / 2u) {
        if (lid < s) {
            partial[lid] += partial[lid + s];
        }
        workgroupBarrier();
    }
    if (live && lid == 0u) {
        out[g] = partial[0];
    }
}

// torch.nn.utils.clip_grad_norm_'s coefficient from the summed squares of every gradient (x[0]):
// out = [‖g‖, min(1, max_norm / (‖g‖ + 1e-6))], max_norm's bits in p.per_part. Entry point: clip_coef.
@compute @workgroup_size(1)
fn clip_coef() {
    let norm = sqrt(x[0]);
    out[0] = norm;
    out[1] = min(1.0, bitcast<f32>(p.per_part) / (norm + 1e-6));
}
