//! The backward of 2-D convolution (`shaders/conv2d_backward.wgsl`) and of im2col. Every kernel is a
//! gather (each output element written by one invocation, no atomics), so gradients are deterministic.
//!
//! - **dx** ([`Conv2dDx`]): `dx[b, ci, iy, ix] = Σ dy[b, co, oy, ox] · w[co, ci, ky, kx]` over the taps with
//!   `oy·stride + ky − pad_top = iy` (and the same along x). For stride 1 this is a forward convolution of
//!   `dy` with the flipped, transposed weights ([`ConvWeightFlip`]) and padding `k − 1 − pad` per side, so
//!   [`Graph::conv2d_dx`] reuses the tuned forward kernels (and their binding splits) there; strides > 1
//!   (the downsamplers, whose taps skip dy pixels) take the gather kernel.
//! - **dw** ([`Conv2dDw`]): `dw[co, ci, ky, kx] = Σ_{b, oy, ox} dy[b, co, oy, ox] · x[b, ci, window tap]`, i.e.
//!   `im2colᵀ · dY` without materialising im2col: each invocation owns an 8 × 8 tile of `(Cout, Cin·kh·kw)`
//!   and reduces over `B·OH·OW`. When that tile grid is small (few channels, many pixels: `conv_in`),
//!   the rows are cut into `parts` whose partial sums [`Graph::sum_to`] adds, so enough invocations run.
//! - **col2im** ([`Col2Im`]): the reverse of [`Im2Col`](super::im2col::Im2Col), each input pixel summing the
//!   column entries of the windows that cover it.
//!
//! Measured on lavapipe (2 shared cores, one run each, 3×3 conv of 320 channels): at 32×32 stride 1 the
//! forward takes 0.20 s, dx 0.22 s, dw 0.54 s; at 64×64 stride 2 the forward 0.24 s, dx 1.07 s, dw 0.69 s.
//!
//! Tensors larger than one storage binding (the VAE at 512²) are split like the forward op: per image,
//! and by channel ranges, with later dispatches of one output range accumulating into it.

use bytemuck::{Pod, Zeroable};

use super::conv2d::{even_chunks, ConvShape, Conv2dOpts};
use super::{check_f32, shader, ShaderSource};
use crate::error::{Error, Result};
use crate::graph::op::{grid_1d, max_binding_elems, params, Bind, DeviceLimits, Dispatch, Lowering, Op, Slot};
use crate::graph::{Graph, TensorId};
use crate::tensor::{DType, TensorDesc};

pub static SHADER: ShaderSource = shader!("conv2d_backward");

// Mirrors `Params` in the shader.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable, Default, Debug)]
struct Params {
    cin: u32,
    h: u32,
    w: u32,
    oh: u32,
    ow: u32,
    cout: u32,
    kh: u32,
    kw: u32,
    stride: u32,
    pad_top: u32,
    pad_left: u32,
    k_row: u32,
    col0: u32,
    a_shift: u32,
    b_shift: u32,
    o_shift: u32,
    a_bstride: u32,
    b_bstride: u32,
    o_bstride: u32,
    flags: u32,
    tiles: u32,
    n_tiles: u32,
    rows: u32,
    per_part: u32,
    part_stride: u32,
    n: u32,
    row0: u32,
    _pad: u32,
}

const FLAG_ACCUMULATE: u32 = 1;

impl Params {
    fn geometry(s: &ConvShape, o: &Conv2dOpts) -> Params {
        Params {
            cin: s.cin as u32,
            h: s.h as u32,
            w: s.w as u32,
            oh: s.oh as u32,
            ow: s.ow as u32,
            cout: s.cout as u32,
            kh: s.kh as u32,
            kw: s.kw as u32,
            stride: o.stride as u32,
            pad_top: o.pad_top as u32,
            pad_left: o.pad_left as u32,
            k_row: s.k() as u32,
            ..Default::default()
        }
    }
}


/// The forward convolution of an `x_shape` input by a `w_shape` weight, checked to produce `dy_shape`.
fn conv_shape(op: &str, x_shape: &[usize], w_shape: &[usize], dy: &TensorDesc, opts: &Conv2dOpts) -> Result<ConvShape> {
    let bad = || Error::shape(op, format!("dy {dy} is not the output of x {x_shape:?} and weight {w_shape:?} with {opts:?}"));
    if x_shape.len() != 4 || w_shape.len() != 4 || dy.rank() != 4 || x_shape[1] != w_shape[1] {
        return Err(bad());
    }
    if opts.upsample2x {
        return Err(Error::shape(op, "takes a plain conv's options: an upsampling conv differentiates through its upsampled input"));
    }
    let s = ConvShape::new(x_shape, w_shape, opts).ok_or_else(bad)?;
    if s.out_shape()[..] != dy.shape[..] {
        return Err(bad());
    }
    let big = u32::MAX as usize / 2;
    if s.b * s.cin * s.h * s.w > big || s.b * s.cout * s.oh * s.ow > big || s.cout * s.k() > big {
        return Err(Error::shape(op, format!("x {x_shape:?} / dy {dy} too large for 32-bit indexing")));
    }
    Ok(s)
}

fn limit_error(op: &str, what: &str, elems: usize, limits: &DeviceLimits) -> Error {
    Error::Limit {
        op: op.into(),
        what: what.into(),
        needed: elems as u64 * 4,
        limit_name: "max_storage_buffer_binding_size",
        limit: limits.max_binding,
        hint: ": the convolution backward splits by images and whole channels only".into(),
    }
}

/// Images per dispatch and channel chunks: everything at once when every tensor fits one binding, else one
/// image per dispatch and channel ranges whose planes (and weight rows) fit.
type Split = (Vec<(usize, usize)>, Vec<(usize, usize)>, Vec<(usize, usize)>);

// ---------------------------------------------------------------------------------------------------
// dx

/// `dx` of a convolution by gather: inputs `[dy, w]`, output `x_shape`. Any kernel size, stride and padding.
#[derive(Clone, Debug)]
pub struct Conv2dDx {
    pub opts: Conv2dOpts,
    pub x_shape: [usize; 4],
}

impl Op for Conv2dDx {
    fn kind(&self) -> &'static str {
        "conv2d_dx"
    }

    fn infer(&self, inputs: &[&TensorDesc]) -> Result<TensorDesc> {
        if inputs.len() != 2 {
            return Err(Error::shape("conv2d_dx", format!("expected inputs [dy, w], got {}", inputs.len())));
        }
        check_f32("conv2d_dx", inputs)?;
        conv_shape("conv2d_dx", &self.x_shape, &inputs[1].shape, inputs[0], &self.opts)?;
        Ok(TensorDesc::f32(&self.x_shape))
    }

    fn lower(&self, l: &Lowering) -> Result<Vec<Dispatch>> {
        let (dy, w) = (&l.inputs[0], &l.inputs[1]);
        let s = conv_shape("conv2d_dx", &self.x_shape, &w.shape, dy, &self.opts)?;
        let cap = max_binding_elems(l.limits, DType::F32) as usize;
        let (hw, ohw, k, taps) = (s.h * s.w, s.oh * s.ow, s.k(), s.kh * s.kw);
        for (what, n) in [("one dx channel plane", hw), ("one dy channel plane", ohw), ("one weight row", k)] {
            if n > cap {
                return Err(limit_error("conv2d_dx", what, n, l.limits));
            }
        }
        let whole = dy.numel() <= cap && w.numel() <= cap && l.output.numel() <= cap;
        let (images, ci_chunks, co_chunks): Split = if whole {
            (vec![(0, s.b)], vec![(0, s.cin)], vec![(0, s.cout)])
        } else {
            ((0..s.b).map(|b| (b, 1)).collect(), even_chunks(s.cin, cap / hw), even_chunks(s.cout, (cap / ohw).min(cap / k)))
        };
        let mut out = Vec::new();
        for &(b0, nb) in &images {
            for &(ci0, nci) in &ci_chunks {
                let o_begin = ((b0 * s.cin + ci0) * hw) as u64;
                let o_count = (((nb - 1) * s.cin + nci) * hw) as u64;
                let (bo, o_shift) = Bind::elements(Slot::Output, l.output, o_begin, o_count, l.limits);
                // Workgroups per phase class: 4-pixel groups of the largest class, 64 per workgroup.
                let st = self.opts.stride;
                let n_tiles = (s.h.div_ceil(st) * s.w.div_ceil(st).div_ceil(4)).div_ceil(64);
                let tiles = st * st * n_tiles * nci.div_ceil(4);
                for (c, &(co0, nco)) in co_chunks.iter().enumerate() {
                    let dy_begin = ((b0 * s.cout + co0) * ohw) as u64;
                    let dy_count = (((nb - 1) * s.cout + nco) * ohw) as u64;
                    let (bd, a_shift) = Bind::elements(Slot::Input(0), dy, dy_begin, dy_count, l.limits);
                    let (bw, b_shift) = Bind::elements(Slot::Input(1), w, (co0 * k) as u64, (nco * k) as u64, l.limits);
                    let p = Params {
                        cin: nci as u32,
                        cout: nco as u32,
                        col0: (ci0 * taps) as u32,
                        a_shift,
                        b_shift,
                        o_shift,
                        a_bstride: (s.cout * ohw) as u32,
                        o_bstride: (s.cin * hw) as u32,
                        flags: if c > 0 { FLAG_ACCUMULATE } else { 0 },
                        tiles: tiles as u32,
                        n_tiles: n_tiles as u32,
                        ..Params::geometry(&s, &self.opts)
                    };
                    let mut grid = grid_1d(tiles as u64, l.limits);
                    grid[2] = nb as u32;
                    out.push(Dispatch {
                        shader: &SHADER,
                        entry: "conv_dx",
                        params: params(&p),
                        bindings: vec![bd, bw, bo.clone()],
                        workgroups: grid,
                        constants: Vec::new(),
                    });
                }
            }
        }
        Ok(out)
    }

    /// Scatter form (the transpose of the forward loop), accumulated in f64: an independent check of the
    /// kernel's gather.
    fn cpu(&self, inputs: &[&[f32]], descs: &[&TensorDesc], _: &TensorDesc) -> Vec<f32> {
        let s = ConvShape::new(&self.x_shape, &descs[1].shape, &self.opts).expect("checked at record time");
        let (dy, w, o) = (inputs[0], inputs[1], &self.opts);
        let (hw, ohw) = (s.h * s.w, s.oh * s.ow);
        let mut dx = vec![0f32; s.b * s.cin * hw];
        let mut plane = vec![0f64; hw];
        for b in 0..s.b {
            for ci in 0..s.cin {
                plane.fill(0.0);
                for co in 0..s.cout {
                    let dyp = &dy[(b * s.cout + co) * ohw..][..ohw];
                    for ky in 0..s.kh {
                        for kx in 0..s.kw {
                            let wv = w[((co * s.cin + ci) * s.kh + ky) * s.kw + kx] as f64;
                            for oy in 0..s.oh {
                                let iy = (oy * o.stride + ky) as isize - o.pad_top as isize;
                                if iy < 0 || iy >= s.h as isize {
                                    continue;
                                }
                                for ox in 0..s.ow {
                                    let ix = (ox * o.stride + kx) as isize - o.pad_left as isize;
                                    if ix >= 0 && ix < s.w as isize {
                                        plane[iy as usize * s.w + ix as usize] += wv * dyp[oy * s.ow + ox] as f64;
                                    }
                                }
                            }
                        }
                    }
                }
                for (d, v) in dx[(b * s.cin + ci) * hw..][..hw].iter_mut().zip(&plane) {
                    *d = *v as f32;
                }
            }
        }
        dx
    }

    fn flops(&self, inputs: &[&TensorDesc], _: &TensorDesc) -> f64 {
        let w = &inputs[1].shape;
        2.0 * inputs[0].numel() as f64 * (w[1] * w[2] * w[3]) as f64
    }
}

// ---------------------------------------------------------------------------------------------------
// dw

/// `dw` of a convolution: inputs `[dy, x]`, output `[Cout, Cin, kh, kw]`, or with `parts > 1` the partial
/// sums `[parts, Cout, Cin, kh, kw]` over `parts` equal runs of the `B·OH·OW` rows (summed by a `sum_to`).
#[derive(Clone, Debug)]
pub struct Conv2dDw {
    pub opts: Conv2dOpts,
    pub kh: usize,
    pub kw: usize,
    pub parts: usize,
}

impl Conv2dDw {
    fn shape(&self, dy: &TensorDesc, x: &TensorDesc) -> Result<ConvShape> {
        if dy.rank() != 4 || x.rank() != 4 {
            return Err(Error::shape("conv2d_dw", format!("dy {dy} and x {x} must be NCHW")));
        }
        conv_shape("conv2d_dw", &x.shape, &[dy.shape[1], x.shape[1], self.kh, self.kw], dy, &self.opts)
    }
    fn per_part(&self, s: &ConvShape) -> usize {
        (s.b * s.oh * s.ow).div_ceil(self.parts)
    }
}

impl Op for Conv2dDw {
    fn kind(&self) -> &'static str {
        "conv2d_dw"
    }

    fn infer(&self, inputs: &[&TensorDesc]) -> Result<TensorDesc> {
        if inputs.len() != 2 || self.parts == 0 {
            return Err(Error::shape("conv2d_dw", format!("expected inputs [dy, x] and parts >= 1, got {} inputs", inputs.len())));
        }
        check_f32("conv2d_dw", inputs)?;
        let s = self.shape(inputs[0], inputs[1])?;
        let dw = [s.cout, s.cin, s.kh, s.kw];
        Ok(if self.parts > 1 { TensorDesc::f32(&[&[self.parts][..], &dw].concat()) } else { TensorDesc::f32(&dw) })
    }

    fn lower(&self, l: &Lowering) -> Result<Vec<Dispatch>> {
        let (dy, x) = (&l.inputs[0], &l.inputs[1]);
        let s = self.shape(dy, x)?;
        let cap = max_binding_elems(l.limits, DType::F32) as usize;
        let (hw, ohw, k, taps) = (s.h * s.w, s.oh * s.ow, s.k(), s.kh * s.kw);
        for (what, n) in [("one x channel plane", hw), ("one dy channel plane", ohw), ("the weight gradient", l.output.numel())] {
            if n > cap {
                return Err(limit_error("conv2d_dw", what, n, l.limits));
            }
        }
        let whole = dy.numel() <= cap && x.numel() <= cap;
        let (images, co_chunks, ci_chunks): Split = if whole {
            (vec![(0, s.b)], vec![(0, s.cout)], vec![(0, s.cin)])
        } else {
            ((0..s.b).map(|b| (b, 1)).collect(), even_chunks(s.cout, cap / ohw), even_chunks(s.cin, cap / hw))
        };
        let per_part = self.per_part(&s);
        let mut out = Vec::new();
        for (i, &(b0, nb)) in images.iter().enumerate() {
            for &(co0, nco) in &co_chunks {
                let dy_begin = ((b0 * s.cout + co0) * ohw) as u64;
                let dy_count = (((nb - 1) * s.cout + nco) * ohw) as u64;
                let (bd, a_shift) = Bind::elements(Slot::Input(0), dy, dy_begin, dy_count, l.limits);
                for &(ci0, nci) in &ci_chunks {
                    let x_begin = ((b0 * s.cin + ci0) * hw) as u64;
                    let x_count = (((nb - 1) * s.cin + nci) * hw) as u64;
                    let (bx, b_shift) = Bind::elements(Slot::Input(1), x, x_begin, x_count, l.limits);
                    let n_tiles = (nci * taps).div_ceil(DW_TILE);
                    let tiles = self.parts * nco.div_ceil(DW_TILE) * n_tiles;
                    let p = Params {
                        cin: nci as u32,
                        cout: nco as u32,
                        col0: (co0 * k + ci0 * taps) as u32,
                        a_shift,
                        b_shift,
                        a_bstride: (s.cout * ohw) as u32,
                        b_bstride: (s.cin * hw) as u32,
                        flags: if i > 0 { FLAG_ACCUMULATE } else { 0 },
                        tiles: tiles as u32,
                        n_tiles: n_tiles as u32,
                        rows: (nb * ohw) as u32,
                        row0: (b0 * ohw) as u32,
                        per_part: per_part as u32,
                        part_stride: (s.cout * k) as u32,
                        ..Params::geometry(&s, &self.opts)
                    };
                    out.push(Dispatch {
                        shader: &SHADER,
                        entry: "conv_dw",
                        params: params(&p),
                        bindings: vec![bd.clone(), bx, Bind::output(l.output)],
                        workgroups: grid_1d((tiles as u64).div_ceil(64), l.limits),
                        constants: Vec::new(),
                    });
                }
            }
        }
        Ok(out)
    }

    fn cpu(&self, inputs: &[&[f32]], descs: &[&TensorDesc], _: &TensorDesc) -> Vec<f32> {
        let s = self.shape(descs[0], descs[1]).expect("checked at record time");
        let (dy, x, o) = (inputs[0], inputs[1], &self.opts);
        let (hw, ohw, k) = (s.h * s.w, s.oh * s.ow, s.k());
        let per_part = self.per_part(&s);
        let mut dw = vec![0f64; self.parts * s.cout * k];
        for b in 0..s.b {
            for ci in 0..s.cin {
                let xp = &x[(b * s.cin + ci) * hw..][..hw];
                for ky in 0..s.kh {
                    for kx in 0..s.kw {
                        let col = (ci * s.kh + ky) * s.kw + kx;
                        for oy in 0..s.oh {
                            let iy = (oy * o.stride + ky) as isize - o.pad_top as isize;
                            if iy < 0 || iy >= s.h as isize {
                                continue;
                            }
                            for ox in 0..s.ow {
                                let ix = (ox * o.stride + kx) as isize - o.pad_left as isize;
                                if ix < 0 || ix >= s.w as isize {
                                    continue;
                                }
                                let xv = xp[iy as usize * s.w + ix as usize] as f64;
                                let pix = oy * s.ow + ox;
                                let part = (b * ohw + pix) / per_part;
                                for co in 0..s.cout {
                                    dw[(part * s.cout + co) * k + col] += xv * dy[(b * s.cout + co) * ohw + pix] as f64;
                                }
                            }
                        }
                    }
                }
            }
        }
        dw.into_iter().map(|v| v as f32).collect()
    }

    fn flops(&self, inputs: &[&TensorDesc], out: &TensorDesc) -> f64 {
        let d = &inputs[0].shape;
        2.0 * out.numel() as f64 / self.parts as f64 * (d[0] * d[2] * d[3]) as f64
    }
}

// ---------------------------------------------------------------------------------------------------
// col2im and the weight flip

/// The reverse of [`Im2Col`](super::im2col::Im2Col): `cols [B·OH·OW, Cin·kh·kw]` summed back into
/// `x_shape`, each pixel gathering the entries of the windows that cover it.
#[derive(Clone, Debug)]
pub struct Col2Im {
    pub kh: usize,
    pub kw: usize,
    pub opts: Conv2dOpts,
    pub x_shape: [usize; 4],
}

impl Col2Im {
    fn shape(&self) -> Result<ConvShape> {
        let x = &self.x_shape;
        if self.opts.upsample2x {
            return Err(Error::shape("col2im", "upsampling convs are not lowered to im2col"));
        }
        ConvShape::new(x, &[1, x[1], self.kh, self.kw], &self.opts)
            .ok_or_else(|| Error::shape("col2im", format!("a {}×{} window does not fit {x:?} with {:?}", self.kh, self.kw, self.opts)))
    }
}

impl Op for Col2Im {
    fn kind(&self) -> &'static str {
        "col2im"
    }
    fn infer(&self, inputs: &[&TensorDesc]) -> Result<TensorDesc> {
        check_f32("col2im", inputs)?;
        let s = self.shape()?;
        let want = [s.b * s.oh * s.ow, s.k()];
        if inputs.len() != 1 || inputs[0].shape[..] != want[..] {
            return Err(Error::shape("col2im", format!("expected columns {want:?} for x {:?}, got {}", self.x_shape, inputs[0])));
        }
        Ok(TensorDesc::f32(&self.x_shape))
    }
    fn lower(&self, l: &Lowering) -> Result<Vec<Dispatch>> {
        let s = self.shape()?;
        let cap = max_binding_elems(l.limits, DType::F32) as usize;
        for (what, d) in [("the columns", &l.inputs[0]), ("the image", l.output)] {
            if d.numel() > cap {
                return Err(limit_error("col2im", what, d.numel(), l.limits));
            }
        }
        let n = l.output.numel();
        let p = Params { n: n as u32, ..Params::geometry(&s, &self.opts) };
        let a = Bind::input(0, &l.inputs[0]);
        Ok(vec![Dispatch {
            shader: &SHADER,
            entry: "col2im",
            params: params(&p),
            bindings: vec![a.clone(), a, Bind::output(l.output)],
            workgroups: grid_1d((n as u64).div_ceil(256), l.limits),
            constants: Vec::new(),
        }])
    }
    fn cpu(&self, inputs: &[&[f32]], _: &[&TensorDesc], _: &TensorDesc) -> Vec<f32> {
        let (s, o) = (self.shape().expect("checked at record time"), &self.opts);
        let cols = inputs[0];
        let mut dx = vec![0f64; s.b * s.cin * s.h * s.w];
        let mut r = 0;
        for b in 0..s.b {
            for oy in 0..s.oh {
                for ox in 0..s.ow {
                    for ci in 0..s.cin {
                        for ky in 0..s.kh {
                            for kx in 0..s.kw {
                                let iy = (oy * o.stride + ky) as isize - o.pad_top as isize;
                                let ix = (ox * o.stride + kx) as isize - o.pad_left as isize;
                                if iy >= 0 && ix >= 0 && (iy as usize) < s.h && (ix as usize) < s.w {
                                    dx[((b * s.cin + ci) * s.h + iy as usize) * s.w + ix as usize] += cols[r] as f64;
                                }
                                r += 1;
                            }
                        }
                    }
                }
            }
        }
        dx.into_iter().map(|v| v as f32).collect()
    }
}

/// `[Cout, Cin, kh, kw]` → `[Cin, Cout, kh, kw]` rotated by 180° in (kh, kw): the weights of the transposed
/// convolution, so a stride-1 conv's dx is a forward conv of dy.
#[derive(Clone, Debug)]
pub struct ConvWeightFlip;

impl Op for ConvWeightFlip {
    fn kind(&self) -> &'static str {
        "conv_weight_flip"
    }
    fn infer(&self, inputs: &[&TensorDesc]) -> Result<TensorDesc> {
        check_f32("conv_weight_flip", inputs)?;
        let w = inputs[0];
        if inputs.len() != 1 || w.rank() != 4 {
            return Err(Error::shape("conv_weight_flip", format!("expected one [Cout, Cin, kh, kw] weight, got {w}")));
        }
        Ok(TensorDesc::f32(&[w.shape[1], w.shape[0], w.shape[2], w.shape[3]]))
    }
    fn lower(&self, l: &Lowering) -> Result<Vec<Dispatch>> {
        let w = &l.inputs[0];
        let cap = max_binding_elems(l.limits, DType::F32) as usize;
        if w.numel() > cap {
            return Err(limit_error("conv_weight_flip", "the weight", w.numel(), l.limits));
        }
        let n = w.numel();
        let p = Params {
            cout: w.shape[0] as u32,
            cin: w.shape[1] as u32,
            kh: w.shape[2] as u32,
            kw: w.shape[3] as u32,
            n: n as u32,
            ..Default::default()
        };
        let a = Bind::input(0, w);
        Ok(vec![Dispatch {
            shader: &SHADER,
            entry: "flip",
            params: params(&p),
            bindings: vec![a.clone(), a, Bind::output(l.output)],
            workgroups: grid_1d((n as u64).div_ceil(256), l.limits),
            constants: Vec::new(),
        }])
    }
    fn cpu(&self, inputs: &[&[f32]], descs: &[&TensorDesc], _: &TensorDesc) -> Vec<f32> {
        let [co_n, ci_n, kh, kw] = descs[0].shape[..] else { unreachable!("checked at record time") };
        let w = inputs[0];
        let mut out = Vec::with_capacity(w.len());
        for ci in 0..ci_n {
            for co in 0..co_n {
                for ky in 0..kh {
                    for kx in 0..kw {
                        out.push(w[((co * ci_n + ci) * kh + kh - 1 - ky) * kw + kw - 1 - kx]);
                    }
                }
            }
        }
        out
    }
}

// ---------------------------------------------------------------------------------------------------

/// Output channels and columns of one dw invocation's tile (`conv_dw`).
const DW_TILE: usize = 8;
/// Invocations the dw kernel should have at least (with fewer, rows are split into parts).
const DW_MIN_INVOCATIONS: usize = 16384;
/// Rows per part at least, so a part's partial sums are worth their extra pass.
const DW_MIN_ROWS_PER_PART: usize = 256;

impl Graph {
    /// The input gradient of `conv2d(x, w)` for an input of shape `x_shape`, from the output gradient `dy`.
    /// Stride 1 (with padding below the kernel size): a forward convolution of `dy` by the flipped weights;
    /// otherwise the gather kernel.
    pub fn conv2d_dx(&mut self, name: &str, dy: TensorId, w: TensorId, x_shape: [usize; 4], opts: Conv2dOpts) -> Result<TensorId> {
        let ws = self.shape(w).to_vec();
        if ws.len() == 4 && opts.stride == 1 {
            let (kh, kw) = (ws[2], ws[3]);
            if opts.pad_top < kh && opts.pad_bottom < kh && opts.pad_left < kw && opts.pad_right < kw {
                // Check the shapes first so a mistake is reported as the dx op's.
                conv_shape("conv2d_dx", &x_shape, &ws, self.desc(dy), &opts)?;
                let wf = self.op(&format!("{name}.flip"), ConvWeightFlip, &[w])?;
                let t = Conv2dOpts::asymmetric(1, kh - 1 - opts.pad_top, kh - 1 - opts.pad_bottom, kw - 1 - opts.pad_left, kw - 1 - opts.pad_right);
                return self.conv2d_auto(name, dy, wf, None, t, None);
            }
        }
        self.op(name, Conv2dDx { opts, x_shape }, &[dy, w])
    }

    /// The weight gradient `[Cout, Cin, kh, kw]` of `conv2d(x, w)` from the output gradient `dy`.
    pub fn conv2d_dw(&mut self, name: &str, dy: TensorId, x: TensorId, kh: usize, kw: usize, opts: Conv2dOpts) -> Result<TensorId> {
        let (ds, xs) = (self.desc(dy).clone(), self.desc(x).clone());
        let s = Conv2dDw { opts, kh, kw, parts: 1 }.shape(&ds, &xs)?;
        let tiles = s.cout.div_ceil(DW_TILE) * s.k().div_ceil(DW_TILE);
        let rows = s.b * s.oh * s.ow;
        let parts = (DW_MIN_INVOCATIONS / tiles).min(rows / DW_MIN_ROWS_PER_PART).max(1);
        if parts == 1 {
            return self.op(name, Conv2dDw { opts, kh, kw, parts }, &[dy, x]);
        }
        let partial = self.op(&format!("{name}.parts"), Conv2dDw { opts, kh, kw, parts }, &[dy, x])?;
        self.sum_to(name, partial, &[s.cout, s.cin, kh, kw])
    }

    /// The reverse of [`Graph::im2col`]: columns `[B·OH·OW, Cin·kh·kw]` summed back into `x_shape`.
    pub fn col2im(&mut self, name: &str, cols: TensorId, x_shape: [usize; 4], kh: usize, kw: usize, opts: Conv2dOpts) -> Result<TensorId> {
        self.op(name, Col2Im { kh, kw, opts, x_shape }, &[cols])
    }
}
