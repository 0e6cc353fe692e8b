//! Image resizing that reproduces, bit for bit, the two 8-bit resamplers the reference pipelines use:
//!
//! - [`Backend::Pillow`]: Pillow's `Image.resize` (`libImaging/Resample.c`) on 8-bit images. Separable
//!   passes, horizontal first, each with its own coefficients: the filter is evaluated in f64 over a support
//!   widened by the scale when downsampling (antialiasing), normalised to sum 1, and turned into fixed-point
//!   integers with 22 fractional bits; each pass rounds (adds half, shifts) and clamps to u8.
//! - [`Backend::TorchU8`]: torch's native uint8 antialiased resize (`_upsample_bicubic2d_aa` /
//!   `_upsample_bilinear2d_aa` on a uint8 CPU tensor), which is what transformers 5.x image processors run:
//!   their default backend is torchvision, whose `resize` on a uint8 image with BICUBIC keeps uint8 and
//!   calls torch. torch derives from Pillow-SIMD: the same f64 coefficients, but stored as **int16** with a
//!   precision chosen per pass (the most fractional bits such that the largest coefficient still fits 15
//!   bits), so a few pixels differ by 1 from Pillow. The fixtures (`safety.pixel_values`,
//!   `depth.pixel_values`) match this backend exactly and Pillow's only to ±1 on some pixels.
//!
//! [`interpolate_bicubic`] is different: torch's float `F.interpolate(mode="bicubic", align_corners=False)`
//! without antialiasing (Keys cubic, a = −0.75, clamped borders), used on depth maps.

use crate::error::{Error, Result};

/// Pillow's resampling filters (the `resample` numbers of image-processor configs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Filter {
    /// `Image.BILINEAR` (2): triangle filter, support 1.
    Bilinear,
    /// `Image.BICUBIC` (3): Keys cubic with a = −0.5, support 2.
    Bicubic,
    /// `Image.LANCZOS` (1): windowed sinc, support 3.
    Lanczos,
}

impl Filter {
    /// The filter for a PIL resample code (`PILImageResampling`): 1 LANCZOS, 2 BILINEAR, 3 BICUBIC.
    pub fn from_pil(code: i64) -> Result<Filter> {
        match code {
            1 => Ok(Filter::Lanczos),
            2 => Ok(Filter::Bilinear),
            3 => Ok(Filter::Bicubic),
            0 => Err(Error::usage("resample = 0 (NEAREST) is not supported by wgsd (supported: 1 LANCZOS, 2 BILINEAR, 3 BICUBIC)")),
            4 => Err(Error::usage("resample = 4 (BOX) is not supported by wgsd (supported: 1 LANCZOS, 2 BILINEAR, 3 BICUBIC)")),
            5 => Err(Error::usage("resample = 5 (HAMMING) is not supported by wgsd (supported: 1 LANCZOS, 2 BILINEAR, 3 BICUBIC)")),
            c => Err(Error::usage(format!("resample = {c} is not a PIL resampling filter"))),
        }
    }

    fn support(self) -> f64 {
        match self {
            Filter::Bilinear => 1.0,
            Filter::Bicubic => 2.0,
            Filter::Lanczos => 3.0,
        }
    }

    /// Pillow's filter functions (`Resample.c`), evaluated in f64.
    fn pillow(self, x: f64) -> f64 {
        match self {
            Filter::Bilinear => {
                let x = x.abs();
                if x < 1.0 {
                    1.0 - x
                } else {
                    0.0
                }
            }
            Filter::Bicubic => {
                const A: f64 = -0.5;
                let x = x.abs();
                if x < 1.0 {
                    ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    (((x - 5.0) * x + 8.0) * x - 4.0) * A
                } else {
                    0.0
                }
            }
            Filter::Lanczos => {
                if (-3.0..3.0).contains(&x) {
                    sinc(x) * sinc(x / 3.0)
                } else {
                    0.0
                }
            }
        }
    }

    /// torch's antialias filters (`UpSampleKernel.cpp`, `HelperInterp*::aa_filter`): the same functions,
    /// the cubic written in another order (which can change the last bit of a coefficient).
    fn torch(self, x: f64) -> f64 {
        match self {
            Filter::Bicubic => {
                const A: f64 = -0.5;
                let x = x.abs();
                if x < 1.0 {
                    cubic1(x, A)
                } else if x < 2.0 {
                    cubic2(x, A)
                } else {
                    0.0
                }
            }
            other => other.pillow(x),
        }
    }
}

fn sinc(x: f64) -> f64 {
    if x == 0.0 {
        1.0
    } else {
        let x = x * std::f64::consts::PI;
        x.sin() / x
    }
}

/// Keys cubic convolution for |x| ≤ 1 and 1 < |x| < 2 (torch's `cubic_convolution1/2`).
fn cubic1<T: num::Float>(x: T, a: T) -> T {
    ((a + T::two()) * x - (a + T::three())) * x * x + T::one()
}
fn cubic2<T: num::Float>(x: T, a: T) -> T {
    ((a * x - T::five() * a) * x + T::eight() * a) * x - T::four() * a
}

/// Just enough of a float trait to write the cubic once for f32 (torch float) and f64 (coefficients).
mod num {
    use std::ops::{Add, Mul, Sub};
    pub trait Float: Copy + Add<Output = Self> + Sub<Output = Self> + Mul<Output = Self> {
        fn from_f64(v: f64) -> Self;
        fn one() -> Self {
            Self::from_f64(1.0)
        }
        fn two() -> Self {
            Self::from_f64(2.0)
        }
        fn three() -> Self {
            Self::from_f64(3.0)
        }
        fn four() -> Self {
            Self::from_f64(4.0)
        }
        fn five() -> Self {
            Self::from_f64(5.0)
        }
        fn eight() -> Self {
            Self::from_f64(8.0)
        }
    }
    impl Float for f32 {
        fn from_f64(v: f64) -> Self {
            v as f32
        }
    }
    impl Float for f64 {
        fn from_f64(v: f64) -> Self {
            v
        }
    }
}

/// Which 8-bit resampler to reproduce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// Pillow's `Image.resize` (22-bit fixed-point coefficients).
    Pillow,
    /// torch's uint8 antialiased resize, as transformers' torchvision image processors run it (int16
    /// coefficients with adaptive precision). BILINEAR and BICUBIC only: torch has no LANCZOS.
    TorchU8,
}

/// The fixed-point coefficients of one pass: for each output index, the first input index and the
/// integer weights; `precision` fractional bits.
struct Coeffs {
    bounds: Vec<(usize, usize)>,
    weights: Vec<Vec<i32>>,
    precision: u32,
}

/// Pillow's `precompute_coeffs` (and torch's `_compute_indices_min_size_weights_aa`, the same rule) followed by
/// the backend's conversion to integers.
fn coeffs(in_size: usize, out_size: usize, filter: Filter, backend: Backend) -> Coeffs {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filter.support() * filterscale;
    let ss = 1.0 / filterscale;
    let mut bounds = Vec::with_capacity(out_size);
    let mut float_w: Vec<Vec<f64>> = Vec::with_capacity(out_size);
    let mut wmax = 0.0f64;
    for i in 0..out_size {
        let center = (i as f64 + 0.5) * scale;
        // C's `(int)` truncates toward zero; center - support + 0.5 may be negative, then clamped to 0.
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
        let n = xmax.saturating_sub(xmin);
        let mut w: Vec<f64> = (0..n)
            .map(|j| {
                let x = (j as f64 + xmin as f64 - center + 0.5) * ss;
                match backend {
                    Backend::Pillow => filter.pillow(x),
                    Backend::TorchU8 => filter.torch(x),
                }
            })
            .collect();
        let total: f64 = w.iter().sum();
        if total != 0.0 {
            for v in &mut w {
                *v /= total;
                wmax = wmax.max(*v);
            }
        }
        bounds.push((xmin, n));
        float_w.push(w);
    }
    let precision = match backend {
        Backend::Pillow => 22,
        Backend::TorchU8 => {
            // The most fractional bits (below 22) such that the largest weight, doubled, still fits 15 bits.
            let mut p = 0u32;
            while p < 22 {
                let next = (0.5 + wmax * (1u64 << (p + 1)) as f64) as i64;
                if next >= 1 << 15 {
                    break;
                }
                p += 1;
            }
            p
        }
    };
    let unit = (1u64 << precision) as f64;
    let weights = float_w
        .into_iter()
        .map(|w| {
            w.into_iter()
                .map(|v| {
                    let v = v * unit;
                    // Round half away from zero, truncating like C's (int) cast.
                    if v < 0.0 {
                        (v - 0.5) as i32
                    } else {
                        (v + 0.5) as i32
                    }
                })
                .collect()
        })
        .collect();
    Coeffs { bounds, weights, precision }
}

/// `(acc + half) >> precision` clamped to u8: both Pillow's `clip8` and the SIMD shift-and-saturate.
fn to_u8(acc: i64, precision: u32) -> u8 {
    let v = if precision == 0 { acc } else { (acc + (1i64 << (precision - 1))) >> precision };
    v.clamp(0, 255) as u8
}

/// One pass along the rows (horizontal) or the columns (`vertical`) of an interleaved
/// `[h, w, channels]` u8 image.
fn pass(src: &[u8], w: usize, h: usize, c: usize, out_len: usize, vertical: bool, k: &Coeffs) -> Vec<u8> {
    let (ow, oh) = if vertical { (w, out_len) } else { (out_len, h) };
    let mut out = vec![0u8; ow * oh * c];
    for y in 0..oh {
        for x in 0..ow {
            let o = if vertical { y } else { x };
            let (start, n) = k.bounds[o];
            let wts = &k.weights[o];
            for ch in 0..c {
                let mut acc = 0i64;
                for (j, &wt) in wts.iter().enumerate().take(n) {
                    let (sx, sy) = if vertical { (x, start + j) } else { (start + j, y) };
                    acc += src[(sy * w + sx) * c + ch] as i64 * wt as i64;
                }
                out[(y * ow + x) * c + ch] = to_u8(acc, k.precision);
            }
        }
    }
    out
}

/// Resizes an interleaved 8-bit image `[height, width, channels]` (RGB, L, ...) of size `(width, height)` to
/// `(new_w, new_h)`, exactly
/// as the chosen backend does: horizontal pass first, each pass skipped when its size does not change.
pub fn resize_u8(
    src: &[u8],
    (width, height): (usize, usize),
    channels: usize,
    (new_w, new_h): (usize, usize),
    filter: Filter,
    backend: Backend,
) -> Result<Vec<u8>> {
    if src.len() != width * height * channels {
        return Err(Error::usage(format!(
            "resize: {} bytes given for a {width}×{height} image with {channels} channels",
            src.len()
        )));
    }
    if width == 0 || height == 0 || new_w == 0 || new_h == 0 || channels == 0 {
        return Err(Error::usage(format!("resize: cannot resize {width}×{height}×{channels} to {new_w}×{new_h}")));
    }
    if backend == Backend::TorchU8 && filter == Filter::Lanczos {
        return Err(Error::usage(
            "resize: the torch uint8 backend has no LANCZOS filter (transformers falls back to BICUBIC or PIL)",
        ));
    }
    let mut img = src.to_vec();
    let mut w = width;
    if new_w != width {
        let k = coeffs(width, new_w, filter, backend);
        img = pass(&img, w, height, channels, new_w, false, &k);
        w = new_w;
    }
    if new_h != height {
        let k = coeffs(height, new_h, filter, backend);
        img = pass(&img, w, height, channels, new_h, true, &k);
    }
    Ok(img)
}

/// torch's `F.interpolate(x, size=(out_h, out_w), mode="bicubic", align_corners=False)` (no antialias) for
/// one f32 map `[h, w]` → `[out_h, out_w]`: Keys cubic with a = −0.75, source coordinate
/// `(i + 0.5)·in/out − 0.5`, border pixels repeated. Computed in f32 in torch's order (weights per axis,
/// then for each of the 4 source rows the 4-tap row sum, accumulated over rows).
pub fn interpolate_bicubic(src: &[f32], h: usize, w: usize, out_h: usize, out_w: usize) -> Result<Vec<f32>> {
    if src.len() != h * w || h == 0 || w == 0 || out_h == 0 || out_w == 0 {
        return Err(Error::usage(format!(
            "interpolate_bicubic: {} values for a {h}×{w} map, output {out_h}×{out_w}",
            src.len()
        )));
    }
    let ys = cubic_taps(h, out_h);
    let xs = cubic_taps(w, out_w);
    let mut out = Vec::with_capacity(out_h * out_w);
    for (yi, yw) in &ys {
        for (xi, xw) in &xs {
            let row = |r: usize| {
                let base = &src[yi[r] * w..][..w];
                let mut t = base[xi[0]] * xw[0];
                for k in 1..4 {
                    t += base[xi[k]] * xw[k];
                }
                t
            };
            let mut acc = row(0) * yw[0];
            for (r, &wy) in yw.iter().enumerate().skip(1) {
                acc += row(r) * wy;
            }
            out.push(acc);
        }
    }
    Ok(out)
}

/// For each output index of one axis: the 4 clamped source indices and their cubic weights (f32, as torch's
/// `HelperInterpCubic::compute_indices_weights` for float tensors).
fn cubic_taps(in_size: usize, out_size: usize) -> Vec<([usize; 4], [f32; 4])> {
    let scale = in_size as f32 / out_size as f32;
    (0..out_size)
        .map(|i| {
            let real = scale * (i as f32 + 0.5) - 0.5;
            let idx = (real.floor() as i64).min(in_size as i64 - 1);
            let t = (real - idx as f32).clamp(0.0, 1.0);
            const A: f32 = -0.75;
            let x2 = 1.0 - t;
            let w = [cubic2(t + 1.0, A), cubic1(t, A), cubic1(x2, A), cubic2(x2 + 1.0, A)];
            let clamp = |v: i64| v.clamp(0, in_size as i64 - 1) as usize;
            ([clamp(idx - 1), clamp(idx), clamp(idx + 1), clamp(idx + 2)], w)
        })
        .collect()
}
