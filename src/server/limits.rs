//! The server's limits on what one request may ask for, so a client cannot make it allocate without
//! bound or hold the GPU for hours. Each refusal names the field, the value and the limit.

use super::error::{ApiError, ApiResult};

#[derive(Clone, Debug)]
pub struct Limits {
    /// Largest request body (base64 images make A1111 requests large).
    pub max_body_bytes: usize,
    /// Largest width × height of an output image.
    pub max_pixels: usize,
    /// Largest width or height of an input image (checked before decoding it).
    pub max_input_side: u32,
    pub max_steps: usize,
    /// Largest `batch_size` (images in one UNet batch: memory).
    pub max_batch: usize,
    /// Largest `batch_size × n_iter` (images in one request: time).
    pub max_images: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_body_bytes: 64 << 20, max_pixels: 2048 * 2048, max_input_side: 8192, max_steps: 150, max_batch: 8, max_images: 32 }
    }
}

/// An integer field in `min..=max`.
pub fn in_range(field: &str, v: i64, min: i64, max: i64) -> ApiResult<usize> {
    if v < min || v > max {
        return Err(ApiError::bad_request(format!("{field}: {v} is out of range ({min}..={max})")));
    }
    Ok(v as usize)
}

impl Limits {
    /// The output size: positive multiples of 8 (the VAE's factor) whose product is within the limit.
    pub fn size(&self, width: i64, height: i64) -> ApiResult<(usize, usize)> {
        let side = |field: &str, v: i64| -> ApiResult<usize> {
            let v = in_range(field, v, 8, 65536)?;
            if v % 8 != 0 {
                return Err(ApiError::bad_request(format!("{field}: {v} is not a multiple of 8 (try {})", v / 8 * 8)));
            }
            Ok(v)
        };
        let (w, h) = (side("width", width)?, side("height", height)?);
        if w * h > self.max_pixels {
            return Err(ApiError::bad_request(format!(
                "width × height: {w}x{h} = {} pixels is over this server's limit of {} (--max-pixels)",
                w * h,
                self.max_pixels
            )));
        }
        Ok((w, h))
    }

    pub fn steps(&self, steps: i64) -> ApiResult<usize> {
        in_range("steps", steps, 1, self.max_steps as i64)
    }

    /// `batch_size` and `n_iter`, each within its limit and their product within `max_images`.
    pub fn batch(&self, batch_size: i64, n_iter: i64) -> ApiResult<(usize, usize)> {
        let b = in_range("batch_size", batch_size, 1, self.max_batch as i64)?;
        let n = in_range("n_iter", n_iter, 1, self.max_images as i64)?;
        if b * n > self.max_images {
            return Err(ApiError::bad_request(format!(
                "batch_size × n_iter: {b} × {n} = {} images is over this server's limit of {} per request (--max-images)",
                b * n,
                self.max_images
            )));
        }
        Ok((b, n))
    }
}
