//! Training: the optimizer, LoRA adapters, the DreamBooth data pipeline and training step, built on the
//! graph's reverse mode (`graph::autodiff`).

pub mod batch;
pub mod bench;
pub mod data;
pub mod lora;
pub mod optimizer;
pub mod step;
