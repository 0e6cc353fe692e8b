// Backward of 2-D convolution on NCHW tensors (see src/kernels/conv2d_backward.rs). Every output element is
// written by exactly one invocation (gathers, no atomics), so results are deterministic.
// Entry points:
//   conv_dx:   dx[b, ci, iy, ix] = Σ_{co, ky, kx} dy[b, co, oy, ox] · w[co, ci, ky, kx] over the taps with
//              oy·stride + ky − pad_top = iy (same for x). a = dy, b = w, out = dx. Each invocation owns 4
//              input pixels (stride apart in a row, one phase class) × 4 input channels. Grid: tiles =
//              classes (stride²) × pixel groups per class (n_tiles) × channel tiles, z = image.
//   conv_dw:   dw[part, co, col] = Σ over this part's rows r = (b, oy, ox) of dy[b, co, oy, ox] · x[b, window
//              tap col], col = (ci·kh + ky)·kw + kx. a = dy, b = x, out = dw (or its partial sums). Each
//              invocation owns 8 output channels × 8 columns and reduces its part's rows serially.
//   col2im:    dx[b, ci, iy, ix] = Σ_{ky, kx} cols[(b·OH + oy)·OW + ox, (ci·kh + ky)·kw + kx] (the reverse of
//              im2col). a = cols, out = dx; one invocation per element.
//   flip:      out[ci, co, ky, kx] = w[co, ci, kh−1−ky, kw−1−kx]: the weights of the transposed convolution
//              (dx of a stride-1 conv is then a forward conv of dy). a = w, out = flipped.

struct Params {
    cin: u32,        // dx: input channels computed here; dw: input channels of the columns here; col2im, flip: Cin
    h: u32,
    w: u32,
    oh: u32,
    ow: u32,
    cout: u32,       // output channels (of dy) read here
    kh: u32,
    kw: u32,
    stride: u32,
    pad_top: u32,
    pad_left: u32,
    k_row: u32,      // Cin_total·kh·kw: weight / dw row length
    col0: u32,       // dx: first weight column (ci0·kh·kw); dw: first output element (co0·k_row + ci0·kh·kw)
    a_shift: u32,    // where this dispatch's range starts inside each binding (Bind::elements)
    b_shift: u32,
    o_shift: u32,
    a_bstride: u32,  // elements per image, when one dispatch covers several images
    b_bstride: u32,
    o_bstride: u32,
    flags: u32,      // 1: accumulate into out
    tiles: u32,      // work units of the grid; ids past it do nothing
    n_tiles: u32,    // dx: pixel tiles per image; dw: column tiles
    rows: u32,       // dw: rows (b, oy, ox) this dispatch reduces over
    per_part: u32,   // dw: rows per part
    part_stride: u32, // dw: elements of out per part (Cout·k_row)
    n: u32,          // col2im, flip: output elements
    row0: u32,       // dw: the global row (over all images) of this dispatch's first row; parts are global
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

fn store(i: u32, v: f32) {
    if ((p.flags & 1u) != 0u) {
        out[i] = out[i] + v;
    } else {
        out[i] = v;
    }
}

@compute @workgroup_size(64)
fn conv_dx(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_id) lid: vec3<u32>) {
    let tile = wg.x + wg.y * nwg.x;
    if (tile >= p.tiles) { return; }
    let s = p.stride;
    // Pixels are taken by phase class (iy mod s, ix mod s): within a class the taps that reach dy are the
    // same for every pixel (ky ≡ iy + pad_top mod s), so no tap is skipped per pixel. Workgroup tile =
    // (class, pixel group of n_tiles per class, channel tile); channel tiles vary fastest so consecutive
    // workgroups read the same dy pixels.
    let c_tiles = p.tiles / (s * s * p.n_tiles);
    let ct = tile % c_tiles;
    let rest = tile / c_tiles;
    let cls = rest / p.n_tiles;
    let item = (rest - cls * p.n_tiles) * 64u + lid.x;
    let ry = cls / s;
    let rx = cls - ry * s;
    // Each invocation: 4 pixels s apart along one row of the class (sized for class (0, 0), the largest).
    let groups_x = ((p.w + s - 1u) / s + 3u) / 4u;
    let qy = item / groups_x;
    let qx0 = (item - qy * groups_x) * 4u;
    let iy = ry + qy * s;
    let ix = vec4<u32>(rx + qx0 * s) + vec4<u32>(0u, s, 2u * s, 3u * s);
    let live = (ix < vec4<u32>(p.w)) & vec4<bool>(iy < p.h);
    let c0 = ct * 4u;
    let bi = wg.z;
    let hw = p.h * p.w;
    let ohw = p.oh * p.ow;
    let taps = p.kh * p.kw;
    // Weight rows of the 4 input channels (past the end: the last one, never stored).
    let cl = p.cin - 1u;
    let r0 = p.b_shift + p.col0 + min(c0, cl) * taps;
    let r1 = p.b_shift + p.col0 + min(c0 + 1u, cl) * taps;
    let r2 = p.b_shift + p.col0 + min(c0 + 2u, cl) * taps;
    let r3 = p.b_shift + p.col0 + min(c0 + 3u, cl) * taps;
    let db = p.a_shift + bi * p.a_bstride;
    var a0 = vec4<f32>(0.0);
    var a1 = vec4<f32>(0.0);
    var a2 = vec4<f32>(0.0);
    var a3 = vec4<f32>(0.0);
    let ty = iy + p.pad_top;
    let tx = ix + vec4<u32>(p.pad_left);
    // oy·s = iy + pad_top − ky for the taps of this class, when ≥ 0 and oy < OH (same along x).
    for (var ky = (ry + p.pad_top) % s; ky < p.kh && ky <= ty; ky += s) {
        let oy = (ty - ky) / s;
        if (oy >= p.oh) { continue; }
        for (var kx = (rx + p.pad_left) % s; kx < p.kw; kx += s) {
            let txk = tx - vec4<u32>(kx);
            let ox = txk / vec4<u32>(s);
            let ok = live & (tx >= vec4<u32>(kx)) & (ox < vec4<u32>(p.ow));
            if (!any(ok)) { continue; }
            var dyo = select(vec4<u32>(0u), vec4<u32>(oy * p.ow) + ox, ok) + vec4<u32>(db);
            var wo = ky * p.kw + kx;
            for (var co = 0u; co < p.cout; co++) {
                let dv = select(vec4<f32>(0.0), vec4<f32>(a[dyo.x], a[dyo.y], a[dyo.z], a[dyo.w]), ok);
                a0 += b[r0 + wo] * dv;
                a1 += b[r1 + wo] * dv;
                a2 += b[r2 + wo] * dv;
                a3 += b[r3 + wo] * dv;
                dyo += vec4<u32>(ohw);
                wo += p.k_row;
            }
        }
    }
    // A var, written once: a let array indexed in the loop is rebuilt lane by lane per iteration on lavapipe.
    var acc = array<vec4<f32>, 4>(a0, a1, a2, a3);
    let ob = p.o_shift + bi * p.o_bstride + iy * p.w;
    for (var i = 0u; i < 4u; i++) {
        if (c0 + i >= p.cin) { break; }
        for (var j = 0u; j < 4u; j++) {
            if (live[j]) { store(ob + (c0 + i) * hw + ix[j], acc[i][j]); }
        }
    }
}

@compute @workgroup_size(64)
fn conv_dw(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_id) lid: vec3<u32>) {
    let item = (wg.x + wg.y * nwg.x) * 64u + lid.x;
    if (item >= p.tiles) { return; }
    // item = (part · co tiles + co tile) · column tiles + column tile: neighbouring lanes take neighbouring
    // columns (neighbouring taps of the same input plane) of the same output channels. An 8 × 8 tile:
    // 16 loads per row for 64 multiply-adds.
    let ncols = p.cin * p.kh * p.kw;
    let ct = item % p.n_tiles;
    let rest = item / p.n_tiles;
    let m_tiles = (p.cout + 7u) / 8u;
    let mt = rest % m_tiles;
    let part = rest / m_tiles;
    let m0 = mt * 8u;
    let col0 = ct * 8u;
    let hw = p.h * p.w;
    let ohw = p.oh * p.ow;
    let taps = p.kh * p.kw;
    let ml = p.cout - 1u;
    // Columns 0..3: input plane offset and tap (clamped columns repeat the last one).
    let col_0 = min(vec4<u32>(col0 + 0u) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(ncols - 1u));
    let ci_0 = col_0 / vec4<u32>(taps);
    let t_0 = col_0 - ci_0 * taps;
    let ky_0 = t_0 / vec4<u32>(p.kw);
    let kx_0 = t_0 - ky_0 * p.kw;
    let plane_0 = ci_0 * hw + vec4<u32>(p.b_shift);
    // Columns 4..7: input plane offset and tap (clamped columns repeat the last one).
    let col_1 = min(vec4<u32>(col0 + 4u) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(ncols - 1u));
    let ci_1 = col_1 / vec4<u32>(taps);
    let t_1 = col_1 - ci_1 * taps;
    let ky_1 = t_1 / vec4<u32>(p.kw);
    let kx_1 = t_1 - ky_1 * p.kw;
    let plane_1 = ci_1 * hw + vec4<u32>(p.b_shift);
    let d0 = p.a_shift + min(m0 + 0u, ml) * ohw;
    let d1 = p.a_shift + min(m0 + 1u, ml) * ohw;
    let d2 = p.a_shift + min(m0 + 2u, ml) * ohw;
    let d3 = p.a_shift + min(m0 + 3u, ml) * ohw;
    let d4 = p.a_shift + min(m0 + 4u, ml) * ohw;
    let d5 = p.a_shift + min(m0 + 5u, ml) * ohw;
    let d6 = p.a_shift + min(m0 + 6u, ml) * ohw;
    let d7 = p.a_shift + min(m0 + 7u, ml) * ohw;
    var a0_0 = vec4<f32>(0.0);
    var a0_1 = vec4<f32>(0.0);
    var a1_0 = vec4<f32>(0.0);
    var a1_1 = vec4<f32>(0.0);
    var a2_0 = vec4<f32>(0.0);
    var a2_1 = vec4<f32>(0.0);
    var a3_0 = vec4<f32>(0.0);
    var a3_1 = vec4<f32>(0.0);
    var a4_0 = vec4<f32>(0.0);
    var a4_1 = vec4<f32>(0.0);
    var a5_0 = vec4<f32>(0.0);
    var a5_1 = vec4<f32>(0.0);
    var a6_0 = vec4<f32>(0.0);
    var a6_1 = vec4<f32>(0.0);
    var a7_0 = vec4<f32>(0.0);
    var a7_1 = vec4<f32>(0.0);
    let g_begin = max(part * p.per_part, p.row0);
    let g_end = min((part + 1u) * p.per_part, p.row0 + p.rows);
    for (var gr = g_begin; gr < g_end; gr++) {
        let r = gr - p.row0;
        let bi = r / ohw;
        let pix = r - bi * ohw;
        let oy = pix / p.ow;
        let ox = pix - oy * p.ow;
        let xb = vec4<u32>(bi * p.b_bstride);
        // Input coordinates + pad (unsigned: a tap in the top/left padding is < pad).
        let yp_0 = vec4<u32>(oy * p.stride) + ky_0;
        let xp_0 = vec4<u32>(ox * p.stride) + kx_0;
        let iy_0 = yp_0 - vec4<u32>(p.pad_top);
        let ix_0 = xp_0 - vec4<u32>(p.pad_left);
        let ok_0 = (yp_0 >= vec4<u32>(p.pad_top)) & (xp_0 >= vec4<u32>(p.pad_left)) & (iy_0 < vec4<u32>(p.h)) & (ix_0 < vec4<u32>(p.w));
        let xo_0 = select(vec4<u32>(0u), iy_0 * p.w + ix_0, ok_0) + plane_0 + xb;
        let xv_0 = select(vec4<f32>(0.0), vec4<f32>(b[xo_0.x], b[xo_0.y], b[xo_0.z], b[xo_0.w]), ok_0);
        // Input coordinates + pad (unsigned: a tap in the top/left padding is < pad).
        let yp_1 = vec4<u32>(oy * p.stride) + ky_1;
        let xp_1 = vec4<u32>(ox * p.stride) + kx_1;
        let iy_1 = yp_1 - vec4<u32>(p.pad_top);
        let ix_1 = xp_1 - vec4<u32>(p.pad_left);
        let ok_1 = (yp_1 >= vec4<u32>(p.pad_top)) & (xp_1 >= vec4<u32>(p.pad_left)) & (iy_1 < vec4<u32>(p.h)) & (ix_1 < vec4<u32>(p.w));
        let xo_1 = select(vec4<u32>(0u), iy_1 * p.w + ix_1, ok_1) + plane_1 + xb;
        let xv_1 = select(vec4<f32>(0.0), vec4<f32>(b[xo_1.x], b[xo_1.y], b[xo_1.z], b[xo_1.w]), ok_1);
        let dyo = bi * p.a_bstride + pix;
        let dv0 = a[d0 + dyo];
        let dv1 = a[d1 + dyo];
        let dv2 = a[d2 + dyo];
        let dv3 = a[d3 + dyo];
        let dv4 = a[d4 + dyo];
        let dv5 = a[d5 + dyo];
        let dv6 = a[d6 + dyo];
        let dv7 = a[d7 + dyo];
        a0_0 += dv0 * xv_0;
        a0_1 += dv0 * xv_1;
        a1_0 += dv1 * xv_0;
        a1_1 += dv1 * xv_1;
        a2_0 += dv2 * xv_0;
        a2_1 += dv2 * xv_1;
        a3_0 += dv3 * xv_0;
        a3_1 += dv3 * xv_1;
        a4_0 += dv4 * xv_0;
        a4_1 += dv4 * xv_1;
        a5_0 += dv5 * xv_0;
        a5_1 += dv5 * xv_1;
        a6_0 += dv6 * xv_0;
        a6_1 += dv6 * xv_1;
        a7_0 += dv7 * xv_0;
        a7_1 += dv7 * xv_1;
    }
    // A var, written once (see above).
    var acc = array<vec4<f32>, 16>(a0_0, a0_1, a1_0, a1_1, a2_0, a2_1, a3_0, a3_1, a4_0, a4_1, a5_0, a5_1, a6_0, a6_1, a7_0, a7_1);
    let ob = p.o_shift + part * p.part_stride + p.col0;
    for (var q = 0u; q < 16u; q++) {
        let m = m0 + q / 2u;
        if (m >= p.cout) { break; }
        let c = col0 + (q % 2u) * 4u;
        for (var j = 0u; j < 4u; j++) {
            if (c + j < ncols) { store(ob + m * p.k_row + c + j, acc[q][j]); }
        }
    }
}

@compute @workgroup_size(256)
fn col2im(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = (wg.x + wg.y * nwg.x) * 256u + lid.x;
    if (i >= p.n) { return; }
    let hw = p.h * p.w;
    let plane = i / hw;
    let bi = plane / p.cin;
    let ci = plane - bi * p.cin;
    let q = i - plane * hw;
    let iy = q / p.w;
    let ix = q - iy * p.w;
    let k = p.cin * p.kh * p.kw;
    var acc = 0.0;
    for (var ky = 0u; ky < p.kh; ky++) {
        let ty = iy + p.pad_top;
        let oy = (ty - ky) / p.stride;
        if (ty < ky || oy * p.stride != ty - ky || oy >= p.oh) { continue; }
        for (var kx = 0u; kx < p.kw; kx++) {
            let tx = ix + p.pad_left;
            let ox = (tx - kx) / p.stride;
            if (tx < kx || ox * p.stride != tx - kx || ox >= p.ow) { continue; }
            let row = (bi * p.oh + oy) * p.ow + ox;
            acc += a[p.a_shift + row * k + (ci * p.kh + ky) * p.kw + kx];
        }
    }
    out[p.o_shift + i] = acc;
}

@compute @workgroup_size(256)
fn flip(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = (wg.x + wg.y * nwg.x) * 256u + lid.x;
    if (i >= p.n) { return; }
    // i indexes out[ci, co, ky, kx].
    let taps = p.kh * p.kw;
    let t = i % taps;
    let pair = i / taps;
    let co = pair % p.cout;
    let ci = pair / p.cout;
    out[p.o_shift + i] = a[p.a_shift + (co * p.cin + ci) * taps + (taps - 1u - t)];
}
