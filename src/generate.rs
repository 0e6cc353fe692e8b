//! `wgsd generate`, `img2img`, `inpaint`, `depth2img`: the pipelines from the command line, with a progress bar, a timing summary and PNGs that
//! carry their settings.

use std::path::PathBuf;
use std::sync::Arc;

use indicatif::{ProgressBar, ProgressStyle};

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::output::{check_writable, numbered_paths, to_rgb8, write_png, Parameters};
use crate::pipeline::denoise::{Condition, DepthSource};
use crate::imageproc::RgbImage;
use crate::pipeline::inputs::{check_depth, fit_init_image, read_init_image, read_mask, DepthMap};
use crate::pipeline::safety::SafetyMode;
use crate::pipeline::txt2img::Txt2ImgRequest;
use crate::pipeline::StableDiffusion;
use crate::schedulers::{self, TorchCpuGenerator};

/// Everything `wgsd generate` takes.
#[derive(Clone, Debug)]
pub struct GenerateOptions {
    pub model: String,
    /// For a single-file checkpoint `model`: the diffusers folder or repo id giving configs, tokenizer, scheduler.
    pub config: Option<String>,
    pub variant: Option<String>,
    pub prompt: String,
    pub negative_prompt: String,
    pub steps: usize,
    pub cfg_scale: f32,
    pub seed: Option<u64>,
    pub width: Option<usize>,
    pub height: Option<usize>,
    /// A1111 name (`euler_a`, `dpmpp_2m`, …) or diffusers class; None = the model's own scheduler.
    pub sampler: Option<String>,
    pub karras: bool,
    pub n_images: usize,
    /// Images per UNet batch (sharing one generator seeded with the batch's first seed).
    pub batch: usize,
    /// A1111 convention: 1 = last layer, 2 = penultimate.
    pub clip_skip: usize,
    pub out: PathBuf,
    pub overwrite: bool,
    pub mode: Mode,
    /// The safety checker (for models that ship one).
    pub safety: SafetyMode,
    /// `--lora FILE[:WEIGHT]` arguments, merged into the weights at load.
    pub loras: Vec<String>,
    /// Where the prompt's `<lora:NAME…>` tags are looked up.
    pub lora_dir: Option<PathBuf>,
    /// A1111 emphasis and chunking, or diffusers' plain reading.
    pub prompt_syntax: crate::prompt::PromptSyntax,
    /// `--embedding` files and the `--embeddings-dir` folder (textual inversion).
    pub embeddings: Vec<PathBuf>,
    pub embeddings_dir: Option<PathBuf>,
    /// `--prompt-file`: one prompt a line (`-` = standard input), each run with every other setting;
    /// replaces `prompt`.
    pub prompt_file: Option<PathBuf>,
    /// When the VAE works in tiles.
    pub vae_tiling: crate::models::vae_tiling::VaeTiling,
    /// `--vae`: a VAE folder or repo id (AutoencoderKL, or a TAESD AutoencoderTiny); `taesd` = madebyollin/taesd.
    pub vae: Option<String>,
    /// `--preview N`: write `<out stem>-preview.png` every N steps.
    pub preview: Option<usize>,
}

/// Which pipeline runs, with its inputs.
#[derive(Clone, Debug)]
pub enum Mode {
    Txt2Img,
    Img2Img { image: PathBuf, strength: f64 },
    Inpaint { image: PathBuf, mask: PathBuf, strength: f64 },
    /// `depth`: a depth map image; None = estimate it with the model's depth_estimator.
    Depth2Img { image: PathBuf, depth: Option<PathBuf>, strength: f64 },
}

impl Mode {
    fn strength(&self) -> Option<f64> {
        match self {
            Mode::Txt2Img => None,
            Mode::Img2Img { strength, .. } | Mode::Inpaint { strength, .. } | Mode::Depth2Img { strength, .. } => Some(*strength),
        }
    }

    /// Reads the input files and checks them against each other (before any model is loaded).
    fn condition(&self, width: Option<usize>, height: Option<usize>) -> Result<Condition> {
        if let Some(s) = self.strength() {
            if !(s > 0.0 && s <= 1.0) {
                return Err(Error::usage(format!("--strength must be in (0, 1], got {s}")));
            }
        }
        Ok(match self {
            Mode::Txt2Img => Condition::Text,
            Mode::Img2Img { image, strength } => Condition::Img2Img { image: read_init_image(image, width, height)?, strength: *strength },
            Mode::Inpaint { image: image_file, mask, strength } => {
                let original = RgbImage::open(image_file)?;
                let image = fit_init_image(&original, image_file, width, height)?;
                let mask = read_mask(mask, &image, (original.width, original.height))?;
                if mask.coverage() == 1.0 {
                    eprintln!("note: the mask is all white: the whole image is repainted");
                }
                Condition::Inpaint { image, mask, strength: *strength }
            }
            Mode::Depth2Img { image, depth, strength } => {
                let image = read_init_image(image, width, height)?;
                let depth = match depth {
                    Some(path) => {
                        let d = DepthMap::load(path)?;
                        check_depth(&image, &d, &path.display().to_string())?;
                        DepthSource::Given(d)
                    }
                    None => DepthSource::Estimated,
                };
                Condition::Depth { image, depth, strength: *strength }
            }
        })
    }
}

/// Upper bounds on what one command may ask for: far above any real use, low enough that a typo does not
/// start a run that cannot finish.
pub const MAX_IMAGES: usize = 10_000;
pub const MAX_BATCH: usize = 64;
pub const MAX_STEPS: usize = 1000;
/// Width and height limit (A1111's sliders end at 2048; the VAE tiles far beyond).
pub const MAX_SIDE: usize = 16384;

/// A device limit hit while planning turned into a sentence about the request: which size needs what, what
/// this GPU allows, and what to do. The technical detail follows.
fn explain_limit(e: Error, width: usize, height: usize, batch: usize) -> Error {
    match &e {
        Error::Limit { needed, limit, limit_name, .. } => Error::usage(format!(
            "{width}×{height} (batch {batch}) needs a {} MiB buffer; this GPU allows {} MiB ({limit_name}): use a smaller size{}.\n  detail: {e}",
            needed.div_ceil(1 << 20),
            limit >> 20,
            if batch > 1 { " or --batch 1" } else { "" }
        )),
        _ => e,
    }
}

/// `--seed` as A1111 takes it: -1 = random (None), other negatives refused.
pub fn seed_arg(v: Option<i64>) -> std::result::Result<Option<u64>, String> {
    match v {
        None | Some(-1) => Ok(None),
        Some(v) if v < 0 => Err(format!("--seed {v}: a seed is 0 or more (-1 = random)")),
        Some(v) => Ok(Some(v as u64)),
    }
}

/// The model's name for the PNG's `Model:` field: a hub id as given, a local folder or file by its name
/// (not the user's whole path).
pub fn model_label(model: &str) -> String {
    let p = std::path::Path::new(model);
    if p.exists() {
        let name = if p.is_file() { p.file_stem() } else { p.file_name() };
        if let Some(n) = name.and_then(|n| n.to_str()) {
            return n.to_string();
        }
    }
    model.to_string()
}

pub fn run(gpu: Arc<Gpu>, o: &GenerateOptions) -> Result<Vec<PathBuf>> {
    if o.clip_skip == 0 {
        return Err(Error::usage("--clip-skip counts from 1 (1 = no skip, 2 = the penultimate layer, as in A1111)"));
    }
    if o.n_images == 0 || o.batch == 0 {
        return Err(Error::usage("--n-images and --batch must be at least 1"));
    }
    if o.n_images > MAX_IMAGES || o.batch > MAX_BATCH {
        return Err(Error::usage(format!("--n-images is at most {MAX_IMAGES} and --batch at most {MAX_BATCH} (got {} and {})", o.n_images, o.batch)));
    }
    if !o.cfg_scale.is_finite() {
        return Err(Error::usage(format!("--cfg-scale {}: must be a finite number (A1111 uses 1 to 30)", o.cfg_scale)));
    }
    if o.steps > MAX_STEPS {
        return Err(Error::usage(format!("--steps is at most {MAX_STEPS} (got {})", o.steps)));
    }
    if o.steps == 0 {
        return Err(Error::usage("--steps must be at least 1"));
    }
    for (name, v) in [("--width", o.width), ("--height", o.height)] {
        if let Some(v) = v {
            if v > MAX_SIDE {
                return Err(Error::usage(format!("{name} {v} is above {MAX_SIDE}")));
            }
            if v == 0 || v % 8 != 0 {
                return Err(Error::usage(format!("{name} {v} is not a positive multiple of 8 (try {})", (v / 8).max(1) * 8)));
            }
        }
    }
    // A sampler name is checked before loading (its config comes from the model later).
    if let Some(name) = &o.sampler {
        schedulers::check_sampler_name(name)?;
    }
    let raw_prompts = match &o.prompt_file {
        Some(f) => read_prompt_file(f)?,
        None => vec![o.prompt.clone()],
    };
    let total = raw_prompts.len() * o.n_images;
    if total > MAX_IMAGES {
        return Err(Error::usage(format!("{} prompts × {} images is more than {MAX_IMAGES} images", raw_prompts.len(), o.n_images)));
    }
    let paths = numbered_paths(&o.out, total);
    check_writable(&paths, o.overwrite)?;
    let cond = o.mode.condition(o.width, o.height)?;

    let t_load = std::time::Instant::now();
    let mut extras = Vec::new();
    if o.safety != SafetyMode::Off {
        extras.extend(["safety_checker", "feature_extractor"]);
    }
    if matches!(o.mode, Mode::Depth2Img { depth: None, .. }) {
        extras.extend(["depth_estimator", "feature_extractor"]);
    }
    let single_file = is_single_file(&o.model)?;
    // LoRAs are merged at load: every prompt of a file must ask for the same ones.
    let mut prompts = Vec::new();
    let mut loras = Vec::new();
    for (i, raw) in raw_prompts.iter().enumerate() {
        let (clean, l) = crate::pipeline::lora::resolve_loras(&o.loras, o.lora_dir.as_deref(), raw)?;
        if i == 0 {
            loras = l;
        } else if l != loras {
            return Err(Error::usage(format!(
                "prompt {} of the prompt file asks for other LoRAs than the first (<lora:…> tags are merged into the weights once, at load): split the file by LoRA",
                i + 1
            )));
        }
        prompts.push(clean);
    }
    let hooks = (!loras.is_empty()).then(crate::pipeline::lora::WeightIndex::hooks);
    let (dir, mut sd) = open_model(&gpu, &o.model, o.config.as_deref(), o.variant.as_deref(), &extras, hooks.as_ref())?;
    if let Some(h) = &hooks {
        crate::pipeline::lora::apply_loras(&gpu, h, &loras)?;
    }
    sd.prompt.syntax = o.prompt_syntax;
    sd.vae_tiling = o.vae_tiling;
    if let Some(v) = &o.vae {
        let id = if v == "taesd" { "madebyollin/taesd" } else { v.as_str() };
        let class = sd.load_vae(&crate::hub::resolve_single_model(id)?)?;
        eprintln!("VAE: {class} from {id}");
    }
    load_embeddings(&mut sd, &o.embeddings, o.embeddings_dir.as_deref())?;
    for p in &prompts {
        report_embeddings(&sd, &[("prompt", p.as_str())])?;
    }
    report_embeddings(&sd, &[("negative prompt", o.negative_prompt.as_str())])?;
    let default_size = sd.unet.config_sample_size().unwrap_or(64) * 8;
    let (width, height) = match &cond {
        Condition::Img2Img { image, .. } | Condition::Inpaint { image, .. } | Condition::Depth { image, .. } => (image.width, image.height),
        Condition::Text => (o.width.unwrap_or(default_size), o.height.unwrap_or(default_size)),
    };
    if let Some(every) = o.preview.filter(|&n| n > 0) {
        sd.preview = Some(preview_writer(&o.out, every, width, height));
    }
    let (mut scheduler, sampler_name) = pick_scheduler(&sd, &dir, o.sampler.as_deref(), o.karras)?;
    let loaded = if single_file { format!("{} with the configs of {}", o.model, dir.display()) } else { dir.display().to_string() };
    eprintln!("loaded {loaded} in {:.1} s on {}", t_load.elapsed().as_secs_f64(), gpu.info.name);

    let seed = match o.seed {
        Some(s) => s,
        None => {
            let s = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0) % (1 << 32);
            eprintln!("seed {s} (random)");
            s
        }
    };
    // Image i uses seed + i: refuse a seed whose last image would wrap around.
    if seed.checked_add(total as u64).is_none() {
        return Err(Error::usage(format!("--seed {seed} + {total} images overflows a 64-bit seed")));
    }
    let mut written = Vec::new();
    for (pi, (raw, prompt)) in raw_prompts.iter().zip(&prompts).enumerate() {
        let first = pi * o.n_images;
        let mut index = 0;
        while index < o.n_images {
            let count = o.batch.min(o.n_images - index);
            let batch_seed = seed + (first + index) as u64;
            let req = Txt2ImgRequest {
                prompts: vec![prompt.clone()],
                negative_prompts: if o.negative_prompt.is_empty() { vec![] } else { vec![o.negative_prompt.clone()] },
                images_per_prompt: count,
                width,
                height,
                steps: o.steps,
                guidance_scale: o.cfg_scale,
                clip_skip: o.clip_skip - 1,
            };
            let mut noise = TorchCpuGenerator::new(batch_seed);
            let bar = ProgressBar::new(scheduler_steps(o.steps, scheduler.as_ref()) as u64);
            bar.set_style(
                ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} {per_sec} eta {eta}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            bar.set_message(format!("seed {batch_seed}"));
            let result = sd
                .generate(&req, &cond, scheduler.as_mut(), &mut noise, &mut |i, total| {
                    bar.set_length(total as u64);
                    bar.set_position(i as u64);
                })
                .map_err(|e| explain_limit(e, width, height, count))?;
            bar.finish_and_clear();
            if result.truncated[0] > 0 {
                eprintln!(
                    "warning: the prompt is longer than CLIP's 77 tokens; {} token(s) at the end were ignored (--prompt-syntax a1111 reads prompts of any length)",
                    result.truncated[0]
                );
            }
            for note in &result.notes {
                eprintln!("note: {note}");
            }
            let per_step = result.t_steps.iter().sum::<f64>() / result.t_steps.len().max(1) as f64;
            // The spread shows a slow first step (pipelines compiled on first use) or a machine that is busy.
            let spread = match (result.t_steps.iter().copied().reduce(f64::min), result.t_steps.iter().copied().reduce(f64::max)) {
                (Some(lo), Some(hi)) if result.t_steps.len() > 1 => format!(", {lo:.2}–{hi:.2} s"),
                _ => String::new(),
            };
            eprintln!(
                "timing: text encoding {:.2} s, {} steps at {:.2} s/step ({:.2} it/s{spread}), VAE decode {:.2} s",
                result.t_text,
                result.t_steps.len(),
                per_step,
                1.0 / per_step.max(1e-9),
                result.t_decode
            );
            let mut result = result;
            let flagged = if sd.has_safety_checker() {
                sd.run_safety_checker(&mut result.images, count, width, height, o.safety)?
            } else {
                vec![false; count]
            };
            let img_len = width * height * 3;
            for k in 0..count {
                let path = &paths[first + index + k];
                let params = Parameters {
                    prompt: crate::pipeline::lora::a1111_prompt(raw, &loras[..o.loras.len()]),
                    negative_prompt: o.negative_prompt.clone(),
                    steps: o.steps,
                    sampler: sampler_name.clone(),
                    cfg_scale: o.cfg_scale,
                    seed: batch_seed,
                    width,
                    height,
                    model: model_label(&o.model),
                    extra: Parameters::extras(o.mode.strength(), o.clip_skip, count, k),
                };
                let rgb = to_rgb8(&result.images[k * img_len..(k + 1) * img_len]);
                write_png(path, width, height, &rgb, &params.a1111_text(), o.overwrite)?;
                match (flagged[k], o.safety) {
                    (true, SafetyMode::Black) => eprintln!(
                        "wrote {}: the safety checker flagged this image, so it is black (--safety-checker warn keeps it)",
                        path.display()
                    ),
                    (true, _) => eprintln!("wrote {}: warning: the safety checker flagged this image", path.display()),
                    _ => eprintln!("wrote {}", path.display()),
                }
                written.push(path.clone());
            }
            index += count;
        }
    }
    Ok(written)
}

/// The prompts of `--prompt-file` (`-` = standard input): one a line, blank lines and lines starting with
/// `#` skipped.
pub fn read_prompt_file(path: &std::path::Path) -> Result<Vec<String>> {
    let text = if path.as_os_str() == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s).map_err(|e| Error::usage(format!("--prompt-file -: cannot read standard input: {e}")))?;
        s
    } else {
        std::fs::read_to_string(path).map_err(|e| Error::Input { file: path.display().to_string(), msg: format!("cannot read the prompt file: {e}") })?
    };
    let prompts: Vec<String> =
        text.lines().map(|l| l.trim_end_matches('\r').trim()).filter(|l| !l.is_empty() && !l.starts_with('#')).map(String::from).collect();
    if prompts.is_empty() {
        return Err(Error::Input { file: path.display().to_string(), msg: "the prompt file holds no prompt (one a line)".into() });
    }
    Ok(prompts)
}

/// Writes the first image of each preview to `<out stem>-preview.png`, replacing the last one.
fn preview_writer(out: &std::path::Path, every: usize, width: usize, height: usize) -> crate::pipeline::Preview {
    let stem = out.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "wgsd".into());
    let path = out.with_file_name(format!("{stem}-preview.png"));
    crate::pipeline::Preview {
        every,
        sink: Box::new(move |images, step| {
            let rgb = to_rgb8(&images[..(width * height * 3).min(images.len())]);
            write_png(&path, width, height, &rgb, &format!("preview after step {step}"), true)
        }),
    }
}

/// The scheduler of a run and its A1111 display name for the PNG: `sampler` (an A1111 name or a diffusers
/// class, `karras` adding Karras sigmas) on top of the model's scheduler config, or the model's own
/// scheduler when None. `dir` is the folder that gave the configs (named in errors).
pub fn pick_scheduler(sd: &StableDiffusion, dir: &std::path::Path, sampler: Option<&str>, karras: bool) -> Result<(Box<dyn schedulers::Scheduler>, String)> {
    let source = dir.join("scheduler/scheduler_config.json").display().to_string();
    Ok(match sampler {
        Some(name) => {
            let (s, named_karras) = schedulers::parse_a1111(name)?;
            let karras = karras || named_karras;
            (schedulers::from_a1111(name, karras, &sd.scheduler_config, &source)?, schedulers::a1111_display_name(&s, karras))
        }
        None => {
            let class = sd.scheduler_config["_class_name"].as_str().unwrap_or("PNDMScheduler").to_string();
            (schedulers::from_config(&class, &sd.scheduler_config, &source)?, schedulers::a1111_name_of_class(&class, &sd.scheduler_config))
        }
    })
}

/// Loads `--embedding` files (a width that does not fit the model is an error) and the `--embeddings-dir`
/// folder (embeddings for another model family are skipped with a note, as A1111 lists them as skipped).
pub fn load_embeddings(sd: &mut StableDiffusion, files: &[PathBuf], dir: Option<&std::path::Path>) -> Result<()> {
    let width = sd.text_encoder.config.hidden_size;
    for f in files {
        sd.prompt.embeddings.add_file(f, width)?;
    }
    if let Some(d) = dir {
        let skipped = sd.prompt.embeddings.add_dir(d, width)?;
        if !skipped.is_empty() {
            eprintln!(
                "note: {} embedding(s) in {} are for another model family (not {width} wide) and were skipped: {}",
                skipped.len(),
                d.display(),
                skipped.join(", ")
            );
        }
    }
    Ok(())
}

/// Prints which embeddings the prompts trigger (A1111 prints the same), so a misspelt trigger is noticed.
pub fn report_embeddings(sd: &StableDiffusion, texts: &[(&str, &str)]) -> Result<()> {
    if sd.prompt.embeddings.is_empty() {
        return Ok(());
    }
    let chunker = sd.chunker()?;
    for (what, text) in texts {
        let used = chunker.embeddings_used(text, sd.prompt.syntax)?;
        if !used.is_empty() {
            let names: Vec<String> =
                used.iter().map(|&i| format!("{} ({} vector(s))", sd.prompt.embeddings.list[i].name, sd.prompt.embeddings.list[i].count)).collect();
            eprintln!("embeddings in the {what}: {}", names.join(", "));
        }
    }
    Ok(())
}

/// Whether `model` is a single-file checkpoint (`.safetensors`); `.ckpt` pickles are refused.
/// Loads `model` — a diffusers folder, a Hugging Face repo id, or a single-file `.safetensors` checkpoint
/// with `config` (a folder or repo id) for its configs — fetching the optional components `extras` from the
/// Hub when needed; `hooks` loads it for training. Returns the folder that gave the configs.
pub fn open_model(
    gpu: &Arc<Gpu>,
    model: &str,
    config: Option<&str>,
    variant: Option<&str>,
    extras: &[&str],
    hooks: Option<&crate::pipeline::TrainingHooks>,
) -> Result<(PathBuf, StableDiffusion)> {
    if is_single_file(model)? {
        let Some(config) = config else {
            return Err(Error::usage(format!(
                "{model} is a single-file checkpoint: pass --config <diffusers folder or repo id> for its configs, tokenizer and \
                 scheduler (e.g. stable-diffusion-v1-5/stable-diffusion-v1-5 for SD 1.x, stabilityai/stable-diffusion-2-1 for SD 2.x)"
            )));
        };
        let dir = crate::hub::resolve_config(config, extras)?;
        let file = std::path::Path::new(model);
        let sd = match hooks {
            Some(h) => StableDiffusion::load_single_file_for_training(gpu.clone(), file, &dir, h)?,
            None => StableDiffusion::load_single_file(gpu.clone(), file, &dir)?,
        };
        Ok((dir, sd))
    } else {
        if config.is_some() {
            return Err(Error::usage("--config goes with a single-file checkpoint (--model <file>.safetensors); a diffusers --model has its own configs"));
        }
        let dir = crate::hub::resolve(model, variant, extras)?;
        let sd = match hooks {
            Some(h) => StableDiffusion::load_for_training(gpu.clone(), &dir, variant, h)?,
            None => StableDiffusion::load(gpu.clone(), &dir, variant)?,
        };
        Ok((dir, sd))
    }
}

/// Whether `model` names a single-file checkpoint (pickles are refused with a way out).
pub fn is_single_file(model: &str) -> Result<bool> {
    let lower = model.to_ascii_lowercase();
    if lower.ends_with(".ckpt") || lower.ends_with(".pt") || lower.ends_with(".pth") || lower.ends_with(".bin") {
        return Err(Error::usage(format!(
            "{model}: pickle checkpoints (.ckpt) are not supported (loading them can run arbitrary code); convert it to \
             .safetensors first, e.g. with diffusers or A1111's checkpoint merger, or use the .safetensors release"
        )));
    }
    Ok(lower.ends_with(".safetensors"))
}

fn scheduler_steps(steps: usize, s: &dyn schedulers::Scheduler) -> usize {
    steps * s.order()
}
