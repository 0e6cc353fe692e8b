//! The WGSL kernel library. One shader file per kernel family in `shaders/`, one Rust file per family here
//! holding its ops (shape checks, lowering to dispatches) and their CPU twins.
//!
//! Conventions every shader follows (so the executor can bind any of them the same way):
//! - `@group(0) @binding(0)` is a `var<uniform>` params struct with the shapes; shapes never appear in the
//!   shader text, so there is one pipeline per entry point, not per shape;
//! - bindings 1, 2, ... are the storage buffers in the order the op's `Dispatch::bindings` lists them;
//! - workgroup ids past the end of the work are ignored (grids are rounded up and may be 2-D, see
//!   [`grid_1d`](crate::graph::op::grid_1d));
//! - a tensor may be bound as a sub-range (`Bind::elements`); the kernel adds the given shift to its indices.

pub mod attention;
pub mod attention_backward;
pub mod attention_rowwise;
pub mod binary;
pub mod conv2d;
pub mod conv2d_backward;
pub mod elementwise_backward;
pub mod embedding;
pub mod im2col;
pub mod linear_geglu;
pub mod loss;
pub mod matmul;
pub mod norm;
pub mod norm_backward;
pub mod reduce;
pub mod resample;
pub mod unary;
pub mod weight_storage;
pub mod winograd;

/// Refuses inputs that are not f32 (the kernels these ops lower to take f32), naming the op and the input.
pub(crate) fn check_f32(op: &str, ds: &[&crate::tensor::TensorDesc]) -> crate::error::Result<()> {
    for d in ds {
        if d.dtype != crate::tensor::DType::F32 {
            return Err(crate::error::Error::DType { op: op.into(), msg: format!("input is {d}; this kernel takes f32") });
        }
    }
    Ok(())
}

/// A WGSL source file of the library.
#[derive(Debug)]
pub struct ShaderSource {
    /// File stem in `shaders/`, also the cache key.
    pub name: &'static str,
    pub source: &'static str,
}

/// `shader!("name")` embeds `shaders/name.wgsl`; `shader!("name", with_activations)` prepends
/// `shaders/activations.wgsl` (WGSL has no includes).
macro_rules! shader {
    ($name:literal) => {
        $crate::kernels::ShaderSource { name: $name, source: include_str!(concat!("../../shaders/", $name, ".wgsl")) }
    };
    ($name:literal, with_activations) => {
        $crate::kernels::ShaderSource {
            name: $name,
            source: concat!(
                include_str!("../../shaders/activations.wgsl"),
                include_str!(concat!("../../shaders/", $name, ".wgsl"))
            ),
        }
    };
}
pub(crate) use shader;

impl ShaderSource {
    /// The bindings among `bindings` this shader declares as read-only storage buffers.
    pub fn read_only_bindings(&self, bindings: &[u32]) -> Vec<u32> {
        bindings.iter().copied().filter(|b| self.source.contains(&read_only_decl(*b))).collect()
    }

    /// The variant of this shader that declares storage `bindings` read-write instead of read-only, for a
    /// dispatch whose input lies in the buffer its output is written to: wgpu refuses one buffer bound
    /// both ways in one dispatch, and a binding's access must match the shader's declaration.
    pub fn writable_bindings(&self, bindings: &[u32]) -> ShaderSource {
        let mut source = self.source.to_string();
        for &b in bindings {
            source = source.replace(&read_only_decl(b), &format!("@binding({b}) var<storage, read_write>"));
        }
        let list: Vec<String> = bindings.iter().map(|b| b.to_string()).collect();
        ShaderSource {
            name: Box::leak(format!("{}.rw{}", self.name, list.join("_")).into_boxed_str()),
            source: Box::leak(source.into_boxed_str()),
        }
    }
}

fn read_only_decl(binding: u32) -> String {
    format!("@binding({binding}) var<storage, read>")
}

/// Every shader file, for validation and translation tests.
pub fn all_shaders() -> Vec<&'static ShaderSource> {
    vec![
        &unary::SHADER,
        &im2col::SHADER,
        &binary::SHADER,
        &embedding::SHADER,
        &norm::SHADER,
        &norm_backward::SHADER,
        &conv2d::SHADER,
        &conv2d::SHADER_SUBGROUP,
        &conv2d_backward::SHADER,
        &attention::SHADER,
        &attention::SHADER_SUBGROUP,
        &*attention::SHADER_SUBGROUP_TEX,
        &attention_rowwise::SHADER,
        &attention_backward::SHADER,
        &matmul::SHADER,
        &matmul::SUBGROUP_SHADER,
        &*matmul::SHADER_F16W,
        &*matmul::SUBGROUP_SHADER_F16W,
        &*conv2d::SHADER_F16W,
        &*conv2d::SHADER_SUBGROUP_F16W,
        &*conv2d::SHADER_F16WX,
        &*conv2d::SHADER_SUBGROUP_F16WX,
        &*conv2d::SHADER_SUBGROUP_TEX,
        &*matmul::SUBGROUP_SHADER_TEX,
        &*binary::SHADER_F16A,
        &resample::SHADER,
        &reduce::SHADER,
        &crate::train::optimizer::SHADER,
        &elementwise_backward::SHADER,
        &loss::SHADER,
        &winograd::SHADER,
        &*winograd::SHADER_F16W,
        &*winograd::SHADER_TEX,
    ]
}

#[cfg(test)]
mod tests {
    use super::ShaderSource;

    #[test]
    fn writable_bindings_change_only_the_given_read_only_declarations() {
        let src = ShaderSource {
            name: "t",
            source: "@group(0) @binding(1) var<storage, read> x: array<f32>;\n@group(0) @binding(1) var<storage, read> x4: array<vec4<f32>>;\n\
                     @group(0) @binding(2) var<storage, read> r: array<f32>;\n@group(0) @binding(3) var<storage, read_write> out: array<f32>;\n",
        };
        assert_eq!(src.read_only_bindings(&[1, 2, 3, 4]), vec![1, 2]);
        let v = src.writable_bindings(&[1]);
        assert_eq!(v.name, "t.rw1");
        assert!(v.source.contains("@binding(1) var<storage, read_write> x: array<f32>;"));
        assert!(v.source.contains("@binding(1) var<storage, read_write> x4: array<vec4<f32>>;"));
        assert!(v.source.contains("@binding(2) var<storage, read> r: array<f32>;"));
        assert_eq!(v.read_only_bindings(&[1, 2, 3]), vec![2]);
        assert_eq!(src.writable_bindings(&[1, 2]).name, "t.rw1_2");
    }
}
