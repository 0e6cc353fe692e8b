//! The pictures a user conditions a run on — the init image, the inpainting mask, a depth map — read from
//! files and turned into the tensors diffusers' `VaeImageProcessor` makes of them.
//!
//! Conversions follow Pillow, which is what diffusers users feed: a grayscale or RGBA image becomes RGB like
//! `convert("RGB")` (gray replicated, alpha dropped), a colour mask becomes gray like `convert("L")`.

use std::path::Path;

use crate::error::{Error, Result};
use crate::imageproc::{Backend, Filter, RgbImage};

/// An image as the VAE takes it: `[3, H, W]` in [-1, 1] (`x / 255 · 2 − 1`), with the 8-bit original
/// (what the depth estimator's feature extractor reads).
#[derive(Clone, Debug)]
pub struct InitImage {
    pub width: usize,
    pub height: usize,
    pub chw: Vec<f32>,
    pub rgb: RgbImage,
}

/// An inpainting mask at image resolution, binarised like diffusers (`v / 255 < 0.5` → 0, else 1):
/// 1 marks the pixels to repaint, 0 the ones to keep.
#[derive(Clone, Debug)]
pub struct Mask {
    pub width: usize,
    pub height: usize,
    pub data: Vec<f32>,
}

/// A depth map `[H, W]` in any units: the pipeline resamples it to the latent grid and rescales it to
/// [-1, 1] by its own minimum and maximum. Larger = nearer, as the DPT estimator predicts.
#[derive(Clone, Debug)]
pub struct DepthMap {
    pub width: usize,
    pub height: usize,
    pub data: Vec<f32>,
}

fn input_error(path: &Path, msg: impl Into<String>) -> Error {
    Error::Input { file: path.display().to_string(), msg: msg.into() }
}

/// Pillow's `convert("L")`: `(19595 R + 38470 G + 7471 B + 2¹⁵) >> 16`, exact for gray input.
pub fn rgb_to_luma(img: &RgbImage) -> Vec<u8> {
    img.data
        .chunks_exact(3)
        .map(|p| ((19595 * p[0] as u32 + 38470 * p[1] as u32 + 7471 * p[2] as u32 + 0x8000) >> 16) as u8)
        .collect()
}

impl InitImage {
    pub fn from_rgb8(img: &RgbImage) -> Self {
        let (w, h) = (img.width, img.height);
        let mut chw = vec![0f32; 3 * w * h];
        for (i, p) in img.data.chunks_exact(3).enumerate() {
            for c in 0..3 {
                // The same float32 operations as `np.array(img) / 255.0` then `2 * x - 1`.
                chw[c * w * h + i] = 2.0 * (p[c] as f32 / 255.0) - 1.0;
            }
        }
        InitImage { width: w, height: h, chw, rgb: img.clone() }
    }

    /// The image with the mask's repaint region set to 0 (mid-gray): diffusers' `image * (mask < 0.5)`.
    pub fn masked(&self, mask: &Mask) -> InitImage {
        let hw = self.width * self.height;
        let chw = self.chw.iter().enumerate().map(|(i, &v)| if mask.data[i % hw] < 0.5 { v } else { 0.0 }).collect();
        InitImage { width: self.width, height: self.height, chw, rgb: self.rgb.clone() }
    }
}

impl Mask {
    pub fn from_rgb8(img: &RgbImage) -> Self {
        let data = rgb_to_luma(img).into_iter().map(|v| if (v as f32 / 255.0) < 0.5 { 0.0 } else { 1.0 }).collect();
        Mask { width: img.width, height: img.height, data }
    }

    /// Fraction of pixels to repaint.
    pub fn coverage(&self) -> f64 {
        self.data.iter().map(|&v| v as f64).sum::<f64>() / self.data.len().max(1) as f64
    }

    /// Nearest-neighbour downsampling to the latent grid (`F.interpolate(mask, size=(h, w))`): `[h, w]`.
    pub fn to_latent_grid(&self, h: usize, w: usize) -> Vec<f32> {
        let (sy, sx) = (self.height as f32 / h as f32, self.width as f32 / w as f32);
        let mut out = Vec::with_capacity(h * w);
        for y in 0..h {
            let iy = ((y as f32 * sy).floor() as usize).min(self.height - 1);
            for x in 0..w {
                let ix = ((x as f32 * sx).floor() as usize).min(self.width - 1);
                out.push(self.data[iy * self.width + ix]);
            }
        }
        out
    }
}

impl DepthMap {
    /// Reads a grayscale (8- or 16-bit, full precision) or colour image as depth, in its luminance.
    pub fn load(path: &Path) -> Result<Self> {
        let img = crate::imageproc::open_dynamic(path)?;
        let (w, h) = (img.width() as usize, img.height() as usize);
        let data = img.to_luma32f().into_raw();
        Ok(DepthMap { width: w, height: h, data })
    }
}

/// Checks that the mask covers the image pixel for pixel and paints something.
pub fn check_mask(image: &InitImage, mask: &Mask, mask_file: &str) -> Result<()> {
    if (mask.width, mask.height) != (image.width, image.height) {
        return Err(Error::Input {
            file: mask_file.into(),
            msg: format!(
                "the mask is {}x{} but the image is {}x{}: they must be the same size",
                mask.width, mask.height, image.width, image.height
            ),
        });
    }
    if mask.coverage() == 0.0 {
        return Err(Error::Input {
            file: mask_file.into(),
            msg: "the mask is all black: nothing to repaint (white marks the pixels to repaint, black the ones to keep)".into(),
        });
    }
    Ok(())
}

/// Checks that a depth map has the image's aspect ratio (any resolution: it is resampled to the latent grid).
pub fn check_depth(image: &InitImage, depth: &DepthMap, depth_file: &str) -> Result<()> {
    if depth.width == 0 || depth.height == 0 || depth.width * image.height != depth.height * image.width {
        return Err(Error::Input {
            file: depth_file.into(),
            msg: format!(
                "the depth map is {}x{} but the image is {}x{}: it must have the image's size (or at least its aspect ratio)",
                depth.width, depth.height, image.width, image.height
            ),
        });
    }
    if depth.data.iter().any(|v| !v.is_finite()) {
        return Err(Error::Input { file: depth_file.into(), msg: "the depth map holds non-finite values".into() });
    }
    Ok(())
}

/// Resizes like diffusers' `VaeImageProcessor` (Pillow's Lanczos) when the size differs; no-op otherwise.
pub fn resize_like_diffusers(img: &RgbImage, width: usize, height: usize) -> Result<RgbImage> {
    if (img.width, img.height) == (width, height) {
        return Ok(img.clone());
    }
    img.resize(width, height, Filter::Lanczos, Backend::Pillow)
}

/// The output size diffusers picks for an init image: the requested size, else the image's rounded down
/// to multiples of 8.
pub fn output_size(img: &RgbImage, width: Option<usize>, height: Option<usize>, file: &Path) -> Result<(usize, usize)> {
    let (w, h) = (width.unwrap_or(img.width / 8 * 8), height.unwrap_or(img.height / 8 * 8));
    if w == 0 || h == 0 {
        return Err(input_error(file, format!("the image is {}x{}: too small (at least 8x8)", img.width, img.height)));
    }
    Ok((w, h))
}

/// Reads the init image, resized to `width × height` when given or to multiples of 8.
pub fn read_init_image(path: &Path, width: Option<usize>, height: Option<usize>) -> Result<InitImage> {
    fit_init_image(&RgbImage::open(path)?, path, width, height)
}

/// An opened init image at its output size (see [`read_init_image`]); `path` names it in messages.
pub fn fit_init_image(img: &RgbImage, path: &Path, width: Option<usize>, height: Option<usize>) -> Result<InitImage> {
    let (w, h) = output_size(img, width, height, path)?;
    if (w, h) != (img.width, img.height) {
        eprintln!("note: {} is {}x{}; resized to {w}x{h} (Lanczos, as diffusers does)", path.display(), img.width, img.height);
    }
    Ok(InitImage::from_rgb8(&resize_like_diffusers(img, w, h)?))
}

/// Reads a mask for `image`: a file of the image's original aspect ratio is resized to the image's size
/// (Lanczos, then binarised, as diffusers' mask processor does); another aspect ratio is refused.
pub fn read_mask(path: &Path, image: &InitImage, original: (usize, usize)) -> Result<Mask> {
    fit_mask(&RgbImage::open(path)?, path, image, original)
}

/// An opened mask for `image` (see [`read_mask`]); `path` names it in messages.
pub fn fit_mask(img: &RgbImage, path: &Path, image: &InitImage, original: (usize, usize)) -> Result<Mask> {
    if img.width * original.1 != img.height * original.0 {
        return Err(input_error(
            path,
            format!(
                "the mask is {}x{} but the image is {}x{}: they must have the same size (or aspect ratio)",
                img.width, img.height, original.0, original.1
            ),
        ));
    }
    let mask = Mask::from_rgb8(&resize_like_diffusers(img, image.width, image.height)?);
    check_mask(image, &mask, &path.display().to_string())?;
    Ok(mask)
}
