//! Backward rules of the elementwise and layout ops, matmul and the MSE loss: each rule's CPU twins against
//! central finite differences of the forward twins, and the GPU plan against the twins (`grad_check`), on
//! small awkward shapes; a Linear backward at an SD shape on the GPU against the twins.

use wgsd::graph::autodiff::BackwardOpts;
use wgsd::graph::op::{DeviceLimits, Lowering, Op};
use wgsd::kernels::elementwise_backward::GatherGrad;
use wgsd::kernels::matmul::MatmulOpts;
use wgsd::kernels::unary::{Activation, Map};
use wgsd::testing::{assert_close, assert_grads, check_graph, grad_check, test_gpu, GradInput, Rng};
use wgsd::{Graph, TensorDesc};

const ACTS: [Activation; 7] = [Activation::None, Activation::Silu, Activation::Gelu, Activation::GeluTanh, Activation::QuickGelu, Activation::Relu, Activation::Tanh];

/// Random values kept at least `gap` away from `kink` (finite differences across ReLU's kink are wrong).
fn away_from(rng: &mut Rng, shape: &[usize], scale: f32, kink: f32, gap: f32) -> GradInput {
    let mut x = GradInput::random(rng, shape, scale);
    for v in x.values.iter_mut() {
        if (*v - kink).abs() < gap {
            *v = kink + gap.copysign(*v - kink) * 2.0;
        }
    }
    x
}

#[test]
fn activation_and_map_gradients() {
    let gpu = test_gpu();
    let mut rng = Rng::new(10);
    for act in ACTS {
        // Plain activation (alpha 1) and an affine map inside it; ReLU's inputs stay off its kink.
        for (alpha, beta) in [(1.0f32, 0.0f32), (1.7, -0.3)] {
            let x = away_from(&mut rng, &[5, 37], 3.0, -beta / alpha, 0.03);
            let reps = grad_check(Some(&gpu), &[x], 1e-2, 64, &|g, x| g.op("map", Map { act, alpha, beta }, &[x[0]])).unwrap();
            assert_grads(&format!("{} alpha {alpha} beta {beta}", act.name()), &reps, 1e-3, 1e-5);
        }
    }
}

#[test]
fn activation_grad_op_on_the_gpu_matches_the_twin_at_large_inputs() {
    // Wide range (tails of the sigmoid and erf) and an odd size.
    let gpu = test_gpu();
    let mut rng = Rng::new(11);
    let mut g = Graph::new();
    let x = g.input("x", TensorDesc::f32(&[4099]));
    let dy = g.input("dy", TensorDesc::f32(&[4099]));
    for act in ACTS {
        let dx = g.activation_grad(act.name(), x, dy, act).unwrap();
        g.output(dx);
    }
    let cmp = check_graph(&gpu, g, &[(x, rng.vec(4099, 12.0)), (dy, rng.vec(4099, 1.0))]).unwrap();
    assert_close(&cmp, 1e-6);
}

#[test]
fn geglu_gradient() {
    let gpu = test_gpu();
    let mut rng = Rng::new(12);
    for shape in [vec![3, 5, 14], vec![7, 2]] {
        let x = GradInput::random(&mut rng, &shape, 2.5);
        let reps = grad_check(Some(&gpu), &[x], 1e-2, 80, &|g, x| g.geglu("geglu", x[0])).unwrap();
        assert_grads(&format!("geglu {shape:?}"), &reps, 1e-3, 1e-5);
    }
}

#[test]
fn upsample_nearest_gradient_at_2x_odd_and_shrinking_sizes() {
    let gpu = test_gpu();
    let mut rng = Rng::new(13);
    for (shape, oh, ow) in [([2, 3, 4, 5], 8, 10), ([2, 3, 5, 7], 13, 19), ([1, 2, 5, 7], 3, 4), ([1, 1, 3, 3], 7, 3)] {
        let x = GradInput::random(&mut rng, &shape, 1.0);
        let reps = grad_check(Some(&gpu), &[x], 1e-2, 64, &|g, x| g.upsample_nearest("up", x[0], oh, ow)).unwrap();
        assert_grads(&format!("upsample {shape:?} → {oh}×{ow}"), &reps, 1e-3, 1e-6);
    }
}

#[test]
fn transpose_and_concat_gradients() {
    let gpu = test_gpu();
    let mut rng = Rng::new(14);
    let x = GradInput::random(&mut rng, &[2, 5, 7], 1.0);
    let reps = grad_check(Some(&gpu), &[x], 1e-2, 70, &|g, x| g.transpose("t", x[0])).unwrap();
    assert_grads("transpose", &reps, 1e-3, 1e-6);
    for (a, b, dim) in [(vec![2, 3, 4, 5], vec![2, 2, 4, 5], 1), (vec![3, 5], vec![3, 7], 1), (vec![2, 3, 5], vec![2, 3, 1], 2), (vec![3, 4], vec![1, 4], 0)] {
        let inputs = [GradInput::random(&mut rng, &a, 1.0), GradInput::random(&mut rng, &b, 1.0)];
        let reps = grad_check(Some(&gpu), &inputs, 1e-2, 64, &|g, x| {
            // Squared so each input's gradient depends on its own values.
            let c = g.concat("cat", x[0], x[1], dim)?;
            g.mul("sq", c, c)
        })
        .unwrap();
        assert_grads(&format!("concat {a:?} {b:?} dim {dim}"), &reps, 1e-3, 1e-6);
    }
}

#[test]
fn slice_forward_on_the_gpu() {
    let gpu = test_gpu();
    let mut rng = Rng::new(15);
    let mut g = Graph::new();
    let x = g.input("x", TensorDesc::f32(&[3, 7, 5]));
    for (dim, start, len) in [(0, 1, 2), (1, 2, 4), (2, 4, 1), (2, 0, 5)] {
        let s = g.slice("s", x, dim, start, len).unwrap();
        g.output(s);
    }
    assert_close(&check_graph(&gpu, g, &[(x, rng.vec(105, 1.0))]).unwrap(), 0.0);
}

#[test]
fn gather_gradient_sums_repeated_ids() {
    let gpu = test_gpu();
    let mut rng = Rng::new(16);
    // Repeats, unused rows, and ids outside the table (no gradient anywhere).
    let ids = vec![3.0, 0.0, 3.0, 10.0, -1.0, 7.0, 3.0, 11.0, 0.0, 5.0];
    let inputs = [GradInput::random(&mut rng, &[11, 6], 1.0), GradInput::fixed(&[2, 5], ids)];
    let reps = grad_check(Some(&gpu), &inputs, 1e-2, 66, &|g, x| {
        let e = g.gather("emb", x[0], x[1])?;
        g.mul("sq", e, e)
    })
    .unwrap();
    assert_grads("gather", &reps, 1e-3, 1e-6);
}

#[test]
fn gather_gradient_over_more_ids_than_a_workgroup_and_wide_rows() {
    // 2 × 300 ids (the row search strides over them 256 at a time), rows of 300 columns, a table where most
    // rows are absent, ids repeated across the whole range and some outside it.
    let gpu = test_gpu();
    let mut rng = Rng::new(17);
    let (n, d, vocab) = (600, 300, 1000);
    let ids: Vec<f32> = (0..n).map(|i| match i % 7 { 0 => 999.0, 1 => -3.0, 2 => 1500.0, _ => ((i * 37) % 450) as f32 }).collect();
    let mut g = Graph::new();
    let x = g.input("ids", TensorDesc::f32(&[2, n / 2]));
    let dy = g.input("dy", TensorDesc::f32(&[2, n / 2, d]));
    let t = g.gather_grad("table", x, dy, vocab).unwrap();
    g.output(t);
    assert_close(&check_graph(&gpu, g, &[(x, ids), (dy, rng.vec(n * d, 1.0))]).unwrap(), 1e-6);
}

#[test]
fn gather_gradient_splits_a_large_table_by_rows() {
    // CLIP's 49,408 × 1,024 f32 table is 202 MB, more than lavapipe's 128 MiB binding.
    let limits = DeviceLimits { max_binding: 128 << 20, offset_align: 256, max_workgroups: 65535, subgroup_min_size: 0, cpu: true, texture_reads: false, max_texture_rows: 0, texture_window: 16 << 20, conv: Default::default() };
    let (ids, dy, out) = (TensorDesc::f32(&[2, 77]), TensorDesc::f32(&[2, 77, 1024]), TensorDesc::f32(&[49408, 1024]));
    let l = Lowering { inputs: &[ids, dy], output: &out, limits: &limits };
    let ds = GatherGrad { vocab: 49408 }.lower(&l).unwrap();
    assert_eq!(ds.len(), 2);
    let covered: u64 = ds.iter().map(|d| d.bindings[2].size).sum();
    assert!(ds.iter().all(|d| d.bindings[2].size <= limits.max_binding));
    assert!(covered >= out.bytes());
}

#[test]
fn matmul_gradients_in_every_transpose_with_bias_and_activation() {
    let gpu = test_gpu();
    let mut rng = Rng::new(17);
    let (m, k, n) = (5, 7, 3);
    let acts = [Activation::None, Activation::Gelu, Activation::Silu, Activation::QuickGelu];
    for (i, (ta, tb)) in [(false, false), (false, true), (true, false), (true, true)].into_iter().enumerate() {
        let a = if ta { [k, m] } else { [m, k] };
        let b = if tb { [n, k] } else { [k, n] };
        let act = acts[i];
        let inputs = [GradInput::random(&mut rng, &a, 1.0), GradInput::random(&mut rng, &b, 1.0), GradInput::random(&mut rng, &[n], 1.0)];
        let reps = grad_check(Some(&gpu), &inputs, 1e-2, 64, &|g, x| {
            g.matmul("mm", x[0], x[1], MatmulOpts { trans_a: ta, trans_b: tb, bias: Some(x[2]), act, alpha: 0.7 })
        })
        .unwrap();
        assert_grads(&format!("matmul ta {ta} tb {tb} {}", act.name()), &reps, 1e-3, 1e-5);
    }
}

#[test]
fn matmul_gradients_with_batches_and_shared_operands() {
    let gpu = test_gpu();
    let mut rng = Rng::new(18);
    // (A, B, trans_a, trans_b, bias, act)
    type Case = (Vec<usize>, Vec<usize>, bool, bool, bool, Activation);
    let cases: Vec<Case> = vec![
        (vec![2, 5, 6], vec![3, 6], false, true, true, Activation::Silu), // Linear: shared weight
        (vec![2, 3, 5, 6], vec![4, 6], false, true, false, Activation::None), // two batch dims, shared weight
        (vec![2, 5, 6], vec![6, 3], false, false, true, Activation::None),
        (vec![2, 6, 5], vec![6, 3], true, false, false, Activation::Gelu), // transposed batched A, shared B
        (vec![2, 6, 5], vec![3, 6], true, true, false, Activation::None),
        (vec![2, 3, 5, 6], vec![2, 3, 6, 4], false, false, false, Activation::None), // both batched
        (vec![2, 6, 5], vec![2, 4, 6], true, true, true, Activation::GeluTanh),
        (vec![5, 6], vec![2, 6, 4], false, false, false, Activation::None), // shared A, batched B
        (vec![6, 5], vec![2, 4, 6], true, true, true, Activation::Relu),
    ];
    for (a, b, ta, tb, bias, act) in cases {
        let n = if tb { b[b.len() - 2] } else { b[b.len() - 1] };
        let mut inputs = vec![GradInput::random(&mut rng, &a, 1.0), GradInput::random(&mut rng, &b, 1.0)];
        if bias {
            inputs.push(GradInput::random(&mut rng, &[n], 1.0));
        }
        let reps = grad_check(Some(&gpu), &inputs, 1e-2, 64, &|g, x| {
            g.matmul("mm", x[0], x[1], MatmulOpts { trans_a: ta, trans_b: tb, bias: x.get(2).copied(), act, alpha: 1.3 })
        })
        .unwrap();
        assert_grads(&format!("matmul {a:?} {b:?} ta {ta} tb {tb} bias {bias} {}", act.name()), &reps, 1e-3, 1e-5);
    }
}

#[test]
fn linear_backward_computes_only_what_is_needed() {
    // LoRA: the frozen weight gets no gradient, but x does.
    let mut g = Graph::new();
    let x = g.input("x", TensorDesc::f32(&[2, 4, 6]));
    let w = g.input("w", TensorDesc::f32(&[3, 6]));
    let b = g.input("b", TensorDesc::f32(&[3]));
    let y = g.linear("lin", x, w, Some(b)).unwrap();
    let before = g.nodes().len();
    let grads = g.backward(y, &[x]).unwrap();
    assert!(grads.get(&g, w).is_none() && grads.get(&g, b).is_none());
    assert!(grads.get(&g, x).is_some());
    let names: Vec<&str> = g.nodes()[before..].iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["lin.grad_a"]);
}

#[test]
fn linear_backward_at_an_sd_shape_on_the_gpu() {
    let gpu = test_gpu();
    let mut rng = Rng::new(19);
    let mut g = Graph::new();
    let x = g.input("x", TensorDesc::f32(&[2, 256, 320]));
    let w = g.input("w", TensorDesc::f32(&[320, 320]));
    let b = g.input("b", TensorDesc::f32(&[320]));
    let y = g.linear("proj", x, w, Some(b)).unwrap();
    let r = g.input("r", TensorDesc::f32(&[2, 256, 320]));
    g.backward_from(&[(y, r)], &[x, w, b], BackwardOpts::default()).unwrap();
    let feed = vec![(x, rng.vec(2 * 256 * 320, 1.0)), (w, rng.vec(320 * 320, 0.05)), (b, rng.vec(320, 1.0)), (r, rng.vec(2 * 256 * 320, 1.0))];
    let cmp = check_graph(&gpu, g, &feed).unwrap();
    assert_eq!(cmp.len(), 3);
    assert_close(&cmp, 1e-5);
}

#[test]
fn mse_loss_gradients() {
    let gpu = test_gpu();
    let mut rng = Rng::new(20);
    let weights = |rng: &mut Rng, b: usize| GradInput { shape: vec![b], values: (0..b).map(|_| 0.6 + 0.4 * rng.uniform()).collect(), wants_grad: true };
    // The loss is quadratic in pred and target and linear in the weights, so central differences are exact
    // up to rounding; a large step keeps the f32 loss's rounding small next to the per-element gradients.
    for (shape, h) in [(vec![4, 3, 5, 7], 0.1), (vec![2, 4, 32, 40], 0.5), (vec![3, 1], 0.1)] {
        let b = shape[0];
        let inputs = [GradInput::random(&mut rng, &shape, 1.0), GradInput::random(&mut rng, &shape, 1.0), weights(&mut rng, b)];
        let reps = grad_check(Some(&gpu), &inputs, h, 48, &|g, x| g.mse_loss("loss", x[0], x[1], x[2])).unwrap();
        assert_grads(&format!("mse {shape:?}"), &reps, 1e-3, 1e-5);
    }
}

#[test]
fn mse_loss_forward_on_the_gpu_at_an_sd_latent_batch() {
    let gpu = test_gpu();
    let mut rng = Rng::new(21);
    let mut g = Graph::new();
    let shape = [4, 4, 64, 64];
    let p = g.input("pred", TensorDesc::f32(&shape));
    let t = g.input("target", TensorDesc::f32(&shape));
    let w = g.input("w", TensorDesc::f32(&[4]));
    let loss = g.mse_loss("loss", p, t, w).unwrap();
    g.output(loss);
    let n = 4 * 4 * 64 * 64;
    let cmp = check_graph(&gpu, g, &[(p, rng.vec(n, 1.0)), (t, rng.vec(n, 1.0)), (w, vec![0.5, 0.5, 1.0, 0.25])]).unwrap();
    assert_close(&cmp, 1e-6);
}
