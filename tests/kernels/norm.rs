//! GroupNorm, LayerNorm and softmax against their f64 CPU twins: awkward sizes, inputs with a large mean
//! offset (1000 + noise: an unstable variance or an f32 mean would show), real SD 1.5 shapes, the VAE
//! decoder's 256 MiB group-norm, and the splitting of tensors larger than one storage binding.

use std::sync::Arc;

use wgsd::graph::op::{DeviceLimits, Lowering, Op, Slot};
use wgsd::kernels::norm::{GnLayout, GroupNormApply, GroupNormStats, LayerNorm, Softmax};
use wgsd::kernels::unary::Activation;
use wgsd::testing::{assert_close, check_graph, test_gpu, Rng};
use wgsd::{DType, Gpu, GpuOptions, Graph, Plan, TensorDesc, TensorId};

const TOL: f64 = 1e-5;

fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

/// `offset + uniform(-scale, scale)` values.
fn data(seed: u64, n: usize, scale: f32, offset: f32) -> Vec<f32> {
    Rng::new(seed).vec(n, scale).into_iter().map(|v| v + offset).collect()
}

struct Case {
    g: Graph,
    inputs: Vec<(TensorId, Vec<f32>)>,
    seed: u64,
}

impl Case {
    fn new() -> Self {
        Case { g: Graph::new(), inputs: Vec::new(), seed: 1 }
    }
    fn input(&mut self, name: &str, shape: &[usize], scale: f32, offset: f32) -> TensorId {
        let t = self.g.input(name, TensorDesc::f32(shape));
        self.seed += 1;
        self.inputs.push((t, data(self.seed, numel(shape), scale, offset)));
        t
    }
    fn check(self, gpu: &Arc<Gpu>) {
        assert_close(&check_graph(gpu, self.g, &self.inputs).unwrap(), TOL);
    }
}

#[test]
fn group_norm_awkward_shapes_and_offsets() {
    // Both read paths: textures where the adapter wants them (lavapipe), storage buffers (GPUs).
    for gpu in [test_gpu(), wgsd::testing::test_gpu_buffer_reads()] {
        group_norm_awkward_shapes_and_offsets_on(gpu);
    }
}

fn group_norm_awkward_shapes_and_offsets_on(gpu: std::sync::Arc<wgsd::Gpu>) {
    let mut c = Case::new();
    // C = 6, 3 groups, odd spatial 7×5; the same input with 1 group and with one channel per group.
    let x = c.input("x", &[2, 6, 7, 5], 2.0, 0.3);
    let w = c.input("w", &[6], 1.0, 1.0);
    let b = c.input("b", &[6], 0.5, 0.0);
    let outs = [
        c.g.group_norm("g3_affine", x, 3, 1e-5, Some(w), Some(b), false).unwrap(),
        c.g.group_norm("g1_plain_silu", x, 1, 1e-6, None, None, true).unwrap(),
        c.g.group_norm("g6_weight_silu", x, 6, 1e-5, Some(w), None, true).unwrap(),
    ];
    // [B, C] without spatial dims (two elements per block), bias only.
    let x2 = c.input("x2", &[3, 4], 1.0, 0.0);
    let b2 = c.input("b2", &[4], 1.0, 0.0);
    let o2 = c.g.group_norm("rank2_bias", x2, 2, 1e-5, None, Some(b2), false).unwrap();
    // Large mean offset: values 1000 ± 1.
    let x3 = c.input("x3", &[2, 6, 7, 5], 1.0, 1000.0);
    let o3 = c.g.group_norm("offset_1000", x3, 3, 1e-5, Some(w), Some(b), false).unwrap();
    // A block of 2 × 97 × 101 = 19,594 elements spans two statistics chunks (merged by the finalize), also
    // at an offset of 1000, and 3-D spatial dims.
    let x4 = c.input("x4", &[1, 4, 97, 101], 1.0, 1000.0);
    let w4 = c.input("w4", &[4], 1.0, 0.5);
    let b4 = c.input("b4", &[4], 1.0, 0.0);
    let o4 = c.g.group_norm("two_chunks_offset", x4, 2, 1e-5, Some(w4), Some(b4), true).unwrap();
    let x5 = c.input("x5", &[2, 3, 5, 4, 3], 3.0, -2.0);
    let o5 = c.g.group_norm("spatial_3d", x5, 3, 1e-5, None, None, false).unwrap();
    // The statistics themselves (finals and partials) against the CPU's.
    let st = c.g.op("x4_stats", GroupNormStats { groups: 2, eps: 1e-5 }, &[x4]).unwrap();
    for t in outs.into_iter().chain([o2, o3, o4, o5, st]) {
        c.g.output(t);
    }
    c.check(&gpu);
}

#[test]
fn layer_norm_awkward_rows_and_offsets() {
    // Both read paths: textures where the adapter wants them (lavapipe), storage buffers (GPUs).
    for gpu in [test_gpu(), wgsd::testing::test_gpu_buffer_reads()] {
        layer_norm_awkward_rows_and_offsets_on(gpu);
    }
}

fn layer_norm_awkward_rows_and_offsets_on(gpu: std::sync::Arc<wgsd::Gpu>) {
    let mut c = Case::new();
    for (i, shape) in [&[5usize, 1][..], &[7, 3], &[3, 1000], &[2, 3, 4099], &[4, 33]].into_iter().enumerate() {
        let n = *shape.last().unwrap();
        let offset = if i % 2 == 0 { 1000.0 } else { 0.0 };
        let x = c.input(&format!("x{i}"), shape, 1.0, offset);
        let w = c.input(&format!("w{i}"), &[n], 1.0, 1.0);
        let b = c.input(&format!("b{i}"), &[n], 1.0, 0.0);
        let y = c.g.layer_norm(&format!("ln_affine_{n}"), x, 1e-5, Some(w), Some(b)).unwrap();
        let z = c.g.layer_norm(&format!("ln_plain_{n}"), x, 1e-6, None, None).unwrap();
        let v = c.g.layer_norm(&format!("ln_weight_{n}"), x, 1e-5, Some(w), None).unwrap();
        for t in [y, z, v] {
            c.g.output(t);
        }
    }
    c.check(&gpu);
}

#[test]
fn softmax_awkward_rows_scales_and_offsets() {
    let gpu = test_gpu();
    let mut c = Case::new();
    let shapes = [&[5usize, 1][..], &[7, 3], &[3, 1000], &[2, 3, 4099], &[2, 77]];
    for (i, shape) in shapes.into_iter().enumerate() {
        let n = *shape.last().unwrap();
        let x = c.input(&format!("x{i}"), shape, 4.0, 0.0);
        let xo = c.input(&format!("xo{i}"), shape, 4.0, 1000.0);
        for (k, scale) in [1.0f32, 0.125, -0.7, 1.0 / 40f32.sqrt()].into_iter().enumerate() {
            let y = c.g.softmax(&format!("softmax_{n}_s{k}"), x, scale).unwrap();
            let z = c.g.softmax(&format!("softmax_{n}_s{k}_offset"), xo, scale).unwrap();
            c.g.output(y);
            c.g.output(z);
        }
    }
    // Masked entries (−inf, as a causal mask adds): at the start of a row, in runs, everywhere but one place.
    let mut masked = data(99, 6 * 300, 3.0, 0.0);
    for (i, v) in masked.iter_mut().enumerate() {
        let (r, j) = (i / 300, i % 300);
        if j > 50 * r + 7 || (r == 5 && j != 123) {
            *v = f32::NEG_INFINITY;
        }
    }
    let xm = c.g.input("masked", TensorDesc::f32(&[6, 300]));
    c.inputs.push((xm, masked));
    let y = c.g.softmax("softmax_masked", xm, 0.125).unwrap();
    c.g.output(y);
    c.check(&gpu);
}

#[test]
fn sd_shapes() {
    let gpu = test_gpu();
    let mut c = Case::new();
    // UNet ResnetBlock2D norm1 at 64×64: 32 groups, eps 1e-5, with and without the fused SiLU.
    let x = c.input("x", &[2, 320, 64, 64], 2.0, 0.5);
    let w = c.input("w", &[320], 0.5, 1.0);
    let b = c.input("b", &[320], 0.5, 0.0);
    let gn = c.g.group_norm("down_blocks.0.resnets.0.norm1", x, 32, 1e-5, Some(w), Some(b), true).unwrap();
    let gn_plain = c.g.group_norm("down_blocks.0.attentions.0.norm", x, 32, 1e-6, Some(w), Some(b), false).unwrap();
    // Transformer block norm1 at 64×64 tokens.
    let h = c.input("h", &[2, 4096, 320], 2.0, 0.0);
    let lw = c.input("lw", &[320], 0.5, 1.0);
    let lb = c.input("lb", &[320], 0.5, 0.0);
    let ln = c.g.layer_norm("transformer_blocks.0.norm1", h, 1e-5, Some(lw), Some(lb)).unwrap();
    // Cross-attention scores: 8 heads of 4096 queries × 77 keys, scale 1/sqrt(40).
    let s = c.input("s", &[2, 8, 4096, 77], 6.0, 0.0);
    let sm = c.g.softmax("attn2.softmax", s, 1.0 / 40f32.sqrt()).unwrap();
    for t in [gn, gn_plain, ln, sm] {
        c.g.output(t);
    }
    c.check(&gpu);
}

/// The VAE decoder's up_blocks.3 group-norm: 1×256×512×512 f32 is 256 MiB in and out, twice lavapipe's
/// 128 MiB binding limit, so both nodes split their bindings.
#[test]
fn group_norm_256mib_silu_vs_cpu() {
    let gpu = test_gpu();
    let mut c = Case::new();
    let x = c.input("x", &[1, 256, 512, 512], 3.0, 0.25);
    let w = c.input("w", &[256], 0.5, 1.0);
    let b = c.input("b", &[256], 0.5, 0.0);
    let y = c.g.group_norm("decoder.up_blocks.3.resnets.0.norm1", x, 32, 1e-6, Some(w), Some(b), true).unwrap();
    c.g.output(y);
    c.check(&gpu);
}

/// A second device whose binding limit is cut to 256 KiB (and offset alignment raised to 256).
fn small_binding_gpu() -> Arc<Gpu> {
    let mut gpu = Gpu::new(&GpuOptions::from_env()).expect("GPU tests need a GPU adapter");
    gpu.limits.max_storage_buffer_binding_size = 256 << 10;
    gpu.limits.min_storage_buffer_offset_alignment = gpu.limits.min_storage_buffer_offset_alignment.max(256);
    Arc::new(gpu)
}

/// On a device whose binding limit is cut to 256 KiB (and offset alignment raised to 256): every split
/// path runs on the GPU at small sizes, including one group block spread over several bindings (partials
/// merged across dispatches) and windows of several blocks, planes and rows.
#[test]
fn splits_run_correctly_under_a_small_binding_limit() {
    let gpu = small_binding_gpu();
    let mut c = Case::new();
    // One block of 4 × 150 × 150 = 90,000 elements (352 KiB) over 2 bindings, at an offset of 1000.
    let x = c.input("x", &[1, 4, 150, 150], 1.0, 1000.0);
    let w = c.input("w", &[4], 1.0, 1.0);
    let y = c.g.group_norm("one_block_split", x, 1, 1e-5, Some(w), None, true).unwrap();
    // Blocks of 32 KiB, several per binding; the tensor (383 KiB) over two windows.
    let x2 = c.input("x2", &[3, 8, 61, 67], 2.0, 0.0);
    let y2 = c.g.group_norm("blocks_split", x2, 4, 1e-5, None, None, false).unwrap();
    // Planes larger than a binding for the apply pass: 1 × 2 × 300 × 300 (one plane = 352 KiB).
    let x3 = c.input("x3", &[1, 2, 300, 300], 1.0, -3.0);
    let y3 = c.g.group_norm("planes_split", x3, 2, 1e-5, None, None, true).unwrap();
    let r = c.input("r", &[300, 1000], 2.0, 1000.0);
    let ln = c.g.layer_norm("ln_rows_split", r, 1e-5, None, None).unwrap();
    let sm = c.g.softmax("softmax_rows_split", r, 0.5).unwrap();
    for t in [y, y2, y3, ln, sm] {
        c.g.output(t);
    }
    c.check(&gpu);
}

/// Profiling a plan whose nodes split into several dispatches, each with its own texture copies on CPU
/// adapters (so each in a compute pass of its own): one time per node, the passes between a node's first
/// and last writing no timestamps.
#[test]
fn profiles_nodes_split_over_several_passes() {
    let gpu = small_binding_gpu();
    let mut g = Graph::new();
    let x = g.input("x", TensorDesc::f32(&[1, 2, 300, 300]));
    let y = g.group_norm("planes_split", x, 2, 1e-5, None, None, true).unwrap();
    let r = g.input("r", TensorDesc::f32(&[300, 1000]));
    let ln = g.layer_norm("ln_rows_split", r, 1e-5, None, None).unwrap();
    g.output(y);
    g.output(ln);
    let plan = Plan::new(gpu.clone(), g).unwrap();
    plan.write(x, &data(1, 2 * 300 * 300, 1.0, 0.0)).unwrap();
    plan.write(r, &data(2, 300 * 1000, 1.0, 0.0)).unwrap();
    let times = plan.profile().unwrap();
    assert_eq!(times.len(), plan.graph().nodes().len());
    assert!(times.iter().all(|t| t.is_finite() && *t >= 0.0), "{times:?}");
}

fn check_bindings(what: &str, ds: &[wgsd::graph::op::Dispatch], limits: &DeviceLimits) {
    for d in ds {
        for b in &d.bindings {
            assert!(b.size <= limits.max_binding, "{what}: {} binding of {} bytes", d.entry, b.size);
            assert!(b.offset % limits.offset_align == 0, "{what}: {} offset {} unaligned", d.entry, b.offset);
        }
        assert!(d.workgroups.iter().all(|&n| n >= 1 && n <= limits.max_workgroups), "{what}: grid {:?}", d.workgroups);
    }
}

/// Bindings of `slot` across the dispatches of entry `entry` cover `[0, bytes)` without gaps.
fn check_coverage(what: &str, ds: &[wgsd::graph::op::Dispatch], entry: &str, slot: Slot, bytes: u64) {
    let mut ranges: Vec<(u64, u64)> = ds
        .iter()
        .filter(|d| d.entry.starts_with(entry))
        .flat_map(|d| d.bindings.iter().filter(|b| b.slot == slot).map(|b| (b.offset, b.offset + b.size)))
        .collect();
    ranges.sort();
    let mut end = 0;
    for (a, b) in ranges {
        assert!(a <= end, "{what}: gap before byte {a}");
        end = end.max(b);
    }
    assert!(end >= bytes, "{what}: covered {end} of {bytes} bytes");
}

/// GroupNorm and LayerNorm read and write vec4s where planes (blocks, chunks, window starts) are whole vec4s, and the
/// scalar kernels serve the rest; both are checked against the CPU twin by the GPU tests above (SD shapes
/// take the vec4 kernels, 7×5 and 97×101 planes the scalar ones).
#[test]
fn norms_pick_vec4_kernels_by_shape() {
    let limits = DeviceLimits { max_binding: 1 << 27, offset_align: 256, max_workgroups: 65535, subgroup_min_size: 0, cpu: false, texture_reads: false, max_texture_rows: 0, texture_window: 16 << 20, conv: Default::default() };
    let entries = |shape: &[usize]| {
        let x = TensorDesc::f32(shape);
        let stats_op = GroupNormStats { groups: 2, eps: 1e-5 };
        let stats = stats_op.infer(&[&x]).unwrap();
        let mut e: Vec<&str> = stats_op.lower(&Lowering { inputs: std::slice::from_ref(&x), output: &stats, limits: &limits }).unwrap().iter().map(|d| d.entry).collect();
        let apply = GroupNormApply { groups: 2, eps: 1e-5, act: Activation::Silu, has_weight: false, has_bias: false, out_f16: false };
        let ins = [x.clone(), stats];
        e.extend(apply.lower(&Lowering { inputs: &ins, output: &x, limits: &limits }).unwrap().iter().map(|d| d.entry));
        e.dedup();
        e
    };
    assert_eq!(entries(&[2, 4, 64, 64]), ["gn_stats4", "gn_finalize", "gn_apply4"]);
    // One 300×300 plane per group: a 90000-element block in chunks that stay whole vec4s.
    assert_eq!(entries(&[1, 2, 300, 300]), ["gn_stats4", "gn_finalize", "gn_apply4"]);
    assert_eq!(entries(&[2, 4, 7, 5]), ["gn_stats", "gn_finalize", "gn_apply"]);
    // Blocks of 2 planes of 6 elements are whole vec4s, planes are not: vec4 statistics, scalar apply.
    assert_eq!(entries(&[1, 4, 2, 3]), ["gn_stats4", "gn_finalize", "gn_apply"]);
    // LayerNorm: rows of a multiple of 4 (the transformer's 320 .. 1280, the 3×1000 GPU case) take the
    // vec4 kernel; 33 and 4099 the scalar one.
    let ln = LayerNorm { eps: 1e-5, has_weight: true, has_bias: true };
    let cpu = DeviceLimits { cpu: true, ..limits.clone() };
    for (rows, len, entry, cpu_entry) in [
        (8192, 320, "layer_norm4", "layer_norm4_w8"),
        (3, 1000, "layer_norm4", "layer_norm4_w8"),
        (4, 33, "layer_norm", "layer_norm"),
        (6, 4099, "layer_norm", "layer_norm"),
    ] {
        let ins = [TensorDesc::f32(&[rows, len]), TensorDesc::f32(&[len]), TensorDesc::f32(&[len])];
        for (lim, want) in [(&limits, entry), (&cpu, cpu_entry)] {
            let ds = ln.lower(&Lowering { inputs: &ins, output: &ins[0], limits: lim }).unwrap();
            assert!(ds.iter().all(|d| d.entry == want), "rows of {len}: {:?}", ds.iter().map(|d| d.entry).collect::<Vec<_>>());
        }
        // CPU adapters that read through textures: the _w8 form reads x, weight and bias from textures.
        let tex = DeviceLimits { texture_reads: true, max_texture_rows: 16384, ..cpu.clone() };
        for d in ln.lower(&Lowering { inputs: &ins, output: &ins[0], limits: &tex }).unwrap() {
            let marked: Vec<bool> = d.bindings.iter().map(|b| b.texture).collect();
            let want = if d.entry.ends_with("_w8") { vec![true, false, true, true] } else { vec![false; 4] };
            assert_eq!(marked, want, "{} rows of {len}", d.entry);
        }
    }
    // GroupNorm's CPU forms read x from a texture (statistics and apply), never the statistics or output.
    let tex = DeviceLimits { cpu: true, texture_reads: true, max_texture_rows: 16384, ..limits.clone() };
    let x = TensorDesc::f32(&[2, 4, 64, 64]);
    let stats_op = GroupNormStats { groups: 2, eps: 1e-5 };
    let stats = stats_op.infer(&[&x]).unwrap();
    let ds = stats_op.lower(&Lowering { inputs: std::slice::from_ref(&x), output: &stats, limits: &tex }).unwrap();
    assert!(ds.iter().all(|d| d.bindings[0].texture == (d.entry == "gn_stats4_w8") && !d.bindings[1].texture));
    let apply = GroupNormApply { groups: 2, eps: 1e-5, act: Activation::Silu, has_weight: false, has_bias: false, out_f16: false };
    let ds = apply.lower(&Lowering { inputs: &[x.clone(), stats], output: &x, limits: &tex }).unwrap();
    assert!(ds.iter().all(|d| d.entry == "gn_apply4_w8" && d.bindings[0].texture && !d.bindings[1].texture));
}

/// The splitting logic without a GPU: lower under a 1 MiB binding limit and check every binding fits.
#[test]
fn splitting_under_tiny_limits_without_gpu() {
    let limits = DeviceLimits { max_binding: 1 << 20, offset_align: 256, max_workgroups: 65535, subgroup_min_size: 0, cpu: false, texture_reads: false, max_texture_rows: 0, texture_window: 16 << 20, conv: Default::default() };
    let lower = |op: &dyn Op, ins: &[TensorDesc]| {
        let refs: Vec<&TensorDesc> = ins.iter().collect();
        let out = op.infer(&refs).unwrap();
        (op.lower(&Lowering { inputs: ins, output: &out, limits: &limits }), out)
    };
    for (shape, groups) in [(vec![1usize, 256, 512, 512], 32usize), (vec![1, 256, 512, 512], 1), (vec![2, 320, 64, 64], 32)] {
        let x = TensorDesc::f32(&shape);
        let what = format!("group_norm {x} / {groups}");
        let lay = GnLayout::new(&x, groups);
        let (ds, stats) = lower(&GroupNormStats { groups, eps: 1e-5 }, std::slice::from_ref(&x));
        let ds = ds.unwrap();
        check_bindings(&what, &ds, &limits);
        check_coverage(&what, &ds, "gn_stats", Slot::Input(0), x.bytes());
        assert!(ds.len() > 2 && ds.last().unwrap().entry == "gn_finalize", "{what}: {} dispatches", ds.len());
        assert_eq!(stats, lay.stats_desc());
        let c = shape[1];
        let apply = GroupNormApply { groups, eps: 1e-5, act: Activation::Silu, has_weight: true, has_bias: true, out_f16: false };
        let (ds, _) = lower(&apply, &[x.clone(), stats, TensorDesc::f32(&[c]), TensorDesc::f32(&[c])]);
        let ds = ds.unwrap();
        check_bindings(&what, &ds, &limits);
        check_coverage(&what, &ds, "gn_apply", Slot::Input(0), x.bytes());
        check_coverage(&what, &ds, "gn_apply", Slot::Output, x.bytes());
        assert!(ds.len() >= 8, "{what}: {} apply dispatches", ds.len());
    }
    for (op, shape) in [
        (&LayerNorm { eps: 1e-5, has_weight: false, has_bias: false } as &dyn Op, vec![2usize, 4096, 320]),
        (&Softmax { scale: 0.125 }, vec![2, 8, 4096, 77]),
    ] {
        let x = TensorDesc::f32(&shape);
        let (ds, _) = lower(op, std::slice::from_ref(&x));
        let ds = ds.unwrap();
        check_bindings(op.kind(), &ds, &limits);
        check_coverage(op.kind(), &ds, ds[0].entry, Slot::Output, x.bytes());
        assert!(ds.len() >= 10);
    }
    // A binding smaller than one statistics chunk (128 KiB) is refused with an error naming op and limit.
    let small = DeviceLimits { max_binding: 32 << 10, offset_align: 256, max_workgroups: 65535, subgroup_min_size: 0, cpu: false, texture_reads: false, max_texture_rows: 0, texture_window: 16 << 20, conv: Default::default() };
    let x = TensorDesc::f32(&[1, 64, 64, 64]);
    let op = GroupNormStats { groups: 1, eps: 1e-5 };
    let out = op.infer(&[&x]).unwrap();
    let err = op.lower(&Lowering { inputs: std::slice::from_ref(&x), output: &out, limits: &small }).unwrap_err().to_string();
    assert!(err.contains("group_norm_stats") && err.contains("max_storage_buffer_binding_size"), "{err}");
    // A LayerNorm row larger than a binding likewise.
    let x = TensorDesc::f32(&[2, 20000]);
    let op = LayerNorm { eps: 1e-5, has_weight: false, has_bias: false };
    let err = op.lower(&Lowering { inputs: std::slice::from_ref(&x), output: &x, limits: &small }).unwrap_err().to_string();
    assert!(err.contains("layer_norm") && err.contains("f32[2×20000]"), "{err}");
}

#[test]
fn bad_inputs_are_errors_naming_op_and_shapes() {
    let mut g = Graph::new();
    let x = g.input("x", TensorDesc::f32(&[2, 6, 7, 5]));
    let err = g.group_norm("mid.norm", x, 4, 1e-5, None, None, false).unwrap_err().to_string();
    assert!(err.contains("group_norm 'mid.norm'") && err.contains("f32[2×6×7×5]") && err.contains("4 groups"), "{err}");
    let w5 = g.input("w5", TensorDesc::f32(&[5]));
    let err = g.group_norm("mid.norm", x, 3, 1e-5, Some(w5), None, true).unwrap_err().to_string();
    assert!(err.contains("group_norm 'mid.norm'") && err.contains("weight") && err.contains("f32[5]"), "{err}");
    assert!(err.contains("f32[6]"), "{err}");
    let b16 = g.input("b16", TensorDesc::new(&[6], DType::F16));
    let err = g.group_norm("mid.norm", x, 3, 1e-5, None, Some(b16), true).unwrap_err().to_string();
    assert!(err.contains("group_norm 'mid.norm'") && err.contains("dtype") && err.contains("f16[6]"), "{err}");
    let flat = g.input("flat", TensorDesc::f32(&[12]));
    let err = g.group_norm("flat.norm", flat, 3, 1e-5, None, None, false).unwrap_err().to_string();
    assert!(err.contains("group_norm 'flat.norm'") && err.contains("f32[12]"), "{err}");
    // Nothing was recorded by the failed calls.
    assert!(g.nodes().is_empty());

    let h = g.input("h", TensorDesc::f32(&[2, 77, 768]));
    let w = g.input("w", TensorDesc::f32(&[1024]));
    let err = g.layer_norm("final_layer_norm", h, 1e-5, Some(w), None).unwrap_err().to_string();
    assert!(err.contains("layer_norm 'final_layer_norm'") && err.contains("f32[1024]") && err.contains("2×77×768"), "{err}");
    let h16 = g.input("h16", TensorDesc::new(&[2, 77], DType::F16));
    let err = g.softmax("attn.softmax", h16, 1.0).unwrap_err().to_string();
    assert!(err.contains("softmax 'attn.softmax'") && err.contains("dtype"), "{err}");
    let err = g.layer_norm("ln16", h16, 1e-5, None, None).unwrap_err().to_string();
    assert!(err.contains("layer_norm 'ln16'") && err.contains("f16[2×77]"), "{err}");
}

/// Bandwidth on the current adapter, from GPU timestamps (`Plan::profile`). Reports; asserts nothing about
/// time. `cargo test --release --test kernels norm::bench -- --ignored --nocapture`
#[test]
#[ignore]
fn bench_norm_bandwidth() {
    let gpu = test_gpu();
    println!("adapter: {}", gpu.info.name);
    // The elementwise `scale` kernel on the same tensor is the copy-like baseline (read once, write once).
    let cases: Vec<(&str, Vec<usize>)> = vec![
        ("scale (baseline)", vec![2, 320, 64, 64]),
        ("group_norm_stats", vec![2, 320, 64, 64]),
        ("group_norm", vec![2, 320, 64, 64]),
        ("group_norm+silu", vec![2, 320, 64, 64]),
        ("layer_norm", vec![2, 4096, 320]),
        ("softmax", vec![2, 8, 4096, 77]),
        ("scale (baseline)", vec![1, 256, 512, 512]),
        ("group_norm+silu", vec![1, 256, 512, 512]),
    ];
    let only = std::env::var("NORM_BENCH").unwrap_or_default();
    for (kind, shape) in cases {
        if !only.is_empty() && !format!("{kind} {shape:?}").contains(&only) {
            continue;
        }
        let mut g = Graph::new();
        let x = g.input("x", TensorDesc::f32(&shape));
        let c = if kind.starts_with("group_norm") { shape[1] } else { *shape.last().unwrap() };
        let w = g.input("w", TensorDesc::f32(&[c]));
        let b = g.input("b", TensorDesc::f32(&[c]));
        let y = match kind {
            "group_norm+silu" => g.group_norm("gn", x, 32, 1e-5, Some(w), Some(b), true).unwrap(),
            "group_norm" => g.group_norm("gn", x, 32, 1e-5, Some(w), Some(b), false).unwrap(),
            "group_norm_stats" => g.op("gn.stats", GroupNormStats { groups: 32, eps: 1e-5 }, &[x]).unwrap(),
            "layer_norm" => g.layer_norm("ln", x, 1e-5, Some(w), Some(b)).unwrap(),
            "scale (baseline)" => g.scale("scale", x, 1.5, 0.5).unwrap(),
            _ => g.softmax("sm", x, 0.125).unwrap(),
        };
        g.output(y);
        let plan = Plan::new(gpu.clone(), g).unwrap();
        let n = numel(&shape);
        plan.write(x, &data(1, n, 2.0, 0.0)).unwrap();
        if kind.starts_with("group_norm") || kind == "layer_norm" {
            plan.write(w, &data(2, c, 1.0, 1.0)).unwrap();
            plan.write(b, &data(3, c, 1.0, 0.0)).unwrap();
        }
        plan.run().unwrap();
        gpu.wait().unwrap();
        let reps = if n > 10_000_000 { 2 } else { 5 };
        let mut best = vec![f64::INFINITY; plan.graph().nodes().len()];
        for _ in 0..reps {
            for (b, t) in best.iter_mut().zip(plan.profile().unwrap()) {
                *b = b.min(t);
            }
        }
        // Process CPU time per run (lavapipe's threads included): on a CPU adapter this is steadier than the
        // timestamps when other work shares the cores.
        let cpu = cpu_seconds().map(|t0| {
            let mut runs = 0;
            while runs < 3 || (cpu_seconds().unwrap() - t0 < 1.0 && runs < 20) {
                plan.run().unwrap();
                gpu.wait().unwrap();
                runs += 1;
            }
            (cpu_seconds().unwrap() - t0) / runs as f64
        });
        let total: f64 = best.iter().sum();
        let tensor = (n * 4) as f64;
        // Minimum traffic: read x, write y (2×); this design reads x twice (statistics, apply) for group-norm.
        let moved = match kind {
            "group_norm" | "group_norm+silu" => 3.0 * tensor,
            "group_norm_stats" => tensor,
            _ => 2.0 * tensor,
        };
        let per_node: Vec<String> = plan
            .graph()
            .nodes()
            .iter()
            .zip(&best)
            .map(|(nd, t)| format!("{} {:.2} ms", nd.op.kind(), t * 1e3))
            .collect();
        println!(
            "{kind:16} {:>18}: {:8.2} ms  {:6.2} GB/s moved ({:.0}× tensor), {:6.2} GB/s of in+out  [{}]{}",
            format!("{shape:?}"),
            total * 1e3,
            moved / total / 1e9,
            moved / tensor,
            2.0 * tensor / total / 1e9,
            per_node.join(", "),
            cpu.map_or(String::new(), |c| format!("; CPU time {:.1} ms/run", c * 1e3)),
        );
    }
}

/// User + system CPU time of this process (all threads), from /proc (Linux only).
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// `--precision f16`: a GroupNorm writes its output in f16 for the convolution after it. The statistics
/// and the affine stay f32, so the result is the f32 output rounded once (the CPU twin rounds its f64
/// result: they differ by at most one f16 step where the two straddle a rounding boundary). Planes that
/// are not whole vec4s are refused at record time.
#[test]
fn group_norm_writes_f16_for_a_convolution() {
    // Both read paths: textures where the adapter wants them (lavapipe), storage buffers (GPUs).
    for gpu in [test_gpu(), wgsd::testing::test_gpu_buffer_reads()] {
        group_norm_writes_f16_for_a_convolution_on(gpu);
    }
}

fn group_norm_writes_f16_for_a_convolution_on(gpu: std::sync::Arc<wgsd::Gpu>) {
    for (shape, groups, act) in [
        (vec![2usize, 8, 6, 8], 4usize, Activation::Silu),
        (vec![2, 320, 16, 16], 32, Activation::Silu),
        (vec![1, 6, 4, 4], 3, Activation::None),
        // Neither fast path: the pipeline's fixed ACT reaches the generic activation branch.
        (vec![1, 6, 4, 4], 3, Activation::Gelu),
    ] {
        let mut g = Graph::new();
        let n: usize = shape.iter().product();
        let c = shape[1];
        let x = g.input("x", TensorDesc::f32(&shape));
        let w = g.input("w", TensorDesc::f32(&[c]));
        let b = g.input("b", TensorDesc::f32(&[c]));
        let y = g.group_norm_to("gn", x, groups, 1e-5, Some(w), Some(b), act, DType::F16).unwrap();
        assert_eq!(g.desc(y).dtype, DType::F16);
        g.output(y);
        let vals = vec![(x, data(7, n, 2.0, 0.5)), (w, data(8, c, 1.0, 1.0)), (b, data(9, c, 0.5, 0.0))];
        let cmp = check_graph(&gpu, g, &vals).unwrap();
        println!("{shape:?} f16 output: rel_l2 {:.2e} max_abs {:.2e}", cmp[0].rel_l2, cmp[0].max_abs);
        assert!(cmp[0].rel_l2 < 2e-4 && cmp[0].max_abs < 4e-3, "{shape:?}: {:?}", cmp[0].rel_l2);
    }
    let mut g = Graph::new();
    let x = g.input("x", TensorDesc::f32(&[1, 4, 3, 5]));
    let e = g.group_norm_to("odd", x, 2, 1e-5, None, None, Activation::None, DType::F16).unwrap_err().to_string();
    assert!(e.contains("multiple of 4") && e.contains("f32[1×4×3×5]"), "{e}");
}

/// The vec4 GroupNorm statistics and apply have 256-invocation forms for GPUs and 8-invocation ones for
/// CPU adapters (which the other tests run on lavapipe); this runs the GPU forms, f32 and f16 output, on
/// this adapter.
#[test]
fn group_norm_gpu_workgroup_forms() {
    let mut gpu = Gpu::new(&GpuOptions::from_env()).unwrap_or_else(|e| panic!("GPU tests need a GPU adapter: {e}"));
    gpu.gpu_style_kernels = true;
    let gpu = Arc::new(gpu);
    assert!(!DeviceLimits::from_gpu(&gpu).cpu);
    for out in [DType::F32, DType::F16] {
        let shape = [2usize, 64, 16, 16];
        let mut g = Graph::new();
        let x = g.input("x", TensorDesc::f32(&shape));
        let w = g.input("w", TensorDesc::f32(&[64]));
        let b = g.input("b", TensorDesc::f32(&[64]));
        let y = g.group_norm_to("gn", x, 32, 1e-5, Some(w), Some(b), Activation::Silu, out).unwrap();
        g.output(y);
        let node = g.nodes().last().unwrap();
        let descs = [TensorDesc::f32(&shape), g.desc(node.inputs[1]).clone(), TensorDesc::f32(&[64]), TensorDesc::f32(&[64])];
        let limits = DeviceLimits::from_gpu(&gpu);
        let entry = node.op.lower(&Lowering { inputs: &descs, output: g.desc(y), limits: &limits }).unwrap()[0].entry;
        assert_eq!(entry, if out == DType::F16 { "gn_apply4h" } else { "gn_apply4" });
        let stats_node = &g.nodes()[g.nodes().len() - 2];
        let stats_entry = stats_node.op.lower(&Lowering { inputs: &descs[..1], output: &descs[1], limits: &limits }).unwrap()[0].entry;
        assert_eq!(stats_entry, "gn_stats4");
        let vals = vec![(x, data(3, 2 * 64 * 256, 2.0, 0.5)), (w, data(4, 64, 1.0, 1.0)), (b, data(5, 64, 0.5, 0.0))];
        let cmp = check_graph(&gpu, g, &vals).unwrap();
        println!("{entry}: rel_l2 {:.2e}", cmp[0].rel_l2);
        assert!(cmp[0].rel_l2 < if out == DType::F16 { 2e-4 } else { TOL }, "{entry}: {:e}", cmp[0].rel_l2);
    }
}

/// layer_norm4's GPU form (256 invocations, several per row) on this adapter; the CPU form (one row per
/// invocation) is what the other LayerNorm tests run on lavapipe.
#[test]
fn layer_norm_gpu_workgroup_form() {
    let mut gpu = Gpu::new(&GpuOptions::from_env()).unwrap_or_else(|e| panic!("GPU tests need a GPU adapter: {e}"));
    gpu.gpu_style_kernels = true;
    let gpu = Arc::new(gpu);
    let mut g = Graph::new();
    let x = g.input("x", TensorDesc::f32(&[37, 320]));
    let w = g.input("w", TensorDesc::f32(&[320]));
    let b = g.input("b", TensorDesc::f32(&[320]));
    let y = g.layer_norm("ln", x, 1e-5, Some(w), Some(b)).unwrap();
    g.output(y);
    let descs = [TensorDesc::f32(&[37, 320]), TensorDesc::f32(&[320]), TensorDesc::f32(&[320])];
    let limits = DeviceLimits::from_gpu(&gpu);
    assert_eq!(g.nodes().last().unwrap().op.lower(&Lowering { inputs: &descs, output: &descs[0], limits: &limits }).unwrap()[0].entry, "layer_norm4");
    let vals = vec![(x, data(1, 37 * 320, 2.0, 1000.0)), (w, data(2, 320, 1.0, 1.0)), (b, data(3, 320, 0.5, 0.0))];
    assert_close(&check_graph(&gpu, g, &vals).unwrap(), TOL);
}

/// Where GroupNorm reads x through a scratch texture, its statistics and apply dispatches cover at most the
/// device's texture window (16 KiB here: 4 of a 2×8×32×32 input's planes per window, 8 windows each),
/// and the result still matches the CPU twin.
#[test]
fn group_norm_texture_windows() {
    let mut gpu = Gpu::new(&GpuOptions::from_env()).unwrap_or_else(|e| panic!("GPU tests need a GPU adapter: {e}"));
    gpu.texture_window = 16 << 10;
    let gpu = Arc::new(gpu);
    let limits = DeviceLimits::from_gpu(&gpu);
    let x = TensorDesc::f32(&[2, 8, 32, 32]);
    let stats = GroupNormStats { groups: 4, eps: 1e-5 };
    let sd = stats.infer(&[&x]).unwrap();
    let ds = stats.lower(&Lowering { inputs: std::slice::from_ref(&x), output: &sd, limits: &limits }).unwrap();
    // Statistics dispatches (plus the finalize) each bind at most the window where textures are read.
    if limits.texture_reads {
        assert!(ds.len() > 2, "{} dispatches", ds.len());
        assert!(ds.iter().all(|d| d.bindings[0].size <= 16 << 10), "{:?}", ds.iter().map(|d| d.bindings[0].size).collect::<Vec<_>>());
    }
    let mut rng = Rng::new(21);
    let mut g = Graph::new();
    let t = g.input("x", x.clone());
    let y = g.group_norm("gn", t, 4, 1e-5, None, None, true).unwrap();
    g.output(y);
    assert_close(&check_graph(&gpu, g, &[(t, rng.vec(x.numel(), 1.0))]).unwrap(), TOL);
}
