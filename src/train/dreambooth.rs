//! `wgsd train dreambooth`: diffusers' `train_dreambooth_lora.py` (LoRA, the default) and
//! `train_dreambooth.py` (`--full`) on wgsd's training engine. Inputs are checked before any model loads;
//! missing class images are generated with wgsd's own txt2img; every random draw comes from one seeded
//! generator, so a seed fixes the run and a resumed run ends bit-identical to one that never stopped.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::graph::plan::Plan;
use crate::graph::{Graph, Param, TensorId};
use crate::imageproc::Filter;
use crate::models::vae::split_moments;
use crate::pipeline::txt2img::Txt2ImgRequest;
use crate::pipeline::{StableDiffusion, TrainingHooks};
use crate::schedulers::ddpm::training_schedule;
use crate::schedulers::TorchCpuGenerator;
use crate::tensor::TensorDesc;
use crate::train::batch::{loss_weights, noisy_and_target, posterior_latents, Prediction};
use crate::train::checkpoint::{self, RunState};
use crate::train::data::{list_images, shuffled, tokenize_prompts, ClassImages, DreamBoothDataset, Preprocess};
use crate::train::lora::{LoraSpec, TrainHooks};
use crate::train::lr::LrSchedule;
use crate::train::optimizer::AdamWConfig;
use crate::train::rng::TrainRng;
use crate::train::step::{StepConfig, StepInputs, TrainStep};

/// Everything `wgsd train dreambooth` takes (the scripts' flags, with their defaults in `main.rs`).
#[derive(Clone, Debug)]
pub struct DreamBoothOptions {
    pub model: String,
    pub config: Option<String>,
    pub variant: Option<String>,
    pub instance_dir: PathBuf,
    pub instance_prompt: String,
    pub prior_preservation: bool,
    pub class_dir: Option<PathBuf>,
    pub class_prompt: Option<String>,
    pub num_class_images: usize,
    pub prior_loss_weight: f64,
    /// Steps of the txt2img runs that make missing class images (the diffusers pipeline's default, 50).
    pub class_steps: usize,
    pub out: PathBuf,
    pub overwrite: bool,
    /// Full fine-tuning instead of LoRA.
    pub full: bool,
    pub train_text_encoder: bool,
    pub rank: usize,
    pub alpha: f64,
    /// Module-name suffixes that get a LoRA in the UNet (default: the attention projections).
    pub lora_targets: Vec<String>,
    pub resolution: usize,
    pub center_crop: bool,
    pub random_flip: bool,
    /// None: Lanczos for LoRA, bilinear for full fine-tuning (each script's choice).
    pub interpolation: Option<Filter>,
    pub batch: usize,
    pub grad_accum: usize,
    pub steps: usize,
    /// None: 1e-4 for LoRA (diffusers' LoRA README), 5e-6 for full fine-tuning (the script's default).
    pub lr: Option<f64>,
    pub lr_schedule: LrSchedule,
    pub lr_warmup_steps: usize,
    pub adam: AdamWConfig,
    pub max_grad_norm: f32,
    pub snr_gamma: Option<f64>,
    pub gradient_checkpointing: bool,
    pub seed: u64,
    pub checkpointing_steps: Option<usize>,
    /// `latest` or a checkpoint folder.
    pub resume: Option<String>,
    pub validation_prompt: Option<String>,
    pub validation_steps: usize,
    pub num_validation_images: usize,
    /// Full fine-tuning: also write an LDM single-file checkpoint.
    pub save_single_file: bool,
}

/// What a finished run wrote.
#[derive(Debug)]
pub struct DreamBoothResult {
    pub files: Vec<PathBuf>,
    /// Loss of every optimizer step this invocation ran (averaged over its micro-batches).
    pub losses: Vec<f32>,
    /// Whether Ctrl-C stopped the run (a checkpoint was written).
    pub interrupted: bool,
}

/// Set by the Ctrl-C handler; the loop checkpoints and stops at the next step boundary.
pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);

impl DreamBoothOptions {
    /// Checks everything that needs no model: sizes, counts, folders.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::usage(m));
        if self.steps == 0 || self.batch == 0 || self.grad_accum == 0 {
            return bad("--steps, --batch and --grad-accum must be at least 1".into());
        }
        if !self.full && self.rank == 0 {
            return bad("--rank must be at least 1".into());
        }
        if self.prior_preservation {
            if self.class_prompt.as_deref().is_none_or(str::is_empty) {
                return bad("--with-prior-preservation needs --class-prompt (e.g. \"a photo of a dog\")".into());
            }
            if self.class_dir.is_none() {
                return bad("--with-prior-preservation needs --class-dir (missing class images are generated there)".into());
            }
            if self.num_class_images == 0 {
                return bad("--num-class-images must be at least 1".into());
            }
        }
        if self.instance_prompt.trim().is_empty() {
            return bad("--instance-prompt is empty".into());
        }
        if let Some(lr) = self.lr {
            if !(lr > 0.0 && lr.is_finite()) {
                return bad(format!("--lr must be a positive number, got {lr}"));
            }
        }
        if self.max_grad_norm.is_nan() || self.max_grad_norm <= 0.0 {
            return bad(format!("--max-grad-norm must be positive, got {}", self.max_grad_norm));
        }
        if self.save_single_file && !self.full {
            return bad("--save-single-file goes with --full (a LoRA is saved as LoRA files)".into());
        }
        if self.checkpointing_steps == Some(0) || self.validation_steps == 0 {
            return bad("--checkpointing-steps and --validation-steps must be at least 1".into());
        }
        Ok(())
    }

    fn preprocess(&self) -> Preprocess {
        let filter = self.interpolation.unwrap_or(if self.full { Filter::Bilinear } else { Filter::Lanczos });
        Preprocess { resolution: self.resolution, filter, center_crop: self.center_crop, random_flip: self.random_flip }
    }

    fn learning_rate(&self) -> f64 {
        self.lr.unwrap_or(if self.full { 5e-6 } else { 1e-4 })
    }

    /// What must not change between a run and its resumption.
    fn fingerprint(&self) -> String {
        format!(
            "model={} full={} te={} rank={} alpha={} targets={:?} res={} batch={} accum={} prior={} seed={}",
            self.model,
            self.full,
            self.train_text_encoder,
            self.rank,
            self.alpha,
            self.lora_targets,
            self.resolution,
            self.batch,
            self.grad_accum,
            self.prior_preservation,
            self.seed
        )
    }
}

impl crate::train::data::Draw for TrainRng {
    fn below(&mut self, n: usize) -> usize {
        TrainRng::below(self, n as u64) as usize
    }
}

/// The final outputs a finished run writes into `out` (a run refuses to start over them unasked).
fn final_outputs(o: &DreamBoothOptions) -> Vec<PathBuf> {
    if o.full {
        vec![o.out.join("model_index.json")]
    } else {
        vec![o.out.join("pytorch_lora_weights.safetensors"), o.out.join("kohya_lora.safetensors")]
    }
}

/// Generates the class images prior preservation still lacks into `dir` (`class-<n>.png`), as the scripts
/// do with the pipeline before training.
fn generate_class_images(sd: &StableDiffusion, dir: &Path, prompt: &str, wanted: usize, steps: usize, resolution: usize, seed: u64) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::usage(format!("cannot create the class folder {}: {e}", dir.display())))?;
    let have = list_images(dir)?.len();
    if have >= wanted {
        return Ok(());
    }
    eprintln!("generating {} class images for {prompt:?} into {} ({steps} steps each)", wanted - have, dir.display());
    let class = sd.scheduler_config["_class_name"].as_str().unwrap_or("PNDMScheduler").to_string();
    let source = sd.dir.join("scheduler/scheduler_config.json").display().to_string();
    let bar = ProgressBar::new((wanted - have) as u64);
    for i in have..wanted {
        let req = Txt2ImgRequest {
            prompts: vec![prompt.to_string()],
            negative_prompts: vec![],
            images_per_prompt: 1,
            width: resolution,
            height: resolution,
            steps,
            guidance_scale: 7.5,
            clip_skip: 0,
        };
        let mut scheduler = crate::schedulers::from_config(&class, &sd.scheduler_config, &source)?;
        let mut noise = TorchCpuGenerator::new(seed.wrapping_add(i as u64));
        let out = sd.txt2img(&req, scheduler.as_mut(), &mut noise, &mut |_, _| {})?;
        let path = unused_name(dir, i);
        crate::output::write_png(&path, resolution, resolution, &crate::output::to_rgb8(&out.images), "", false)?;
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(())
}

fn unused_name(dir: &Path, i: usize) -> PathBuf {
    let mut k = i;
    loop {
        let p = dir.join(format!("class-{k:05}.png"));
        if !p.exists() {
            return p;
        }
        k += 1;
    }
}

/// The trainable tensors by wgsd's names: the LoRA adapters, or every weight of the trained networks.
fn trainable(o: &DreamBoothOptions, hooks: &TrainingHooks) -> Vec<(String, Arc<Param>)> {
    if o.full {
        let mut v: Vec<(String, Arc<Param>)> = hooks.unet.weights().into_iter().map(|p| (format!("unet.{}", p.name), p)).collect();
        if o.train_text_encoder {
            v.extend(hooks.text_encoder.weights().into_iter().map(|p| (format!("text_encoder.{}", p.name), p)));
        }
        v
    } else {
        hooks.unet.adapters().into_iter().chain(hooks.text_encoder.adapters()).map(|p| (p.name.clone(), p)).collect()
    }
}

/// The VAE encoder planned for one batch shape: pixel values → posterior mean and log-variance.
struct Encoder {
    plan: Plan,
    input: TensorId,
    moments: TensorId,
}

impl Encoder {
    fn new(gpu: &Arc<Gpu>, sd: &StableDiffusion, shape: [usize; 4]) -> Result<Encoder> {
        let mut g = Graph::new();
        let input = g.input("pixel_values", TensorDesc::f32(&shape));
        let moments = sd.vae.encode(&mut g, input)?;
        g.output(moments);
        Ok(Encoder { plan: Plan::new(gpu.clone(), g)?, input, moments })
    }
}

/// Renders the validation images for step `step` into `<out>/validation/`.
fn validate_images(sd: &StableDiffusion, o: &DreamBoothOptions, prompt: &str, step: usize) -> Result<()> {
    let dir = o.out.join("validation");
    std::fs::create_dir_all(&dir).map_err(|e| Error::usage(format!("cannot create {}: {e}", dir.display())))?;
    let class = sd.scheduler_config["_class_name"].as_str().unwrap_or("PNDMScheduler").to_string();
    let source = sd.dir.join("scheduler/scheduler_config.json").display().to_string();
    for i in 0..o.num_validation_images {
        let req = Txt2ImgRequest {
            prompts: vec![prompt.to_string()],
            negative_prompts: vec![],
            images_per_prompt: 1,
            width: o.resolution,
            height: o.resolution,
            steps: 25,
            guidance_scale: 7.5,
            clip_skip: 0,
        };
        let mut scheduler = crate::schedulers::from_config(&class, &sd.scheduler_config, &source)?;
        // The same seeds at every validation, so the images show what training changed.
        let mut noise = TorchCpuGenerator::new(o.seed.wrapping_add(i as u64));
        let out = sd.txt2img(&req, scheduler.as_mut(), &mut noise, &mut |_, _| {})?;
        let path = dir.join(format!("step-{step:06}-{i}.png"));
        crate::output::write_png(&path, o.resolution, o.resolution, &crate::output::to_rgb8(&out.images), prompt, true)?;
    }
    Ok(())
}

/// Runs a DreamBooth training from the options; Ctrl-C ([`INTERRUPTED`]) checkpoints and stops it.
pub fn run(gpu: Arc<Gpu>, o: &DreamBoothOptions) -> Result<DreamBoothResult> {
    run_until(gpu, o, &INTERRUPTED)
}

/// [`run`] that checkpoints and stops at the first step boundary after `stop` is set.
pub fn run_until(gpu: Arc<Gpu>, o: &DreamBoothOptions, stop: &AtomicBool) -> Result<DreamBoothResult> {
    o.validate()?;
    if o.full && crate::generate::is_single_file(&o.model)? {
        return Err(Error::usage(format!(
            "--full from a single-file checkpoint ({}) is not supported: the fine-tuned model is written as a diffusers \
             folder built from the source folder; convert the checkpoint to a diffusers folder first, or train a LoRA",
            o.model
        )));
    }
    let preprocess = o.preprocess();
    preprocess.validate()?;
    if o.resume.is_none() && !o.overwrite {
        if let Some(p) = final_outputs(o).into_iter().find(|p| p.exists()) {
            return Err(Error::usage(format!("{} already exists; pass --overwrite to replace it, or --resume latest to continue", p.display())));
        }
    }
    // The instance images are read (and every bad file reported) before any model loads.
    DreamBoothDataset::open(&o.instance_dir, &o.instance_prompt, None, preprocess)?;
    let resume = match o.resume.as_deref() {
        None => None,
        Some("latest") => Some(checkpoint::latest(&o.out).ok_or_else(|| Error::usage(format!("--resume latest: no checkpoint in {}", o.out.display())))?),
        Some(dir) => Some(PathBuf::from(dir)),
    }
    .map(|d| checkpoint::load(&d))
    .transpose()?;
    if let Some(c) = &resume {
        if c.state.fingerprint != o.fingerprint() {
            return Err(Error::usage(format!(
                "{} was written by a run with other settings ({}); this run has {}",
                c.dir.display(),
                c.state.fingerprint,
                o.fingerprint()
            )));
        }
    }

    let t_load = Instant::now();
    let unet_lora = (!o.full).then(|| LoraSpec { rank: o.rank, alpha: o.alpha, targets: o.lora_targets.clone() });
    let te_lora = (!o.full && o.train_text_encoder).then(|| LoraSpec::text_attention(o.rank, o.alpha));
    let hooks = TrainingHooks {
        unet: TrainHooks::new("unet.", unet_lora, Default::default(), o.seed),
        text_encoder: TrainHooks::new("text_encoder.", te_lora, Default::default(), o.seed.wrapping_add(1)),
    };
    let (dir, sd) = crate::generate::open_model(&gpu, &o.model, o.config.as_deref(), o.variant.as_deref(), &[], Some(&hooks))?;
    let sched_path = dir.join("scheduler/scheduler_config.json");
    let (schedule, pred) = training_schedule(&sd.scheduler_config, &sched_path.display().to_string())?;
    let prediction = Prediction::parse(&pred).ok_or_else(|| Error::Config { file: sched_path.display().to_string(), msg: format!("prediction_type {pred:?} cannot be trained") })?;
    if sd.unet.config.in_channels != sd.vae.config.latent_channels {
        return Err(Error::usage(format!(
            "this UNet takes {} input channels (an inpainting or depth model); DreamBooth trains text-to-image models with {}",
            sd.unet.config.in_channels, sd.vae.config.latent_channels
        )));
    }
    let trainable = trainable(o, &hooks);
    if trainable.is_empty() {
        return Err(Error::usage(format!("no layer of this model matches the LoRA targets {:?}", o.lora_targets)));
    }
    let n_params: usize = trainable.iter().map(|(_, p)| p.desc.numel()).sum();
    eprintln!("loaded {} in {:.1} s on {}; training {} tensors ({:.2} M parameters)", dir.display(), t_load.elapsed().as_secs_f64(), gpu.info.name, trainable.len(), n_params as f64 / 1e6);

    // Class images (generated when missing), then the whole dataset.
    let class = if o.prior_preservation {
        let cdir = o.class_dir.as_ref().expect("validated");
        let prompt = o.class_prompt.as_deref().expect("validated");
        generate_class_images(&sd, cdir, prompt, o.num_class_images, o.class_steps, o.resolution, o.seed)?;
        Some(ClassImages { dir: cdir, prompt, limit: Some(o.num_class_images) })
    } else {
        None
    };
    let data = DreamBoothDataset::open(&o.instance_dir, &o.instance_prompt, class, preprocess)?;
    let captioned = data.instance.iter().filter(|s| s.captioned).count();
    eprintln!("{} instance images ({captioned} with captions), {} class images", data.instance.len(), data.class.len());

    let rows = o.batch * if o.prior_preservation { 2 } else { 1 };
    let lat = o.resolution / 8;
    let cfg = StepConfig {
        batch: rows,
        latent: [sd.unet.config.in_channels, lat, lat],
        seq: 77,
        max_grad_norm: o.max_grad_norm,
        recompute: o.gradient_checkpointing,
        grad_accum: o.grad_accum,
    };
    let t_plan = Instant::now();
    let mut step = TrainStep::new(gpu.clone(), &sd.unet, &sd.text_encoder, trainable, &cfg, Some(o.adam))?;
    let mem = step.memory();
    eprintln!(
        "training step planned in {:.1} s: {:.0} MiB (weights {:.0}, activations {:.0}, gradients {:.1}, optimizer {:.1})",
        t_plan.elapsed().as_secs_f64(),
        mem.peak() as f64 / 1048576.0,
        mem.weights as f64 / 1048576.0,
        mem.activations as f64 / 1048576.0,
        mem.gradients as f64 / 1048576.0,
        mem.optimizer as f64 / 1048576.0
    );
    let encoder = Encoder::new(&gpu, &sd, [rows, 3, o.resolution, o.resolution])?;

    // Start or resume.
    let mut rng = TrainRng::new(o.seed);
    let (mut done, mut order, mut position) = (0usize, Vec::new(), 0usize);
    if let Some(c) = &resume {
        for (i, t) in step.trainable.iter().enumerate() {
            let v = c.params.get(&t.name).ok_or_else(|| Error::usage(format!("{}: no '{}' in the checkpoint", c.dir.display(), t.name)))?;
            t.param.write(&gpu, v)?;
            if let (Some((m, v)), Some(_)) = (c.moments.get(&t.name), t.grad) {
                let slot = step.trainable[..i].iter().filter(|u| u.grad.is_some()).count();
                step.optimizer().expect("planned with AdamW").set_moments(slot, m, v);
            }
        }
        step.optimizer_mut().expect("planned with AdamW").step = c.state.adam_step;
        rng = TrainRng::from_state(c.state.rng_state);
        (done, order, position) = (c.state.step, c.state.order.clone(), c.state.position);
        eprintln!("resumed from {} at step {done}", c.dir.display());
    }
    if done >= o.steps {
        eprintln!("already trained {done} of {} steps", o.steps);
    }
    std::fs::create_dir_all(&o.out).map_err(|e| Error::usage(format!("cannot create {}: {e}", o.out.display())))?;
    if let (Some(p), 0) = (&o.validation_prompt, done) {
        validate_images(&sd, o, p, 0)?;
    }

    let lr = o.learning_rate();
    let bar = ProgressBar::new(o.steps as u64);
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} {per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_position(done as u64);
    let mut losses = Vec::new();
    let mut interrupted = false;
    while done < o.steps {
        let step_lr = o.lr_schedule.lr(lr, done, o.steps, o.lr_warmup_steps);
        let mut loss_sum = 0.0f32;
        for micro in 0..o.grad_accum {
            // The next examples of the epoch's shuffled order.
            let mut indices = Vec::with_capacity(o.batch);
            while indices.len() < o.batch {
                if position >= order.len() {
                    order = shuffled(data.len(), &mut rng);
                    position = 0;
                }
                indices.push(order[position]);
                position += 1;
            }
            let b = data.batch(&indices, &mut rng)?;
            encoder.plan.write(encoder.input, &b.pixel_values)?;
            let moments = encoder.plan.run_and_read(&[encoder.moments])?.remove(0);
            let c = sd.vae.config.latent_channels;
            let (mean, logvar) = split_moments(&moments, rows, c, lat * lat);
            let latents = posterior_latents(&mean, &logvar, &rng.randn(mean.len()), sd.vae.config.scaling_factor);
            let noise = rng.randn(latents.len());
            let t: Vec<i64> = (0..rows).map(|_| rng.below(schedule.num_train_timesteps as u64) as i64).collect();
            let (noisy, target) = noisy_and_target(&schedule, &latents, &noise, &t, prediction);
            let weights: Vec<f32> = loss_weights(&schedule, &t, b.n_class, o.prior_loss_weight, o.snr_gamma, prediction)
                .into_iter()
                .map(|w| w / o.grad_accum as f32)
                .collect();
            let ids = tokenize_prompts(&sd.tokenizer, &b.prompts)?;
            let ts: Vec<f32> = t.iter().map(|v| *v as f32).collect();
            let x = StepInputs { noisy: &noisy, timesteps: &ts, input_ids: &ids, target: &target, weights: &weights };
            let rep = if micro + 1 == o.grad_accum { step.step(&x, step_lr)? } else { step.accumulate(&x)? };
            loss_sum += rep.loss * o.grad_accum as f32;
        }
        let loss = loss_sum / o.grad_accum as f32;
        if !loss.is_finite() {
            return Err(Error::usage(format!("the loss became {loss} at step {}: lower --lr", done + 1)));
        }
        losses.push(loss);
        done += 1;
        bar.set_message(format!("loss {loss:.4} lr {step_lr:.2e}"));
        bar.set_position(done as u64);
        let stop = stop.load(Ordering::SeqCst) && done < o.steps;
        if o.checkpointing_steps.is_some_and(|n| done % n == 0 && done < o.steps) || stop {
            let state = RunState {
                step: done,
                adam_step: step.optimizer().expect("planned with AdamW").step,
                rng_state: rng.state(),
                order: order.clone(),
                position,
                fingerprint: o.fingerprint(),
            };
            let path = save_checkpoint(&gpu, &step, &o.out, &state)?;
            bar.println(format!("checkpoint written: {}", path.display()));
        }
        if stop {
            interrupted = true;
            bar.abandon_with_message(format!("interrupted at step {done}: continue with --resume latest"));
            break;
        }
        if let Some(p) = &o.validation_prompt {
            if done % o.validation_steps == 0 && done < o.steps {
                bar.suspend(|| validate_images(&sd, o, p, done))?;
            }
        }
    }
    bar.finish_and_clear();
    let mut files = Vec::new();
    if !interrupted {
        files = crate::train::output::write_outputs(&gpu, o, &dir, &step, &sd, prediction == Prediction::VPrediction)?;
        if let Some(p) = &o.validation_prompt {
            validate_images(&sd, o, p, done)?;
        }
    }
    Ok(DreamBoothResult { files, losses, interrupted })
}

fn save_checkpoint(gpu: &Arc<Gpu>, step: &TrainStep, out: &Path, state: &RunState) -> Result<PathBuf> {
    let mut params = Vec::new();
    let mut moments = Vec::new();
    let mut slot = 0;
    for t in &step.trainable {
        params.push((t.name.clone(), t.param.read(gpu)?));
        if t.grad.is_some() {
            let (m, v) = step.optimizer().expect("planned with AdamW").moments(slot)?;
            moments.push((t.name.clone(), m, v));
            slot += 1;
        }
    }
    checkpoint::save(out, state, &params, &moments)
}
