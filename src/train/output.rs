//! What a finished DreamBooth run writes into `--out`: a LoRA in diffusers' layout
//! (`pytorch_lora_weights.safetensors`, read by `load_lora_weights`) and in kohya's (`kohya_lora.safetensors`,
//! read by A1111 and ComfyUI); or, after full fine-tuning, a diffusers folder with the changed components
//! (and, with `--save-single-file`, an LDM single file). Every file is written atomically.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::Result;
use crate::gpu::Gpu;
use crate::pipeline::StableDiffusion;
use crate::train::dreambooth::DreamBoothOptions;
use crate::train::lora_file::{save_lora, KohyaInfo};
use crate::train::save::HostTensor;
use crate::train::save_model::save_full;
use crate::train::step::TrainStep;

/// Name of the single file written with `--save-single-file`.
pub const SINGLE_FILE: &str = "dreambooth.safetensors";

/// Writes the trained adapter or model; returns the files written.
pub fn write_outputs(gpu: &Arc<Gpu>, o: &DreamBoothOptions, model_dir: &Path, step: &TrainStep, sd: &StableDiffusion, prediction_v: bool) -> Result<Vec<PathBuf>> {
    let mut tensors = Vec::with_capacity(step.trainable.len());
    for t in &step.trainable {
        tensors.push(HostTensor::new(t.name.clone(), &t.param.desc.shape, t.param.read(gpu)?));
    }
    // A resumed run replaces nothing but what its own earlier invocation may have begun.
    let overwrite = o.overwrite || o.resume.is_some();
    if !o.full {
        let info = KohyaInfo {
            v2: sd.text_encoder.config.hidden_size == 1024,
            v_prediction: prediction_v,
            extra: vec![
                ("ss_sd_model_name".into(), o.model.clone()),
                ("ss_resolution".into(), format!("({0}, {0})", o.resolution)),
                ("ss_steps".into(), o.steps.to_string()),
                ("ss_seed".into(), o.seed.to_string()),
                ("ss_num_train_images".into(), o.batch.to_string()),
                ("ss_output_name".into(), o.out.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default()),
            ],
        };
        if o.alpha != o.rank as f64 {
            eprintln!(
                "note: alpha {} ≠ rank {}: diffusers' file format has no alpha (diffusers assumes alpha = rank), so load \
                 kohya_lora.safetensors, which carries it, where the scale matters",
                o.alpha, o.rank
            );
        }
        let p = save_lora(&o.out, &tensors, o.rank, o.alpha, &info, overwrite)?;
        return Ok(vec![p.diffusers, p.kohya]);
    }
    let mut changed: Vec<(String, Vec<HostTensor>)> = Vec::new();
    for component in ["unet", "text_encoder"] {
        let prefix = format!("{component}.");
        let part: Vec<HostTensor> = tensors
            .iter()
            .filter_map(|t| t.name.strip_prefix(&prefix).map(|n| HostTensor::new(n, &t.shape, t.values.clone())))
            .collect();
        if !part.is_empty() {
            changed.push((component.to_string(), part));
        }
    }
    let single = o.save_single_file.then(|| o.out.join(SINGLE_FILE));
    save_full(model_dir, &o.out, &changed, single.as_deref(), overwrite)?;
    let mut files = vec![o.out.join("model_index.json")];
    files.extend(single);
    Ok(files)
}
