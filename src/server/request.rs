//! An A1111 generation request checked and turned into a [`JobSpec`]: every value in range, images
//! decoded, the sampler and scheduler known, the LoRAs found in `--lora-dir` — before the job is queued,
//! so a bad request is answered at once with 4xx naming the field.

use base64::Engine as _;

use crate::imageproc::{Decoded, RgbImage};
use crate::pipeline::lora::{extract_lora_tags, LoraUse};
use crate::schedulers;

use super::api::GenerationRequest;
use super::catalog::Catalog;
use super::error::{ApiError, ApiResult};
use super::jobs::{InitSpec, JobSpec};
use super::limits::{in_range, Limits};

/// The server-wide settings a request may override (`override_settings`).
#[derive(Clone, Debug)]
pub struct Settings {
    pub checkpoint: String,
    /// A1111's `CLIP_stopat_last_layers`.
    pub clip_skip: usize,
}

/// A1111's schedulers that wgsd has: (name, label, default rho).
pub const SCHEDULERS: &[(&str, &str, Option<f64>)] = &[("automatic", "Automatic", None), ("karras", "Karras", Some(7.0))];

/// Checks `r` (`img2img` when `img2img`) against the limits and resolves its names.
pub fn job_spec(r: &GenerationRequest, img2img: bool, settings: &Settings, catalog: &Catalog, limits: &Limits) -> ApiResult<JobSpec> {
    refuse_unsupported(r)?;
    let (width, height) = limits.size(r.width.unwrap_or(512), r.height.unwrap_or(512))?;
    let steps = limits.steps(r.steps.unwrap_or(50))?;
    let (batch_size, n_iter) = limits.batch(r.batch_size.unwrap_or(1), r.n_iter.unwrap_or(1))?;
    let cfg = r.cfg_scale.unwrap_or(7.0);
    if !cfg.is_finite() || !(0.0..=100.0).contains(&cfg) {
        return Err(ApiError::bad_request(format!("cfg_scale: {cfg} is out of range (0..=100)")));
    }
    let seed = match r.seed {
        None | Some(-1) => random_seed(),
        Some(s) if s < 0 => return Err(ApiError::bad_request(format!("seed: {s} is not a seed (0 or more, or -1 for a random one)"))),
        Some(s) => s as u64,
    };
    let (sampler, karras) = sampler(r)?;

    let overrides = r.override_settings.clone().unwrap_or_default();
    let model = match overrides.get("sd_model_checkpoint") {
        Some(v) => {
            let name = v.as_str().ok_or_else(|| ApiError::bad_request("override_settings.sd_model_checkpoint: expected a string"))?;
            find_checkpoint(catalog, name, "override_settings.sd_model_checkpoint")?
        }
        None => settings.checkpoint.clone(),
    };
    let clip_skip = match overrides.get("CLIP_stopat_last_layers") {
        Some(v) => in_range("override_settings.CLIP_stopat_last_layers", v.as_i64().ok_or_else(|| ApiError::bad_request("override_settings.CLIP_stopat_last_layers: expected an integer"))?, 1, 12)?,
        None => settings.clip_skip,
    };

    let prompt = r.prompt.clone().unwrap_or_default();
    let (clean_prompt, tags) = extract_lora_tags(&prompt).map_err(|e| ApiError::bad_request(format!("prompt: {e}")))?;
    let mut loras = Vec::new();
    for t in tags {
        loras.push(LoraUse { path: catalog.resolve_lora(&t.name)?, te: t.te, unet: t.unet });
    }
    let negative_prompt = r.negative_prompt.clone().unwrap_or_default();
    if negative_prompt.contains("<lora:") {
        return Err(ApiError::bad_request("negative_prompt: <lora:…> tags go in the prompt"));
    }

    let init = if img2img { Some(init_spec(r, limits)?) } else { None };
    Ok(JobSpec {
        model,
        prompt,
        clean_prompt,
        loras,
        negative_prompt,
        steps,
        cfg_scale: cfg as f32,
        seed,
        width,
        height,
        sampler,
        karras,
        batch_size,
        n_iter,
        clip_skip,
        init,
    })
}

/// A checkpoint by any name `sd-models` gives it (404 naming the field otherwise).
pub fn find_checkpoint(catalog: &Catalog, name: &str, field: &str) -> ApiResult<String> {
    catalog
        .find_model(name)
        .map(|m| m.name)
        .ok_or_else(|| ApiError::not_found(format!("{field}: no checkpoint named '{name}' (GET /sdapi/v1/sd-models lists them)")))
}

/// Settings that would change the picture in ways wgsd does not implement: refused, not ignored.
fn refuse_unsupported(r: &GenerationRequest) -> ApiResult<()> {
    let refuse = |field: &str, what: &str| Err(ApiError::bad_request(format!("{field}: {what} is not supported by wgsd")));
    if r.enable_hr == Some(true) {
        return refuse("enable_hr", "hires fix");
    }
    if r.tiling == Some(true) {
        return refuse("tiling", "tiling");
    }
    if r.restore_faces == Some(true) {
        return refuse("restore_faces", "face restoration");
    }
    if r.subseed_strength.is_some_and(|s| s != 0.0) {
        return refuse("subseed_strength", "variation seeds");
    }
    if r.script_name.as_deref().is_some_and(|s| !s.trim().is_empty() && !s.eq_ignore_ascii_case("none")) {
        return refuse("script_name", "scripts");
    }
    Ok(())
}

/// `sampler_name` (or the older `sampler_index`) and `scheduler`: (A1111 sampler, Karras sigmas).
fn sampler(r: &GenerationRequest) -> ApiResult<(Option<String>, bool)> {
    let name = r.sampler_name.as_deref().or(r.sampler_index.as_deref()).map(str::trim).filter(|s| !s.is_empty());
    let field = if r.sampler_name.is_some() { "sampler_name" } else { "sampler_index" };
    let sched = r.scheduler.as_deref().map(str::trim).unwrap_or("").to_lowercase();
    let karras = match sched.as_str() {
        "" | "automatic" => false,
        "karras" => true,
        other => {
            let known: Vec<&str> = SCHEDULERS.iter().map(|s| s.1).collect();
            return Err(ApiError::bad_request(format!("scheduler: '{other}' is not available; wgsd has {}", known.join(", "))));
        }
    };
    let Some(name) = name else {
        if karras {
            return Err(ApiError::bad_request("scheduler: Karras needs a sampler_name (e.g. \"DPM++ 2M\")"));
        }
        return Ok((None, false));
    };
    let (s, named_karras) = schedulers::parse_a1111(name).map_err(|_| {
        ApiError::bad_request(format!("{field}: unknown sampler '{name}' (GET /sdapi/v1/samplers lists them)"))
    })?;
    if (karras || named_karras) && !s.karras_ok {
        return Err(ApiError::bad_request(format!("scheduler: sampler '{}' has no Karras variant; use Automatic", s.display)));
    }
    // "DPM++ 2M Karras" (A1111's older single-name form) is the Karras scheduler too.
    Ok((Some(name.to_string()), karras || named_karras))
}

fn init_spec(r: &GenerationRequest, limits: &Limits) -> ApiResult<InitSpec> {
    let images = r.init_images.as_deref().unwrap_or_default();
    let first = match images {
        [] => return Err(ApiError::bad_request("init_images: img2img needs one init image (base64)")),
        [one] => one,
        more => return Err(ApiError::bad_request(format!("init_images: {} images given; wgsd takes one init image per request", more.len()))),
    };
    let image = decode_image("init_images[0]", first, limits)?;
    if r.resize_mode.is_some_and(|m| m != 0) {
        return Err(ApiError::bad_request("resize_mode: only 0 (just resize) is supported"));
    }
    let strength = r.denoising_strength.unwrap_or(0.75);
    if !(strength > 0.0 && strength <= 1.0) {
        return Err(ApiError::bad_request(format!("denoising_strength: {strength} is out of range (0, 1]")));
    }
    let mask = match r.mask.as_deref().filter(|m| !m.is_empty()) {
        None => None,
        Some(m) => {
            let mut mask = decode_image("mask", m, limits)?;
            let invert = in_range("inpainting_mask_invert", r.inpainting_mask_invert.unwrap_or(0), 0, 1)? == 1;
            if invert {
                mask.data.iter_mut().for_each(|v| *v = 255 - *v);
            }
            Some(mask)
        }
    };
    Ok(InitSpec { image, mask, strength })
}

/// A base64 image as A1111 clients send it (a `data:image/…;base64,` prefix accepted, line breaks too),
/// decoded to RGB like PIL's `convert("RGB")`. Bad base64 and undecodable bytes are 400 naming `field`.
pub fn decode_image(field: &str, text: &str, limits: &Limits) -> ApiResult<RgbImage> {
    let bytes = decode_base64(field, text)?;
    let reader = image::ImageReader::new(std::io::Cursor::new(&bytes))
        .with_guessed_format()
        .map_err(|e| ApiError::bad_request(format!("{field}: cannot read the image: {e}")))?;
    if reader.format().is_none() {
        return Err(ApiError::bad_request(format!("{field}: not a PNG, JPEG or WebP image")));
    }
    let mut reader = reader;
    let mut lim = image::Limits::default();
    lim.max_image_width = Some(limits.max_input_side);
    lim.max_image_height = Some(limits.max_input_side);
    reader.limits(lim);
    let img = reader.decode().map_err(|e| ApiError::bad_request(format!("{field}: cannot decode the image: {e}")))?;
    Ok(Decoded::from_dynamic(img).to_rgb(false))
}

/// The bytes of a base64 string, with or without a data-URL prefix, padding or line breaks.
pub fn decode_base64(field: &str, text: &str) -> ApiResult<Vec<u8>> {
    let body = match text.strip_prefix("data:") {
        Some(rest) => match rest.split_once(',') {
            Some((meta, data)) if meta.ends_with(";base64") => data,
            _ => return Err(ApiError::bad_request(format!("{field}: a data URL must be data:<type>;base64,<data>"))),
        },
        None => text,
    };
    let clean: Vec<u8> = body.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if clean.is_empty() {
        return Err(ApiError::bad_request(format!("{field}: empty")));
    }
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new().with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    engine.decode(&clean).map_err(|e| ApiError::bad_request(format!("{field}: bad base64: {e}")))
}

/// A1111's random seed: below 2³², from the clock.
fn random_seed() -> u64 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
    // Mix the bits so seeds drawn close together differ in their high bits too.
    nanos.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(29) % (1 << 32)
}
