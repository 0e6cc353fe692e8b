//! The `vae/` fixture set: `vae.tiled_decode.<i>` and `vae.tiled_encode` (diffusers' `enable_tiling()` on
//! a tiny `AutoencoderKL`), and `taesd.decode` / `taesd.encode` (`AutoencoderTiny`).
//!
//! Model folders are found as `cases.json` says: `model_dir` (relative to the fixture folder) joined with
//! the case's `model`, else `model` inside the fixture folder itself (where `taesd/` is).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{compare, failed, module_tol, CaseResult};
use crate::error::{Error, Result};
use crate::fixtures::Fixtures;
use crate::gpu::Gpu;
use crate::models::taesd::AutoencoderTiny;
use crate::models::vae::{split_moments, AutoencoderKL};
use crate::models::vae_tiling::TileSizes;

/// Case names with tensors under `prefix`, i.e. the `<case>` of `<case>.<input>`.
fn cases(fx: &Fixtures, prefix: &str, input: &str) -> Vec<String> {
    let suffix = format!(".{input}");
    fx.keys_with_prefix(prefix).into_iter().filter_map(|k| k.strip_suffix(&suffix).map(str::to_string)).collect()
}

/// The model folder of `case`.
fn model_dir(fx: &Fixtures, case: &str) -> Result<PathBuf> {
    let meta = &fx.meta["cases"][case];
    let model = meta["model"].as_str().ok_or_else(|| Error::Config {
        file: fx.dir.join("cases.json").display().to_string(),
        msg: format!("case {case} names no model"),
    })?;
    let mut tried = Vec::new();
    if let Some(rel) = fx.meta["model_dir"].as_str() {
        tried.push(fx.dir.join(rel).join(model));
    }
    tried.push(fx.dir.join(model));
    tried.iter().find(|p| p.is_dir()).cloned().ok_or_else(|| {
        Error::usage(format!("model '{model}' of case {case} not found (looked in {})", tried.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")))
    })
}

/// The tile sizes the fixture was made with, when `cases.json` records them, must be what wgsd derives
/// from the VAE config: otherwise the comparison would test a different tiling.
fn check_tile_sizes(fx: &Fixtures, case: &str, sizes: &TileSizes) -> Result<()> {
    let meta = &fx.meta["cases"][case];
    let recorded = [("tile_sample_min_size", sizes.sample as f64), ("tile_latent_min_size", sizes.latent as f64), ("overlap", sizes.overlap)];
    for (key, ours) in recorded {
        if let Some(v) = meta[key].as_f64() {
            if v != ours {
                return Err(Error::usage(format!("{case}: the fixture used {key} = {v}, wgsd derives {ours} from the VAE config")));
            }
        }
    }
    Ok(())
}

/// The model loaded from `dir`, loading it on first use.
fn cached<T>(cache: &mut HashMap<PathBuf, T>, dir: PathBuf, load: impl FnOnce(&Path) -> Result<T>) -> Result<&T> {
    if !cache.contains_key(&dir) {
        let model = load(&dir)?;
        cache.insert(dir.clone(), model);
    }
    Ok(&cache[&dir])
}

fn shape4(fx: &Fixtures, key: &str) -> Result<[usize; 4]> {
    let s = fx.shape(key)?;
    s.as_slice().try_into().map_err(|_| Error::usage(format!("fixture tensor {key} has shape {s:?}, expected 4 dimensions")))
}

/// `vae.tiled_decode.<i>` (plus `.untiled`, the plain decode of the same latent) and `vae.tiled_encode`.
pub fn vae_tiling_cases(gpu: &Arc<Gpu>, fx: &Fixtures) -> Result<Vec<CaseResult>> {
    let mut out = Vec::new();
    let mut vaes: HashMap<PathBuf, AutoencoderKL> = HashMap::new();
    for case in cases(fx, "vae.tiled_decode.", "latent") {
        let mut run = || -> Result<Vec<CaseResult>> {
            let vae = cached(&mut vaes, model_dir(fx, &case)?.join("vae"), |d| AutoencoderKL::load(gpu, d, None))?;
            check_tile_sizes(fx, &case, &TileSizes::of(&vae.config))?;
            let key = format!("{case}.latent");
            let (latent, shape) = (fx.tensor(&key)?, shape4(fx, &key)?);
            let (image, _) = vae.decode_tiled(gpu, &latent, shape)?;
            let mut r = vec![compare(&case, &image, &fx.tensor(&format!("{case}.image"))?, module_tol(gpu.vae_precision))];
            let untiled = format!("{case}.untiled");
            if fx.has(&untiled) {
                r.push(compare(&untiled, &vae.decode_untiled(gpu, &latent, shape)?, &fx.tensor(&untiled)?, module_tol(gpu.vae_precision)));
            }
            Ok(r)
        };
        match run() {
            Ok(r) => out.extend(r),
            Err(e) => out.push(failed(&case, e)),
        }
    }
    for case in cases(fx, "vae.tiled_encode", "image") {
        let mut run = || -> Result<CaseResult> {
            let vae = cached(&mut vaes, model_dir(fx, &case)?.join("vae"), |d| AutoencoderKL::load(gpu, d, None))?;
            check_tile_sizes(fx, &case, &TileSizes::of(&vae.config))?;
            let key = format!("{case}.image");
            let (image, shape) = (fx.tensor(&key)?, shape4(fx, &key)?);
            let (moments, _) = vae.encode_tiled(gpu, &image, shape)?;
            let lat = vae.config.latent_channels;
            let (mean, _) = split_moments(&moments, shape[0], lat, moments.len() / (shape[0] * 2 * lat));
            Ok(compare(&case, &mean, &fx.tensor(&format!("{case}.mean"))?, module_tol(gpu.vae_precision)))
        };
        out.push(run().unwrap_or_else(|e| failed(&case, e)));
    }
    Ok(out)
}

/// `taesd.decode` (latent → image) and `taesd.encode` (image → latent).
pub fn taesd_cases(gpu: &Arc<Gpu>, fx: &Fixtures) -> Result<Vec<CaseResult>> {
    let mut out = Vec::new();
    let mut models: HashMap<PathBuf, AutoencoderTiny> = HashMap::new();
    for (case, input, output) in [("taesd.decode", "latent", "image"), ("taesd.encode", "image", "latent")] {
        if !fx.has(&format!("{case}.{input}")) {
            continue;
        }
        let mut run = || -> Result<CaseResult> {
            let m = cached(&mut models, model_dir(fx, case)?, |d| AutoencoderTiny::load(gpu, d))?;
            let key = format!("{case}.{input}");
            let (x, shape) = (fx.tensor(&key)?, shape4(fx, &key)?);
            let got = if input == "latent" { m.decode_latents(gpu, &x, shape)? } else { m.encode_images(gpu, &x, shape)? };
            Ok(compare(case, &got, &fx.tensor(&format!("{case}.{output}"))?, module_tol(gpu.vae_precision)))
        };
        out.push(run().unwrap_or_else(|e| failed(case, e)));
    }
    Ok(out)
}
