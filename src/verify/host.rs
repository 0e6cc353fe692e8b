//! Host-side cases (no GPU): `tokenizer.*` ids and `sched.*` trajectories.


use super::{models, CaseResult, SCHEDULER_TOL};
use crate::error::Result;
use crate::fixtures::Fixtures;
use crate::models::tokenizer::ClipTokenizer;
use crate::schedulers::{self, ReplayNoise};
use crate::testing::{max_abs, rel_l2};

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
                unchecked: None,
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
            unchecked: None,
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
                unchecked: None,
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
            unchecked: None,
            name: case_name.clone(), passed: false, rel_l2: f64::NAN, max_abs: f64::NAN, detail };
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
        unchecked: None,
        name: case_name,
        passed: worst <= SCHEDULER_TOL,
        rel_l2: worst,
        max_abs: worst_abs,
        detail: format!("{cls}, {} steps, worst at step {worst_step}, {draws} noise draws", got_t.len()),
    })
}
