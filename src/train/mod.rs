//! Training: the optimizer, LoRA adapters and the DreamBooth training step, built on the graph's reverse
//! mode (`graph::autodiff`).

pub mod batch;
pub mod bench;
pub mod checkpoint;
pub mod cli;
pub mod dreambooth;
pub mod lora;
pub mod lr;
pub mod optimizer;
pub mod output;
pub mod rng;
pub mod step;
