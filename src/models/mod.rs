//! Stable Diffusion's networks, built on the engine's ops and loaded from diffusers folders. Model files
//! mirror the diffusers / transformers modules they implement and only record ops on a graph.

pub mod config;
pub mod tokenizer;
pub mod weights;
