// Two inputs, one output: broadcast add/multiply, concatenation, row gather (embedding lookup).
// Entry points: add, mul, add4, mul4, add4_full, mul4_full, concat, concat4, gather.

struct Params {
    n: u32,          // output elements this dispatch covers
    a_shift: u32,    // first element of this dispatch's range inside each binding
    b_shift: u32,
    out_shift: u32,
    base: u32,       // add/mul: global index of this dispatch's first element (for b's broadcast index)
    inner: u32,      // add/mul: b[(i / inner) % bn];  concat: elements of a per outer step;  gather: D
    bn: u32,         // add/mul: see above;            concat: elements of b per outer step;  gather: first row
    rows: u32,       // gather: rows of the table bound in this dispatch
    vocab: u32,      // gather: rows of the whole table
    first: u32,      // gather: 1 if this dispatch also writes zeros for out-of-range ids
    id_offset: u32,  // gather: id of the table's row 0 (ids are looked up as id - id_offset)
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
fn a_at(i: u32) -> f32 { return a[i]; }
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
// The same bindings 4 values at a time (add4, mul4, *_full, concat4: every offset and length a multiple of
// 4; they use no other view of them). WGSL lets entry points that do not share variables bind one slot to both.
// Read only through their accessors, so that CPU adapters can read them from textures instead.
@group(0) @binding(1) var<storage, read> a4: array<vec4<f32>>;
fn a4_at4(i: u32) -> vec4<f32> { return a4[i]; }
@group(0) @binding(2) var<storage, read> b4: array<vec4<f32>>;
fn b4_at4(i: u32) -> vec4<f32> { return b4[i]; }
@group(0) @binding(3) var<storage, read_write> out4: array<vec4<f32>>;

const WG: u32 = 256u;

fn item(wg: vec3<u32>, nwg: vec3<u32>, lid: vec3<u32>) -> u32 {
    return (wg.x + wg.y * nwg.x) * WG + lid.x;
}

@compute @workgroup_size(256)
fn add(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
       @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = item(wg, nwg, lid);
    if (i >= p.n) { return; }
    out[p.out_shift + i] = a_at(p.a_shift + i) + b[p.b_shift + ((p.base + i) / p.inner) % p.bn];
}

@compute @workgroup_size(256)
fn mul(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
       @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = item(wg, nwg, lid);
    if (i >= p.n) { return; }
    out[p.out_shift + i] = a_at(p.a_shift + i) * b[p.b_shift + ((p.base + i) / p.inner) % p.bn];
}

// b for elements e .. e + 3 of add4/mul4: 4 consecutive values when b repeats along leading dimensions
// (inner = 1, bn a multiple of 4), else one value (inner a multiple of 4).
fn b_vec4(e: u32) -> vec4<f32> {
    if (p.inner == 1u) {
        return b4_at4((p.b_shift + (p.base + e) % p.bn) / 4u);
    }
    let j = p.b_shift + ((p.base + e) / p.inner) % p.bn;
    return vec4<f32>(b4_at4(j / 4u)[j % 4u]);
}

// add and mul 4 elements per invocation (on lavapipe a vec4 load or store costs about what a scalar one
// does); binary.rs picks them when every offset and length is a multiple of 4.
@compute @workgroup_size(256)
fn add4(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = item(wg, nwg, lid);
    if (i >= p.n / 4u) { return; }
    out4[p.out_shift / 4u + i] = a4_at4(p.a_shift / 4u + i) + b_vec4(4u * i);
}

@compute @workgroup_size(256)
fn mul4(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = item(wg, nwg, lid);
    if (i >= p.n / 4u) { return; }
    out4[p.out_shift / 4u + i] = a4_at4(p.a_shift / 4u + i) * b_vec4(4u * i);
}

// add4 and mul4 for a b of a's shape: no broadcast index (a vector integer division or remainder is a
// loop over the lanes on CPU drivers, and costs more than the add).
@compute @workgroup_size(256)
fn add4_full(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = item(wg, nwg, lid);
    if (i >= p.n / 4u) { return; }
    out4[p.out_shift / 4u + i] = a4_at4(p.a_shift / 4u + i) + b4_at4(p.b_shift / 4u + i);
}

@compute @workgroup_size(256)
fn mul4_full(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = item(wg, nwg, lid);
    if (i >= p.n / 4u) { return; }
    out4[p.out_shift / 4u + i] = a4_at4(p.a_shift / 4u + i) * b4_at4(p.b_shift / 4u + i);
}

// out[o, :] = cat(a[o, :], b[o, :]) with a rows of `inner` and b rows of `bn` elements.
@compute @workgroup_size(256)
fn concat(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = item(wg, nwg, lid);
    if (i >= p.n) { return; }
    let row = p.inner + p.bn;
    let o = i / row;
    let j = i - o * row;
    var v: f32;
    if (j < p.inner) {
        v = a_at(p.a_shift + o * p.inner + j);
    } else {
        v = b[p.b_shift + o * p.bn + j - p.inner];
    }
    out[p.out_shift + i] = v;
}

// concat, 4 outputs per invocation where both row lengths are multiples of 4 (one division per 4 outputs).
@compute @workgroup_size(256)
fn concat4(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = item(wg, nwg, lid);
    if (i >= p.n / 4u) { return; }
    let ia = p.inner / 4u;
    let ib = p.bn / 4u;
    let o = i / (ia + ib);
    let j = i - o * (ia + ib);
    var v: vec4<f32>;
    if (j < ia) {
        v = a4_at4(o * ia + j);
    } else {
        v = b4_at4(o * ib + j - ia);
    }
    out4[i] = v;
}

// a: table rows [bn, bn + rows) of a [vocab, D] table whose row 0 is id `id_offset`; b: ids (as f32) [N];
// out: [N, D]. Each dispatch writes the outputs whose id falls in its rows, so a table larger than one
// binding is covered by several dispatches. The table may be f16 weights (read through a_at).
@compute @workgroup_size(256)
fn gather(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = item(wg, nwg, lid);
    if (i >= p.n) { return; }
    let d = p.inner;
    let t = i / d;
    let j = i - t * d;
    let idf = b[p.b_shift + t] - f32(p.id_offset);
    let valid = idf >= 0.0 && idf < f32(p.vocab);
    let id = u32(max(idf, 0.0));
    if (valid && id >= p.bn && id < p.bn + p.rows) {
        out[p.out_shift + i] = a_at(p.a_shift + (id - p.bn) * d + j);
    } else if (!valid && p.first == 1u) {
        out[p.out_shift + i] = 0.0;
    }
}
