//! The DreamBooth data pipeline: instance (and class) image folders → batches of pixel values and prompts,
//! preprocessed exactly as diffusers' `train_dreambooth.py` / `train_dreambooth_lora.py` do it with
//! torchvision on PIL images:
//!
//! 1. `Image.open`, `exif_transpose`, `convert("RGB")` ([`RgbImage::open_upright`]);
//! 2. `transforms.Resize(resolution, interpolation)`: the shortest side becomes `resolution`, the other
//!    `int(resolution · long / short)` (torchvision's `_compute_resized_output_size`), resampled by Pillow's
//!    antialiased `Image.resize` ([`Backend::Pillow`], bit-exact); an image already that size is untouched;
//! 3. `CenterCrop(resolution)` (offsets `round((size − resolution) / 2)`, half to even as Python rounds) or
//!    `RandomCrop(resolution)`, then optionally `RandomHorizontalFlip`;
//! 4. `ToTensor` (u8 / 255 in f32) and `Normalize([0.5], [0.5])`: CHW f32 in [−1, 1].
//!
//! Every image is decoded, checked and resized when the dataset opens, so a bad file is reported before
//! training starts; only the crop and flip happen per example. Random crops and flips draw from a caller's
//! [`Draw`] (implemented for the SplitMix64 [`crate::testing::Rng`]), so a seed fixes the whole data stream.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::imageproc::{Backend, Filter, RgbImage};
use crate::models::tokenizer::ClipTokenizer;

/// File extensions read as images (case-insensitive).
pub const IMAGE_EXTENSIONS: [&str; 4] = ["png", "jpg", "jpeg", "webp"];
/// Image formats users commonly have that wgsd cannot decode: such a file in a training folder is an error
/// rather than silently left out.
const UNSUPPORTED_EXTENSIONS: [&str; 8] = ["gif", "bmp", "tif", "tiff", "heic", "heif", "avif", "jxl"];
/// The most elongated image accepted (long side / short side): resizing the short side to the resolution
/// would otherwise make an enormous intermediate image for a crop of its middle.
pub const MAX_ASPECT: usize = 16;

/// A source of uniform integers for random crops and flips. Implement it for the training loop's seeded
/// generator; [`crate::testing::Rng`] (SplitMix64) has one.
pub trait Draw {
    /// A uniform integer in `0..n` (`n ≥ 1`).
    fn below(&mut self, n: usize) -> usize;
}

impl Draw for crate::testing::Rng {
    /// Lemire's multiply-shift: the high 64 bits of `u64 · n`, unbiased enough for crop offsets.
    fn below(&mut self, n: usize) -> usize {
        ((self.next_u64() as u128 * n as u128) >> 64) as usize
    }
}

/// How images become pixel values (the scripts' `--resolution`, `--center_crop`, `--random_flip` and
/// interpolation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Preprocess {
    pub resolution: usize,
    /// `Filter::Lanczos` in `train_dreambooth_lora.py`, `Filter::Bilinear` in `train_dreambooth.py`.
    pub filter: Filter,
    /// Centre crop; otherwise a random crop.
    pub center_crop: bool,
    /// Mirror left-right with probability 1/2.
    pub random_flip: bool,
}

impl Preprocess {
    /// Errors unless the resolution is a positive multiple of 8 (the VAE downsamples by 8).
    pub fn validate(&self) -> Result<()> {
        if self.resolution == 0 || !self.resolution.is_multiple_of(8) {
            return Err(Error::usage(format!(
                "resolution {} is not a positive multiple of 8 (the VAE works on 8×8 pixel blocks); try {}",
                self.resolution,
                (self.resolution / 8).max(1) * 8
            )));
        }
        Ok(())
    }
}

/// The filter of a torchvision interpolation name (`--image_interpolation_mode`): `lanczos`, `bilinear` or
/// `bicubic`.
pub fn parse_interpolation(name: &str) -> Result<Filter> {
    match name.to_ascii_lowercase().as_str() {
        "lanczos" => Ok(Filter::Lanczos),
        "bilinear" => Ok(Filter::Bilinear),
        "bicubic" => Ok(Filter::Bicubic),
        other => Err(Error::usage(format!("interpolation '{other}' is not supported (supported: lanczos, bilinear, bicubic)"))),
    }
}

fn folder_error(dir: &Path, msg: impl Into<String>) -> Error {
    Error::Input { file: dir.display().to_string(), msg: msg.into() }
}

/// The image files of a folder, sorted by file name (so every platform sees the same order). Hidden files
/// (`.`…, e.g. macOS `._photo.jpg`) and files of other kinds (captions, notes) are skipped; a GIF, BMP,
/// TIFF, HEIC, AVIF or JPEG XL file is an error naming it. The list may be empty; the folder must exist.
pub fn list_images(dir: &Path) -> Result<Vec<PathBuf>> {
    if !dir.exists() {
        return Err(folder_error(dir, "no such folder"));
    }
    if !dir.is_dir() {
        return Err(folder_error(dir, "not a folder"));
    }
    let entries = std::fs::read_dir(dir).map_err(|e| folder_error(dir, format!("cannot list folder: {e}")))?;
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| folder_error(dir, format!("cannot list folder: {e}")))?;
        let path = entry.path();
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') || !path.is_file() {
            continue;
        }
        let ext = path.extension().map(|e| e.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
        if IMAGE_EXTENSIONS.contains(&ext.as_str()) {
            out.push(path);
        } else if UNSUPPORTED_EXTENSIONS.contains(&ext.as_str()) {
            return Err(Error::Input {
                file: path.display().to_string(),
                msg: format!("{} images are not supported (wgsd reads PNG, JPEG and WebP): convert it or move it out of the folder", ext.to_uppercase()),
            });
        }
    }
    out.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    Ok(out)
}

/// The caption beside an image (`photo.txt` for `photo.png`), trimmed; `None` without one. An empty or
/// unreadable caption file is an error naming it.
pub fn caption_for(image: &Path) -> Result<Option<String>> {
    let path = image.with_extension("txt");
    if !path.is_file() {
        return Ok(None);
    }
    let err = |msg: String| Error::Input { file: path.display().to_string(), msg };
    let text = std::fs::read_to_string(&path).map_err(|e| err(format!("cannot read caption: {e}")))?;
    let text = text.trim();
    if text.is_empty() {
        return Err(err(format!("the caption file of {} is empty (delete it to use the folder's prompt)", image.display())));
    }
    Ok(Some(text.to_string()))
}

/// torchvision's `Resize(resolution)` output size `(width, height)` for a `width × height` image: the
/// shortest side becomes `resolution`, the other `int(resolution · long / short)` (truncated).
pub fn resized_size(width: usize, height: usize, resolution: usize) -> (usize, usize) {
    let (short, long) = if width <= height { (width, height) } else { (height, width) };
    // Python's int/int division is correctly rounded; with these magnitudes the f64 product is exact, so
    // one f64 division rounds the same way.
    let new_long = (resolution as f64 * long as f64 / short as f64) as usize;
    if width <= height {
        (resolution, new_long)
    } else {
        (new_long, resolution)
    }
}

/// Opens an image (upright, RGB) and resizes its shortest side to `resolution` with Pillow's filter, as
/// `transforms.Resize` does on a PIL image. Errors name the file.
pub fn load_resized(path: &Path, resolution: usize, filter: Filter) -> Result<RgbImage> {
    let img = RgbImage::open_upright(path)?;
    let (short, long) = (img.width.min(img.height), img.width.max(img.height));
    if long > MAX_ASPECT * short {
        return Err(Error::Input {
            file: path.display().to_string(),
            msg: format!("a {}×{} image is too elongated to train on (at most {MAX_ASPECT}:1)", img.width, img.height),
        });
    }
    let (w, h) = resized_size(img.width, img.height, resolution);
    if (w, h) == (img.width, img.height) {
        return Ok(img);
    }
    img.resize(w, h, filter, Backend::Pillow).map_err(|e| Error::Input { file: path.display().to_string(), msg: e.to_string() })
}

/// `(top, left)` of torchvision's `CenterCrop(size)`: `round((side − size) / 2)`, half to even.
pub fn center_crop_offset(width: usize, height: usize, size: usize) -> (usize, usize) {
    let off = |side: usize| ((side.saturating_sub(size)) as f64 / 2.0).round_ties_even() as usize;
    (off(height), off(width))
}

/// `(top, left)` of torchvision's `RandomCrop(size)`: no draw when the image is exactly the crop, else a
/// uniform top then a uniform left.
pub fn random_crop_offset(width: usize, height: usize, size: usize, rng: &mut dyn Draw) -> (usize, usize) {
    if width == size && height == size {
        return (0, 0);
    }
    let top = rng.below(height - size + 1);
    let left = rng.below(width - size + 1);
    (top, left)
}

/// The `size × size` window at `(top, left)` of an image at least that large, as CHW f32 pixel values in
/// [−1, 1] (`ToTensor` then `Normalize([0.5], [0.5])`, in f32 as torch computes them), mirrored left-right
/// when `flip`.
pub fn crop_to_pixels(img: &RgbImage, top: usize, left: usize, size: usize, flip: bool) -> Result<Vec<f32>> {
    if top + size > img.height || left + size > img.width {
        return Err(Error::usage(format!(
            "crop of {size}×{size} at ({top}, {left}) does not fit a {}×{} image",
            img.width, img.height
        )));
    }
    let mut out = Vec::with_capacity(3 * size * size);
    for c in 0..3 {
        for y in 0..size {
            let row = &img.data[((top + y) * img.width + left) * 3..][..size * 3];
            for x in 0..size {
                let sx = if flip { size - 1 - x } else { x };
                let unit = row[sx * 3 + c] as f32 / 255.0;
                out.push((unit - 0.5) / 0.5);
            }
        }
    }
    Ok(out)
}

/// One resized image (shortest side = resolution) and the crop, flip and tensor conversion of
/// [`Preprocess`]: `[3, resolution, resolution]`. Draws only for a random crop or flip.
pub fn augment(img: &RgbImage, p: &Preprocess, rng: &mut dyn Draw) -> Result<Vec<f32>> {
    let r = p.resolution;
    if img.width < r || img.height < r {
        return Err(Error::usage(format!("a {}×{} image cannot be cropped to {r}×{r}: resize it first", img.width, img.height)));
    }
    let (top, left) = if p.center_crop { center_crop_offset(img.width, img.height, r) } else { random_crop_offset(img.width, img.height, r, rng) };
    let flip = p.random_flip && rng.below(2) == 1;
    crop_to_pixels(img, top, left, r, flip)
}

/// An image file all the way to pixel values `[3, resolution, resolution]` (what the scripts'
/// `image_transforms` return for it).
pub fn prepare_image(path: &Path, p: &Preprocess, rng: &mut dyn Draw) -> Result<Vec<f32>> {
    p.validate()?;
    let img = load_resized(path, p.resolution, p.filter)?;
    augment(&img, p, rng)
}

/// Prompts → token ids `[B, max_len]` as f32, as the scripts' `tokenizer(prompt, truncation=True,
/// padding="max_length", max_length=tokenizer.model_max_length)`.
pub fn tokenize_prompts(tok: &ClipTokenizer, prompts: &[String]) -> Result<Vec<f32>> {
    let mut out = Vec::with_capacity(prompts.len() * tok.max_len);
    for p in prompts {
        out.extend(tok.encode(p)?.ids.into_iter().map(|id| id as f32));
    }
    Ok(out)
}

/// One training image, decoded and resized when the dataset opened, with its prompt.
#[derive(Clone, Debug)]
pub struct Sample {
    pub path: PathBuf,
    /// The caption file's text, or the folder's prompt.
    pub prompt: String,
    /// Whether `prompt` came from a caption file.
    pub captioned: bool,
    /// Shortest side = the resolution.
    pub image: RgbImage,
}

/// The class images of prior preservation (`--class_data_dir`, `--class_prompt`, `--num_class_images`).
#[derive(Clone, Copy, Debug)]
pub struct ClassImages<'a> {
    pub dir: &'a Path,
    pub prompt: &'a str,
    /// Use at most this many (the first by file name), as the scripts keep `num_class_images`.
    pub limit: Option<usize>,
}

/// A batch as the scripts' `collate_fn` makes it: instance examples first, then (prior preservation) the
/// class examples, pixel values `[B, 3, R, R]` and one prompt per row.
#[derive(Clone, Debug)]
pub struct Batch {
    pub pixel_values: Vec<f32>,
    pub shape: [usize; 4],
    pub prompts: Vec<String>,
    /// How many rows at the end are class images.
    pub n_class: usize,
}

/// The scripts' `DreamBoothDataset`: example `i` is instance image `i mod n_instance` and, with prior
/// preservation, class image `i mod n_class`; its length is the larger count.
#[derive(Clone, Debug)]
pub struct DreamBoothDataset {
    pub instance: Vec<Sample>,
    pub class: Vec<Sample>,
    pub preprocess: Preprocess,
}

fn load_folder(dir: &Path, prompt: &str, limit: Option<usize>, what: &str, p: &Preprocess) -> Result<Vec<Sample>> {
    let mut paths = list_images(dir)?;
    if paths.is_empty() {
        return Err(folder_error(dir, format!("no {what} images (PNG, JPEG or WebP) in this folder")));
    }
    if let Some(n) = limit {
        if n == 0 {
            return Err(folder_error(dir, format!("the number of {what} images to use is 0")));
        }
        paths.truncate(n);
    }
    paths
        .into_iter()
        .map(|path| {
            let caption = caption_for(&path)?;
            let image = load_resized(&path, p.resolution, p.filter)?;
            let captioned = caption.is_some();
            Ok(Sample { prompt: caption.unwrap_or_else(|| prompt.to_string()), captioned, image, path })
        })
        .collect()
}

impl DreamBoothDataset {
    /// Checks the settings, lists both folders, reads every caption and decodes and resizes every image:
    /// any bad input is an error here, naming the file, before training starts.
    pub fn open(instance_dir: &Path, instance_prompt: &str, class: Option<ClassImages>, preprocess: Preprocess) -> Result<DreamBoothDataset> {
        preprocess.validate()?;
        let instance = load_folder(instance_dir, instance_prompt, None, "instance", &preprocess)?;
        let class = match class {
            Some(c) => load_folder(c.dir, c.prompt, c.limit, "class", &preprocess)?,
            None => Vec::new(),
        };
        Ok(DreamBoothDataset { instance, class, preprocess })
    }

    /// Examples per epoch: the larger of the instance and class counts.
    pub fn len(&self) -> usize {
        self.instance.len().max(self.class.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Example `index`: the instance image's pixel values and prompt, then the class image's when there
    /// are class images. Draws (crop, flip) for the instance image first.
    pub fn example(&self, index: usize, rng: &mut dyn Draw) -> Result<Vec<(Vec<f32>, &str)>> {
        if self.instance.is_empty() {
            return Err(Error::usage("the dataset has no instance images"));
        }
        let mut out = Vec::with_capacity(2);
        let s = &self.instance[index % self.instance.len()];
        out.push((augment(&s.image, &self.preprocess, rng)?, s.prompt.as_str()));
        if !self.class.is_empty() {
            let s = &self.class[index % self.class.len()];
            out.push((augment(&s.image, &self.preprocess, rng)?, s.prompt.as_str()));
        }
        Ok(out)
    }

    /// The batch of examples `indices`, collated as the scripts do (instance rows, then class rows).
    pub fn batch(&self, indices: &[usize], rng: &mut dyn Draw) -> Result<Batch> {
        let r = self.preprocess.resolution;
        let (mut inst, mut cls) = (Vec::new(), Vec::new());
        for &i in indices {
            let mut ex = self.example(i, rng)?.into_iter();
            inst.extend(ex.next());
            cls.extend(ex.next());
        }
        let n_class = cls.len();
        let rows: Vec<(Vec<f32>, &str)> = inst.into_iter().chain(cls).collect();
        let shape = [rows.len(), 3, r, r];
        let mut pixel_values = Vec::with_capacity(rows.len() * 3 * r * r);
        let mut prompts = Vec::with_capacity(rows.len());
        for (px, prompt) in rows {
            pixel_values.extend(px);
            prompts.push(prompt.to_string());
        }
        Ok(Batch { pixel_values, shape, prompts, n_class })
    }
}

/// A permutation of `0..n` (Fisher–Yates) for the order of an epoch.
pub fn shuffled(n: usize, rng: &mut dyn Draw) -> Vec<usize> {
    let mut v: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        v.swap(i, rng.below(i + 1));
    }
    v
}
