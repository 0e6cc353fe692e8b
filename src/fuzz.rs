//! Fuzz targets: every parser wgsd runs on bytes it did not make. Each takes arbitrary bytes and must
//! return (an `Ok` or an error) without panicking, hanging or allocating without bound. They are driven by
//! `tests/fuzz.rs` (a seeded mutation fuzzer on stable Rust, run in CI) and by the cargo-fuzz targets in
//! `fuzz/` (libFuzzer, nightly) for longer runs.

use std::path::Path;

use crate::models::config::{ClipTextConfig, UNetConfig, VaeConfig};
use crate::models::tokenizer::ClipTokenizer;
use crate::models::weights::WeightFile;
use crate::prompt::embeddings::EmbeddingSet;
use crate::prompt::encode::Chunker;
use crate::prompt::PromptSyntax;

/// A safetensors file as the weight loader reads it: header, every tensor's shape and values (as a
/// weight and as fixture data), then the same bytes as a LoRA file.
pub fn safetensors(bytes: &[u8]) {
    let label = Path::new("fuzz.safetensors");
    if let Ok(f) = WeightFile::from_bytes(label, bytes.to_vec()) {
        for name in f.names() {
            let _ = f.shape(&name);
            let _ = f.read_weight(&name);
            let _ = f.read_f64(&name);
        }
    }
    let _ = crate::train::lora_file::parse_lora_bytes_lenient(label, bytes);
}

/// config.json of the three networks.
pub fn config(bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    let _ = UNetConfig::from_json("config.json", &text);
    let _ = VaeConfig::from_json("config.json", &text);
    let _ = ClipTextConfig::from_json("config.json", &text);
}

/// An image file, decoded as `--image`, `--mask` and training images are.
pub fn image(bytes: &[u8]) {
    if let Ok(d) = crate::imageproc::decode_bytes("fuzz.png", bytes) {
        let _ = d.to_rgb(false);
        let _ = d.to_rgb(true);
    }
}

/// A prompt: A1111 emphasis parsing and LoRA tags (no tokenizer needed).
pub fn prompt_syntax(bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    let _ = crate::prompt::parse::parse_prompt_attention(&text);
    let _ = crate::pipeline::lora::extract_lora_tags(&text);
}

/// A prompt through the tokenizer and both chunkers.
pub fn tokenize(tok: &ClipTokenizer, bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    let _ = tok.encode(&text);
    let emb = EmbeddingSet::default();
    if let Ok(c) = Chunker::new(tok, &emb, 49408) {
        let _ = c.chunk(&text, PromptSyntax::A1111);
        let _ = c.chunk(&text, PromptSyntax::Plain);
    }
}
