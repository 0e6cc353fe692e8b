//! Training: the optimizer, LoRA adapters and the DreamBooth training step, built on the graph's reverse
//! mode (`graph::autodiff`).

pub mod batch;
pub mod bench;
pub mod checkpoint;
pub mod lora;
pub mod lr;
pub mod optimizer;
pub mod rng;
pub mod step;
