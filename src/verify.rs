//! `wgsd verify`: runs every case of a fixture folder and reports one line per case. The test suite calls
//! the same functions with the folder from `WGSD_FIXTURES`.

use std::path::Path;

use std::sync::Arc;

use crate::error::Result;
use crate::fixtures::Fixtures;
use crate::gpu::Gpu;
use crate::graph::plan::Plan;
use crate::graph::{Graph, TensorId};
use crate::models::clip::ClipTextModel;
use crate::models::config::UNetConfig;
use crate::models::nn::Loader;
use crate::models::tokenizer::ClipTokenizer;
use crate::models::transformer::{Transformer2DModel, VaeAttention};
use crate::models::unet::UNet2DConditionModel;
use crate::models::vae::{split_moments, AutoencoderKL, DownEncoderBlock2D, UpDecoderBlock2D};
use crate::models::weights::Weights;
use crate::pipeline::denoise::{Condition, DepthSource};
use crate::pipeline::inputs::{load_rgb, resize_like_diffusers, DepthMap, InitImage, Mask};
use crate::pipeline::safety::SafetyMode;
use crate::pipeline::txt2img::Txt2ImgRequest;
use crate::pipeline::StableDiffusion;
use crate::tensor::TensorDesc;
use crate::schedulers::{self, ReplayNoise};
use crate::testing::{max_abs, rel_l2};

/// Tolerance of the scheduler trajectories (relative L2 at every step).
pub const SCHEDULER_TOL: f64 = 1e-5;

/// Outcome of one case.
#[derive(Debug, Clone)]
pub struct CaseResult {
    /// Not run: the case needs a part of wgsd that does not exist yet (never counted as passed).
    pub skipped: bool,
    pub name: String,
    pub passed: bool,
    pub rel_l2: f64,
    pub max_abs: f64,
    /// Why it failed (or what was compared), for the report.
    pub detail: String,
}

impl CaseResult {
    pub fn line(&self) -> String {
        if self.skipped {
            return format!("{} SKIP ({})", self.name, self.detail);
        }
        let mut s = format!(
            "{} {} rel_l2={:.3e} max_abs={:.3e}",
            self.name,
            if self.passed { "PASS" } else { "FAIL" },
            self.rel_l2,
            self.max_abs
        );
        // PASS lines keep the exact `<case> PASS rel_l2=<x> max_abs=<y>` form; failures say why.
        if !self.passed && !self.detail.is_empty() {
            s.push_str(&format!("  ({})", self.detail));
        }
        s
    }
}

/// Model folders of a `cases.json` fixture set.
fn models(fx: &Fixtures) -> Vec<String> {
    fx.meta["models"].as_array().map(|a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect()).unwrap_or_default()
}

/// `tokenizer.sd1` / `tokenizer.sd2`: ids must be identical. The sd1 convention (pad with end-of-text) is
/// checked with the first model whose tokenizer pads so, sd2 (pad with `!`) with the first that does not.
pub fn tokenizer_cases(fx: &Fixtures) -> Result<Vec<CaseResult>> {
    let tok = &fx.meta["tokenizer"];
    let prompts: Vec<String> =
        tok["prompts"].as_array().map(|a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect()).unwrap_or_default();
    let mut out = Vec::new();
    let mut sd1 = None;
    let mut sd2 = None;
    for m in models(fx) {
        let dir = fx.dir.join(&m).join("tokenizer");
        if !dir.exists() {
            continue;
        }
        let t = ClipTokenizer::from_folder(&dir)?;
        if t.pad_id == t.eos_id && sd1.is_none() {
            sd1 = Some(t);
        } else if t.pad_id != t.eos_id && sd2.is_none() {
            sd2 = Some(t);
        }
    }
    for (name, key, t) in [("tokenizer.sd1", "sd1_ids", &sd1), ("tokenizer.sd2", "sd2_ids", &sd2)] {
        let Some(expected) = tok[key].as_array() else { continue };
        let Some(t) = t else {
            out.push(CaseResult {
            skipped: false,
                name: name.into(),
                passed: false,
                rel_l2: f64::NAN,
                max_abs: f64::NAN,
                detail: "no model folder with this padding convention".into(),
            });
            continue;
        };
        let mut mismatches = Vec::new();
        for (i, (p, want)) in prompts.iter().zip(expected).enumerate() {
            let want: Vec<u32> = want.as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
            let got = t.encode(p)?.ids;
            if got != want {
                mismatches.push(format!("prompt {i} {p:?}: got {:?}… want {:?}…", &got[..got.len().min(12)], &want[..want.len().min(12)]));
            }
            if name == "tokenizer.sd1" {
                if let Some(raw) = tok["sd1_unpadded"].get(i).and_then(|v| v.as_array()) {
                    let want_raw: Vec<u32> = raw.iter().map(|v| v.as_u64().unwrap() as u32).collect();
                    let mut got_raw = vec![t.bos_id];
                    got_raw.extend(t.encode_raw(p)?);
                    got_raw.push(t.eos_id);
                    if got_raw != want_raw {
                        mismatches.push(format!("prompt {i} {p:?} unpadded: got {} ids, want {}", got_raw.len(), want_raw.len()));
                    }
                }
            }
        }
        let n = prompts.len();
        out.push(CaseResult {
            skipped: false,
            name: name.into(),
            passed: mismatches.is_empty(),
            rel_l2: 0.0,
            max_abs: mismatches.len() as f64,
            detail: if mismatches.is_empty() { format!("{n} prompts identical") } else { mismatches.join("; ") },
        });
    }
    Ok(out)
}

/// The fixtures' synthetic model: ε = 0.5·tanh(x_in) + 0.05·cos(t/100), t as float32.
fn synthetic_model(x_in: &[f32], t: f32) -> Vec<f32> {
    let c = 0.05f32 * (t / 100.0).cos();
    x_in.iter().map(|v| 0.5 * v.tanh() + c).collect()
}

/// `sched.<name>`: for every `schedulers.<name>` in cases.json, the scheduler built from `cls` + `config`
/// must give the fixture's timesteps exactly and, run with the synthetic model from `x0` (already scaled
/// by init_noise_sigma) replaying the recorded noise, the fixture's sample after every step within
/// [`SCHEDULER_TOL`]. The worst step is reported.
pub fn scheduler_cases(fx: &Fixtures) -> Result<Vec<CaseResult>> {
    let Some(cases) = fx.meta["schedulers"].as_object() else { return Ok(Vec::new()) };
    Ok(cases
        .iter()
        .map(|(name, case)| {
            scheduler_case(fx, name, case).unwrap_or_else(|e| CaseResult {
            skipped: false,
                name: format!("sched.{name}"),
                passed: false,
                rel_l2: f64::NAN,
                max_abs: f64::NAN,
                detail: e.to_string(),
            })
        })
        .collect())
}

fn scheduler_case(fx: &Fixtures, name: &str, case: &serde_json::Value) -> Result<CaseResult> {
    let case_name = format!("sched.{name}");
    let fail = |detail: String| CaseResult {
            skipped: false, name: case_name.clone(), passed: false, rel_l2: f64::NAN, max_abs: f64::NAN, detail };
    let cls = case["cls"].as_str().unwrap_or_default();
    let steps = case["steps"].as_u64().unwrap_or(0) as usize;
    let mut s = schedulers::from_config(cls, &case["config"], &format!("cases.json schedulers.{name}"))?;
    s.set_timesteps(steps)?;

    let want_t = fx.tensor_f64(&format!("{case_name}.timesteps"))?;
    let got_t = s.timesteps().to_vec();
    if got_t != want_t {
        return Ok(fail(format!("timesteps differ: got {got_t:?}, want {want_t:?}")));
    }
    if let Some(want) = case["init_noise_sigma"].as_f64() {
        let got = s.init_noise_sigma();
        if got != want as f32 {
            return Ok(fail(format!("init_noise_sigma {got} != {want}")));
        }
    }

    let draws = case["noise_draws"].as_u64().unwrap_or(0) as usize;
    let noise: Vec<Vec<f32>> = (0..draws).map(|i| fx.tensor(&format!("{case_name}.noise.{i}"))).collect::<Result<_>>()?;
    let mut noise = ReplayNoise::new(noise);
    let mut x = fx.tensor(&format!("{case_name}.x0"))?;
    let traj = fx.tensor(&format!("{case_name}.trajectory"))?;
    let n = x.len();
    if traj.len() != n * got_t.len() {
        return Ok(fail(format!("trajectory has {} values, expected {} steps of {n}", traj.len(), got_t.len())));
    }
    let (mut worst, mut worst_abs, mut worst_step) = (0.0f64, 0.0f64, 0);
    for (i, &t) in got_t.iter().enumerate() {
        let x_in = s.scale_model_input(&x, i);
        let eps = synthetic_model(&x_in, t as f32);
        x = s.step(&eps, i, &x, &mut noise)?;
        let want = &traj[i * n..(i + 1) * n];
        let r = rel_l2(&x, want);
        // A NaN step counts as the worst.
        if r.is_nan() || r > worst {
            worst = r;
            worst_step = i;
        }
        worst_abs = worst_abs.max(max_abs(&x, want));
    }
    if noise.used() != draws {
        return Ok(fail(format!("{} noise draws used, the fixture recorded {draws}", noise.used())));
    }
    Ok(CaseResult {
            skipped: false,
        name: case_name,
        passed: worst <= SCHEDULER_TOL,
        rel_l2: worst,
        max_abs: worst_abs,
        detail: format!("{cls}, {} steps, worst at step {worst_step}, {draws} noise draws", got_t.len()),
    })
}

/// Every case of the fixture folder `dir` (a `cases.json` set or a `blocks.json` set).
pub fn run_all(dir: &Path, gpu: &Arc<Gpu>) -> Result<Vec<CaseResult>> {
    run_selected(dir, gpu, &[])
}

/// The cases of the families named in `only` (case-name prefixes: `tokenizer`, `sched`, `text`, `unet`,
/// `vae`, `pipe`, `block`, …; empty = all).
pub fn run_selected(dir: &Path, gpu: &Arc<Gpu>, only: &[String]) -> Result<Vec<CaseResult>> {
    let want = |family: &str| only.is_empty() || only.iter().any(|o| o == family);
    let mut results = Vec::new();
    if dir.join("cases.json").exists() {
        let fx = Fixtures::open(dir, "cases")?;
        if want("tokenizer") {
            results.extend(tokenizer_cases(&fx)?);
        }
        if want("sched") {
            results.extend(scheduler_cases(&fx)?);
        }
        if want("text") {
            results.extend(text_cases(gpu, &fx)?);
        }
        if want("unet") {
            results.extend(unet_cases(gpu, &fx)?);
        }
        if want("vae") {
            results.extend(vae_cases(gpu, &fx)?);
        }
        if want("pipe") {
            results.extend(pipeline_cases(gpu, &fx)?);
        }
        if want("depth") {
            results.extend(crate::models::dpt::verify::depth_cases(gpu, &fx)?);
        }
        // safety.* and the DPT processor's depth.pixel_values.
        if want("safety") || want("depth") {
            results.extend(crate::verify_safety::safety_cases(gpu, &fx)?);
        }
    }
    if dir.join("blocks.json").exists() && want("block") {
        let fx = Fixtures::open(dir, "blocks")?;
        results.extend(block_cases(gpu, &fx)?);
    }
    Ok(results)
}

/// Relative-L2 tolerance of module outputs against the fixtures (float32 on both sides).
pub const MODULE_TOL: f64 = 1e-4;

fn compare(name: &str, got: &[f32], want: &[f32], tol: f64) -> CaseResult {
    if got.len() != want.len() {
        return CaseResult {
            skipped: false,
            name: name.into(),
            passed: false,
            rel_l2: f64::NAN,
            max_abs: f64::NAN,
            detail: format!("{} values computed, {} expected", got.len(), want.len()),
        };
    }
    let r = rel_l2(got, want);
    let m = max_abs(got, want);
    let finite = got.iter().all(|v| v.is_finite());
    CaseResult {
            skipped: false,
        name: name.into(),
        passed: finite && r <= tol,
        rel_l2: r,
        max_abs: m,
        detail: if finite { String::new() } else { "non-finite output".into() },
    }
}

fn failed(name: &str, e: impl std::fmt::Display) -> CaseResult {
    CaseResult {
            skipped: false, name: name.into(), passed: false, rel_l2: f64::NAN, max_abs: f64::NAN, detail: e.to_string() }
}

/// `text.<model>.{last_hidden_state,penultimate,pooled}`.
pub fn text_cases(gpu: &Arc<Gpu>, fx: &Fixtures) -> Result<Vec<CaseResult>> {
    let mut out = Vec::new();
    for m in models(fx) {
        let key = format!("text.{m}.ids");
        if !fx.has(&key) {
            continue;
        }
        let run = || -> Result<Vec<CaseResult>> {
            let model = ClipTextModel::load(gpu, &fx.dir.join(&m).join("text_encoder"), None)?;
            let shape = fx.shape(&key)?;
            let ids = fx.tensor(&key)?;
            let mut g = Graph::new();
            let t = g.input("input_ids", TensorDesc::f32(&shape));
            let o = model.forward(&mut g, t)?;
            g.output(o.last_hidden_state);
            g.output(o.penultimate);
            let plan = Plan::new(gpu.clone(), g)?;
            plan.write(t, &ids)?;
            plan.run()?;
            let last = plan.read(o.last_hidden_state)?;
            let pen = plan.read(o.penultimate)?;
            let ids_u: Vec<u32> = ids.iter().map(|v| *v as u32).collect();
            let pooled = model.pooled(&last, &ids_u, shape[0]);
            let mut r = Vec::new();
            for (suffix, got) in [("last_hidden_state", &last), ("penultimate", &pen), ("pooled", &pooled)] {
                let name = format!("text.{m}.{suffix}");
                r.push(compare(&name, got, &fx.tensor(&name)?, MODULE_TOL));
            }
            Ok(r)
        };
        match run() {
            Ok(r) => out.extend(r),
            Err(e) => out.push(failed(&format!("text.{m}"), e)),
        }
    }
    Ok(out)
}

/// `unet.<model>.t<T>`: one plan per model, re-run for every timestep with new inputs.
pub fn unet_cases(gpu: &Arc<Gpu>, fx: &Fixtures) -> Result<Vec<CaseResult>> {
    let mut out = Vec::new();
    for m in models(fx) {
        let mut cases: Vec<String> = fx
            .keys_with_prefix(&format!("unet.{m}.t"))
            .into_iter()
            .filter_map(|k| k.strip_suffix(".sample").map(str::to_string))
            .collect();
        cases.sort();
        if cases.is_empty() {
            continue;
        }
        let model = match UNet2DConditionModel::load(gpu, &fx.dir.join(&m).join("unet"), None) {
            Ok(u) => u,
            Err(e) => {
                out.push(failed(&format!("unet.{m}"), e));
                continue;
            }
        };
        // One plan per (sample shape, context shape), re-run for every timestep.
        struct UNetPlan {
            sample_shape: Vec<usize>,
            context_shape: Vec<usize>,
            plan: Plan,
            sample: TensorId,
            timestep: TensorId,
            context: TensorId,
            out: TensorId,
        }
        let mut plans: Vec<UNetPlan> = Vec::new();
        for case in cases {
            let mut run = || -> Result<CaseResult> {
                let t: f32 = case.rsplit('.').next().unwrap().trim_start_matches('t').parse().map_err(|_| {
                    crate::error::Error::usage(format!("cannot read the timestep from case name {case}"))
                })?;
                let (ss, cs) = (fx.shape(&format!("{case}.sample"))?, fx.shape(&format!("{case}.encoder_hidden_states"))?);
                let idx = match plans.iter().position(|p| p.sample_shape == ss && p.context_shape == cs) {
                    Some(i) => i,
                    None => {
                        let mut g = Graph::new();
                        let s = g.input("sample", TensorDesc::f32(&ss));
                        let ts = g.input("timestep", TensorDesc::f32(&[ss[0]]));
                        let c = g.input("encoder_hidden_states", TensorDesc::f32(&cs));
                        let o = model.forward(&mut g, s, ts, c)?;
                        g.output(o);
                        let plan = Plan::new(gpu.clone(), g)?;
                        plans.push(UNetPlan { sample_shape: ss.clone(), context_shape: cs.clone(), plan, sample: s, timestep: ts, context: c, out: o });
                        plans.len() - 1
                    }
                };
                let p = &plans[idx];
                p.plan.write(p.sample, &fx.tensor(&format!("{case}.sample"))?)?;
                p.plan.write(p.timestep, &vec![t; ss[0]])?;
                p.plan.write(p.context, &fx.tensor(&format!("{case}.encoder_hidden_states"))?)?;
                p.plan.run()?;
                Ok(compare(&case, &p.plan.read(p.out)?, &fx.tensor(&format!("{case}.out"))?, MODULE_TOL))
            };
            out.push(run().unwrap_or_else(|e| failed(&case, e)));
        }
    }
    Ok(out)
}

/// `vae.decode` and `vae.encode` (mean and log-variance), with the first model folder's VAE.
pub fn vae_cases(gpu: &Arc<Gpu>, fx: &Fixtures) -> Result<Vec<CaseResult>> {
    let mut out = Vec::new();
    if !fx.has("vae.decode.latent") && !fx.has("vae.encode.image") {
        return Ok(out);
    }
    let Some(m) = models(fx).into_iter().find(|m| fx.dir.join(m).join("vae").exists()) else {
        return Ok(vec![failed("vae", "no model folder with a vae/")]);
    };
    let vae = match AutoencoderKL::load(gpu, &fx.dir.join(&m).join("vae"), None) {
        Ok(v) => v,
        Err(e) => return Ok(vec![failed("vae", e)]),
    };
    if fx.has("vae.decode.latent") {
        let run = || -> Result<CaseResult> {
            let shape = fx.shape("vae.decode.latent")?;
            let mut g = Graph::new();
            let z = g.input("latent", TensorDesc::f32(&shape));
            let img = vae.decode(&mut g, z)?;
            g.output(img);
            let plan = Plan::new(gpu.clone(), g)?;
            plan.write(z, &fx.tensor("vae.decode.latent")?)?;
            plan.run()?;
            Ok(compare("vae.decode", &plan.read(img)?, &fx.tensor("vae.decode.image")?, MODULE_TOL))
        };
        out.push(run().unwrap_or_else(|e| failed("vae.decode", e)));
    }
    if fx.has("vae.encode.image") {
        let run = || -> Result<CaseResult> {
            let shape = fx.shape("vae.encode.image")?;
            let mut g = Graph::new();
            let x = g.input("image", TensorDesc::f32(&shape));
            let mom = vae.encode(&mut g, x)?;
            g.output(mom);
            let plan = Plan::new(gpu.clone(), g)?;
            plan.write(x, &fx.tensor("vae.encode.image")?)?;
            plan.run()?;
            let ms = plan.graph().shape(mom).to_vec();
            let lat = vae.config.latent_channels;
            let (mean, logvar) = split_moments(&plan.read(mom)?, ms[0], lat, ms[2] * ms[3]);
            let a = compare("vae.encode", &mean, &fx.tensor("vae.encode.mean")?, MODULE_TOL);
            let b = compare("vae.encode", &logvar, &fx.tensor("vae.encode.logvar")?, MODULE_TOL);
            let worst = if b.rel_l2 > a.rel_l2 || b.rel_l2.is_nan() { b.clone() } else { a.clone() };
            Ok(CaseResult {
            skipped: false,
                passed: a.passed && b.passed,
                detail: format!("mean rel_l2 {:.2e}, logvar rel_l2 {:.2e}", a.rel_l2, b.rel_l2),
                ..worst
            })
        };
        out.push(run().unwrap_or_else(|e| failed("vae.encode", e)));
    }
    Ok(out)
}

/// The blocks fixtures' input formula: `x[i] = sin(0.001·(i mod 9973) + 0.1·⌊i / 9973⌋ + phase)` in f64.
pub fn block_input(n: usize, phase: f64) -> Vec<f32> {
    (0..n).map(|i| (0.001 * (i % 9973) as f64 + 0.1 * (i / 9973) as f64 + phase).sin() as f32).collect()
}

/// Heads of the SD 1.5 UNet block a transformer belongs to, from its weight prefix (the count is not in the
/// weights): `heads` in blocks.json if given, else the published SD 1.5 config beside the fixtures, else 8.
fn block_heads(fx: &Fixtures, spec: &serde_json::Value, prefix: &str) -> usize {
    if let Some(h) = spec["heads"].as_u64() {
        return h as usize;
    }
    let cfg = fx.dir.join("../configs/sd15/unet/config.json");
    let Ok(c) = UNetConfig::from_file(&cfg) else { return 8 };
    let n = c.block_out_channels.len();
    let idx = |p: &str| prefix.strip_prefix(p).and_then(|r| r.split('.').next()).and_then(|i| i.parse::<usize>().ok());
    if let Some(i) = idx("down_blocks.") {
        c.heads(i)
    } else if let Some(i) = idx("up_blocks.") {
        c.heads(n - 1 - i)
    } else {
        c.heads(n - 1)
    }
}

/// `blocks.<name>`: one real-size block with saved weights and formula inputs; the output is compared on the
/// saved subsample, and its L2 norm and mean against the whole output's.
pub fn block_cases(gpu: &Arc<Gpu>, fx: &Fixtures) -> Result<Vec<CaseResult>> {
    let weights = Weights::open(&[fx.tensors.path().to_path_buf()])?;
    let mut out = Vec::new();
    let Some(blocks) = fx.meta["blocks"].as_object() else { return Ok(out) };
    for (name, spec) in blocks {
        let case = format!("blocks.{name}");
        let run = || -> Result<CaseResult> {
            let prefix = spec["weight_prefix"].as_str().unwrap_or("").trim_end_matches('.').to_string();
            let l = Loader::new(gpu, &weights).pp(format!("{name}.weights.{prefix}"));
            let shape_of = |k: &str| weights.shape(&format!("{name}.weights.{prefix}.{k}"));
            let mut g = Graph::new();
            let mut inputs = Vec::new();
            let mut ids = std::collections::HashMap::new();
            for (iname, ispec) in spec["inputs"].as_object().into_iter().flatten() {
                let shape: Vec<usize> = ispec["shape"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
                let t = g.input(iname, TensorDesc::f32(&shape));
                let n = shape.iter().product();
                inputs.push((t, block_input(n, ispec["phase"].as_f64().unwrap_or(0.0))));
                ids.insert(iname.clone(), t);
            }
            let x = *ids.get("hidden_states").ok_or_else(|| crate::error::Error::usage("block has no hidden_states input"))?;
            let groups = spec["norm_num_groups"].as_u64().unwrap_or(32) as usize;
            let y = if prefix.contains("mid_block.attentions") && (prefix.starts_with("decoder") || prefix.starts_with("encoder")) {
                let c = shape_of("group_norm.weight").unwrap_or_default()[0];
                VaeAttention::load(&l, c, groups)?.forward(&mut g, x)?
            } else if prefix.contains(".attentions.") {
                let c = shape_of("norm.weight").unwrap_or_default()[0];
                let cross = shape_of("transformer_blocks.0.attn2.to_k.weight").unwrap_or_default()[1];
                let layers = (0..).take_while(|i| shape_of(&format!("transformer_blocks.{i}.norm1.weight")).is_some()).count();
                let ctx = *ids.get("encoder_hidden_states").ok_or_else(|| crate::error::Error::usage("transformer block has no encoder_hidden_states input"))?;
                let heads = block_heads(fx, spec, &prefix);
                Transformer2DModel::load(&l, c, heads, cross, layers, groups)?.forward(&mut g, x, ctx)?
            } else if prefix.starts_with("decoder.up_blocks.") || prefix.starts_with("encoder.down_blocks.") {
                let w = shape_of("resnets.0.conv1.weight").unwrap_or_default();
                let layers = (0..).take_while(|i| shape_of(&format!("resnets.{i}.conv1.weight")).is_some()).count();
                if prefix.starts_with("decoder") {
                    let up = shape_of("upsamplers.0.conv.weight").is_some();
                    UpDecoderBlock2D::load(&l, w[1], w[0], layers, groups, up)?.forward(&mut g, x)?
                } else {
                    let down = shape_of("downsamplers.0.conv.weight").is_some();
                    DownEncoderBlock2D::load(&l, w[1], w[0], layers, groups, down)?.forward(&mut g, x)?
                }
            } else {
                return Ok(failed(&case, format!("block kind of weight prefix '{prefix}' is not known to wgsd verify")));
            };
            g.output(y);
            let plan = Plan::new(gpu.clone(), g)?;
            for (t, v) in &inputs {
                plan.write(*t, v)?;
            }
            plan.run()?;
            let full = plan.read(y)?;
            let stride = spec["stride"].as_u64().unwrap_or(1) as usize;
            let sampled: Vec<f32> = full.iter().step_by(stride).copied().collect();
            let mut r = compare(&case, &sampled, &fx.tensor(&format!("{name}.out_sampled"))?, MODULE_TOL);
            let l2 = full.iter().map(|v| (*v as f64) * (*v as f64)).sum::<f64>().sqrt();
            let mean = full.iter().map(|v| *v as f64).sum::<f64>() / full.len() as f64;
            let want_l2 = spec["out_l2"].as_f64().unwrap_or(l2);
            let want_mean = spec["out_mean"].as_f64().unwrap_or(mean);
            let l2_err = (l2 - want_l2).abs() / want_l2.abs().max(1e-30);
            let mean_err = (mean - want_mean).abs() / want_l2.abs().max(1e-30) * (full.len() as f64).sqrt();
            r.passed &= l2_err <= MODULE_TOL && mean_err <= MODULE_TOL;
            r.detail = format!("sampled every {stride}; whole-output L2 rel err {l2_err:.1e}, mean err {mean_err:.1e}; {}", plan.memory());
            Ok(r)
        };
        out.push(run().unwrap_or_else(|e| failed(&case, e)));
    }
    Ok(out)
}

/// Max-abs tolerance of pipeline images (in [0, 1]) against the fixtures.
pub const PIPELINE_TOL: f64 = 1e-3;

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
    let rgb = load_rgb(&fx.dir.join(image_file))?;
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
        let mask = Mask::from_rgb8(&resize_like_diffusers(&load_rgb(&fx.dir.join(mask_file))?, w, h)?);
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
            r.passed = r.passed && r.max_abs <= PIPELINE_TOL && noise.used() == draws && flags_ok;
            if noise.used() != draws {
                r.detail = format!("{} noise draws used, the fixture recorded {draws}", noise.used());
            } else if !flags_ok {
                r.detail = flags;
            } else if !r.passed {
                r.detail = format!("max abs {:.2e} > {PIPELINE_TOL:.0e}", r.max_abs);
            }
            Ok(r)
        };
        out.push(run().unwrap_or_else(|e| failed(&case, e)));
    }
    Ok(out)
}
