//! im2col and the GEMM form of convolution: the unfolding against its CPU twin, and `conv2d_gemm` /
//! `conv2d_auto` against the direct conv2d CPU twin on awkward and real SD shapes.

use wgsd::kernels::conv2d::{conv2d_cpu, conv2d_cpu_at, ConvShape, Conv2dOpts};
use wgsd::kernels::im2col::IM2COL_MAX_ROWS;
use wgsd::testing::{assert_close, check_graph, rel_l2, test_gpu, Rng};
use wgsd::{Graph, TensorDesc};

#[test]
fn im2col_matches_its_cpu_twin() {
    let gpu = test_gpu();
    for (i, (x, k, opts)) in [
        ([1usize, 3, 5, 7], 3usize, Conv2dOpts::new(1, 1)),
        ([2, 5, 9, 4], 3, Conv2dOpts::new(2, 1)),
        ([1, 2, 6, 6], 2, Conv2dOpts::asymmetric(2, 0, 1, 0, 1)),
        ([3, 4, 4, 4], 1, Conv2dOpts::new(1, 0)),
        ([1, 1, 1, 1], 3, Conv2dOpts::new(1, 1)),
    ]
    .into_iter()
    .enumerate()
    {
        let mut g = Graph::new();
        let t = g.input("x", TensorDesc::f32(&x));
        let y = g.im2col("im2col", t, k, k, opts).unwrap();
        g.output(y);
        let data = Rng::new(i as u64).vec(x.iter().product(), 2.0);
        assert_close(&check_graph(&gpu, g, &[(t, data)]).unwrap(), 0.0);
    }
}

/// Which form `conv2d_auto` records: GEMM for few output rows per image, but 3×3 stride-1 convs direct
/// from `PATCH_MIN_ROWS` rows (the UNet's 8×8 level), whatever the batch; 1×1 convs like the others.
#[test]
fn auto_picks_the_form_by_shape() {
    let uses_gemm = |xs: [usize; 4], ws: [usize; 4], opts: Conv2dOpts| {
        let mut g = Graph::new();
        let x = g.input("x", TensorDesc::f32(&xs));
        let w = g.input("w", TensorDesc::f32(&ws));
        g.conv2d_auto("conv", x, w, None, opts, None).unwrap();
        g.nodes().iter().any(|n| n.op.kind() == "im2col")
    };
    let p1 = Conv2dOpts::new(1, 1);
    assert!(!uses_gemm([2, 1280, 8, 8], [1280, 1280, 3, 3], p1));
    assert!(!uses_gemm([1, 1280, 8, 8], [1280, 1280, 3, 3], p1));
    assert!(uses_gemm([2, 1280, 4, 4], [1280, 1280, 3, 3], p1));
    assert!(uses_gemm([2, 1280, 8, 8], [1280, 1280, 1, 1], Conv2dOpts::default()));
    assert!(uses_gemm([2, 1280, 16, 16], [1280, 1280, 3, 3], Conv2dOpts::new(2, 1)));
    assert!(!uses_gemm([2, 1280, 16, 16], [1280, 1280, 3, 3], p1));
    assert!(uses_gemm([2, 1280, 15, 16], [1280, 1280, 1, 1], Conv2dOpts::default()));
    assert!(!uses_gemm([2, 1280, 16, 16], [1280, 1280, 1, 1], Conv2dOpts::default()));
    assert!(!uses_gemm([2, 320, 64, 64], [320, 320, 1, 1], Conv2dOpts::default()));
}

/// `conv2d_auto` (GEMM form for these few-pixel shapes) against the direct convolution's CPU twin.
#[test]
fn gemm_convolutions_match_the_direct_cpu_twin() {
    let gpu = test_gpu();
    let cases: &[([usize; 4], [usize; 4], Conv2dOpts, bool, bool)] = &[
        ([1, 3, 5, 7], [4, 3, 3, 3], Conv2dOpts::new(1, 1), true, false),
        ([2, 7, 3, 3], [5, 7, 3, 3], Conv2dOpts::new(1, 1), true, true),
        ([2, 6, 5, 5], [3, 6, 3, 3], Conv2dOpts::new(2, 1), false, false),
        ([2, 6, 4, 4], [9, 6, 3, 3], Conv2dOpts::asymmetric(2, 0, 1, 0, 1), true, false),
        ([2, 6, 4, 4], [9, 6, 1, 1], Conv2dOpts::new(1, 0), true, true),
        // The UNet's deepest level at 256×256 (CFG batch 2, 4×4): skip concat into the first up block.
        ([2, 2560, 4, 4], [1280, 2560, 3, 3], Conv2dOpts::new(1, 1), true, true),
    ];
    let mut rng = Rng::new(11);
    for &(xs, ws, opts, has_bias, has_res) in cases {
        let s = ConvShape::new(&xs, &ws, &opts).unwrap();
        assert!(s.oh * s.ow < IM2COL_MAX_ROWS, "the case must take the GEMM path");
        let x_data = rng.vec(xs.iter().product(), 1.0);
        let w_data = rng.vec(ws.iter().product(), 0.1);
        let b_data = rng.vec(ws[0], 1.0);
        let r_data = rng.vec(s.b * s.cout * s.oh * s.ow, 1.0);
        let mut g = Graph::new();
        let x = g.input("x", TensorDesc::f32(&xs));
        let w = g.input("w", TensorDesc::f32(&ws));
        let b = has_bias.then(|| g.input("b", TensorDesc::f32(&[ws[0]])));
        let r = has_res.then(|| g.input("r", TensorDesc::f32(&[s.b, s.cout, s.oh, s.ow])));
        let y = g.conv2d_auto("conv", x, w, b, opts, r).unwrap();
        assert!(g.nodes().iter().any(|n| n.op.kind() == "im2col"));
        g.output(y);
        let plan = wgsd::graph::plan::Plan::new(gpu.clone(), g).unwrap();
        plan.write(x, &x_data).unwrap();
        plan.write(w, &w_data).unwrap();
        if let Some(b) = b {
            plan.write(b, &b_data).unwrap();
        }
        if let Some(r) = r {
            plan.write(r, &r_data).unwrap();
        }
        plan.run().unwrap();
        let got = plan.read(y).unwrap();
        let (bias, res) = (has_bias.then_some(&b_data[..]), has_res.then_some(&r_data[..]));
        // The real-size case is checked on a sample of outputs (its full CPU loop is slow).
        let (got, want) = if got.len() > 100_000 {
            let at: Vec<usize> = (0..997).map(|i| i * 7919 % got.len()).collect();
            (at.iter().map(|&i| got[i]).collect(), conv2d_cpu_at(&s, &opts, &x_data, &w_data, bias, res, &at))
        } else {
            (got, conv2d_cpu(&s, &opts, &x_data, &w_data, bias, res))
        };
        let err = rel_l2(&got, &want);
        assert!(err < 1e-5, "{xs:?} * {ws:?}: rel L2 {err:.2e}");
    }
}

#[test]
fn large_convolutions_keep_the_direct_kernels() {
    let mut g = Graph::new();
    let x = g.input("x", TensorDesc::f32(&[2, 320, 64, 64]));
    let w = g.input("w", TensorDesc::f32(&[320, 320, 3, 3]));
    g.conv2d_auto("conv", x, w, None, Conv2dOpts::new(1, 1), None).unwrap();
    assert!(g.nodes().iter().all(|n| n.op.kind() == "conv2d"));
    let e = g.im2col("bad", w, 5, 5, Conv2dOpts::new(1, 0)).unwrap_err().to_string();
    assert!(e.contains("im2col") && e.contains("5×5"), "{e}");
}
