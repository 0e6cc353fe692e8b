//! Winograd convolutions (`kernels/winograd.rs`): the plan's expansion of a 3×3 conv against the conv's
//! CPU twin (direct sums in f64), in both tiles, with and without bias and residual, f32 and f16 weights,
//! and with the GroupNorm before it folded into the input transform.

use std::sync::{Arc, OnceLock};

use wgsd::graph::op::ConvAlgorithm;
use wgsd::kernels::conv2d::{Conv2dOpts, ConvShape};
use wgsd::kernels::winograd::{entries, wgsl_source};
use wgsd::testing::{assert_close, check_graph_kinds, test_gpu, Rng};
use wgsd::{DType, Gpu, GpuOptions, Graph, Param, Plan, TensorDesc};

/// A device whose plans take the Winograd form wherever the shape allows (`ConvAlgorithm::Winograd`).
fn winograd_gpu() -> Arc<Gpu> {
    static GPU: OnceLock<Arc<Gpu>> = OnceLock::new();
    GPU.get_or_init(|| match Gpu::new(&GpuOptions::from_env()) {
        Ok(mut g) => {
            g.conv_algorithm = ConvAlgorithm::Winograd;
            Arc::new(g)
        }
        Err(e) => panic!("GPU tests need a GPU adapter: {e}"),
    })
    .clone()
}

/// The committed shader is the generator's output, valid WGSL with every entry point.
#[test]
fn shader_matches_generator() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/shaders/winograd.wgsl");
    let want = wgsl_source();
    if std::env::var("WGSD_REGEN_SHADERS").is_ok() {
        std::fs::write(path, &want).unwrap();
    }
    let have = std::fs::read_to_string(path).unwrap();
    assert!(have == want, "winograd.wgsl is stale: run WGSD_REGEN_SHADERS=1 cargo test --release --test kernels winograd::shader");
    let module = naga::front::wgsl::parse_str(&have).unwrap_or_else(|e| panic!("{}", e.emit_to_string(&have)));
    // pack2x16float (the f16 weight transform) is core WGSL; naga files it under this capability.
    naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::SHADER_FLOAT16_IN_FLOAT32)
        .validate(&module)
        .unwrap_or_else(|e| panic!("{}", e.emit_to_string(&have)));
    for e in entries() {
        assert!(module.entry_points.iter().any(|m| m.name == e), "winograd.wgsl lacks {e}");
    }
}

/// `(b, cin, h, w, cout, bias, residual)` of a 3×3, padding-1 convolution.
type Case = (usize, usize, usize, usize, usize, bool, bool);

/// One conv per case, all outputs of one graph, with seeded random inputs and weights stored as `wdtype`
/// (the CPU twin reads what the GPU holds: f16 weights rounded).
fn record(gpu: &Arc<Gpu>, cases: &[Case], wdtype: DType) -> (Graph, Vec<(wgsd::TensorId, Vec<f32>)>) {
    let mut rng = Rng::new(5);
    let mut g = Graph::new();
    let mut inputs = Vec::new();
    let o = Conv2dOpts::new(1, 1);
    for (i, &(b, cin, h, w, cout, bias, residual)) in cases.iter().enumerate() {
        let x = g.input(&format!("x{i}"), TensorDesc::f32(&[b, cin, h, w]));
        inputs.push((x, rng.vec(b * cin * h * w, 1.0)));
        let wd = TensorDesc::new(&[cout, cin, 3, 3], wdtype);
        let wv = rng.vec(wd.numel(), 1.0 / ((cin * 9) as f32).sqrt());
        let wt = g.param(&Param::upload(gpu, &format!("w{i}"), wd, &wv, true).unwrap());
        let bias = bias.then(|| {
            let t = g.input(&format!("bias{i}"), TensorDesc::f32(&[cout]));
            inputs.push((t, rng.vec(cout, 1.0)));
            t
        });
        let out = ConvShape::new(&[b, cin, h, w], &[cout, cin, 3, 3], &o).unwrap().out_shape();
        let residual = residual.then(|| {
            let t = g.input(&format!("res{i}"), TensorDesc::f32(&out));
            inputs.push((t, rng.vec(out.iter().product(), 1.0)));
            t
        });
        let y = g.conv2d(&format!("conv{i}"), x, wt, bias, o, residual).unwrap();
        g.output(y);
    }
    (g, inputs)
}

/// Compares every case with the direct CPU twin within `tol` (relative L2) and returns the kinds of the
/// nodes the plan runs.
fn check(gpu: &Arc<Gpu>, cases: &[Case], wdtype: DType, tol: f64) -> Vec<&'static str> {
    let (g, inputs) = record(gpu, cases, wdtype);
    let (cmp, kinds) = check_graph_kinds(gpu, g, &inputs).unwrap();
    assert_close(&cmp, tol);
    kinds
}

fn count(kinds: &[&str], kind: &str) -> usize {
    kinds.iter().filter(|k| **k == kind).count()
}

/// Both tiles (F(4×4) where H and W are multiples of 4, else F(2×2)), every epilogue, one and several
/// images, non-square images, several tiles per row, 4 channels (one vec4) and more.
#[test]
fn forced_winograd_matches_the_direct_convolution() {
    let cases: Vec<Case> = vec![
        (1, 4, 4, 4, 4, false, false),
        (2, 8, 8, 12, 12, true, true),
        (1, 12, 6, 10, 8, true, false),
        (3, 4, 2, 2, 4, false, true),
        (2, 16, 16, 8, 20, true, true),
        (1, 8, 14, 6, 4, false, false),
    ];
    let kinds = check(&winograd_gpu(), &cases, DType::F32, 1e-5);
    assert_eq!(count(&kinds, "conv2d"), 0, "every case should expand: {kinds:?}");
    for k in ["winograd_weights", "winograd_input", "winograd_output", "matmul"] {
        assert_eq!(count(&kinds, k), cases.len(), "{k} in {kinds:?}");
    }
}

/// A new Winograd-forced device with `setup` applied to it.
fn forced_gpu(setup: impl FnOnce(&mut Gpu)) -> Arc<Gpu> {
    match Gpu::new(&GpuOptions::from_env()) {
        Ok(mut g) => {
            g.conv_algorithm = ConvAlgorithm::Winograd;
            setup(&mut g);
            Arc::new(g)
        }
        Err(e) => panic!("GPU tests need a GPU adapter: {e}"),
    }
}

/// A Winograd-forced device whose plans split as if a storage binding held only `bytes` (the device
/// itself allows more, so every smaller binding stays valid).
fn small_binding_gpu(bytes: u64) -> Arc<Gpu> {
    forced_gpu(|g| g.limits.max_storage_buffer_binding_size = bytes)
}

/// A device whose bindings may hold only 16 KiB: V and M of the whole batch do not fit, so each image is
/// done in bands of tile rows (several bands per image, a last band of fewer rows, two images) whose
/// outputs are concatenated.
#[test]
fn bands_when_the_transformed_tensors_exceed_a_binding() {
    let gpu = small_binding_gpu(16 << 10);
    let kinds = check(&gpu, &[(2, 8, 16, 16, 8, true, true)], DType::F32, 1e-5);
    // 4 tile rows per image, 3 per band: 2 bands per image, 2 images.
    assert_eq!(count(&kinds, "winograd_output"), 4, "{kinds:?}");
    assert_eq!(count(&kinds, "concat"), 3, "{kinds:?}");
}

/// A device whose bindings hold 64 KiB: U of 64 input channels is 9 KiB per output channel, so it is made
/// in chunks of 4 output channels, each with its own GEMM, and the output transform writes each chunk's
/// channels (one dispatch per chunk), with a single band and with bands (the chunks then serve every band).
#[test]
fn weight_chunks_when_u_exceeds_a_binding() {
    let gpu = small_binding_gpu(64 << 10);
    let kinds = check(&gpu, &[(1, 64, 4, 4, 12, true, true), (2, 64, 8, 8, 12, true, true)], DType::F16, 1e-5);
    assert_eq!(count(&kinds, "winograd_weights"), 6, "{kinds:?}");
    assert_eq!(count(&kinds, "matmul"), 9, "3 GEMMs for the first conv, 3 per band of the second: {kinds:?}");
    assert_eq!(count(&kinds, "winograd_output"), 3, "{kinds:?}");
}

/// Where the input is read through a scratch texture, the input transform runs in one dispatch per run of
/// images whose x fits the texture window (the textures are shared by every op): three images of 4 KiB
/// under a 9 KiB window are two dispatches (images 0–1, then 2), each binding only its images, and the
/// result matches the twin, also for a tile range that starts inside an image.
#[test]
fn input_windows_split_by_images() {
    use wgsd::graph::op::{DeviceLimits, Lowering, Op};
    use wgsd::kernels::winograd::{WinogradInput, WinogradTile};
    let x = TensorDesc::f32(&[3, 16, 8, 8]);
    let limits = DeviceLimits { max_binding: 1 << 27, offset_align: 256, max_workgroups: 65535, subgroup_min_size: 8, cpu: true, texture_reads: true, max_texture_rows: 8192, texture_window: 9 << 10, conv: Default::default() };
    for (t0, tiles, want) in [(0, None, 2), (3, Some(7), 2), (4, Some(4), 1)] {
        let op = WinogradInput { tile: WinogradTile::F4, t0, tiles, norm: None };
        let out = op.infer(&[&x]).unwrap();
        let ds = op.lower(&Lowering { inputs: std::slice::from_ref(&x), output: &out, limits: &limits }).unwrap();
        assert_eq!(ds.len(), want, "tiles {t0}.. {tiles:?}");
        for d in &ds {
            assert!(d.bindings[0].texture && d.bindings[0].size <= 9 << 10, "{:?}", d.bindings[0]);
        }
        let no_textures = DeviceLimits { texture_reads: false, ..limits };
        assert_eq!(op.lower(&Lowering { inputs: std::slice::from_ref(&x), output: &out, limits: &no_textures }).unwrap().len(), 1);
    }
    let gpu = forced_gpu(|g| g.texture_window = 9 << 10);
    let kinds = check(&gpu, &[(3, 16, 8, 8, 8, true, true)], DType::F32, 1e-5);
    assert_eq!(count(&kinds, "winograd_input"), 1, "{kinds:?}");
}

/// A batch whose V exceeds half a binding (64 KiB bindings here; 32 MiB on real devices) is transformed and
/// multiplied image by image (or in parts of images), one V alive at a time, the output transform reading both images' products
/// (one dispatch per image and U chunk); with U in chunks too (f16 weights, 32 output channels: two chunks of 16).
#[test]
fn image_by_image_when_v_is_large() {
    let gpu = small_binding_gpu(64 << 10);
    // V: 36 · 18 tiles · 16 channels · 4 bytes = 40.5 KiB, over 32 KiB and under a binding.
    let kinds = check(&gpu, &[(2, 16, 12, 12, 8, true, true)], DType::F32, 1e-5);
    assert_eq!(count(&kinds, "winograd_input"), 2, "{kinds:?}");
    assert_eq!(count(&kinds, "winograd_output"), 1, "{kinds:?}");
    assert_eq!(count(&kinds, "concat"), 0, "{kinds:?}");
    let kinds = check(&gpu, &[(2, 16, 12, 12, 32, false, true)], DType::F16, 1e-5);
    assert_eq!(count(&kinds, "winograd_input"), 2, "{kinds:?}");
    assert_eq!(count(&kinds, "matmul"), 4, "{kinds:?}");
    // A batch of one stays whole.
    let kinds = check(&gpu, &[(1, 16, 12, 12, 8, true, false)], DType::F32, 1e-5);
    assert_eq!(count(&kinds, "winograd_input"), 1, "{kinds:?}");
    // An image whose own V exceeds it (36 · 16 tiles · 16 channels · 4 bytes = 36 KiB) goes in halves, each
    // with its own GEMM, into one output transform.
    let kinds = check(&gpu, &[(1, 16, 16, 16, 8, true, true)], DType::F32, 1e-5);
    assert_eq!(count(&kinds, "winograd_input"), 2, "{kinds:?}");
    assert_eq!(count(&kinds, "matmul"), 2, "{kinds:?}");
    assert_eq!(count(&kinds, "winograd_output"), 1, "{kinds:?}");
}

/// The storage-buffer forms of the transforms (what a GPU forced to Winograd runs; lavapipe otherwise reads
/// their inputs through textures), f32 and f16 weights, both tiles.
#[test]
fn buffer_reads_match_the_direct_convolution() {
    let gpu = forced_gpu(|g| g.buffer_reads_only = true);
    let cases: Vec<Case> = vec![(2, 8, 8, 12, 12, true, true), (1, 12, 6, 10, 8, true, false)];
    for dtype in [DType::F32, DType::F16] {
        let kinds = check(&gpu, &cases, dtype, 1e-5);
        assert_eq!(count(&kinds, "winograd_output"), 2, "{kinds:?}");
    }
}

/// f16 weights (widened as they are read; U in f32): as exact as with f32 weights, against the twin given
/// the same rounded weights.
#[test]
fn forced_winograd_with_f16_weights() {
    let cases: Vec<Case> = vec![(2, 8, 8, 12, 12, true, true), (1, 12, 6, 10, 8, true, false)];
    let kinds = check(&winograd_gpu(), &cases, DType::F16, 1e-5);
    assert_eq!(count(&kinds, "winograd_weights"), 2, "{kinds:?}");
}

/// Shapes the kernels cannot take stay direct under the forced setting: odd sizes, channels not in
/// fours.
#[test]
fn unsupported_shapes_stay_direct() {
    let kinds = check(&winograd_gpu(), &[(1, 4, 7, 8, 4, true, false), (1, 6, 8, 8, 4, false, false)], DType::F32, 1e-5);
    assert_eq!(count(&kinds, "conv2d"), 2, "{kinds:?}");
}

/// The automatic choice on this adapter for a UNet-like conv (batch 2, 32×32, f16 weights as the UNet
/// holds them, bias and the resnet's skip add): on CPU adapters with subgroups it is F(4×4), elsewhere the
/// direct kernels; either way the result matches the twin. (conv2d's `sd_shapes_subsampled` runs the
/// real 2×320×64×64 shape the same way.)
#[test]
fn unet_like_shape_under_the_automatic_choice() {
    let gpu = test_gpu();
    let kinds = check(&gpu, &[(2, 64, 32, 32, 64, true, true)], DType::F16, 1e-5);
    let l = wgsd::graph::op::DeviceLimits::from_gpu(&gpu);
    let winograd = l.conv == ConvAlgorithm::Auto && l.cpu && l.subgroup_min_size >= 8;
    assert_eq!(count(&kinds, "winograd_input"), winograd as usize, "{kinds:?}");
}

/// The weight transform alone, f32 and f16 weights, both tiles: U against the CPU twin given what the GPU
/// holds, element by element.
#[test]
fn weight_transform_matches_the_twin() {
    use wgsd::graph::op::Op;
    use wgsd::kernels::winograd::{WinogradTile, WinogradWeights};
    let gpu = winograd_gpu();
    let mut rng = Rng::new(11);
    for dtype in [DType::F32, DType::F16] {
        for tile in [WinogradTile::F2, WinogradTile::F4] {
            let wd = TensorDesc::new(&[12, 16, 3, 3], dtype);
            let wv = rng.vec(wd.numel(), 0.3);
            let p = Param::upload(&gpu, "w", wd.clone(), &wv, true).unwrap();
            let held = p.read(&gpu).unwrap(); // what the GPU holds (f16-rounded weights)
            let mut g = Graph::new();
            let w = g.param(&p);
            let u = g.op("u", WinogradWeights { tile, co0: 0, count: None }, &[w]).unwrap();
            g.output(u);
            let ud = g.desc(u).clone();
            let plan = Plan::new(gpu.clone(), g).unwrap();
            plan.run().unwrap();
            let got = plan.read(u).unwrap();
            let want = WinogradWeights { tile, co0: 0, count: None }.cpu(&[&held], &[&wd], &ud);
            assert_eq!(ud.dtype, DType::F32);
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert!((g - w).abs() <= 1e-6 * w.abs() + 1e-7, "{dtype:?} {tile:?} U[{i}]: {g} vs {w}");
            }
        }
    }
}

/// `(b, c, h, w, groups, silu, affine)` of a GroupNorm feeding a 3×3 conv of `c` → 8 channels (bias and
/// residual).
type NormCase = (usize, usize, usize, usize, usize, bool, bool);

/// One GroupNorm → conv per case; with `also_read`, the normalised tensor is a graph output too.
fn record_normed(gpu: &Arc<Gpu>, cases: &[NormCase], also_read: bool) -> (Graph, Vec<(wgsd::TensorId, Vec<f32>)>) {
    let mut rng = Rng::new(9);
    let mut g = Graph::new();
    let mut inputs = Vec::new();
    let input = |g: &mut Graph, inputs: &mut Vec<_>, rng: &mut Rng, name: String, shape: &[usize], scale: f32, offset: f32| {
        let t = g.input(&name, TensorDesc::f32(shape));
        inputs.push((t, rng.vec(shape.iter().product(), scale).iter().map(|v| v + offset).collect::<Vec<f32>>()));
        t
    };
    for (i, &(b, c, h, w, groups, silu, affine)) in cases.iter().enumerate() {
        // An offset mean, as activations have: the statistics must remove it.
        let x = input(&mut g, &mut inputs, &mut rng, format!("x{i}"), &[b, c, h, w], 2.0, 0.7);
        let nw = affine.then(|| input(&mut g, &mut inputs, &mut rng, format!("gamma{i}"), &[c], 0.5, 1.0));
        let nb = affine.then(|| input(&mut g, &mut inputs, &mut rng, format!("beta{i}"), &[c], 0.5, 0.0));
        let n = g.group_norm(&format!("norm{i}"), x, groups, 1e-5, nw, nb, silu).unwrap();
        if also_read {
            g.output(n);
        }
        let wd = TensorDesc::f32(&[8, c, 3, 3]);
        let wt = g.param(&Param::upload(gpu, &format!("w{i}"), wd.clone(), &rng.vec(wd.numel(), 1.0 / ((c * 9) as f32).sqrt()), true).unwrap());
        let bias = input(&mut g, &mut inputs, &mut rng, format!("bias{i}"), &[8], 1.0, 0.0);
        let res = input(&mut g, &mut inputs, &mut rng, format!("res{i}"), &[b, 8, h, w], 1.0, 0.0);
        let y = g.conv2d(&format!("conv{i}"), n, wt, Some(bias), Conv2dOpts::new(1, 1), Some(res)).unwrap();
        g.output(y);
    }
    (g, inputs)
}

/// A GroupNorm whose only reader is a Winograd conv is applied by the input transform as it loads (no
/// `group_norm` node runs, its statistics still do): both tiles, SiLU or not, with and without the affine,
/// groups of 3 channels (a vec4 of channels spans two groups) and of 4, one and two images, against the
/// twins of the recorded GroupNorm and conv. Also through buffers (what a GPU forced to Winograd runs).
#[test]
fn group_norm_folds_into_the_input_transform() {
    let cases: Vec<NormCase> = vec![
        (2, 12, 8, 8, 4, true, true),
        (1, 12, 6, 10, 4, false, true),
        (2, 16, 8, 12, 4, true, false),
        (1, 8, 4, 4, 2, false, false),
    ];
    for gpu in [winograd_gpu(), forced_gpu(|g| g.buffer_reads_only = true)] {
        let (g, inputs) = record_normed(&gpu, &cases, false);
        let (cmp, kinds) = check_graph_kinds(&gpu, g, &inputs).unwrap();
        assert_close(&cmp, 1e-5);
        assert_eq!(count(&kinds, "group_norm"), 0, "every norm should fold: {kinds:?}");
        assert_eq!(count(&kinds, "group_norm_stats"), cases.len(), "{kinds:?}");
        assert_eq!(count(&kinds, "winograd_input"), cases.len(), "{kinds:?}");
    }
}

/// The folded norm's output tensor, which no node writes any more, gets no buffer: the plan's own buffers
/// are the graph's inputs and outputs only.
#[test]
fn folded_group_norm_output_has_no_buffer() {
    let gpu = winograd_gpu();
    let (g, inputs) = record_normed(&gpu, &[(2, 12, 8, 8, 4, true, true)], false);
    let plan = Plan::new(gpu, g).unwrap();
    let owned = |bytes: usize| (bytes as u64).next_multiple_of(16);
    let want: u64 = inputs.iter().map(|(_, v)| owned(v.len() * 4)).sum::<u64>() + owned(2 * 8 * 8 * 8 * 4);
    assert_eq!(plan.memory().inputs_outputs, want);
}

/// The folded norm where the input transform is split: image by image and in bands (64 KiB and 16 KiB
/// bindings), and through texture windows of a few images.
#[test]
fn folded_group_norm_in_split_transforms() {
    for (gpu, want_inputs) in [(small_binding_gpu(64 << 10), 2), (small_binding_gpu(16 << 10), 4), (forced_gpu(|g| g.texture_window = 9 << 10), 1)] {
        let (g, inputs) = record_normed(&gpu, &[(2, 16, 12, 12, 4, true, true)], false);
        let (cmp, kinds) = check_graph_kinds(&gpu, g, &inputs).unwrap();
        assert_close(&cmp, 1e-5);
        assert_eq!(count(&kinds, "group_norm"), 0, "{kinds:?}");
        assert_eq!(count(&kinds, "winograd_input"), want_inputs, "{kinds:?}");
    }
}

/// Where anything else reads the normalised tensor (here: it is a graph output), the GroupNorm runs as
/// its own node and both results are right; a norm before a conv the device computes directly (an odd
/// size) stays too.
#[test]
fn group_norm_stays_where_it_is_read_elsewhere() {
    let gpu = winograd_gpu();
    let (g, inputs) = record_normed(&gpu, &[(1, 12, 8, 8, 4, true, true)], true);
    let (cmp, kinds) = check_graph_kinds(&gpu, g, &inputs).unwrap();
    assert_close(&cmp, 1e-5);
    assert_eq!((count(&kinds, "group_norm"), count(&kinds, "winograd_input")), (1, 1), "{kinds:?}");
    let (g, inputs) = record_normed(&gpu, &[(1, 8, 7, 8, 4, true, true)], false);
    let (cmp, kinds) = check_graph_kinds(&gpu, g, &inputs).unwrap();
    assert_close(&cmp, 1e-5);
    assert_eq!((count(&kinds, "group_norm"), count(&kinds, "conv2d")), (1, 1), "{kinds:?}");
}

/// A normalising input transform given statistics of the wrong shape, no groups, or a weight of the wrong
/// length is refused with an error naming the op, not a panic.
#[test]
fn normalising_input_transform_checks_its_inputs() {
    use wgsd::graph::op::Op;
    use wgsd::kernels::norm::GnLayout;
    use wgsd::kernels::winograd::{InputNorm, WinogradInput, WinogradTile};
    let x = TensorDesc::f32(&[1, 8, 4, 4]);
    let c = TensorDesc::f32(&[8]);
    let norm = |groups| InputNorm { groups, eps: 1e-5, silu: true, has_weight: true, has_bias: false };
    let op = |groups| WinogradInput { tile: WinogradTile::F4, t0: 0, tiles: None, norm: Some(norm(groups)) };
    let stats = GnLayout::new(&x, 2).stats_desc();
    assert!(op(2).infer(&[&x, &stats, &c]).is_ok());
    let short = TensorDesc::f32(&[7]);
    for (groups, inputs) in [(4, vec![&x, &stats, &c]), (0, vec![&x, &stats, &c]), (3, vec![&x, &stats, &c]), (2, vec![&x, &stats, &short]), (2, vec![&x, &stats])] {
        let err = op(groups).infer(&inputs).expect_err("bad norm inputs accepted").to_string();
        assert!(err.contains("winograd_input"), "{err}");
    }
}
