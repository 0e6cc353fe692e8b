//! Textual-inversion embeddings: vectors that stand in the prompt for a trigger word.
//!
//! Files (safetensors only; PyTorch pickles `.pt`/`.bin` are refused with a way to convert them, never
//! unpickled):
//! - A1111's layout: one key `emb_params` (`[n, D]`, or `[D]` for one vector), or `string_to_param.*`;
//! - any single-tensor file, and diffusers' `{token: tensor}` (`learned_embeds.safetensors`).
//!
//! Triggers: the file's stem, matched on token ids as A1111 does (`wgsd-emb.safetensors` fires on the
//! tokens of `wgsd-emb`), and the diffusers form `<stem>` matched in the text as an added token is; a
//! diffusers file's key (e.g. `<cat-toy>`) is a trigger too. An n-vector embedding takes n positions.
//! The vectors join the token-embedding table as extra rows after the vocabulary: vector k of the
//! embedding at row offset o has id `vocab_size + o + k` (diffusers' ids for its added tokens).

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::models::weights::WeightFile;

/// One embedding: `count` vectors of `width` values.
#[derive(Clone, Debug)]
pub struct Embedding {
    /// The trigger word: the file's stem.
    pub name: String,
    /// Extra text-form triggers (a diffusers file's token key).
    pub tokens: Vec<String>,
    pub file: PathBuf,
    pub vectors: Vec<f32>,
    pub count: usize,
    pub width: usize,
}

impl Embedding {
    /// Text forms matched before tokenizing (as diffusers' added tokens): `<name>` and the file's keys.
    pub fn text_triggers(&self) -> Vec<String> {
        let mut t = vec![format!("<{}>", self.name)];
        for k in &self.tokens {
            if !t.contains(k) {
                t.push(k.clone());
            }
        }
        t
    }
}

/// Every loaded embedding, in load order (which fixes their ids).
#[derive(Clone, Debug, Default)]
pub struct EmbeddingSet {
    pub list: Vec<Embedding>,
}

fn is_pickle(path: &Path) -> bool {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    matches!(ext.as_str(), "pt" | "bin" | "ckpt" | "pth")
}

fn pickle_refusal(path: &Path) -> Error {
    let p = path.display();
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("embedding");
    Error::usage(format!(
        "{p}: PyTorch pickle embeddings are not read (unpickling can run arbitrary code). Convert it to safetensors \
         where PyTorch is installed: python -c \"import torch, safetensors.torch as st; d = torch.load('{p}', map_location='cpu', \
         weights_only=True); v = d['string_to_param']['*'] if 'string_to_param' in d else next(iter(d.values())); \
         st.save_file({{'emb_params': v.float().contiguous()}}, '{stem}.safetensors')\""
    ))
}

/// Reads one embedding file.
pub fn load_embedding(path: &Path) -> Result<Embedding> {
    if is_pickle(path) {
        return Err(pickle_refusal(path));
    }
    let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or("").to_string();
    let file = WeightFile::open(path)?;
    let err = |msg: String| Error::Weights { file: path.display().to_string(), msg };
    let mut keys = file.names();
    keys.sort();
    let key = if keys.iter().any(|k| k == "emb_params") {
        "emb_params".to_string()
    } else if let Some(k) = keys.iter().find(|k| k.starts_with("string_to_param")) {
        k.clone()
    } else if keys.len() == 1 {
        keys[0].clone()
    } else if keys.iter().any(|k| k == "clip_l" || k == "clip_g") {
        return Err(err("an SDXL embedding (clip_l / clip_g): wgsd runs SD 1.x and 2.x models".into()));
    } else {
        return Err(err(format!("not a textual-inversion embedding: expected one tensor or 'emb_params', found {} keys ({})", keys.len(), keys.join(", "))));
    };
    let shape = file.shape(&key).unwrap_or_default();
    let (count, width) = match shape.as_slice() {
        [d] => (1, *d),
        [n, d] => (*n, *d),
        [1, n, d] => (*n, *d),
        _ => return Err(err(format!("tensor '{key}' has shape {shape:?}; an embedding is [vectors, width]"))),
    };
    if count == 0 || width == 0 {
        return Err(err(format!("tensor '{key}' is empty ({shape:?})")));
    }
    let vectors = file.read_weight(&key)?;
    if vectors.iter().any(|v| !v.is_finite()) {
        return Err(err(format!("tensor '{key}' holds non-finite values")));
    }
    let tokens = if key != "emb_params" && !key.starts_with("string_to_param") { vec![key] } else { vec![] };
    Ok(Embedding { name, tokens, file: path.to_path_buf(), vectors, count, width })
}

impl EmbeddingSet {
    /// Adds one file; `width` is the text encoder's hidden size.
    pub fn add_file(&mut self, path: &Path, width: usize) -> Result<()> {
        let e = load_embedding(path)?;
        if e.width != width {
            return Err(Error::usage(format!(
                "{}: the embedding's vectors are {} wide but this model's text encoder is {} wide (an embedding for another model family?)",
                path.display(),
                e.width,
                width
            )));
        }
        self.add(e)
    }

    fn add(&mut self, e: Embedding) -> Result<()> {
        if let Some(prev) = self.list.iter().find(|p| p.name == e.name) {
            return Err(Error::usage(format!("two embeddings are named '{}': {} and {}", e.name, prev.file.display(), e.file.display())));
        }
        self.list.push(e);
        Ok(())
    }

    /// Adds every `.safetensors` file under `dir` (recursively, sorted); pickles there are skipped with a
    /// warning that says how to convert them. Embeddings of another width (another model family: A1111
    /// users keep SD 1 and SD 2 embeddings in one folder) are skipped; their file names are returned.
    pub fn add_dir(&mut self, dir: &Path, width: usize) -> Result<Vec<String>> {
        let mut files = Vec::new();
        collect(dir, &mut files)?;
        files.sort();
        let mut skipped = Vec::new();
        for f in files {
            if is_pickle(&f) {
                eprintln!("warning: {}", pickle_refusal(&f));
            } else if f.extension().and_then(|e| e.to_str()).is_some_and(|e| e.eq_ignore_ascii_case("safetensors")) {
                let e = load_embedding(&f)?;
                if e.width == width {
                    self.add(e)?;
                } else {
                    skipped.push(f.file_name().and_then(|n| n.to_str()).unwrap_or("?").to_string());
                }
            }
        }
        Ok(skipped)
    }

    /// Total number of vectors (extra table rows).
    pub fn rows(&self) -> usize {
        self.list.iter().map(|e| e.count).sum()
    }

    /// Row offset of embedding `i` among the extra rows.
    pub fn offset(&self, i: usize) -> usize {
        self.list[..i].iter().map(|e| e.count).sum()
    }

    /// Every vector, `[rows, width]`, in id order.
    pub fn table(&self) -> Vec<f32> {
        self.list.iter().flat_map(|e| e.vectors.iter().copied()).collect()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let rd = std::fs::read_dir(dir).map_err(|e| Error::usage(format!("--embeddings-dir {}: {e}", dir.display())))?;
    for entry in rd.flatten() {
        let p = entry.path();
        if p.is_dir() {
            collect(&p, out)?;
        } else {
            out.push(p);
        }
    }
    Ok(())
}
