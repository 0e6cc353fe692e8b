//! Stable Diffusion's networks, built on the engine's ops and loaded from diffusers folders.

pub mod config;
pub mod tokenizer;
pub mod weights;
