// Spatial resampling of NCHW planes: max pooling and bilinear resizing.
// Entry points: max_pool2d, bilinear.
// One invocation per output element. A dispatch may cover a range of whole planes of a large tensor:
// x_shift/out_shift locate the first element of its range inside the bound sub-ranges.

struct Params {
    n: u32,          // output elements this dispatch writes
    x_shift: u32,
    out_shift: u32,
    h: u32,          // input plane
    w: u32,
    oh: u32,         // output plane
    ow: u32,
    k: u32,          // max_pool2d: window side
    stride: u32,     // max_pool2d
    pad_top: u32,    // max_pool2d: zero-based window origin is (oy·stride − pad_top, ox·stride − pad_left)
    pad_left: u32,
    use_pad: u32,    // max_pool2d: 1 = cells of the padding count as pad_value (an explicit F.pad before
                     // the pool, as BiT's DynamicPad2d), 0 = they are ignored (PyTorch's own -inf padding)
    pad_value: f32,
    align: u32,      // bilinear: align_corners
    scale_h: f32,    // bilinear: source step per output step, computed on the host as PyTorch does
    scale_w: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

const WG: u32 = 256u;

fn item(wg: vec3<u32>, nwg: vec3<u32>, lid: vec3<u32>) -> u32 {
    return (wg.x + wg.y * nwg.x) * WG + lid.x;
}

// x: [planes, H, W] → out: [planes, OH, OW], the maximum over a k×k window with stride.
@compute @workgroup_size(256)
fn max_pool2d(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = item(wg, nwg, lid);
    if (i >= p.n) { return; }
    let plane = i / (p.ow * p.oh);
    let r = i - plane * p.ow * p.oh;
    let oy = r / p.ow;
    let ox = r - oy * p.ow;
    let base = p.x_shift + plane * p.h * p.w;
    // Signed window origin: the padding makes it negative at the top/left edge.
    let y0 = i32(oy * p.stride) - i32(p.pad_top);
    let x0 = i32(ox * p.stride) - i32(p.pad_left);
    var m = -3.402823e38;
    var seen = false;
    for (var dy = 0u; dy < p.k; dy++) {
        let y = y0 + i32(dy);
        for (var dx = 0u; dx < p.k; dx++) {
            let xx = x0 + i32(dx);
            if (y >= 0 && y < i32(p.h) && xx >= 0 && xx < i32(p.w)) {
                m = max(m, x[base + u32(y) * p.w + u32(xx)]);
                seen = true;
            } else if (p.use_pad == 1u) {
                m = max(m, p.pad_value);
                seen = true;
            }
        }
    }
    out[p.out_shift + i] = select(0.0, m, seen);
}

// Source coordinate and the two neighbours with their weights along one axis, as PyTorch's
// area_pixel_compute_source_index + upsample_bilinear2d: align_corners maps corners to corners
// (src = dst·scale), otherwise pixel centres (src = (dst + 0.5)·scale − 0.5, clamped at 0).
struct Taps {
    i0: u32,
    i1: u32,
    l1: f32,
}

fn taps(dst: u32, size: u32, scale: f32) -> Taps {
    var src: f32;
    if (p.align == 1u) {
        src = scale * f32(dst);
    } else {
        src = max(scale * (f32(dst) + 0.5) - 0.5, 0.0);
    }
    let i0 = min(u32(src), size - 1u);
    let i1 = min(i0 + 1u, size - 1u);
    return Taps(i0, i1, src - f32(i0));
}

// x: [planes, H, W] → out: [planes, OH, OW], bilinear interpolation.
@compute @workgroup_size(256)
fn bilinear(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = item(wg, nwg, lid);
    if (i >= p.n) { return; }
    let plane = i / (p.ow * p.oh);
    let r = i - plane * p.ow * p.oh;
    let oy = r / p.ow;
    let ox = r - oy * p.ow;
    let base = p.x_shift + plane * p.h * p.w;
    let ty = taps(oy, p.h, p.scale_h);
    let tx = taps(ox, p.w, p.scale_w);
    let top = (1.0 - tx.l1) * x[base + ty.i0 * p.w + tx.i0] + tx.l1 * x[base + ty.i0 * p.w + tx.i1];
    let bot = (1.0 - tx.l1) * x[base + ty.i1 * p.w + tx.i0] + tx.l1 * x[base + ty.i1 * p.w + tx.i1];
    out[p.out_shift + i] = (1.0 - ty.l1) * top + ty.l1 * bot;
}
