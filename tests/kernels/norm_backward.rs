//! Backward of the normalisation family: GroupNorm (± fused activation, ± affine, one or many groups, odd
//! spatial sizes), LayerNorm and softmax, each checked against finite differences of the forward twins and
//! on the GPU against the twins; the split paths under a small binding limit; the lowering of the VAE's
//! largest GroupNorm under real limits.

use std::sync::Arc;

use wgsd::gpu::{Gpu, GpuOptions};
use wgsd::graph::op::{DeviceLimits, Lowering, Op};
use wgsd::kernels::norm::GnLayout;
use wgsd::kernels::norm_backward::{GnAffine, GnBwdDx, GnBwdLayout, GnBwdSums};
use wgsd::kernels::unary::Activation;
use wgsd::tensor::TensorDesc;
use wgsd::testing::{assert_grads, grad_check, test_gpu, GradInput, Rng};

/// One GroupNorm case: x shape, groups, activation, weight?, bias?, x offset.
type GnCase = (Vec<usize>, usize, Activation, bool, bool, f32);

fn check_group_norm(gpu: Option<&Arc<Gpu>>, case: &GnCase, max_coords: usize, x_grad: bool, fd_tol: f64) {
    let (shape, groups, act, hw, hb, offset) = case.clone();
    let mut rng = Rng::new(shape.iter().product::<usize>() as u64 + groups as u64);
    let c = shape[1];
    let mut x = GradInput::random(&mut rng, &shape, 1.0);
    x.values.iter_mut().for_each(|v| *v += offset);
    x.wants_grad = x_grad;
    let mut inputs = vec![x];
    if hw {
        let mut w = GradInput::random(&mut rng, &[c], 0.5);
        w.values.iter_mut().for_each(|v| *v += 1.0);
        inputs.push(w);
    }
    if hb {
        inputs.push(GradInput::random(&mut rng, &[c], 0.5));
    }
    let reps = grad_check(gpu, &inputs, 1e-2, max_coords, &|g, t| {
        let w = hw.then(|| t[1]);
        let b = hb.then(|| t[1 + hw as usize]);
        g.group_norm_act("gn", t[0], groups, 1e-5, w, b, act)
    })
    .unwrap();
    assert_grads(&format!("group_norm {shape:?} groups {groups} {} w {hw} b {hb}", act.name()), &reps, fd_tol, 1e-4);
}

#[test]
fn group_norm_gradients() {
    let gpu = test_gpu();
    let cases: Vec<GnCase> = vec![
        (vec![2, 6, 5, 7], 3, Activation::Silu, true, true, 0.0),
        (vec![1, 4, 3, 3], 1, Activation::None, false, false, 0.0),
        (vec![3, 8, 5], 2, Activation::Silu, true, false, 0.5),
        (vec![2, 6, 13], 6, Activation::None, false, true, 0.0),
        (vec![3, 12], 2, Activation::None, true, true, 0.0),
        (vec![1, 6, 11, 3], 3, Activation::Gelu, true, true, 0.0),
    ];
    for case in &cases {
        check_group_norm(Some(&gpu), case, 48, true, 1e-3);
    }
}

/// Only the affine parameters train (x frozen): no dx nodes, the same sums.
#[test]
fn group_norm_parameter_gradients_alone() {
    let gpu = test_gpu();
    check_group_norm(Some(&gpu), &(vec![2, 6, 7, 5], 3, Activation::Silu, true, true, 0.0), 48, false, 1e-3);
}

/// A mid SD-like shape (UNet: 32 groups, SiLU, affine) with a large mean, GPU against the twins.
#[test]
fn group_norm_sd_like_shape_on_the_gpu() {
    let gpu = test_gpu();
    check_group_norm(Some(&gpu), &(vec![2, 64, 16, 16], 32, Activation::Silu, true, true, 20.0), 8, true, 1e-3);
}

#[test]
fn layer_norm_gradients() {
    let gpu = test_gpu();
    for (shape, hw, hb) in [(vec![3, 5, 37], true, true), (vec![4, 77], false, false), (vec![2, 3, 300], true, false), (vec![40, 7], false, true)] {
        let mut rng = Rng::new(shape.iter().product::<usize>() as u64);
        let c = *shape.last().unwrap();
        let mut inputs = vec![GradInput::random(&mut rng, &shape, 1.0)];
        if hw {
            let mut w = GradInput::random(&mut rng, &[c], 0.5);
            w.values.iter_mut().for_each(|v| *v += 1.0);
            inputs.push(w);
        }
        if hb {
            inputs.push(GradInput::random(&mut rng, &[c], 0.5));
        }
        let reps = grad_check(Some(&gpu), &inputs, 1e-2, 48, &|g, t| {
            let w = hw.then(|| t[1]);
            let b = hb.then(|| t[1 + hw as usize]);
            g.layer_norm("ln", t[0], 1e-5, w, b)
        })
        .unwrap();
        assert_grads(&format!("layer_norm {shape:?} w {hw} b {hb}"), &reps, 1e-3, 1e-4);
    }
}

/// An SD-like LayerNorm (the UNet's [B, H·W, 320] at 16 × 16) with a mean offset, GPU against the twins.
#[test]
fn layer_norm_sd_like_shape_on_the_gpu() {
    let gpu = test_gpu();
    let mut rng = Rng::new(9);
    let mut x = GradInput::random(&mut rng, &[2, 256, 320], 1.0);
    x.values.iter_mut().for_each(|v| *v += 10.0);
    let w = GradInput::random(&mut rng, &[320], 1.0);
    let b = GradInput::random(&mut rng, &[320], 1.0);
    let reps = grad_check(Some(&gpu), &[x, w, b], 1e-2, 8, &|g, t| g.layer_norm("ln", t[0], 1e-5, Some(t[1]), Some(t[2]))).unwrap();
    assert_grads("layer_norm [2, 256, 320]", &reps, 1e-3, 1e-4);
}

#[test]
fn softmax_gradients() {
    let gpu = test_gpu();
    for (shape, scale) in [(vec![3, 7, 19], 0.125f32), (vec![5, 77], 1.0), (vec![2, 300], -0.5), (vec![6, 1], 2.0)] {
        let mut rng = Rng::new(shape.iter().product::<usize>() as u64);
        let inputs = [GradInput::random(&mut rng, &shape, 3.0)];
        let reps = grad_check(Some(&gpu), &inputs, 1e-2, 48, &|g, t| g.softmax("sm", t[0], scale)).unwrap();
        assert_grads(&format!("softmax {shape:?} scale {scale}"), &reps, 1e-3, 1e-4);
    }
}

/// A device whose binding limit is cut to 256 KiB: planes split across dispatches (sums partials written by
/// several windows), windows of several planes, and row windows for LayerNorm and softmax.
#[test]
fn split_paths_under_a_small_binding_limit() {
    let mut gpu = Gpu::new(&GpuOptions::from_env()).expect("GPU tests need a GPU adapter");
    gpu.limits.max_storage_buffer_binding_size = 256 << 10;
    gpu.limits.min_storage_buffer_offset_alignment = gpu.limits.min_storage_buffer_offset_alignment.max(256);
    let gpu = Arc::new(gpu);
    // One plane = 300 × 300 floats = 352 KiB. One group of 180,000 elements: moving one x moves every
    // output by less than its f32 rounding, so the finite differences carry rounding noise (measured 7.6e-4
    // rel. L2); the tolerance is loosened to 2e-3 for this case only. The GPU-vs-twin check is the point here.
    check_group_norm(Some(&gpu), &(vec![1, 2, 300, 300], 1, Activation::Silu, true, true, 0.0), 6, true, 2e-3);
    // Planes of 16 KiB, the tensor (383 KiB) over two windows.
    check_group_norm(Some(&gpu), &(vec![3, 8, 61, 67], 4, Activation::None, true, false, 0.0), 6, true, 1e-3);
    let mut rng = Rng::new(5);
    let x = GradInput::random(&mut rng, &[150, 1000], 1.0);
    let w = GradInput::random(&mut rng, &[1000], 1.0);
    let reps = grad_check(Some(&gpu), &[x], 1e-2, 6, &|g, t| g.softmax("sm", t[0], 0.5)).unwrap();
    assert_grads("softmax rows split", &reps, 1e-3, 1e-4);
    let x = GradInput::random(&mut rng, &[150, 1000], 1.0);
    let reps = grad_check(Some(&gpu), &[x, w], 1e-2, 6, &|g, t| g.layer_norm("ln", t[0], 1e-5, Some(t[1]), None)).unwrap();
    assert_grads("layer_norm rows split", &reps, 1e-3, 1e-4);
}

/// The VAE decoder's largest GroupNorm input, [1, 256, 512, 512] (256 MiB), lowers under a 128 MiB binding
/// limit into windows that each fit (no GPU needed).
#[test]
fn vae_sized_group_norm_backward_lowers_into_windows() {
    let limits = DeviceLimits { max_binding: 128 << 20, offset_align: 256, max_workgroups: 65535, subgroup_min_size: 0, cpu: false, texture_reads: false, max_texture_rows: 0, texture_window: 16 << 20, conv: Default::default() };
    let x = TensorDesc::f32(&[1, 256, 512, 512]);
    let lay = GnLayout::new(&x, 32);
    let stats = lay.stats_desc();
    let c = TensorDesc::f32(&[256]);
    let aff = GnAffine { groups: 32, eps: 1e-6, act: Activation::Silu, has_weight: true, has_bias: true };
    let sums_op = GnBwdSums(aff);
    let sums = sums_op.infer(&[&x, &stats, &x, &c, &c]).unwrap();
    assert_eq!(sums, GnBwdLayout::new(&x, 32).sums_desc());
    let coef = TensorDesc::f32(&[32, 2]);
    let dx_op = GnBwdDx(aff);
    for (what, ds) in [
        ("sums", sums_op.lower(&Lowering { inputs: &[x.clone(), stats.clone(), x.clone(), c.clone(), c.clone()], output: &sums, limits: &limits }).unwrap()),
        ("dx", dx_op.lower(&Lowering { inputs: &[x.clone(), stats.clone(), x.clone(), coef.clone(), c.clone(), c.clone()], output: &x, limits: &limits }).unwrap()),
    ] {
        assert!(ds.len() >= 2, "{what}: {} dispatches", ds.len());
        for d in &ds {
            for b in &d.bindings {
                assert!(b.size <= limits.max_binding && b.offset % limits.offset_align == 0, "{what}: binding {b:?}");
            }
            assert!(d.workgroups.iter().all(|&n| n >= 1 && n <= limits.max_workgroups), "{what}: grid {:?}", d.workgroups);
        }
    }
}

/// The rule records only what is asked: with x frozen, no dx nodes; the statistics node gets no gradient.
#[test]
fn group_norm_records_only_needed_nodes() {
    use wgsd::graph::Graph;
    let mut g = Graph::new();
    let x = g.input("x", TensorDesc::f32(&[2, 8, 3, 3]));
    let w = g.input("w", TensorDesc::f32(&[8]));
    let b = g.input("b", TensorDesc::f32(&[8]));
    let y = g.group_norm("gn", x, 4, 1e-5, Some(w), Some(b), true).unwrap();
    let before = g.nodes().len();
    let grads = g.backward(y, &[w]).unwrap();
    let names: Vec<&str> = g.nodes()[before..].iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["gn.grad_sums", "gn.grad_weight"], "{names:?}");
    assert!(grads.get(&g, b).is_none() && grads.get(&g, x).is_none());
}

/// The UNet's GroupNorm shapes at SD 1.5's 512 × 512 (the largest and the smallest plane), GPU against twins.
#[test]
fn group_norm_sd_shapes_on_the_gpu() {
    let gpu = test_gpu();
    let t = std::time::Instant::now();
    check_group_norm(Some(&gpu), &(vec![2, 320, 64, 64], 32, Activation::Silu, true, true, 0.0), 2, true, 1e-3);
    check_group_norm(Some(&gpu), &(vec![2, 1280, 8, 8], 32, Activation::None, true, true, 0.0), 2, true, 1e-3);
    println!("SD shapes: {:.2} s", t.elapsed().as_secs_f64());
}

/// LayerNorm at the UNet's [2, 4096, 320] and CLIP's [1, 77, 768]; softmax at cross-attention's
/// [B·heads, 4096, 77] (here 4 heads' worth); GPU against twins.
#[test]
fn layer_norm_and_softmax_sd_shapes_on_the_gpu() {
    let gpu = test_gpu();
    let t = std::time::Instant::now();
    let mut rng = Rng::new(11);
    for shape in [vec![2, 4096, 320], vec![1, 77, 768]] {
        let c = shape[2];
        let ins = [GradInput::random(&mut rng, &shape, 1.0), GradInput::random(&mut rng, &[c], 1.0), GradInput::random(&mut rng, &[c], 1.0)];
        let reps = grad_check(Some(&gpu), &ins, 1e-2, 2, &|g, t| g.layer_norm("ln", t[0], 1e-5, Some(t[1]), Some(t[2]))).unwrap();
        assert_grads(&format!("layer_norm {shape:?}"), &reps, 1e-3, 1e-4);
    }
    let ins = [GradInput::random(&mut rng, &[4, 4096, 77], 3.0)];
    let reps = grad_check(Some(&gpu), &ins, 1e-2, 2, &|g, t| g.softmax("sm", t[0], 0.125)).unwrap();
    assert_grads("softmax [4, 4096, 77]", &reps, 1e-3, 1e-4);
    println!("SD shapes: {:.2} s", t.elapsed().as_secs_f64());
}

/// The VAE decoder's largest GroupNorm, [1, 256, 512, 512] (256 MiB, over the 128 MiB binding limit), run
/// split on the GPU against the twins. Slow on lavapipe (about 40 s): `--ignored`. The finite-difference
/// tolerance is loose (measured 6e-4 and 9e-4) because in groups of 2M elements a step of one x moves the
/// other outputs by less than their f32 rounding; GPU vs twin is what this checks (measured 1.5e-7 to 3.9e-7).
#[test]
#[ignore]
fn group_norm_vae_size_on_the_gpu() {
    let gpu = test_gpu();
    let t = std::time::Instant::now();
    check_group_norm(Some(&gpu), &(vec![1, 256, 512, 512], 32, Activation::Silu, true, true, 0.0), 1, true, 1e-2);
    println!("VAE size: {:.2} s", t.elapsed().as_secs_f64());
}
