//! `train.*` cases: DreamBooth training steps against diffusers + peft in float64 (see the fixture README,
//! train/). For every stored step the gradients of all trainable tensors are computed from the fixture's
//! parameters of the step before (teacher forcing, so each step's error is measured alone), with every random
//! draw replayed; then the uninterrupted run with wgsd's AdamW is compared with the stored parameters.
//!
//! Cases: `train.<case>.grads` (worst tensor of every step, by the README's metric
//! `‖g − ref‖ / max(‖ref‖, 0.01·‖all ref gradients of the step‖)`), `train.<case>.loss` (every step's
//! loss and gradient norm in the uninterrupted run, relative), `train.<case>.params` (after every stored
//! step of that run, the whole parameter update as one vector).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use serde_json::Value;

use super::{failed, CaseResult};
use crate::precision::Precision;
use crate::error::{Error, Result};
use crate::fixtures::Fixtures;
use crate::gpu::Gpu;
use crate::graph::plan::Plan;
use crate::graph::{Graph, Param};
use crate::models::clip::{weight_file, ClipTextModel};
use crate::models::config::{ClipTextConfig, UNetConfig};
use crate::models::nn::Loader;
use crate::models::unet::UNet2DConditionModel;
use crate::models::vae::{split_moments, AutoencoderKL};
use crate::models::weights::Weights;
use crate::schedulers::ddpm::training_schedule;
use crate::tensor::TensorDesc;
use crate::testing::{max_abs, rel_l2};
use crate::train::batch::{loss_weights, noisy_and_target, posterior_latents, Prediction};
use crate::train::lora::{LoraSpec, TrainHooks};
use crate::train::optimizer::AdamWConfig;
use crate::train::step::{StepConfig, StepInputs, TrainStep};

/// Gradient tolerance: the README's per-tensor metric (float32 noise floor ~7e-6).
pub const GRAD_TOL: f64 = 1e-4;
/// Loss and gradient-norm tolerance (relative).
pub const LOSS_TOL: f64 = 1e-5;
/// Tolerance of the whole parameter update of the uninterrupted run, or 3× the case's float32 floor where
/// larger: AdamW turns rounding in near-zero gradients into full-size steps of random sign, so float32
/// PyTorch itself lands 1e-4..8e-4 from float64 here (`float32_noise_floor.param_updates`).
pub const PARAMS_TOL: f64 = 1e-3;

/// What [`train_cases`] checks of each case.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrainCheck {
    /// The teacher-forced gradients of every stored step, the free-running run's losses, gradient norms and
    /// parameter updates, and the LoRA files written from it.
    Everything,
    /// Only the teacher-forced gradients: all the rest is made from them, so where only the way gradients
    /// are computed changes (gradient checkpointing) they are what needs checking.
    Gradients,
}

/// Every `train.*` case of `fx`; `recompute` trains with gradient checkpointing (case names then end in
/// `_checkpointed`).
pub fn train_cases(gpu: &Arc<Gpu>, fx: &Fixtures, recompute: bool, check: TrainCheck) -> Result<Vec<CaseResult>> {
    let Some(cases) = fx.meta["cases"].as_object() else { return Ok(Vec::new()) };
    let model_dir = fx.dir.join(fx.meta["model_dir"].as_str().unwrap_or("../tiny"));
    let mut out = Vec::new();
    for (name, case) in cases.iter().filter(|(k, _)| k.starts_with("train.")) {
        let suffix = if recompute { "_checkpointed" } else { "" };
        if gpu.precision != Precision::F32 || gpu.vae_precision != Precision::F32 {
            // `wgsd train` always runs in f32 (its frozen networks too): in f16 these cases would measure
            // a configuration that never trains.
            out.push(CaseResult {
                name: format!("{name}{suffix}"),
                passed: false,
                rel_l2: f64::NAN,
                max_abs: f64::NAN,
                detail: String::new(),
                unchecked: Some("training runs in f32 only; verify the train.* cases without --precision f16".into()),
            });
            continue;
        }
        match run_case(gpu, fx, &model_dir, name, case, recompute, check) {
            Ok(mut r) => {
                for c in r.iter_mut() {
                    c.name.push_str(suffix);
                }
                out.extend(r)
            }
            Err(e) => out.push(failed(&format!("{name}.grads{suffix}"), e)),
        }
    }
    Ok(out)
}

/// One step's host inputs: noisy latents, timesteps, token ids, target, loss weights.
type HostStep = (Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>);

fn strings(v: &Value) -> Vec<String> {
    v.as_array().map(|a| a.iter().filter_map(|s| s.as_str().map(String::from)).collect()).unwrap_or_default()
}

fn f64_at(case: &Value, key: &str) -> Result<f64> {
    case[key].as_f64().ok_or_else(|| Error::usage(format!("fixture case: '{key}' missing")))
}

/// The trainable tensors' starting values stored under `<case>.init.`.
fn init_values(fx: &Fixtures, name: &str) -> Result<HashMap<String, Vec<f32>>> {
    let prefix = format!("{name}.init.");
    fx.keys_with_prefix(&prefix).into_iter().map(|k| Ok((k[prefix.len()..].to_string(), fx.tensor(&k)?))).collect()
}

fn run_case(gpu: &Arc<Gpu>, fx: &Fixtures, model_dir: &Path, name: &str, case: &Value, recompute: bool, check: TrainCheck) -> Result<Vec<CaseResult>> {
    let model = case["model"].as_str().ok_or_else(|| Error::usage("fixture case without 'model'"))?;
    let dir = model_dir.join(model);
    let init = init_values(fx, name)?;
    let lora = &case["lora"];
    let spec = |key: &str| -> Option<LoraSpec> {
        let targets = strings(&lora[key]);
        (!targets.is_empty()).then(|| LoraSpec {
            rank: lora["rank"].as_u64().unwrap_or(4) as usize,
            alpha: lora["alpha"].as_f64().unwrap_or(4.0),
            targets,
        })
    };
    let unet_hooks = TrainHooks::new("unet.", spec("unet_target_modules"), init.clone(), 0);
    let te_hooks = TrainHooks::new("text_encoder.", spec("text_encoder_target_modules"), init.clone(), 0);
    let unet_weights = Weights::open(&[weight_file(&dir.join("unet"), "diffusion_pytorch_model", None)?])?;
    let te_weights = Weights::open(&[weight_file(&dir.join("text_encoder"), "model", None)?])?;
    let unet = UNet2DConditionModel::from_loader(
        Loader::for_training(gpu, &unet_weights, &unet_hooks),
        UNetConfig::from_file(&dir.join("unet/config.json"))?,
    )?;
    let text = ClipTextModel::from_loader(
        Loader::for_training(gpu, &te_weights, &te_hooks),
        ClipTextConfig::from_file(&dir.join("text_encoder/config.json"))?,
    )?;
    let vae = AutoencoderKL::load(gpu, &dir.join("vae"), None)?;

    // The tensors to train, by the fixture's names.
    let mut pool: HashMap<String, Arc<Param>> = HashMap::new();
    for p in unet_hooks.adapters().into_iter().chain(te_hooks.adapters()) {
        pool.insert(p.name.clone(), p);
    }
    if case["train_unet"].as_bool().unwrap_or(false) {
        for p in unet_hooks.weights() {
            pool.insert(format!("unet.{}", p.name), p);
        }
    }
    if case["train_text_encoder"].as_bool().unwrap_or(false) {
        for p in te_hooks.weights() {
            pool.insert(format!("text_encoder.{}", p.name), p);
        }
    }
    let names = strings(&case["trainable"]);
    let trainable: Vec<(String, Arc<Param>)> = names
        .iter()
        .map(|n| pool.get(n).map(|p| (n.clone(), p.clone())).ok_or_else(|| Error::usage(format!("trainable tensor '{n}' is not in the model as loaded"))))
        .collect::<Result<_>>()?;
    // Starting values: the LoRA init, or the model's own weights.
    let start: Vec<Vec<f32>> = trainable
        .iter()
        .map(|(n, p)| match init.get(n) {
            Some(v) => Ok(v.clone()),
            None => {
                let (file, key) = if let Some(k) = n.strip_prefix("unet.") { (&unet_weights, k) } else { (&te_weights, &n["text_encoder.".len()..]) };
                file.get(key, &p.desc.shape)
            }
        })
        .collect::<Result<_>>()?;

    let sched_path = dir.join("scheduler/scheduler_config.json");
    let sched_json: Value = serde_json::from_str(&crate::fixtures::python_json(
        &std::fs::read_to_string(&sched_path).map_err(|e| Error::Config { file: sched_path.display().to_string(), msg: e.to_string() })?,
    ))
    .map_err(|e| Error::Config { file: sched_path.display().to_string(), msg: e.to_string() })?;
    let (schedule, pred) = training_schedule(&sched_json, &sched_path.display().to_string())?;
    let pred_kind = case["prediction_type"].as_str().unwrap_or(&pred).to_string();
    let prediction = Prediction::parse(&pred_kind).ok_or_else(|| Error::usage(format!("prediction_type {pred_kind:?} is not trainable")))?;

    let steps = case["steps"].as_u64().unwrap_or(1) as usize;
    let noise_shape = fx.shape(&format!("{name}.step0.noise"))?;
    let px_shape = fx.shape(&format!("{name}.step0.pixel_values"))?;
    let ids_shape = fx.shape(&format!("{name}.step0.input_ids"))?;
    let batch = noise_shape[0];
    let cfg = StepConfig {
        batch,
        latent: [noise_shape[1], noise_shape[2], noise_shape[3]],
        seq: ids_shape[1],
        max_grad_norm: f64_at(case, "max_grad_norm")? as f32,
        recompute,
        grad_accum: 1,
    };
    let adamw = AdamWConfig {
        beta1: f64_at(case, "adam_beta1")?,
        beta2: f64_at(case, "adam_beta2")?,
        eps: f64_at(case, "adam_epsilon")?,
        weight_decay: f64_at(case, "adam_weight_decay")?,
    };
    let lr = f64_at(case, "learning_rate")?;
    let mut step = TrainStep::new(gpu.clone(), &unet, &text, trainable, &cfg, Some(adamw))?;

    // The VAE encoder, planned once for the batch's pixel size.
    let mut g = Graph::new();
    let px = g.input("pixel_values", TensorDesc::f32(&px_shape));
    let moments = vae.encode(&mut g, px)?;
    g.output(moments);
    let vae_plan = Plan::new(gpu.clone(), g)?;
    let n_class = if case["with_prior_preservation"].as_bool().unwrap_or(false) { batch / 2 } else { 0 };
    let prior_w = case["prior_loss_weight"].as_f64().unwrap_or(1.0);
    let snr_gamma = case["snr_gamma"].as_f64();
    let sf = vae.config.scaling_factor;

    // Host inputs of step s, from the recorded draws.
    let inputs = |s: usize| -> Result<HostStep> {
        let key = |what: &str| format!("{name}.step{s}.{what}");
        vae_plan.write(px, &fx.tensor(&key("pixel_values"))?)?;
        vae_plan.run()?;
        let (c, h, w) = (noise_shape[1], noise_shape[2], noise_shape[3]);
        let (mean, logvar) = split_moments(&vae_plan.read(moments)?, batch, c, h * w);
        let latents = posterior_latents(&mean, &logvar, &fx.tensor(&key("posterior_noise"))?, sf);
        let t: Vec<i64> = fx.tensor_f64(&key("timesteps"))?.iter().map(|v| *v as i64).collect();
        let (noisy, target) = noisy_and_target(&schedule, &latents, &fx.tensor(&key("noise"))?, &t, prediction);
        let weights = loss_weights(&schedule, &t, n_class, prior_w, snr_gamma, prediction);
        let ids = fx.tensor(&key("input_ids"))?;
        Ok((noisy, t.iter().map(|v| *v as f32).collect(), ids, target, weights))
    };
    let ref_loss: Vec<f64> = case["loss"].as_array().map(|a| a.iter().filter_map(|v| v.as_f64()).collect()).unwrap_or_default();
    let ref_norm: Vec<f64> = case["grad_norm"].as_array().map(|a| a.iter().filter_map(|v| v.as_f64()).collect()).unwrap_or_default();

    // 1. Teacher-forced gradients of every stored step.
    let (mut worst, mut worst_abs, mut worst_name) = (0.0f64, 0.0f64, String::new());
    let mut checked = 0usize;
    for s in 0..steps {
        if !fx.has(&format!("{name}.grad.step{s}.{}", names[0])) {
            continue;
        }
        for (i, t) in step.trainable.iter().enumerate() {
            let key = format!("{name}.param.step{}.{}", s.wrapping_sub(1), t.name);
            let values = if s > 0 && fx.has(&key) { fx.tensor(&key)? } else { start[i].clone() };
            t.param.write(gpu, &values)?;
        }
        let (noisy, ts, ids, target, weights) = inputs(s)?;
        step.gradients_only(&StepInputs { noisy: &noisy, timesteps: &ts, input_ids: &ids, target: &target, weights: &weights })?;
        let refs: Vec<Vec<f32>> = step.trainable.iter().map(|t| fx.tensor(&format!("{name}.grad.step{s}.{}", t.name))).collect::<Result<_>>()?;
        let total: f64 = refs.iter().flatten().map(|v| (*v as f64).powi(2)).sum::<f64>().sqrt();
        for (i, r) in refs.iter().enumerate() {
            let got = step.gradient(i)?;
            let diff: f64 = got.iter().zip(r).map(|(a, b)| (*a as f64 - *b as f64).powi(2)).sum::<f64>().sqrt();
            let norm: f64 = r.iter().map(|v| (*v as f64).powi(2)).sum::<f64>().sqrt();
            let e = diff / norm.max(0.01 * total).max(f64::MIN_POSITIVE);
            if e.is_nan() || e > worst {
                worst = e;
                worst_name = format!("step {s} {}", step.trainable[i].name);
            }
            worst_abs = worst_abs.max(max_abs(&got, r));
        }
        checked += 1;
    }
    let mut out = vec![CaseResult {
        unchecked: None,
        name: format!("{name}.grads"),
        passed: checked > 0 && worst <= GRAD_TOL,
        rel_l2: worst,
        max_abs: worst_abs,
        detail: if checked == 0 { "no stored gradients".into() } else { format!("worst: {worst_name}") },
    }];
    if check == TrainCheck::Gradients {
        return Ok(out);
    }

    // 2. The uninterrupted run with AdamW from the starting values: every step's loss and gradient norm,
    //    and after every stored step the update (parameters minus their start) of all stored tensors as one
    //    vector.
    for (t, v) in step.trainable.iter().zip(&start) {
        t.param.write(gpu, v)?;
    }
    let floor = case["float32_noise_floor"]["param_updates"].as_f64().unwrap_or(0.0);
    let params_tol = PARAMS_TOL.max(3.0 * floor);
    let (mut loss_err, mut params_err, mut params_abs, mut stored) = (0.0f64, 0.0f64, 0.0f64, 0usize);
    for s in 0..steps {
        let (noisy, ts, ids, target, weights) = inputs(s)?;
        let rep = step.step(&StepInputs { noisy: &noisy, timesteps: &ts, input_ids: &ids, target: &target, weights: &weights }, lr)?;
        let rel = |got: f32, want: f64| ((got as f64 - want) / want).abs();
        let (l, n) = (ref_loss.get(s).copied().unwrap_or(f64::NAN), ref_norm.get(s).copied().unwrap_or(f64::NAN));
        loss_err = loss_err.max(rel(rep.loss, l)).max(rel(rep.grad_norm, n));
        let (mut got_upd, mut want_upd) = (Vec::new(), Vec::new());
        for (i, t) in step.trainable.iter().enumerate() {
            let key = format!("{name}.param.step{s}.{}", t.name);
            if fx.has(&key) {
                let (want, got) = (fx.tensor(&key)?, t.param.read(gpu)?);
                got_upd.extend(got.iter().zip(&start[i]).map(|(a, b)| a - b));
                want_upd.extend(want.iter().zip(&start[i]).map(|(a, b)| a - b));
            }
        }
        if !want_upd.is_empty() {
            params_err = params_err.max(rel_l2(&got_upd, &want_upd));
            params_abs = params_abs.max(max_abs(&got_upd, &want_upd));
            stored += 1;
        }
    }
    // 3. LoRA cases: the files wgsd writes from its own trained parameters against the script's files: the
    //    same keys and shapes, and the same update (values minus their start) within the params bar.
    if let Some(saved) = case["saved"].as_object() {
        out.push(saved_case(gpu, fx, name, saved, &step, &start, case, params_tol).unwrap_or_else(|e| failed(&format!("{name}.saved"), e)));
    }
    out.push(CaseResult {
        unchecked: None,
        name: format!("{name}.loss"),
        passed: !ref_loss.is_empty() && loss_err <= LOSS_TOL,
        rel_l2: loss_err,
        max_abs: loss_err,
        detail: format!("loss and gradient norm of {steps} free-running steps, relative"),
    });
    out.push(CaseResult {
        unchecked: None,
        name: format!("{name}.params"),
        passed: stored > 0 && params_err <= params_tol,
        rel_l2: params_err,
        max_abs: params_abs,
        detail: if stored == 0 { "no stored parameters".into() } else { format!("worst of {stored} stored steps; bar {params_tol:.1e}") },
    });
    Ok(out)
}

#[allow(clippy::too_many_arguments)]
fn saved_case(
    gpu: &Arc<Gpu>,
    fx: &Fixtures,
    name: &str,
    saved: &serde_json::Map<String, Value>,
    step: &TrainStep,
    start: &[Vec<f32>],
    case: &Value,
    tol: f64,
) -> Result<CaseResult> {
    use crate::train::lora_file::{read_lora_file, save_lora, KohyaInfo};
    use crate::train::save::HostTensor;
    // Unique per call: runs with and without checkpointing may verify the same case at once.
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("wgsd-verify-{}-{call}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| Error::usage(format!("cannot create {}: {e}", dir.display())))?;
    let mut tensors = Vec::new();
    for t in &step.trainable {
        tensors.push(HostTensor::new(t.name.clone(), &t.param.desc.shape, t.param.read(gpu)?));
    }
    let rank = case["lora"]["rank"].as_u64().unwrap_or(4) as usize;
    let alpha = case["lora"]["alpha"].as_f64().unwrap_or(rank as f64);
    let written = save_lora(&dir, &tensors, rank, alpha, &KohyaInfo::default(), false)?;
    let starts: HashMap<&str, &Vec<f32>> = step.trainable.iter().map(|t| t.name.as_str()).zip(start).collect();
    let (mut worst, mut worst_abs, mut problems) = (0f64, 0f64, Vec::new());
    for (ours, key) in [(&written.diffusers, "diffusers"), (&written.kohya, "kohya")] {
        let reference = fx.dir.join(saved.get(key).and_then(|v| v.as_str()).ok_or_else(|| Error::usage(format!("cases.json: no saved.{key}")))?);
        let (got, want) = (read_lora_file(ours)?, read_lora_file(&reference)?);
        let shapes = |f: &crate::train::lora_file::LoraFile| f.tensors.iter().map(|t| (t.name.clone(), t.shape.clone())).collect::<Vec<_>>();
        if shapes(&got) != shapes(&want) {
            problems.push(format!("{key}: tensor names or shapes differ from {}", reference.display()));
            continue;
        }
        let raw = |p: &Path| -> Result<Vec<(String, Vec<usize>)>> {
            let f = crate::models::weights::WeightFile::open(p)?;
            let mut v: Vec<(String, Vec<usize>)> = f.names().into_iter().map(|n| { let s = f.shape(&n).unwrap_or_default(); (n, s) }).collect();
            v.sort();
            Ok(v)
        };
        if raw(ours)? != raw(&reference)? {
            problems.push(format!("{key}: file keys or shapes differ from {}", reference.display()));
        }
        let (mut g, mut w) = (Vec::new(), Vec::new());
        for (a, b) in got.tensors.iter().zip(&want.tensors) {
            let s0 = starts.get(a.name.as_str()).ok_or_else(|| Error::usage(format!("{}: '{}' is not trainable", ours.display(), a.name)))?;
            g.extend(a.values.iter().zip(s0.iter()).map(|(v, s)| v - s));
            w.extend(b.values.iter().zip(s0.iter()).map(|(v, s)| v - s));
        }
        worst = worst.max(rel_l2(&g, &w));
        worst_abs = worst_abs.max(max_abs(&g, &w));
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(CaseResult {
        unchecked: None,
        name: format!("{name}.saved"),
        passed: problems.is_empty() && worst <= tol,
        rel_l2: worst,
        max_abs: worst_abs,
        detail: if problems.is_empty() { format!("updates in both files; bar {tol:.1e}") } else { problems.join("; ") },
    })
}
