//! A1111's request bodies as serde types, and reading JSON with errors that name the field.
//!
//! Every field is optional (A1111's defaults apply) and unknown fields are ignored: clients send many
//! (hires fix, scripts, extensions) that do not change what wgsd computes when left at their defaults.
//! Integers also arrive as `20.0` from some clients, so integer fields take integral floats too.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

use super::error::{ApiError, ApiResult};

/// The body of `txt2img` and `img2img` (img2img adds `init_images`, `mask` and its options).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct GenerationRequest {
    pub prompt: Option<String>,
    pub negative_prompt: Option<String>,
    #[serde(deserialize_with = "opt_int")]
    pub seed: Option<i64>,
    pub subseed_strength: Option<f64>,
    pub sampler_name: Option<String>,
    /// A1111's older name for `sampler_name`.
    pub sampler_index: Option<String>,
    pub scheduler: Option<String>,
    #[serde(deserialize_with = "opt_int")]
    pub batch_size: Option<i64>,
    #[serde(deserialize_with = "opt_int")]
    pub n_iter: Option<i64>,
    #[serde(deserialize_with = "opt_int")]
    pub steps: Option<i64>,
    pub cfg_scale: Option<f64>,
    #[serde(deserialize_with = "opt_int")]
    pub width: Option<i64>,
    #[serde(deserialize_with = "opt_int")]
    pub height: Option<i64>,
    pub restore_faces: Option<bool>,
    pub tiling: Option<bool>,
    pub enable_hr: Option<bool>,
    pub denoising_strength: Option<f64>,
    pub override_settings: Option<Map<String, Value>>,
    pub override_settings_restore_afterwards: Option<bool>,
    pub script_name: Option<String>,
    pub send_images: Option<bool>,
    // img2img only.
    pub init_images: Option<Vec<String>>,
    pub mask: Option<String>,
    #[serde(deserialize_with = "opt_int")]
    pub resize_mode: Option<i64>,
    #[serde(deserialize_with = "opt_int")]
    pub inpainting_mask_invert: Option<i64>,
    pub include_init_images: Option<bool>,
}

/// `png-info`'s body.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct PngInfoRequest {
    pub image: Option<String>,
}

/// An integer, or a float with no fractional part (`512.0`), or null.
fn opt_int<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    use serde::de::Error;
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => {
            if let Some(i) = n.as_i64() {
                Ok(Some(i))
            } else if let Some(f) = n.as_f64().filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15) {
                Ok(Some(f as i64))
            } else {
                Err(D::Error::custom(format!("expected an integer, got {n}")))
            }
        }
        Some(other) => Err(D::Error::custom(format!("expected an integer, got {other}"))),
    }
}

/// The body as a JSON object: malformed JSON or another JSON type is 400, naming the line and column.
pub fn json_object(body: &[u8]) -> ApiResult<Map<String, Value>> {
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(ApiError::bad_request("the request body is empty; send a JSON object"));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(other) => Err(ApiError::bad_request(format!("the request body must be a JSON object, not {}", json_type(&other)))),
        Err(e) => Err(ApiError::bad_request(format!("malformed JSON: {e}"))),
    }
}

/// A typed request from a JSON object: a field of the wrong type is 422 naming the field (A1111 answers
/// validation errors with 422 too).
pub fn typed<T: DeserializeOwned>(obj: &Map<String, Value>) -> ApiResult<T> {
    serde_path_to_error::deserialize(Value::Object(obj.clone())).map_err(|e| {
        let path = e.path().to_string();
        ApiError::new(axum::http::StatusCode::UNPROCESSABLE_ENTITY, format!("{path}: {}", e.into_inner()))
    })
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
