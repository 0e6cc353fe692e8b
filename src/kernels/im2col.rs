//! Convolution windows unfolded into rows (`shaders/im2col.wgsl`), and the convolution built on it:
//! `im2col(x) · Wᵀ` with the tuned GEMM. The direct conv2d kernels tile output pixels, so with few of
//! them (the UNet's deepest levels: 8×8 latents and below) each weight is loaded once per tile of a handful
//! of pixels; one GEMM over all `B·OH·OW` rows loads it once. Measured on lavapipe (one run, GPU clock),
//! 3×3 convs 2×1280×8×8 → 1280: direct 2.11 s, GEMM 0.49 s; 2×2560×4×4 → 1280: 3.94 s vs 0.49 s; at
//! 2×1280×16×16 both take 4.0 s, so the GEMM form is used below [`IM2COL_MAX_ROWS`] rows per image. Since
//! the CPU patch kernels read vec4 window rows and fill their workgroups with the patches of several
//! images, 3×3 stride-1 convs from [`PATCH_MIN_ROWS`] rows per image run direct (2×1280×8×8 → 1280, GPU
//! clock, alternating runs: direct 46–66 GFLOP/s, im2col + GEMM 35–39). The choice depends on the rows of
//! one image, not the batch, so an image's numbers do not change with the batch it runs in (cond and
//! uncond as one batch or two). 1×1 stride-1 convs follow the general rule (GEMM below
//! [`IM2COL_MAX_ROWS`] rows): CPU adapters run the others with the pointwise kernel, which beat
//! im2col (a transpose) + GEMM at every UNet shape once its epilogue stopped rebuilding an array per store
//! (Zen 3 lavapipe, f16 weights: 2×320×64² → 320 28.5–36.2 vs 11.9–12.3 GFLOP/s, 2×640×32² 24.7–37.3 vs
//! 14.9–16.8, 2×1280×16² 25.4–28.8 vs 20.2–20.7; at 2×1280×8² 23.6–26.5 vs 20.6–22.1).

use bytemuck::{Pod, Zeroable};

use super::conv2d::{ConvShape, Conv2dOpts};
use super::matmul::MatmulOpts;
use super::{shader, ShaderSource};
use crate::error::{Error, Result};
use crate::graph::op::{grid_1d, max_binding_elems, params, BackwardCtx, Bind, Dispatch, Lowering, Op};
use crate::graph::{Graph, TensorId};
use crate::tensor::{DType, TensorDesc};

pub static SHADER: ShaderSource = shader!("im2col");

/// Convolutions with fewer output rows per image (`OH·OW`) than this run as im2col + GEMM...
pub const IM2COL_MAX_ROWS: usize = 256;
/// ...except 3×3 stride-1 convs with at least this many.
pub const PATCH_MIN_ROWS: usize = 64;
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable, Default)]
struct Params {
    n: u32,
    cin: u32,
    h: u32,
    w: u32,
    kh: u32,
    kw: u32,
    stride: u32,
    pad_top: u32,
    pad_left: u32,
    oh: u32,
    ow: u32,
    _pad: u32,
}

/// `x: [B, Cin, H, W]` → `[B·OH·OW, Cin·kh·kw]` for a `kh × kw` kernel.
pub struct Im2Col {
    pub kh: usize,
    pub kw: usize,
    pub opts: Conv2dOpts,
}

impl Im2Col {
    fn shape(&self, x: &TensorDesc) -> Result<ConvShape> {
        if x.rank() != 4 {
            return Err(Error::shape("im2col", format!("input must be [B, C, H, W], got {x}")));
        }
        if self.opts.upsample2x {
            return Err(Error::shape("im2col", "upsampling convs are not lowered to im2col"));
        }
        let w = [1, x.shape[1], self.kh, self.kw];
        ConvShape::new(&x.shape, &w, &self.opts)
            .ok_or_else(|| Error::shape("im2col", format!("a {}×{} window does not fit {x} with {:?}", self.kh, self.kw, self.opts)))
    }
}

impl Op for Im2Col {
    fn kind(&self) -> &'static str {
        "im2col"
    }
    fn infer(&self, inputs: &[&TensorDesc]) -> Result<TensorDesc> {
        let x = inputs[0];
        if x.dtype != DType::F32 {
            return Err(Error::DType { op: "im2col".into(), msg: format!("input is {x}; this kernel takes f32") });
        }
        let s = self.shape(x)?;
        Ok(TensorDesc::f32(&[s.b * s.oh * s.ow, s.cin * s.kh * s.kw]))
    }
    fn lower(&self, l: &Lowering) -> Result<Vec<Dispatch>> {
        let s = self.shape(&l.inputs[0])?;
        let cap = max_binding_elems(l.limits, DType::F32);
        for d in [&l.inputs[0], l.output] {
            if d.numel() as u64 > cap {
                return Err(Error::shape("im2col", format!("{d} is larger than one storage binding; use conv2d")));
            }
        }
        let n = l.output.numel() as u64;
        let o = &self.opts;
        let p = Params {
            n: n as u32,
            cin: s.cin as u32,
            h: s.h as u32,
            w: s.w as u32,
            kh: s.kh as u32,
            kw: s.kw as u32,
            stride: o.stride as u32,
            pad_top: o.pad_top as u32,
            pad_left: o.pad_left as u32,
            oh: s.oh as u32,
            ow: s.ow as u32,
            _pad: 0,
        };
        Ok(vec![Dispatch {
            shader: &SHADER,
            entry: "im2col",
            params: params(&p),
            bindings: vec![Bind::input(0, &l.inputs[0]), Bind::output(l.output)],
            workgroups: grid_1d(n.div_ceil(256), l.limits),
            constants: Vec::new(),
        }])
    }
    fn cpu(&self, inputs: &[&[f32]], descs: &[&TensorDesc], _out: &TensorDesc) -> Vec<f32> {
        let s = self.shape(descs[0]).expect("checked when recorded");
        let (x, o) = (inputs[0], &self.opts);
        let mut out = Vec::with_capacity(s.b * s.oh * s.ow * s.cin * s.kh * s.kw);
        for b in 0..s.b {
            for oy in 0..s.oh {
                for ox in 0..s.ow {
                    for ci in 0..s.cin {
                        for ky in 0..s.kh {
                            for kx in 0..s.kw {
                                let iy = (oy * o.stride + ky) as isize - o.pad_top as isize;
                                let ix = (ox * o.stride + kx) as isize - o.pad_left as isize;
                                let inside = iy >= 0 && ix >= 0 && (iy as usize) < s.h && (ix as usize) < s.w;
                                out.push(if inside { x[((b * s.cin + ci) * s.h + iy as usize) * s.w + ix as usize] } else { 0.0 });
                            }
                        }
                    }
                }
            }
        }
        out
    }
    fn flops(&self, _: &[&TensorDesc], _: &TensorDesc) -> f64 {
        0.0
    }
    fn bytes(&self, inputs: &[&TensorDesc], out: &TensorDesc) -> f64 {
        4.0 * (inputs[0].numel() + out.numel()) as f64
    }
    /// col2im: every pixel gathers the column entries of the windows that cover it.
    fn backward(&self, g: &mut Graph, c: &BackwardCtx) -> Result<Vec<Option<TensorId>>> {
        if !c.need[0] {
            return Ok(vec![None]);
        }
        let xs = g.shape(c.inputs[0]).to_vec();
        Ok(vec![Some(g.col2im(&c.node("x"), c.dy, [xs[0], xs[1], xs[2], xs[3]], self.kh, self.kw, self.opts)?)])
    }
}

impl Graph {
    /// Unfolds the `kh × kw` windows of `x: [B, Cin, H, W]` into rows `[B·OH·OW, Cin·kh·kw]`.
    pub fn im2col(&mut self, name: &str, x: TensorId, kh: usize, kw: usize, opts: Conv2dOpts) -> Result<TensorId> {
        self.op(name, Im2Col { kh, kw, opts }, &[x])
    }

    /// A convolution by whichever form is faster for its shape: [`Graph::conv2d_gemm`] below
    /// [`IM2COL_MAX_ROWS`] output rows per image (when the unfolded input stays under 64 MiB; 3×3 stride-1
    /// convs only below [`PATCH_MIN_ROWS`]), else the direct [`Graph::conv2d`] kernels. Model code calls this.
    pub fn conv2d_auto(
        &mut self,
        name: &str,
        x: TensorId,
        w: TensorId,
        bias: Option<TensorId>,
        opts: Conv2dOpts,
        residual: Option<TensorId>,
    ) -> Result<TensorId> {
        let (xs, ws) = (self.shape(x).to_vec(), self.shape(w).to_vec());
        // Upsampling convs always take the fused kernels (im2col would need the upsampled image), and so do
        // f16 inputs (im2col reads f32).
        let small = !opts.upsample2x
            && self.desc(x).dtype == crate::tensor::DType::F32
            && (xs.len() == 4 && ws.len() == 4 && xs[1] == ws[1])
            .then(|| ConvShape::new(&xs, &ws, &opts))
            .flatten()
            .is_some_and(|s| {
                let patch3 = s.kh == 3 && s.kw == 3 && opts.stride == 1;
                let max_rows = if patch3 { PATCH_MIN_ROWS } else { IM2COL_MAX_ROWS };
                s.oh * s.ow < max_rows && s.b * s.oh * s.ow * s.cin * s.kh * s.kw * 4 <= 64 << 20
            });
        if small {
            self.conv2d_gemm(name, x, w, bias, opts, residual)
        } else {
            self.conv2d(name, x, w, bias, opts, residual)
        }
    }

    /// The same result as [`Graph::conv2d`], computed as `im2col(x) · Wᵀ (+ bias)`, transposed back to NCHW,
    /// plus the residual.
    pub fn conv2d_gemm(
        &mut self,
        name: &str,
        x: TensorId,
        w: TensorId,
        bias: Option<TensorId>,
        opts: Conv2dOpts,
        residual: Option<TensorId>,
    ) -> Result<TensorId> {
        let (xs, ws) = (self.shape(x).to_vec(), self.shape(w).to_vec());
        let s = ConvShape::new(&xs, &ws, &opts)
            .filter(|_| xs.len() == 4 && ws.len() == 4 && xs[1] == ws[1])
            .ok_or_else(|| Error::shape("conv2d", format!("'{name}': input {xs:?} and weight {ws:?} do not fit with {opts:?}")))?;
        let cols = self.im2col(&format!("{name}.im2col"), x, s.kh, s.kw, opts)?;
        let w2 = self.reshape(w, &[s.cout, s.cin * s.kh * s.kw])?;
        // [B·OH·OW, Cout] = cols · Wᵀ + bias
        let y = self.matmul(&format!("{name}.gemm"), cols, w2, MatmulOpts { trans_b: true, bias, ..Default::default() })?;
        let y = self.reshape(y, &[s.b, s.oh * s.ow, s.cout])?;
        let y = self.transpose(&format!("{name}.nchw"), y)?;
        let y = self.reshape(y, &[s.b, s.cout, s.oh, s.ow])?;
        match residual {
            Some(r) => self.add(&format!("{name}.residual"), y, r),
            None => Ok(y),
        }
    }
}
