//! The GPU side of the server: a loaded model kept between requests, and one checked request turned into
//! PNG images and their infotexts — the same steps, in the same order, as `wgsd generate` (so the same
//! settings and seed give the same pixels).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};
use crate::generate::{open_model, pick_scheduler, report_embeddings};
use crate::gpu::Gpu;
use crate::imageproc::RgbImage;
use crate::output::{encode_png, to_rgb8, Parameters};
use crate::pipeline::denoise::Condition;
use crate::pipeline::inputs::{fit_init_image, fit_mask};
use crate::pipeline::lora::{apply_loras, LoraUse, WeightIndex};
use crate::pipeline::safety::SafetyMode;
use crate::pipeline::txt2img::Txt2ImgRequest;
use crate::pipeline::StableDiffusion;
use crate::schedulers::TorchCpuGenerator;

use super::catalog::Catalog;

/// A checked generation request, ready to run.
#[derive(Clone, Debug)]
pub struct JobSpec {
    /// The checkpoint's name in the catalog.
    pub model: String,
    /// The prompt as given (LoRA tags kept: they go into the PNG as A1111 writes them).
    pub prompt: String,
    /// The prompt without its LoRA tags (what the text encoder reads).
    pub clean_prompt: String,
    /// The prompt's LoRAs, resolved inside `--lora-dir`.
    pub loras: Vec<LoraUse>,
    pub negative_prompt: String,
    pub steps: usize,
    pub cfg_scale: f32,
    /// The first image's seed (a random one already drawn for −1).
    pub seed: u64,
    pub width: usize,
    pub height: usize,
    /// An A1111 sampler name; None = the model's own scheduler.
    pub sampler: Option<String>,
    pub karras: bool,
    /// Images per UNet batch, and batches.
    pub batch_size: usize,
    pub n_iter: usize,
    /// A1111's CLIP skip (1 = none).
    pub clip_skip: usize,
    pub init: Option<InitSpec>,
}

/// img2img's inputs: the init image, an optional inpainting mask, the denoising strength.
#[derive(Clone, Debug)]
pub struct InitSpec {
    pub image: RgbImage,
    /// White = repaint (already inverted when the request asked for `inpainting_mask_invert`).
    pub mask: Option<RgbImage>,
    pub strength: f64,
}

/// What a job made: PNG files (with their `parameters` chunk) and what `info` reports about them.
#[derive(Clone, Debug, Default)]
pub struct JobOutput {
    pub images: Vec<Vec<u8>>,
    pub infotexts: Vec<String>,
    /// The seed of each image's batch (image i of a batch also needs its batch position to be remade).
    pub seeds: Vec<u64>,
    pub sampler_name: String,
    pub model: String,
    /// Per image: whether the safety checker flagged it.
    pub flagged: Vec<bool>,
    /// Whether an interrupt ended the job early (the images then show where the denoising stopped).
    pub interrupted: bool,
}

/// How the worker follows and steers a running job (progress, interrupt, skip, a client gone).
pub trait Control {
    /// Batch `index` of `count` begins.
    fn batch_started(&self, index: usize, count: usize);
    fn step(&self, step: usize, total: usize);
    /// Whether to end the current batch's denoising now (interrupt, skip, or the client left).
    fn stop_batch(&self) -> bool;
    /// Whether to start no more batches (interrupt, or the client left); clears a pending skip.
    fn stop_job(&self) -> bool;
}

/// What `embeddings` and `options` report about the loaded model.
#[derive(Clone, Debug, Default)]
pub struct LoadedInfo {
    /// The checkpoint's catalog name.
    pub model: String,
    /// Loaded embeddings: (name, vectors, width).
    pub embeddings: Vec<(String, usize, usize)>,
    /// Embeddings of `--embeddings-dir` skipped for another width: (name, vectors, width).
    pub skipped: Vec<(String, usize, usize)>,
}

struct Loaded {
    /// The checkpoint's name and the LoRAs merged into it.
    key: (String, Vec<LoraUse>),
    /// The folder that gave the configs.
    dir: PathBuf,
    sd: StableDiffusion,
}

/// The model owner: it lives on the worker thread, the only one that touches the GPU.
pub struct Engine {
    gpu: Arc<Gpu>,
    catalog: Arc<Catalog>,
    safety: SafetyMode,
    loaded: Option<Loaded>,
    info: Arc<Mutex<LoadedInfo>>,
}

impl Engine {
    pub fn new(gpu: Arc<Gpu>, catalog: Arc<Catalog>, safety: SafetyMode, info: Arc<Mutex<LoadedInfo>>) -> Self {
        Engine { gpu, catalog, safety, loaded: None, info }
    }

    /// Makes `model` with `loras` merged the loaded model. A LoRA is merged into the weights, so another
    /// set of LoRAs means reloading the checkpoint (the cost of a model switch, once per change).
    pub fn ensure(&mut self, model: &str, loras: &[LoraUse]) -> Result<()> {
        let key = (model.to_string(), loras.to_vec());
        if self.loaded.as_ref().is_some_and(|l| l.key == key) {
            return Ok(());
        }
        // Free the old weights before reading the new ones: two models may not fit at once.
        self.loaded = None;
        let entry = self.catalog.find_model(model).ok_or_else(|| Error::usage(format!("sd_model_checkpoint: no checkpoint named '{model}'")))?;
        let t = std::time::Instant::now();
        let mut extras = Vec::new();
        if self.safety != SafetyMode::Off {
            extras.extend(["safety_checker", "feature_extractor"]);
        }
        let hooks = (!loras.is_empty()).then(WeightIndex::hooks);
        let (dir, mut sd) = open_model(&self.gpu, &entry.source, entry.config.as_deref(), None, &extras, hooks.as_ref())?;
        if let Some(h) = &hooks {
            apply_loras(&self.gpu, h, loras)?;
        }
        sd.prompt.syntax = crate::prompt::PromptSyntax::A1111;
        let width = sd.text_encoder.config.hidden_size;
        let mut skipped = Vec::new();
        if let Some(d) = &self.catalog.embeddings_dir {
            let names = sd.prompt.embeddings.add_dir(d, width)?;
            skipped = skipped_embeddings(d, &self.catalog, &names);
        }
        *self.info.lock().unwrap_or_else(|e| e.into_inner()) = LoadedInfo {
            model: model.to_string(),
            embeddings: sd.prompt.embeddings.list.iter().map(|e| (e.name.clone(), e.count, e.width)).collect(),
            skipped,
        };
        eprintln!("loaded {model} ({} LoRA(s)) in {:.1} s", loras.len(), t.elapsed().as_secs_f64());
        self.loaded = Some(Loaded { key, dir, sd });
        Ok(())
    }

    /// Forgets the loaded model (after a panic, its state is not trusted).
    pub fn unload(&mut self) {
        self.loaded = None;
    }

    /// Runs a job: `n_iter` batches of `batch_size` images, batch b seeded with `seed + b·batch_size`, as
    /// `wgsd generate --n-images (batch_size·n_iter) --batch batch_size` runs them.
    pub fn run(&mut self, spec: &JobSpec, ctl: &dyn Control) -> Result<JobOutput> {
        self.ensure(&spec.model, &spec.loras)?;
        let loaded = self.loaded.as_ref().expect("ensure loaded a model");
        let sd = &loaded.sd;
        report_embeddings(sd, &[("prompt", spec.clean_prompt.as_str()), ("negative prompt", spec.negative_prompt.as_str())])?;
        let (mut scheduler, sampler_name) = pick_scheduler(sd, &loaded.dir, spec.sampler.as_deref(), spec.karras)?;
        let cond = condition(spec)?;
        let (width, height) = (spec.width, spec.height);
        let total_images = spec.batch_size * spec.n_iter;
        if spec.seed.checked_add(total_images as u64).is_none() {
            return Err(Error::usage(format!("seed: {} + {total_images} images overflows a 64-bit seed", spec.seed)));
        }
        let kind = match &spec.init {
            None => "txt2img",
            Some(i) if i.mask.is_some() => "inpaint",
            Some(_) => "img2img",
        };
        eprintln!("job: {kind} seed {}, {width}x{height}, {} steps, {} image(s), {sampler_name}", spec.seed, spec.steps, total_images);
        let mut out = JobOutput { sampler_name: sampler_name.clone(), model: spec.model.clone(), ..Default::default() };
        for b in 0..spec.n_iter {
            if b > 0 && ctl.stop_job() {
                out.interrupted = true;
                break;
            }
            ctl.batch_started(b, spec.n_iter);
            let count = spec.batch_size;
            let batch_seed = spec.seed + (b * count) as u64;
            let req = Txt2ImgRequest {
                prompts: vec![spec.clean_prompt.clone()],
                negative_prompts: if spec.negative_prompt.is_empty() { vec![] } else { vec![spec.negative_prompt.clone()] },
                images_per_prompt: count,
                width,
                height,
                steps: spec.steps,
                guidance_scale: spec.cfg_scale,
                clip_skip: spec.clip_skip - 1,
            };
            let mut noise = TorchCpuGenerator::new(batch_seed);
            let mut result = sd.generate_until(&req, &cond, scheduler.as_mut(), &mut noise, &mut |i, total| ctl.step(i, total), &|| ctl.stop_batch())?;
            for note in &result.notes {
                eprintln!("note: {note}");
            }
            let flagged = if sd.has_safety_checker() {
                sd.run_safety_checker(&mut result.images, count, width, height, self.safety)?
            } else {
                vec![false; count]
            };
            let img_len = width * height * 3;
            for (k, &flag) in flagged.iter().enumerate().take(count) {
                let params = Parameters {
                    prompt: spec.prompt.clone(),
                    negative_prompt: spec.negative_prompt.clone(),
                    steps: spec.steps,
                    sampler: sampler_name.clone(),
                    cfg_scale: spec.cfg_scale,
                    seed: batch_seed,
                    width,
                    height,
                    model: spec.model.clone(),
                    extra: Parameters::extras(spec.init.as_ref().map(|i| i.strength), spec.clip_skip, count, k),
                };
                let text = params.a1111_text();
                let rgb = to_rgb8(&result.images[k * img_len..(k + 1) * img_len]);
                out.images.push(encode_png(width, height, &rgb, &text)?);
                out.infotexts.push(text);
                out.seeds.push(batch_seed);
                out.flagged.push(flag);
            }
        }
        if ctl.stop_job() {
            out.interrupted = true;
        }
        Ok(out)
    }
}

/// The pipeline condition of a job, its images fitted to the requested size as `wgsd img2img` and
/// `wgsd inpaint` fit files (Lanczos resize; the mask to the image, binarised at 50%).
fn condition(spec: &JobSpec) -> Result<Condition> {
    let Some(init) = &spec.init else { return Ok(Condition::Text) };
    let (w, h) = (Some(spec.width), Some(spec.height));
    let image = fit_init_image(&init.image, Path::new("init_images[0]"), w, h)?;
    Ok(match &init.mask {
        None => Condition::Img2Img { image, strength: init.strength },
        Some(m) => {
            let mask = fit_mask(m, Path::new("mask"), &image, (init.image.width, init.image.height))?;
            Condition::Inpaint { image, mask, strength: init.strength }
        }
    })
}

/// The embeddings of `--embeddings-dir` that `add_dir` skipped (by file name), with their sizes.
fn skipped_embeddings(dir: &Path, catalog: &Catalog, skipped_files: &[String]) -> Vec<(String, usize, usize)> {
    catalog
        .embedding_files()
        .into_iter()
        .filter(|(_, rel)| skipped_files.iter().any(|s| rel.rsplit('/').next() == Some(s.as_str())))
        .filter_map(|(name, rel)| crate::prompt::embeddings::load_embedding(&dir.join(rel)).ok().map(|e| (name, e.count, e.width)))
        .collect()
}
