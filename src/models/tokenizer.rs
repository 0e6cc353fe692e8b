//! CLIP's byte-level BPE tokenizer, built with the `tokenizers` crate from a diffusers `tokenizer/` folder
//! (`vocab.json`, `merges.txt`, `special_tokens_map.json`, `tokenizer_config.json`). The pipeline is the one
//! Hugging Face's CLIP tokenizer uses: NFC, whitespace runs → one space, lower-case; split into letter runs,
//! single digits, punctuation runs and English contractions; byte-level BPE with `</w>` word ends; then
//! `<|startoftext|> … <|endoftext|>`, truncated and padded to 77 tokens. SD 1.x pads with `<|endoftext|>`,
//! SD 2.x with `!` (id 0): the pad token is read from the folder.

use std::path::Path;

use serde_json::Value;

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
        use tokenizers::normalizers::{replace::ReplacePattern, Lowercase, Replace, Sequence as Normalizers, NFC};
        use tokenizers::pre_tokenizers::{byte_level::ByteLevel, sequence::Sequence as PreTokenizers, split::{Split, SplitPattern}};
        use tokenizers::{AddedToken, SplitDelimiterBehavior};

        let vocab_path = dir.join("vocab.json");
        let merges_path = dir.join("merges.txt");
        let config_error = |path: &Path, msg: String| Error::Config { file: path.display().to_string(), msg };
        // Read straight into the maps the BPE model takes: going through a JSON description of the whole
        // tokenizer cost ~0.2 s of every model load (most of a load under --low-vram).
        let vocab_text = std::fs::read_to_string(&vocab_path).map_err(|e| config_error(&vocab_path, format!("cannot read: {e}")))?;
        let vocab: tokenizers::models::bpe::Vocab = serde_json::from_str(&vocab_text)
            .map_err(|e| config_error(&vocab_path, format!("expected a JSON object of token → id: {e}")))?;
        let id_of = |tok: &str| -> Result<u32> {
            vocab.get(tok).copied().ok_or_else(|| config_error(&vocab_path, format!("token '{tok}' is not in the vocabulary")))
        };
        let merges_text = std::fs::read_to_string(&merges_path).map_err(|e| config_error(&merges_path, format!("cannot read: {e}")))?;
        let mut merges = Vec::new();
        for (i, line) in merges_text.lines().enumerate() {
            if line.starts_with("#version") || line.trim().is_empty() {
                continue;
            }
            match line.split_once(' ') {
                Some((a, b)) if !b.contains(' ') => merges.push((a.to_string(), b.to_string())),
                _ => return Err(config_error(&merges_path, format!("line {}: expected two tokens separated by one space, got {line:?}", i + 1))),
            }
        }

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

        let build_error = |e: tokenizers::Error| config_error(dir, format!("cannot build the CLIP tokenizer: {e}"));
        let bpe = tokenizers::models::bpe::BPE::builder()
            .vocab_and_merges(vocab, merges)
            .unk_token(unk)
            .continuing_subword_prefix(String::new())
            .end_of_word_suffix("</w>".into())
            .build()
            .map_err(build_error)?;
        let mut inner = tokenizers::Tokenizer::new(bpe);
        let whitespace = Replace::new(ReplacePattern::Regex(r"\s+".into()), " ").map_err(build_error)?;
        inner
            .with_normalizer(Some(Normalizers::new(vec![NFC.into(), whitespace.into(), Lowercase.into()])))
            .map_err(build_error)?;
        let words = Split::new(
            SplitPattern::Regex(r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+".into()),
            SplitDelimiterBehavior::Removed,
            true,
        )
        .map_err(build_error)?;
        inner.with_pre_tokenizer(Some(PreTokenizers::new(vec![words.into(), ByteLevel::new(false, true, true).into()])));
        inner.with_decoder(Some(ByteLevel::new(true, true, true)));
        inner
            .add_special_tokens(added.iter().map(|(_, t)| AddedToken::from(t.clone(), true)))
            .map_err(build_error)?;
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
