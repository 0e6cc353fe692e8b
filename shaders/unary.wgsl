// One input, one output, no reduction: activations and affine maps, GEGLU, nearest 2× upsampling.
// Entry points: map, geglu, geglu4, upsample_nearest, transpose, transpose4.
// Any of them may run on a sub-range of a large tensor: x_shift/out_shift locate the first element of this
// dispatch's range inside the bound sub-ranges.

struct Params {
    n: u32,          // output elements this dispatch writes
    x_shift: u32,
    out_shift: u32,
    act: u32,        // ACT_* code (map)
    alpha: f32,      // map: out = act(alpha * x + beta)
    beta: f32,
    a: u32,          // geglu: F (half the input row); upsample: input width; transpose: M
    b: u32,          // upsample: input height; transpose: N
    c: u32,          // upsample: output width
    d: u32,          // upsample: output height
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
// x and out 4 values at a time, for geglu4 and transpose4 only (WGSL lets entry points that do not share variables bind
// one slot to both). x4 is read only through x4_at4, so that CPU adapters can read it from a texture instead.
@group(0) @binding(1) var<storage, read> x4: array<vec4<f32>>;
fn x4_at4(i: u32) -> vec4<f32> { return x4[i]; }
@group(0) @binding(2) var<storage, read_write> out4: array<vec4<f32>>;

const WG: u32 = 256u;

fn item(wg: vec3<u32>, nwg: vec3<u32>, lid: vec3<u32>) -> u32 {
    return (wg.x + wg.y * nwg.x) * WG + lid.x;
}

@compute @workgroup_size(256)
fn map(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
       @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = item(wg, nwg, lid);
    if (i >= p.n) { return; }
    out[p.out_shift + i] = activate(p.alpha * x[p.x_shift + i] + p.beta, p.act);
}

// x: [rows, 2F] → out: [rows, F], out = x[:, :F] * gelu(x[:, F:]) (diffusers GEGLU).
@compute @workgroup_size(256)
fn geglu(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = item(wg, nwg, lid);
    if (i >= p.n) { return; }
    let f = p.a;
    let row = i / f;
    let j = i - row * f;
    let base = p.x_shift + row * 2u * f;
    out[p.out_shift + i] = x[base + j] * gelu(x[base + f + j]);
}

// geglu, 4 outputs per invocation (F, n and both shifts multiples of 4): one row index division and 3
// memory accesses per 4 outputs instead of per output (on lavapipe each is a loop over the lanes).
@compute @workgroup_size(256)
fn geglu4(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = item(wg, nwg, lid);
    if (i >= p.n / 4u) { return; }
    let f4 = p.a / 4u;
    let row = i / f4;
    let j = i - row * f4;
    let base = p.x_shift / 4u + row * 2u * f4;
    let g = x4_at4(base + f4 + j);
    out4[p.out_shift / 4u + i] = x4_at4(base + j) * vec4<f32>(gelu(g.x), gelu(g.y), gelu(g.z), gelu(g.w));
}

// x: [planes, H, W] → out: [planes, OH, OW], nearest neighbour: source index ⌊o · in / out⌋ (PyTorch's
// `interpolate(mode="nearest")`; exactly o / 2 for 2×, and also the odd sizes diffusers' UNet
// upsamples to when a latent side is not a multiple of 8).
@compute @workgroup_size(256)
fn upsample_nearest(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = item(wg, nwg, lid);
    if (i >= p.n) { return; }
    let w = p.a;
    let h = p.b;
    let ow = p.c;
    let oh = p.d;
    let plane = i / (ow * oh);
    let r = i - plane * ow * oh;
    let oy = r / ow;
    let ox = r - oy * ow;
    out[p.out_shift + i] = x[p.x_shift + plane * w * h + (oy * h / oh) * w + ox * w / ow];
}

// x: [batch, M, N] → out: [batch, N, M]. Threads walk the output contiguously (coalesced writes).
@compute @workgroup_size(256)
fn transpose(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = item(wg, nwg, lid);
    if (i >= p.n) { return; }
    let m = p.a;
    let n = p.b;
    let batch = i / (m * n);
    let r = i - batch * m * n;
    let col = r / m;        // output row = input column
    let row = r - col * m;  // output column = input row
    out[p.out_shift + i] = x[p.x_shift + batch * m * n + row * n + col];
}

// transpose in 4×4 blocks (M, N and both shifts multiples of 4): 4 vec4 loads, 4 vec4 stores and one set
// of index divisions per 16 elements. Consecutive invocations write consecutive vec4s of an output row.
@compute @workgroup_size(256)
fn transpose4(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = item(wg, nwg, lid);
    if (i >= p.n / 16u) { return; }
    let m = p.a;
    let n = p.b;
    let m4 = m / 4u;
    let n4 = n / 4u;
    let batch = i / (m4 * n4);
    let r = i - batch * m4 * n4;
    let cb = r / m4;          // output rows 4cb .. 4cb + 3 = input columns
    let rb = r - cb * m4;     // output columns 4rb .. 4rb + 3 = input rows
    let xb = (p.x_shift + batch * m * n + 4u * rb * n) / 4u + cb;
    let a0 = x4_at4(xb);
    let a1 = x4_at4(xb + n4);
    let a2 = x4_at4(xb + 2u * n4);
    let a3 = x4_at4(xb + 3u * n4);
    let ob = (p.out_shift + batch * m * n + 4u * cb * m) / 4u + rb;
    out4[ob] = vec4<f32>(a0.x, a1.x, a2.x, a3.x);
    out4[ob + m4] = vec4<f32>(a0.y, a1.y, a2.y, a3.y);
    out4[ob + 2u * m4] = vec4<f32>(a0.z, a1.z, a2.z, a3.z);
    out4[ob + 3u * m4] = vec4<f32>(a0.w, a1.w, a2.w, a3.w);
}
