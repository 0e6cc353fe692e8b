//! Helpers for checking kernels against their CPU twins: a small deterministic RNG, error metrics, and
//! `check_graph`, which runs a graph on the GPU and on the CPU and compares every output.

use std::sync::{Arc, OnceLock};

use crate::error::Result;
use crate::gpu::{Gpu, GpuOptions};
use crate::graph::plan::Plan;
use crate::graph::{Graph, TensorId};

/// SplitMix64: tiny, seedable, identical on every platform.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [-1, 1).
    pub fn uniform(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f64 / (1u64 << 24) as f64 * 2.0 - 1.0) as f32
    }
    pub fn vec(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.uniform() * scale).collect()
    }
}

/// ‖a − b‖ / ‖b‖ (b is the reference). Computed in f64.
pub fn rel_l2(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len(), "rel_l2 of slices of different lengths");
    let (mut num, mut den) = (0.0f64, 0.0f64);
    for (x, y) in a.iter().zip(b) {
        let d = *x as f64 - *y as f64;
        num += d * d;
        den += (*y as f64) * (*y as f64);
    }
    if den == 0.0 {
        num.sqrt()
    } else {
        (num / den).sqrt()
    }
}

/// Largest |a − b|; NaN when any difference is NaN (f64::max would hide it and report a NaN image as exact).
pub fn max_abs(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (*x as f64 - *y as f64).abs()).fold(0.0, |m, d| if d.is_nan() || m.is_nan() { f64::NAN } else { m.max(d) })
}

/// The training fixture folder, or None after printing why its tests are SKIPPED.
pub fn train_fixtures() -> Option<std::path::PathBuf> {
    let dir = crate::fixtures::train_dir();
    if dir.join("cases.json").exists() {
        Some(dir)
    } else {
        eprintln!("SKIPPED: no training fixtures at {} (set {} to a diffusers training fixture folder)", dir.display(), crate::fixtures::TRAIN_ENV);
        None
    }
}

/// The tiny fixture model `name` (`sd15`, `sd2`, …), or None after printing why its tests are SKIPPED.
pub fn tiny_model(name: &str) -> Option<std::path::PathBuf> {
    let dir = crate::fixtures::dir().join(name);
    if dir.join("model_index.json").exists() {
        Some(dir)
    } else {
        eprintln!("SKIPPED: no tiny model at {} (set {})", dir.display(), crate::fixtures::ENV);
        None
    }
}

/// A small txt2img request for pipeline tests: one 64×64 image of `prompt` with `negative`, guidance 7,
/// `steps` steps.
pub fn small_request(prompt: &str, negative: &str, steps: usize) -> crate::pipeline::txt2img::Txt2ImgRequest {
    crate::pipeline::txt2img::Txt2ImgRequest {
        prompts: vec![prompt.into()],
        negative_prompts: vec![negative.into()],
        images_per_prompt: 1,
        width: 64,
        height: 64,
        steps,
        guidance_scale: 7.0,
        clip_skip: 0,
    }
}

/// The GPU shared by a test process. Fails (never skips) when no adapter is found, with the error that
/// says what to install.
pub fn test_gpu() -> Arc<Gpu> {
    static GPU: OnceLock<Arc<Gpu>> = OnceLock::new();
    GPU.get_or_init(|| match Gpu::new(&GpuOptions::from_env()) {
        Ok(g) => Arc::new(g),
        Err(e) => panic!("GPU tests need a GPU adapter: {e}"),
    })
    .clone()
}

/// A second GPU for tests whose kernels read every input from storage buffers ([`Gpu::buffer_reads_only`]):
/// on CPU adapters, where the shared one reads the large kernels' inputs through textures, it runs the
/// buffer forms those adapters would otherwise never run in the tests.
pub fn test_gpu_buffer_reads() -> Arc<Gpu> {
    static GPU: OnceLock<Arc<Gpu>> = OnceLock::new();
    GPU.get_or_init(|| match Gpu::new(&GpuOptions::from_env()) {
        Ok(mut g) => {
            g.buffer_reads_only = true;
            Arc::new(g)
        }
        Err(e) => panic!("GPU tests need a GPU adapter: {e}"),
    })
    .clone()
}

/// Result of comparing one output of a graph.
#[derive(Debug)]
pub struct Comparison {
    pub name: String,
    pub rel_l2: f64,
    pub max_abs: f64,
}

/// Runs `graph` on the GPU and with the CPU twins on the same inputs and compares every output.
pub fn check_graph(gpu: &Arc<Gpu>, graph: Graph, inputs: &[(TensorId, Vec<f32>)]) -> Result<Vec<Comparison>> {
    Ok(check_graph_kinds(gpu, graph, inputs)?.0)
}

/// [`check_graph`], also returning the kinds of the nodes the plan ran (after ops expanded on this device:
/// which form a kernel took).
pub fn check_graph_kinds(gpu: &Arc<Gpu>, graph: Graph, inputs: &[(TensorId, Vec<f32>)]) -> Result<(Vec<Comparison>, Vec<&'static str>)> {
    let refs: Vec<(TensorId, &[f32])> = inputs.iter().map(|(t, v)| (*t, v.as_slice())).collect();
    let expected = graph.eval_cpu(&refs)?;
    let outputs = graph.outputs.clone();
    let plan = Plan::new(gpu.clone(), graph)?;
    for (t, v) in inputs {
        plan.write(*t, v)?;
    }
    plan.run()?;
    let mut out = Vec::new();
    for t in outputs {
        let got = plan.read(t)?;
        let want = expected[t.0].as_ref().expect("output evaluated");
        out.push(Comparison {
            name: plan.graph().name(t).to_string(),
            rel_l2: rel_l2(&got, want),
            max_abs: max_abs(&got, want),
        });
    }
    let kinds = plan.graph().nodes().iter().map(|n| n.op.kind()).collect();
    Ok((out, kinds))
}

/// Asserts every comparison is within `tol` relative L2, printing all of them first.
pub fn assert_close(cmp: &[Comparison], tol: f64) {
    for c in cmp {
        println!("{}: rel_l2 {:.3e} max_abs {:.3e}", c.name, c.rel_l2, c.max_abs);
    }
    for c in cmp {
        assert!(c.rel_l2 <= tol, "{}: relative L2 {:.3e} > {:.1e}", c.name, c.rel_l2, tol);
        assert!(c.rel_l2.is_finite(), "{}: non-finite result", c.name);
    }
}

/// One input of a [`grad_check`]: its shape, its values, and whether its gradient is checked (integer
/// inputs such as token ids are not).
pub struct GradInput {
    pub shape: Vec<usize>,
    pub values: Vec<f32>,
    pub wants_grad: bool,
}

impl GradInput {
    /// Random values in [-scale, scale), gradient checked.
    pub fn random(rng: &mut Rng, shape: &[usize], scale: f32) -> Self {
        GradInput { shape: shape.to_vec(), values: rng.vec(shape.iter().product(), scale), wants_grad: true }
    }
    /// Given values, gradient not checked.
    pub fn fixed(shape: &[usize], values: Vec<f32>) -> Self {
        GradInput { shape: shape.to_vec(), values, wants_grad: false }
    }
}

/// What [`grad_check`] measured for one input.
#[derive(Debug)]
pub struct GradReport {
    pub input: usize,
    /// CPU twins' gradient against central finite differences of the CPU forward (f64 loss), on the
    /// checked coordinates.
    pub fd_rel_l2: f64,
    /// GPU gradient against the CPU twins' (all coordinates); None when no GPU was given.
    pub gpu_rel_l2: Option<f64>,
}

/// Checks a backward rule. `build` records a forward computation of the inputs; the loss is `Σ y · r` with a
/// random `r`. The backward graph's CPU twins are compared with central finite differences of the forward
/// CPU twins (step `h`, at most `max_coords` coordinates per input), and, with a GPU, the planned backward
/// graph with the twins.
pub fn grad_check(
    gpu: Option<&Arc<Gpu>>,
    inputs: &[GradInput],
    h: f64,
    max_coords: usize,
    build: &dyn Fn(&mut Graph, &[TensorId]) -> Result<TensorId>,
) -> Result<Vec<GradReport>> {
    use crate::graph::autodiff::BackwardOpts;
    use crate::tensor::TensorDesc;
    let mut rng = Rng::new(0x5eed);
    // The loss weights r.
    let probe = {
        let mut g = Graph::new();
        let ids: Vec<TensorId> = inputs.iter().enumerate().map(|(i, x)| g.input(&format!("x{i}"), TensorDesc::f32(&x.shape))).collect();
        let y = build(&mut g, &ids)?;
        g.desc(y).clone()
    };
    let r = rng.vec(probe.numel(), 1.0);

    // Forward loss on the CPU, in f64.
    let loss = |vals: &[Vec<f32>]| -> Result<f64> {
        let mut g = Graph::new();
        let ids: Vec<TensorId> = inputs.iter().enumerate().map(|(i, x)| g.input(&format!("x{i}"), TensorDesc::f32(&x.shape))).collect();
        let y = build(&mut g, &ids)?;
        let feed: Vec<(TensorId, &[f32])> = ids.iter().zip(vals).map(|(t, v)| (*t, v.as_slice())).collect();
        let out = g.eval_cpu(&feed)?;
        let yv = out[y.index()].as_ref().expect("evaluated");
        Ok(yv.iter().zip(&r).map(|(a, b)| *a as f64 * *b as f64).sum())
    };

    // The backward graph.
    let mut g = Graph::new();
    let ids: Vec<TensorId> = inputs.iter().enumerate().map(|(i, x)| g.input(&format!("x{i}"), TensorDesc::f32(&x.shape))).collect();
    let y = build(&mut g, &ids)?;
    let rt = g.input("r", probe.clone());
    let wrt: Vec<TensorId> = ids.iter().zip(inputs).filter(|(_, x)| x.wants_grad).map(|(t, _)| *t).collect();
    let grads = g.backward_from(&[(y, rt)], &wrt, BackwardOpts::default())?;
    let mut feed: Vec<(TensorId, Vec<f32>)> = ids.iter().zip(inputs).map(|(t, x)| (*t, x.values.clone())).collect();
    feed.push((rt, r.clone()));
    let refs: Vec<(TensorId, &[f32])> = feed.iter().map(|(t, v)| (*t, v.as_slice())).collect();
    let cpu = g.eval_cpu(&refs)?;
    let grad_ids: Vec<Option<TensorId>> = ids.iter().map(|t| grads.get(&g, *t)).collect();

    let mut reports = Vec::new();
    let base: Vec<Vec<f32>> = inputs.iter().map(|x| x.values.clone()).collect();
    for (i, x) in inputs.iter().enumerate() {
        if !x.wants_grad {
            continue;
        }
        let analytic: Vec<f32> = match grad_ids[i] {
            Some(t) => cpu[t.index()].clone().expect("gradient evaluated"),
            None => vec![0.0; x.values.len()],
        };
        let n = x.values.len();
        let coords: Vec<usize> = if n <= max_coords { (0..n).collect() } else { (0..max_coords).map(|_| (rng.next_u64() % n as u64) as usize).collect() };
        let (mut fd, mut an) = (Vec::new(), Vec::new());
        for &c in &coords {
            let mut vals = base.clone();
            vals[i][c] = (x.values[c] as f64 + h) as f32;
            let hp = vals[i][c] as f64 - x.values[c] as f64;
            let lp = loss(&vals)?;
            vals[i][c] = (x.values[c] as f64 - h) as f32;
            let hm = x.values[c] as f64 - vals[i][c] as f64;
            let lm = loss(&vals)?;
            fd.push(((lp - lm) / (hp + hm)) as f32);
            an.push(analytic[c]);
        }
        reports.push(GradReport { input: i, fd_rel_l2: rel_l2(&an, &fd), gpu_rel_l2: None });
    }

    if let Some(gpu) = gpu {
        let plan = Plan::new(gpu.clone(), g)?;
        for (t, v) in &feed {
            plan.write(*t, v)?;
        }
        plan.run()?;
        for rep in reports.iter_mut() {
            if let Some(t) = grad_ids[rep.input] {
                let got = plan.read(t)?;
                let want = cpu[t.index()].as_ref().expect("gradient evaluated");
                rep.gpu_rel_l2 = Some(rel_l2(&got, want));
            }
        }
    }
    Ok(reports)
}

/// Asserts every report of a [`grad_check`] is within the tolerances (printing them all first).
pub fn assert_grads(what: &str, reports: &[GradReport], fd_tol: f64, gpu_tol: f64) {
    for r in reports {
        println!("{what}: input {} fd rel_l2 {:.3e} gpu rel_l2 {:?}", r.input, r.fd_rel_l2, r.gpu_rel_l2);
    }
    assert!(!reports.is_empty(), "{what}: no gradient was checked");
    for r in reports {
        assert!(r.fd_rel_l2.is_finite() && r.fd_rel_l2 <= fd_tol, "{what}: input {}: twin vs finite differences {:.3e} > {:.1e}", r.input, r.fd_rel_l2, fd_tol);
        if let Some(g) = r.gpu_rel_l2 {
            assert!(g.is_finite() && g <= gpu_tol, "{what}: input {}: GPU vs twin {:.3e} > {:.1e}", r.input, g, gpu_tol);
        }
    }
}
