//! `DPTConfig` with its `BitConfig` backbone (transformers names), for DPT-hybrid depth estimators such as
//! Intel/dpt-hybrid-midas (the `depth_estimator/` of stable-diffusion-2-depth). Every value wgsd does not
//! implement is an error naming the field and the value.

use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::fixtures::python_json;
use crate::kernels::unary::Activation;

/// An int or a `[height, width]` pair (`image_size`, `patch_size`).
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum Size2 {
    One(usize),
    Two([usize; 2]),
}

impl Size2 {
    pub fn hw(&self) -> [usize; 2] {
        match self {
            Size2::One(v) => [*v, *v],
            Size2::Two(v) => *v,
        }
    }
}

/// `BitConfig` (the ViT-hybrid backbone).
#[derive(Clone, Debug, Deserialize)]
pub struct BitConfig {
    #[serde(default = "three")]
    pub num_channels: usize,
    #[serde(default = "d64")]
    pub embedding_size: usize,
    pub hidden_sizes: Vec<usize>,
    pub depths: Vec<usize>,
    #[serde(default = "bottleneck")]
    pub layer_type: String,
    #[serde(default = "relu")]
    pub hidden_act: String,
    #[serde(default)]
    pub global_padding: Option<String>,
    #[serde(default = "d32")]
    pub num_groups: usize,
    #[serde(default)]
    pub embedding_dynamic_padding: bool,
    #[serde(default = "d32")]
    pub output_stride: usize,
    #[serde(default = "one")]
    pub width_factor: usize,
    #[serde(default)]
    pub out_features: Option<Vec<String>>,
    #[serde(default)]
    pub out_indices: Option<Vec<i64>>,
}

fn three() -> usize {
    3
}
fn d64() -> usize {
    64
}
fn d32() -> usize {
    32
}
fn one() -> usize {
    1
}
fn bottleneck() -> String {
    "bottleneck".into()
}
fn relu() -> String {
    "relu".into()
}
fn gelu() -> String {
    "gelu".into()
}
fn project() -> String {
    "project".into()
}
fn eps12() -> f64 {
    1e-12
}
fn minus_one() -> i64 {
    -1
}
fn d256() -> usize {
    256
}

impl BitConfig {
    /// `stem`, `stage1`, ... as transformers names the backbone's outputs.
    pub fn stage_names(&self) -> Vec<String> {
        std::iter::once("stem".to_string()).chain((1..=self.depths.len()).map(|i| format!("stage{i}"))).collect()
    }

    /// Indices into [`stage_names`](Self::stage_names) of the feature maps the backbone returns.
    pub fn out_stage_indices(&self) -> std::result::Result<Vec<usize>, String> {
        let names = self.stage_names();
        let mut idx: Vec<usize> = match (&self.out_features, &self.out_indices) {
            (Some(f), _) => f
                .iter()
                .map(|n| names.iter().position(|s| s == n).ok_or_else(|| format!("backbone_config.out_features names unknown stage {n}")))
                .collect::<std::result::Result<_, _>>()?,
            (None, Some(i)) => i
                .iter()
                .map(|&k| {
                    let k = if k < 0 { k + names.len() as i64 } else { k };
                    (0..names.len() as i64).contains(&k).then_some(k as usize).ok_or_else(|| format!("backbone_config.out_indices holds {k}, out of range"))
                })
                .collect::<std::result::Result<_, _>>()?,
            (None, None) => vec![names.len() - 1],
        };
        idx.sort_unstable();
        idx.dedup();
        Ok(idx)
    }
}

/// `DPTConfig` for `DPTForDepthEstimation` with `is_hybrid: true`.
#[derive(Clone, Debug, Deserialize)]
pub struct DptConfig {
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    #[serde(default = "gelu")]
    pub hidden_act: String,
    #[serde(default = "eps12")]
    pub layer_norm_eps: f64,
    pub image_size: Size2,
    pub patch_size: Size2,
    #[serde(default = "three")]
    pub num_channels: usize,
    #[serde(default)]
    pub is_hybrid: bool,
    pub backbone_out_indices: Vec<i64>,
    #[serde(default = "project")]
    pub readout_type: String,
    pub reassemble_factors: Vec<f64>,
    pub neck_hidden_sizes: Vec<usize>,
    #[serde(default = "d256")]
    pub fusion_hidden_size: usize,
    #[serde(default = "minus_one")]
    pub head_in_index: i64,
    #[serde(default)]
    pub neck_ignore_stages: Vec<usize>,
    pub backbone_featmap_shape: Option<Vec<usize>>,
    #[serde(default)]
    pub use_bias_in_fusion_residual: Option<bool>,
    #[serde(default = "qkv_default")]
    pub qkv_bias: bool,
    pub backbone_config: Option<BitConfig>,
}

fn qkv_default() -> bool {
    true
}

/// transformers' `ACT2FN` names wgsd's kernels implement.
pub fn activation(name: &str) -> Option<Activation> {
    match name {
        "relu" => Some(Activation::Relu),
        "gelu" => Some(Activation::Gelu),
        "gelu_new" | "gelu_pytorch_tanh" => Some(Activation::GeluTanh),
        "silu" | "swish" => Some(Activation::Silu),
        "quick_gelu" => Some(Activation::QuickGelu),
        _ => None,
    }
}

/// BiT's `make_div`: rounds a channel count to a multiple of 8 (never below 90% of it).
pub fn make_div(value: f64) -> usize {
    let divisor: f64 = 8.0;
    let mut v = divisor.max(((value + divisor / 2.0) as i64 / 8 * 8) as f64);
    if v < 0.9 * value {
        v += divisor;
    }
    v as usize
}

impl DptConfig {
    pub fn from_file(path: &Path) -> Result<DptConfig> {
        let file = path.display().to_string();
        let err = |msg: String| Error::Config { file: file.clone(), msg };
        let text = std::fs::read_to_string(path).map_err(|e| err(format!("cannot read: {e}")))?;
        let v: Value = serde_json::from_str(&python_json(&text)).map_err(|e| err(format!("invalid JSON: {e}")))?;
        Self::check_raw(&v).map_err(err)?;
        let c: DptConfig = serde_json::from_value(v).map_err(|e| err(format!("unexpected config: {e}")))?;
        c.validate().map_err(err)?;
        Ok(c)
    }

    /// Values read only as JSON (not kept in the struct) that select code paths wgsd does not have.
    fn check_raw(v: &Value) -> std::result::Result<(), String> {
        let is = |field: &str, ok: &dyn Fn(&Value) -> bool| -> std::result::Result<(), String> {
            match v.get(field) {
                None | Some(Value::Null) => Ok(()),
                Some(x) if ok(x) => Ok(()),
                Some(x) => Err(format!("{field} = {x} is not supported by wgsd")),
            }
        };
        is("add_projection", &|x| x == &Value::Bool(false))?;
        is("use_batch_norm_in_fusion_residual", &|x| x == &Value::Bool(false))?;
        is("backbone", &|_| false)?;
        is("use_pretrained_backbone", &|x| x == &Value::Bool(false))?;
        is("use_timm_backbone", &|x| x == &Value::Bool(false))?;
        if let Some(bc) = v.get("backbone_config").filter(|b| !b.is_null()) {
            match bc.get("model_type").and_then(|m| m.as_str()) {
                Some("bit") => {}
                other => return Err(format!("backbone_config.model_type = {other:?} is not supported by wgsd (DPT-hybrid: \"bit\")")),
            }
        }
        Ok(())
    }

    fn validate(&self) -> std::result::Result<(), String> {
        if !self.is_hybrid {
            return Err("is_hybrid = false is not supported by wgsd (only DPT-hybrid: ViT on a BiT backbone)".into());
        }
        let Some(b) = &self.backbone_config else {
            return Err("backbone_config = null: DPT-hybrid needs a BiT backbone_config".into());
        };
        if b.layer_type != "bottleneck" {
            return Err(format!("backbone_config.layer_type = {:?} is not supported by wgsd (\"bottleneck\")", b.layer_type));
        }
        if !b.global_padding.as_deref().is_some_and(|p| p.eq_ignore_ascii_case("same")) {
            let v = b.global_padding.as_deref().map_or("null".to_string(), |p| format!("{p:?}"));
            return Err(format!("backbone_config.global_padding = {v} is not supported by wgsd (\"SAME\")"));
        }
        if activation(&b.hidden_act).is_none() {
            return Err(format!("backbone_config.hidden_act = {:?} is not supported by wgsd", b.hidden_act));
        }
        if activation(&self.hidden_act).is_none() {
            return Err(format!("hidden_act = {:?} is not supported by wgsd", self.hidden_act));
        }
        // transformers zips depths with hidden_sizes: extra sizes (the published dpt-hybrid config lists four
        // sizes for three stages) are unused.
        if b.depths.len() > b.hidden_sizes.len() || b.depths.is_empty() {
            return Err(format!("backbone_config: {} depths for {} hidden_sizes", b.depths.len(), b.hidden_sizes.len()));
        }
        // BiT turns strides into dilation once the output stride is reached; wgsd's convs are not dilated.
        let mut stride = 4;
        for i in 1..b.depths.len() {
            if stride >= b.output_stride {
                return Err(format!("backbone_config.output_stride = {} dilates stage {} (dilated convolutions are not supported by wgsd)", b.output_stride, i + 1));
            }
            stride *= 2;
        }
        let outs = b.out_stage_indices()?;
        if outs.len() != 3 {
            return Err(format!("backbone_config.out_features selects {} feature maps; DPT-hybrid needs 3", outs.len()));
        }
        if self.readout_type != "project" {
            return Err(format!("readout_type = {:?} is not supported for DPT-hybrid (\"project\")", self.readout_type));
        }
        if self.neck_hidden_sizes.len() != 4 || self.reassemble_factors.len() < 4 {
            return Err(format!(
                "neck_hidden_sizes {:?} / reassemble_factors {:?}: DPT-hybrid needs 4 stages",
                self.neck_hidden_sizes, self.reassemble_factors
            ));
        }
        let mut ignore = self.neck_ignore_stages.clone();
        ignore.sort_unstable();
        if ignore != [0, 1] {
            return Err(format!("neck_ignore_stages = {:?} is not supported for DPT-hybrid ([0, 1])", self.neck_ignore_stages));
        }
        for (i, &f) in self.reassemble_factors.iter().enumerate().skip(2) {
            if !(f == 1.0 || (f < 1.0 && f > 0.0 && (1.0 / f) as usize >= 1)) {
                return Err(format!("reassemble_factors[{i}] = {f} is not supported by wgsd (1 or a downsampling factor < 1; upsampling needs ConvTranspose2d)"));
            }
        }
        if self.layer_indices().len() != 2 {
            return Err(format!(
                "backbone_out_indices = {:?} selects {} of the {} ViT layers; DPT-hybrid uses 2 (entries 3 and 4)",
                self.backbone_out_indices,
                self.layer_indices().len(),
                self.num_hidden_layers
            ));
        }
        let n = self.neck_hidden_sizes.len() as i64;
        if !(-n..n).contains(&self.head_in_index) {
            return Err(format!("head_in_index = {} is out of range for {n} fusion outputs", self.head_in_index));
        }
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return Err(format!("hidden_size {} is not a multiple of num_attention_heads {}", self.hidden_size, self.num_attention_heads));
        }
        if !self.fusion_hidden_size.is_multiple_of(2) {
            return Err(format!("fusion_hidden_size = {} must be even (the head halves it)", self.fusion_hidden_size));
        }
        if self.backbone_featmap_shape.as_ref().is_none_or(|s| s.len() != 4) {
            return Err(format!("backbone_featmap_shape = {:?}: DPT-hybrid needs [B, C, H, W]", self.backbone_featmap_shape));
        }
        Ok(())
    }

    pub fn backbone(&self) -> &BitConfig {
        self.backbone_config.as_ref().expect("validated")
    }

    /// The ViT layers whose outputs feed the neck's stages 3 and 4: `backbone_out_indices[2:]`, in layer
    /// order (as transformers filters `hidden_states[1:]`).
    pub fn layer_indices(&self) -> Vec<usize> {
        let want: Vec<i64> = self.backbone_out_indices.iter().skip(2).copied().collect();
        (0..self.num_hidden_layers).filter(|&i| want.contains(&(i as i64))).collect()
    }

    pub fn fusion_bias(&self) -> bool {
        self.use_bias_in_fusion_residual.unwrap_or(true)
    }
}
