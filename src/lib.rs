//! wgsd: Stable Diffusion on hand-written WGSL kernels, run through wgpu on Vulkan, Metal and DX12.
//!
//! Layers, bottom up:
//! - [`gpu`]: adapter selection, device limits and features, the pipeline cache;
//! - [`tensor`]: shapes and dtypes;
//! - [`graph`]: recording ops, planning buffers by liveness, running a plan in one command encoder;
//! - [`kernels`]: the WGSL kernel families with their CPU twins;
//! - [`schedulers`]: the samplers (DDIM, Euler, DPM++, UniPC, ...), host-side, matching diffusers;
//! - [`bench`]: kernel benchmarks at Stable Diffusion shapes.

pub mod bench;
pub mod error;
pub mod fixtures;
pub mod fuzz;
pub mod generate;
pub mod gpu;
pub mod graph;
pub mod hub;
pub mod imageproc;
pub mod kernels;
pub mod models;
pub mod output;
pub mod pipeline;
pub mod pipeline_cache;
pub mod precision;
pub mod prompt;
pub mod schedulers;
pub mod server;
pub mod tensor;
pub mod testing;
pub mod timing;
pub mod train;
pub mod verify;

pub use error::{Error, Result};
pub use gpu::{Gpu, GpuOptions};
pub use graph::plan::Plan;
pub use graph::{Graph, Param, TensorId};
pub use tensor::{DType, TensorDesc};
