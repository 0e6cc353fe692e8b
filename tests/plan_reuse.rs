//! A second run of the same shape reuses the UNet plan of the first (no new plan for it) and gives the
//! same image as a fresh model; split guidance batches of equal shapes get two distinct plans; under
//! `--low-vram` nothing is kept. One test in its own binary: it reads the process-wide plan counter.

use std::sync::Arc;

use wgsd::gpu::{Gpu, GpuOptions, LowVramChoice};
use wgsd::pipeline::denoise::Condition;
use wgsd::pipeline::StableDiffusion;
use wgsd::schedulers::{self, TorchCpuGenerator};
use wgsd::timing::{Phase, Timings};

/// Generates once; returns the image and how many plans were built meanwhile.
fn generate(sd: &StableDiffusion, prompt: &str, seed: u64) -> (Vec<f32>, u64) {
    let plans = |t: Timings| t.calls_of(Phase::PlanBuild);
    let before = plans(Timings::now());
    let mut sched = schedulers::from_config("EulerDiscreteScheduler", &sd.scheduler_config, "test").unwrap();
    let out = sd.generate(&wgsd::testing::small_request(prompt, "blurry", 2), &Condition::Text, sched.as_mut(), &mut TorchCpuGenerator::new(seed), &mut |_, _| {}).unwrap();
    (out.images, plans(Timings::now()) - before)
}

#[test]
fn unet_plans_are_reused_between_runs_of_one_shape() {
    let Some(dir) = wgsd::testing::tiny_model("sd15") else { return };
    let gpu = Arc::new(Gpu::new(&GpuOptions { low_vram: Some(LowVramChoice::Off), ..GpuOptions::from_env() }).unwrap());
    let sd = StableDiffusion::load(gpu.clone(), &dir, None).unwrap();
    let (first, built_first) = generate(&sd, "a red fox", 1);
    let (second, built_second) = generate(&sd, "a blue bird", 2);
    // Text encoder, UNet, VAE decoder the first time; the UNet's plan is kept for the second.
    assert_eq!(built_first, 3, "plans built by the first run");
    assert_eq!(built_second, 2, "the second run reuses the UNet plan");
    let fresh = StableDiffusion::load(gpu.clone(), &dir, None).unwrap();
    assert_eq!(generate(&fresh, "a blue bird", 2).0, second, "a reused plan gives the image a fresh one gives");
    assert_ne!(first, second);

    // Split guidance with equal shapes: two plans side by side, then both reused.
    let mut split = StableDiffusion::load(gpu.clone(), &dir, None).unwrap();
    split.separate_guidance_batches = true;
    let (a, built) = generate(&split, "a blue bird", 2);
    assert_eq!(built, 4, "text encoder, two UNet batches, VAE");
    let (b, built) = generate(&split, "a blue bird", 2);
    assert_eq!(built, 2, "both UNet plans reused");
    assert_eq!(a, b);
    let max = (a.iter().zip(&second)).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
    assert!(max < 1e-4, "split batches give the joint batch's image (max diff {max})");

    // Under --low-vram plans are not kept: they would hold the UNet's weights on the GPU.
    let lv_gpu = Arc::new(Gpu::new(&GpuOptions { low_vram: Some(LowVramChoice::On), ..GpuOptions::from_env() }).unwrap());
    let lv = StableDiffusion::load(lv_gpu, &dir, None).unwrap();
    generate(&lv, "a blue bird", 2);
    let (_, built) = generate(&lv, "a blue bird", 2);
    assert_eq!(built, 3, "nothing kept under --low-vram");
}
