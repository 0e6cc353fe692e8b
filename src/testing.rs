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

pub fn max_abs(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (*x as f64 - *y as f64).abs()).fold(0.0, f64::max)
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

/// Result of comparing one output of a graph.
#[derive(Debug)]
pub struct Comparison {
    pub name: String,
    pub rel_l2: f64,
    pub max_abs: f64,
}

/// Runs `graph` on the GPU and with the CPU twins on the same inputs and compares every output.
pub fn check_graph(gpu: &Arc<Gpu>, graph: Graph, inputs: &[(TensorId, Vec<f32>)]) -> Result<Vec<Comparison>> {
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
    Ok(out)
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
