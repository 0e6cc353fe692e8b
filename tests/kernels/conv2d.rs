use std::sync::Arc;

use wgsd::graph::op::{DeviceLimits, Lowering, Op, Slot};
use wgsd::kernels::conv2d::{conv2d_cpu_at, select_kernel, wgsl_source, Conv2d, Conv2dOpts, ConvShape, KERNELS};
use wgsd::testing::{assert_close, check_graph, max_abs, rel_l2, test_gpu, test_gpu_buffer_reads, Rng};
use wgsd::{DType, Gpu, Graph, Param, Plan, TensorDesc};

const TOL: f64 = 1e-5;

/// One convolution: x `[b, cin, h, w]`, weight `[cout, cin, k.0, k.1]`.
#[derive(Clone, Copy)]
struct Case {
    b: usize,
    cin: usize,
    h: usize,
    w: usize,
    cout: usize,
    k: (usize, usize),
    opts: Conv2dOpts,
    bias: bool,
    residual: bool,
}

impl Case {
    fn shape(&self) -> ConvShape {
        ConvShape::new(&[self.b, self.cin, self.h, self.w], &[self.cout, self.cin, self.k.0, self.k.1], &self.opts).unwrap()
    }
    fn name(&self) -> String {
        let o = &self.opts;
        format!(
            "{}x{}x{}x{}->{} k{}x{} s{} pad {:?}{}{}",
            self.b,
            self.cin,
            self.h,
            self.w,
            self.cout,
            self.k.0,
            self.k.1,
            o.stride,
            [o.pad_top, o.pad_bottom, o.pad_left, o.pad_right],
            if self.bias { " +bias" } else { "" },
            if self.residual { " +res" } else { "" }
        )
    }
}

#[allow(clippy::too_many_arguments)]
fn case(b: usize, cin: usize, h: usize, w: usize, cout: usize, k: usize, opts: Conv2dOpts, bias: bool, residual: bool) -> Case {
    Case { b, cin, h, w, cout, k: (k, k), opts, bias, residual }
}

/// Sizes that are not multiples of any tile: odd and prime dims, 1×1, stride 2 with odd sizes, asymmetric
/// and oversized padding, batch 2, bias and residual on and off.
fn awkward_cases() -> Vec<Case> {
    let p1 = Conv2dOpts::new(1, 1);
    let p0 = Conv2dOpts::default();
    let up = Conv2dOpts::upsample2x();
    vec![
        case(1, 3, 7, 5, 13, 3, p1, true, false),
        case(2, 5, 13, 11, 7, 3, p1, false, true),
        case(1, 13, 17, 19, 3, 3, p1, true, true),
        case(2, 4, 16, 16, 5, 3, p1, true, true),
        // Just over one tile in channels and pixels.
        case(1, 11, 16, 17, 19, 3, p1, true, true),
        case(2, 9, 9, 37, 33, 3, p1, true, false),
        case(1, 3, 3, 3, 5, 3, p0, true, false),
        case(1, 2, 1, 1, 3, 3, p1, true, false),
        case(1, 3, 8, 9, 4, 3, Conv2dOpts::asymmetric(1, 2, 0, 1, 3), true, true),
        case(2, 7, 9, 10, 17, 1, p0, true, false),
        case(1, 1, 1, 1, 1, 1, p0, false, false),
        // 1×1 with H·W and Cin multiples of 4 (the CPU pointwise kernels): a partial channel tile, two
        // channel tiles, fewer pixels than a tile, a residual.
        case(2, 8, 6, 6, 19, 1, p0, true, true),
        case(1, 12, 4, 5, 70, 1, p0, true, false),
        case(3, 4, 7, 4, 130, 1, p0, false, true),
        // ... and 140 pixels: two whole 64-pixel tiles and a partial one.
        case(2, 8, 10, 14, 40, 1, p0, true, true),
        // Stride 2 with odd sizes (diffusers' Downsample2D: stride 2, padding 1).
        case(1, 5, 13, 11, 7, 3, Conv2dOpts::new(2, 1), true, false),
        case(2, 3, 7, 9, 13, 3, Conv2dOpts::new(2, 1), false, true),
        case(1, 6, 10, 10, 3, 1, Conv2dOpts::new(2, 0), true, false),
        // The VAE encoder's downsample: pad (0, 1, 0, 1), then stride 2 without padding.
        case(1, 7, 13, 12, 5, 3, Conv2dOpts::asymmetric(2, 0, 1, 0, 1), true, false),
        Case { b: 1, cin: 5, h: 9, w: 8, cout: 6, k: (2, 3), opts: Conv2dOpts::asymmetric(1, 1, 0, 0, 2), bias: true, residual: false },
        Case { b: 2, cin: 3, h: 6, w: 11, cout: 7, k: (1, 3), opts: Conv2dOpts::new(2, 1), bias: false, residual: true },
        // Widths of whole 32-column groups: the CPU kernel with vec4 window rows (one group, two groups with
        // rows not a multiple of 4, no right padding and no top padding).
        case(2, 5, 7, 32, 11, 3, p1, true, true),
        case(1, 3, 5, 64, 9, 3, p1, true, false),
        case(1, 4, 6, 32, 5, 3, Conv2dOpts::asymmetric(1, 0, 2, 1, 0), true, true),
        // Planes 16, 8 and 4 wide: several rows of patches per workgroup of the vec-rows kernel, the last
        // workgroup partly past the image.
        case(2, 5, 7, 16, 11, 3, p1, true, true),
        case(1, 9, 13, 8, 10, 3, p1, true, false),
        case(1, 3, 9, 4, 4, 3, p1, false, true),
        // 3 images of 4 patches each: a workgroup holds patches of two images.
        case(3, 4, 8, 8, 9, 3, p1, true, true),
        // Nearest 2× upsampling fused into the conv: odd sizes, batch 2 with a residual, a 1×1 input, and
        // widths of whole 32-column groups (the vec-rows kernel), more than 8 output channels.
        case(1, 3, 5, 7, 6, 3, up, true, false),
        case(2, 5, 4, 9, 11, 3, up, true, true),
        case(1, 2, 1, 1, 3, 3, up, true, false),
        case(1, 4, 3, 32, 9, 3, up, true, false),
        case(2, 3, 5, 64, 5, 3, up, false, true),
        case(2, 3, 5, 16, 9, 3, up, true, true),
        case(1, 4, 3, 8, 5, 3, up, true, false),
    ]
}

/// Records every case as an output of one graph (forcing `kernel` when given) and compares each with the
/// CPU twin.
fn check_cases(gpu: &Arc<Gpu>, cases: &[Case], kernel: Option<usize>, seed: u64) {
    check_cases_stored(gpu, cases, kernel, seed, DType::F32);
}

/// [`check_cases`] with the weights stored as `wdtype`. The CPU twin gets what the GPU holds (for f16, the
/// weights rounded to half precision), so both sides multiply the same numbers and must agree to f32
/// rounding: any misread half (wrong word, wrong half, padding) is far outside the tolerance.
fn check_cases_stored(gpu: &Arc<Gpu>, cases: &[Case], kernel: Option<usize>, seed: u64, wdtype: DType) {
    let mut rng = Rng::new(seed);
    let mut g = Graph::new();
    let mut inputs = Vec::new();
    for (i, c) in cases.iter().enumerate() {
        let s = c.shape();
        let x = g.input(&format!("x{i}"), TensorDesc::f32(&[c.b, c.cin, c.h, c.w]));
        inputs.push((x, rng.vec(c.b * c.cin * c.h * c.w, 1.0)));
        // Weights as params, as the model holds them.
        let wd = TensorDesc::new(&[c.cout, c.cin, c.k.0, c.k.1], wdtype);
        let wv = rng.vec(wd.numel(), 1.0 / ((c.cin * c.k.0 * c.k.1) as f32).sqrt());
        let w = g.param(&Param::upload(gpu, &format!("w{i}"), wd, &wv, true).unwrap());
        let mut ins = vec![x, w];
        if c.bias {
            let t = g.input(&format!("bias{i}"), TensorDesc::f32(&[c.cout]));
            inputs.push((t, rng.vec(c.cout, 1.0)));
            ins.push(t);
        }
        if c.residual {
            let t = g.input(&format!("res{i}"), TensorDesc::f32(&s.out_shape()));
            inputs.push((t, rng.vec(s.out_shape().iter().product(), 1.0)));
            ins.push(t);
        }
        let name = format!("conv{i} {}", c.name());
        let y = match kernel {
            None => {
                let bias = c.bias.then(|| ins[2]);
                let residual = c.residual.then(|| ins[ins.len() - 1]);
                g.conv2d(&name, x, w, bias, c.opts, residual).unwrap()
            }
            Some(k) => {
                let op = Conv2d { kernel: Some(k), ..Conv2d::new(c.opts, c.bias, c.residual) };
                g.op(&name, op, &ins).unwrap()
            }
        };
        assert_eq!(g.shape(y), s.out_shape());
        g.output(y);
    }
    assert_close(&check_graph(gpu, g, &inputs).unwrap(), TOL);
}

/// The committed shaders are the generator's output. `WGSD_REGEN_SHADERS=1` rewrites them.
#[test]
fn shaders_match_generator() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/shaders/");
    for (file, subgroup) in [("conv2d.wgsl", false), ("conv2d_subgroup.wgsl", true)] {
        let want = wgsl_source(subgroup);
        let path = format!("{dir}{file}");
        if std::env::var("WGSD_REGEN_SHADERS").is_ok() {
            std::fs::write(&path, &want).unwrap();
        }
        let have = std::fs::read_to_string(&path).unwrap();
        assert!(have == want, "{file} is stale: run WGSD_REGEN_SHADERS=1 cargo test --release --test kernels conv2d::shaders");
        let module = naga::front::wgsl::parse_str(&have).unwrap_or_else(|e| panic!("{file}: {}", e.emit_to_string(&have)));
        let caps = if subgroup { naga::valid::Capabilities::SUBGROUP } else { naga::valid::Capabilities::empty() };
        naga::valid::Validator::new(naga::valid::ValidationFlags::all(), caps)
            .subgroup_stages(naga::valid::ShaderStages::COMPUTE)
            .subgroup_operations(naga::valid::SubgroupOperationSet::all())
            .validate(&module)
            .unwrap_or_else(|e| panic!("{file}: {} {:?}", e.emit_to_string(&have), e));
        for k in KERNELS.iter().filter(|k| k.subgroup == subgroup) {
            assert!(module.entry_points.iter().any(|e| e.name == k.entry), "{file} lacks {}", k.entry);
        }
    }
}

/// The kernel the graph builder picks, on every awkward case.
#[test]
fn awkward_sizes() {
    check_cases(&test_gpu(), &awkward_cases(), None, 1);
}

/// Every kernel variant (portable and subgroup, CPU and GPU tiles) on the awkward cases it can compute, so
/// the variants other adapters would pick are tested here too.
#[test]
fn awkward_sizes_every_kernel() {
    let gpu = test_gpu();
    for (i, k, cases) in awkward_cases_per_kernel(&gpu) {
        println!("{} ({}): {} cases", k.entry, if k.subgroup { "subgroup" } else { "portable" }, cases.len());
        check_cases(&gpu, &cases, Some(i), 10 + i as u64);
    }
}

/// Each kernel variant this adapter can run (its index and entry) with the awkward cases it handles.
fn awkward_cases_per_kernel(gpu: &wgsd::gpu::Gpu) -> Vec<(usize, &'static wgsd::kernels::conv2d::Kernel, Vec<Case>)> {
    let limits = DeviceLimits::from_gpu(gpu);
    let mut out = Vec::new();
    for (i, k) in KERNELS.iter().enumerate() {
        if k.subgroup && limits.subgroup_min_size < 8 {
            println!("{}: skipped, this adapter has no subgroups of 8+ lanes", k.entry);
            continue;
        }
        out.push((i, k, awkward_cases().into_iter().filter(|c| k.handles(&c.shape(), &c.opts)).collect()));
    }
    out
}

/// On CPU adapters the subgroup kernels read x and the weights through textures (the shared test GPU);
/// these are the same kernels reading storage buffers, f32 and f16 weights, on the awkward cases.
#[test]
fn every_kernel_reading_buffers() {
    let gpu = test_gpu_buffer_reads();
    assert!(!DeviceLimits::from_gpu(&gpu).texture_reads);
    for (i, _, cases) in awkward_cases_per_kernel(&gpu) {
        check_cases(&gpu, &cases, Some(i), 70 + i as u64);
        check_cases_stored(&gpu, &cases, Some(i), 80 + i as u64, DType::F16);
    }
}

/// Which dispatches read through textures: the subgroup kernels' x and weights where the adapter reads
/// textures and the bound ranges start on whole texels, nothing on other adapters. (The other tests run
/// these lowerings on the GPU: lavapipe reads textures.)
#[test]
fn texture_reads_where_the_adapter_wants_them() {
    let base = DeviceLimits { max_binding: 64 << 10, offset_align: 256, max_workgroups: 65535, subgroup_min_size: 8, cpu: true, texture_reads: true, max_texture_rows: 8192, texture_window: 16 << 20, conv: Default::default() };
    let c = case(2, 97, 20, 19, 59, 3, Conv2dOpts::new(1, 1), true, true);
    let op = Conv2d::new(c.opts, true, true);
    let s = c.shape();
    let descs = [TensorDesc::f32(&[c.b, c.cin, c.h, c.w]), TensorDesc::f32(&[c.cout, c.cin, 3, 3]), TensorDesc::f32(&[c.cout]), TensorDesc::f32(&s.out_shape())];
    let out = TensorDesc::f32(&s.out_shape());
    let lower = |l: &DeviceLimits| op.lower(&Lowering { inputs: &descs, output: &out, limits: l }).unwrap();
    let with = lower(&base);
    assert!(with.len() > 1, "the small binding limit splits this conv");
    for d in &with {
        let tex: Vec<bool> = d.bindings.iter().map(|b| b.texture).collect();
        assert_eq!(tex, [true, true, false, false, false], "{}", d.entry);
        assert!(d.shader.name.ends_with(".tex"), "{}", d.shader.name);
    }
    for l in [DeviceLimits { texture_reads: false, ..base.clone() }, DeviceLimits { cpu: false, texture_reads: false, ..base.clone() }] {
        assert!(lower(&l).iter().all(|d| d.bindings.iter().all(|b| !b.texture) && !d.shader.name.ends_with(".tex")));
    }
    // A range larger than a texture may hold (here every range: the bindings are up to 64 KiB, one row of
    // f32 texels, and the texture may have none) stays a buffer binding.
    let small = DeviceLimits { max_texture_rows: 0, ..base };
    assert!(lower(&small).iter().all(|d| !d.bindings[0].texture));
}

/// Weights read through a scratch texture are bound in windows of output channels no larger than the
/// device's texture window (2 KiB here, so most awkward cases split, batch-2 ones too), and x in windows of
/// images (one image at least): every subgroup kernel, f32 and f16 weights, against the CPU twin.
#[test]
fn texture_windows_split_the_weights() {
    let gpu = match Gpu::new(&wgsd::GpuOptions::from_env()) {
        Ok(mut g) => {
            g.texture_window = 2 << 10;
            Arc::new(g)
        }
        Err(e) => panic!("GPU tests need a GPU adapter: {e}"),
    };
    // An adapter that reads storage buffers has no scratch textures, hence no windows: one dispatch.
    let limits = DeviceLimits::from_gpu(&gpu);
    let c = case(2, 9, 9, 37, 33, 3, Conv2dOpts::new(1, 1), true, true);
    let descs = [TensorDesc::f32(&[2, 9, 9, 37]), TensorDesc::f32(&[33, 9, 3, 3]), TensorDesc::f32(&[33]), TensorDesc::f32(&c.shape().out_shape())];
    let ds = Conv2d::new(c.opts, true, true).lower(&Lowering { inputs: &descs, output: &descs[3], limits: &limits }).unwrap();
    // 33 rows of 324 bytes, at most 6 per 2 KiB window: 6 windows, for each of the 2 images (11988 bytes).
    assert_eq!(ds.len(), if limits.texture_reads { 12 } else { 1 });
    assert!(ds.iter().all(|d| d.bindings[1].texture == limits.texture_reads && (!d.bindings[1].texture || d.bindings[1].size <= 2 << 10)), "{ds:?}");
    let image = (9 * 9 * 37 * 4) as u64;
    assert!(ds.iter().all(|d| !limits.texture_reads || d.bindings[0].size <= image.next_multiple_of(256) + 256), "{ds:?}");
    for (i, k, cases) in awkward_cases_per_kernel(&gpu) {
        if k.subgroup {
            check_cases(&gpu, &cases, Some(i), 90 + i as u64);
            check_cases_stored(&gpu, &cases, Some(i), 100 + i as u64, DType::F16);
        }
    }
}

/// Every kernel variant reading f16 weights (`shaders/conv2d*.f16w`), on the awkward cases: odd weight
/// counts end in a padding half, odd rows start mid-word.
#[test]
fn f16_weights_every_kernel() {
    let gpu = test_gpu();
    for (i, k, cases) in awkward_cases_per_kernel(&gpu) {
        println!("{} f16 weights: {} cases", k.entry, cases.len());
        check_cases_stored(&gpu, &cases, Some(i), 40 + i as u64, DType::F16);
    }
}

/// Weights split over several bindings keep their element shifts in f16: each dispatch's weight binding
/// starts on an aligned word at or before its first output channel's row, `w_shift` elements before it.
#[test]
fn f16_weight_splits_address_the_right_rows() {
    let limits = DeviceLimits { max_binding: 64 << 10, offset_align: 256, max_workgroups: 65535, subgroup_min_size: 8, cpu: true, texture_reads: false, max_texture_rows: 0, texture_window: 16 << 20, conv: Default::default() };
    let c = case(2, 97, 20, 19, 59, 3, Conv2dOpts::new(1, 1), true, true);
    let s = c.shape();
    let out = TensorDesc::f32(&s.out_shape());
    let ins = vec![
        TensorDesc::f32(&[c.b, c.cin, c.h, c.w]),
        TensorDesc::new(&[c.cout, c.cin, 3, 3], DType::F16),
        TensorDesc::f32(&[c.cout]),
        out.clone(),
    ];
    let op = Conv2d::new(c.opts, true, true);
    let ds = op.lower(&Lowering { inputs: &ins, output: &out, limits: &limits }).unwrap();
    let word = |d: &wgsd::graph::op::Dispatch, at: usize| u32::from_le_bytes(d.params[at..at + 4].try_into().unwrap());
    let mut rows = std::collections::BTreeSet::new();
    for d in &ds {
        assert!(d.shader.name.ends_with(".f16w"), "{} does not read f16 weights", d.shader.name);
        let w = &d.bindings[1];
        assert_eq!(w.offset % limits.offset_align, 0);
        assert_eq!(w.size % 4, 0, "bindings are whole words");
        // Params: w_shift is field 14; the first weight element of the dispatch is at byte offset + 2·w_shift.
        let first = (w.offset + 2 * word(d, 14 * 4) as u64) / 2;
        assert_eq!(first % s.k() as u64, 0, "the binding's first row starts at a whole output channel");
        assert!(w.offset + w.size <= ins[1].bytes().next_multiple_of(4));
        rows.insert(first / s.k() as u64);
    }
    assert!(rows.len() > 1, "the case must split the weights over output-channel ranges");
}

/// Runs `x → conv → out` with random data, compares `samples` outputs (plus the four corners of every
/// sampled channel's plane) with the CPU twin, and returns (rel L2, max abs error).
fn check_subsampled(gpu: &Arc<Gpu>, c: &Case, samples: usize, seed: u64) -> (f64, f64) {
    let s = c.shape();
    let mut rng = Rng::new(seed);
    let mut g = Graph::new();
    let x = g.input("x", TensorDesc::f32(&[c.b, c.cin, c.h, c.w]));
    let wd = TensorDesc::f32(&[c.cout, c.cin, c.k.0, c.k.1]);
    let wv = rng.vec(wd.numel(), 1.0 / ((c.cin * c.k.0 * c.k.1) as f32).sqrt());
    let w = g.param(&Param::upload(gpu, "w", wd, &wv, false).unwrap());
    let bv = rng.vec(c.cout, 1.0);
    let bias = c.bias.then(|| g.param(&Param::upload(gpu, "bias", TensorDesc::f32(&[c.cout]), &bv, false).unwrap()));
    let out_n: usize = s.out_shape().iter().product();
    let residual = c.residual.then(|| g.input("res", TensorDesc::f32(&s.out_shape())));
    let y = g.conv2d("conv", x, w, bias, c.opts, residual).unwrap();
    g.output(y);
    let plan = Plan::new(gpu.clone(), g).unwrap();
    let xv = rng.vec(c.b * c.cin * c.h * c.w, 1.0);
    plan.write(x, &xv).unwrap();
    let rv = residual.map(|r| {
        let v = rng.vec(out_n, 1.0);
        plan.write(r, &v).unwrap();
        v
    });
    plan.run().unwrap();
    let got = plan.read(y).unwrap();
    let ohw = s.oh * s.ow;
    let mut at: Vec<usize> = (0..samples).map(|_| (rng.next_u64() % out_n as u64) as usize).collect();
    for k in 0..8.min(s.b * s.cout) {
        let plane = (rng.next_u64() % (s.b * s.cout) as u64) as usize * ohw;
        at.extend([plane, plane + s.ow - 1, plane + ohw - s.ow, plane + ohw - 1, plane + (k * 7919) % ohw]);
    }
    let want = conv2d_cpu_at(&s, &c.opts, &xv, &wv, c.bias.then_some(&bv[..]), rv.as_deref(), &at);
    let got: Vec<f32> = at.iter().map(|&i| got[i]).collect();
    let (r, m) = (rel_l2(&got, &want), max_abs(&got, &want));
    println!("{}: {} outputs sampled, rel_l2 {r:.3e} max_abs {m:.3e}", c.name(), at.len());
    assert!(r <= TOL && r.is_finite(), "{}: relative L2 {r:.3e}", c.name());
    (r, m)
}

/// Real SD 1.5 shapes: a UNet resnet conv at 64×64 latents with the skip add fused (batch 2 for CFG), the
/// 1×1 shortcut, and Downsample2D. The CPU twin checks a subsample of the outputs.
#[test]
fn sd_shapes_subsampled() {
    let gpu = test_gpu();
    check_subsampled(&gpu, &case(2, 320, 64, 64, 320, 3, Conv2dOpts::new(1, 1), true, true), 3000, 2);
    check_subsampled(&gpu, &case(2, 640, 32, 32, 320, 1, Conv2dOpts::default(), true, false), 3000, 3);
    check_subsampled(&gpu, &case(2, 320, 64, 64, 320, 3, Conv2dOpts::new(2, 1), true, false), 3000, 4);
}

/// The VAE decoder's activations at 512×512 are 1×256×512×512 f32 = 256 MiB, over lavapipe's 128 MiB
/// binding limit: the input is split into channel ranges that accumulate into the output.
#[test]
fn input_over_binding_limit() {
    let gpu = test_gpu();
    let c = case(1, 256, 512, 512, 8, 3, Conv2dOpts::new(1, 1), true, true);
    let lim = DeviceLimits::from_gpu(&gpu);
    assert!(TensorDesc::f32(&[1, 256, 512, 512]).bytes() > lim.max_binding, "the input must not fit one binding");
    check_subsampled(&gpu, &c, 4000, 5);
    // The VAE decoder's 1×1 shortcut at 512² (fewer output channels): the pointwise kernel accumulates too.
    let c = case(1, 256, 512, 512, 40, 1, Conv2dOpts::default(), true, false);
    check_subsampled(&gpu, &c, 4000, 7);
}

/// An output (and residual) over the binding limit: output channels are split.
#[test]
fn output_over_binding_limit() {
    let gpu = test_gpu();
    let c = case(1, 8, 512, 512, 256, 3, Conv2dOpts::new(1, 1), true, true);
    assert!(TensorDesc::f32(&c.shape().out_shape()).bytes() > DeviceLimits::from_gpu(&gpu).max_binding);
    check_subsampled(&gpu, &c, 4000, 6);
}

/// Splitting without a GPU: under tiny limits every binding fits and is aligned, each output range gets
/// exactly one dispatch that writes it first and the others accumulate, and the input ranges of each
/// output range cover every input channel of its image once.
#[test]
fn splits_fit_small_limits() {
    let limits = DeviceLimits { max_binding: 64 << 10, offset_align: 256, max_workgroups: 65535, subgroup_min_size: 8, cpu: true, texture_reads: false, max_texture_rows: 0, texture_window: 16 << 20, conv: Default::default() };
    for (c, opts) in [
        (case(2, 97, 20, 19, 59, 3, Conv2dOpts::new(1, 1), true, true), "3x3"),
        (case(1, 50, 30, 30, 40, 1, Conv2dOpts::default(), false, true), "1x1"),
        (case(3, 29, 33, 31, 70, 3, Conv2dOpts::new(2, 1), true, false), "s2"),
    ] {
        let s = c.shape();
        let x = TensorDesc::f32(&[c.b, c.cin, c.h, c.w]);
        let w = TensorDesc::f32(&[c.cout, c.cin, c.k.0, c.k.1]);
        let out = TensorDesc::f32(&s.out_shape());
        let mut ins = vec![x.clone(), w.clone()];
        if c.bias {
            ins.push(TensorDesc::f32(&[c.cout]));
        }
        if c.residual {
            ins.push(out.clone());
        }
        let op = Conv2d::new(c.opts, c.bias, c.residual);
        let refs: Vec<&TensorDesc> = ins.iter().collect();
        assert_eq!(op.infer(&refs).unwrap(), out);
        let ds = op.lower(&Lowering { inputs: &ins, output: &out, limits: &limits }).unwrap();
        assert!(x.bytes() > limits.max_binding && out.bytes() > limits.max_binding, "{opts}: case must need splitting");
        let flags = |d: &wgsd::graph::op::Dispatch| u32::from_le_bytes(d.params[80..84].try_into().unwrap());
        let mut out_ranges: Vec<(u64, u64)> = Vec::new();
        for d in &ds {
            for b in &d.bindings {
                assert!(b.size <= limits.max_binding, "{opts}: binding {:?} of {} bytes", b.slot, b.size);
                assert_eq!(b.offset % limits.offset_align, 0, "{opts}: unaligned binding");
            }
            assert!(d.workgroups.iter().all(|&n| n >= 1 && n <= limits.max_workgroups));
            let o = d.bindings.iter().find(|b| b.slot == Slot::Output).unwrap();
            let range = (o.offset, o.size);
            let first = !out_ranges.contains(&range);
            assert_eq!(flags(d) & 4 == 0, first, "{opts}: only the first dispatch of an output range overwrites it");
            if first {
                out_ranges.push(range);
            }
        }
        // Each output range's input bindings cover the image's channels: total bound input elements per
        // output range ≥ one image (ranges may overlap by alignment slack only).
        let image = (c.cin * c.h * c.w) as u64 * 4;
        for r in &out_ranges {
            let bound: u64 = ds
                .iter()
                .filter(|d| d.bindings.iter().any(|b| b.slot == Slot::Output && (b.offset, b.size) == *r))
                .map(|d| d.bindings[0].size)
                .sum();
            assert!(bound >= image && bound < image + 1024 * ds.len() as u64, "{opts}: inputs bound {bound} of {image}");
        }
        println!("{opts}: {} dispatches, {} output ranges", ds.len(), out_ranges.len());
        assert!(out_ranges.len() > c.b, "{opts}: output channels must be split too");
        assert!(ds.len() > out_ranges.len(), "{opts}: input channels must be split too");
    }
}

/// Tensors start aligned, so channel planes whose bytes are a multiple of the offset alignment bind up to
/// the limit itself: a tensor of exactly `max_binding` bytes is one dispatch, and one plane more splits into
/// chunks that fill the limit. Planes of an unaligned size keep the slack.
#[test]
fn aligned_planes_fill_the_binding_limit() {
    let limits = DeviceLimits { max_binding: 64 << 10, offset_align: 256, max_workgroups: 65535, subgroup_min_size: 8, cpu: true, texture_reads: false, max_texture_rows: 0, texture_window: 16 << 20, conv: Default::default() };
    let dispatches = |cin: usize, h: usize, w: usize| {
        let x = TensorDesc::f32(&[1, cin, h, w]);
        let wt = TensorDesc::f32(&[8, cin, 3, 3]);
        let out = TensorDesc::f32(&[1, 8, h, w]);
        let op = Conv2d::new(Conv2dOpts::new(1, 1), false, false);
        let ds = op.lower(&Lowering { inputs: &[x, wt], output: &out, limits: &limits }).unwrap();
        ds.iter().map(|d| d.bindings[0].size).collect::<Vec<u64>>()
    };
    // 16 planes of 4 KiB = 64 KiB: whole. 32 planes: two chunks that fill the limit, not the three the
    // conservative cap (15 planes) would give.
    assert_eq!(dispatches(16, 32, 32), vec![64 << 10]);
    assert_eq!(dispatches(32, 32, 32), vec![64 << 10, 64 << 10]);
    // Planes of 1023 elements (4092 bytes, unaligned): 16 of them bind whole (a tensor starts aligned), but
    // chunks may start up to 255 bytes early, so they hold 15 planes: 17 planes give 2 chunks, 31 give 3.
    assert_eq!(dispatches(16, 31, 33).len(), 1);
    assert_eq!(dispatches(17, 31, 33).len(), 2);
    assert_eq!(dispatches(31, 31, 33).len(), 3);
}

/// An input of exactly the binding limit binds whole: checked by lowering under WebGPU's default limit
/// (128 MiB, 256-byte alignment: 1×128×512×512 f32, the VAE decoder's last stage), and run on the GPU
/// where the adapter's limit is that size (lavapipe's is).
#[test]
fn input_of_exactly_the_binding_limit() {
    let webgpu = DeviceLimits { max_binding: 128 << 20, offset_align: 256, max_workgroups: 65535, subgroup_min_size: 8, cpu: true, texture_reads: false, max_texture_rows: 0, texture_window: 16 << 20, conv: Default::default() };
    let c = case(1, 128, 512, 512, 8, 3, Conv2dOpts::new(1, 1), true, false);
    let x = TensorDesc::f32(&[1, 128, 512, 512]);
    assert_eq!(x.bytes(), webgpu.max_binding);
    let (wt, out) = (TensorDesc::f32(&[8, 128, 3, 3]), TensorDesc::f32(&c.shape().out_shape()));
    let op = Conv2d::new(c.opts, true, false);
    let ds = op.lower(&Lowering { inputs: &[x, wt, TensorDesc::f32(&[8])], output: &out, limits: &webgpu }).unwrap();
    assert_eq!(ds.len(), 1, "an aligned input of exactly the limit must bind whole");
    let gpu = test_gpu();
    if DeviceLimits::from_gpu(&gpu).max_binding != webgpu.max_binding {
        println!("GPU run not done: this adapter's binding limit is not 128 MiB (the lowering was checked)");
        return;
    }
    check_subsampled(&gpu, &c, 4000, 7);
}

/// Which kernel each adapter class gets.
#[test]
fn kernel_selection() {
    let mut l = DeviceLimits { max_binding: 1 << 27, offset_align: 256, max_workgroups: 65535, subgroup_min_size: 0, cpu: false, texture_reads: false, max_texture_rows: 0, texture_window: 16 << 20, conv: Default::default() };
    let k3 = case(1, 4, 8, 12, 4, 3, Conv2dOpts::new(1, 1), false, false);
    let s2 = case(1, 4, 8, 8, 4, 3, Conv2dOpts::new(2, 1), false, false);
    let pick = |c: &Case, l: &DeviceLimits| select_kernel(&c.shape(), &c.opts, l).entry;
    assert_eq!((pick(&k3, &l), pick(&s2, &l)), ("k3s1_r4c8m4", "direct_m16"));
    l.subgroup_min_size = 4;
    assert!(!select_kernel(&k3.shape(), &k3.opts, &l).subgroup, "4-lane subgroups are too small");
    l.subgroup_min_size = 8;
    assert!(select_kernel(&k3.shape(), &k3.opts, &l).subgroup);
    l.cpu = true;
    assert_eq!((pick(&k3, &l), pick(&s2, &l)), ("k3s1_r4c4m8_w8", "direct_m32_w8"));
    // Whole 32-column groups with one column of left padding: vec4 window rows.
    let wide = case(1, 4, 8, 64, 4, 3, Conv2dOpts::new(1, 1), false, false);
    let unpadded = case(1, 4, 8, 64, 4, 3, Conv2dOpts::new(1, 0), false, false);
    assert_eq!((pick(&wide, &l), pick(&unpadded, &l)), ("k3s1v_r4c4m8_w8", "k3s1_r4c4m8_w8"));
    // 1×1 stride-1 convs without padding: the pointwise kernel where H·W and Cin are multiples of 4.
    let pw = |b, cin, h, w| case(b, cin, h, w, 8, 1, Conv2dOpts::default(), false, false);
    assert_eq!((pick(&pw(2, 320, 64, 64), &l), pick(&pw(1, 8, 3, 3), &l)), ("pw_p64m32_w8", "direct_m32_w8"));
    assert_eq!(pick(&pw(1, 6, 4, 4), &l), "direct_m32_w8");
    // Planes 4, 8 or 16 wide too (rows of fewer lanes), not 24 or 48.
    for (w, vec) in [(4, true), (8, true), (16, true), (24, false), (48, false)] {
        let c = case(1, 4, 8, w, 4, 3, Conv2dOpts::new(1, 1), false, false);
        assert_eq!(pick(&c, &l), if vec { "k3s1v_r4c4m8_w8" } else { "k3s1_r4c4m8_w8" }, "width {w}");
    }
}

#[test]
fn bad_inputs_are_errors_naming_op_and_shapes() {
    let mut g = Graph::new();
    let x = g.input("x", TensorDesc::f32(&[2, 3, 8, 8]));
    let w = g.input("w", TensorDesc::f32(&[4, 5, 3, 3]));
    let err = g.conv2d("down.0.conv1", x, w, None, Conv2dOpts::new(1, 1), None).unwrap_err().to_string();
    assert!(err.contains("conv2d 'down.0.conv1'") && err.contains("2×3×8×8") && err.contains("4×5×3×3"), "{err}");

    let w = g.input("w_ok", TensorDesc::f32(&[4, 3, 3, 3]));
    let b = g.input("b", TensorDesc::f32(&[5]));
    let err = g.conv2d("c", x, w, Some(b), Conv2dOpts::new(1, 1), None).unwrap_err().to_string();
    assert!(err.contains("conv2d") && err.contains("bias") && err.contains("f32[5]"), "{err}");

    let r = g.input("r", TensorDesc::f32(&[2, 4, 7, 8]));
    let err = g.conv2d("c", x, w, None, Conv2dOpts::new(1, 1), Some(r)).unwrap_err().to_string();
    assert!(err.contains("residual") && err.contains("2×4×7×8") && err.contains("2×4×8×8"), "{err}");

    let flat = g.input("flat", TensorDesc::f32(&[3, 64]));
    let err = g.conv2d("c", flat, w, None, Conv2dOpts::default(), None).unwrap_err().to_string();
    assert!(err.contains("conv2d") && err.contains("3×64"), "{err}");

    let tiny = g.input("tiny", TensorDesc::f32(&[1, 3, 2, 2]));
    let err = g.conv2d("c", tiny, w, None, Conv2dOpts::default(), None).unwrap_err().to_string();
    assert!(err.contains("1×3×2×2") && err.contains("4×3×3×3"), "{err}");

    let h = g.input("h", TensorDesc::new(&[2, 3, 8, 8], DType::F16));
    let err = g.conv2d("c", h, w, None, Conv2dOpts::default(), None).unwrap_err().to_string();
    assert!(err.contains("conv2d") && err.contains("dtype"), "{err}");

    // A forced kernel that cannot compute the shape is refused when recorded.
    let k3 = KERNELS.iter().position(|k| k.entry.starts_with("k3s1")).unwrap();
    let op = Conv2d { kernel: Some(k3), ..Conv2d::new(Conv2dOpts::new(2, 1), false, false) };
    let err = g.op("c", op, &[x, w]).unwrap_err().to_string();
    assert!(err.contains("k3s1") && err.contains("2×3×8×8"), "{err}");
}

/// CPU seconds used by this process so far (all threads, lavapipe's included), from /proc/self/stat.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// Profiles one conv (bias fused) and prints GFLOP/s from the GPU time, plus the process CPU time it took:
/// on lavapipe the GPU is the CPU, so GFLOP per CPU-second is the figure that does not depend on how
/// many cores other processes left free.
fn bench(gpu: &Arc<Gpu>, c: &Case, kernel: Option<usize>, runs: usize) {
    let s = c.shape();
    let mut rng = Rng::new(9);
    let mut g = Graph::new();
    let xdt = if std::env::var("CONV_F16").is_ok() { DType::F16 } else { DType::F32 };
    let x = g.input("x", TensorDesc::new(&[c.b, c.cin, c.h, c.w], xdt));
    let wdt = if std::env::var("CONV_F16W").is_ok() { DType::F16 } else { xdt };
    let wd = TensorDesc::new(&[c.cout, c.cin, c.k.0, c.k.1], wdt);
    let w = g.param(&Param::upload(gpu, "w", wd.clone(), &rng.vec(wd.numel(), 0.05), false).unwrap());
    let bias = g.param(&Param::upload(gpu, "b", TensorDesc::f32(&[c.cout]), &rng.vec(c.cout, 0.05), false).unwrap());
    // CONV_RESIDUAL=1: a residual added in the epilogue, as in the UNet's and VAE's resnet conv2.
    let residual = (std::env::var("CONV_RESIDUAL").is_ok_and(|v| v == "1") || c.residual).then(|| {
        g.param(&Param::upload(gpu, "r", TensorDesc::f32(&s.out_shape()), &rng.vec(s.out_shape().iter().product(), 1.0), false).unwrap())
    });
    let op = Conv2d { kernel, ..Conv2d::new(c.opts, true, residual.is_some()) };
    let flops = op.flops(&[g.desc(x), &wd], &TensorDesc::f32(&s.out_shape()));
    // CONV_GEMM=1: the im2col + GEMM form instead (Graph::conv2d_gemm), timed over all its nodes.
    let gemm = std::env::var("CONV_GEMM").is_ok();
    let y = if gemm {
        g.conv2d_gemm("conv", x, w, Some(bias), c.opts, residual)
    } else {
        g.op("conv", op, &[[x, w, bias].as_slice(), residual.as_slice()].concat())
    };
    g.output(y.unwrap());
    let entry = match kernel {
        _ if gemm => "im2col + gemm",
        Some(k) => KERNELS[k].entry,
        None => {
            let l = DeviceLimits::from_gpu(gpu);
            match wgsd::kernels::winograd::choose_tile(&s, &c.opts, xdt, &l) {
                Some(wgsd::kernels::winograd::WinogradTile::F2) => "winograd F(2×2, 3×3)",
                Some(wgsd::kernels::winograd::WinogradTile::F4) => "winograd F(4×4, 3×3)",
                None => select_kernel(&s, &c.opts, &l).entry,
            }
        }
    };
    let plan = Plan::new(gpu.clone(), g).unwrap();
    plan.write(x, &rng.vec(c.b * c.cin * c.h * c.w, 1.0)).unwrap();
    for r in 0..runs {
        let c0 = cpu_seconds();
        let times = plan.profile().unwrap();
        let t: f64 = times.iter().sum();
        let cpu = cpu_seconds() - c0;
        if times.len() > 1 && r + 1 == runs {
            // An expanded conv (Winograd, im2col): where its time goes.
            let parts: Vec<String> = times.iter().zip(plan.graph().nodes()).map(|(t, n)| format!("{} {:.3} s", n.op.kind(), t)).collect();
            println!("  nodes: {}", parts.join(", "));
        }
        println!(
            "conv2d {} [{entry}] run {r}: {:.3} s, {:.2} GFLOP/s; process CPU {:.2} s ({:.2} cores), {:.2} GFLOP per CPU-second",
            c.name(),
            t,
            flops / t / 1e9,
            cpu,
            cpu / t,
            flops / cpu / 1e9
        );
    }
}

/// GFLOP/s at SD shapes: `cargo test --release --test kernels conv2d::bench -- --ignored --nocapture`.
/// `CONV_BENCH=unet,vae,1x1,s2,variants` picks cases (default: unet and vae); `variants` runs every kernel
/// this adapter can run on a 1×128×64×64 3×3 conv and a 1×1 conv. The first run of a kernel includes
/// lavapipe's shader compile (unless Mesa's shader cache has it). `CONV_KERNEL=i` forces `KERNELS[i]` on the
/// unet and vae cases; `CONV_RUNS=n` times the unet and CONV_CASE cases n times (long enough to profile with perf);
/// `CONV_CASE=BxCINxHxWxCOUT[xK],...` adds K×K convs (default 3×3) of those shapes, padding K / 2;
/// `CONV_GEMM=1` times them in the im2col + GEMM form; `CONV_F16W=1` stores the weights in f16,
/// `CONV_F16=1` the input and the weights (`--f16-activations`); `CONV_RESIDUAL=1` adds a residual.
#[test]
#[ignore]
fn bench_sd_shapes() {
    let gpu = test_gpu();
    println!("{}", gpu.describe());
    let which = std::env::var("CONV_BENCH").unwrap_or_else(|_| "unet,vae".into());
    let p1 = Conv2dOpts::new(1, 1);
    let forced: Option<usize> = std::env::var("CONV_KERNEL").ok().map(|v| v.parse().unwrap());
    if which.contains("unet") {
        bench(&gpu, &case(2, 320, 64, 64, 320, 3, p1, true, false), forced, std::env::var("CONV_RUNS").map_or(3, |v| v.parse().unwrap()));
    }
    if which.contains("1x1") {
        bench(&gpu, &case(2, 320, 64, 64, 320, 1, Conv2dOpts::default(), true, false), None, 2);
    }
    if which.contains("s2") {
        bench(&gpu, &case(2, 320, 64, 64, 320, 3, Conv2dOpts::new(2, 1), true, false), None, 2);
    }
    if which.contains("variants") {
        let sg = DeviceLimits::from_gpu(&gpu).subgroup_min_size >= 8;
        for (i, k) in KERNELS.iter().enumerate().filter(|(_, k)| sg || !k.subgroup) {
            for c in [case(1, 128, 64, 64, 128, 3, p1, true, false), case(1, 320, 64, 64, 320, 1, Conv2dOpts::default(), true, false)] {
                if k.handles(&c.shape(), &c.opts) {
                    bench(&gpu, &c, Some(i), 2);
                }
            }
        }
    }
    // CONV_CASE=BxCINxHxWxCOUT[xK][,...]: K×K convs (default 3) of these shapes, padding K / 2.
    for c in std::env::var("CONV_CASE").unwrap_or_default().split(',').filter(|c| !c.is_empty()) {
        let v: Vec<usize> = c.split('x').map(|x| x.parse().expect("CONV_CASE: BxCINxHxWxCOUT[xK]")).collect();
        let k = v.get(5).copied().unwrap_or(3);
        let runs = std::env::var("CONV_RUNS").map_or(2, |v| v.parse().unwrap());
        bench(&gpu, &case(v[0], v[1], v[2], v[3], v[4], k, Conv2dOpts::new(1, k / 2), true, false), forced, runs);
    }
    if which.contains("vae") {
        bench(&gpu, &case(1, 128, 512, 512, 128, 3, p1, true, false), forced, 1);
    }
}

/// `--precision f16`: a convolution reads an f16 input (a GroupNorm's output) with f16 weights, widening
/// both in the kernel. Every kernel that handles a shape reads x only through its accessors, so each is
/// checked here against the CPU twin on the same (f16-representable) values: vec-rows kernels on planes
/// 32 and 8 wide, their scalar twins, stride 2, 1×1 (pointwise) and the upsampling conv.
#[test]
fn f16_input_with_f16_weights_on_every_kernel() {
    let gpu = test_gpu();
    let sg = DeviceLimits::from_gpu(&gpu).subgroup_min_size >= 8;
    let half = |v: Vec<f32>| -> Vec<f32> { v.iter().map(|&x| half::f16::from_f32(x).to_f32()).collect() };
    let mut up = Conv2dOpts::new(1, 1);
    up.upsample2x = true;
    let cases = [
        case(2, 12, 8, 32, 16, 3, Conv2dOpts::new(1, 1), true, true),
        case(1, 8, 12, 8, 8, 3, Conv2dOpts::new(1, 1), true, false),
        case(1, 5, 9, 13, 7, 3, Conv2dOpts::new(1, 1), true, false),
        case(2, 8, 16, 16, 8, 3, Conv2dOpts::new(2, 1), true, false),
        case(1, 16, 8, 16, 24, 1, Conv2dOpts::default(), true, false),
        case(1, 8, 8, 16, 8, 3, up, true, false),
    ];
    let mut checked = 0;
    for (n, c) in cases.iter().enumerate() {
        let s = c.shape();
        for (i, k) in KERNELS.iter().enumerate().filter(|(_, k)| (sg || !k.subgroup) && k.handles(&s, &c.opts)) {
            let mut rng = Rng::new(40 + n as u64);
            let mut g = Graph::new();
            let x = g.input("x", TensorDesc::new(&[c.b, c.cin, c.h, c.w], DType::F16));
            let w = g.input("w", TensorDesc::new(&[c.cout, c.cin, c.k.0, c.k.1], DType::F16));
            let b = g.input("b", TensorDesc::f32(&[c.cout]));
            let mut ins = vec![x, w, b];
            let mut vals = vec![
                (x, half(rng.vec(c.b * c.cin * c.h * c.w, 1.0))),
                (w, half(rng.vec(c.cout * c.cin * c.k.0 * c.k.1, 0.3))),
                (b, rng.vec(c.cout, 0.5)),
            ];
            if c.residual {
                let r = g.input("r", TensorDesc::f32(&s.out_shape()));
                ins.push(r);
                vals.push((r, rng.vec(s.out_shape().iter().product(), 1.0)));
            }
            let op = Conv2d { kernel: Some(i), ..Conv2d::new(c.opts, true, c.residual) };
            let y = g.op("conv", op, &ins).unwrap();
            g.output(y);
            let cmp = check_graph(&gpu, g, &vals).unwrap();
            println!("{} [{}]: rel_l2 {:.2e}", c.name(), k.entry, cmp[0].rel_l2);
            assert!(cmp[0].rel_l2 < 1e-5, "{} [{}]: rel_l2 {:e}", c.name(), k.entry, cmp[0].rel_l2);
            checked += 1;
        }
    }
    assert!(checked >= 8, "only {checked} kernel runs");
    // An f16 input with f32 weights is refused at record time.
    let mut g = Graph::new();
    let x = g.input("x", TensorDesc::new(&[1, 4, 8, 8], DType::F16));
    let w = g.input("w", TensorDesc::f32(&[4, 4, 3, 3]));
    let e = g.conv2d("c", x, w, None, Conv2dOpts::new(1, 1), None).unwrap_err().to_string();
    assert!(e.contains("f16 input needs f16 weights"), "{e}");
}
