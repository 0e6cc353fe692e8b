use wgsd::graph::op::Lowering;
use wgsd::kernels::matmul::{cpu_matmul_rows, Matmul, MatmulKernel, MatmulOpts};
use wgsd::kernels::unary::Activation;
use wgsd::testing::{assert_close, check_graph, rel_l2, test_gpu, test_gpu_buffer_reads, Rng};
use wgsd::{DType, Graph, Param, Plan, TensorDesc};

/// CPU time (ns) consumed so far by every thread of this process (lavapipe's workers included), so
/// throughput can be measured on a machine shared with other jobs. 0 where /proc is unavailable.
fn process_cpu_ns() -> u64 {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else { return 0 };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| std::fs::read_to_string(e.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next().and_then(|v| v.parse::<u64>().ok()))
        .sum()
}

/// Throughput of the naive, candidate and tuned kernels at 1024³ and 4096×320×1280 (M×K×N), plain and with
/// a transposed (PyTorch Linear) B. Prints GFLOP/s from GPU timestamps (wall time, sensitive to other jobs
/// on the machine) and GFLOP per CPU-second of the whole process (lavapipe's threads included), which is not.
/// Asserts nothing about time. `cargo test --release --test kernels matmul_throughput -- --ignored --nocapture`
/// (MATMUL_SIZES=MxKxN,..., MATMUL_TRANS_B=0|1, MATMUL_BENCH=name,... select cases; MATMUL_F16W=1 stores B
/// as f16 weights, MATMUL_BIAS=1 adds a bias).
#[test]
#[ignore]
fn matmul_throughput() {
    let gpu = test_gpu();
    let only: Option<Vec<String>> = std::env::var("MATMUL_BENCH").ok().map(|s| s.split(',').map(String::from).collect());
    let want = |name: &str| only.as_ref().is_none_or(|o| o.iter().any(|x| name.contains(x.as_str())));
    let sizes: Vec<(usize, usize, usize)> = match std::env::var("MATMUL_SIZES") {
        Ok(s) => s
            .split(',')
            .map(|t| {
                let v: Vec<usize> = t.split('x').map(|x| x.parse().unwrap()).collect();
                (v[0], v[1], v[2])
            })
            .collect(),
        Err(_) => vec![(1024, 1024, 1024), (4096, 320, 1280)],
    };
    let transposes: Vec<bool> = match std::env::var("MATMUL_TRANS_B").as_deref() {
        Ok("0") => vec![false],
        Ok("1") => vec![true],
        _ => vec![false, true],
    };
    let f16_weights = std::env::var("MATMUL_F16W").is_ok_and(|v| v == "1");
    let with_bias = std::env::var("MATMUL_BIAS").is_ok_and(|v| v == "1");
    let adapter = wgsd::graph::op::DeviceLimits::from_gpu(&gpu);
    println!("{} ({:?}); tuned kernel here: {:?}", gpu.info.name, adapter, MatmulKernel::Tuned.resolve(&adapter));
    let mut kernels = vec![
        ("naive".to_string(), MatmulKernel::Naive),
        ("tiled".to_string(), MatmulKernel::Tiled),
        ("tuned".to_string(), MatmulKernel::Tuned),
    ];
    if adapter.subgroup_min_size >= 8 {
        kernels.push(("bcast".to_string(), MatmulKernel::Broadcast));
    }
    kernels.retain(|(name, _)| want(name));
    for (m, k, n) in sizes {
        for &trans_b in &transposes {
            let mut rng = Rng::new(1);
            let (av, bv) = (rng.vec(m * k, 1.0), rng.vec(k * n, 1.0));
            for (name, kern) in &kernels {
                let mut g = Graph::new();
                let a = g.input("a", TensorDesc::f32(&[m, k]));
                let bshape = if trans_b { [n, k] } else { [k, n] };
                // A Linear layer as the UNet has it: f16 weights (MATMUL_F16W=1) and a bias (MATMUL_BIAS=1).
                let b = if f16_weights {
                    g.param(&Param::upload(&gpu, "b", TensorDesc::new(&bshape, DType::F16), &bv, false).unwrap())
                } else {
                    g.input("b", TensorDesc::f32(&bshape))
                };
                let bias = with_bias.then(|| g.param(&Param::upload(&gpu, "bias", TensorDesc::f32(&[n]), &rng.vec(n, 1.0), false).unwrap()));
                let opts = MatmulOpts { trans_b, bias, ..Default::default() };
                let t = g.matmul_with(name, a, b, opts, *kern).unwrap();
                g.output(t);
                let t0 = std::time::Instant::now();
                let plan = Plan::new(gpu.clone(), g).unwrap();
                let build = t0.elapsed().as_secs_f64();
                plan.write(a, &av).unwrap();
                if !f16_weights {
                    plan.write(b, &bv).unwrap();
                }
                let t0 = std::time::Instant::now();
                plan.run().unwrap();
                gpu.wait().unwrap();
                let build = build + t0.elapsed().as_secs_f64();
                let (mut wall, mut cpu) = (f64::INFINITY, f64::INFINITY);
                for _ in 0..2 {
                    wall = wall.min(plan.profile().unwrap()[0]);
                    let c0 = process_cpu_ns();
                    plan.run().unwrap();
                    gpu.wait().unwrap();
                    cpu = cpu.min((process_cpu_ns() - c0) as f64 * 1e-9);
                }
                let flops = 2.0 * (m * n * k) as f64;
                println!(
                    "{m}×{k}×{n} B{}: {name:>14} {:9.2} ms {:7.2} GFLOP/s (timestamps) {:7.2} GFLOP/CPU-s (plan + first run {build:.1} s)",
                    if trans_b { "ᵀ" } else { " " },
                    wall * 1e3,
                    flops / wall * 1e-9,
                    flops / cpu * 1e-9
                );
            }
        }
    }
}

const TOL: f64 = 1e-5;
/// Every kernel: the tuned one (the subgroup kernel on lavapipe), the GPU tiled one and the naive one.
const KERNELS: [MatmulKernel; 3] = [MatmulKernel::Tuned, MatmulKernel::Tiled, MatmulKernel::Naive];
const ACTS: [Activation; 6] =
    [Activation::None, Activation::Silu, Activation::Gelu, Activation::GeluTanh, Activation::QuickGelu, Activation::Relu];

/// Shape of an operand stored as `[rows, cols]` of `op(X)`, transposed in memory when `t`.
fn stored(batch: &[usize], rows: usize, cols: usize, t: bool) -> Vec<usize> {
    let mut s = batch.to_vec();
    s.extend(if t { [cols, rows] } else { [rows, cols] });
    s
}

/// Every (M, K, N) of awkward sizes, all four transpose combinations, tuned and naive kernels. K = 36 (a
/// multiple of 4, not of 8) with A untransposed and B transposed takes the broadcast kernel's vec4 variant
/// on CPU adapters.
#[test]
fn matmul_awkward_sizes_all_transposes() {
    let gpu = test_gpu();
    let mut rng = Rng::new(11);
    for (trans_a, trans_b) in [(false, false), (false, true), (true, false), (true, true)] {
        let mut g = Graph::new();
        let mut inputs = Vec::new();
        for m in [1usize, 7, 33, 67] {
            for k in [1usize, 13, 36, 129] {
                for n in [1usize, 5, 127] {
                    let sa = stored(&[], m, k, trans_a);
                    let sb = stored(&[], k, n, trans_b);
                    let a = g.input(&format!("a{m}x{k}x{n}"), TensorDesc::f32(&sa));
                    let b = g.input(&format!("b{m}x{k}x{n}"), TensorDesc::f32(&sb));
                    // Values in [0, 2): a single output (M = N = 1) of signed data can cancel to near zero, and
                    // its f32 rounding alone then exceeds the relative tolerance.
                    inputs.push((a, rng.vec(m * k, 1.0).iter().map(|v| v + 1.0).collect()));
                    inputs.push((b, rng.vec(k * n, 1.0).iter().map(|v| v + 1.0).collect()));
                    let opts = MatmulOpts { trans_a, trans_b, ..Default::default() };
                    for kern in KERNELS {
                        let t = g.matmul_with(&format!("{kern:?} {m}x{k}x{n} ta{trans_a} tb{trans_b}"), a, b, opts, kern);
                        g.output(t.unwrap());
                    }
                }
            }
        }
        assert_close(&check_graph(&gpu, g, &inputs).unwrap(), TOL);
    }
}

/// B stored in f16 (a Linear weight under `--precision f16`), every kernel, both layouts of B, awkward
/// sizes (odd element counts end in a padding half) plus bias and activation. The CPU twin gets the
/// f16-rounded B the GPU holds, so the results agree to f32 rounding; a misread half would not.
#[test]
fn matmul_f16_b_every_kernel() {
    let gpu = test_gpu();
    let adapter = wgsd::graph::op::DeviceLimits::from_gpu(&gpu);
    let mut kernels = KERNELS.to_vec();
    if adapter.subgroup_min_size >= 8 {
        kernels.push(MatmulKernel::Broadcast);
    }
    let mut rng = Rng::new(12);
    let mut g = Graph::new();
    let mut inputs = Vec::new();
    for trans_b in [false, true] {
        for (m, k, n) in [(1usize, 1usize, 1usize), (7, 13, 5), (67, 129, 127), (33, 64, 65), (37, 12, 71)] {
            let a = g.input(&format!("a{m}x{k}x{n}{trans_b}"), TensorDesc::f32(&[m, k]));
            inputs.push((a, rng.vec(m * k, 1.0).iter().map(|v| v + 1.0).collect::<Vec<f32>>()));
            let bv: Vec<f32> = rng.vec(k * n, 1.0).iter().map(|v| v + 1.0).collect();
            let bd = TensorDesc::new(&stored(&[], k, n, trans_b), wgsd::DType::F16);
            let b = g.param(&wgsd::Param::upload(&gpu, &format!("b{m}x{k}x{n}{trans_b}"), bd, &bv, true).unwrap());
            let bias = g.input(&format!("bias{m}x{k}x{n}{trans_b}"), TensorDesc::f32(&[n]));
            inputs.push((bias, rng.vec(n, 1.0)));
            for &kern in &kernels {
                let opts = MatmulOpts { trans_b, bias: Some(bias), act: Activation::Silu, ..Default::default() };
                let t = g.matmul_with(&format!("{kern:?} {m}x{k}x{n} tb{trans_b} f16"), a, b, opts, kern).unwrap();
                g.output(t);
            }
        }
    }
    assert_close(&check_graph(&gpu, g, &inputs).unwrap(), TOL);
}

/// The broadcast kernels read A and B through textures on CPU adapters (what the other tests run there);
/// here they read storage buffers, f32 and f16 B, both layouts; and A longer than one texture row ends in a
/// partial row (37 × 4100 values: 9 whole rows of 4096 texels and 1061 more).
#[test]
fn broadcast_kernels_read_buffers_or_textures_alike() {
    for gpu in [test_gpu(), test_gpu_buffer_reads()] {
        let adapter = wgsd::graph::op::DeviceLimits::from_gpu(&gpu);
        if adapter.subgroup_min_size < 8 {
            println!("skipped: this adapter has no subgroups of 8+ lanes");
            return;
        }
        let mut rng = Rng::new(13);
        let mut g = Graph::new();
        let mut inputs = Vec::new();
        for trans_b in [false, true] {
            for (m, k, n, dt) in [(67usize, 129usize, 127usize, wgsd::DType::F32), (37, 4100, 9, wgsd::DType::F32), (33, 64, 65, wgsd::DType::F16)] {
                let a = g.input(&format!("a{m}x{k}x{n}{trans_b}"), TensorDesc::f32(&[m, k]));
                inputs.push((a, rng.vec(m * k, 1.0).iter().map(|v| v + 1.0).collect::<Vec<f32>>()));
                let bv: Vec<f32> = rng.vec(k * n, 1.0).iter().map(|v| v + 1.0).collect();
                let bd = TensorDesc::new(&stored(&[], k, n, trans_b), dt);
                let b = g.param(&wgsd::Param::upload(&gpu, &format!("b{m}x{k}x{n}{trans_b}"), bd, &bv, true).unwrap());
                let opts = MatmulOpts { trans_b, ..Default::default() };
                let t = g.matmul_with(&format!("{m}x{k}x{n} tb{trans_b}"), a, b, opts, MatmulKernel::Broadcast).unwrap();
                g.output(t);
            }
        }
        let textures = g.nodes().iter().all(|node| {
            let descs: Vec<TensorDesc> = node.inputs.iter().map(|t| g.desc(*t).clone()).collect();
            let d = node.op.lower(&Lowering { inputs: &descs, output: g.desc(node.output), limits: &adapter }).unwrap();
            d.iter().all(|d| d.bindings[0].texture && d.bindings[1].texture)
        });
        assert_eq!(textures, adapter.texture_reads);
        assert_close(&check_graph(&gpu, g, &inputs).unwrap(), TOL);
    }
}

/// Where A and B are read through scratch textures, operands larger than the device's texture window are
/// split into windows (rows of a Linear layer's input and columns of its weight, runs of batches of a
/// batched product) so the shared textures stay small. Under a 16 KiB window: Linear layers with f32 and
/// f16 weights, bias and activation (301 rows of 64 values: 64-row windows, the last partial; a weight of
/// 200 rows: runs of 64 or 128 columns, the last partial, output rows N apart), and batched products with
/// both operands batched or only B (Winograd's GEMMs), all against the CPU twin.
#[test]
fn texture_windows_split_large_operands() {
    let gpu = match wgsd::Gpu::new(&wgsd::GpuOptions::from_env()) {
        Ok(mut g) => {
            g.texture_window = 16 << 10;
            std::sync::Arc::new(g)
        }
        Err(e) => panic!("GPU tests need a GPU adapter: {e}"),
    };
    // An adapter that reads storage buffers has no scratch textures, hence no windows: one dispatch each.
    let adapter = wgsd::graph::op::DeviceLimits::from_gpu(&gpu);
    let mut rng = Rng::new(16);
    let mut g = Graph::new();
    let mut inputs = Vec::new();
    let mut expected_windows = Vec::new();
    // (batches of A (0: shared), batches of B (0: shared), m, k, n, B's dtype, windows under 16 KiB)
    let cases = [
        (0usize, 0usize, 301usize, 64usize, 40usize, DType::F32, 5usize), // 16 KiB / 256 B = 64 rows
        (0, 0, 301, 64, 40, DType::F16, 5),
        (9, 9, 20, 48, 24, DType::F32, 3), // B 4608 bytes per batch (A 3840): 3 batches per window
        (0, 7, 20, 48, 24, DType::F32, 3), // A shared, bound whole
        (0, 0, 70, 64, 200, DType::F32, 8), // B 50 KiB: 2 row windows × columns 0, 64, 128, 192 (8 wide)
        (0, 0, 70, 64, 200, DType::F16, 4), // B 25 KiB: 2 row windows × columns 0, 128 (72 wide)
    ];
    for (i, &(ab, bb, m, k, n, dt, windows)) in cases.iter().enumerate() {
        let a_shape: Vec<usize> = if ab > 0 { vec![ab, m, k] } else { vec![m, k] };
        let b_shape: Vec<usize> = if bb > 0 { vec![bb, n, k] } else { vec![n, k] };
        let a = g.input(&format!("a{i}"), TensorDesc::f32(&a_shape));
        inputs.push((a, rng.vec(a_shape.iter().product(), 1.0)));
        let bv = rng.vec(b_shape.iter().product(), 1.0);
        let b = g.param(&Param::upload(&gpu, &format!("b{i}"), TensorDesc::new(&b_shape, dt), &bv, true).unwrap());
        let bias = (bb == 0).then(|| {
            let t = g.input(&format!("bias{i}"), TensorDesc::f32(&[n]));
            inputs.push((t, rng.vec(n, 1.0)));
            t
        });
        let act = if bias.is_some() { Activation::Silu } else { Activation::None };
        let opts = MatmulOpts { trans_b: true, bias, act, ..Default::default() };
        let t = g.matmul_with(&format!("case{i}"), a, b, opts, MatmulKernel::Tuned).unwrap();
        g.output(t);
        expected_windows.push(windows);
    }
    for (node, want) in g.nodes().iter().zip(&expected_windows) {
        let descs: Vec<TensorDesc> = node.inputs.iter().map(|t| g.desc(*t).clone()).collect();
        let ds = node.op.lower(&Lowering { inputs: &descs, output: g.desc(node.output), limits: &adapter }).unwrap();
        assert_eq!(ds.len(), if adapter.texture_reads { *want } else { 1 }, "{}: dispatches", node.name);
        for d in &ds {
            assert_eq!(d.bindings[0].texture && d.bindings[1].texture, adapter.texture_reads, "{}", node.name);
            if adapter.texture_reads {
                assert!(d.bindings[0].size <= 16 << 10 && d.bindings[1].size <= 16 << 10, "{}: {:?}", node.name, d.bindings);
            }
        }
    }
    assert_close(&check_graph(&gpu, g, &inputs).unwrap(), TOL);
}

/// An f16 A is refused by name (only B, the weight, may be stored in f16).
#[test]
fn matmul_f16_a_is_refused() {
    let mut g = Graph::new();
    let a = g.input("a", TensorDesc::new(&[4, 4], wgsd::DType::F16));
    let b = g.input("b", TensorDesc::f32(&[4, 4]));
    let e = g.matmul("proj", a, b, MatmulOpts::default()).unwrap_err().to_string();
    assert!(e.contains("proj") && e.contains("f16"), "{e}");
}

/// Batched operands (batch 3), broadcast B (rank-4 A with a shared weight, folded into one tall matrix when
/// A is not transposed), broadcast A, bias with every activation and alpha, in every transpose combination;
/// K = 28 as well as 29, so the vec4 variant of the broadcast kernel takes its batch strides too.
#[test]
fn matmul_batched_broadcast_bias_activations() {
    let gpu = test_gpu();
    let mut rng = Rng::new(12);
    let (m, n) = (37usize, 71usize);
    for (k, trans_a, trans_b) in
        [(29usize, false, false), (29, false, true), (29, true, false), (29, true, true), (28, false, true), (28, true, true)]
    {
        let mut g = Graph::new();
        let mut inputs = Vec::new();
        let mut input = |g: &mut Graph, name: &str, shape: Vec<usize>, inputs: &mut Vec<_>| {
            let t = g.input(name, TensorDesc::f32(&shape));
            inputs.push((t, rng.vec(shape.iter().product(), 1.0)));
            t
        };
        let a3 = input(&mut g, "a3", stored(&[3], m, k, trans_a), &mut inputs);
        let b3 = input(&mut g, "b3", stored(&[3], k, n, trans_b), &mut inputs);
        let a4 = input(&mut g, "a4", stored(&[2, 3], m, k, trans_a), &mut inputs);
        let a2 = input(&mut g, "a2", stored(&[], m, k, trans_a), &mut inputs);
        let w = input(&mut g, "w", stored(&[], k, n, trans_b), &mut inputs);
        let bias = input(&mut g, "bias", vec![n], &mut inputs);
        for (i, act) in ACTS.into_iter().enumerate() {
            let opts = MatmulOpts { trans_a, trans_b, bias: Some(bias), act, alpha: 0.5 + i as f32 * 0.25 };
            for kern in KERNELS {
                // Every activation is its own pipeline (ACT fixed at creation), and on lavapipe the tuned
                // kernels take seconds each to compile: they get two activations (the identity and GELU,
                // erf and exp), the small kernels all six; `activate` is one function in all of them.
                if kern == MatmulKernel::Tuned && !matches!(act, Activation::None | Activation::Gelu) {
                    continue;
                }
                let tag = format!("{kern:?} {} ta{trans_a} tb{trans_b}", act.name());
                let outs = [
                    g.matmul_with(&format!("batched {tag}"), a3, b3, opts, kern).unwrap(),
                    g.matmul_with(&format!("shared B {tag}"), a4, w, opts, kern).unwrap(),
                    g.matmul_with(&format!("shared A {tag}"), a2, b3, opts, kern).unwrap(),
                ];
                assert_eq!(g.shape(outs[0]), [3, m, n]);
                assert_eq!(g.shape(outs[1]), [2, 3, m, n]);
                assert_eq!(g.shape(outs[2]), [3, m, n]);
                for t in outs {
                    g.output(t);
                }
            }
        }
        let plain = g.matmul("no bias", a3, b3, MatmulOpts { trans_a, trans_b, ..Default::default() }).unwrap();
        g.output(plain);
        assert_close(&check_graph(&gpu, g, &inputs).unwrap(), TOL);
    }
}

/// SD 1.5 shapes: cross-attention K/V projections of the CLIP context (2×77×768 · 320×768ᵀ), and the
/// feed-forward GEMMs at their real K and N (GEGLU projection 320 → 2560, output 1280 → 320) on 97 rows.
#[test]
fn linear_at_sd_shapes() {
    let gpu = test_gpu();
    let mut rng = Rng::new(13);
    let mut g = Graph::new();
    let mut inputs = Vec::new();
    for (xs, fout) in [(vec![2usize, 77, 768], 320usize), (vec![97, 320], 2560), (vec![97, 1280], 320)] {
        let fin = *xs.last().unwrap();
        let x = g.input(&format!("x{fin}"), TensorDesc::f32(&xs));
        let w = g.input(&format!("w{fin}x{fout}"), TensorDesc::f32(&[fout, fin]));
        let b = g.input(&format!("b{fout}"), TensorDesc::f32(&[fout]));
        inputs.push((x, rng.vec(g.desc(x).numel(), 1.0)));
        inputs.push((w, rng.vec(fin * fout, (1.0 / fin as f32).sqrt())));
        inputs.push((b, rng.vec(fout, 0.1)));
        let y = g.linear(&format!("linear {fin}→{fout}"), x, w, Some(b)).unwrap();
        g.output(y);
    }
    assert_close(&check_graph(&gpu, g, &inputs).unwrap(), TOL);
}

/// The 64×64-latent self-attention projection at full size, [2, 4096, 320] · [320, 320]ᵀ + bias, checked on
/// three row blocks per batch against a CPU twin restricted to those rows.
#[test]
fn linear_4096x320_row_blocks() {
    let gpu = test_gpu();
    let mut rng = Rng::new(14);
    let (batch, m, c) = (2usize, 4096usize, 320usize);
    let mut g = Graph::new();
    let x = g.input("x", TensorDesc::f32(&[batch, m, c]));
    let w = g.input("to_out.weight", TensorDesc::f32(&[c, c]));
    let bias = g.input("to_out.bias", TensorDesc::f32(&[c]));
    let y = g.linear("attn1.to_out.0", x, w, Some(bias)).unwrap();
    g.output(y);
    let xv = rng.vec(batch * m * c, 1.0);
    let wv = rng.vec(c * c, 0.05);
    let bv = rng.vec(c, 0.1);
    let plan = Plan::new(gpu, g).unwrap();
    plan.write(x, &xv).unwrap();
    plan.write(w, &wv).unwrap();
    plan.write(bias, &bv).unwrap();
    plan.run().unwrap();
    let got = plan.read(y).unwrap();
    let op = Matmul {
        trans_a: false,
        trans_b: true,
        has_bias: true,
        act: Activation::None,
        alpha: 1.0,
        kernel: MatmulKernel::Tuned,
    };
    let (xd, wd) = (TensorDesc::f32(&[batch, m, c]), TensorDesc::f32(&[c, c]));
    for rows in [0..40, 2011..2050, 4070..4096] {
        let want = cpu_matmul_rows(&op, (&xd, &xv), (&wd, &wv), Some(&bv), rows.clone()).unwrap();
        let nr = rows.len();
        for z in 0..batch {
            let lo = (z * m + rows.start) * c;
            let got_rows = &got[lo..lo + nr * c];
            let want_rows = &want[z * nr * c..(z + 1) * nr * c];
            let err = rel_l2(got_rows, want_rows);
            println!("batch {z} rows {rows:?}: rel_l2 {err:.3e}");
            assert!(err <= TOL, "batch {z} rows {rows:?}: relative L2 {err:.3e}");
        }
    }
}

/// Grids past `max_compute_workgroups_per_dimension` (rows of a tall matrix, batches) are split into
/// several dispatches, and the split results are right.
#[test]
fn grids_past_the_workgroup_limit_are_split() {
    use wgsd::graph::op::{DeviceLimits, Lowering, Op};
    let gpu = test_gpu();
    let max = gpu.limits.max_compute_workgroups_per_dimension as usize;
    let mut rng = Rng::new(15);
    let mut g = Graph::new();
    let rows = max * 64 + 37;
    let tall = g.input("tall", TensorDesc::f32(&[rows, 2]));
    let w = g.input("w", TensorDesc::f32(&[2, 3]));
    let many_a = g.input("many_a", TensorDesc::f32(&[max + 3, 3, 2]));
    let many_b = g.input("many_b", TensorDesc::f32(&[max + 3, 2, 2]));
    let inputs = vec![
        (tall, rng.vec(rows * 2, 1.0)),
        (w, rng.vec(6, 1.0)),
        (many_a, rng.vec((max + 3) * 6, 1.0)),
        (many_b, rng.vec((max + 3) * 4, 1.0)),
    ];
    // The tiled kernel (256 invocations and barriers per workgroup) is slow on lavapipe at this many
    // workgroups; it offsets rows and batches exactly like the others, and its split is checked below.
    for kern in [MatmulKernel::Tuned, MatmulKernel::Naive] {
        let t = g.matmul_with(&format!("tall {kern:?}"), tall, w, MatmulOpts::default(), kern).unwrap();
        g.output(t);
        let t = g.matmul_with(&format!("many {kern:?}"), many_a, many_b, MatmulOpts::default(), kern).unwrap();
        g.output(t);
    }
    assert_close(&check_graph(&gpu, g, &inputs).unwrap(), TOL);
    // The same splitting under tiny limits, without a GPU.
    let limits = DeviceLimits { max_binding: 1 << 30, offset_align: 256, max_workgroups: 4, subgroup_min_size: 0, cpu: false, texture_reads: false, max_texture_rows: 0, texture_window: 16 << 20, conv: Default::default() };
    let op = Matmul {
        trans_a: false,
        trans_b: false,
        has_bias: false,
        act: Activation::None,
        alpha: 1.0,
        kernel: MatmulKernel::Tuned,
    };
    let (a, b) = (TensorDesc::f32(&[9, 300, 8]), TensorDesc::f32(&[9, 8, 5]));
    let out = op.infer(&[&a, &b]).unwrap();
    let lavapipe = DeviceLimits { cpu: true, subgroup_min_size: 8, ..limits.clone() };
    let inputs = [a, b];
    for (adapter, entry) in [(&limits, "matmul_tiled"), (&lavapipe, "matmul_bcast")] {
        let lowering = Lowering { inputs: &inputs, output: &out, limits: adapter };
        let ds = op.lower(&lowering).unwrap();
        // 300 rows in 5 row tiles of 64 → 2 row chunks; 9 batches → 3 batch chunks.
        assert_eq!(ds.len(), 6);
        assert!(ds.iter().all(|d| d.entry == entry && d.workgroups.iter().all(|&w| w <= 4)));
    }
    // The subgroup kernel asked for where there are no subgroups is an error, not a broken pipeline.
    let op = Matmul { kernel: MatmulKernel::Broadcast, ..op };
    let lowering = Lowering { inputs: &inputs, output: &out, limits: &limits };
    let err = op.lower(&lowering).unwrap_err().to_string();
    assert!(err.contains("subgroup"), "{err}");
}

/// On CPU adapters a Linear layer (`x · Wᵀ`, K a multiple of 4) takes the vec4 variant of the broadcast
/// kernel, with its 32-row tiles; other layouts and K keep `matmul_bcast`.
#[test]
fn linear_layers_take_the_vec4_kernel_on_cpu_adapters() {
    use wgsd::graph::op::{DeviceLimits, Lowering, Op};
    let lavapipe = DeviceLimits { max_binding: 1 << 30, offset_align: 32, max_workgroups: 65535, subgroup_min_size: 8, cpu: true, texture_reads: false, max_texture_rows: 0, texture_window: 16 << 20, conv: Default::default() };
    let entry = |trans_a: bool, trans_b: bool, k: usize| {
        let op = Matmul { trans_a, trans_b, has_bias: false, act: Activation::None, alpha: 1.0, kernel: MatmulKernel::Tuned };
        let a = TensorDesc::f32(&stored(&[2], 100, k, trans_a));
        let b = TensorDesc::f32(&stored(&[], k, 320, trans_b));
        let out = op.infer(&[&a, &b]).unwrap();
        let inputs = [a, b];
        let ds = op.lower(&Lowering { inputs: &inputs, output: &out, limits: &lavapipe }).unwrap();
        (ds[0].entry, ds[0].workgroups)
    };
    // 200 rows (the batch folded into M) in tiles of 32, 320 columns in tiles of 64.
    assert_eq!(entry(false, true, 768), ("matmul_bcast_k4", [5, 7, 1]));
    assert_eq!(entry(false, true, 770).0, "matmul_bcast");
    assert_eq!(entry(false, false, 768).0, "matmul_bcast");
    assert_eq!(entry(true, true, 768).0, "matmul_bcast");
}

#[test]
fn matmul_bad_shapes_are_errors_naming_op_and_shapes() {
    let mut g = Graph::new();
    let a = g.input("a", TensorDesc::f32(&[2, 5, 7]));
    let w = g.input("w", TensorDesc::f32(&[6, 8]));
    let err = g.linear("blocks.0.proj", a, w, None).unwrap_err().to_string();
    assert!(
        err.contains("matmul 'blocks.0.proj'") && err.contains("2×5×7") && err.contains("6×8") && err.contains("K"),
        "{err}"
    );
    let w = g.input("w_ok", TensorDesc::f32(&[6, 7]));
    let bias = g.input("bias", TensorDesc::f32(&[5]));
    let err = g.linear("proj", a, w, Some(bias)).unwrap_err().to_string();
    assert!(err.contains("bias") && err.contains("[5]") && err.contains("[6]"), "{err}");
    let b = g.input("b", TensorDesc::f32(&[3, 7, 4]));
    let err = g.matmul_naive("bmm", a, b, MatmulOpts::default()).unwrap_err().to_string();
    assert!(err.contains("matmul_naive 'bmm'") && err.contains("2×5×7") && err.contains("3×7×4"), "{err}");
    let v = g.input("v", TensorDesc::f32(&[7]));
    let err = g.matmul("mv", a, v, MatmulOpts::default()).unwrap_err().to_string();
    assert!(err.contains("rank") && err.contains("f32[7]"), "{err}");
    // An f16 weight is read by the f16-weight kernels; an f16 bias is not.
    let h = g.input("h", TensorDesc::new(&[6, 7], wgsd::DType::F16));
    let y = g.linear("half", a, h, None).unwrap();
    assert_eq!(g.desc(y), &TensorDesc::f32(&[2, 5, 6]));
    let hb = g.input("hb", TensorDesc::new(&[6], wgsd::DType::F16));
    let err = g.linear("half_bias", a, w, Some(hb)).unwrap_err().to_string();
    assert!(err.contains("dtype") && err.contains("f16[6]"), "{err}");
}

/// The shader file parses and validates with naga on its own (activations prepended) and translates to
/// SPIR-V, MSL and HLSL, so it builds for Vulkan, Metal and DX12 without a GPU.
#[test]
fn matmul_shader_validates_and_translates() {
    use naga::back::{hlsl, msl, spv};
    use naga::valid::{Capabilities, ValidationFlags, Validator};
    use wgsd::kernels::matmul::{SHADER, SUBGROUP_SHADER};
    for (shader, caps) in [(&SHADER, Capabilities::empty()), (&SUBGROUP_SHADER, Capabilities::SUBGROUP)] {
        let src = shader.source;
        let module = naga::front::wgsl::parse_str(src).unwrap_or_else(|e| panic!("{}", e.emit_to_string(src)));
        let info = Validator::new(ValidationFlags::all(), caps)
            .subgroup_stages(naga::valid::ShaderStages::COMPUTE)
            .subgroup_operations(naga::valid::SubgroupOperationSet::all())
            .validate(&module)
            .unwrap_or_else(|e| panic!("{}: {}", shader.name, e.emit_to_string(src)));
        // Pipelines fix the activation (`ACT`); the backends take no `override`.
        let constants = naga::back::PipelineConstants::from_iter([("ACT".to_string(), 2.0)]);
        let (module, info) = naga::back::pipeline_constants::process_overrides(&module, &info, None, &constants).unwrap();
        let (module, info) = (module.into_owned(), info.into_owned());
        spv::write_vec(&module, &info, &spv::Options::default(), None).unwrap();
        msl::write_string(&module, &info, &msl::Options::default(), &msl::PipelineOptions::default()).unwrap();
        let mut hlsl_out = String::new();
        hlsl::Writer::new(&mut hlsl_out, &hlsl::Options::default(), &hlsl::PipelineOptions::default())
            .write(&module, &info, None)
            .unwrap();
    }
}

/// Operands over one storage binding (128 MiB on lavapipe) are not split by matmul (SD's largest is ~42 MB):
/// the plan refuses them with an error naming the op and the limit.
#[test]
fn matmul_over_the_binding_limit_is_refused() {
    let gpu = test_gpu();
    let limit = gpu.limits.max_storage_buffer_binding_size;
    let k = (limit / 4 + 64) as usize;
    if (k * 4) as u64 > gpu.limits.max_buffer_size {
        // A tensor over the binding limit cannot even be allocated on this adapter: nothing to refuse.
        eprintln!("SKIPPED: max_buffer_size equals the binding limit on {}", gpu.info.name);
        return;
    }
    let mut g = Graph::new();
    let x = g.input("x", TensorDesc::f32(&[1, k]));
    let w = g.input("w", TensorDesc::f32(&[1, k]));
    let y = g.linear("huge", x, w, None).unwrap();
    g.output(y);
    let err = Plan::new(gpu, g).err().expect("over-limit binding must be refused").to_string();
    assert!(err.contains("matmul 'huge'") && err.contains("max_storage_buffer_binding_size"), "{err}");
}
