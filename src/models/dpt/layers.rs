//! Convolutions as DPT and BiT use them: optional bias, PyTorch or TF-"SAME" (dynamic, asymmetric)
//! padding, and BiT's weight standardisation, applied once to the constant weights on the host.

use std::sync::Arc;

use crate::error::Result;
use crate::graph::{Graph, Param, TensorId};
use crate::kernels::conv2d::Conv2dOpts;
use crate::models::nn::Loader;
use crate::models::weights::Weights;
use crate::tensor::TensorDesc;

/// How a convolution (or pool) pads its input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pad {
    /// PyTorch's symmetric `padding=p`.
    Fixed(usize),
    /// TF "SAME" as BiT's `DynamicPad2d` computes it from the input size at run time: total
    /// `max((⌈x/s⌉ − 1)·s + k − x, 0)`, the smaller half before, the larger after.
    Same,
}

/// BiT's `get_padding_value("SAME", k, stride)`: static when it can be, dynamic otherwise.
pub fn same_padding(k: usize, stride: usize) -> Pad {
    if stride == 1 && (k - 1).is_multiple_of(2) {
        Pad::Fixed((k - 1) / 2)
    } else {
        Pad::Same
    }
}

/// `DynamicPad2d`'s (before, after) padding of one axis.
pub fn dynamic_pad(x: usize, k: usize, stride: usize) -> (usize, usize) {
    let total = ((x.div_ceil(stride) as i64 - 1) * stride as i64 + k as i64 - x as i64).max(0) as usize;
    (total / 2, total - total / 2)
}

impl Pad {
    /// Padding (top, bottom, left, right) for an input of `h`×`w`.
    pub fn sides(self, h: usize, w: usize, k: usize, stride: usize) -> [usize; 4] {
        match self {
            Pad::Fixed(p) => [p; 4],
            Pad::Same => {
                let (t, b) = dynamic_pad(h, k, stride);
                let (l, r) = dynamic_pad(w, k, stride);
                [t, b, l, r]
            }
        }
    }
}

/// `nn.Conv2d` with square kernel `k`, optional bias and [`Pad`] padding.
pub struct Conv {
    pub weight: Arc<Param>,
    pub bias: Option<Arc<Param>>,
    pub k: usize,
    pub stride: usize,
    pub pad: Pad,
    name: String,
}

impl Conv {
    pub fn load(l: &Loader, cin: usize, cout: usize, k: usize, stride: usize, pad: Pad, bias: bool) -> Result<Conv> {
        Ok(Conv {
            weight: l.tensor("weight", &[cout, cin, k, k])?,
            bias: if bias { Some(l.tensor("bias", &[cout])?) } else { None },
            k,
            stride,
            pad,
            name: l.path().to_string(),
        })
    }

    /// BiT's `WeightStandardizedConv2d` (no bias, "SAME" padding): each output channel's weights are
    /// normalised to zero mean and unit variance (biased, + `eps`), as its `batch_norm(training=True)` on
    /// the weights does at every call. The weights are constant, so this is done once here, in f64.
    pub fn load_standardized(l: &Loader, w: &Weights, cin: usize, cout: usize, k: usize, stride: usize, eps: f64) -> Result<Conv> {
        let key = format!("{}.weight", l.path());
        let shape = [cout, cin, k, k];
        let mut data = w.get(&key, &shape)?;
        for row in data.chunks_exact_mut(cin * k * k) {
            let n = row.len() as f64;
            let mean = row.iter().map(|&v| v as f64).sum::<f64>() / n;
            let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
            let inv = 1.0 / (var + eps).sqrt();
            for v in row.iter_mut() {
                *v = ((*v as f64 - mean) * inv) as f32;
            }
        }
        Ok(Conv {
            weight: Param::upload(l.gpu, &key, TensorDesc::f32(&shape), &data, false)?,
            bias: None,
            k,
            stride,
            pad: same_padding(k, stride),
            name: l.path().to_string(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `conv(x) (+ bias) (+ residual)`. x: [B, Cin, H, W] → [B, Cout, OH, OW].
    pub fn forward(&self, g: &mut Graph, x: TensorId, residual: Option<TensorId>) -> Result<TensorId> {
        let s = g.shape(x).to_vec();
        let (h, w) = if s.len() == 4 { (s[2], s[3]) } else { (0, 0) }; // a bad rank is the conv op's error
        let [t, b, l, r] = self.pad.sides(h, w, self.k, self.stride);
        let opts = Conv2dOpts::asymmetric(self.stride, t, b, l, r);
        let wt = g.param(&self.weight);
        let bias = self.bias.as_ref().map(|b| g.param(b));
        g.conv2d_auto(&self.name, x, wt, bias, opts, residual)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_padding_matches_bit() {
        // 7×7 stride-2 stem on 64 and 384 pixels; 3×3 stride-2 pool on 32; 1×1 stride-2 downsample.
        assert_eq!(dynamic_pad(64, 7, 2), (2, 3));
        assert_eq!(dynamic_pad(384, 7, 2), (2, 3));
        assert_eq!(dynamic_pad(32, 3, 2), (0, 1));
        assert_eq!(dynamic_pad(15, 3, 2), (1, 1));
        assert_eq!(dynamic_pad(16, 1, 2), (0, 0));
        assert_eq!(same_padding(3, 1), Pad::Fixed(1));
        assert_eq!(same_padding(1, 1), Pad::Fixed(0));
        assert_eq!(same_padding(3, 2), Pad::Same);
    }
}
