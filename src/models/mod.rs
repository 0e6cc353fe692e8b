//! Stable Diffusion's networks, built on the engine's ops and loaded from diffusers folders. Model files
//! mirror the diffusers / transformers modules they implement and only record ops on a graph.

pub mod clip;
pub mod clip_vision;
pub mod config;
pub mod dpt;
pub mod nn;
pub mod resnet;
pub mod safety_checker;
pub mod single_file;
pub mod taesd;
pub mod tokenizer;
pub mod transformer;
pub mod unet;
pub mod vae;
pub mod vae_tiling;
pub mod weights;
