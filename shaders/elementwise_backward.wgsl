// Backward kernels of the elementwise and layout ops (activations.wgsl is prepended for the activations).
// Entry points: activation_grad, geglu_grad, upsample_grad, slice, gather_grad.
// Bindings: 1 = first input, 2 = second input (one-input entries get their input bound here too, unread),
// 3 = output. A tensor larger than one binding is split by rows; s0/s1/out_shift locate this dispatch's
// first element inside each bound sub-range.

struct Params {
    n: u32,          // output elements this dispatch writes (gather_grad: table rows)
    s0: u32,
    s1: u32,
    out_shift: u32,
    act: u32,        // activation_grad: ACT_* code
    alpha: f32,      // activation_grad: the forward was act(alpha * x + beta)
    beta: f32,
    a: u32,          // geglu_grad: F;  upsample_grad: input W;  slice: input row;  gather_grad: D
    b: u32,          // upsample_grad: input H;  slice: output row;  gather_grad: ids N
    c: u32,          // upsample_grad: output W;  slice: offset in the input row;  gather_grad: first row
    d: u32,          // upsample_grad: output H;  gather_grad: rows of the whole table
    e: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> in0: array<f32>;
@group(0) @binding(2) var<storage, read> in1: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

const WG: u32 = 256u;

fn item(wg: vec3<u32>, nwg: vec3<u32>, lid: vec3<u32>) -> u32 {
    return (wg.x + wg.y * nwg.x) * WG + lid.x;
}

fn sigmoid(x: f32) -> f32 {
    return 1.0 / (1.0 + exp(-x));
}

// d gelu / dx = Φ(x) + x φ(x). erf_approx is accurate to 1.5e-7 absolute, so is Φ.
fn gelu_grad(x: f32) -> f32 {
    let cdf = 0.5 * (1.0 + erf_approx(x * 0.7071067811865476));
    let pdf = 0.3989422804014327 * exp(-0.5 * x * x);
    return cdf + x * pdf;
}

fn gelu_tanh_grad(x: f32) -> f32 {
    let c = 0.7978845608028654;
    let t = tanh(c * (x + 0.044715 * x * x * x));
    return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * c * (1.0 + 3.0 * 0.044715 * x * x);
}

// σ(kx)(1 + kx(1 − σ(kx))): the derivative of x σ(kx) (SiLU k = 1, quick GELU k = 1.702).
fn swish_grad(x: f32, k: f32) -> f32 {
    let s = sigmoid(k * x);
    return s * (1.0 + k * x * (1.0 - s));
}

fn activation_derivative(x: f32, act: u32) -> f32 {
    switch act {
        case 1u: { return swish_grad(x, 1.0); }
        case 2u: { return gelu_grad(x); }
        case 3u: { return gelu_tanh_grad(x); }
        case 4u: { return swish_grad(x, 1.702); }
        case 5u: { return select(0.0, 1.0, x > 0.0); }
        case 6u: { let t = tanh(x); return 1.0 - t * t; }
        default: { return 1.0; }
    }
}

// in0 = x, in1 = dy: dx = alpha · dy · act'(alpha · x + beta).
@compute @workgroup_size(256)
fn activation_grad(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = item(wg, nwg, lid);
    if (i >= p.n) { return; }
    let z = p.alpha * in0[p.s0 + i] + p.beta;
    out[p.out_shift + i] = p.alpha * in1[p.s1 + i] * activation_derivative(z, p.act);
}

// in0 = x [rows, 2F], in1 = dy [rows, F]; out = dx [rows, 2F]: dx = [dy · gelu(g), dy · a · gelu'(g)]
// for x = [a, g].
@compute @workgroup_size(256)
fn geglu_grad(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = item(wg, nwg, lid);
    if (i >= p.n) { return; }
    let f = p.a;
    let row = i / (2u * f);
    let j = i - row * 2u * f;
    let base = p.s0 + row * 2u * f;
    let col = select(j - f, j, j < f);
    let dy = in1[p.s1 + row * f + col];
    let gate = in0[base + f + col];
    var v: f32;
    if (j < f) {
        v = dy * gelu(gate);
    } else {
        v = dy * in0[base + col] * gelu_grad(gate);
    }
    out[p.out_shift + i] = v;
}

// in0 = dy [planes, OH, OW]; out = dx [planes, H, W]. The forward copies input row ⌊oy·H/OH⌋ to output
// row oy, so input row y receives the output rows oy ∈ [⌈y·OH/H⌉, ⌈(y+1)·OH/H⌉) (likewise for columns).
@compute @workgroup_size(256)
fn upsample_grad(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = item(wg, nwg, lid);
    if (i >= p.n) { return; }
    let w = p.a;
    let h = p.b;
    let ow = p.c;
    let oh = p.d;
    let plane = i / (w * h);
    let r = i - plane * w * h;
    let y = r / w;
    let x = r - y * w;
    let y0 = (y * oh + h - 1u) / h;
    let y1 = ((y + 1u) * oh + h - 1u) / h;
    let x0 = (x * ow + w - 1u) / w;
    let x1 = ((x + 1u) * ow + w - 1u) / w;
    let src = p.s0 + plane * ow * oh;
    var acc = 0.0;
    for (var oy = y0; oy < y1; oy++) {
        for (var ox = x0; ox < x1; ox++) {
            acc += in0[src + oy * ow + ox];
        }
    }
    out[p.out_shift + i] = acc;
}

// in0 = x viewed as [outer, a]; out = [outer, b] with out[o, j] = x[o, c + j] (a range along one dimension).
@compute @workgroup_size(256)
fn slice(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = item(wg, nwg, lid);
    if (i >= p.n) { return; }
    let o = i / p.b;
    let j = i - o * p.b;
    out[p.out_shift + i] = in0[p.s0 + o * p.a + p.c + j];
}

// in0 = ids [N] (as f32), in1 = dy [N, D]; out = table rows [c, c + n) of dtable [d, D]:
// dtable[v, :] = Σ over positions t with ids[t] = v of dy[t, :], summed in position order (deterministic:
// the atomic only flags a match). One workgroup per table row. Almost every row of a 49408-token table
// matches no id: the workgroup first looks for its row among the ids together (N / 256 ids per
// invocation) and writes zeros when it is absent; only the few rows present sum, each invocation
// scanning the ids for its own columns. Ids are matched as the forward gather reads them (truncated, and
// ignored outside [0, d)).
var<workgroup> row_present: atomic<u32>;

fn gather_id_is(t: u32, v: u32) -> bool {
    let idf = in0[p.s0 + t];
    return idf >= 0.0 && idf < f32(p.d) && u32(idf) == v;
}

@compute @workgroup_size(256)
fn gather_grad(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_id) lid: vec3<u32>) {
    let r = wg.x + wg.y * nwg.x;
    if (r >= p.n) { return; }
    let dim = p.a;
    let v = p.c + r;
    if (lid.x == 0u) { atomicStore(&row_present, 0u); }
    workgroupBarrier();
    for (var t = lid.x; t < p.b; t += WG) {
        if (gather_id_is(t, v)) { atomicOr(&row_present, 1u); }
    }
    workgroupBarrier();
    let present = atomicLoad(&row_present) != 0u;
    for (var col = lid.x; col < dim; col += WG) {
        var acc = 0.0;
        if (present) {
            for (var t = 0u; t < p.b; t++) {
                if (gather_id_is(t, v)) {
                    acc += in1[p.s1 + t * dim + col];
                }
            }
        }
        out[p.out_shift + r * dim + col] = acc;
    }
}
