//! Kernel benchmarks at Stable Diffusion 1.5 shapes (`wgsd bench kernels`).
//!
//! Each row is a one-node graph planned like model code would plan it, run once to warm up, then timed
//! with [`Plan::profile`] (GPU timestamps where the adapter has them). Figures are reported beside the
//! adapter's measured peaks: bandwidth from a large buffer copy, FLOP/s from the best GEMM row of the
//! same run. Nothing here asserts a time.

use std::sync::Arc;
use std::time::Instant;

use crate::error::Result;
use crate::gpu::Gpu;
use crate::graph::plan::Plan;
use crate::graph::{Graph, TensorId};
use crate::kernels::attention::AttentionOpts;
use crate::kernels::conv2d::Conv2dOpts;
use crate::kernels::matmul::MatmulOpts;
use crate::tensor::TensorDesc;
use crate::testing::Rng;

/// A benchmark case: builds a one-op graph and says whether it is a GEMM (for the FLOP/s peak).
pub struct Case {
    pub name: &'static str,
    pub shape: String,
    pub gemm: bool,
    build: Box<dyn Fn(&mut Graph) -> Result<TensorId>>,
}

impl Case {
    pub fn new(name: &'static str, shape: impl Into<String>, build: impl Fn(&mut Graph) -> Result<TensorId> + 'static) -> Case {
        Case { name, shape: shape.into(), gemm: false, build: Box::new(build) }
    }
    pub fn gemm(mut self) -> Case {
        self.gemm = true;
        self
    }
}

/// One measured row.
pub struct Row {
    pub name: &'static str,
    pub shape: String,
    pub seconds: f64,
    pub gflops: f64,
    pub gbs: f64,
    pub peak_mib: f64,
    pub gemm: bool,
}

/// Options of `wgsd bench kernels`.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// Smaller shapes and one timed repetition: under a minute on lavapipe.
    pub quick: bool,
    /// Timed repetitions per row (the best is reported).
    pub reps: usize,
    /// Only rows whose name contains this.
    pub filter: Option<String>,
}

fn input(g: &mut Graph, name: &str, shape: &[usize]) -> TensorId {
    g.input(name, TensorDesc::f32(shape))
}

/// The kernel rows at SD 1.5 shapes; `quick` shrinks the spatial/token extent (the label shows what ran).
pub fn cases(quick: bool) -> Vec<Case> {
    let s = if quick { 4 } else { 1 }; // spatial divisor per side for the big activations
    let hw = 64 / s;
    let v = vec![
        Case::new("silu", format!("2×320×{hw}×{hw}"), move |g| {
            let x = input(g, "x", &[2, 320, hw, hw]);
            g.silu("silu", x)
        }),
        Case::new("add (broadcast)", format!("2×320×{hw}×{hw} + 2×320×1×1"), move |g| {
            let x = input(g, "x", &[2, 320, hw, hw]);
            let t = input(g, "temb", &[2, 320, 1, 1]);
            g.add("add", x, t)
        }),
        Case::new("geglu", format!("2×{}×2560 → 1280", hw * hw), move |g| {
            let x = input(g, "x", &[2, hw * hw, 2560]);
            g.geglu("geglu", x)
        }),
        Case::new("upsample nearest 2×", format!("2×640×{0}×{0}", 32 / s), move |g| {
            let x = input(g, "x", &[2, 640, 32 / s, 32 / s]);
            g.upsample_nearest2x("up", x)
        }),
        Case::new("concat (skip)", format!("2×(640+320)×{hw}×{hw}"), move |g| {
            let a = input(g, "a", &[2, 640, hw, hw]);
            let b = input(g, "b", &[2, 320, hw, hw]);
            g.concat("cat", a, b, 1)
        }),
        Case::new("gather (token emb.)", "77 rows of 49408×768", |g| {
            let t = input(g, "table", &[49408, 768]);
            let ids = input(g, "ids", &[77]);
            g.gather("emb", t, ids)
        }),
        Case::new("matmul naive", format!("{0}×{0}×{0}", 1024 / s), move |g| {
            let n = 1024 / s;
            let a = input(g, "a", &[n, n]);
            let b = input(g, "b", &[n, n]);
            g.matmul_naive("mm", a, b, MatmulOpts::default())
        })
        .gemm(),
        Case::new("matmul", format!("{0}×{0}×{0}", 1024 / s), move |g| {
            let n = 1024 / s;
            let a = input(g, "a", &[n, n]);
            let b = input(g, "b", &[n, n]);
            g.matmul("mm", a, b, MatmulOpts::default())
        })
        .gemm(),
        Case::new("linear (GEGLU proj)", format!("{}×320 · (2560×320)ᵀ", 2 * hw * hw), move |g| {
            let x = input(g, "x", &[2, hw * hw, 320]);
            let w = input(g, "w", &[2560, 320]);
            let b = input(g, "b", &[2560]);
            g.linear("ff", x, w, Some(b))
        })
        .gemm(),
        // The same projection with GEGLU as its epilogue (one dispatch on CPU adapters; the product and the
        // geglu row above elsewhere): compare with those two rows.
        Case::new("linear + GEGLU (ff.net.0)", format!("{}×320 · (2560×320)ᵀ → 1280", 2 * hw * hw), move |g| {
            let x = input(g, "x", &[2, hw * hw, 320]);
            let w = input(g, "w", &[2560, 320]);
            let b = input(g, "b", &[2560]);
            g.linear_geglu("ff", x, w, Some(b))
        })
        .gemm(),
        Case::new("linear (CLIP MLP)", "2×77×768 · (3072×768)ᵀ", |g| {
            let x = input(g, "x", &[2, 77, 768]);
            let w = input(g, "w", &[3072, 768]);
            let b = input(g, "b", &[3072]);
            g.linear("fc1", x, w, Some(b))
        })
        .gemm(),
        Case::new("matmul 4096×320×1280", format!("{}×320×1280", 4096 / (s * s)), move |g| {
            let a = input(g, "a", &[4096 / (s * s), 320]);
            let b = input(g, "b", &[320, 1280]);
            g.matmul("mm", a, b, MatmulOpts::default())
        })
        .gemm(),
        Case::new("conv 3×3", format!("2×320×{hw}×{hw} → 320"), move |g| {
            let x = input(g, "x", &[2, 320, hw, hw]);
            let w = input(g, "w", &[320, 320, 3, 3]);
            let b = input(g, "b", &[320]);
            g.conv2d("conv", x, w, Some(b), Conv2dOpts::new(1, 1), None)
        }),
        Case::new("conv 3×3 (16×16)", format!("2×1280×{0}×{0} → 1280", hw / 4), move |g| {
            let x = input(g, "x", &[2, 1280, hw / 4, hw / 4]);
            let w = input(g, "w", &[1280, 1280, 3, 3]);
            let b = input(g, "b", &[1280]);
            g.conv2d("conv", x, w, Some(b), Conv2dOpts::new(1, 1), None)
        }),
        Case::new("conv 1×1 (shortcut)", format!("2×640×{0}×{0} → 320", hw / 2), move |g| {
            let x = input(g, "x", &[2, 640, hw / 2, hw / 2]);
            let w = input(g, "w", &[320, 640, 1, 1]);
            g.conv2d("conv", x, w, None, Conv2dOpts::new(1, 0), None)
        }),
        Case::new("conv 3×3 (VAE)", format!("1×128×{0}×{0} → 128", 512 / s), move |g| {
            let x = input(g, "x", &[1, 128, 512 / s, 512 / s]);
            let w = input(g, "w", &[128, 128, 3, 3]);
            let b = input(g, "b", &[128]);
            g.conv2d("conv", x, w, Some(b), Conv2dOpts::new(1, 1), None)
        }),
        Case::new("attention self 8×40", format!("2×{0} tokens × {0} keys", hw * hw), move |g| {
            let q = input(g, "q", &[2, hw * hw, 320]);
            let k = input(g, "k", &[2, hw * hw, 320]);
            let v = input(g, "v", &[2, hw * hw, 320]);
            g.attention("attn", q, k, v, AttentionOpts { heads: 8, ..Default::default() })
        }),
        Case::new("attention cross 8×40", format!("2×{} tokens × 77 keys", hw * hw), move |g| {
            let q = input(g, "q", &[2, hw * hw, 320]);
            let k = input(g, "k", &[2, 77, 320]);
            let v = input(g, "v", &[2, 77, 320]);
            g.attention("attn", q, k, v, AttentionOpts { heads: 8, ..Default::default() })
        }),
        Case::new("attention VAE 1×512", format!("1×{0} tokens × {0} keys", hw * hw), move |g| {
            let q = input(g, "q", &[1, hw * hw, 512]);
            let k = input(g, "k", &[1, hw * hw, 512]);
            let v = input(g, "v", &[1, hw * hw, 512]);
            g.attention("attn", q, k, v, AttentionOpts { heads: 1, ..Default::default() })
        }),
        Case::new("group_norm + silu", format!("2×320×{hw}×{hw}, 32 groups"), move |g| {
            let x = input(g, "x", &[2, 320, hw, hw]);
            let w = input(g, "w", &[320]);
            let b = input(g, "b", &[320]);
            g.group_norm("gn", x, 32, 1e-5, Some(w), Some(b), true)
        }),
        Case::new("group_norm (VAE)", format!("1×128×{0}×{0}, 32 groups", 512 / s), move |g| {
            let x = input(g, "x", &[1, 128, 512 / s, 512 / s]);
            g.group_norm("gn", x, 32, 1e-6, None, None, false)
        }),
        Case::new("layer_norm", format!("2×{}×320", hw * hw), move |g| {
            let x = input(g, "x", &[2, hw * hw, 320]);
            let w = input(g, "w", &[320]);
            let b = input(g, "b", &[320]);
            g.layer_norm("ln", x, 1e-5, Some(w), Some(b))
        }),
        Case::new("softmax", format!("2×8×{}×77", hw * hw), move |g| {
            let x = input(g, "x", &[2, 8, hw * hw, 77]);
            g.softmax("sm", x, 1.0)
        }),
    ];
    v
}

/// Measures bandwidth with a large buffer-to-buffer copy (host clock around submit and wait; the copy is
/// large enough for the overhead to vanish). Returns bytes per second (read + write).
pub fn copy_bandwidth(gpu: &Gpu, bytes: u64) -> Result<f64> {
    let mk = |label| {
        gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: bytes,
            usage: wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })
    };
    let (a, b) = (mk("copy-src"), mk("copy-dst"));
    let mut best = f64::MAX;
    for _ in 0..3 {
        let t0 = Instant::now();
        let mut enc = gpu.device.create_command_encoder(&Default::default());
        enc.copy_buffer_to_buffer(&a, 0, &b, 0, bytes);
        gpu.queue.submit([enc.finish()]);
        gpu.wait()?;
        best = best.min(t0.elapsed().as_secs_f64());
    }
    Ok(2.0 * bytes as f64 / best)
}

/// Plans and times one case.
pub fn run_case(gpu: &Arc<Gpu>, case: &Case, reps: usize) -> Result<Row> {
    let mut g = Graph::new();
    let out = (case.build)(&mut g)?;
    g.output(out);
    let node = g.nodes().last().expect("a case records one op");
    let ins: Vec<&TensorDesc> = node.inputs.iter().map(|t| g.desc(*t)).collect();
    let flops = node.op.flops(&ins, g.desc(out));
    let bytes = node.op.bytes(&ins, g.desc(out));
    let inputs: Vec<(TensorId, usize)> = node.inputs.iter().map(|t| (*t, g.desc(*t).numel())).collect();
    let plan = Plan::new(gpu.clone(), g)?;
    let mut rng = Rng::new(1);
    for (t, n) in inputs {
        if plan.write(t, &rng.vec(n, 1.0)).is_err() {
            continue; // constants and weights are not written
        }
    }
    plan.profile()?; // warm-up: first-use costs (pipeline compilation, page faults)
    let mut best = f64::MAX;
    for _ in 0..reps.max(1) {
        let t: f64 = plan.profile()?.iter().sum();
        best = best.min(t);
    }
    Ok(Row {
        name: case.name,
        shape: case.shape.clone(),
        seconds: best,
        gflops: flops / best / 1e9,
        gbs: bytes / best / 1e9,
        peak_mib: plan.memory().peak() as f64 / (1u64 << 20) as f64,
        gemm: case.gemm,
    })
}

/// Runs the kernel benchmark and prints the table to stdout.
pub fn run_kernels(gpu: &Arc<Gpu>, opts: &BenchOptions) -> Result<Vec<Row>> {
    println!("adapter: {}", gpu.describe());
    println!(
        "timing: {}; best of {} after a warm-up{}",
        if gpu.caps.timestamp_query { "GPU timestamps" } else { "host clock (no timestamp queries)" },
        opts.reps.max(1),
        if opts.quick { "; --quick: reduced spatial/token sizes" } else { "" }
    );
    let bw = copy_bandwidth(gpu, if opts.quick { 64 << 20 } else { 256 << 20 })?;
    let mut rows = Vec::new();
    for case in cases(opts.quick) {
        if let Some(f) = &opts.filter {
            if !case.name.contains(f.as_str()) {
                continue;
            }
        }
        if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            eprint!("  {} {} ...\r", case.name, case.shape);
        }
        rows.push(run_case(gpu, &case, opts.reps)?);
    }
    let peak_flops = rows.iter().filter(|r| r.gemm).map(|r| r.gflops).fold(0.0, f64::max);
    println!(
        "peaks: bandwidth {:.2} GB/s (buffer copy), compute {:.2} GFLOP/s (best GEMM row)",
        bw / 1e9,
        peak_flops
    );
    println!(
        "{:<28} {:<34} {:>10} {:>9} {:>8} {:>8} {:>7} {:>9}",
        "kernel", "shape", "time ms", "GFLOP/s", "%peak", "GB/s", "%peak", "mem MiB"
    );
    for r in &rows {
        let pf = if peak_flops > 0.0 && r.gflops > 0.0 { format!("{:.0}%", 100.0 * r.gflops / peak_flops) } else { "-".into() };
        let gf = if r.gflops > 0.0 { format!("{:.2}", r.gflops) } else { "-".into() };
        println!(
            "{:<28} {:<34} {:>10.3} {:>9} {:>8} {:>8.2} {:>6.0}% {:>9.1}",
            r.name,
            r.shape,
            r.seconds * 1e3,
            gf,
            pf,
            r.gbs,
            100.0 * r.gbs * 1e9 / bw,
            r.peak_mib
        );
    }
    Ok(rows)
}

/// Which networks `wgsd bench models` runs.
#[derive(Clone, Debug)]
pub struct ModelBenchOptions {
    /// Folder with the published `unet/`, `vae/` configs (e.g. `../shared/fixtures/configs/sd15`).
    pub config_dir: std::path::PathBuf,
    pub text: bool,
    pub unet: bool,
    pub vae: bool,
    /// UNet batch (2 = one CFG step) and latent size; VAE decode output is 8× the latent size.
    pub batch: usize,
    pub latent: usize,
    /// Also time every node (GPU timestamps) and print the slowest kinds and nodes.
    pub profile: bool,
    /// Build the plans and report memory without running them (a real-size run takes minutes on a CPU
    /// driver).
    pub plan_only: bool,
}

/// GPU memory of one network in a generation: its weights (resident for the whole run) and the most its
/// plan holds besides them (intermediates, inputs/outputs, uniforms).
#[derive(Clone, Copy, Default)]
struct NetMemory {
    weights: u64,
    activations: u64,
}

impl NetMemory {
    fn of(plan: &Plan) -> NetMemory {
        let m = plan.memory();
        NetMemory { weights: m.params, activations: m.peak() - m.params }
    }
}

/// The peak GPU memory of a whole generation: every network's weights stay loaded, and the text encoder,
/// UNet and VAE plans run one after another (the safety checker, loaded after the decode, is not counted).
fn print_generation_memory(gpu: &Gpu, text: NetMemory, unet: NetMemory, vae: NetMemory, size: usize) {
    let mib = |b: u64| b as f64 / (1u64 << 20) as f64;
    let weights = text.weights + unet.weights + vae.weights;
    let act = text.activations.max(unet.activations).max(vae.activations);
    println!(
        "generation {size}×{size} ({} weights, VAE {}): peak {:.0} MiB = weights {:.0} MiB (text {:.0} + UNet {:.0} + VAE encoder and decoder {:.0}) \
         + the largest plan's activations {:.0} MiB (text {:.0}, UNet {:.0}, VAE decode {:.0})",
        gpu.precision,
        gpu.vae_precision,
        mib(weights + act),
        mib(weights),
        mib(text.weights),
        mib(unet.weights),
        mib(vae.weights),
        mib(act),
        mib(text.activations),
        mib(unet.activations),
        mib(vae.activations),
    );
    // --low-vram: one network on the GPU at a time.
    let phases = [("text", text), ("UNet", unet), ("VAE", vae)];
    let (name, worst) = phases.iter().max_by_key(|(_, m)| m.weights + m.activations).copied().unwrap_or(("", NetMemory::default()));
    println!(
        "generation {size}×{size} with --low-vram: peak {:.0} MiB = the {name} phase (weights {:.0} + activations {:.0}); text {:.0}, UNet {:.0}, VAE {:.0} MiB",
        mib(worst.weights + worst.activations),
        mib(worst.weights),
        mib(worst.activations),
        mib(text.weights + text.activations),
        mib(unet.weights + unet.activations),
        mib(vae.weights + vae.activations),
    );
}

/// Per-node GPU times of one more run: the total by op kind, then the slowest nodes.
pub(crate) fn print_profile(plan: &Plan) -> Result<()> {
    let times = plan.profile()?;
    let g = plan.graph();
    let rows: Vec<(f64, &crate::graph::Node)> = times.iter().cloned().zip(g.nodes()).collect();
    let total: f64 = times.iter().sum();
    // Sums of (time, flops, count) by op kind, and by kind and shapes: nodes of one kind and the same input
    // shapes run the same kernel the same way, so their sum says which kernel shape is worth tuning (the
    // slowest single nodes hide a shape repeated 20 times).
    let mut by_kind: Vec<(String, f64, f64, usize)> = Vec::new();
    let mut by_shape: Vec<(String, f64, f64, usize)> = Vec::new();
    for (t, n) in &rows {
        let ins: Vec<&TensorDesc> = n.inputs.iter().map(|i| g.desc(*i)).collect();
        let f = n.op.flops(&ins, g.desc(n.output));
        let names: Vec<String> = ins.iter().map(|d| d.to_string()).collect();
        // A Winograd conv's GEMM is a matmul node: counted apart, so the conv's share stays visible.
        let kind = if n.name.contains(".winograd_gemm") { "winograd_gemm" } else { n.op.kind() };
        let shape = format!("{:<14} [{}] → {}", kind, names.join(", "), g.desc(n.output));
        for (sums, key) in [(&mut by_kind, kind.to_string()), (&mut by_shape, shape)] {
            match sums.iter_mut().find(|k| k.0 == key) {
                Some(k) => {
                    k.1 += t;
                    k.2 += f;
                    k.3 += 1;
                }
                None => sums.push((key, *t, f, 1)),
            }
        }
    }
    by_kind.sort_by(|a, b| b.1.total_cmp(&a.1));
    by_shape.sort_by(|a, b| b.1.total_cmp(&a.1));
    println!("  profile: {total:.2} s of GPU time in {} nodes", rows.len());
    for (kind, t, f, count) in &by_kind {
        println!("    {kind:<16} {count:>4} nodes {t:>9.3} s {:>5.1}%  {:>7.2} GFLOP/s", 100.0 * t / total, f / t.max(1e-12) / 1e9);
    }
    println!("  slowest shapes (nodes of one kind and input shapes, summed):");
    for (key, t, f, count) in by_shape.iter().take(20) {
        println!("    {t:>8.3} s {count:>3}× {:>7.2} GFLOP/s  {key}", f / t.max(1e-12) / 1e9);
    }
    let mut slow: Vec<&(f64, &crate::graph::Node)> = rows.iter().collect();
    slow.sort_by(|a, b| b.0.total_cmp(&a.0));
    println!("  slowest nodes:");
    for (t, n) in slow.iter().take(15) {
        let ins: Vec<String> = n.inputs.iter().map(|i| g.desc(*i).to_string()).collect();
        println!("    {t:>8.3} s  {:<14} {}  [{}] → {}", n.op.kind(), n.name, ins.join(", "), g.desc(n.output));
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn time_plan(gpu: &Arc<Gpu>, label: &str, plan: &Plan, inputs: &[(TensorId, Vec<f32>)], out: TensorId, flops_hint: f64, profile: bool) -> Result<()> {
    for (t, v) in inputs {
        plan.write(*t, v)?;
    }
    // The first run pays one-time costs (drivers that compile pipelines or fault in memory lazily): it is
    // reported apart from the second, which gives the steady-state speed.
    let t0 = Instant::now();
    plan.run_and_read(&[out])?;
    let first = t0.elapsed().as_secs_f64();
    let t0 = Instant::now();
    let y = plan.run_and_read(&[out])?.remove(0);
    let secs = t0.elapsed().as_secs_f64();
    println!("{label}: first run {first:.2} s (one-time driver costs included), second run:");
    let finite = y.iter().all(|v| v.is_finite());
    let (mn, mx) = y.iter().fold((f32::MAX, f32::MIN), |(a, b), v| (a.min(*v), b.max(*v)));
    println!(
        "{label}: {:.2} s ({} nodes, {:.1} GFLOP/s at ~{:.0} GFLOP); output {} values in [{mn:.3}, {mx:.3}], {}",
        secs,
        plan.graph().nodes().len(),
        flops_hint / secs / 1e9,
        flops_hint / 1e9,
        y.len(),
        if finite { "all finite" } else { "NOT FINITE" }
    );
    println!("  memory: {}", plan.memory());
    if profile {
        print_profile(plan)?;
    }
    let _ = gpu;
    if !finite {
        return Err(crate::error::Error::usage(format!("{label}: output has non-finite values")));
    }
    Ok(())
}

/// Builds SD networks at real size with seeded random weights and runs each once: proves no device limit
/// is exceeded and reports time and peak memory.
pub fn run_models(gpu: &Arc<Gpu>, o: &ModelBenchOptions) -> Result<()> {
    use crate::models::config::{ClipTextConfig, UNetConfig, VaeConfig};
    use crate::models::weights::Weights;
    println!("adapter: {}", gpu.describe());
    let weights = Weights::random(1);
    let mut rng = Rng::new(7);
    let (mut text_mem, mut unet_mem, mut vae_mem) = (None, None, None);
    if o.text {
        // The text encoder of a generation: prompt and negative prompt, 77 tokens each.
        let cfg = ClipTextConfig::from_file(&o.config_dir.join("text_encoder/config.json"))?;
        let text = crate::models::clip::ClipTextModel::from_weights(gpu, cfg.clone(), &weights)?;
        let mut g = Graph::new();
        let ids = g.input("input_ids", TensorDesc::f32(&[2, 77]));
        let h = text.forward(&mut g, ids)?.last_hidden_state;
        g.output(h);
        let flops = total_flops(&g);
        let plan = Plan::new(gpu.clone(), g)?;
        text_mem = Some(NetMemory::of(&plan));
        if o.plan_only {
            println!("text encoder batch 2 (plan only): memory: {}", plan.memory());
        } else {
            // Token ids: start, 75 random tokens, end (any id below the vocabulary size will do).
            let ids_v: Vec<f32> = (0..2 * 77)
                .map(|i| match i % 77 {
                    0 => (cfg.vocab_size - 2) as f32,
                    76 => (cfg.vocab_size - 1) as f32,
                    _ => (rng.next_u64() as usize % (cfg.vocab_size - 2)) as f32,
                })
                .collect();
            time_plan(gpu, "text encoder batch 2", &plan, &[(ids, ids_v)], h, flops, o.profile)?;
        }
    }
    if o.unet {
        let cfg = UNetConfig::from_file(&o.config_dir.join("unet/config.json"))?;
        let t0 = Instant::now();
        let unet = crate::models::unet::UNet2DConditionModel::from_weights(gpu, cfg.clone(), &weights)?;
        println!("unet: weights generated and uploaded in {:.1} s", t0.elapsed().as_secs_f64());
        let mut g = Graph::new();
        let (b, s) = (o.batch, o.latent);
        // As generation runs it: an even batch is a guidance batch, each latent once under two contexts.
        let samples = if b % 2 == 0 { b / 2 } else { b };
        let x = g.input("sample", TensorDesc::f32(&[samples, cfg.in_channels, s, s]));
        let t = g.input("timestep", TensorDesc::f32(&[samples]));
        let c = g.input("encoder_hidden_states", TensorDesc::f32(&[b, 77, cfg.cross_attention_dim]));
        let y = unet.forward_chunked(&mut g, x, t, c, crate::models::transformer::FeedForwardChunking::INFERENCE)?;
        g.output(y);
        let flops = total_flops(&g);
        let t_plan = Instant::now();
        let plan = Plan::new(gpu.clone(), g)?;
        println!("unet: planned in {:.2} s (pipelines compiled on first use, cached after)", t_plan.elapsed().as_secs_f64());
        let inputs = vec![
            (x, rng.vec(samples * cfg.in_channels * s * s, 1.0)),
            (t, vec![500.0; samples]),
            (c, rng.vec(b * 77 * cfg.cross_attention_dim, 1.0)),
        ];
        unet_mem = Some(NetMemory::of(&plan));
        if o.plan_only {
            println!("unet batch {b} latent {s}×{s} (plan only): memory: {}", plan.memory());
        } else {
            time_plan(gpu, &format!("unet batch {b} latent {s}×{s}"), &plan, &inputs, y, flops, o.profile)?;
        }
    }
    if o.vae {
        let cfg = VaeConfig::from_file(&o.config_dir.join("vae/config.json"))?;
        let vae = crate::models::vae::AutoencoderKL::from_weights(gpu, cfg.clone(), &weights)?;
        let mut g = Graph::new();
        let s = o.latent;
        let z = g.input("latent", TensorDesc::f32(&[1, cfg.latent_channels, s, s]));
        let y = vae.decode(&mut g, z)?;
        g.output(y);
        let flops = total_flops(&g);
        let t_plan = Instant::now();
        let plan = Plan::new(gpu.clone(), g)?;
        println!("vae: planned in {:.2} s", t_plan.elapsed().as_secs_f64());
        // The encoder's weights are loaded too (img2img and inpainting use it); planned only to count them.
        let encoder_weights = {
            let mut g = Graph::new();
            let x = g.input("image", TensorDesc::f32(&[1, cfg.in_channels, 8 * s, 8 * s]));
            let m = vae.encode(&mut g, x)?;
            g.output(m);
            Plan::new(gpu.clone(), g)?.memory().params
        };
        vae_mem = Some(NetMemory { weights: NetMemory::of(&plan).weights + encoder_weights, ..NetMemory::of(&plan) });
        if o.plan_only {
            println!("vae decode {0}×{0} (plan only): memory: {1}", 8 * s, plan.memory());
        } else {
            time_plan(gpu, &format!("vae decode {0}×{0}", 8 * s), &plan, &[(z, rng.vec(cfg.latent_channels * s * s, 1.0))], y, flops, o.profile)?;
        }
    }
    if let (Some(t), Some(u), Some(v)) = (text_mem, unet_mem, vae_mem) {
        print_generation_memory(gpu, t, u, v, 8 * o.latent);
    }
    Ok(())
}

/// Sum of every node's FLOPs.
pub fn total_flops(g: &Graph) -> f64 {
    g.nodes()
        .iter()
        .map(|n| {
            let ins: Vec<&TensorDesc> = n.inputs.iter().map(|t| g.desc(*t)).collect();
            n.op.flops(&ins, g.desc(n.output))
        })
        .sum()
}
