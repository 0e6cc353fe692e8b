//! Max pooling and bilinear resizing against their CPU twins: awkward sizes, every padding / corner mode,
//! degenerate planes (1×1 in or out), the real DPT-hybrid shapes (BiT stem pool, fusion-stage upsample),
//! bad inputs, and splitting by whole planes under small binding limits.

use wgsd::graph::op::{DeviceLimits, Lowering, Op};
use wgsd::kernels::resample::{Bilinear, MaxPool2d};
use wgsd::testing::{assert_close, check_graph, test_gpu, Rng};
use wgsd::{Graph, TensorDesc};

const TOL: f64 = 1e-5;

#[test]
fn max_pool2d_at_awkward_sizes() {
    let gpu = test_gpu();
    let mut rng = Rng::new(11);
    let mut g = Graph::new();
    let mut inputs = Vec::new();
    // (shape, k, stride, pad (t, b, l, r), pad value)
    type Case = ([usize; 4], usize, usize, [usize; 4], Option<f32>);
    let cases: [Case; 7] = [
        ([2, 3, 13, 17], 3, 2, [0, 1, 0, 1], Some(0.0)), // BiT's dynamic SAME padding
        ([1, 5, 7, 7], 3, 2, [1, 1, 1, 1], None),        // PyTorch's -inf padding
        ([2, 2, 11, 6], 2, 2, [0, 0, 0, 0], None),
        ([1, 3, 9, 10], 3, 1, [2, 0, 1, 2], Some(0.25)),
        ([1, 1, 1, 1], 3, 2, [1, 1, 1, 1], None), // only one real cell per window
        ([3, 1, 5, 4], 5, 3, [0, 0, 1, 0], Some(-2.0)),
        ([1, 7, 31, 29], 3, 2, [1, 1, 0, 1], Some(0.0)),
    ];
    for (i, (shape, k, s, pad, pv)) in cases.into_iter().enumerate() {
        let x = g.input(&format!("x{i}"), TensorDesc::f32(&shape));
        let y = g.max_pool2d(&format!("pool{i}"), x, k, s, pad, pv).unwrap();
        g.output(y);
        // Mostly negative inputs, so a padding value of 0 wins often and a wrong pad shows.
        let data = rng.vec(shape.iter().product(), 1.0).into_iter().map(|v| v - 0.5).collect();
        inputs.push((x, data));
    }
    assert_close(&check_graph(&gpu, g, &inputs).unwrap(), TOL);
}

#[test]
fn bilinear_at_awkward_sizes() {
    let gpu = test_gpu();
    let mut rng = Rng::new(12);
    let mut g = Graph::new();
    let mut inputs = Vec::new();
    let cases: [([usize; 4], usize, usize); 7] = [
        ([2, 3, 5, 7], 10, 14),  // 2× as DPT's fusion stage
        ([1, 2, 7, 5], 13, 3),   // up one way, down the other
        ([1, 3, 16, 16], 9, 11), // down
        ([2, 1, 1, 1], 4, 3),    // one input pixel
        ([1, 2, 6, 5], 1, 1),    // one output pixel
        ([1, 1, 3, 17], 3, 17),  // identity size
        ([1, 4, 9, 13], 31, 29),
    ];
    for (k, (shape, oh, ow)) in cases.into_iter().enumerate() {
        let x = g.input(&format!("x{k}"), TensorDesc::f32(&shape));
        inputs.push((x, rng.vec(shape.iter().product(), 2.0)));
        for align in [false, true] {
            let y = g.bilinear(&format!("bilinear{k}_align{align}"), x, oh, ow, align).unwrap();
            g.output(y);
        }
    }
    assert_close(&check_graph(&gpu, g, &inputs).unwrap(), TOL);
}

/// Identity-size resizing must return the input exactly (DPT relies on it when shapes already match).
#[test]
fn bilinear_same_size_is_identity() {
    let op = Bilinear { out_h: 6, out_w: 9, align_corners: false };
    let x = TensorDesc::f32(&[1, 2, 6, 9]);
    let data = Rng::new(4).vec(108, 1.0);
    for align in [false, true] {
        let op = Bilinear { align_corners: align, ..op };
        assert_eq!(op.cpu(&[&data], &[&x], &x), data);
    }
}

/// The real DPT-hybrid shapes at 384×384: the BiT stem pool (64 channels, 192² → 96²) and the fusion
/// stage's last 2× upsample (256 channels, 96² → 192², align_corners=True).
#[test]
fn dpt_hybrid_shapes() {
    let gpu = test_gpu();
    let mut rng = Rng::new(13);
    let mut g = Graph::new();
    let stem = g.input("stem", TensorDesc::f32(&[1, 64, 192, 192]));
    let fused = g.input("fused", TensorDesc::f32(&[1, 256, 96, 96]));
    let pool = g.max_pool2d("embedder.pooler", stem, 3, 2, [0, 1, 0, 1], Some(0.0)).unwrap();
    let up = g.bilinear("fusion_stage.layers.3.upsample", fused, 192, 192, true).unwrap();
    assert_eq!(g.shape(pool), &[1, 64, 96, 96]);
    g.output(pool);
    g.output(up);
    let inputs = vec![(stem, rng.vec(64 * 192 * 192, 1.0)), (fused, rng.vec(256 * 96 * 96, 1.0))];
    assert_close(&check_graph(&gpu, g, &inputs).unwrap(), TOL);
}

#[test]
fn bad_inputs_are_errors_naming_op_and_shapes() {
    let mut g = Graph::new();
    let x3 = g.input("x3", TensorDesc::f32(&[2, 5, 7]));
    let err = g.max_pool2d("stem.pool", x3, 3, 2, [0; 4], None).unwrap_err().to_string();
    assert!(err.contains("max_pool2d 'stem.pool'") && err.contains("f32[2×5×7]"), "{err}");
    let err = g.bilinear("up", x3, 4, 4, true).unwrap_err().to_string();
    assert!(err.contains("bilinear 'up'") && err.contains("f32[2×5×7]"), "{err}");
    let small = g.input("small", TensorDesc::f32(&[1, 1, 2, 2]));
    let err = g.max_pool2d("pool", small, 3, 1, [0; 4], None).unwrap_err().to_string();
    assert!(err.contains("max_pool2d 'pool'") && err.contains("f32[1×1×2×2]") && err.contains("3×3"), "{err}");
    let err = g.bilinear("up", small, 0, 3, false).unwrap_err().to_string();
    assert!(err.contains("bilinear 'up'") && err.contains("0×3"), "{err}");
    let h = g.input("h", TensorDesc::new(&[1, 1, 4, 4], wgsd::DType::F16));
    let err = g.bilinear("up", h, 8, 8, true).unwrap_err().to_string();
    assert!(err.contains("bilinear") && err.contains("dtype"), "{err}");
}

/// Tensors larger than one binding are split by whole planes: every binding fits, and the planes covered
/// add up to the tensor.
#[test]
fn split_by_planes_under_small_limits() {
    let limits = DeviceLimits { max_binding: 4096, offset_align: 256, max_workgroups: 65535, subgroup_min_size: 0, cpu: false, texture_reads: false, max_texture_rows: 0, texture_window: 16 << 20, conv: Default::default() };
    let x = TensorDesc::f32(&[2, 9, 17, 13]);
    let pool = MaxPool2d { k: 3, stride: 2, pad: [0, 1, 0, 1], pad_value: Some(0.0) };
    let up = Bilinear { out_h: 30, out_w: 26, align_corners: true };
    for op in [&pool as &dyn Op, &up as &dyn Op] {
        let out = op.infer(&[&x]).unwrap();
        let ds = op.lower(&Lowering { inputs: std::slice::from_ref(&x), output: &out, limits: &limits }).unwrap();
        assert!(ds.len() >= 2, "{}: {} dispatches", op.kind(), ds.len());
        for d in &ds {
            for b in &d.bindings {
                assert!(b.size <= 4096 && b.offset % 256 == 0);
            }
        }
    }
    // One output plane larger than a binding cannot be split: an error naming the op and the device limit.
    let big = Bilinear { out_h: 100, out_w: 100, align_corners: false };
    let out = big.infer(&[&x]).unwrap();
    let err = big.lower(&Lowering { inputs: std::slice::from_ref(&x), output: &out, limits: &limits }).unwrap_err().to_string();
    assert!(err.contains("bilinear") && err.contains("max_storage_buffer_binding_size is 4096 bytes"), "{err}");
}
