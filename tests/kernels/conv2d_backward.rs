//! Backward of convolution: the Conv2d rule (dx, dw, dbias, dresidual) and im2col's (col2im) against finite
//! differences and on the GPU, the gather dx kernel and the dw kernel against their twins at a mid-size
//! shape, and the binding splits under tiny limits.

use wgsd::graph::op::{DeviceLimits, Dispatch, Lowering, Op, Slot};
use wgsd::kernels::conv2d::{ConvShape, Conv2dOpts};
use wgsd::kernels::conv2d_backward::{Conv2dDw, Conv2dDx};
use wgsd::testing::{assert_close, assert_grads, check_graph, grad_check, test_gpu, GradInput, Rng};
use wgsd::{Graph, TensorDesc};

fn pads() -> [(Conv2dOpts, &'static str); 3] {
    [(Conv2dOpts::new(1, 0), "pad 0"), (Conv2dOpts::new(1, 1), "pad 1"), (Conv2dOpts::asymmetric(1, 0, 1, 0, 1), "pad (0,1,0,1)")]
}

/// Every combination of stride 1/2, padding 0/1/asymmetric and kernel 1/3 on odd shapes (7×9 and 8×9, so
/// (H + pads − k) is not always a multiple of the stride), with bias and residual in turn.
#[test]
fn conv2d_gradients_every_combination() {
    let gpu = test_gpu();
    let mut rng = Rng::new(21);
    let mut case = 0;
    for stride in [1, 2] {
        for (pad, pad_name) in pads() {
            for k in [1, 3] {
                let opts = Conv2dOpts { stride, ..pad };
                let (bias, residual) = (case % 2 == 0, case % 3 != 1);
                let xs = [2, 3, 7 + case % 2, 9];
                let what = format!("conv {xs:?} k{k} stride {stride} {pad_name} bias {bias} residual {residual}");
                check_conv_gradients(&gpu, &mut rng, &what, xs, [5, 3, k, k], opts, bias, residual);
                case += 1;
            }
        }
    }
}

/// The upsampling conv (nearest 2× fused into a 3×3 conv) differentiates as upsample-then-conv: dx sums the
/// plain conv's dx over each 2×2 block, dw sees the upsampled input.
#[test]
fn upsampling_conv_gradients() {
    let gpu = test_gpu();
    let mut rng = Rng::new(24);
    for (xs, bias, residual) in [([2usize, 3, 5, 7], true, false), ([1, 4, 4, 3], false, true)] {
        let (opts, ws) = (Conv2dOpts::upsample2x(), [5, xs[1], 3, 3]);
        assert_eq!(ConvShape::new(&xs, &ws, &opts).unwrap().out_shape(), [xs[0], 5, 2 * xs[2], 2 * xs[3]]);
        let what = format!("upsampling conv {xs:?} bias {bias} residual {residual}");
        check_conv_gradients(&gpu, &mut rng, &what, xs, ws, opts, bias, residual);
    }
}

/// Finite-difference check of a conv's gradients (x, weight, and the optional bias and residual).
#[allow(clippy::too_many_arguments)]
fn check_conv_gradients(
    gpu: &std::sync::Arc<wgsd::Gpu>,
    rng: &mut Rng,
    what: &str,
    xs: [usize; 4],
    ws: [usize; 4],
    opts: Conv2dOpts,
    bias: bool,
    residual: bool,
) {
    let s = ConvShape::new(&xs, &ws, &opts).unwrap();
    let mut inputs = vec![GradInput::random(rng, &xs, 1.0), GradInput::random(rng, &ws, 1.0)];
    if bias {
        inputs.push(GradInput::random(rng, &[ws[0]], 1.0));
    }
    if residual {
        inputs.push(GradInput::random(rng, &s.out_shape(), 1.0));
    }
    let reps = grad_check(Some(gpu), &inputs, 1e-2, 48, &|g, x| {
        let b = bias.then(|| x[2]);
        let r = residual.then(|| x[2 + bias as usize]);
        g.conv2d("conv", x[0], x[1], b, opts, r)
    })
    .unwrap();
    assert_grads(what, &reps, 1e-3, 1e-5);
}

/// im2col (the GEMM form's unfolding) differentiates by col2im.
#[test]
fn im2col_gradient_is_col2im() {
    let gpu = test_gpu();
    let mut rng = Rng::new(22);
    for (xs, k, opts) in [
        ([2, 3, 7, 9], 3, Conv2dOpts::new(1, 1)),
        ([1, 4, 8, 7], 3, Conv2dOpts::new(2, 1)),
        ([2, 2, 7, 7], 3, Conv2dOpts::asymmetric(2, 0, 1, 0, 1)),
        ([1, 3, 5, 6], 1, Conv2dOpts::new(2, 0)),
        ([1, 2, 6, 5], 2, Conv2dOpts::new(1, 0)),
    ] {
        let inputs = [GradInput::random(&mut rng, &xs, 1.0)];
        let reps = grad_check(Some(&gpu), &inputs, 1e-2, 64, &|g, x| g.im2col("cols", x[0], k, k, opts)).unwrap();
        assert_grads(&format!("im2col {xs:?} k{k} {opts:?}"), &reps, 1e-3, 1e-6);
    }
}

/// The gather dx kernel (used for strides > 1) also on stride-1 shapes, and the stride-1 path (flipped
/// weights through the forward kernels), against the scatter twin; dw likewise; at [1, 64, 16, 16] → 64.
#[test]
fn dx_and_dw_match_the_twins_at_a_mid_size() {
    let gpu = test_gpu();
    let mut rng = Rng::new(23);
    for (xs, ws, opts) in [
        ([1usize, 64, 16, 16], [64usize, 64, 3, 3], Conv2dOpts::new(1, 1)),
        ([1, 64, 16, 16], [64, 64, 3, 3], Conv2dOpts::new(2, 1)),
        ([2, 7, 11, 13], [9, 7, 3, 3], Conv2dOpts::asymmetric(2, 0, 1, 0, 1)),
        ([2, 6, 5, 9], [5, 6, 1, 1], Conv2dOpts::new(1, 0)),
        // Enough pixels that the stride-1 path takes the direct forward kernels, not the GEMM form.
        ([1, 16, 25, 23], [24, 16, 3, 3], Conv2dOpts::asymmetric(1, 0, 1, 1, 0)),
    ] {
        let s = ConvShape::new(&xs, &ws, &opts).unwrap();
        let mut g = Graph::new();
        let x = g.input("x", TensorDesc::f32(&xs));
        let w = g.input("w", TensorDesc::f32(&ws));
        let dy = g.input("dy", TensorDesc::f32(&s.out_shape()));
        let gather = g.op("dx_gather", Conv2dDx { opts, x_shape: xs }, &[dy, w]).unwrap();
        let dx = g.conv2d_dx("dx", dy, w, xs, opts).unwrap();
        let dw = g.conv2d_dw("dw", dy, x, ws[2], ws[3], opts).unwrap();
        for t in [gather, dx, dw] {
            g.output(t);
        }
        let feed = vec![
            (x, rng.vec(xs.iter().product(), 1.0)),
            (w, rng.vec(ws.iter().product(), 0.1)),
            (dy, rng.vec(s.out_shape().iter().product(), 1.0)),
        ];
        let t0 = std::time::Instant::now();
        let cmp = check_graph(&gpu, g, &feed).unwrap();
        println!("{xs:?} {ws:?} {opts:?}: {:.2} s", t0.elapsed().as_secs_f64());
        assert_close(&cmp, 1e-5);
    }
}

/// dw of a few-channel, many-pixel convolution (SD's conv_in) runs in parts summed afterwards.
#[test]
fn dw_in_parts_matches_the_twin() {
    let gpu = test_gpu();
    let mut rng = Rng::new(24);
    let (xs, ws, opts) = ([2usize, 4, 24, 24], [8usize, 4, 3, 3], Conv2dOpts::new(1, 1));
    let s = ConvShape::new(&xs, &ws, &opts).unwrap();
    let mut g = Graph::new();
    let x = g.input("x", TensorDesc::f32(&xs));
    let dy = g.input("dy", TensorDesc::f32(&s.out_shape()));
    let dw = g.conv2d_dw("dw", dy, x, 3, 3, opts).unwrap();
    assert!(g.nodes().iter().any(|n| n.op.kind() == "conv2d_dw" && g.shape(n.output).len() == 5), "must run in parts");
    g.output(dw);
    let feed = vec![(x, rng.vec(xs.iter().product(), 1.0)), (dy, rng.vec(s.out_shape().iter().product(), 1.0))];
    assert_close(&check_graph(&gpu, g, &feed).unwrap(), 1e-5);
}

/// Only the gradients asked for are recorded.
#[test]
fn only_needed_gradients_are_recorded() {
    let mut g = Graph::new();
    let x = g.input("x", TensorDesc::f32(&[1, 3, 6, 6]));
    let w = g.input("w", TensorDesc::f32(&[4, 3, 3, 3]));
    let b = g.input("b", TensorDesc::f32(&[4]));
    let y = g.conv2d("conv", x, w, Some(b), Conv2dOpts::new(1, 1), None).unwrap();
    let before = g.nodes().len();
    let grads = g.backward(y, &[w]).unwrap();
    assert!(grads.get(&g, w).is_some() && grads.get(&g, x).is_none() && grads.get(&g, b).is_none());
    let kinds: Vec<&str> = g.nodes()[before..].iter().map(|n| n.op.kind()).collect();
    assert_eq!(kinds, ["conv2d_dw"], "{kinds:?}");
}

fn flags(d: &Dispatch) -> u32 {
    u32::from_le_bytes(d.params[76..80].try_into().unwrap())
}

/// Under tiny limits both kernels split: every binding fits and is aligned, and each output range is
/// overwritten by its first dispatch and accumulated into by the rest.
#[test]
fn splits_fit_small_limits() {
    let limits = DeviceLimits { max_binding: 64 << 10, offset_align: 256, max_workgroups: 65535, subgroup_min_size: 0, cpu: false, texture_reads: false, max_texture_rows: 0, texture_window: 16 << 20, conv: Default::default() };
    let opts = Conv2dOpts::new(2, 1);
    let lower = |op: &dyn Op, xs: [usize; 4], ws: [usize; 4], dw: bool| {
        let s = ConvShape::new(&xs, &ws, &opts).unwrap();
        let (x, w, dy) = (TensorDesc::f32(&xs), TensorDesc::f32(&ws), TensorDesc::f32(&s.out_shape()));
        let inputs = if dw { [dy.clone(), x.clone()] } else { [dy.clone(), w.clone()] };
        let out = op.infer(&[&inputs[0], &inputs[1]]).unwrap();
        op.lower(&Lowering { inputs: &inputs, output: &out, limits: &limits }).unwrap()
    };
    // dx: x (the output) and w too large; dw: x too large (dw itself must fit one binding).
    let (xs, ws) = ([2usize, 40, 24, 23], [60usize, 40, 3, 3]);
    for (name, ds) in [
        ("dx", lower(&Conv2dDx { opts, x_shape: xs }, xs, ws, false)),
        ("dw", lower(&Conv2dDw { opts, kh: 3, kw: 3, parts: 1 }, xs, [30, 40, 3, 3], true)),
    ] {
        assert!(ds.len() > 2, "{name}: must split");
        let mut seen: Vec<(u64, u64, u32)> = Vec::new();
        for d in &ds {
            for b in &d.bindings {
                assert!(b.size <= limits.max_binding, "{name}: binding {:?} of {} bytes", b.slot, b.size);
                assert_eq!(b.offset % limits.offset_align, 0, "{name}: unaligned binding");
            }
            let o = d.bindings.iter().find(|b| b.slot == Slot::Output).unwrap();
            // dw binds the whole output and tells its range by col0 (params[48..52]).
            let col0 = if name == "dw" { u32::from_le_bytes(d.params[48..52].try_into().unwrap()) } else { 0 };
            let key = (o.offset, o.size, col0);
            let first = !seen.contains(&key);
            assert_eq!(flags(d) & 1 == 0, first, "{name}: only the first dispatch of an output range overwrites it");
            if first {
                seen.push(key);
            }
        }
        println!("{name}: {} dispatches, {} output ranges", ds.len(), seen.len());
        assert!(ds.len() > seen.len(), "{name}: some dispatches must accumulate");
    }
}

/// What the kernels compute, per output element, from a dispatch's params and bound ranges: runs split
/// lowerings on the CPU so their shifts, channel offsets and accumulation are checked numerically.
fn emulate(d: &Dispatch, tensors: &[&[f32]], out: &mut [f32]) {
    let p: Vec<u32> = d.params.chunks(4).map(|c| u32::from_le_bytes(c.try_into().unwrap())).collect();
    let [cin, h, w, oh, ow, cout, kh, kw, stride, pad_top, pad_left, k_row, col0, a_shift, b_shift, o_shift, a_bstride, b_bstride, o_bstride, flags, tiles, n_tiles, rows, per_part, part_stride, _n, row0, _] =
        p[..].try_into().unwrap();
    let slot = |i: usize| {
        let b = &d.bindings[i];
        let Slot::Input(t) = b.slot else { panic!("input expected") };
        &tensors[t][(b.offset / 4) as usize..((b.offset + b.size) / 4) as usize]
    };
    let (a, b) = (slot(0), slot(1));
    let ob = &d.bindings[2];
    let o = &mut out[(ob.offset / 4) as usize..((ob.offset + ob.size) / 4) as usize];
    let (hw, ohw, taps) = ((h * w) as usize, (oh * ow) as usize, (kh * kw) as usize);
    let mut store = |i: usize, v: f64| o[i] = if flags & 1 != 0 { o[i] + v as f32 } else { v as f32 };
    // x coordinate (with padding) of output coordinate oc and tap k, if inside.
    let inside = |oc: u32, k: u32, pad: u32, n: u32| (oc * stride + k).checked_sub(pad).filter(|&i| i < n);
    match d.entry {
        "conv_dx" => {
            for bi in 0..d.workgroups[2] as usize {
                for c in 0..cin as usize {
                    for n in 0..hw {
                        let mut acc = 0f64;
                        for co in 0..cout as usize {
                            for oy in 0..oh {
                                for ox in 0..ow {
                                    for ky in 0..kh {
                                        for kx in 0..kw {
                                            let (Some(iy), Some(ix)) = (inside(oy, ky, pad_top, h), inside(ox, kx, pad_left, w)) else { continue };
                                            if (iy * w + ix) as usize != n {
                                                continue;
                                            }
                                            let dv = a[a_shift as usize + bi * a_bstride as usize + co * ohw + (oy * ow + ox) as usize];
                                            let wv = b[(b_shift + col0) as usize + c * taps + co * k_row as usize + (ky * kw + kx) as usize];
                                            acc += dv as f64 * wv as f64;
                                        }
                                    }
                                }
                            }
                        }
                        store(o_shift as usize + bi * o_bstride as usize + c * hw + n, acc);
                    }
                }
            }
        }
        "conv_dw" => {
            let parts = tiles / (cout.div_ceil(8) * n_tiles);
            for part in 0..parts {
                for m in 0..cout as usize {
                    for col in 0..(cin * kh * kw) as usize {
                        let (ci, ky, kx) = (col / taps, (col % taps) as u32 / kw, (col % taps) as u32 % kw);
                        let mut acc = 0f64;
                        for gr in (part * per_part).max(row0)..((part + 1) * per_part).min(row0 + rows) {
                            let r = (gr - row0) as usize;
                            let (bi, pix) = (r / ohw, r % ohw);
                            let (oy, ox) = (pix as u32 / ow, pix as u32 % ow);
                            let (Some(iy), Some(ix)) = (inside(oy, ky, pad_top, h), inside(ox, kx, pad_left, w)) else { continue };
                            let dv = a[a_shift as usize + m * ohw + bi * a_bstride as usize + pix];
                            let xv = b[b_shift as usize + ci * hw + bi * b_bstride as usize + (iy * w + ix) as usize];
                            acc += dv as f64 * xv as f64;
                        }
                        store(o_shift as usize + (part * part_stride + col0) as usize + m * k_row as usize + col, acc);
                    }
                }
            }
        }
        e => panic!("no emulation of {e}"),
    }
}

/// The split lowerings, run by [`emulate`], give the twins' gradients.
#[test]
fn split_lowerings_compute_the_twins_gradients() {
    let limits = DeviceLimits { max_binding: 32 << 10, offset_align: 256, max_workgroups: 65535, subgroup_min_size: 0, cpu: false, texture_reads: false, max_texture_rows: 0, texture_window: 16 << 20, conv: Default::default() };
    let mut rng = Rng::new(25);
    for (xs, ws, opts, parts) in [
        // dx split by image, input and output channels (dw is too large for one binding: refused).
        ([2usize, 40, 19, 17], [30usize, 40, 3, 3], Conv2dOpts::new(2, 1), 1),
        ([2, 40, 19, 17], [8, 40, 3, 3], Conv2dOpts::asymmetric(2, 0, 1, 0, 1), 2),
        ([3, 30, 15, 16], [9, 30, 1, 1], Conv2dOpts::new(1, 0), 2),
    ] {
        let s = ConvShape::new(&xs, &ws, &opts).unwrap();
        let (x, w, dy) = (TensorDesc::f32(&xs), TensorDesc::f32(&ws), TensorDesc::f32(&s.out_shape()));
        let (xv, wv, dyv) = (rng.vec(x.numel(), 1.0), rng.vec(w.numel(), 1.0), rng.vec(dy.numel(), 1.0));
        let dx_op = Conv2dDx { opts, x_shape: xs };
        let dw_op = Conv2dDw { opts, kh: ws[2], kw: ws[3], parts };
        let dw_desc = dw_op.infer(&[&dy, &x]).unwrap();
        for (name, op, ins, vals, out) in [
            ("dx", &dx_op as &dyn Op, [dy.clone(), w.clone()], [&dyv[..], &wv[..]], x.clone()),
            ("dw", &dw_op as &dyn Op, [dy.clone(), x.clone()], [&dyv[..], &xv[..]], dw_desc.clone()),
        ] {
            let ds = match op.lower(&Lowering { inputs: &ins, output: &out, limits: &limits }) {
                Ok(ds) => ds,
                Err(e) => {
                    assert!(name == "dw" && out.bytes() > limits.max_binding, "{name} {xs:?}: {e}");
                    println!("{name} {xs:?}: refused: {e}");
                    continue;
                }
            };
            assert!(ds.len() > 1, "{name} {xs:?}: must split");
            let mut got = vec![f32::NAN; out.numel()];
            for d in &ds {
                emulate(d, &vals, &mut got);
            }
            let want = op.cpu(&vals, &[&ins[0], &ins[1]], &out);
            let err = wgsd::testing::rel_l2(&got, &want);
            println!("{name} {xs:?} {ws:?} parts {parts}: {} dispatches, rel_l2 {err:.2e}", ds.len());
            assert!(err < 1e-6, "{name} {xs:?}: split result differs from the twin: {err:.3e}");
        }
    }
}
