//! Spatial resampling of NCHW tensors (`shaders/resample.wgsl`): max pooling (BiT's stem pool, with its
//! explicit zero padding) and bilinear resizing with PyTorch's `align_corners` semantics (DPT's fusion
//! stage and depth head). Each has its CPU twin below it. Tensors larger than one binding are split by
//! whole planes.

use bytemuck::{Pod, Zeroable};

use super::{shader, ShaderSource};
use crate::error::{Error, Result};
use crate::graph::op::{chunks, grid_1d, max_binding_elems, params, Bind, Dispatch, Lowering, Op, Slot};
use crate::graph::{Graph, TensorId};
use crate::tensor::{DType, TensorDesc};

pub static SHADER: ShaderSource = shader!("resample");

// Mirrors `Params` in the shader.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable, Default)]
struct Params {
    n: u32,
    x_shift: u32,
    out_shift: u32,
    h: u32,
    w: u32,
    oh: u32,
    ow: u32,
    k: u32,
    stride: u32,
    pad_top: u32,
    pad_left: u32,
    use_pad: u32,
    pad_value: f32,
    align: u32,
    scale_h: f32,
    scale_w: f32,
}

fn check_nchw(op: &str, x: &TensorDesc) -> Result<()> {
    if x.dtype != DType::F32 {
        return Err(Error::DType { op: op.into(), msg: format!("input is {x}; this kernel takes f32") });
    }
    if x.rank() != 4 || x.numel() == 0 {
        return Err(Error::shape(op, format!("expects a non-empty [B, C, H, W] tensor, got {x}")));
    }
    Ok(())
}

/// Lowers a per-plane kernel: input planes of `H·W`, output planes of `OH·OW`, split by whole planes so
/// every dispatch's bindings fit the device.
fn lower_planes(l: &Lowering, entry: &'static str, base: Params) -> Result<Vec<Dispatch>> {
    let x = &l.inputs[0];
    let (ip, op) = ((base.h * base.w) as u64, (base.oh * base.ow) as u64);
    let planes = x.numel() as u64 / ip;
    let cap = max_binding_elems(l.limits, DType::F32) / ip.max(op);
    if cap == 0 {
        return Err(super::norm::unit_limit_error(entry, format!("one plane of {x} → {}×{}", base.oh, base.ow), ip.max(op), l.limits));
    }
    let mut out = Vec::new();
    for (p0, np) in chunks(planes, cap, 1) {
        let (bx, x_shift) = Bind::elements(Slot::Input(0), x, p0 * ip, np * ip, l.limits);
        let (bo, out_shift) = Bind::elements(Slot::Output, l.output, p0 * op, np * op, l.limits);
        let n = np * op;
        let p = Params { n: n as u32, x_shift, out_shift, ..base };
        out.push(Dispatch {
            shader: &SHADER,
            entry,
            params: params(&p),
            bindings: vec![bx, bo],
            workgroups: grid_1d(n.div_ceil(256), l.limits),
            constants: Vec::new(),
        });
    }
    Ok(out)
}

/// `max_pool2d(F.pad(x, (left, right, top, bottom), value=pad_value), k, stride)` with floor rounding
/// (`ceil_mode=False`). With `pad_value: None` the padding cells are ignored instead (PyTorch's own
/// `MaxPool2d(padding=...)`, which pads with −∞).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MaxPool2d {
    pub k: usize,
    pub stride: usize,
    /// Padding (top, bottom, left, right).
    pub pad: [usize; 4],
    pub pad_value: Option<f32>,
}

impl MaxPool2d {
    fn out_hw(&self, h: usize, w: usize) -> Option<(usize, usize)> {
        let (hp, wp) = (h + self.pad[0] + self.pad[1], w + self.pad[2] + self.pad[3]);
        if self.k == 0 || self.stride == 0 || hp < self.k || wp < self.k {
            return None;
        }
        Some(((hp - self.k) / self.stride + 1, (wp - self.k) / self.stride + 1))
    }
}

impl Op for MaxPool2d {
    fn kind(&self) -> &'static str {
        "max_pool2d"
    }
    fn infer(&self, inputs: &[&TensorDesc]) -> Result<TensorDesc> {
        let x = inputs[0];
        check_nchw(self.kind(), x)?;
        let Some((oh, ow)) = self.out_hw(x.shape[2], x.shape[3]) else {
            return Err(Error::shape(
                self.kind(),
                format!("window {0}×{0} with stride {1} and padding {2:?} does not fit {x}", self.k, self.stride, self.pad),
            ));
        };
        Ok(TensorDesc::f32(&[x.shape[0], x.shape[1], oh, ow]))
    }
    fn lower(&self, l: &Lowering) -> Result<Vec<Dispatch>> {
        let x = &l.inputs[0];
        let base = Params {
            h: x.shape[2] as u32,
            w: x.shape[3] as u32,
            oh: l.output.shape[2] as u32,
            ow: l.output.shape[3] as u32,
            k: self.k as u32,
            stride: self.stride as u32,
            pad_top: self.pad[0] as u32,
            pad_left: self.pad[2] as u32,
            use_pad: self.pad_value.is_some() as u32,
            pad_value: self.pad_value.unwrap_or(0.0),
            ..Default::default()
        };
        lower_planes(l, "max_pool2d", base)
    }
    fn cpu(&self, inputs: &[&[f32]], descs: &[&TensorDesc], out: &TensorDesc) -> Vec<f32> {
        let (h, w) = (descs[0].shape[2], descs[0].shape[3]);
        let (oh, ow) = (out.shape[2], out.shape[3]);
        let mut res = Vec::with_capacity(out.numel());
        for plane in inputs[0].chunks_exact(h * w) {
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut m: Option<f32> = None;
                    for dy in 0..self.k {
                        for dx in 0..self.k {
                            let (y, xx) = ((oy * self.stride + dy) as isize - self.pad[0] as isize, (ox * self.stride + dx) as isize - self.pad[2] as isize);
                            let v = if y >= 0 && (y as usize) < h && xx >= 0 && (xx as usize) < w {
                                Some(plane[y as usize * w + xx as usize])
                            } else {
                                self.pad_value
                            };
                            if let Some(v) = v {
                                m = Some(m.map_or(v, |m| m.max(v)));
                            }
                        }
                    }
                    res.push(m.unwrap_or(0.0));
                }
            }
        }
        res
    }
    fn flops(&self, _: &[&TensorDesc], out: &TensorDesc) -> f64 {
        (out.numel() * self.k * self.k) as f64
    }
}

/// Bilinear resizing of `[B, C, H, W]` to `[B, C, OH, OW]`: `F.interpolate(x, size=(OH, OW),
/// mode="bilinear", align_corners=...)`. (`scale_factor=s` is the same op whenever `OH = s·H` exactly, which
/// is how DPT uses it.)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bilinear {
    pub out_h: usize,
    pub out_w: usize,
    pub align_corners: bool,
}

/// PyTorch's `area_pixel_compute_scale` in f32: the source step per output step.
pub fn bilinear_scale(input: usize, output: usize, align_corners: bool) -> f32 {
    if align_corners {
        if output > 1 {
            (input - 1) as f32 / (output - 1) as f32
        } else {
            0.0
        }
    } else {
        input as f32 / output as f32
    }
}

/// Source taps `(i0, i1, λ1)` of output index `dst` along an axis of `size` inputs (f32, as PyTorch).
fn bilinear_taps(dst: usize, size: usize, scale: f32, align_corners: bool) -> (usize, usize, f32) {
    let src = if align_corners { scale * dst as f32 } else { (scale * (dst as f32 + 0.5) - 0.5).max(0.0) };
    let i0 = (src as usize).min(size - 1);
    let i1 = (i0 + 1).min(size - 1);
    (i0, i1, src - i0 as f32)
}

impl Op for Bilinear {
    fn kind(&self) -> &'static str {
        "bilinear"
    }
    fn infer(&self, inputs: &[&TensorDesc]) -> Result<TensorDesc> {
        let x = inputs[0];
        check_nchw(self.kind(), x)?;
        if self.out_h == 0 || self.out_w == 0 {
            return Err(Error::shape(self.kind(), format!("cannot resize {x} to {}×{}", self.out_h, self.out_w)));
        }
        Ok(TensorDesc::f32(&[x.shape[0], x.shape[1], self.out_h, self.out_w]))
    }
    fn lower(&self, l: &Lowering) -> Result<Vec<Dispatch>> {
        let (h, w) = (l.inputs[0].shape[2], l.inputs[0].shape[3]);
        let base = Params {
            h: h as u32,
            w: w as u32,
            oh: self.out_h as u32,
            ow: self.out_w as u32,
            align: self.align_corners as u32,
            scale_h: bilinear_scale(h, self.out_h, self.align_corners),
            scale_w: bilinear_scale(w, self.out_w, self.align_corners),
            ..Default::default()
        };
        lower_planes(l, "bilinear", base)
    }
    fn cpu(&self, inputs: &[&[f32]], descs: &[&TensorDesc], out: &TensorDesc) -> Vec<f32> {
        let (h, w) = (descs[0].shape[2], descs[0].shape[3]);
        let (sh, sw) = (bilinear_scale(h, self.out_h, self.align_corners), bilinear_scale(w, self.out_w, self.align_corners));
        let ty: Vec<_> = (0..self.out_h).map(|o| bilinear_taps(o, h, sh, self.align_corners)).collect();
        let tx: Vec<_> = (0..self.out_w).map(|o| bilinear_taps(o, w, sw, self.align_corners)).collect();
        let mut res = Vec::with_capacity(out.numel());
        for plane in inputs[0].chunks_exact(h * w) {
            for &(y0, y1, ly) in &ty {
                for &(x0, x1, lx) in &tx {
                    let at = |y: usize, x: usize| plane[y * w + x] as f64;
                    let (ly, lx) = (ly as f64, lx as f64);
                    let top = (1.0 - lx) * at(y0, x0) + lx * at(y0, x1);
                    let bot = (1.0 - lx) * at(y1, x0) + lx * at(y1, x1);
                    res.push(((1.0 - ly) * top + ly * bot) as f32);
                }
            }
        }
        res
    }
    fn flops(&self, _: &[&TensorDesc], out: &TensorDesc) -> f64 {
        out.numel() as f64 * 9.0
    }
}

impl Graph {
    /// Max pooling of `[B, C, H, W]` with a `k`×`k` window, `stride`, padding (top, bottom, left, right)
    /// whose cells count as `pad_value` (or are ignored when `None`).
    pub fn max_pool2d(&mut self, name: &str, x: TensorId, k: usize, stride: usize, pad: [usize; 4], pad_value: Option<f32>) -> Result<TensorId> {
        self.op(name, MaxPool2d { k, stride, pad, pad_value }, &[x])
    }

    /// Bilinear resizing of `[B, C, H, W]` to `[B, C, out_h, out_w]` (PyTorch `interpolate(mode="bilinear")`).
    pub fn bilinear(&mut self, name: &str, x: TensorId, out_h: usize, out_w: usize, align_corners: bool) -> Result<TensorId> {
        self.op(name, Bilinear { out_h, out_w, align_corners }, &[x])
    }
}
