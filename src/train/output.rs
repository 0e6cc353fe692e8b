//! What a finished DreamBooth run writes into `--out`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::Result;
use crate::gpu::Gpu;
use crate::pipeline::StableDiffusion;
use crate::train::dreambooth::DreamBoothOptions;
use crate::train::step::TrainStep;

/// Writes the trained adapter (LoRA) or model (full fine-tuning); returns the files written.
pub fn write_outputs(gpu: &Arc<Gpu>, o: &DreamBoothOptions, _model_dir: &Path, step: &TrainStep, _sd: &StableDiffusion) -> Result<Vec<PathBuf>> {
    let mut tensors = Vec::new();
    for t in &step.trainable {
        tensors.push((t.name.clone(), t.param.read(gpu)?));
    }
    let path = o.out.join("wgsd_trained.safetensors");
    crate::train::checkpoint::write_named(&path, &tensors)?;
    Ok(vec![path])
}
