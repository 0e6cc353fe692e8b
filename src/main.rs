//! The `wgsd` command line.

use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use wgsd::bench::{run_kernels, BenchOptions};
use wgsd::generate::Mode;
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
    /// Model precision: auto (f16 where the adapter has SHADER_F16, else f32), f32 or f16: f16 stores
    /// the Linear/Conv2d weights in half precision (half the memory). Default: auto when generating, f32
    /// for verify and bench.
    #[arg(long, global = true)]
    precision: Option<wgsd::precision::PrecisionChoice>,
    /// VAE precision (default f32: SD's VAE overflows in f16; verify: the --precision).
    #[arg(long, global = true)]
    vae_precision: Option<wgsd::precision::PrecisionChoice>,
    /// In networks loaded in f16, GroupNorms hand their output to the convolution after them in f16
    /// (statistics and sums stay f32): 10-20 % faster convolutions on CPU adapters such as lavapipe, at
    /// about 1.2x the f16 weights' error (see README, Precision and memory). Default: off.
    #[arg(long, global = true)]
    f16_activations: bool,
    /// Keep only the network in use on the GPU (text encoder, UNet, VAE in turn): peak GPU memory is the
    /// largest network and its activations, at the cost of uploading each network once per image batch
    /// (weights unchanged since loading are read again from their files, others wait in host memory).
    /// `--low-vram` alone = on. Default: auto when generating (on for CPU adapters such as lavapipe,
    /// whose GPU memory is host memory; off for GPUs), off otherwise.
    #[arg(long, global = true, value_name = "on|off|auto", num_args = 0..=1, require_equals = true, default_missing_value = "on")]
    low_vram: Option<wgsd::gpu::LowVramChoice>,
    /// At the end, print where the run's wall-clock time went: reading weights, uploading, compiling
    /// pipelines, building plans, and the rest (GPU work, host code).
    #[arg(long, global = true)]
    timings: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once; boxing the training flags buys nothing
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
        /// Run only these case families (tokenizer, sched, text, unet, vae, pipe, block, safety, depth, train, lora).
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
        /// Run the train.* cases with gradient checkpointing (resnets and transformer blocks recomputed in
        /// the backward pass).
        #[arg(long)]
        checkpointing: bool,
    },
    /// Fine-tune a model on your own images.
    Train {
        #[command(subcommand)]
        what: TrainWhat,
    },
    /// Generate images from a prompt (txt2img).
    Generate {
        #[command(flatten)]
        gen: GenArgs,
    },
    /// Serve an AUTOMATIC1111-compatible HTTP API (/sdapi/v1/txt2img, img2img, options, progress, …).
    Serve(ServeArgs),
    /// Redraw an image guided by a prompt (img2img).
    Img2img {
        #[command(flatten)]
        gen: GenArgs,
        /// The init image (PNG or JPEG; gray or RGBA become RGB). Its size is the output size.
        #[arg(long)]
        image: std::path::PathBuf,
        /// How much to change it, in (0, 1]: the last ⌊steps × strength⌋ steps are run.
        #[arg(long, default_value_t = 0.8)]
        strength: f64,
    },
    /// Repaint the white part of a mask (9-channel inpainting models, or any SD model by blending).
    Inpaint {
        #[command(flatten)]
        gen: GenArgs,
        /// The image to repaint (PNG or JPEG). Its size is the output size.
        #[arg(long)]
        image: std::path::PathBuf,
        /// The image's size or aspect ratio; white (≥ 50% gray) = repaint, black = keep.
        #[arg(long)]
        mask: std::path::PathBuf,
        /// 1 repaints from pure noise; lower keeps more of what was under the mask.
        #[arg(long, default_value_t = 1.0)]
        strength: f64,
    },
    /// Redraw an image keeping its depth layout (SD 2 depth models).
    Depth2img {
        #[command(flatten)]
        gen: GenArgs,
        /// The image to redraw (PNG or JPEG). Its size is the output size.
        #[arg(long)]
        image: std::path::PathBuf,
        /// A depth map image (brighter = nearer) of the image's aspect ratio; default: estimated by the
        /// model's depth_estimator.
        #[arg(long)]
        depth: Option<std::path::PathBuf>,
        /// How much to change the image, in (0, 1].
        #[arg(long, default_value_t = 0.8)]
        strength: f64,
    },
}

/// `wgsd serve`'s options.
#[derive(clap::Args)]
struct ServeArgs {
    /// The model loaded at startup: a diffusers folder, a Hugging Face repo id, or a single-file
    /// .safetensors checkpoint (with --config).
    #[arg(long, default_value = "stable-diffusion-v1-5/stable-diffusion-v1-5")]
    model: String,
    /// The diffusers folder or repo id giving configs, tokenizer and scheduler to single-file checkpoints.
    #[arg(long)]
    config: Option<String>,
    /// Folder of checkpoints clients may switch to (sd_model_checkpoint): diffusers folders, and with
    /// --config single .safetensors files.
    #[arg(long)]
    models_dir: Option<std::path::PathBuf>,
    /// Folder where the prompts' <lora:NAME…> tags find NAME.safetensors.
    #[arg(long)]
    lora_dir: Option<std::path::PathBuf>,
    /// Folder of textual-inversion embeddings, triggered by their file names in prompts.
    #[arg(long)]
    embeddings_dir: Option<std::path::PathBuf>,
    /// Address to listen on; an address other than loopback needs --api-auth or --api-key (or --insecure).
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port (0 = any free port, printed at startup).
    #[arg(long, default_value_t = 7860)]
    port: u16,
    /// HTTP Basic credentials, user:password (several separated by commas), as A1111's --api-auth.
    #[arg(long, value_name = "USER:PASS")]
    api_auth: Option<String>,
    /// An API key clients send as `Authorization: Bearer KEY` (or `X-API-Key: KEY`).
    #[arg(long, value_name = "KEY")]
    api_key: Option<String>,
    /// Allow a non-loopback --host without authentication.
    #[arg(long)]
    insecure: bool,
    /// Jobs that may wait while one runs; more are answered 503 with Retry-After.
    #[arg(long, default_value_t = 16)]
    max_queue: usize,
    /// Largest request body in MiB (base64 images).
    #[arg(long, default_value_t = 64)]
    max_body_mb: usize,
    /// Largest width × height of a generated image.
    #[arg(long, default_value_t = 2048 * 2048)]
    max_pixels: usize,
    /// Largest number of steps.
    #[arg(long, default_value_t = 150)]
    max_steps: usize,
    /// Largest batch_size.
    #[arg(long, default_value_t = 8)]
    max_batch: usize,
    /// Largest batch_size × n_iter.
    #[arg(long, default_value_t = 32)]
    max_images: usize,
    /// The safety checker, for models that ship one (black, warn or off), as in generate.
    #[arg(long, default_value = "black")]
    safety_checker: wgsd::pipeline::safety::SafetyMode,
}

/// The options every generating command shares.
#[derive(clap::Args)]
struct GenArgs {
    /// Diffusers model folder, or a Hugging Face repo id (downloaded into the Hugging Face cache), or an
    /// original single-file checkpoint (.safetensors, SD 1.x / 2.x as A1111 uses them; needs --config).
    #[arg(long, default_value = "stable-diffusion-v1-5/stable-diffusion-v1-5")]
    model: String,
    /// With a single-file --model: the diffusers folder or repo id whose configs, tokenizer and scheduler
    /// go with it (e.g. stable-diffusion-v1-5/stable-diffusion-v1-5); its weights are not read.
    #[arg(long)]
    config: Option<String>,
    #[arg(long, required_unless_present = "prompt_file")]
    prompt: Option<String>,
    /// Prompts from a file, one a line (`-` = standard input; blank lines and `#` lines skipped): each is
    /// run with the other settings, images numbered on, seeds counting on.
    #[arg(long, conflicts_with = "prompt", value_name = "FILE")]
    prompt_file: Option<std::path::PathBuf>,
    #[arg(long, default_value = "")]
    negative_prompt: String,
    #[arg(long, default_value_t = 20)]
    steps: usize,
    /// Classifier-free guidance scale (≤ 1 turns guidance off).
    #[arg(long, default_value_t = 7.5)]
    cfg_scale: f32,
    /// Random seed; -1 or none = a random one (printed and stored in the PNG), as in A1111.
    #[arg(long, allow_negative_numbers = true)]
    seed: Option<i64>,
    /// Image width, a multiple of 8 (default: the init image's width, else the model's native size).
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
    /// For models that ship a safety checker (SD 1.x): `black` replaces flagged images with black ones
    /// (diffusers' default), `warn` keeps them and names them, `off` skips the check.
    #[arg(long, default_value = "black")]
    safety_checker: wgsd::pipeline::safety::SafetyMode,
    /// A LoRA file (kohya, diffusers or peft layout) merged at WEIGHT (default 1): FILE or FILE:WEIGHT;
    /// repeatable. The prompt's A1111 tags <lora:NAME:WEIGHT> / <lora:NAME:TE:UNET> are read from --lora-dir.
    #[arg(long, value_name = "FILE[:WEIGHT]")]
    lora: Vec<String>,
    /// Folder where the prompt's <lora:NAME…> tags find NAME.safetensors (sub-folders searched too).
    #[arg(long)]
    lora_dir: Option<std::path::PathBuf>,
    /// How prompts are read: `a1111` — emphasis (word:1.3), (word), [word], BREAK, and prompts of any
    /// length in 75-token chunks; `plain` — the text as diffusers reads it, cut at 77 tokens.
    #[arg(long, default_value = "a1111", value_parser = ["a1111", "plain"])]
    prompt_syntax: String,
    /// A textual-inversion embedding (.safetensors; A1111 or diffusers layout), triggered by its file
    /// name in the prompt or negative prompt (or by <name>); repeatable.
    #[arg(long, value_name = "FILE")]
    embedding: Vec<std::path::PathBuf>,
    /// Folder of embeddings (sub-folders searched too), each triggered by its file name, as in A1111.
    #[arg(long)]
    embeddings_dir: Option<std::path::PathBuf>,
    /// Decode (and encode) with the VAE in tiles, as diffusers' enable_tiling(): `on` whenever the image is
    /// larger than one tile, `off`, or `auto` only where the whole image would not fit in GPU memory.
    #[arg(long, default_value = "auto", value_parser = ["on", "off", "auto"])]
    vae_tiling: String,
    /// Another VAE: a diffusers AutoencoderKL folder or repo id (e.g. stabilityai/sd-vae-ft-mse), or a TAESD
    /// (AutoencoderTiny) one — `taesd` is madebyollin/taesd — which decodes fast and approximately.
    #[arg(long, value_name = "PATH|REPO|taesd")]
    vae: Option<String>,
    /// Write <out stem>-preview.png every N steps (decoded with the --vae TAESD when given, else the VAE).
    #[arg(long, value_name = "N")]
    preview: Option<usize>,
}

impl GenArgs {
    fn options(self, mode: wgsd::generate::Mode) -> Result<wgsd::generate::GenerateOptions, String> {
        let g = self;
        Ok(wgsd::generate::GenerateOptions {
            model: g.model,
            config: g.config,
            variant: g.variant,
            prompt: g.prompt.unwrap_or_default(),
            prompt_file: g.prompt_file,
            negative_prompt: g.negative_prompt,
            steps: g.steps,
            cfg_scale: g.cfg_scale,
            seed: wgsd::generate::seed_arg(g.seed)?,
            width: g.width,
            height: g.height,
            sampler: g.sampler,
            karras: g.karras,
            n_images: g.n_images,
            batch: g.batch,
            clip_skip: g.clip_skip,
            out: g.out,
            overwrite: g.overwrite,
            mode,
            safety: g.safety_checker,
            loras: g.lora,
            lora_dir: g.lora_dir,
            prompt_syntax: if g.prompt_syntax == "plain" { wgsd::prompt::PromptSyntax::Plain } else { wgsd::prompt::PromptSyntax::A1111 },
            embeddings: g.embedding,
            embeddings_dir: g.embeddings_dir,
            vae_tiling: g.vae_tiling.parse().unwrap_or_default(),
            vae: g.vae,
            preview: g.preview,
        })
    }
}

#[derive(Subcommand)]
enum TrainWhat {
    /// DreamBooth (diffusers' train_dreambooth_lora.py / train_dreambooth.py): teach the model a subject from
    /// a few photos; writes a LoRA that diffusers, A1111 and ComfyUI load (or a fine-tuned model with --full).
    Dreambooth(wgsd::train::cli::DreamBoothArgs),
}

#[derive(Subcommand)]
enum BenchWhat {
    /// Real-size SD networks with seeded random weights (no download): one text encoding (prompt and
    /// negative prompt), one UNet evaluation and one VAE decode; reports time, GFLOP/s and peak memory,
    /// and checks no device limit is exceeded.
    Models {
        /// Folder with the published configs (`unet/config.json`, `vae/config.json`).
        #[arg(long, default_value = "../shared/fixtures/configs/sd15")]
        configs: std::path::PathBuf,
        /// Only the UNet.
        #[arg(long, conflicts_with_all = ["vae_only", "text_only"])]
        unet_only: bool,
        /// Only the VAE decoder.
        #[arg(long, conflicts_with = "text_only")]
        vae_only: bool,
        /// Only the text encoder (CLIP, batch 2: prompt and negative prompt).
        #[arg(long)]
        text_only: bool,
        /// UNet batch (2 = one classifier-free-guidance step).
        #[arg(long, default_value_t = 2)]
        batch: usize,
        /// Latent size (64 = a 512×512 image).
        #[arg(long, default_value_t = 64)]
        latent: usize,
        /// Also time every node and print the slowest op kinds and nodes.
        #[arg(long)]
        profile: bool,
        /// Plan the networks and report memory (per network and for a whole generation) without running them.
        #[arg(long)]
        plan_only: bool,
    },
    /// One DreamBooth LoRA training step (rank r on the attention projections) of the real-size UNet with
    /// seeded random weights: step times, GFLOP/s, and peak memory split into weights, saved activations,
    /// gradients and optimizer state, with and without gradient checkpointing.
    Train {
        /// Folder with the published configs (`unet/`, `text_encoder/`).
        #[arg(long, default_value = "../shared/fixtures/configs/sd15")]
        configs: std::path::PathBuf,
        /// Samples per step (2 = one instance and one class image).
        #[arg(long, default_value_t = 2)]
        batch: usize,
        /// Latent size (64 = 512×512 images).
        #[arg(long, default_value_t = 64)]
        latent: usize,
        #[arg(long, default_value_t = 4)]
        rank: usize,
        /// Only with (on) or without (off) gradient checkpointing; both by default.
        #[arg(long, value_parser = ["on", "off"])]
        checkpointing: Option<String>,
        /// Timed steps after the first.
        #[arg(long, default_value_t = 1)]
        steps: usize,
        /// Plan the steps and report memory without running them.
        #[arg(long)]
        plan_only: bool,
        /// Also time every node once and print the slowest op kinds and nodes.
        #[arg(long)]
        profile: bool,
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
    GpuOptions {
        backend: cli.backend.clone().or(env.backend),
        adapter: cli.adapter.clone().or(env.adapter),
        precision: cli.precision,
        vae_precision: cli.vae_precision,
        low_vram: cli.low_vram,
        f16_activations: cli.f16_activations,
        ..Default::default()
    }
}

fn run(cli: Cli) -> Result<(), String> {
    let opts = gpu_options(&cli);
    match cli.command {
        Command::Train { what: TrainWhat::Dreambooth(args) } => {
            let o = args.into_options().map_err(|e| e.to_string())?;
            // Ctrl-C: finish the current step, write a checkpoint, stop.
            let _ = ctrlc::set_handler(|| {
                if wgsd::train::dreambooth::INTERRUPTED.swap(true, std::sync::atomic::Ordering::SeqCst) {
                    std::process::exit(130);
                }
                eprintln!("\nstopping after this step (Ctrl-C again to quit at once)");
            });
            if opts.precision.is_some() || opts.vae_precision.is_some() {
                eprintln!("note: training runs in f32 (--precision and --vae-precision are for inference)");
            }
            let opts = GpuOptions { precision: None, vae_precision: None, ..opts };
            let gpu = Arc::new(Gpu::new(&opts).map_err(|e| e.to_string())?);
            let r = wgsd::train::dreambooth::run(gpu, &o).map_err(|e| e.to_string())?;
            for f in &r.files {
                println!("{}", f.display());
            }
            if r.interrupted {
                return Err("interrupted; the checkpoint above continues with --resume latest".into());
            }
            Ok(())
        }
        Command::Devices => {
            let adapters = list_adapters(&opts).map_err(|e| e.to_string())?;
            for a in &adapters {
                println!("{:<40} {:?} {:?} (driver: {} {})", a.name, a.backend, a.device_type, a.driver, a.driver_info);
            }
            let gpu = Gpu::new(&opts).map_err(|e| e.to_string())?;
            println!("\nselected: {}", gpu.describe());
            Ok(())
        }
        Command::Bench { what: BenchWhat::Models { configs, unet_only, vae_only, text_only, batch, latent, profile, plan_only } } => {
            let gpu = Arc::new(Gpu::new(&opts).map_err(|e| e.to_string())?);
            let o = wgsd::bench::ModelBenchOptions {
                config_dir: configs,
                text: !unet_only && !vae_only,
                unet: !vae_only && !text_only,
                vae: !unet_only && !text_only,
                batch,
                latent,
                profile,
                plan_only,
            };
            wgsd::bench::run_models(&gpu, &o).map_err(|e| e.to_string())
        }
        Command::Bench { what: BenchWhat::Train { configs, batch, latent, rank, checkpointing, steps, plan_only, profile } } => {
            let opts = GpuOptions { precision: None, vae_precision: None, ..opts }; // training runs in f32
            let gpu = Arc::new(Gpu::new(&opts).map_err(|e| e.to_string())?);
            let checkpointing = match checkpointing.as_deref() {
                Some("on") => vec![true],
                Some(_) => vec![false],
                None => vec![false, true],
            };
            let o = wgsd::train::bench::TrainBenchOptions { config_dir: configs, batch, latent, rank, checkpointing, steps, plan_only, profile };
            wgsd::train::bench::run_train_bench(&gpu, &o).map_err(|e| e.to_string())
        }
        Command::Bench { what: BenchWhat::Kernels { quick, reps, filter } } => {
            let gpu = Arc::new(Gpu::new(&opts).map_err(|e| e.to_string())?);
            let bo = BenchOptions { quick, reps: reps.unwrap_or(if quick { 1 } else { 3 }), filter };
            run_kernels(&gpu, &bo).map_err(|e| e.to_string())?;
            Ok(())
        }
        Command::Verify { fixtures, only, checkpointing } => {
            let dir = fixtures.unwrap_or_else(wgsd::fixtures::dir);
            if !dir.exists() {
                return Err(format!("fixture folder {} does not exist", dir.display()));
            }
            // Verify checks the VAE in the precision under test unless told otherwise.
            let opts = GpuOptions { vae_precision: opts.vae_precision.or(opts.precision), ..opts };
            let gpu = Arc::new(Gpu::new(&opts).map_err(|e| e.to_string())?);
            let results = wgsd::verify::run_selected(&dir, &gpu, &wgsd::verify::VerifyOptions { only, checkpointing }).map_err(|e| e.to_string())?;
            for r in &results {
                println!("{}", r.line());
            }
            let skipped = results.iter().filter(|r| r.unchecked.is_some()).count();
            let failed = results.iter().filter(|r| !r.passed && r.unchecked.is_none()).count();
            let passed = results.len() - failed - skipped;
            if skipped > 0 {
                println!("{passed} passed, {failed} failed, {skipped} not checked (see the SKIP lines for why)");
            } else {
                println!("{passed} passed, {failed} failed");
            }
            if failed > 0 || results.is_empty() {
                return Err(if results.is_empty() { "no cases found".into() } else { format!("{failed} case(s) failed") });
            }
            Ok(())
        }
        Command::Serve(a) => {
            let limits = wgsd::server::limits::Limits {
                max_body_bytes: a.max_body_mb.saturating_mul(1 << 20),
                max_pixels: a.max_pixels,
                max_steps: a.max_steps,
                max_batch: a.max_batch,
                max_images: a.max_images,
                ..Default::default()
            };
            let o = wgsd::server::ServeOptions {
                model: a.model,
                config: a.config,
                models_dir: a.models_dir,
                lora_dir: a.lora_dir,
                embeddings_dir: a.embeddings_dir,
                host: a.host,
                port: a.port,
                api_auth: a.api_auth,
                api_key: a.api_key,
                insecure: a.insecure,
                max_queue: a.max_queue,
                limits,
                safety: a.safety_checker,
            };
            // The server generates: the same precision defaults as `wgsd generate` (same settings, same pixels).
            let gpu = Arc::new(Gpu::new(&opts.clone().generating()).map_err(|e| e.to_string())?);
            wgsd::server::serve(gpu, o).map_err(|e| e.to_string())
        }
        Command::Generate { gen } => generate(&opts, gen.options(Mode::Txt2Img)?),
        Command::Img2img { gen, image, strength } => generate(&opts, gen.options(Mode::Img2Img { image, strength })?),
        Command::Inpaint { gen, image, mask, strength } => generate(&opts, gen.options(Mode::Inpaint { image, mask, strength })?),
        Command::Depth2img { gen, image, depth, strength } => generate(&opts, gen.options(Mode::Depth2Img { image, depth, strength })?),
    }
}

fn generate(opts: &GpuOptions, o: wgsd::generate::GenerateOptions) -> Result<(), String> {
    let opts = &opts.clone().generating();
    let gpu = Arc::new(Gpu::new(opts).map_err(|e| e.to_string())?);
    wgsd::generate::run(gpu, &o).map(|_| ()).map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    let t0 = std::time::Instant::now();
    let cli = Cli::parse();
    let timings = cli.timings;
    let result = run(cli);
    if timings {
        eprintln!("{}", wgsd::timing::Timings::now().report(t0.elapsed().as_secs_f64()));
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
