//! `pipe.*`: every pipeline case of `cases.json` `pipelines`, replaying the recorded noise.

use std::sync::Arc;

use super::{compare, failed, pipeline_tol, CaseResult};
use crate::error::Result;
use crate::fixtures::Fixtures;
use crate::gpu::Gpu;
use crate::pipeline::denoise::{Condition, DepthSource};
use crate::pipeline::inputs::{resize_like_diffusers, DepthMap, InitImage, Mask};
use crate::pipeline::safety::SafetyMode;
use crate::pipeline::txt2img::Txt2ImgRequest;
use crate::imageproc::RgbImage;
use crate::pipeline::StableDiffusion;
use crate::schedulers::{self, ReplayNoise};

/// A JSON string or list of strings as a list.
fn strings(v: &serde_json::Value) -> Vec<String> {
    match v {
        serde_json::Value::String(s) => vec![s.clone()],
        serde_json::Value::Array(a) => a.iter().filter_map(|x| x.as_str().map(String::from)).collect(),
        _ => Vec::new(),
    }
}

/// The condition a `pipelines.<case>` spec asks for: an init image (img2img), plus a mask (inpainting),
/// or on a depth UNet a depth map (given as a fixture tensor, or estimated).
fn case_condition(fx: &Fixtures, sd: &StableDiffusion, spec: &serde_json::Value) -> Result<Condition> {
    let Some(image_file) = spec["image"].as_str() else { return Ok(Condition::Text) };
    let rgb = RgbImage::open(&fx.dir.join(image_file))?;
    let given = |key: &str| spec[key].as_u64().map(|v| v as usize);
    let strength = |default: f64| spec["strength"].as_f64().unwrap_or(default);
    // diffusers' sizes: the inpainting pipeline defaults to the UNet's native size, the others to the
    // image's, rounded down to multiples of 8; the image (and mask) are resized with Lanczos to fit.
    let native = sd.unet.config_sample_size().map(|s| s * 8);
    let size = |own: usize, key: &str, inpaint: bool| given(key).or(if inpaint { native } else { None }).unwrap_or(own / 8 * 8);
    let inpaint = spec["mask_image"].is_string();
    let (w, h) = (size(rgb.width, "width", inpaint), size(rgb.height, "height", inpaint));
    let image = InitImage::from_rgb8(&resize_like_diffusers(&rgb, w, h)?);
    if let Some(mask_file) = spec["mask_image"].as_str() {
        let mask = Mask::from_rgb8(&resize_like_diffusers(&RgbImage::open(&fx.dir.join(mask_file))?, w, h)?);
        return Ok(Condition::Inpaint { image, mask, strength: strength(1.0) });
    }
    if let Some(key) = spec["depth_map"].as_str() {
        let shape = fx.shape(key)?;
        let (height, width) = (shape[shape.len() - 2], shape[shape.len() - 1]);
        let depth = DepthMap { width, height, data: fx.tensor(key)? };
        return Ok(Condition::Depth { image, depth: DepthSource::Given(depth), strength: strength(0.8) });
    }
    if sd.unet.config.in_channels == sd.unet.config.out_channels + 1 {
        return Ok(Condition::Depth { image, depth: DepthSource::Estimated, strength: strength(0.8) });
    }
    Ok(Condition::Img2Img { image, strength: strength(0.8) })
}

/// `pipe.<case>`: every pipeline case (txt2img, img2img, inpainting, depth2img), replaying the recorded
/// noise; `txt2img_safety` also runs the safety checker and compares its flags.
pub fn pipeline_cases(gpu: &Arc<Gpu>, fx: &Fixtures) -> Result<Vec<CaseResult>> {
    let mut out = Vec::new();
    let Some(cases) = fx.meta["pipelines"].as_object() else { return Ok(out) };
    let mut loaded: Vec<(String, StableDiffusion)> = Vec::new();
    for (name, spec) in cases {
        let case = format!("pipe.{name}");
        let mut run = || -> Result<CaseResult> {
            let model = spec["model"].as_str().unwrap_or("sd15").to_string();
            if !loaded.iter().any(|(m, _)| *m == model) {
                loaded.push((model.clone(), StableDiffusion::load(gpu.clone(), &fx.dir.join(&model), None)?));
            }
            let sd = &loaded.iter().find(|(m, _)| *m == model).unwrap().1;
            let mut config = spec["scheduler_config"].clone();
            if let (Some(c), Some(extra)) = (config.as_object_mut(), spec["scheduler_extra"].as_object()) {
                for (k, v) in extra {
                    c.insert(k.clone(), v.clone());
                }
            }
            let class = spec["scheduler"].as_str().unwrap_or("PNDMScheduler");
            let mut scheduler = schedulers::from_config(class, &config, &format!("cases.json pipelines.{name}"))?;
            let draws = spec["noise_draws"].as_u64().unwrap_or(0) as usize;
            let recorded: Vec<Vec<f32>> = (0..draws).map(|i| fx.tensor(&format!("{case}.noise.{i}"))).collect::<Result<_>>()?;
            let mut noise = ReplayNoise::new(recorded);
            let cond = case_condition(fx, sd, spec)?;
            // Image modes run at the (resized) init image's size.
            let (dw, dh) = match &cond {
                Condition::Img2Img { image, .. } | Condition::Inpaint { image, .. } | Condition::Depth { image, .. } => (image.width, image.height),
                Condition::Text => {
                    let native = sd.unet.config_sample_size().unwrap_or(64) * 8;
                    (native, native)
                }
            };
            let req = Txt2ImgRequest {
                prompts: strings(&spec["prompt"]),
                negative_prompts: strings(&spec["negative_prompt"]),
                images_per_prompt: spec["num_images_per_prompt"].as_u64().unwrap_or(1) as usize,
                width: spec["width"].as_u64().map_or(dw, |v| v as usize),
                height: spec["height"].as_u64().map_or(dh, |v| v as usize),
                steps: spec["num_inference_steps"].as_u64().unwrap_or(50) as usize,
                guidance_scale: spec["guidance_scale"].as_f64().unwrap_or(7.5) as f32,
                clip_skip: spec["clip_skip"].as_u64().unwrap_or(0) as usize,
            };
            let mut result = sd.generate(&req, &cond, scheduler.as_mut(), &mut noise, &mut |_, _| {})?;
            // With `safety`, diffusers blacks out flagged images and reports the flags in `nsfw`.
            let mut flags_ok = true;
            let mut flags = String::new();
            if spec["safety"].as_bool() == Some(true) {
                let got = sd.run_safety_checker(&mut result.images, result.count, result.width, result.height, SafetyMode::Black)?;
                let want: Vec<bool> = spec["nsfw"].as_array().map(|a| a.iter().map(|v| v.as_bool() == Some(true)).collect()).unwrap_or_default();
                flags_ok = got == want;
                flags = format!("nsfw {got:?}, reference {want:?}");
            }
            let want = fx.tensor(&format!("{case}.images"))?;
            let mut r = compare(&case, &result.images, &want, f64::INFINITY);
            r.passed = r.passed && r.max_abs <= pipeline_tol(gpu) && noise.used() == draws && flags_ok;
            if noise.used() != draws {
                r.detail = format!("{} noise draws used, the fixture recorded {draws}", noise.used());
            } else if !flags_ok {
                r.detail = flags;
            } else if !r.passed {
                r.detail = format!("max abs {:.2e} > {:.0e}", r.max_abs, pipeline_tol(gpu));
            }
            Ok(r)
        };
        out.push(run().unwrap_or_else(|e| failed(&case, e)));
    }
    Ok(out)
}
