//! Diffusion schedulers (samplers), host-side, matching diffusers 0.42 numerically.
//!
//! Every scheduler implements [`Scheduler`]: configure it from a diffusers `scheduler_config.json`
//! ([`from_config`], [`from_file`]) or an A1111 sampler name ([`from_a1111`]), call
//! [`Scheduler::set_timesteps`], start from noise × [`Scheduler::init_noise_sigma`] (txt2img) or
//! [`Scheduler::add_noise`] at [`img2img_start`] (img2img), and for each index `i` of
//! [`Scheduler::timesteps`] run the model on [`Scheduler::scale_model_input`] at timestep
//! `timesteps()[i]` and feed its output to [`Scheduler::step`]. Randomness comes only from a
//! [`NoiseSource`].
//!
//! Precision follows diffusers: the training schedule and the per-step coefficients are float32 (0-d
//! torch tensors there), the timestep and σ grids are built in float64 (numpy) and stored as float32, and
//! the element-wise updates are float32 in diffusers' order of operations. One file per family:
//! [`ddim`], [`ddpm`], [`pndm`], [`euler`] (Euler, Euler ancestral), [`heun`], [`lms`], [`dpm`]
//! (DPM-Solver++ 2M / SDE), [`unipc`], [`lcm`].

pub mod ddim;
pub mod ddpm;
pub mod dpm;
pub mod euler;
pub mod heun;
pub mod lcm;
pub mod lms;
pub mod noise;
pub mod pndm;
pub mod schedule;
pub mod unipc;

use std::fmt::Display;
use std::path::Path;

use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::fixtures::{number, python_json};

pub use noise::{NoNoise, NoiseSource, ReplayNoise, TorchCpuGenerator};

/// One sampler. Samples are flat `f32` slices (any shape, batch included); the scheduler never needs
/// the shape because every operation is element-wise.
///
/// `step` must be called with consecutive indices (`start, start+1, …`) after `set_timesteps`; the
/// multistep schedulers keep the previous model outputs between calls, and `set_timesteps` clears them.
pub trait Scheduler: Send {
    /// The diffusers class this reproduces, e.g. `"EulerAncestralDiscreteScheduler"`.
    fn class_name(&self) -> &'static str;

    /// Builds the timestep and σ grids for `num_inference_steps` steps and resets all state.
    fn set_timesteps(&mut self, num_inference_steps: usize) -> Result<()>;

    /// The `num_inference_steps` of the last `set_timesteps`.
    fn num_inference_steps(&self) -> usize;

    /// The model timesteps, one per `step` call, in order (Heun repeats each inner one: 2n − 1 entries;
    /// PNDM with `skip_prk_steps` repeats its second: n + 1). The model is given `t as f32`.
    fn timesteps(&self) -> &[f64];

    /// `step` calls per inference step (2 for Heun, else 1): img2img skips `order × t_start` entries.
    fn order(&self) -> usize {
        1
    }

    /// img2img: `set_timesteps` for `n` steps at `strength` (0 keeps the image, 1 is pure noise) and
    /// the index of the first step to run, where the image is noised with `add_noise`. This is
    /// [`img2img_start`] after `set_timesteps`, except for LCM, whose img2img pipeline instead draws all
    /// `n` steps from the first `strength` part of its distillation schedule (and starts at 0).
    fn set_timesteps_img2img(&mut self, n: usize, strength: f64) -> Result<usize> {
        self.set_timesteps(n)?;
        let n = self.num_inference_steps();
        Ok((n - ((n as f64 * strength) as usize).min(n)) * self.order())
    }

    /// What pure noise is multiplied by to start txt2img (σ_max for the σ-based classes, else 1).
    fn init_noise_sigma(&self) -> f32 {
        1.0
    }

    /// The model input at step `step` (divided by √(σ² + 1) for the σ-based classes, else unchanged).
    fn scale_model_input(&self, sample: &[f32], _step: usize) -> Vec<f32> {
        sample.to_vec()
    }

    /// One update: the sample after step `step`, given the model output at `timesteps()[step]`.
    fn step(&mut self, model_output: &[f32], step: usize, sample: &[f32], noise: &mut dyn NoiseSource) -> Result<Vec<f32>>;

    /// Noises a clean sample to the level of step `step` (img2img: at `img2img_start`).
    fn add_noise(&self, original: &[f32], noise: &[f32], step: usize) -> Vec<f32>;
}

/// The first step of an img2img run at `strength` (0 = keep the image, 1 = start from pure noise), as the
/// diffusers img2img pipelines compute it: `t_start = n − min(⌊n·strength⌋, n)`, times the order.
/// The run has `timesteps().len() − start` steps; add the noise with `add_noise(.., start)`.
pub fn img2img_start(s: &dyn Scheduler, strength: f64) -> usize {
    let n = s.num_inference_steps();
    let init = ((n as f64 * strength) as usize).min(n);
    (n - init) * s.order()
}

/// What the model predicts (`prediction_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prediction {
    Epsilon,
    VPrediction,
    Sample,
}

impl Prediction {
    /// Reads `prediction_type`, refusing values outside `allowed`.
    fn from_config(cfg: &Config, allowed: &[Prediction]) -> Result<Prediction> {
        let s = cfg.string("prediction_type", "epsilon")?;
        let p = match s.as_str() {
            "epsilon" => Some(Prediction::Epsilon),
            "v_prediction" => Some(Prediction::VPrediction),
            "sample" => Some(Prediction::Sample),
            _ => None,
        };
        match p {
            Some(p) if allowed.contains(&p) => Ok(p),
            _ => {
                let names: Vec<&str> = allowed.iter().map(|p| p.name()).collect();
                Err(cfg.unsupported("prediction_type", format!("{s:?}"), &format!("{} takes {names:?}", cfg.class)))
            }
        }
    }

    fn name(self) -> &'static str {
        match self {
            Prediction::Epsilon => "epsilon",
            Prediction::VPrediction => "v_prediction",
            Prediction::Sample => "sample",
        }
    }
}

/// A diffusers scheduler config as one class reads it: missing or `null` keys take that class's
/// defaults, and keys named in `_use_default_values` are treated as missing (diffusers does the same
/// when a config is loaded into another class, so each class gets its own defaults for them).
pub struct Config {
    class: &'static str,
    source: String,
    map: Map<String, Value>,
}

impl Config {
    pub(crate) fn new(class: &'static str, json: &Value, source: &str) -> Result<Config> {
        let Some(obj) = json.as_object() else {
            return Err(Error::Config {
                file: source.into(),
                msg: format!("{class}: the scheduler config is not a JSON object"),
            });
        };
        let defaults: Vec<&str> = obj
            .get("_use_default_values")
            .and_then(|v| v.as_array())
            .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
            .unwrap_or_default();
        let map = obj
            .iter()
            .filter(|(k, _)| !k.starts_with('_') && !defaults.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Ok(Config { class, source: source.into(), map })
    }

    fn get(&self, key: &str) -> Option<&Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    /// An error naming the field, its value and why it cannot be used.
    pub fn unsupported(&self, key: &str, value: impl Display, why: &str) -> Error {
        Error::Config { file: self.source.clone(), msg: format!("{}: {key} = {value} is not supported: {why}", self.class) }
    }

    fn type_error(&self, key: &str, want: &str) -> Error {
        let v = self.get(key).map(|v| v.to_string()).unwrap_or_default();
        Error::Config { file: self.source.clone(), msg: format!("{}: {key} = {v} is not {want}", self.class) }
    }

    pub fn opt_f64(&self, key: &str) -> Result<Option<f64>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => number(v).map(Some).ok_or_else(|| self.type_error(key, "a number")),
        }
    }

    pub fn f64(&self, key: &str, default: f64) -> Result<f64> {
        Ok(self.opt_f64(key)?.unwrap_or(default))
    }

    pub fn usize(&self, key: &str, default: usize) -> Result<usize> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => match v.as_u64().or_else(|| v.as_f64().filter(|f| f.fract() == 0.0 && *f >= 0.0).map(|f| f as u64)) {
                Some(u) => Ok(u as usize),
                None => Err(self.type_error(key, "a non-negative integer")),
            },
        }
    }

    pub fn i64(&self, key: &str, default: i64) -> Result<i64> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v.as_i64().ok_or_else(|| self.type_error(key, "an integer")),
        }
    }

    pub fn bool(&self, key: &str, default: bool) -> Result<bool> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v.as_bool().ok_or_else(|| self.type_error(key, "true or false")),
        }
    }

    pub fn string(&self, key: &str, default: &str) -> Result<String> {
        match self.get(key) {
            None => Ok(default.to_string()),
            Some(v) => v.as_str().map(String::from).ok_or_else(|| self.type_error(key, "a string")),
        }
    }

    pub fn f64_list(&self, key: &str) -> Result<Option<Vec<f64>>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| number(v).ok_or_else(|| self.type_error(key, "a list of numbers")))
                .collect::<Result<Vec<_>>>()
                .map(Some),
            Some(_) => Err(self.type_error(key, "a list of numbers")),
        }
    }

    /// Errors when a boolean key is true: a feature wgsd does not implement.
    pub fn refuse_true(&self, key: &str, why: &str) -> Result<()> {
        if self.bool(key, false)? {
            return Err(self.unsupported(key, true, why));
        }
        Ok(())
    }

    /// Errors when a key is present and not null.
    pub fn refuse_set(&self, key: &str, why: &str) -> Result<()> {
        if let Some(v) = self.get(key) {
            return Err(self.unsupported(key, v, why));
        }
        Ok(())
    }

    /// `thresholding` (dynamic thresholding, for pixel-space models) is not implemented.
    fn refuse_thresholding(&self) -> Result<()> {
        self.refuse_true("thresholding", "dynamic thresholding is for pixel-space models; wgsd does not implement it")
    }
}

/// The diffusers class names [`from_config`] accepts.
pub const CLASSES: &[&str] = &[
    "DDIMScheduler",
    "DDPMScheduler",
    "PNDMScheduler",
    "EulerDiscreteScheduler",
    "EulerAncestralDiscreteScheduler",
    "HeunDiscreteScheduler",
    "LMSDiscreteScheduler",
    "DPMSolverMultistepScheduler",
    "UniPCMultistepScheduler",
    "LCMScheduler",
];

/// A scheduler from a diffusers class name and its config (a `scheduler_config.json` object). `source`
/// names where the config came from, for errors.
pub fn from_config(class: &str, config: &Value, source: &str) -> Result<Box<dyn Scheduler>> {
    Ok(match class {
        "DDIMScheduler" => Box::new(ddim::Ddim::new(&Config::new("DDIMScheduler", config, source)?)?),
        "DDPMScheduler" => Box::new(ddpm::Ddpm::new(&Config::new("DDPMScheduler", config, source)?)?),
        "PNDMScheduler" => Box::new(pndm::Pndm::new(&Config::new("PNDMScheduler", config, source)?)?),
        "EulerDiscreteScheduler" => Box::new(euler::Euler::new(&Config::new("EulerDiscreteScheduler", config, source)?)?),
        "EulerAncestralDiscreteScheduler" => {
            Box::new(euler::EulerAncestral::new(&Config::new("EulerAncestralDiscreteScheduler", config, source)?)?)
        }
        "HeunDiscreteScheduler" => Box::new(heun::Heun::new(&Config::new("HeunDiscreteScheduler", config, source)?)?),
        "LMSDiscreteScheduler" => Box::new(lms::Lms::new(&Config::new("LMSDiscreteScheduler", config, source)?)?),
        "DPMSolverMultistepScheduler" => {
            Box::new(dpm::DpmSolverMultistep::new(&Config::new("DPMSolverMultistepScheduler", config, source)?)?)
        }
        "UniPCMultistepScheduler" => Box::new(unipc::UniPc::new(&Config::new("UniPCMultistepScheduler", config, source)?)?),
        "LCMScheduler" => Box::new(lcm::Lcm::new(&Config::new("LCMScheduler", config, source)?)?),
        other => {
            return Err(Error::Config {
                file: source.into(),
                msg: format!("_class_name = {other:?} is not supported: wgsd has {}", CLASSES.join(", ")),
            })
        }
    })
}

/// A scheduler from a diffusers `scheduler_config.json` (its `_class_name` picks the class).
pub fn from_file(path: &Path) -> Result<Box<dyn Scheduler>> {
    let file = path.display().to_string();
    let text =
        std::fs::read_to_string(path).map_err(|e| Error::Config { file: file.clone(), msg: format!("cannot read: {e}") })?;
    let json: Value = serde_json::from_str(&python_json(&text))
        .map_err(|e| Error::Config { file: file.clone(), msg: format!("invalid JSON: {e}") })?;
    let class = json
        .get("_class_name")
        .and_then(|v| v.as_str())
        .ok_or_else(|| Error::Config { file: file.clone(), msg: "no _class_name".into() })?;
    from_config(class, &json, &file)
}

/// An A1111-style sampler: the diffusers class it maps to and the config keys it sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct A1111Sampler {
    /// The short name (`euler_a`, `dpmpp_2m`, ...).
    pub name: &'static str,
    /// The name A1111 writes in the PNG `parameters` chunk, without " Karras".
    pub display: &'static str,
    pub class: &'static str,
    /// Whether `--karras` is meaningful (the class has `use_karras_sigmas`).
    pub karras_ok: bool,
}

/// The A1111 samplers wgsd offers.
pub const A1111_SAMPLERS: &[A1111Sampler] = &[
    A1111Sampler { name: "euler_a", display: "Euler a", class: "EulerAncestralDiscreteScheduler", karras_ok: false },
    A1111Sampler { name: "euler", display: "Euler", class: "EulerDiscreteScheduler", karras_ok: true },
    A1111Sampler { name: "heun", display: "Heun", class: "HeunDiscreteScheduler", karras_ok: true },
    A1111Sampler { name: "lms", display: "LMS", class: "LMSDiscreteScheduler", karras_ok: true },
    A1111Sampler { name: "ddim", display: "DDIM", class: "DDIMScheduler", karras_ok: false },
    A1111Sampler { name: "ddpm", display: "DDPM", class: "DDPMScheduler", karras_ok: false },
    A1111Sampler { name: "pndm", display: "PLMS", class: "PNDMScheduler", karras_ok: false },
    A1111Sampler { name: "plms", display: "PLMS", class: "PNDMScheduler", karras_ok: false },
    A1111Sampler { name: "dpmpp_2m", display: "DPM++ 2M", class: "DPMSolverMultistepScheduler", karras_ok: true },
    A1111Sampler { name: "dpmpp_2m_sde", display: "DPM++ 2M SDE", class: "DPMSolverMultistepScheduler", karras_ok: true },
    A1111Sampler { name: "unipc", display: "UniPC", class: "UniPCMultistepScheduler", karras_ok: true },
    A1111Sampler { name: "lcm", display: "LCM", class: "LCMScheduler", karras_ok: false },
];

/// Reads an A1111 sampler name: a short name (`euler_a`, `dpmpp_2m_sde`), a display name as A1111
/// writes it (`Euler a`, `DPM++ 2M Karras`) or a ComfyUI name (`euler_ancestral`, `uni_pc`). A trailing
/// "karras" sets the returned flag.
pub fn parse_a1111(name: &str) -> Result<(A1111Sampler, bool)> {
    let mut n = name.trim().to_lowercase().replace("++", "pp").replace([' ', '-'], "_");
    let karras = n.ends_with("_karras");
    if karras {
        n.truncate(n.len() - "_karras".len());
    }
    // Older A1111 ("k_euler_a") and ComfyUI ("euler_ancestral", "uni_pc") spellings.
    let n = match n.strip_prefix("k_").unwrap_or(&n) {
        "euler_ancestral" => "euler_a".to_string(),
        "uni_pc" => "unipc".to_string(),
        other => other.to_string(),
    };
    let normalise = |d: &str| d.to_lowercase().replace("++", "pp").replace(' ', "_");
    A1111_SAMPLERS.iter().find(|s| s.name == n || normalise(s.display) == n).map(|s| (*s, karras)).ok_or_else(|| {
        let names: Vec<&str> = A1111_SAMPLERS.iter().map(|s| s.name).collect();
        Error::usage(format!(
            "unknown sampler {name:?}: wgsd has {} (add --karras or \" Karras\" for Karras sigmas), or a diffusers class name",
            names.join(", ")
        ))
    })
}

/// The A1111 display name for the PNG `parameters` chunk, e.g. `DPM++ 2M Karras`.
pub fn a1111_display_name(sampler: &A1111Sampler, karras: bool) -> String {
    if karras {
        format!("{} Karras", sampler.display)
    } else {
        sampler.display.to_string()
    }
}

/// Whether `name` is a sampler [`from_a1111`] takes (an A1111 name or a diffusers class), before any
/// model config is at hand.
pub fn check_sampler_name(name: &str) -> Result<()> {
    if CLASSES.contains(&name) {
        return Ok(());
    }
    parse_a1111(name).map(|_| ())
}

/// The A1111 display name of a diffusers scheduler `class` with its `config` (Karras sigmas, the DPM
/// solver's SDE variant), e.g. `PNDMScheduler` → `PLMS`; an unknown class keeps its own name.
pub fn a1111_name_of_class(class: &str, config: &Value) -> String {
    let sde = config["algorithm_type"].as_str().is_some_and(|a| a.starts_with("sde"));
    let karras = config["use_karras_sigmas"].as_bool().unwrap_or(false);
    let found = A1111_SAMPLERS.iter().find(|s| s.class == class && (class != "DPMSolverMultistepScheduler" || (s.name == "dpmpp_2m_sde") == sde));
    match found {
        Some(s) => a1111_display_name(s, karras && s.karras_ok),
        None => class.to_string(),
    }
}

/// A scheduler from an A1111 sampler name, on top of the model's own scheduler config `base` (which
/// holds the training schedule: betas, `prediction_type`, `steps_offset`, ...). `karras` (or a name
/// ending in "Karras") switches on Karras sigmas where the sampler has them; a diffusers class name is
/// accepted as well.
pub fn from_a1111(name: &str, karras: bool, base: &Value, source: &str) -> Result<Box<dyn Scheduler>> {
    if CLASSES.contains(&name) {
        let mut cfg = base.clone();
        if karras {
            set_key(&mut cfg, "use_karras_sigmas", Value::Bool(true));
        }
        return from_config(name, &cfg, source);
    }
    let (sampler, named_karras) = parse_a1111(name)?;
    let karras = karras || named_karras;
    if karras && !sampler.karras_ok {
        return Err(Error::usage(format!("sampler {:?} has no Karras variant", sampler.name)));
    }
    let mut cfg = base.clone();
    match sampler.name {
        "dpmpp_2m" => {
            set_key(&mut cfg, "algorithm_type", "dpmsolver++".into());
            set_key(&mut cfg, "solver_order", 2.into());
        }
        "dpmpp_2m_sde" => {
            set_key(&mut cfg, "algorithm_type", "sde-dpmsolver++".into());
            set_key(&mut cfg, "solver_order", 2.into());
        }
        "pndm" | "plms" => set_key(&mut cfg, "skip_prk_steps", true.into()),
        _ => {}
    }
    set_key(&mut cfg, "use_karras_sigmas", karras.into());
    from_config(sampler.class, &cfg, source)
}

/// Sets a config key and takes it off `_use_default_values`, so it is read as given.
fn set_key(cfg: &mut Value, key: &str, v: Value) {
    if let Some(obj) = cfg.as_object_mut() {
        obj.insert(key.into(), v);
        if let Some(Value::Array(d)) = obj.get_mut("_use_default_values") {
            d.retain(|x| x.as_str() != Some(key));
        }
    }
}

/// `f(a, b)` element-wise.
fn zip_map(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32) -> Vec<f32> {
    a.iter().zip(b).map(|(&x, &y)| f(x, y)).collect()
}

/// `f(a, b, c)` element-wise.
fn zip3_map(a: &[f32], b: &[f32], c: &[f32], f: impl Fn(f32, f32, f32) -> f32) -> Vec<f32> {
    a.iter().zip(b).zip(c).map(|((&x, &y), &z)| f(x, y, z)).collect()
}

/// Checks the model output and sample lengths agree.
fn check_len(class: &str, model_output: &[f32], sample: &[f32]) -> Result<()> {
    if model_output.len() != sample.len() {
        return Err(Error::usage(format!(
            "{class}.step: model output has {} values, sample has {}",
            model_output.len(),
            sample.len()
        )));
    }
    Ok(())
}

/// Checks `step` is within the timesteps of the last `set_timesteps`.
fn check_step(class: &str, step: usize, len: usize) -> Result<()> {
    if len == 0 {
        return Err(Error::usage(format!("{class}: call set_timesteps before step")));
    }
    if step >= len {
        return Err(Error::usage(format!("{class}: step {step} is past the last of {len} timesteps")));
    }
    Ok(())
}
