//! The `wgsd` command line.

use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use wgsd::bench::{run_kernels, BenchOptions};
use wgsd::gpu::{list_adapters, Gpu, GpuOptions};

#[derive(Parser)]
#[command(name = "wgsd", version, about = "Stable Diffusion on hand-written WGSL kernels (wgpu: Vulkan, Metal, DX12)")]
struct Cli {
    /// GPU backend: vulkan, metal, dx12 or gl (default: vulkan, metal, dx12; env WGSD_BACKEND).
    #[arg(long, global = true)]
    backend: Option<String>,
    /// Use the adapter whose name contains this text (env WGSD_ADAPTER; see `wgsd devices`).
    #[arg(long, global = true)]
    adapter: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List the GPU adapters and describe the one wgsd would use.
    Devices,
    /// Benchmarks.
    Bench {
        #[command(subcommand)]
        what: BenchWhat,
    },
    /// Check wgsd against a folder of diffusers-made reference fixtures; one line per case.
    Verify {
        /// Fixture folder (default: $WGSD_FIXTURES or ../shared/fixtures/tiny).
        #[arg(long)]
        fixtures: Option<std::path::PathBuf>,
    },
    /// Generate images from a prompt (txt2img).
    Generate {
        /// Diffusers model folder, or a Hugging Face repo id (downloaded into the Hugging Face cache).
        #[arg(long)]
        model: String,
        #[arg(long)]
        prompt: String,
        #[arg(long, default_value = "")]
        negative_prompt: String,
        #[arg(long, default_value_t = 20)]
        steps: usize,
        /// Classifier-free guidance scale (≤ 1 turns guidance off).
        #[arg(long, default_value_t = 7.5)]
        cfg_scale: f32,
        /// Random seed (default: a random one, printed and stored in the PNG).
        #[arg(long)]
        seed: Option<u64>,
        /// Image width, a multiple of 8 (default: the model's native size).
        #[arg(long)]
        width: Option<usize>,
        #[arg(long)]
        height: Option<usize>,
        /// Sampler: A1111 names (euler_a, euler, heun, lms, ddim, ddpm, pndm, dpmpp_2m, dpmpp_2m_sde, unipc, lcm)
        /// or diffusers class names; default: the model's scheduler.
        #[arg(long)]
        sampler: Option<String>,
        /// Karras sigmas (with euler, heun, lms, dpmpp_2m, dpmpp_2m_sde).
        #[arg(long)]
        karras: bool,
        /// Number of images; image i uses seed + i.
        #[arg(long, default_value_t = 1)]
        n_images: usize,
        /// Images per UNet batch (faster on big GPUs; a batch shares its first image's seed).
        #[arg(long, default_value_t = 1)]
        batch: usize,
        /// CLIP skip as in A1111: 1 = last layer, 2 = penultimate.
        #[arg(long, default_value_t = 1)]
        clip_skip: usize,
        /// Weight variant, e.g. fp16 (reads `*.fp16.safetensors`).
        #[arg(long)]
        variant: Option<String>,
        /// Output PNG; several images are numbered (out-1.png, out-2.png, …).
        #[arg(long, default_value = "wgsd.png")]
        out: std::path::PathBuf,
        /// Replace existing files.
        #[arg(long)]
        overwrite: bool,
    },
}

#[derive(Subcommand)]
enum BenchWhat {
    /// Real-size SD networks with seeded random weights (no download): one UNet evaluation and one VAE
    /// decode; reports time, GFLOP/s and peak memory, and checks no device limit is exceeded.
    Models {
        /// Folder with the published configs (`unet/config.json`, `vae/config.json`).
        #[arg(long, default_value = "../shared/fixtures/configs/sd15")]
        configs: std::path::PathBuf,
        /// Only the UNet.
        #[arg(long, conflicts_with = "vae_only")]
        unet_only: bool,
        /// Only the VAE decoder.
        #[arg(long)]
        vae_only: bool,
        /// UNet batch (2 = one classifier-free-guidance step).
        #[arg(long, default_value_t = 2)]
        batch: usize,
        /// Latent size (64 = a 512×512 image).
        #[arg(long, default_value_t = 64)]
        latent: usize,
    },
    /// One row per kernel at Stable Diffusion 1.5 shapes: time, GFLOP/s, GB/s, % of the adapter's peaks.
    Kernels {
        /// Reduced sizes and a single timed repetition (under a minute on a CPU Vulkan driver).
        #[arg(long)]
        quick: bool,
        /// Timed repetitions per row; the best is reported.
        #[arg(long)]
        reps: Option<usize>,
        /// Only rows whose kernel name contains this text.
        #[arg(long)]
        filter: Option<String>,
    },
}

fn gpu_options(cli: &Cli) -> GpuOptions {
    let env = GpuOptions::from_env();
    GpuOptions { backend: cli.backend.clone().or(env.backend), adapter: cli.adapter.clone().or(env.adapter) }
}

fn run(cli: Cli) -> Result<(), String> {
    let opts = gpu_options(&cli);
    match cli.command {
        Command::Devices => {
            let adapters = list_adapters(&opts).map_err(|e| e.to_string())?;
            for a in &adapters {
                println!("{:<40} {:?} {:?} (driver: {} {})", a.name, a.backend, a.device_type, a.driver, a.driver_info);
            }
            let gpu = Gpu::new(&opts).map_err(|e| e.to_string())?;
            println!("\nselected: {}", gpu.describe());
            Ok(())
        }
        Command::Bench { what: BenchWhat::Models { configs, unet_only, vae_only, batch, latent } } => {
            let gpu = Arc::new(Gpu::new(&opts).map_err(|e| e.to_string())?);
            let o = wgsd::bench::ModelBenchOptions { config_dir: configs, unet: !vae_only, vae: !unet_only, batch, latent };
            wgsd::bench::run_models(&gpu, &o).map_err(|e| e.to_string())
        }
        Command::Bench { what: BenchWhat::Kernels { quick, reps, filter } } => {
            let gpu = Arc::new(Gpu::new(&opts).map_err(|e| e.to_string())?);
            let bo = BenchOptions { quick, reps: reps.unwrap_or(if quick { 1 } else { 3 }), filter };
            run_kernels(&gpu, &bo).map_err(|e| e.to_string())?;
            Ok(())
        }
        Command::Verify { fixtures } => {
            let dir = fixtures.unwrap_or_else(wgsd::fixtures::dir);
            if !dir.exists() {
                return Err(format!("fixture folder {} does not exist", dir.display()));
            }
            let gpu = Arc::new(Gpu::new(&opts).map_err(|e| e.to_string())?);
            let results = wgsd::verify::run_all(&dir, &gpu).map_err(|e| e.to_string())?;
            for r in &results {
                println!("{}", r.line());
            }
            let skipped = results.iter().filter(|r| r.skipped).count();
            let failed = results.iter().filter(|r| !r.passed && !r.skipped).count();
            let passed = results.iter().filter(|r| r.passed).count();
            if skipped > 0 {
                println!("{passed} passed, {failed} failed ({skipped} skipped: not implemented yet)");
            } else {
                println!("{passed} passed, {failed} failed");
            }
            if failed > 0 || results.is_empty() {
                return Err(if results.is_empty() { "no cases found".into() } else { format!("{failed} case(s) failed") });
            }
            Ok(())
        }
        Command::Generate {
            model,
            prompt,
            negative_prompt,
            steps,
            cfg_scale,
            seed,
            width,
            height,
            sampler,
            karras,
            n_images,
            batch,
            clip_skip,
            variant,
            out,
            overwrite,
        } => {
            let gpu = Arc::new(Gpu::new(&opts).map_err(|e| e.to_string())?);
            let o = wgsd::generate::GenerateOptions {
                model,
                variant,
                prompt,
                negative_prompt,
                steps,
                cfg_scale,
                seed,
                width,
                height,
                sampler,
                karras,
                n_images,
                batch,
                clip_skip,
                out,
                overwrite,
            };
            wgsd::generate::run(gpu, &o).map(|_| ()).map_err(|e| e.to_string())
        }
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
