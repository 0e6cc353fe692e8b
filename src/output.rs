//! Writing generated images: PNG files carrying the A1111-style `parameters` text chunk (so other tools
//! read the settings back), numbered names for several images, and never overwriting a file unasked.

use std::fs::OpenOptions;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The settings of one generated image, as A1111 writes them.
#[derive(Clone, Debug, Default)]
pub struct Parameters {
    pub prompt: String,
    pub negative_prompt: String,
    pub steps: usize,
    pub sampler: String,
    pub cfg_scale: f32,
    pub seed: u64,
    pub width: usize,
    pub height: usize,
    pub model: String,
    /// Extra `Key: value` pairs (e.g. "Clip skip", "Denoising strength").
    pub extra: Vec<(String, String)>,
}

impl Parameters {
    /// `prompt\nNegative prompt: …\nSteps: 20, Sampler: Euler a, CFG scale: 7.5, Seed: 1, Size: 512x512, Model: …`
    pub fn a1111_text(&self) -> String {
        let mut s = self.prompt.clone();
        if !self.negative_prompt.is_empty() {
            s.push_str(&format!("\nNegative prompt: {}", self.negative_prompt));
        }
        s.push_str(&format!(
            "\nSteps: {}, Sampler: {}, CFG scale: {}, Seed: {}, Size: {}x{}, Model: {}",
            self.steps, self.sampler, self.cfg_scale, self.seed, self.width, self.height, self.model
        ));
        for (k, v) in &self.extra {
            s.push_str(&format!(", {k}: {v}"));
        }
        s.push_str(", Version: wgsd ");
        s.push_str(env!("CARGO_PKG_VERSION"));
        s
    }
}

impl Parameters {
    /// The `Key: value` pairs after the fixed ones, in the order `wgsd generate` and `wgsd serve` both write
    /// them: denoising strength (image modes), CLIP skip (A1111's count, when above 1), batch size and
    /// position (batches of more than one image).
    pub fn extras(strength: Option<f64>, clip_skip: usize, batch: usize, position: usize) -> Vec<(String, String)> {
        let mut e = Vec::new();
        if let Some(s) = strength {
            e.push(("Denoising strength".to_string(), s.to_string()));
        }
        if clip_skip > 1 {
            e.push(("Clip skip".to_string(), clip_skip.to_string()));
        }
        if batch > 1 {
            e.push(("Batch size".to_string(), batch.to_string()));
            e.push(("Batch pos".to_string(), position.to_string()));
        }
        e
    }
}

/// Float RGB in [0, 1] (HWC) → 8-bit, rounded as diffusers' `numpy_to_pil` does.
pub fn to_rgb8(image: &[f32]) -> Vec<u8> {
    image.iter().map(|v| (v.clamp(0.0, 1.0) * 255.0).round() as u8).collect()
}

/// The file names for `n` images: `out` itself for one image, `stem-1.ext`, `stem-2.ext`, … for several.
pub fn numbered_paths(out: &Path, n: usize) -> Vec<PathBuf> {
    if n <= 1 {
        return vec![out.to_path_buf()];
    }
    let stem = out.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_else(|| "image".into());
    let ext = out.extension().map(|e| e.to_string_lossy().to_string()).unwrap_or_else(|| "png".into());
    (1..=n).map(|i| out.with_file_name(format!("{stem}-{i}.{ext}"))).collect()
}

/// Checks, before any model is loaded, that every one of `paths` can be written: a `.png` name (wgsd
/// writes PNGs, whose text chunk carries the settings; other extensions are refused rather than given PNG
/// bytes), not a folder, in a folder that exists and takes new files, and not already there (unless
/// `overwrite`) — so a long run does not end in an error.
pub fn check_writable(paths: &[PathBuf], overwrite: bool) -> Result<()> {
    for p in paths {
        let ext = p.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
        if ext != "png" {
            return Err(Error::usage(format!(
                "{}: wgsd writes PNG files (their text chunk keeps the prompt and settings); give the output a .png name",
                p.display()
            )));
        }
        if p.is_dir() {
            return Err(Error::usage(format!("{} is a folder; --out takes a file name such as {}", p.display(), p.join("image.png").display())));
        }
        let dir = parent_dir(p);
        if !dir.is_dir() {
            return Err(Error::usage(format!("cannot write {}: the folder {} does not exist", p.display(), dir.display())));
        }
        if !overwrite && p.exists() {
            return Err(Error::usage(format!("{} already exists; pass --overwrite to replace it", p.display())));
        }
    }
    // One probe per folder: can a new file be created there?
    let mut dirs: Vec<PathBuf> = paths.iter().map(|p| parent_dir(p)).collect();
    dirs.dedup();
    for dir in dirs {
        let probe = dir.join(format!(".wgsd-probe-{}", std::process::id()));
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&probe)
            .map_err(|e| Error::usage(format!("cannot write into {}: {e}", dir.display())))?;
        let _ = std::fs::remove_file(&probe);
    }
    Ok(())
}

/// The folder a file goes into (`.` for a bare name).
fn parent_dir(p: &Path) -> PathBuf {
    match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Whether `text` fits Latin-1 (a PNG `tEXt` chunk); otherwise it goes in a UTF-8 `iTXt` chunk, as A1111 and
/// Pillow write it.
fn is_latin1(text: &str) -> bool {
    text.chars().all(|c| (c as u32) < 256)
}

/// Writes an 8-bit RGB PNG with a `parameters` text chunk, atomically: the bytes go to a temporary file in
/// the target folder, which is flushed to disk and then renamed onto the target. On any error the temporary
/// file is removed and an existing target is untouched. Without `overwrite`, an existing file is an error
/// (checked when the file is put in place, so a file that appeared during the run is not replaced either).
pub fn write_png(path: &Path, width: usize, height: usize, rgb: &[u8], parameters: &str, overwrite: bool) -> Result<()> {
    if rgb.len() != width * height * 3 {
        return Err(Error::usage(format!("{}: {} bytes for a {width}x{height} RGB image", path.display(), rgb.len())));
    }
    let name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_else(|| "image.png".into());
    let tmp = parent_dir(path).join(format!(".{name}.wgsd-{}.tmp", std::process::id()));
    let result = write_png_file(&tmp, width, height, rgb, parameters).and_then(|()| put_in_place(&tmp, path, overwrite));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn write_png_file(tmp: &Path, width: usize, height: usize, rgb: &[u8], parameters: &str) -> Result<()> {
    let io = |e: std::io::Error| Error::usage(format!("cannot write {}: {e}", tmp.display()));
    let file = OpenOptions::new().write(true).create_new(true).open(tmp).map_err(io)?;
    let png_err = |e: png::EncodingError| Error::usage(format!("cannot write {}: {e}", tmp.display()));
    encode_png_to(BufWriter::new(file.try_clone().map_err(io)?), width, height, rgb, parameters).map_err(png_err)?;
    file.sync_all().map_err(io)
}

/// An 8-bit RGB PNG with its `parameters` text chunk, in memory (what the HTTP server sends back).
pub fn encode_png(width: usize, height: usize, rgb: &[u8], parameters: &str) -> Result<Vec<u8>> {
    if rgb.len() != width * height * 3 {
        return Err(Error::usage(format!("{} bytes for a {width}x{height} RGB image", rgb.len())));
    }
    let mut out = Vec::new();
    encode_png_to(&mut out, width, height, rgb, parameters).map_err(|e| Error::usage(format!("cannot encode a PNG: {e}")))?;
    Ok(out)
}

/// The PNG bytes: `parameters` in a Latin-1 `tEXt` chunk when it fits, else in a UTF-8 `iTXt` chunk.
fn encode_png_to<W: std::io::Write>(w: W, width: usize, height: usize, rgb: &[u8], parameters: &str) -> std::result::Result<(), png::EncodingError> {
    let mut enc = png::Encoder::new(w, width as u32, height as u32);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    if is_latin1(parameters) {
        enc.add_text_chunk("parameters".to_string(), parameters.to_string())?;
    } else {
        enc.add_itxt_chunk("parameters".to_string(), parameters.to_string())?;
    }
    let mut w = enc.write_header()?;
    w.write_image_data(rgb)?;
    w.finish()
}

/// Moves the finished temporary file onto `path`: a rename (atomic) when replacing is allowed, else a hard
/// link that fails if `path` exists (falling back to check-then-rename where links are not supported).
fn put_in_place(tmp: &Path, path: &Path, overwrite: bool) -> Result<()> {
    let exists = || Error::usage(format!("{} already exists; pass --overwrite to replace it", path.display()));
    let io = |e: std::io::Error| Error::usage(format!("cannot write {}: {e}", path.display()));
    if overwrite {
        return std::fs::rename(tmp, path).map_err(io);
    }
    match std::fs::hard_link(tmp, path) {
        Ok(()) => std::fs::remove_file(tmp).map_err(io),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(exists()),
        Err(_) if path.exists() => Err(exists()),
        Err(_) => std::fs::rename(tmp, path).map_err(io),
    }
}

/// Reads back a PNG's `parameters` text (for tests and for users checking a file).
pub fn read_parameters(path: &Path) -> Result<Option<String>> {
    let file = std::fs::File::open(path).map_err(|e| Error::usage(format!("cannot open {}: {e}", path.display())))?;
    let dec = png::Decoder::new(std::io::BufReader::new(file));
    let reader = dec.read_info().map_err(|e| Error::usage(format!("{}: not a PNG: {e}", path.display())))?;
    let info = reader.info();
    Ok(info
        .uncompressed_latin1_text
        .iter()
        .find(|t| t.keyword == "parameters")
        .map(|t| t.text.clone())
        .or_else(|| info.utf8_text.iter().find(|t| t.keyword == "parameters").and_then(|t| t.get_text().ok())))
}
