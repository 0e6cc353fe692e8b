//! Training: the optimizer, LoRA adapters, the DreamBooth data pipeline and training step, built on the
//! graph's reverse mode (`graph::autodiff`).

pub mod batch;
pub mod bench;
pub mod checkpoint;
pub mod cli;
pub mod data;
pub mod dreambooth;
pub mod lora;
pub mod lora_file;
pub mod lr;
pub mod optimizer;
pub mod output;
pub mod rng;
pub mod save;
pub mod save_model;
pub mod step;
