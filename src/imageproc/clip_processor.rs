//! transformers' `CLIPImageProcessor` (torchvision backend, the default in transformers 5.x), from its
//! `preprocessor_config.json`: convert to RGB → resize the shortest edge → centre crop → rescale + normalise
//! → `pixel_values [N, 3, H, W]`. The resize is torch's uint8 antialiased resize ([`Backend::TorchU8`]),
//! which the fixtures match exactly.

use std::path::Path;

use super::processor::{center_crop, ConfigFile, PixelValues, RescaleNormalize};
use super::resample::{Backend, Filter};
use super::RgbImage;
use crate::error::Result;

/// OpenAI CLIP's normalisation (transformers' class defaults).
#[allow(clippy::excessive_precision)] // transformers' constants, digit for digit
pub const OPENAI_CLIP_MEAN: [f32; 3] = [0.48145466, 0.4578275, 0.40821073];
#[allow(clippy::excessive_precision)]
pub const OPENAI_CLIP_STD: [f32; 3] = [0.26862954, 0.26130258, 0.27577711];

/// How the resize step sizes its output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClipResize {
    /// `{"shortest_edge": s}` (or a bare integer): the short side becomes `s`, the long side
    /// `int(s · long / short)`.
    ShortestEdge(usize),
    /// `{"height": h, "width": w}`.
    Exact { height: usize, width: usize },
}

#[derive(Clone, Debug)]
pub struct ClipImageProcessor {
    pub do_resize: bool,
    pub size: ClipResize,
    pub resample: Filter,
    pub do_center_crop: bool,
    /// `(height, width)`.
    pub crop_size: (usize, usize),
    pub norm: RescaleNormalize,
    /// The 8-bit resampler; [`Backend::TorchU8`] as transformers 5.x runs it, [`Backend::Pillow`] for
    /// `backend="pil"` processors.
    pub backend: Backend,
}

impl ClipImageProcessor {
    /// Reads `dir/preprocessor_config.json` (a `feature_extractor/` folder).
    pub fn load(dir: &Path) -> Result<ClipImageProcessor> {
        Self::from_file(&dir.join("preprocessor_config.json"))
    }

    /// Keys that fix the geometry and normalisation (`size`, `crop_size` when cropping, `image_mean` and
    /// `image_std` when normalising) are required; flags, `resample` and `rescale_factor` default to
    /// transformers' class defaults. `do_convert_rgb` is accepted: inputs are RGB already.
    pub fn from_file(path: &Path) -> Result<ClipImageProcessor> {
        let c = ConfigFile::open(path)?;
        let do_resize = c.bool_or("do_resize", true)?;
        let size = if do_resize {
            let v = c.required("size")?;
            if v.is_u64() {
                ClipResize::ShortestEdge(c.as_usize("size", v)?)
            } else if let Some(s) = v.get("shortest_edge") {
                if v.get("longest_edge").is_some_and(|l| !l.is_null()) {
                    return Err(c.err("size.longest_edge is not supported by wgsd (only shortest_edge or height/width)"));
                }
                ClipResize::ShortestEdge(c.as_usize("size.shortest_edge", s)?)
            } else {
                let (height, width) = c.height_width("size")?;
                ClipResize::Exact { height, width }
            }
        } else {
            ClipResize::ShortestEdge(0)
        };
        let do_center_crop = c.bool_or("do_center_crop", true)?;
        let crop_size = if do_center_crop { c.height_width("crop_size")? } else { (0, 0) };
        Ok(ClipImageProcessor {
            do_resize,
            size,
            resample: c.resample()?,
            do_center_crop,
            crop_size,
            norm: RescaleNormalize::from_config(&c, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD)?,
            backend: Backend::TorchU8,
        })
    }

    /// The resized size `(width, height)` of a `w × h` image (transformers' `get_resize_output_image_size`
    /// with `default_to_square=False`).
    pub fn resized_size(&self, w: usize, h: usize) -> (usize, usize) {
        match self.size {
            ClipResize::Exact { height, width } => (width, height),
            ClipResize::ShortestEdge(s) => {
                let (short, long) = if w <= h { (w, h) } else { (h, w) };
                let new_long = ((s * long) as f64 / short as f64) as usize;
                if w <= h {
                    (s, new_long)
                } else {
                    (new_long, s)
                }
            }
        }
    }

    /// One image → `(height, width, [3, H, W])`.
    pub fn preprocess_one(&self, img: &RgbImage) -> Result<(usize, usize, Vec<f32>)> {
        let mut img = img.clone();
        if self.do_resize {
            let (w, h) = self.resized_size(img.width, img.height);
            img = img.resize(w, h, self.resample, self.backend)?;
        }
        if self.do_center_crop {
            img = center_crop(&img, self.crop_size.0, self.crop_size.1);
        }
        Ok((img.height, img.width, self.norm.apply(&img)))
    }

    /// A batch → `pixel_values [N, 3, H, W]`.
    pub fn preprocess(&self, images: &[RgbImage]) -> Result<PixelValues> {
        let each = images.iter().map(|i| self.preprocess_one(i)).collect::<Result<Vec<_>>>()?;
        PixelValues::stack(each, "CLIPImageProcessor")
    }
}
