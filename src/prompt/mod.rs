//! Prompts as A1111 users write them: emphasis syntax (`parse`), 75-token chunks with per-token weights
//! for prompts of any length (`encode`), and textual-inversion embeddings (`embeddings`).

pub mod embeddings;
pub mod encode;
pub mod parse;

pub use encode::{PromptOptions, PromptSyntax};
