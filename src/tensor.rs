//! Tensor descriptions: shape and element type. Data lives on the GPU (see `graph::plan`) or in host
//! `Vec<f32>`s for the CPU twins; this file only describes it.

use std::fmt;

/// Element type of a tensor as stored in GPU memory. Kernels accumulate in f32 whatever the storage.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    F32,
    /// Half-precision storage (f32 accumulation); kernels for it are added family by family.
    F16,
}

impl DType {
    pub fn size_bytes(self) -> u64 {
        match self {
            DType::F32 => 4,
            DType::F16 => 2,
        }
    }
}

/// Shape and dtype of a tensor. Shapes are row-major (the last dimension is contiguous), NCHW for images.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct TensorDesc {
    pub shape: Vec<usize>,
    pub dtype: DType,
}

impl TensorDesc {
    pub fn f32(shape: &[usize]) -> Self {
        TensorDesc { shape: shape.to_vec(), dtype: DType::F32 }
    }
    pub fn new(shape: &[usize], dtype: DType) -> Self {
        TensorDesc { shape: shape.to_vec(), dtype }
    }
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
    pub fn bytes(&self) -> u64 {
        self.numel() as u64 * self.dtype.size_bytes()
    }
    pub fn rank(&self) -> usize {
        self.shape.len()
    }
    /// Size of dimension `d`; negative `d` counts from the end like PyTorch.
    pub fn dim(&self, d: isize) -> usize {
        let r = self.shape.len() as isize;
        let i = if d < 0 { r + d } else { d };
        self.shape[i as usize]
    }
}

impl fmt::Debug for TensorDesc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}{:?}", self.dtype, self.shape)
    }
}

impl fmt::Display for TensorDesc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dims: Vec<String> = self.shape.iter().map(|d| d.to_string()).collect();
        let dt = match self.dtype {
            DType::F32 => "f32",
            DType::F16 => "f16",
        };
        write!(f, "{}[{}]", dt, dims.join("×"))
    }
}
