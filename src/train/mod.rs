//! Training: the optimizer, LoRA adapters and the DreamBooth training step, built on the graph's reverse
//! mode (`graph::autodiff`).

pub mod batch;
pub mod bench;
pub mod lora;
pub mod lora_file;
pub mod optimizer;
pub mod save;
pub mod save_model;
pub mod step;
