//! What the image processors share: reading `preprocessor_config.json`, transformers' torchvision-backend
//! centre crop, and its fused rescale + normalise, producing `pixel_values [N, 3, H, W]`.

use std::path::Path;

use serde_json::Value;

use super::resample::Filter;
use super::RgbImage;
use crate::error::{Error, Result};
use crate::fixtures::python_json;

/// A batch of preprocessed images: `data` is `[N, 3, H, W]` (`shape`).
#[derive(Clone, Debug)]
pub struct PixelValues {
    pub shape: [usize; 4],
    pub data: Vec<f32>,
}

impl PixelValues {
    /// Stacks per-image `[3, H, W]` tensors; they must agree in size (transformers' `return_tensors="pt"`).
    pub(crate) fn stack(images: Vec<(usize, usize, Vec<f32>)>, processor: &str) -> Result<PixelValues> {
        let Some(&(h, w, _)) = images.first() else {
            return Err(Error::usage(format!("{processor}: no images given")));
        };
        let mut data = Vec::with_capacity(images.len() * 3 * h * w);
        for (i, (ih, iw, d)) in images.iter().enumerate() {
            if (*ih, *iw) != (h, w) {
                return Err(Error::usage(format!(
                    "{processor}: image {i} comes out {iw}×{ih} but image 0 comes out {w}×{h}; a batch needs one size"
                )));
            }
            data.extend_from_slice(d);
        }
        Ok(PixelValues { shape: [images.len(), 3, h, w], data })
    }
}

/// `preprocessor_config.json` read as JSON, with errors naming the file and the key.
pub(crate) struct ConfigFile {
    pub file: String,
    pub v: Value,
}

impl ConfigFile {
    pub fn open(path: &Path) -> Result<ConfigFile> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| Error::Config { file: file.clone(), msg: format!("cannot read: {e}") })?;
        let v: Value = serde_json::from_str(&python_json(&text))
            .map_err(|e| Error::Config { file: file.clone(), msg: format!("invalid JSON: {e}") })?;
        if !v.is_object() {
            return Err(Error::Config { file, msg: "expected a JSON object".into() });
        }
        Ok(ConfigFile { file, v })
    }

    pub fn err(&self, msg: impl Into<String>) -> Error {
        Error::Config { file: self.file.clone(), msg: msg.into() }
    }

    fn get(&self, key: &str) -> Option<&Value> {
        self.v.get(key).filter(|v| !v.is_null())
    }

    pub fn required(&self, key: &str) -> Result<&Value> {
        self.get(key).ok_or_else(|| self.err(format!("missing key '{key}'")))
    }

    pub fn bool_or(&self, key: &str, default: bool) -> Result<bool> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v.as_bool().ok_or_else(|| self.err(format!("'{key}' must be true or false, got {v}"))),
        }
    }

    pub fn f64_or(&self, key: &str, default: f64) -> Result<f64> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v.as_f64().ok_or_else(|| self.err(format!("'{key}' must be a number, got {v}"))),
        }
    }

    pub fn usize_or(&self, key: &str, default: usize) -> Result<usize> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => self.as_usize(key, v),
        }
    }

    pub fn as_usize(&self, key: &str, v: &Value) -> Result<usize> {
        v.as_u64().filter(|&n| n > 0).map(|n| n as usize).ok_or_else(|| self.err(format!("'{key}' must be a positive integer, got {v}")))
    }

    /// `resample` (a PIL filter code), BICUBIC when absent.
    pub fn resample(&self) -> Result<Filter> {
        match self.get("resample") {
            None => Ok(Filter::Bicubic),
            Some(v) => {
                let code = v.as_i64().ok_or_else(|| self.err(format!("'resample' must be an integer, got {v}")))?;
                Filter::from_pil(code).map_err(|e| self.err(e.to_string()))
            }
        }
    }

    /// A list of 3 floats (`image_mean`, `image_std`); a single number applies to every channel.
    pub fn triple(&self, key: &str) -> Result<[f32; 3]> {
        let v = self.required(key)?;
        if let Some(x) = v.as_f64() {
            return Ok([x as f32; 3]);
        }
        let a = v.as_array().filter(|a| a.len() == 3).ok_or_else(|| self.err(format!("'{key}' must be 3 numbers, got {v}")))?;
        let mut out = [0f32; 3];
        for (o, x) in out.iter_mut().zip(a) {
            *o = x.as_f64().ok_or_else(|| self.err(format!("'{key}' must be 3 numbers, got {v}")))? as f32;
        }
        Ok(out)
    }

    /// A `{"height", "width"}` size (an integer means a square, as transformers' `get_size_dict` reads it).
    pub fn height_width(&self, key: &str) -> Result<(usize, usize)> {
        let v = self.required(key)?;
        if v.is_u64() {
            let n = self.as_usize(key, v)?;
            return Ok((n, n));
        }
        match (v.get("height"), v.get("width")) {
            (Some(h), Some(w)) => Ok((self.as_usize(&format!("{key}.height"), h)?, self.as_usize(&format!("{key}.width"), w)?)),
            _ => Err(self.err(format!("'{key}' must be an integer or {{\"height\", \"width\"}}, got {v}"))),
        }
    }
}

/// transformers' fused rescale + normalise (torchvision backend): with both on, mean and std are scaled by
/// `1 / rescale_factor` in float32 and `(x − mean′) / std′` is computed on the raw 0–255 values.
#[derive(Clone, Debug)]
pub struct RescaleNormalize {
    pub do_rescale: bool,
    pub rescale_factor: f64,
    pub do_normalize: bool,
    pub image_mean: [f32; 3],
    pub image_std: [f32; 3],
}

impl RescaleNormalize {
    pub(crate) fn from_config(c: &ConfigFile, default_mean: [f32; 3], default_std: [f32; 3]) -> Result<Self> {
        let do_normalize = c.bool_or("do_normalize", true)?;
        let (image_mean, image_std) = if do_normalize {
            (c.triple("image_mean")?, c.triple("image_std")?)
        } else {
            (default_mean, default_std)
        };
        Ok(RescaleNormalize {
            do_rescale: c.bool_or("do_rescale", true)?,
            rescale_factor: c.f64_or("rescale_factor", 1.0 / 255.0)?,
            do_normalize,
            image_mean,
            image_std,
        })
    }

    /// `[H, W, 3]` u8 → `[3, H, W]` f32.
    pub fn apply(&self, img: &RgbImage) -> Vec<f32> {
        let (mut mean, mut std) = (self.image_mean, self.image_std);
        let mut scale = 1.0f32;
        if self.do_normalize && self.do_rescale {
            let inv = (1.0 / self.rescale_factor) as f32;
            for c in 0..3 {
                mean[c] *= inv;
                std[c] *= inv;
            }
        } else if self.do_rescale {
            scale = self.rescale_factor as f32;
        }
        let n = img.width * img.height;
        let mut out = vec![0f32; 3 * n];
        for (i, px) in img.data.chunks_exact(3).enumerate() {
            for c in 0..3 {
                let x = px[c] as f32;
                out[c * n + i] = if self.do_normalize { (x - mean[c]) / std[c] } else { x * scale };
            }
        }
        out
    }
}

/// transformers' torchvision-backend `center_crop`: pads with zeros (split as `(d)/2` before, `(d+1)/2`
/// after) when the crop is larger, then crops at `int((h − ch) / 2)`, `int((w − cw) / 2)`.
pub fn center_crop(img: &RgbImage, crop_h: usize, crop_w: usize) -> RgbImage {
    let (pad_l, pad_t) = (crop_w.saturating_sub(img.width) / 2, crop_h.saturating_sub(img.height) / 2);
    let (pw, ph) = (img.width.max(crop_w), img.height.max(crop_h));
    let (top, left) = ((ph - crop_h) / 2, (pw - crop_w) / 2);
    let mut data = vec![0u8; crop_w * crop_h * 3];
    for y in 0..crop_h {
        for x in 0..crop_w {
            // Coordinates in the padded image, then in the source.
            let (py, px) = (y + top, x + left);
            if py < pad_t || px < pad_l || py - pad_t >= img.height || px - pad_l >= img.width {
                continue;
            }
            let s = ((py - pad_t) * img.width + (px - pad_l)) * 3;
            data[(y * crop_w + x) * 3..][..3].copy_from_slice(&img.data[s..s + 3]);
        }
    }
    RgbImage { width: crop_w, height: crop_h, data }
}
