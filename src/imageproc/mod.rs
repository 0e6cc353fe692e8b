//! Host-side image preprocessing that reproduces the reference pipelines' image processors: 8-bit
//! resizing ([`resample`]), transformers' `CLIPImageProcessor` ([`clip_processor`], the safety checker's
//! feature extractor) and `DPTImageProcessor` ([`dpt_processor`], the depth estimator's).
//!
//! Images are [`RgbImage`]: 8-bit RGB, row-major, interleaved — what diffusers hands its processors (its
//! pipeline output rounded to uint8 by `(x * 255).round()`, or a file opened with PIL and `convert("RGB")`).

pub mod clip_processor;
pub mod dpt_processor;
pub mod processor;
pub mod resample;

use std::path::Path;

use crate::error::{Error, Result};
pub use processor::PixelValues;
pub use resample::{interpolate_bicubic, resize_u8, Backend, Filter};

/// An 8-bit RGB image, `data` = `[height, width, 3]` row-major.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RgbImage {
    pub width: usize,
    pub height: usize,
    pub data: Vec<u8>,
}

impl RgbImage {
    /// An image from its `width · height · 3` bytes.
    pub fn new(width: usize, height: usize, data: Vec<u8>) -> Result<RgbImage> {
        if data.len() != width * height * 3 || width == 0 || height == 0 {
            return Err(Error::usage(format!(
                "an RGB image of {width}×{height} needs {} bytes, got {}",
                width * height * 3,
                data.len()
            )));
        }
        Ok(RgbImage { width, height, data })
    }

    /// A pipeline image `[height, width, 3]` of floats in [0, 1] as diffusers' `numpy_to_pil` makes it:
    /// `(x * 255).round()` to uint8 (NumPy rounds half to even; values are clamped to [0, 255] first, as
    /// the pipeline output already is).
    pub fn from_unit_floats(width: usize, height: usize, data: &[f32]) -> Result<RgbImage> {
        if data.len() != width * height * 3 {
            return Err(Error::usage(format!(
                "a float RGB image of {width}×{height} needs {} values, got {}",
                width * height * 3,
                data.len()
            )));
        }
        let bytes = data.iter().map(|&v| (v * 255.0).round_ties_even().clamp(0.0, 255.0) as u8).collect();
        RgbImage::new(width, height, bytes)
    }

    /// Opens a PNG or JPEG file and converts it to RGB like PIL's `Image.open(path).convert("RGB")` (what
    /// diffusers' `load_image` does): grayscale is replicated, alpha is dropped, 16-bit samples keep their
    /// high byte (PIL's 16-bit RGB reading).
    pub fn open(path: &Path) -> Result<RgbImage> {
        let img = decode(path)?;
        Ok(img.to_rgb(false))
    }

    /// [`RgbImage::open`] after turning the image upright by its EXIF orientation, like PIL's
    /// `ImageOps.exif_transpose` (what diffusers' training scripts do before `convert("RGB")`): phone photos
    /// are stored sideways with an orientation tag. An unreadable EXIF block counts as no orientation.
    pub fn open_upright(path: &Path) -> Result<RgbImage> {
        let err = |msg: String| Error::Input { file: path.display().to_string(), msg };
        if !path.exists() {
            return Err(err("no such file".into()));
        }
        let mut reader = image::ImageReader::open(path).map_err(|e| err(format!("cannot open image: {e}")))?;
        reader.limits(decode_limits());
        let reader = reader.with_guessed_format().map_err(|e| err(format!("cannot read image: {e}")))?;
        if reader.format().is_none() {
            return Err(err("not a PNG, JPEG or WebP image".into()));
        }
        use image::ImageDecoder;
        let mut decoder = reader.into_decoder().map_err(|e| err(format!("cannot decode image: {e}")))?;
        let orientation = decoder.orientation().unwrap_or(image::metadata::Orientation::NoTransforms);
        let mut img = image::DynamicImage::from_decoder(decoder).map_err(|e| err(format!("cannot decode image: {e}")))?;
        img.apply_orientation(orientation);
        Ok(Decoded::from_dynamic(img).to_rgb(false))
    }

    /// Opens a file and converts it to RGB like transformers' `convert_to_rgb` (image processors with
    /// `do_convert_rgb`): images with alpha are composited onto white with PIL's `alpha_composite`
    /// arithmetic; others as [`RgbImage::open`].
    pub fn open_over_white(path: &Path) -> Result<RgbImage> {
        let img = decode(path)?;
        Ok(img.to_rgb(true))
    }

    /// Resizes to `new_w × new_h` with the chosen filter and 8-bit backend (see [`resample`]).
    pub fn resize(&self, new_w: usize, new_h: usize, filter: Filter, backend: Backend) -> Result<RgbImage> {
        let data = resize_u8(&self.data, (self.width, self.height), 3, (new_w, new_h), filter, backend)?;
        RgbImage::new(new_w, new_h, data)
    }
}

/// A decoded 8-bit image with 1 (L), 2 (LA), 3 (RGB) or 4 (RGBA) channels.
pub struct Decoded {
    pub width: usize,
    pub height: usize,
    pub channels: usize,
    pub data: Vec<u8>,
}

/// Opens a PNG, JPEG or WebP file at its full bit depth; errors name the file.
pub fn open_dynamic(path: &Path) -> Result<image::DynamicImage> {
    let err = |msg: String| Error::Input { file: path.display().to_string(), msg };
    if !path.exists() {
        return Err(err("no such file".into()));
    }
    let mut reader = image::ImageReader::open(path).map_err(|e| err(format!("cannot open image: {e}")))?;
    reader.limits(decode_limits());
    let reader = reader.with_guessed_format().map_err(|e| err(format!("cannot read image: {e}")))?;
    if reader.format().is_none() {
        return Err(err("not a PNG, JPEG or WebP image".into()));
    }
    reader.decode().map_err(|e| err(format!("cannot decode image: {e}")))
}

/// What a decoder may allocate: a small file claiming 100 000 × 100 000 pixels (a decompression bomb) is
/// refused before any memory is taken. 16384² RGBA is 1 GiB.
pub fn decode_limits() -> image::Limits {
    let mut l = image::Limits::default();
    l.max_image_width = Some(16384);
    l.max_image_height = Some(16384);
    l.max_alloc = Some(1 << 30);
    l
}

/// [`decode`] on bytes in memory; `label` names them in errors.
pub fn decode_bytes(label: &str, bytes: &[u8]) -> Result<Decoded> {
    let err = |msg: String| Error::Input { file: label.to_string(), msg };
    let mut reader = image::ImageReader::new(std::io::Cursor::new(bytes));
    reader.limits(decode_limits());
    let reader = reader.with_guessed_format().map_err(|e| err(format!("cannot read image: {e}")))?;
    if reader.format().is_none() {
        return Err(err("not a PNG, JPEG or WebP image".into()));
    }
    Ok(Decoded::from_dynamic(reader.decode().map_err(|e| err(format!("cannot decode image: {e}")))?))
}

/// Decodes a PNG, JPEG or WebP file to 8 bits per sample; errors name the file.
pub fn decode(path: &Path) -> Result<Decoded> {
    Ok(Decoded::from_dynamic(open_dynamic(path)?))
}

impl Decoded {
    /// 8 bits per sample from any decoded image (16-bit samples keep their high byte, as PIL reads them).
    pub fn from_dynamic(img: image::DynamicImage) -> Decoded {
        let (width, height) = (img.width() as usize, img.height() as usize);
        use image::DynamicImage as D;
        let high = |v: &[u16]| v.iter().map(|&x| (x >> 8) as u8).collect::<Vec<u8>>();
        let (channels, data) = match img {
            D::ImageLuma8(b) => (1, b.into_raw()),
            D::ImageLumaA8(b) => (2, b.into_raw()),
            D::ImageRgb8(b) => (3, b.into_raw()),
            D::ImageRgba8(b) => (4, b.into_raw()),
            D::ImageLuma16(b) => (1, high(b.as_raw())),
            D::ImageLumaA16(b) => (2, high(b.as_raw())),
            D::ImageRgb16(b) => (3, high(b.as_raw())),
            D::ImageRgba16(b) => (4, high(b.as_raw())),
            other => {
                let has_alpha = other.color().has_alpha();
                if has_alpha {
                    (4, other.to_rgba8().into_raw())
                } else {
                    (3, other.to_rgb8().into_raw())
                }
            }
        };
        Decoded { width, height, channels, data }
    }

    /// RGB, alpha dropped (`over_white = false`, PIL `convert("RGB")`) or composited onto opaque white
    /// (`over_white = true`, PIL `alpha_composite` onto a white RGBA background).
    pub fn to_rgb(&self, over_white: bool) -> RgbImage {
        let n = self.width * self.height;
        let mut out = Vec::with_capacity(n * 3);
        for px in self.data.chunks_exact(self.channels) {
            let (rgb, a) = match self.channels {
                1 => ([px[0]; 3], 255),
                2 => ([px[0]; 3], px[1]),
                3 => ([px[0], px[1], px[2]], 255),
                _ => ([px[0], px[1], px[2]], px[3]),
            };
            if over_white && a != 255 {
                out.extend(rgb.iter().map(|&c| composite_over_white(c, a)));
            } else {
                out.extend_from_slice(&rgb);
            }
        }
        RgbImage { width: self.width, height: self.height, data: out }
    }
}

/// One channel of PIL's `alpha_composite(white, src)` (`AlphaComposite.c`, 7 extra bits of precision,
/// divisions by 255 by shifts): with an opaque destination the output alpha is 255.
fn composite_over_white(c: u8, a: u8) -> u8 {
    const PRECISION_BITS: u32 = 7;
    if a == 0 {
        return 255;
    }
    let (c, a) = (c as u32, a as u32);
    let blend = 255 * (255 - a);
    let outa255 = a * 255 + blend;
    let coef1 = a * 255 * 255 * (1 << PRECISION_BITS) / outa255;
    let coef2 = 255 * (1 << PRECISION_BITS) - coef1;
    let tmp = c * coef1 + 255 * coef2 + (0x80 << PRECISION_BITS);
    let div255 = ((tmp >> 8) + tmp) >> 8;
    (div255 >> PRECISION_BITS) as u8
}
