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
