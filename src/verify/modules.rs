//! Module cases: `text.*` (CLIP text encoder), `unet.*`, `vae.*`.

use std::sync::Arc;

use super::{compare, failed, models, module_tol, CaseResult};
use crate::error::Result;
use crate::fixtures::Fixtures;
use crate::gpu::Gpu;
use crate::graph::plan::Plan;
use crate::graph::{Graph, TensorId};
use crate::models::clip::ClipTextModel;
use crate::models::unet::UNet2DConditionModel;
use crate::models::vae::{split_moments, AutoencoderKL};
use crate::tensor::TensorDesc;

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
                r.push(compare(&name, got, &fx.tensor(&name)?, module_tol(gpu.precision)));
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
                Ok(compare(&case, &p.plan.read(p.out)?, &fx.tensor(&format!("{case}.out"))?, module_tol(gpu.precision)))
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
            Ok(compare("vae.decode", &plan.read(img)?, &fx.tensor("vae.decode.image")?, module_tol(gpu.vae_precision)))
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
            let a = compare("vae.encode", &mean, &fx.tensor("vae.encode.mean")?, module_tol(gpu.vae_precision));
            let b = compare("vae.encode", &logvar, &fx.tensor("vae.encode.logvar")?, module_tol(gpu.vae_precision));
            let worst = if b.rel_l2 > a.rel_l2 || b.rel_l2.is_nan() { b.clone() } else { a.clone() };
            Ok(CaseResult {
                unchecked: None,
                passed: a.passed && b.passed,
                detail: format!("mean rel_l2 {:.2e}, logvar rel_l2 {:.2e}", a.rel_l2, b.rel_l2),
                ..worst
            })
        };
        out.push(run().unwrap_or_else(|e| failed("vae.encode", e)));
    }
    Ok(out)
}
