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

/// Refuses up front if any of `paths` exists (unless `overwrite`), so a long run does not end in an error.
pub fn check_writable(paths: &[PathBuf], overwrite: bool) -> Result<()> {
    if overwrite {
        return Ok(());
    }
    for p in paths {
        if p.exists() {
            return Err(Error::usage(format!("{} already exists; pass --overwrite to replace it", p.display())));
        }
    }
    Ok(())
}

/// Writes an 8-bit RGB PNG with a `parameters` text chunk. Without `overwrite`, an existing file is an error
/// (checked atomically when the file is created).
pub fn write_png(path: &Path, width: usize, height: usize, rgb: &[u8], parameters: &str, overwrite: bool) -> Result<()> {
    if rgb.len() != width * height * 3 {
        return Err(Error::usage(format!("{}: {} bytes for a {width}x{height} RGB image", path.display(), rgb.len())));
    }
    let io = |e: std::io::Error| Error::usage(format!("cannot write {}: {e}", path.display()));
    let file = if overwrite {
        OpenOptions::new().write(true).create(true).truncate(true).open(path)
    } else {
        OpenOptions::new().write(true).create_new(true).open(path)
    }
    .map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            Error::usage(format!("{} already exists; pass --overwrite to replace it", path.display()))
        } else {
            io(e)
        }
    })?;
    let mut enc = png::Encoder::new(BufWriter::new(file), width as u32, height as u32);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let png_err = |e: png::EncodingError| Error::usage(format!("cannot write {}: {e}", path.display()));
    enc.add_text_chunk("parameters".to_string(), parameters.to_string()).map_err(png_err)?;
    let mut w = enc.write_header().map_err(png_err)?;
    w.write_image_data(rgb).map_err(png_err)?;
    w.finish().map_err(png_err)
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
