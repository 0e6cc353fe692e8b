//! Attention against its f64 CPU twin: every kernel variant at awkward sizes, the real SD shapes (checked on
//! a subsample of query rows, which are independent), shape errors, splitting, and the generated shaders.
use wgsd::graph::op::{DeviceLimits, Lowering, Op};
use wgsd::kernels::attention::{reference_rows, wgsl_source, Attention, AttentionOpts, AttentionVariant};
use wgsd::testing::{assert_close, check_graph, rel_l2, test_gpu, test_gpu_buffer_reads, Rng};
use wgsd::{Graph, Plan, TensorDesc};

const TOL: f64 = 1e-5;

const VARIANTS: [AttentionVariant; 3] =
    [AttentionVariant::Portable, AttentionVariant::Subgroup, AttentionVariant::SubgroupCpu];

/// (B, Nq, Nk, H, D, scale): every Nq/Nk/H/D the brief lists, each kernel kind (reg40, reg64, stream4,
/// stream1), partial key blocks, and more query rows than one workgroup of the largest tile covers.
const AWKWARD: [(usize, usize, usize, usize, usize, Option<f32>); 14] = [
    (1, 1, 1, 1, 1, None),
    (2, 5, 7, 3, 33, Some(0.3)),
    (1, 67, 130, 3, 40, None),
    (2, 5, 77, 8, 40, Some(0.21)),
    (1, 1030, 9, 1, 40, None),
    (2, 67, 7, 1, 64, None),
    (1, 5, 130, 8, 64, Some(1.0)),
    (2, 67, 77, 1, 80, None),
    (1, 1, 130, 3, 160, None),
    (1, 67, 7, 1, 512, None),
    (2, 5, 1, 3, 512, Some(0.05)),
    (1, 600, 20, 2, 24, None),
    (2, 5, 13, 2, 2, None),
    (1, 3, 77, 8, 12, Some(0.7)),
];

fn shapes(b: usize, nq: usize, nk: usize, w: usize) -> [TensorDesc; 3] {
    [TensorDesc::f32(&[b, nq, w]), TensorDesc::f32(&[b, nk, w]), TensorDesc::f32(&[b, nk, w])]
}

/// On both test GPUs: on CPU adapters the shared one reads q, k and v through textures in the subgroup
/// variants, the other from storage buffers.
#[test]
fn every_variant_at_awkward_sizes() {
    for gpu in [test_gpu(), test_gpu_buffer_reads()] {
        every_variant_on(&gpu);
    }
}

fn every_variant_on(gpu: &std::sync::Arc<wgsd::Gpu>) {
    let limits = DeviceLimits::from_gpu(gpu);
    for (n, &(b, nq, nk, h, d, scale)) in AWKWARD.iter().enumerate() {
        let [qd, kd, vd] = shapes(b, nq, nk, h * d);
        let mut g = Graph::new();
        let (q, k, v) = (g.input("q", qd.clone()), g.input("k", kd.clone()), g.input("v", vd.clone()));
        for variant in VARIANTS {
            let name = format!("b{b} nq{nq} nk{nk} h{h} d{d} {variant:?}");
            let out = g.attention(&name, q, k, v, AttentionOpts { heads: h, scale, variant, ..Default::default() });
            g.output(out.unwrap());
        }
        // The subgroup CPU variant reads textures exactly where the adapter does.
        let node = g.nodes().last().unwrap();
        let lowered = node.op.lower(&Lowering { inputs: &[qd.clone(), kd.clone(), vd.clone()], output: &qd, limits: &limits }).unwrap();
        assert!(lowered.iter().all(|d| d.bindings[..3].iter().all(|b| b.texture == limits.texture_reads)));
        let mut rng = Rng::new(100 + n as u64);
        let inputs = vec![(q, rng.vec(qd.numel(), 2.0)), (k, rng.vec(kd.numel(), 2.0)), (v, rng.vec(vd.numel(), 1.0))];
        assert_close(&check_graph(gpu, g, &inputs).unwrap(), TOL);
    }
}

/// Scores of several hundred: the running max must keep exp2 in range.
#[test]
fn sharp_softmax_stays_finite_and_exact() {
    let gpu = test_gpu();
    let (b, nq, nk, h, d) = (1, 37, 150, 2, 64);
    let [qd, kd, vd] = shapes(b, nq, nk, h * d);
    let mut g = Graph::new();
    let (q, k, v) = (g.input("q", qd.clone()), g.input("k", kd.clone()), g.input("v", vd.clone()));
    for variant in VARIANTS {
        let out = g.attention(
            &format!("sharp {variant:?}"),
            q,
            k,
            v,
            AttentionOpts { heads: h, scale: Some(1.0), variant, ..Default::default() },
        );
        g.output(out.unwrap());
    }
    let mut rng = Rng::new(7);
    let inputs = vec![(q, rng.vec(qd.numel(), 4.0)), (k, rng.vec(kd.numel(), 4.0)), (v, rng.vec(vd.numel(), 1.0))];
    assert_close(&check_graph(&gpu, g, &inputs).unwrap(), TOL);
}

/// Runs attention (adapter's own variant) on the GPU and compares the given query rows with the CPU twin.
fn check_rows(b: usize, nq: usize, nk: usize, h: usize, d: usize, rows: &[usize], seed: u64) -> f64 {
    let gpu = test_gpu();
    let [qd, kd, vd] = shapes(b, nq, nk, h * d);
    let mut g = Graph::new();
    let (q, k, v) = (g.input("q", qd.clone()), g.input("k", kd.clone()), g.input("v", vd.clone()));
    let out = g.attention("attn", q, k, v, AttentionOpts { heads: h, ..Default::default() }).unwrap();
    g.output(out);
    let mut rng = Rng::new(seed);
    let (qv, kv, vv) = (rng.vec(qd.numel(), 1.0), rng.vec(kd.numel(), 1.0), rng.vec(vd.numel(), 1.0));
    let plan = Plan::new(gpu, g).unwrap();
    plan.write(q, &qv).unwrap();
    plan.write(k, &kv).unwrap();
    plan.write(v, &vv).unwrap();
    plan.run().unwrap();
    let got_all = plan.read(out).unwrap();
    let w = h * d;
    let got: Vec<f32> = (0..b)
        .flat_map(|bi| rows.iter().flat_map(move |&r| (0..w).map(move |c| (bi, r, c))))
        .map(|(bi, r, c)| got_all[(bi * nq + r) * w + c])
        .collect();
    let want = reference_rows(&[&qv, &kv, &vv], &[&qd, &kd, &vd], h, 1.0 / (d as f32).sqrt(), rows);
    assert!(got_all.iter().all(|x| x.is_finite()), "non-finite output");
    rel_l2(&got, &want)
}

/// Query rows to check of an Nq-row problem: both ends, around workgroup boundaries, and a spread.
fn sample_rows(nq: usize) -> Vec<usize> {
    let mut r: Vec<usize> = vec![0, 1, 63, 64, 511, 512, 1023, 1024, nq / 2 + 17, nq - 2, nq - 1];
    r.extend((0..12).map(|i| (i * 337 + 5) % nq));
    r.retain(|&x| x < nq);
    r.sort();
    r.dedup();
    r
}

#[test]
fn sd15_cross_attention_4096x77_8x40() {
    let e = check_rows(2, 4096, 77, 8, 40, &sample_rows(4096), 11);
    println!("cross-attention 2×4096×77, 8×40: rel_l2 {e:.3e}");
    assert!(e <= TOL, "{e}");
}

#[test]
fn sd15_self_attention_4096_8x40() {
    let e = check_rows(2, 4096, 4096, 8, 40, &sample_rows(4096), 12);
    println!("self-attention 2×4096², 8×40: rel_l2 {e:.3e}");
    assert!(e <= TOL, "{e}");
}

/// SD 1.5's lower-resolution self-attention (8×80 at 32×32, 8×160 at 16×16) and SD 2's 64-dim heads.
#[test]
fn sd_self_attention_other_levels() {
    for (b, n, h, d) in [(2, 1024, 8, 80), (2, 256, 8, 160), (1, 1024, 5, 64)] {
        let e = check_rows(b, n, n, h, d, &sample_rows(n), 13);
        println!("self-attention {b}×{n}², {h}×{d}: rel_l2 {e:.3e}");
        assert!(e <= TOL, "{e}");
    }
}

#[test]
fn vae_mid_block_attention_4096_1x512() {
    let e = check_rows(1, 4096, 4096, 1, 512, &sample_rows(4096), 14);
    println!("VAE attention 1×4096², 1×512: rel_l2 {e:.3e}");
    assert!(e <= TOL, "{e}");
}

#[test]
fn shape_errors_name_op_and_shapes() {
    let mut g = Graph::new();
    let q = g.input("q", TensorDesc::f32(&[2, 10, 320]));
    let k = g.input("k", TensorDesc::f32(&[2, 77, 320]));
    let v768 = g.input("v", TensorDesc::f32(&[2, 77, 768]));
    let k768 = g.input("k768", TensorDesc::f32(&[2, 77, 768]));
    let k1 = g.input("k1", TensorDesc::f32(&[1, 77, 320]));
    let flat = g.input("flat", TensorDesc::f32(&[10, 320]));
    let opts = AttentionOpts { heads: 8, ..Default::default() };
    let err = g.attention("attn1", q, k, v768, opts).unwrap_err().to_string();
    assert!(err.contains("attention 'attn1'") && err.contains("2×77×320") && err.contains("2×77×768"), "{err}");
    let err = g.attention("attn2", q, k768, v768, opts).unwrap_err().to_string();
    assert!(err.contains("attention 'attn2'") && err.contains("2×10×320") && err.contains("2×77×768"), "{err}");
    let err = g.attention("attn3", q, k, k, AttentionOpts { heads: 3, ..opts }).unwrap_err().to_string();
    assert!(err.contains("attention 'attn3'") && err.contains("320") && err.contains("3 heads"), "{err}");
    let err = g.attention("attn4", q, k1, k1, opts).unwrap_err().to_string();
    assert!(err.contains("attention 'attn4'") && err.contains("1×77×320"), "{err}");
    let err = g.attention("attn5", flat, k, k, opts).unwrap_err().to_string();
    assert!(err.contains("attention 'attn5'") && err.contains("10×320"), "{err}");
    let h = g.input("h", TensorDesc::new(&[2, 10, 320], wgsd::DType::F16));
    let err = g.attention("attn6", h, k, k, opts).unwrap_err().to_string();
    assert!(err.contains("attention 'attn6'") && err.contains("dtype"), "{err}");
}

/// Tensors bigger than one binding: one batch item per dispatch, query rows in chunks that fit, every
/// binding within the limit and every query row covered once.
#[test]
fn splits_under_small_binding_limits() {
    let limits = DeviceLimits {
        max_binding: 1 << 15,
        offset_align: 256,
        max_workgroups: 65535,
        subgroup_min_size: 8,
        cpu: true,
        texture_reads: false,
        max_texture_rows: 0,
            texture_window: 16 << 20,
        conv: Default::default(),
    };
    let (b, nq, nk, w) = (2usize, 300usize, 40usize, 40usize);
    let [q, k, v] = shapes(b, nq, nk, w);
    let op = Attention { opts: AttentionOpts { heads: 1, ..Default::default() } };
    let out = op.infer(&[&q, &k, &v]).unwrap();
    let ds = op.lower(&Lowering { inputs: &[q, k, v], output: &out, limits: &limits }).unwrap();
    assert!(ds.len() >= 4, "{} dispatches", ds.len());
    let word = |d: &wgsd::graph::op::Dispatch, i: usize| {
        u32::from_le_bytes(d.params[4 * i..4 * i + 4].try_into().unwrap()) as u64
    };
    // Rows of q/out each dispatch sees must follow on from the previous one's; k/v start at its batch item.
    let mut next_row = 0u64;
    for d in &ds {
        assert!(d.bindings.iter().all(|bd| bd.size <= limits.max_binding && bd.offset % limits.offset_align == 0));
        let (rows, q_shift, k_shift, o_shift) = (word(d, 0), word(d, 7), word(d, 8), word(d, 10));
        assert_eq!(d.bindings[0].offset + 4 * q_shift, 4 * next_row * w as u64);
        assert_eq!(d.bindings[3].offset + 4 * o_shift, 4 * next_row * w as u64);
        let batch = next_row / nq as u64;
        assert_eq!(d.bindings[1].offset + 4 * k_shift, 4 * batch * (nk * w) as u64);
        assert_eq!(d.workgroups[1], 1);
        next_row += rows;
    }
    assert_eq!(next_row, (b * nq) as u64);
}

/// The committed shaders are the generator's output, and both validate and translate to SPIR-V, MSL and
/// HLSL. `WGSD_REGEN_SHADERS=1` rewrites them.
#[test]
fn shaders_match_generator_and_translate() {
    use naga::valid::{Capabilities, ShaderStages, SubgroupOperationSet, ValidationFlags, Validator};
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/shaders/");
    for (file, subgroup) in [("attention.wgsl", false), ("attention_subgroup.wgsl", true)] {
        let want = wgsl_source(subgroup);
        let path = format!("{dir}{file}");
        if std::env::var("WGSD_REGEN_SHADERS").is_ok() {
            std::fs::write(&path, &want).unwrap();
        }
        let have = std::fs::read_to_string(&path).unwrap();
        assert!(
            have == want,
            "{file} is stale: run WGSD_REGEN_SHADERS=1 cargo test --release --test kernels attention::shaders"
        );
        let module =
            naga::front::wgsl::parse_str(&have).unwrap_or_else(|e| panic!("{file}: {}", e.emit_to_string(&have)));
        let caps = if subgroup { Capabilities::SUBGROUP } else { Capabilities::empty() };
        let info = Validator::new(ValidationFlags::all(), caps)
            .subgroup_stages(ShaderStages::COMPUTE)
            .subgroup_operations(SubgroupOperationSet::all())
            .validate(&module)
            .unwrap_or_else(|e| panic!("{file}: {e:?}"));
        let spv_opts = naga::back::spv::Options { lang_version: (1, 3), ..Default::default() };
        naga::back::spv::write_vec(&module, &info, &spv_opts, None).unwrap_or_else(|e| panic!("{file} → SPIR-V: {e}"));
        let msl_opts = naga::back::msl::Options { lang_version: (2, 4), ..Default::default() };
        let pipe = naga::back::msl::PipelineOptions::default();
        naga::back::msl::write_string(&module, &info, &msl_opts, &pipe).unwrap_or_else(|e| panic!("{file} → MSL: {e}"));
        let hlsl_opts =
            naga::back::hlsl::Options { shader_model: naga::back::hlsl::ShaderModel::V6_0, ..Default::default() };
        let mut hlsl = String::new();
        naga::back::hlsl::Writer::new(&mut hlsl, &hlsl_opts, &Default::default())
            .write(&module, &info, None)
            .unwrap_or_else(|e| panic!("{file} → HLSL: {e}"));
    }
}

/// GFLOP/s at the SD shapes (4·B·H·Nq·Nk·D flops per call), GPU time from `Plan::profile`. Not a pass/fail
/// test: `cargo test --release --test kernels attention::bench -- --ignored --nocapture`.
#[test]
#[ignore]
fn bench_attention_sd_shapes() {
    let gpu = test_gpu();
    println!("{}", gpu.describe());
    use AttentionVariant::{Auto, Portable, Subgroup};
    for (label, b, nq, nk, h, d, variant) in [
        ("self-attention 4096² 8×40 batch 2", 2, 4096, 4096, 8, 40, Auto),
        ("cross-attention 4096×77 8×40 batch 2", 2, 4096, 77, 8, 40, Auto),
        ("self-attention 1024² 8×80 batch 2", 2, 1024, 1024, 8, 80, Auto),
        ("self-attention 4096² 5×64 batch 2 (SD 2)", 2, 4096, 4096, 5, 64, Auto),
        ("VAE mid-block 4096² 1×512", 1, 4096, 4096, 1, 512, Auto),
        ("self-attention 4096² 8×40 batch 2, GPU tiles", 2, 4096, 4096, 8, 40, Subgroup),
        ("self-attention 1024² 8×40 batch 1, GPU tiles", 1, 1024, 1024, 8, 40, Subgroup),
        ("self-attention 1024² 8×40 batch 1, portable", 1, 1024, 1024, 8, 40, Portable),
    ] {
        let [qd, kd, vd] = shapes(b, nq, nk, h * d);
        let mut g = Graph::new();
        let (q, k, v) = (g.input("q", qd.clone()), g.input("k", kd.clone()), g.input("v", vd.clone()));
        let out = g.attention("attn", q, k, v, AttentionOpts { heads: h, variant, ..Default::default() }).unwrap();
        g.output(out);
        let plan = Plan::new(gpu.clone(), g).unwrap();
        let mut rng = Rng::new(1);
        for (t, dsc) in [(q, &qd), (k, &kd), (v, &vd)] {
            plan.write(t, &rng.vec(dsc.numel(), 1.0)).unwrap();
        }
        plan.run().unwrap(); // warm-up: lavapipe compiles the pipeline on first use
        let flops = 4.0 * (b * h * nq * nk * d) as f64;
        let (mut best, mut best_cpu) = (f64::INFINITY, f64::INFINITY);
        for _ in 0..3 {
            let c0 = process_cpu_seconds();
            best = best.min(plan.profile().unwrap()[0]);
            best_cpu = best_cpu.min(process_cpu_seconds() - c0);
        }
        // On a CPU adapter sharing its cores, GFLOP per CPU-second is the steadier figure.
        println!(
            "{label}: {best:.3} s, {:.2} GFLOP/s ({:.2} GFLOP per CPU-second)",
            flops / best * 1e-9,
            flops / best_cpu * 1e-9
        );
    }
}

/// User + system CPU time of this process (Linux; 0 elsewhere).
fn process_cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else { return 0.0 };
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}
