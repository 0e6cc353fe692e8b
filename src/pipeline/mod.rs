//! Stable Diffusion pipelines on the host: prompts → text embeddings → denoising loop with classifier-free
//! guidance → VAE decode, in the order of operations of diffusers' `StableDiffusionPipeline`. The networks
//! run as GPU plans built once per shape and re-run every step; the scheduler and the guidance
//! combination are host code.

pub mod denoise;
pub mod depth2img;
pub mod img2img;
pub mod inputs;
pub mod lora;
pub mod safety;
pub mod txt2img;
pub mod vae;

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use serde_json::Value;

use crate::error::{Error, Result};
use crate::fixtures::python_json;
use crate::gpu::Gpu;
use crate::graph::plan::Plan;
use crate::graph::{Graph, TensorId};
use crate::imageproc::dpt_processor::DptImageProcessor;
use crate::models::clip::ClipTextModel;
use crate::models::dpt::DptForDepthEstimation;
use crate::models::nn::Loader;
use crate::train::lora::TrainHooks;
use crate::models::safety_checker::SafetyChecker;
use crate::models::tokenizer::ClipTokenizer;
use crate::models::unet::UNet2DConditionModel;
use crate::models::taesd::AutoencoderTiny;
use crate::models::vae::AutoencoderKL;
use crate::models::vae_tiling::VaeTiling;
use crate::tensor::TensorDesc;

/// A loaded diffusers Stable Diffusion folder.
pub struct StableDiffusion {
    pub gpu: Arc<Gpu>,
    pub dir: PathBuf,
    pub tokenizer: ClipTokenizer,
    pub text_encoder: ClipTextModel,
    pub unet: UNet2DConditionModel,
    pub vae: AutoencoderKL,
    /// `scheduler/scheduler_config.json` with its `_class_name`.
    pub scheduler_config: Value,
    /// How prompts are read: syntax (plain, as diffusers, by default) and textual-inversion embeddings.
    pub prompt: crate::prompt::PromptOptions,
    /// Classifier-free guidance as two UNet batches (negative, then prompt) even when one would do; they
    /// are always two when the prompt and negative prompt have different numbers of chunks.
    pub separate_guidance_batches: bool,
    /// When the VAE decodes and encodes in tiles (bounded memory for large images).
    pub vae_tiling: VaeTiling,
    /// A TAESD (`AutoencoderTiny`) that replaces the VAE for decoding and encoding, as diffusers does when a
    /// pipeline is given `vae=AutoencoderTiny(...)`; it also decodes previews.
    pub tiny_vae: Option<AutoencoderTiny>,
    /// Intermediate images during denoising.
    pub preview: Option<Preview>,
    /// Under `--low-vram` (the device's `low_vram`): each network's weights, moved to the GPU only while
    /// that network runs.
    pub low_vram: Option<LowVram>,
    /// UNet plans of earlier runs, kept for the next run of the same shape (see [`UNetPool`]).
    unet_plans: UNetPool,
    /// Loaded on first use: they are large at real size and not every run needs them.
    safety_checker: OnceLock<SafetyChecker>,
    depth_estimator: OnceLock<(DptImageProcessor, DptForDepthEstimation)>,
}

/// The weights of each network, for `--low-vram`: at most one network is on the GPU at a time (the text
/// encoder while prompts are encoded, the UNet while denoising, the VAE while encoding or decoding); the
/// others wait in host memory. Peak GPU memory becomes the largest network plus its activations instead of
/// all three networks plus the largest activations, at the cost of uploading each network once a run.
pub struct LowVram {
    pub text_encoder: Vec<Arc<crate::graph::Param>>,
    pub unet: Vec<Arc<crate::graph::Param>>,
    pub vae: Vec<Arc<crate::graph::Param>>,
}

/// A network, as `--low-vram` moves them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Network {
    TextEncoder,
    UNet,
    Vae,
}

impl LowVram {
    fn params(&self, n: Network) -> &[Arc<crate::graph::Param>] {
        match n {
            Network::TextEncoder => &self.text_encoder,
            Network::UNet => &self.unet,
            Network::Vae => &self.vae,
        }
    }
}

/// The text encoder's weights `--low-vram` moves: all but the token table, which stays off the GPU (prompts
/// need a few of its rows, which `encode_sets` gathers on the host).
fn moved_text_weights(text_encoder: &ClipTextModel, params: Vec<Arc<crate::graph::Param>>) -> Vec<Arc<crate::graph::Param>> {
    params.into_iter().filter(|p| !Arc::ptr_eq(p, text_encoder.token_table())).collect()
}

/// Loads one network, recording its weights and moving them to host memory at once when `low_vram`.
fn load_network<T>(gpu: &Gpu, f: impl FnOnce() -> Result<T>) -> Result<(T, Vec<Arc<crate::graph::Param>>)> {
    if !gpu.low_vram {
        return Ok((f()?, Vec::new()));
    }
    let (t, params) = crate::graph::record_params(f)?;
    for p in &params {
        p.offload(gpu)?;
    }
    Ok((t, params))
}

/// The training hooks of the two trainable networks.
pub struct TrainingHooks {
    pub unet: TrainHooks,
    pub text_encoder: TrainHooks,
}

/// A plain loader, or a training one when hooks are given.
fn loader<'a>(gpu: &'a Gpu, weights: &'a crate::models::weights::Weights, hooks: Option<&'a TrainHooks>) -> Loader<'a> {
    match hooks {
        Some(h) => Loader::for_training(gpu, weights, h),
        None => Loader::new(gpu, weights),
    }
}

pub(crate) fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::Config { file: path.display().to_string(), msg: format!("cannot read: {e}") })?;
    serde_json::from_str(&python_json(&text)).map_err(|e| Error::Config { file: path.display().to_string(), msg: format!("invalid JSON: {e}") })
}

impl StableDiffusion {
    /// Loads every component of a diffusers pipeline folder; `variant` picks e.g. the `fp16` weight files.
    pub fn load(gpu: Arc<Gpu>, dir: &Path, variant: Option<&str>) -> Result<Self> {
        Self::load_with(gpu, dir, variant, None)
    }

    /// [`StableDiffusion::load`] for training: the UNet and text encoder load through training loaders that
    /// record their weights and attach LoRA adapters (see [`TrainHooks`]).
    pub fn load_for_training(gpu: Arc<Gpu>, dir: &Path, variant: Option<&str>, hooks: &TrainingHooks) -> Result<Self> {
        Self::load_with(gpu, dir, variant, Some(hooks))
    }

    fn load_with(gpu: Arc<Gpu>, dir: &Path, variant: Option<&str>, hooks: Option<&TrainingHooks>) -> Result<Self> {
        use crate::models::clip::weight_file;
        use crate::models::config::{ClipTextConfig, UNetConfig};
        use crate::models::weights::Weights;
        let index = dir.join("model_index.json");
        if !index.exists() {
            return Err(Error::Config {
                file: dir.display().to_string(),
                msg: "not a diffusers model folder (no model_index.json); expected model_index.json, unet/, vae/, text_encoder/, tokenizer/, scheduler/".into(),
            });
        }
        let scheduler_config = read_json(&dir.join("scheduler/scheduler_config.json"))?;
        let (text_encoder, te_params) = load_network(&gpu, || {
            let d = dir.join("text_encoder");
            let weights = Weights::open(&[weight_file(&d, "model", variant)?])?;
            ClipTextModel::from_loader(loader(&gpu, &weights, hooks.map(|h| &h.text_encoder)), ClipTextConfig::from_file(&d.join("config.json"))?)
        })?;
        let (unet, unet_params) = load_network(&gpu, || {
            let d = dir.join("unet");
            let weights = Weights::open(&[weight_file(&d, "diffusion_pytorch_model", variant)?])?;
            UNet2DConditionModel::from_loader(loader(&gpu, &weights, hooks.map(|h| &h.unet)), UNetConfig::from_file(&d.join("config.json"))?)
        })?;
        let (vae, vae_params) = load_network(&gpu, || AutoencoderKL::load(&gpu, &dir.join("vae"), variant))?;
        Ok(StableDiffusion {
            tokenizer: ClipTokenizer::from_folder(&dir.join("tokenizer"))?,
            low_vram: gpu.low_vram.then(|| LowVram { text_encoder: moved_text_weights(&text_encoder, te_params), unet: unet_params, vae: vae_params }),
            text_encoder,
            unet,
            vae,
            scheduler_config,
            prompt: Default::default(),
            separate_guidance_batches: false,
            vae_tiling: VaeTiling::default(),
            tiny_vae: None,
            preview: None,
            unet_plans: UNetPool::default(),
            safety_checker: OnceLock::new(),
            depth_estimator: OnceLock::new(),
            dir: dir.to_path_buf(),
            gpu,
        })
    }

    /// Loads an original-LDM single-file checkpoint (`.safetensors`, SD 1.x / 2.x as A1111 uses them): the
    /// weights of all three networks come from `checkpoint`, the configs, tokenizer and scheduler from the
    /// diffusers folder `config_dir` (whose own weight files, if any, are not read).
    pub fn load_single_file(gpu: Arc<Gpu>, checkpoint: &Path, config_dir: &Path) -> Result<Self> {
        Self::load_single_file_with(gpu, checkpoint, config_dir, None)
    }

    /// [`StableDiffusion::load_single_file`] for training (see [`StableDiffusion::load_for_training`]).
    pub fn load_single_file_for_training(gpu: Arc<Gpu>, checkpoint: &Path, config_dir: &Path, hooks: &TrainingHooks) -> Result<Self> {
        Self::load_single_file_with(gpu, checkpoint, config_dir, Some(hooks))
    }

    fn load_single_file_with(gpu: Arc<Gpu>, checkpoint: &Path, config_dir: &Path, hooks: Option<&TrainingHooks>) -> Result<Self> {
        use crate::models::config::{ClipTextConfig, UNetConfig, VaeConfig};
        use crate::models::single_file::{check_component, NameMap};
        use crate::models::weights::{WeightFile, Weights};
        let file = WeightFile::open(checkpoint)?;
        let unet_config = UNetConfig::from_file(&config_dir.join("unet/config.json"))?;
        let vae_config = VaeConfig::from_file(&config_dir.join("vae/config.json"))?;
        let text_config = ClipTextConfig::from_file(&config_dir.join("text_encoder/config.json"))?;
        let (unet_map, vae_map) = (NameMap::unet(&unet_config), NameMap::vae(&vae_config));
        let text_map = NameMap::text_encoder(&text_config, &file)?;
        check_component(&unet_map, "model.diffusion_model.", &file)?;
        check_component(&vae_map, "first_stage_model.", &file)?;
        drop(file);
        let scheduler_config = read_json(&config_dir.join("scheduler/scheduler_config.json"))?;
        let (text_encoder, te_params) = load_network(&gpu, || {
            let weights = Weights::single_file(checkpoint, text_map)?;
            ClipTextModel::from_loader(loader(&gpu, &weights, hooks.map(|h| &h.text_encoder)), text_config)
        })?;
        let (unet, unet_params) = load_network(&gpu, || {
            let weights = Weights::single_file(checkpoint, unet_map)?;
            UNet2DConditionModel::from_loader(loader(&gpu, &weights, hooks.map(|h| &h.unet)), unet_config)
        })?;
        let (vae, vae_params) =
            load_network(&gpu, || AutoencoderKL::from_weights(&gpu, vae_config, &Weights::single_file(checkpoint, vae_map)?))?;
        Ok(StableDiffusion {
            tokenizer: ClipTokenizer::from_folder(&config_dir.join("tokenizer"))?,
            low_vram: gpu.low_vram.then(|| LowVram { text_encoder: moved_text_weights(&text_encoder, te_params), unet: unet_params, vae: vae_params }),
            text_encoder,
            unet,
            vae,
            scheduler_config,
            prompt: Default::default(),
            separate_guidance_batches: false,
            vae_tiling: VaeTiling::default(),
            tiny_vae: None,
            preview: None,
            unet_plans: UNetPool::default(),
            safety_checker: OnceLock::new(),
            depth_estimator: OnceLock::new(),
            dir: config_dir.to_path_buf(),
            gpu,
        })
    }

    /// Puts `network`'s weights on the GPU (under `--low-vram`; otherwise they always are).
    pub fn bring_in(&self, network: Network) -> Result<()> {
        if let Some(l) = &self.low_vram {
            // Two threads: on a CPU adapter an upload is mostly the kernel handing out fresh pages, which
            // two cores do in parallel (SD 1.5's UNet: 2.1-2.4 s -> 1.4-1.5 s on the 2-core VM).
            let params = l.params(network);
            let total: u64 = params.iter().map(|p| p.desc.bytes()).sum();
            let mut bytes = 0;
            let half = params.iter().take_while(|p| { bytes += p.desc.bytes(); bytes <= total / 2 }).count();
            let (first, second) = params.split_at(half);
            let upload = |ps: &[Arc<crate::graph::Param>]| ps.iter().try_for_each(|p| p.restore(&self.gpu));
            std::thread::scope(|s| {
                let helper = s.spawn(|| upload(second));
                let mine = upload(first);
                mine.and(helper.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
            })?;
        }
        Ok(())
    }

    /// [`StableDiffusion::bring_in`] on a second thread while this one creates the pipelines of the plan
    /// `graph` builds (see [`Plan::prepare_pipelines`]). Only where bringing in uploads (`--low-vram`):
    /// otherwise there is nothing to overlap. Best effort: a failure there is [`Plan::new`]'s to report.
    /// The pipelines are made here, not on the helper thread, because the driver's compiled state stays
    /// allocated: on a thread of its own it would sit in a second malloc arena (+14 MiB of peak RSS on
    /// lavapipe, measured) instead of the main one.
    pub fn bring_in_preparing(&self, network: Network, graph: impl FnOnce() -> Result<Graph>) -> Result<()> {
        if self.low_vram.is_none() {
            return self.bring_in(network);
        }
        std::thread::scope(|s| {
            let upload = s.spawn(|| self.bring_in(network));
            let _ = graph().and_then(|g| Plan::prepare_pipelines(&self.gpu, g));
            upload.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }

    /// Moves `network`'s weights back to host memory (under `--low-vram`; otherwise nothing happens).
    pub fn send_out(&self, network: Network) -> Result<()> {
        if let Some(l) = &self.low_vram {
            for p in l.params(network) {
                p.offload(&self.gpu)?;
            }
            // wgpu destroys dropped buffers only when it next polls the device: do it now, so the next
            // network's weights can take their place instead of new memory.
            self.gpu.queue.submit(std::iter::empty());
            self.gpu.wait()?;
        }
        Ok(())
    }

    /// Runs `f` with `network` on the GPU, moving it out again afterwards (under `--low-vram`).
    pub fn with_network<T>(&self, network: Network, f: impl FnOnce() -> Result<T>) -> Result<T> {
        self.bring_in(network)?;
        let out = f();
        self.send_out(network)?;
        out
    }

    /// [`StableDiffusion::with_network`], bringing `network` in while the pipelines of `graph`'s plan are
    /// made ([`StableDiffusion::bring_in_preparing`]).
    pub fn with_network_preparing<T>(&self, network: Network, graph: impl FnOnce() -> Result<Graph>, f: impl FnOnce() -> Result<T>) -> Result<T> {
        self.bring_in_preparing(network, graph)?;
        let out = f();
        self.send_out(network)?;
        out
    }

    /// Decodes latents `[N, C, h, w]` (already divided by the scaling factor) one image at a time into
    /// NHWC float images in [0, 1]: with the TAESD when one replaces the VAE, else with the VAE, tiled as
    /// `vae_tiling` decides.
    pub fn decode_latents(&self, latents: &[f32], shape: [usize; 4]) -> Result<Vec<f32>> {
        let [n, _, h, w] = shape;
        let chw = if let Some(tiny) = &self.tiny_vae {
            // The pipeline divided by the VAE's scaling factor; the TAESD wants latents over its own.
            let k = (self.vae.config.scaling_factor / tiny.config.scaling_factor) as f32;
            let latents: Vec<f32> = latents.iter().map(|v| v * k).collect();
            tiny.decode_latents(&self.gpu, &latents, shape)?
        } else if self.vae_tiling.tile_decode(&self.vae.config, h, w, &self.gpu.limits, &crate::graph::op::DeviceLimits::from_gpu(&self.gpu)) {
            self.with_network(Network::Vae, || Ok(self.vae.decode_tiled(&self.gpu, latents, shape)?.0))?
        } else {
            self.with_network_preparing(Network::Vae, || self.vae.decode_graph(shape), || self.vae.decode_untiled(&self.gpu, latents, shape))?
        };
        Ok(vae::to_nhwc_unit(&chw, n, chw.len() / n / 3))
    }
}

/// Denoising previews: every `every` steps the current latents are decoded (with the TAESD when loaded,
/// else the VAE) and given to `sink` as NHWC images in [0, 1] with the step number.
pub struct Preview {
    pub every: usize,
    #[allow(clippy::type_complexity)]
    pub sink: Box<dyn Fn(&[f32], usize) -> Result<()> + Send + Sync>,
}

/// UNet plans kept between runs, so a second image (a batch of `--n-images`, the next server request)
/// does not plan the UNet again: on a GPU that costs as much as a few steps. A runner is taken out while
/// a run uses it (two runs at once never share one) and put back afterwards; at most [`UNetPool::KEEP`]
/// are kept (each holds its activations: ~200 MiB for SD 1.5 at 512² with guidance). Not used under
/// `--low-vram`: a kept plan would hold the UNet's weights on the GPU after they were sent out.
#[derive(Default)]
pub struct UNetPool {
    idle: std::sync::Mutex<Vec<(UNetKey, UNetRunner)>>,
}

/// What a UNet plan was built for: sample shape, context shape, and which of a run's runners it is (a
/// run with split guidance batches needs two plans of the same shapes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UNetKey {
    pub sample: [usize; 4],
    pub context: [usize; 3],
    pub slot: usize,
}

impl UNetPool {
    pub const KEEP: usize = 2;

    fn take(&self, key: UNetKey) -> Option<UNetRunner> {
        let mut idle = self.idle.lock().ok()?;
        let i = idle.iter().position(|(k, _)| *k == key)?;
        Some(idle.remove(i).1)
    }

    fn put_back(&self, key: UNetKey, runner: UNetRunner) {
        if let Ok(mut idle) = self.idle.lock() {
            idle.push((key, runner));
            while idle.len() > Self::KEEP {
                idle.remove(0);
            }
        }
    }
}

/// A UNet runner lent by a [`StableDiffusion`] for one run; it goes back to the pool when dropped.
pub struct PooledUNet<'a> {
    runner: Option<UNetRunner>,
    key: UNetKey,
    pool: Option<&'a UNetPool>,
}

impl std::ops::Deref for PooledUNet<'_> {
    type Target = UNetRunner;
    fn deref(&self) -> &UNetRunner {
        self.runner.as_ref().expect("present until dropped")
    }
}

impl Drop for PooledUNet<'_> {
    fn drop(&mut self) {
        if let (Some(pool), Some(r)) = (self.pool, self.runner.take()) {
            pool.put_back(self.key, r);
        }
    }
}

impl StableDiffusion {
    /// A UNet runner for `key` with context `context` written: a kept plan of that shape when there is
    /// one, else a new one.
    pub fn unet_runner(&self, key: UNetKey, context: &[f32]) -> Result<PooledUNet<'_>> {
        let pool = self.low_vram.is_none().then_some(&self.unet_plans);
        let runner = match pool.and_then(|p| p.take(key)) {
            Some(r) => {
                r.plan.write(r.context, context)?;
                r
            }
            None => UNetRunner::new(self, key.sample, context, key.context)?,
        };
        Ok(PooledUNet { runner: Some(runner), key, pool })
    }
}

/// A UNet plan for one batch shape, re-run every step with new latents and timestep.
pub struct UNetRunner {
    plan: Plan,
    sample: TensorId,
    timestep: TensorId,
    context: TensorId,
    out: TensorId,
    batch: usize,
}

impl UNetRunner {
    /// Plans the UNet for `sample_shape` and uploads the text embeddings `context` (`[B, 77·chunks, D]`; B
    /// a multiple of the sample's batch, which it repeats: see `UNet2DConditionModel::forward_chunked`).
    pub fn new(sd: &StableDiffusion, sample_shape: [usize; 4], context: &[f32], context_shape: [usize; 3]) -> Result<Self> {
        let (g, [sample, timestep, ctx, out]) = Self::graph(sd, sample_shape, context_shape)?;
        let plan = Plan::new(sd.gpu.clone(), g)?;
        plan.write(ctx, context)?;
        Ok(UNetRunner { plan, sample, timestep, context: ctx, out, batch: sample_shape[0] })
    }

    /// The UNet's graph for `sample_shape` and `context_shape`, and its sample, timestep, context and
    /// output tensors.
    pub fn graph(sd: &StableDiffusion, sample_shape: [usize; 4], context_shape: [usize; 3]) -> Result<(Graph, [TensorId; 4])> {
        let mut g = Graph::new();
        let sample = g.input("sample", TensorDesc::f32(&sample_shape));
        let timestep = g.input("timestep", TensorDesc::f32(&[sample_shape[0]]));
        let ctx = g.input("encoder_hidden_states", TensorDesc::f32(&context_shape));
        let ff = crate::models::transformer::FeedForwardChunking::INFERENCE;
        let out = sd.unet.forward_chunked(&mut g, sample, timestep, ctx, ff)?;
        g.output(out);
        Ok((g, [sample, timestep, ctx, out]))
    }

    /// One UNet evaluation at timestep `t` (the same for the whole batch).
    pub fn run(&self, sample: &[f32], t: f32) -> Result<Vec<f32>> {
        self.plan.write(self.sample, sample)?;
        self.plan.write(self.timestep, &vec![t; self.batch])?;
        Ok(self.plan.run_and_read(&[self.out])?.remove(0))
    }
}
