// Unfolding of convolution windows into rows, so a convolution becomes one GEMM with the weights
// `[Cout, Cin·kh·kw]` (used for convolutions with few output pixels, where a GEMM streams the weights
// better than the direct kernels).
// Entry points: im2col.
//   x: [B, Cin, H, W] → out: [B·OH·OW, Cin·kh·kw]; out[(b·OH + oy)·OW + ox][(ci·kh + ky)·kw + kx] =
//   x[b, ci, oy·stride + ky − pad_top, ox·stride + kx − pad_left], 0 outside the image.

struct Params {
    n: u32,          // output elements
    cin: u32,
    h: u32,
    w: u32,
    kh: u32,
    kw: u32,
    stride: u32,
    pad_top: u32,
    pad_left: u32,
    oh: u32,
    ow: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn im2col(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = (wg.x + wg.y * nwg.x) * 256u + lid.x;
    if (i >= p.n) { return; }
    let k = p.cin * p.kh * p.kw;
    let row = i / k;
    let col = i % k;
    let ohw = p.oh * p.ow;
    let b = row / ohw;
    let oy = (row % ohw) / p.ow;
    let ox = row % p.ow;
    let ci = col / (p.kh * p.kw);
    let ky = (col / p.kw) % p.kh;
    let kx = col % p.kw;
    // Unsigned arithmetic: a tap in the top/left padding wraps around to a huge value, caught below.
    let iy = oy * p.stride + ky - p.pad_top;
    let ix = ox * p.stride + kx - p.pad_left;
    var v = 0.0;
    if (oy * p.stride + ky >= p.pad_top && ox * p.stride + kx >= p.pad_left && iy < p.h && ix < p.w) {
        v = x[((b * p.cin + ci) * p.h + iy) * p.w + ix];
    }
    out[i] = v;
}
