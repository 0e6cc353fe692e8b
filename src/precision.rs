//! Numeric precision of the networks on the GPU: what the user asks for (`--precision auto|f32|f16`), what
//! the adapter allows, and the one narrowing of f32 weights to half precision.
//!
//! In `F16` the matrix weights of Linear and Conv2d layers (nearly all parameters) are stored as IEEE
//! half floats, two per 32-bit word, and widened to f32 inside the kernels, which accumulate in f32;
//! biases, norm scales, embeddings and every activation stay f32. `F32` is wgsd's original path, bit for
//! bit, except that a VAE keeps the weights of an fp16 file in f16 (exactly the file's values: the same
//! decode from half the memory; `Loader::keeping_stored_f16`).

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};
use crate::gpu::Capabilities;
use crate::tensor::DType;

/// The precision a model is loaded in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Precision {
    #[default]
    F32,
    /// Half-precision weight storage, f32 arithmetic.
    F16,
}

impl Precision {
    /// How Linear and Conv2d weights are stored.
    pub fn weight_dtype(self) -> DType {
        match self {
            Precision::F32 => DType::F32,
            Precision::F16 => DType::F16,
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Precision::F32 => "f32",
            Precision::F16 => "f16",
        })
    }
}

/// What the user asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrecisionChoice {
    /// f16 where the adapter has `SHADER_F16`, else f32.
    Auto,
    F32,
    F16,
}

impl FromStr for PrecisionChoice {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(PrecisionChoice::Auto),
            "f32" | "fp32" | "float32" => Ok(PrecisionChoice::F32),
            "f16" | "fp16" | "float16" | "half" => Ok(PrecisionChoice::F16),
            other => Err(format!("unknown precision '{other}': expected auto, f32 or f16")),
        }
    }
}

impl fmt::Display for PrecisionChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PrecisionChoice::Auto => "auto",
            PrecisionChoice::F32 => "f32",
            PrecisionChoice::F16 => "f16",
        })
    }
}

impl PrecisionChoice {
    /// The precision an adapter with `caps` gets, and a note to print when it is not what was asked.
    ///
    /// f16 needs `SHADER_F16`. The packed weights alone would not (they are widened with WGSL's core
    /// `unpack2x16float`), but f16 arithmetic and activations will, and one rule for both keeps a model's
    /// numbers the same whichever part of the f16 path an adapter runs.
    pub fn resolve(self, caps: &Capabilities, adapter: &str) -> (Precision, Option<String>) {
        match self {
            PrecisionChoice::F32 => (Precision::F32, None),
            PrecisionChoice::Auto | PrecisionChoice::F16 if caps.shader_f16 => (Precision::F16, None),
            PrecisionChoice::Auto | PrecisionChoice::F16 => (
                Precision::F32,
                Some(format!("note: {adapter} has no SHADER_F16 feature: running in f32 (precision {self} asked)")),
            ),
        }
    }
}

/// The largest finite half-precision value.
pub const F16_MAX: f32 = 65504.0;

/// `data` rounded to IEEE half precision (round to nearest even), as little-endian bytes. A finite value
/// beyond the f16 range is an error naming tensor `name` and the value: it would become infinity and
/// poison every output it touches. (Infinities and NaN already in the data are kept: the run's own
/// non-finite checks name them.)
pub fn narrow_f16(name: &str, data: &[f32]) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(data.len() * 2);
    for (i, &v) in data.iter().enumerate() {
        let h = half::f16::from_f32(v);
        if h.is_infinite() && v.is_finite() {
            return Err(Error::usage(format!(
                "weight '{name}' cannot be stored in f16: element {i} is {v:e}, beyond the f16 range (±{F16_MAX}); \
                 run with --precision f32"
            )));
        }
        out.extend_from_slice(&h.to_le_bytes());
    }
    Ok(out)
}

/// f32 values after a round trip through f16 (what a kernel reading f16 weights sees).
pub fn round_f16(data: &[f32]) -> Vec<f32> {
    data.iter().map(|&v| half::f16::from_f32(v).to_f32()).collect()
}
