//! `wgsd bench train`: one DreamBooth LoRA step of a real-size UNet (seeded random weights, the published
//! configs), with and without gradient checkpointing: first and steady step time, GFLOP/s, and peak memory
//! split into weights, saved activations, gradients and optimizer state.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use crate::bench::total_flops;
use crate::error::Result;
use crate::gpu::Gpu;
use crate::models::clip::ClipTextModel;
use crate::models::config::{ClipTextConfig, UNetConfig};
use crate::models::nn::Loader;
use crate::models::unet::UNet2DConditionModel;
use crate::models::weights::Weights;
use crate::testing::Rng;
use crate::train::lora::{LoraSpec, TrainHooks};
use crate::train::optimizer::AdamWConfig;
use crate::train::step::{StepConfig, StepInputs, TrainStep};

#[derive(Clone, Debug)]
pub struct TrainBenchOptions {
    /// Folder with the published `unet/` and `text_encoder/` configs.
    pub config_dir: PathBuf,
    /// Samples per step (2 = one instance and one class image).
    pub batch: usize,
    /// Latent size (64 = 512×512 images).
    pub latent: usize,
    pub rank: usize,
    /// Which checkpointing settings to run.
    pub checkpointing: Vec<bool>,
    /// Timed steps after the first.
    pub steps: usize,
    /// Plan only: report memory without running a step.
    pub plan_only: bool,
    /// Also time every node once and print the slowest op kinds and nodes.
    pub profile: bool,
}

fn mib(b: u64) -> f64 {
    b as f64 / (1u64 << 20) as f64
}

pub fn run_train_bench(gpu: &Arc<Gpu>, o: &TrainBenchOptions) -> Result<()> {
    println!("adapter: {}", gpu.describe());
    let weights = Weights::random(1);
    let ucfg = UNetConfig::from_file(&o.config_dir.join("unet/config.json"))?;
    let tcfg = ClipTextConfig::from_file(&o.config_dir.join("text_encoder/config.json"))?;
    let hooks = TrainHooks::new("unet.", Some(LoraSpec::unet_attention(o.rank, o.rank as f64)), Default::default(), 0);
    let t0 = Instant::now();
    let unet = UNet2DConditionModel::from_loader(Loader::for_training(gpu, &weights, &hooks), ucfg.clone())?;
    let text = ClipTextModel::from_loader(Loader::new(gpu, &weights), tcfg)?;
    let adapters = hooks.adapters();
    let n_lora: usize = adapters.iter().map(|p| p.desc.numel()).sum();
    println!("weights generated and uploaded in {:.1} s; {} LoRA tensors, {:.2} M trainable parameters (rank {})", t0.elapsed().as_secs_f64(), adapters.len(), n_lora as f64 / 1e6, o.rank);
    let (b, s, c) = (o.batch, o.latent, ucfg.in_channels);
    let mut rng = Rng::new(3);
    let noisy = rng.vec(b * c * s * s, 1.0);
    let target = rng.vec(b * c * s * s, 1.0);
    let ids: Vec<f32> = (0..b * 77).map(|i| (i % 300) as f32).collect();
    let ts: Vec<f32> = (0..b).map(|i| (100 + 400 * i) as f32).collect();
    let w = vec![1.0 / b as f32; b];
    for &ckpt in &o.checkpointing {
        let label = format!("lora step batch {b} latent {s}×{s} checkpointing {}", if ckpt { "on" } else { "off" });
        let cfg = StepConfig { batch: b, latent: [c, s, s], seq: 77, max_grad_norm: 1.0, recompute: ckpt, grad_accum: 1 };
        let trainable: Vec<_> = adapters.iter().map(|p| (p.name.clone(), p.clone())).collect();
        let t_plan = Instant::now();
        let mut step = TrainStep::new(gpu.clone(), &unet, &text, trainable, &cfg, Some(AdamWConfig::default()))?;
        let m = step.memory();
        println!("{label}: planned in {:.1} s, {} nodes, ~{:.0} GFLOP per step", t_plan.elapsed().as_secs_f64(), step.plan_graph().nodes().len(), step.flops() / 1e9);
        println!(
            "  memory: peak {:.1} MiB = weights {:.1} + saved activations and temporaries {:.1} + gradients {:.2} + optimizer state {:.2} + other {:.1}",
            mib(m.peak()),
            mib(m.weights),
            mib(m.activations),
            mib(m.gradients),
            mib(m.optimizer),
            mib(m.other)
        );
        println!("  plan: {}", step.plan_memory());
        if o.plan_only {
            continue;
        }
        let flops = step.flops();
        let x = StepInputs { noisy: &noisy, timesteps: &ts, input_ids: &ids, target: &target, weights: &w };
        let t0 = Instant::now();
        let r = step.step(&x, 1e-4)?;
        let first = t0.elapsed().as_secs_f64();
        println!(
            "  first step {first:.2} s ({:.1} GFLOP/s; one-time driver costs included): loss {:.5}, grad norm {:.5}",
            step.flops() / first / 1e9,
            r.loss,
            r.grad_norm
        );
        let mut best = f64::MAX;
        for _ in 0..o.steps {
            let t0 = Instant::now();
            let r = step.step(&x, 1e-4)?;
            let secs = t0.elapsed().as_secs_f64();
            best = best.min(secs);
            println!("  step {secs:.2} s ({:.1} GFLOP/s at ~{:.0} GFLOP): loss {:.5}, grad norm {:.5}", flops / secs / 1e9, flops / 1e9, r.loss, r.grad_norm);
            if !r.loss.is_finite() || !r.grad_norm.is_finite() {
                return Err(crate::error::Error::usage(format!("{label}: non-finite loss or gradient norm")));
            }
        }
        if o.profile {
            crate::bench::print_profile(step.plan())?;
        }
    }
    Ok(())
}

impl TrainStep {
    /// Floating-point operations of one step's graph (forward, backward, recomputation).
    pub fn flops(&self) -> f64 {
        total_flops(self.plan_graph())
    }
}
