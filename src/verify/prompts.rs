//! `prompt.*` (A1111 parsing, chunking, weighted conditioning), `pipe.weighted_*` (txt2img on it) of the
//! `prompts/` fixtures, and `ti.*` (textual inversion) of the `train/` fixtures.

use std::path::Path;
use std::sync::Arc;

use serde_json::Value;

use super::{compare, failed, module_tol, pipeline_tol, CaseResult};
use crate::error::{Error, Result};
use crate::fixtures::Fixtures;
use crate::gpu::Gpu;
use crate::pipeline::denoise::Condition;
use crate::pipeline::txt2img::Txt2ImgRequest;
use crate::pipeline::StableDiffusion;
use crate::prompt::parse::parse_prompt_attention;
use crate::prompt::encode::Emphasis;
use crate::prompt::PromptSyntax;
use crate::schedulers::{self, ReplayNoise};

fn model_dir(fx: &Fixtures) -> std::path::PathBuf {
    fx.dir.join(fx.meta["model_dir"].as_str().unwrap_or("../tiny"))
}

/// `prompt.<model>.<i>`: parse, ids and multipliers (exactly equal), then `z` (relative L2).
pub fn prompt_cases(gpu: &Arc<Gpu>, fx: &Fixtures) -> Result<Vec<CaseResult>> {
    let Some(cases) = fx.meta["cases"].as_object() else { return Ok(Vec::new()) };
    let mut out = Vec::new();
    let mut loaded: Vec<(String, StableDiffusion)> = Vec::new();
    for (name, spec) in cases.iter().filter(|(k, _)| k.starts_with("prompt.")) {
        let run = |loaded: &mut Vec<(String, StableDiffusion)>| -> Result<CaseResult> {
            let sd = model(gpu, &model_dir(fx), spec, loaded, PromptSyntax::A1111)?;
            let prompt = spec["prompt"].as_str().unwrap_or("");
            let parsed = parse_prompt_attention(prompt);
            let want_parsed: Vec<(String, f64)> = spec["parsed"]
                .as_array()
                .map(|a| a.iter().map(|e| (e[0].as_str().unwrap_or("").to_string(), e[1].as_f64().unwrap_or(f64::NAN))).collect())
                .unwrap_or_default();
            // serde_json reads floats to within an ulp: weights compare to 1e-12.
            let same = parsed.len() == want_parsed.len()
                && parsed.iter().zip(&want_parsed).all(|(a, b)| a.0 == b.0 && (a.1 - b.1).abs() <= 1e-12 * b.1.abs().max(1.0));
            if !same {
                return Ok(mismatch(name, format!("parsed {parsed:?}, reference {want_parsed:?}")));
            }
            let chunked = sd.chunk_prompts(&[prompt.to_string()])?;
            let ids: Vec<f32> = chunked[0].chunks.iter().flat_map(|c| c.ids.iter().map(|&i| i as f32)).collect();
            let mults: Vec<f32> = chunked[0].chunks.iter().flat_map(|c| c.multipliers.iter().copied()).collect();
            let want_ids = fx.tensor(&format!("{name}.ids"))?;
            if ids != want_ids {
                let first = ids.iter().zip(&want_ids).position(|(a, b)| a != b);
                return Ok(mismatch(name, format!("ids differ: {} vs {} values, first difference at {first:?}", ids.len(), want_ids.len())));
            }
            if mults != fx.tensor(&format!("{name}.multipliers"))? {
                return Ok(mismatch(name, "multipliers differ".into()));
            }
            let z = sd.encode_chunked(&chunked, 1, 0)?;
            let want = fx.tensor(&format!("{name}.z"))?;
            if z.context.len() != want.len() {
                return Ok(compare(name, &z.context, &want, module_tol(gpu.precision)));
            }
            Ok(compare_chunks(name, &z.context, &want, &z.emphasis, module_tol(gpu.precision)))
        };
        out.push(run(&mut loaded).unwrap_or_else(|e| failed(name, e)));
    }
    Ok(out)
}

/// `z` chunk by chunk. A chunk whose mean is zero up to rounding has no defined A1111 rescale (the
/// reference's factor is the quotient of two rounding errors — noise, ±inf or NaN; tiny random text
/// encoders, whose final LayerNorm has no bias, make every chunk so): such a chunk is compared up to one
/// scale factor, which checks everything but the undefined factor, and a chunk whose reference is NaN,
/// inf or all zeros cannot be compared at all (the case is a SKIP, not a pass).
fn compare_chunks(name: &str, got: &[f32], want: &[f32], emphasis: &[Emphasis], tol: f64) -> CaseResult {
    let per = got.len() / emphasis.len().max(1);
    let (mut worst, mut worst_abs) = (0f64, 0f64);
    let (mut scaled, mut unusable, mut failures) = (Vec::new(), Vec::new(), Vec::new());
    for (c, e) in emphasis.iter().enumerate() {
        let (g, w) = (&got[c * per..(c + 1) * per], &want[c * per..(c + 1) * per]);
        if w.iter().any(|v| !v.is_finite()) {
            unusable.push(format!("chunk {c} of the reference is NaN/inf"));
            continue;
        }
        let err = if *e == Emphasis::NotRescaled {
            if w.iter().all(|&v| v == 0.0) {
                unusable.push(format!("chunk {c} of the reference is all zeros"));
                continue;
            }
            let alpha = best_scale(g, w);
            scaled.push(format!("chunk {c} ×{alpha:.3}"));
            let g: Vec<f32> = g.iter().map(|v| (*v as f64 * alpha) as f32).collect();
            worst_abs = worst_abs.max(crate::testing::max_abs(&g, w));
            crate::testing::rel_l2(&g, w)
        } else {
            worst_abs = worst_abs.max(crate::testing::max_abs(g, w));
            crate::testing::rel_l2(g, w)
        };
        if err.is_nan() || err > tol {
            failures.push(format!("chunk {c}: rel_l2 {err:.2e}"));
        }
        worst = worst.max(err);
    }
    let mut r = compare(name, got, want, f64::INFINITY);
    (r.rel_l2, r.max_abs) = (worst, worst_abs);
    r.passed = failures.is_empty() && got.iter().all(|v| v.is_finite());
    if !failures.is_empty() {
        r.detail = failures.join("; ");
    } else if !unusable.is_empty() {
        r.unchecked = Some(format!(
            "{}: the generator's A1111 rescale divided by a zero mean (its text encoder's final LayerNorm has no bias){}",
            unusable.join(", "),
            if unusable.len() < emphasis.len() { "; the other chunks match" } else { "" }
        ));
    } else if !scaled.is_empty() {
        r.detail = format!(
            "compared up to the undefined A1111 rescale of zero-mean chunks ({}); rel_l2 is after that factor",
            scaled.join(", ")
        );
    }
    r
}

/// The factor that best maps `got` onto `want` (least squares).
fn best_scale(got: &[f32], want: &[f32]) -> f64 {
    let gw: f64 = got.iter().zip(want).map(|(a, b)| *a as f64 * *b as f64).sum();
    let gg: f64 = got.iter().map(|a| (*a as f64).powi(2)).sum();
    gw / gg
}

/// `pipe.weighted_*`: txt2img with A1111 prompts (and negative prompts), replaying the recorded noise.
pub fn weighted_pipeline_cases(gpu: &Arc<Gpu>, fx: &Fixtures) -> Result<Vec<CaseResult>> {
    let Some(cases) = fx.meta["cases"].as_object() else { return Ok(Vec::new()) };
    let mut out = Vec::new();
    let mut loaded: Vec<(String, StableDiffusion)> = Vec::new();
    for (name, spec) in cases.iter().filter(|(k, _)| k.starts_with("pipe.")) {
        let run = |loaded: &mut Vec<(String, StableDiffusion)>| -> Result<CaseResult> {
            let syntax = match spec["prompt_syntax"].as_str() {
                Some(s) => PromptSyntax::parse(s)?,
                None => PromptSyntax::A1111,
            };
            let sd = model(gpu, &model_dir(fx), spec, loaded, syntax)?;
            let mut r = replay(sd, fx, name, spec)?;
            // The generator's conditioning held NaN chunks (see `compare_chunks`), so its image is NaN.
            let ours_finite = !r.detail.contains("not finite");
            if fx.tensor(&format!("{name}.images"))?.iter().any(|v| !v.is_finite()) && ours_finite {
                r.unchecked =
                    Some("the reference image is NaN (the generator's A1111 rescale divided by a zero mean); wgsd's image is finite".into());
            }
            Ok(r)
        };
        out.push(run(&mut loaded).unwrap_or_else(|e| failed(name, e)));
    }
    Ok(out)
}

/// `ti.<model>`: the embedding loaded, the prompt's ids as diffusers makes them, then txt2img. Run with
/// both syntaxes (`ti.<model>` plain as diffusers, `ti.<model>.a1111`): the ids are the same.
pub fn ti_cases(gpu: &Arc<Gpu>, fx: &Fixtures) -> Result<Vec<CaseResult>> {
    let Some(cases) = fx.meta["cases"].as_object() else { return Ok(Vec::new()) };
    let mut out = Vec::new();
    for (name, spec) in cases.iter().filter(|(k, _)| k.starts_with("ti.")) {
        for (syntax, case) in [(PromptSyntax::Plain, name.clone()), (PromptSyntax::A1111, format!("{name}.a1111"))] {
            let run = || -> Result<CaseResult> {
                let mut sd = StableDiffusion::load(gpu.clone(), &model_dir(fx).join(spec["model"].as_str().unwrap_or("sd15")), None)?;
                sd.prompt.syntax = syntax;
                let file = fx.dir.join(spec["embedding"].as_str().unwrap_or(""));
                let width = sd.text_encoder.config.hidden_size;
                sd.prompt.embeddings.add_file(&file, width)?;
                let want = fx.tensor(&format!("{name}.input_ids"))?;
                let chunked = sd.chunk_prompts(&[spec["prompt"].as_str().unwrap_or("").to_string()])?;
                let ids: Vec<f32> = chunked[0].chunks[0].ids.iter().take(want.len()).map(|&i| i as f32).collect();
                if ids != want {
                    return Ok(mismatch(&case, format!("ids {ids:?}, diffusers {want:?}")));
                }
                let mut r = replay(&sd, fx, name, spec)?;
                r.name = case.clone();
                Ok(r)
            };
            out.push(run().unwrap_or_else(|e| failed(&case, e)));
        }
    }
    Ok(out)
}

fn mismatch(name: &str, detail: String) -> CaseResult {
    CaseResult { name: name.into(), passed: false, rel_l2: f64::NAN, max_abs: f64::NAN, detail, unchecked: None }
}

/// The case's model (loaded once per syntax and model), reading prompts in `syntax`.
fn model<'a>(gpu: &Arc<Gpu>, dir: &Path, spec: &Value, loaded: &'a mut Vec<(String, StableDiffusion)>, syntax: PromptSyntax) -> Result<&'a StableDiffusion> {
    let name = spec["model"].as_str().unwrap_or("sd15").to_string();
    if !loaded.iter().any(|(m, _)| *m == name) {
        let mut sd = StableDiffusion::load(gpu.clone(), &dir.join(&name), None)?;
        sd.prompt.syntax = syntax;
        loaded.push((name.clone(), sd));
    }
    let sd = &mut loaded.iter_mut().find(|(m, _)| *m == name).ok_or_else(|| Error::usage("model not loaded"))?.1;
    sd.prompt.syntax = syntax;
    Ok(sd)
}

/// txt2img as the case describes it (scheduler from the model folder), replaying `{case}.noise.N`, compared
/// with `{case}.images`.
fn replay(sd: &StableDiffusion, fx: &Fixtures, case: &str, spec: &Value) -> Result<CaseResult> {
    let gpu = &sd.gpu;
    let class = spec["scheduler"].as_str().unwrap_or("PNDMScheduler");
    let mut scheduler = schedulers::from_config(class, &sd.scheduler_config, &format!("{} scheduler_config.json", sd.dir.display()))?;
    let draws = spec["noise_draws"].as_u64().unwrap_or(0) as usize;
    let recorded: Vec<Vec<f32>> = (0..draws).map(|i| fx.tensor(&format!("{case}.noise.{i}"))).collect::<Result<_>>()?;
    let mut noise = ReplayNoise::new(recorded);
    let native = sd.unet.config_sample_size().unwrap_or(64) * 8;
    let text = |k: &str| spec[k].as_str().map(|s| vec![s.to_string()]).unwrap_or_default();
    let req = Txt2ImgRequest {
        prompts: text("prompt"),
        negative_prompts: text("negative_prompt"),
        images_per_prompt: 1,
        width: spec["width"].as_u64().map_or(native, |v| v as usize),
        height: spec["height"].as_u64().map_or(native, |v| v as usize),
        steps: spec["steps"].as_u64().unwrap_or(50) as usize,
        guidance_scale: spec["guidance_scale"].as_f64().unwrap_or(7.5) as f32,
        clip_skip: spec["clip_skip"].as_u64().unwrap_or(0) as usize,
    };
    let result = sd.generate(&req, &Condition::Text, scheduler.as_mut(), &mut noise, &mut |_, _| {})?;
    let mut r = compare(case, &result.images, &fx.tensor(&format!("{case}.images"))?, f64::INFINITY);
    r.passed = r.passed && r.max_abs <= pipeline_tol(gpu) && noise.used() == draws;
    if noise.used() != draws {
        r.detail = format!("{} noise draws used, the fixture recorded {draws}", noise.used());
    } else if result.images.iter().any(|v| !v.is_finite()) {
        r.detail = "wgsd's image is not finite".into();
    } else if !r.passed {
        r.detail = format!("max abs {:.2e} > {:.0e}", r.max_abs, pipeline_tol(gpu));
    }
    Ok(r)
}
