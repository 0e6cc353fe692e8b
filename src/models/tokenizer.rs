//! CLIP's byte-level BPE tokenizer, built with the `tokenizers` crate from a diffusers `tokenizer/` folder
//! (`vocab.json`, `merges.txt`, `special_tokens_map.json`, `tokenizer_config.json`). The pipeline is the one
//! Hugging Face's CLIP tokenizer uses: NFC, whitespace runs → one space, lower-case; split into letter runs,
//! single digits, punctuation runs and English contractions; byte-level BPE with `</w>` word ends; then
//! `<|startoftext|> … <|endoftext|>`, truncated and padded to 77 tokens. SD 1.x pads with `<|endoftext|>`,
//! SD 2.x with `!` (id 0): the pad token is read from the folder.

use std::path::Path;

use serde_json::{json, Value};

use crate::error::{Error, Result};

pub struct ClipTokenizer {
    inner: tokenizers::Tokenizer,
    pub bos_id: u32,
    pub eos_id: u32,
    pub pad_id: u32,
    pub max_len: usize,
}

/// Result of tokenizing one prompt.
pub struct Tokens {
    /// `max_len` ids: start, prompt, end, padding.
    pub ids: Vec<u32>,
    /// Prompt tokens dropped to fit (diffusers warns about these).
    pub truncated: usize,
}

fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::Config { file: path.display().to_string(), msg: format!("cannot read: {e}") })?;
    serde_json::from_str(&text).map_err(|e| Error::Config { file: path.display().to_string(), msg: format!("invalid JSON: {e}") })
}

/// A special-token entry is either a string or `{"content": ...}`.
fn token_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("content").and_then(|c| c.as_str()).map(str::to_string),
        _ => None,
    }
}

impl ClipTokenizer {
    pub fn from_folder(dir: &Path) -> Result<ClipTokenizer> {
        let vocab_path = dir.join("vocab.json");
        let merges_path = dir.join("merges.txt");
        let vocab = read_json(&vocab_path)?;
        let vocab_map = vocab.as_object().ok_or_else(|| Error::Config {
            file: vocab_path.display().to_string(),
            msg: "expected a JSON object of token → id".into(),
        })?;
        let id_of = |tok: &str| -> Result<u32> {
            vocab_map.get(tok).and_then(|v| v.as_u64()).map(|v| v as u32).ok_or_else(|| Error::Config {
                file: vocab_path.display().to_string(),
                msg: format!("token '{tok}' is not in the vocabulary"),
            })
        };
        let merges_text = std::fs::read_to_string(&merges_path).map_err(|e| Error::Config {
            file: merges_path.display().to_string(),
            msg: format!("cannot read: {e}"),
        })?;
        let merges: Vec<Value> = merges_text
            .lines()
            .filter(|l| !l.starts_with("#version") && !l.trim().is_empty())
            .map(|l| json!(l))
            .collect();

        // Special tokens: special_tokens_map.json, then tokenizer_config.json, then CLIP's defaults.
        let mut special = std::collections::HashMap::new();
        for file in ["tokenizer_config.json", "special_tokens_map.json"] {
            let p = dir.join(file);
            if p.exists() {
                if let Value::Object(o) = read_json(&p)? {
                    for key in ["bos_token", "eos_token", "pad_token", "unk_token"] {
                        if let Some(t) = o.get(key).and_then(token_text) {
                            special.insert(key, t);
                        }
                    }
                }
            }
        }
        let get = |k: &str, d: &str| special.get(k).cloned().unwrap_or_else(|| d.to_string());
        let (bos, eos) = (get("bos_token", "<|startoftext|>"), get("eos_token", "<|endoftext|>"));
        let (pad, unk) = (get("pad_token", &eos), get("unk_token", &eos));
        let (bos_id, eos_id, pad_id) = (id_of(&bos)?, id_of(&eos)?, id_of(&pad)?);

        // Every special token is matched in the text before BPE, as Hugging Face does: with SD 2's pad
        // token `!`, "!!" becomes two pad ids, not the BPE token for "!!".
        let mut added: Vec<(u32, String)> = Vec::new();
        for t in [&pad, &bos, &eos, &unk] {
            let id = id_of(t)?;
            if !added.iter().any(|(i, _)| *i == id) {
                added.push((id, t.clone()));
            }
        }
        added.sort();
        let added_tokens: Vec<Value> = added
            .iter()
            .map(|(id, t)| json!({"id": id, "content": t, "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}))
            .collect();
        let spec = json!({
            "version": "1.0",
            "truncation": null,
            "padding": null,
            "added_tokens": added_tokens,
            "normalizer": {"type": "Sequence", "normalizers": [
                {"type": "NFC"},
                {"type": "Replace", "pattern": {"Regex": "\\s+"}, "content": " "},
                {"type": "Lowercase"}
            ]},
            "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
                {"type": "Split", "pattern": {"Regex":
                    "<\\|startoftext\\|>|<\\|endoftext\\|>|'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|[^\\s\\p{L}\\p{N}]+"},
                 "behavior": "Removed", "invert": true},
                {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true}
            ]},
            "post_processor": null,
            "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
            "model": {
                "type": "BPE", "dropout": null, "unk_token": unk, "continuing_subword_prefix": "",
                "end_of_word_suffix": "</w>", "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                "vocab": vocab, "merges": merges
            }
        });
        let inner: tokenizers::Tokenizer = spec.to_string().parse().map_err(|e| Error::Config {
            file: dir.display().to_string(),
            msg: format!("cannot build the CLIP tokenizer: {e}"),
        })?;
        let mut max_len = 77;
        let cfg = dir.join("tokenizer_config.json");
        if cfg.exists() {
            if let Some(m) = read_json(&cfg)?.get("model_max_length").and_then(|v| v.as_u64()) {
                if (2..=4096).contains(&m) {
                    max_len = m as usize;
                }
            }
        }
        Ok(ClipTokenizer { inner, bos_id, eos_id, pad_id, max_len })
    }

    /// The prompt's BPE ids without start/end tokens, padding or truncation.
    pub fn encode_raw(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode(text, false)
            .map_err(|e| Error::usage(format!("cannot tokenize prompt {text:?}: {e}")))?;
        Ok(enc.get_ids().to_vec())
    }

    /// `<start> prompt <end> <pad>…`, exactly `max_len` ids; the prompt is truncated to fit.
    pub fn encode(&self, text: &str) -> Result<Tokens> {
        let raw = self.encode_raw(text)?;
        let room = self.max_len - 2;
        let truncated = raw.len().saturating_sub(room);
        let mut ids = Vec::with_capacity(self.max_len);
        ids.push(self.bos_id);
        ids.extend_from_slice(&raw[..raw.len().min(room)]);
        ids.push(self.eos_id);
        ids.resize(self.max_len, self.pad_id);
        Ok(Tokens { ids, truncated })
    }
}
