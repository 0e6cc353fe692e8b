//! transformers' `DPTImageProcessor` (torchvision backend, the default in transformers 5.x), from its
//! `preprocessor_config.json`: resize to `size` (optionally keeping the aspect ratio, rounded to a multiple
//! of `ensure_multiple_of`) → optional centre crop → rescale + normalise → optional padding to a multiple of
//! `size_divisor` → `pixel_values [N, 3, H, W]`. The resize is torch's uint8 antialiased resize.

use std::path::Path;

use super::processor::{center_crop, ConfigFile, PixelValues, RescaleNormalize};
use super::resample::{Backend, Filter};
use super::RgbImage;
use crate::error::Result;

/// ImageNet "standard" normalisation (transformers' class defaults for DPT).
pub const IMAGENET_STANDARD_MEAN: [f32; 3] = [0.5, 0.5, 0.5];
pub const IMAGENET_STANDARD_STD: [f32; 3] = [0.5, 0.5, 0.5];

#[derive(Clone, Debug)]
pub struct DptImageProcessor {
    pub do_resize: bool,
    /// `(height, width)`.
    pub size: (usize, usize),
    pub keep_aspect_ratio: bool,
    pub ensure_multiple_of: usize,
    pub resample: Filter,
    pub do_center_crop: bool,
    pub crop_size: (usize, usize),
    pub norm: RescaleNormalize,
    /// `do_pad`: pad (after normalising, with zeros) to a multiple of this, centred.
    pub pad_to_multiple: Option<usize>,
    pub backend: Backend,
}

impl DptImageProcessor {
    /// Reads `dir/preprocessor_config.json` (a `feature_extractor/` folder).
    pub fn load(dir: &Path) -> Result<DptImageProcessor> {
        Self::from_file(&dir.join("preprocessor_config.json"))
    }

    /// `size` is required when resizing, `image_mean`/`image_std` when normalising, `size_divisor` when
    /// padding; `do_reduce_labels` (segmentation maps only) must be off.
    pub fn from_file(path: &Path) -> Result<DptImageProcessor> {
        let c = ConfigFile::open(path)?;
        let do_resize = c.bool_or("do_resize", true)?;
        let size = if do_resize { c.height_width("size")? } else { (0, 0) };
        let do_center_crop = c.bool_or("do_center_crop", false)?;
        let crop_size = if do_center_crop { c.height_width("crop_size")? } else { (0, 0) };
        let pad_to_multiple = if c.bool_or("do_pad", false)? {
            let v = c.required("size_divisor").map_err(|_| c.err("do_pad = true needs 'size_divisor' (missing)"))?;
            Some(c.as_usize("size_divisor", v)?)
        } else {
            None
        };
        if c.bool_or("do_reduce_labels", false)? {
            return Err(c.err("do_reduce_labels = true is not supported by wgsd (segmentation maps are not processed)"));
        }
        Ok(DptImageProcessor {
            do_resize,
            size,
            keep_aspect_ratio: c.bool_or("keep_aspect_ratio", false)?,
            ensure_multiple_of: c.usize_or("ensure_multiple_of", 1)?,
            resample: c.resample()?,
            do_center_crop,
            crop_size,
            norm: RescaleNormalize::from_config(&c, IMAGENET_STANDARD_MEAN, IMAGENET_STANDARD_STD)?,
            pad_to_multiple,
            backend: Backend::TorchU8,
        })
    }

    /// The resized `(width, height)` of a `w × h` image (DPT's `get_resize_output_image_size`).
    pub fn resized_size(&self, w: usize, h: usize) -> (usize, usize) {
        let (out_h, out_w) = self.size;
        let mut scale_h = out_h as f64 / h as f64;
        let mut scale_w = out_w as f64 / w as f64;
        if self.keep_aspect_ratio {
            // Scale as little as possible.
            if (1.0 - scale_w).abs() < (1.0 - scale_h).abs() {
                scale_h = scale_w;
            } else {
                scale_w = scale_h;
            }
        }
        let m = self.ensure_multiple_of as f64;
        // Python's round() rounds half to even; with no max_val and min_val 0 the other branches never apply.
        let constrain = |val: f64| ((val / m).round_ties_even() * m) as usize;
        (constrain(scale_w * w as f64), constrain(scale_h * h as f64))
    }

    /// One image → `(height, width, [3, H, W])`.
    pub fn preprocess_one(&self, img: &RgbImage) -> Result<(usize, usize, Vec<f32>)> {
        let mut img = img.clone();
        if self.do_resize {
            let (w, h) = self.resized_size(img.width, img.height);
            img = img.resize(w.max(1), h.max(1), self.resample, self.backend)?;
        }
        if self.do_center_crop {
            img = center_crop(&img, self.crop_size.0, self.crop_size.1);
        }
        let (h, w) = (img.height, img.width);
        let x = self.norm.apply(&img);
        match self.pad_to_multiple {
            None => Ok((h, w, x)),
            Some(d) => Ok(pad_centered(&x, h, w, d)),
        }
    }

    /// A batch → `pixel_values [N, 3, H, W]`.
    pub fn preprocess(&self, images: &[RgbImage]) -> Result<PixelValues> {
        let each = images.iter().map(|i| self.preprocess_one(i)).collect::<Result<Vec<_>>>()?;
        PixelValues::stack(each, "DPTImageProcessor")
    }
}

/// DPT's `pad_image`: zero padding of `[3, h, w]` up to multiples of `d`, the odd pixel after.
fn pad_centered(x: &[f32], h: usize, w: usize, d: usize) -> (usize, usize, Vec<f32>) {
    let (nh, nw) = (h.div_ceil(d) * d, w.div_ceil(d) * d);
    let (top, left) = ((nh - h) / 2, (nw - w) / 2);
    let mut out = vec![0f32; 3 * nh * nw];
    for c in 0..3 {
        for y in 0..h {
            let src = &x[(c * h + y) * w..][..w];
            out[(c * nh + y + top) * nw + left..][..w].copy_from_slice(src);
        }
    }
    (nh, nw, out)
}
