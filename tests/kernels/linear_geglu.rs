//! The feed-forward's projection and GEGLU as one op (`linear_geglu`): the fused kernel where the adapter
//! has it, the product and `geglu` where it does not, both against the CPU twin.

use std::sync::Arc;

use wgsd::gpu::{Gpu, GpuOptions};
use wgsd::graph::op::{DeviceLimits, Lowering, Op};
use wgsd::kernels::linear_geglu::LinearGeglu;
use wgsd::testing::{assert_close, check_graph_kinds, test_gpu, test_gpu_buffer_reads, Rng};
use wgsd::{DType, Graph, Param, TensorDesc};

/// `(batch, tokens, K, F, bias, weight dtype)`.
type Case = (usize, usize, usize, usize, bool, DType);

/// One `linear_geglu` per case, all outputs of one graph, weights uploaded as `dtype` (the twin reads the
/// values the GPU holds).
fn record(gpu: &Arc<Gpu>, cases: &[Case]) -> (Graph, Vec<(wgsd::TensorId, Vec<f32>)>) {
    let mut rng = Rng::new(31);
    let mut g = Graph::new();
    let mut inputs = Vec::new();
    for (i, &(b, t, k, f, bias, dtype)) in cases.iter().enumerate() {
        let x = g.input(&format!("x{i}"), TensorDesc::f32(&[b, t, k]));
        inputs.push((x, rng.vec(b * t * k, 1.0)));
        let w = Param::upload(gpu, &format!("w{i}"), TensorDesc::new(&[2 * f, k], dtype), &rng.vec(2 * f * k, 0.3), true).unwrap();
        let w = g.param(&w);
        let bias = bias.then(|| Param::upload(gpu, &format!("b{i}"), TensorDesc::f32(&[2 * f]), &rng.vec(2 * f, 1.0), true).unwrap());
        let bias = bias.map(|p| g.param(&p));
        let y = g.linear_geglu(&format!("ff{i}"), x, w, bias).unwrap();
        g.output(y);
    }
    (g, inputs)
}

/// Checks every case against the twin and returns the kinds of the nodes the plan runs.
fn check(gpu: &Arc<Gpu>, cases: &[Case]) -> Vec<&'static str> {
    let (g, inputs) = record(gpu, cases);
    let (cmp, kinds) = check_graph_kinds(gpu, g, &inputs).unwrap();
    assert_close(&cmp, 1e-5);
    kinds
}

fn count(kinds: &[&str], kind: &str) -> usize {
    kinds.iter().filter(|k| **k == kind).count()
}

/// Rows that are not a multiple of the 32-row tile, F not a multiple of the 32-column tile, K of one vec4
/// and more, with and without a bias, f32 and f16 weights: one fused dispatch each on CPU adapters (the
/// buffer-read form on a second device), the two-op form elsewhere; the same values either way.
#[test]
fn linear_geglu_matches_the_twin() {
    let cases: Vec<Case> = vec![
        (1, 77, 20, 12, true, DType::F32),
        (2, 37, 36, 44, false, DType::F16),
        (3, 43, 64, 100, true, DType::F16),
        (1, 8, 4, 4, true, DType::F32),
    ];
    for gpu in [test_gpu(), test_gpu_buffer_reads()] {
        let kinds = check(&gpu, &cases);
        let cpu = gpu.info.device_type == wgpu::DeviceType::Cpu && gpu.caps.subgroups;
        let fused = if cpu { cases.len() } else { 0 };
        assert_eq!(count(&kinds, "linear_geglu"), fused, "{kinds:?}");
        assert_eq!(count(&kinds, "geglu"), cases.len() - fused, "{kinds:?}");
    }
}

/// Where the kernel cannot take it — F not a multiple of 4, or a weight larger than the texture window
/// the CPU-adapter kernels read it through — the plan runs the product and `geglu`; with a window that
/// holds the weight but not the input, the fused kernel runs on windows of rows.
#[test]
fn linear_geglu_falls_back_and_splits_rows() {
    let gpu = match Gpu::new(&GpuOptions::from_env()) {
        Ok(mut g) => {
            g.texture_window = 64 << 10;
            Arc::new(g)
        }
        Err(e) => panic!("GPU tests need a GPU adapter: {e}"),
    };
    let kinds = check(&gpu, &[(1, 40, 16, 10, true, DType::F32)]);
    assert_eq!((count(&kinds, "linear_geglu"), count(&kinds, "geglu")), (0, 1), "F = 10: {kinds:?}");
    // W: 2·100 × 128 f32 = 100 KiB, over the 64 KiB window.
    let kinds = check(&gpu, &[(1, 40, 128, 100, true, DType::F32)]);
    assert_eq!((count(&kinds, "linear_geglu"), count(&kinds, "geglu")), (0, 1), "large W: {kinds:?}");
    // W: 2·48 × 64 f32 = 24 KiB; x: 3·130 × 64 f32 = 97.5 KiB, in row windows.
    let kinds = check(&gpu, &[(3, 130, 64, 48, true, DType::F32)]);
    if gpu.info.device_type == wgpu::DeviceType::Cpu && gpu.caps.subgroups {
        assert_eq!(count(&kinds, "linear_geglu"), 1, "{kinds:?}");
    }
    // What that lowering is on a CPU adapter reading through textures: several dispatches, each binding a
    // window of x's rows under 64 KiB and the whole weight.
    let limits = DeviceLimits { max_binding: 1 << 27, offset_align: 256, max_workgroups: 65535, subgroup_min_size: 8, cpu: true, texture_reads: true, max_texture_rows: 8192, texture_window: 64 << 10, conv: Default::default() };
    let (x, w, b) = (TensorDesc::f32(&[3, 130, 64]), TensorDesc::f32(&[96, 64]), TensorDesc::f32(&[96]));
    let op = LinearGeglu { has_bias: true };
    let out = op.infer(&[&x, &w, &b]).unwrap();
    let ds = op.lower(&Lowering { inputs: &[x, w.clone(), b], output: &out, limits: &limits }).unwrap();
    assert!(ds.len() > 1, "{} dispatches", ds.len());
    for d in &ds {
        assert_eq!(d.entry, "matmul_bcast_k4_geglu");
        assert!(d.bindings[0].texture && d.bindings[0].size <= 64 << 10, "{:?}", d.bindings[0]);
        assert_eq!(d.bindings[1].size, w.bytes(), "the weight is bound whole");
    }
}
