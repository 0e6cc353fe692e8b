//! Reference fixtures made with diffusers (see `../shared/fixtures/README.md`): `cases.json` with the
//! metadata and `cases.safetensors` with the tensors, or the `blocks/` format (`blocks.json` +
//! `blocks.safetensors`). Tests and `wgsd verify` read the folder from `WGSD_FIXTURES`.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::error::{Error, Result};
use crate::models::weights::WeightFile;

/// Environment variable naming the fixture folder.
pub const ENV: &str = "WGSD_FIXTURES";
/// Default folder, relative to the repository root.
pub const DEFAULT_DIR: &str = "../shared/fixtures/tiny";

/// Environment variable naming the training fixture folder (DreamBooth steps, LoRA and embeddings).
pub const TRAIN_ENV: &str = "WGSD_TRAIN_FIXTURES";
/// Default training fixture folder, relative to the repository root.
pub const DEFAULT_TRAIN_DIR: &str = "../shared/fixtures/train";

/// The training fixture folder: `$WGSD_TRAIN_FIXTURES` or the default.
pub fn train_dir() -> PathBuf {
    std::env::var_os(TRAIN_ENV).map(PathBuf::from).unwrap_or_else(|| PathBuf::from(DEFAULT_TRAIN_DIR))
}

/// The fixture folder to use: `$WGSD_FIXTURES` or the default.
pub fn dir() -> PathBuf {
    std::env::var_os(ENV).map(PathBuf::from).unwrap_or_else(|| PathBuf::from(DEFAULT_DIR))
}

/// One fixture set: its metadata and its tensors.
pub struct Fixtures {
    pub dir: PathBuf,
    pub meta: Value,
    pub tensors: WeightFile,
}

impl Fixtures {
    /// Opens `dir/<stem>.json` and `dir/<stem>.safetensors` (`stem` = "cases" or "blocks").
    pub fn open(dir: &Path, stem: &str) -> Result<Fixtures> {
        let json_path = dir.join(format!("{stem}.json"));
        let text = std::fs::read_to_string(&json_path)
            .map_err(|e| Error::Config { file: json_path.display().to_string(), msg: format!("cannot read: {e}") })?;
        let meta = serde_json::from_str(&python_json(&text))
            .map_err(|e| Error::Config { file: json_path.display().to_string(), msg: format!("invalid JSON: {e}") })?;
        let tensors = WeightFile::open(&dir.join(format!("{stem}.safetensors")))?;
        Ok(Fixtures { dir: dir.to_path_buf(), meta, tensors })
    }

    pub fn tensor(&self, key: &str) -> Result<Vec<f32>> {
        self.tensors.read_f32(key)
    }

    /// A tensor as f64 (exact for float64 fixtures such as scheduler timesteps).
    pub fn tensor_f64(&self, key: &str) -> Result<Vec<f64>> {
        self.tensors.read_f64(key)
    }

    pub fn shape(&self, key: &str) -> Result<Vec<usize>> {
        self.tensors.shape(key).ok_or_else(|| Error::Weights {
            file: self.tensors.path().display().to_string(),
            msg: format!("fixture tensor '{key}' not found"),
        })
    }

    pub fn has(&self, key: &str) -> bool {
        self.tensors.shape(key).is_some()
    }

    /// Tensor names that start with `prefix`, sorted.
    pub fn keys_with_prefix(&self, prefix: &str) -> Vec<String> {
        let mut v: Vec<String> = self.tensors.names().into_iter().filter(|k| k.starts_with(prefix)).collect();
        v.sort();
        v
    }
}

/// Python's `json` writes `NaN`, `Infinity` and `-Infinity`, which JSON lacks (diffusers configs hold e.g.
/// `lambda_min_clipped: -Infinity`). Outside strings they become the strings "NaN", "Infinity",
/// "-Infinity"; [`number`] reads them back.
pub fn python_json(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_str = false;
    let mut escaped = false;
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if in_str {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_str = false;
            }
            rest = &rest[c.len_utf8()..];
            continue;
        }
        if c == '"' {
            in_str = true;
        }
        let token = ["-Infinity", "Infinity", "NaN"].into_iter().find(|t| rest.starts_with(t));
        if let Some(t) = token {
            out.push_str(&format!("\"{t}\""));
            rest = &rest[t.len()..];
        } else {
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

/// A JSON number, also as written by [`python_json`] for non-finite values.
pub fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => match s.as_str() {
            "NaN" => Some(f64::NAN),
            "Infinity" => Some(f64::INFINITY),
            "-Infinity" => Some(f64::NEG_INFINITY),
            _ => None,
        },
        _ => None,
    }
}
