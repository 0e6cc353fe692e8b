//! `lora.<model>.scale<m>`: txt2img with a kohya-layout LoRA merged at multiplier m (0.0 = the same run
//! without it), replaying the recorded noise, against diffusers' `load_lora_weights`.

use std::sync::Arc;

use super::{compare, failed, pipeline_tol, CaseResult};
use crate::error::{Error, Result};
use crate::fixtures::Fixtures;
use crate::generate::open_model;
use crate::gpu::Gpu;
use crate::pipeline::denoise::Condition;
use crate::pipeline::lora::{merge_loras, LoraUse, WeightIndex};
use crate::pipeline::txt2img::Txt2ImgRequest;
use crate::schedulers::{self, ReplayNoise};

/// Every `lora.*` case of the `cases` of `fx` (the train/ fixture set).
pub fn lora_cases(gpu: &Arc<Gpu>, fx: &Fixtures) -> Result<Vec<CaseResult>> {
    let Some(cases) = fx.meta["cases"].as_object() else { return Ok(Vec::new()) };
    let model_dir = fx.dir.join(fx.meta["model_dir"].as_str().unwrap_or("../tiny"));
    let mut out = Vec::new();
    for (name, spec) in cases.iter().filter(|(k, _)| k.starts_with("lora.")) {
        let run = || -> Result<CaseResult> {
            let model = model_dir.join(spec["model"].as_str().unwrap_or("sd15"));
            let hooks = WeightIndex::hooks();
            // A fresh load per case: merging changes the weights.
            let (_, sd) = open_model(gpu, &model.to_string_lossy(), None, None, &[], Some(&hooks))?;
            let file = spec["lora"].as_str().ok_or_else(|| Error::usage(format!("cases.json {name}: no 'lora' file")))?;
            let m = spec["multiplier"].as_f64().unwrap_or(1.0) as f32;
            let reports = merge_loras(gpu, &hooks, &[LoraUse { path: fx.dir.join(file), te: m, unet: m }])?;
            let class = spec["scheduler"].as_str().unwrap_or("PNDMScheduler");
            let mut scheduler = schedulers::from_config(class, &sd.scheduler_config, &format!("cases.json {name}"))?;
            let draws = spec["noise_draws"].as_u64().unwrap_or(0) as usize;
            let recorded: Vec<Vec<f32>> = (0..draws).map(|i| fx.tensor(&format!("{name}.noise.{i}"))).collect::<Result<_>>()?;
            let mut noise = ReplayNoise::new(recorded);
            let native = sd.unet.config_sample_size().unwrap_or(64) * 8;
            let size = |k: &str| spec[k].as_u64().map_or(native, |v| v as usize);
            let req = Txt2ImgRequest {
                prompts: vec![spec["prompt"].as_str().unwrap_or("").to_string()],
                negative_prompts: spec["negative_prompt"].as_str().map(|s| vec![s.to_string()]).unwrap_or_default(),
                images_per_prompt: 1,
                width: size("width"),
                height: size("height"),
                steps: spec["steps"].as_u64().unwrap_or(50) as usize,
                guidance_scale: spec["guidance_scale"].as_f64().unwrap_or(7.5) as f32,
                clip_skip: 0,
            };
            let result = sd.generate(&req, &Condition::Text, scheduler.as_mut(), &mut noise, &mut |_, _| {})?;
            let want = fx.tensor(&format!("{name}.images"))?;
            let mut r = compare(name, &result.images, &want, f64::INFINITY);
            let warned = reports.iter().map(|r| r.warnings.len()).sum::<usize>();
            r.passed = r.passed && r.max_abs <= pipeline_tol(gpu) && noise.used() == draws && warned == 0;
            if noise.used() != draws {
                r.detail = format!("{} noise draws used, the fixture recorded {draws}", noise.used());
            } else if warned > 0 {
                r.detail = format!("{warned} LoRA key(s) not applied: {}", reports[0].warnings.join("; "));
            } else if !r.passed {
                r.detail = format!("max abs {:.2e} > {:.0e}", r.max_abs, pipeline_tol(gpu));
            }
            Ok(r)
        };
        out.push(run().unwrap_or_else(|e| failed(name, e)));
    }
    Ok(out)
}
