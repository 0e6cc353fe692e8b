//! Weight storage variants of one shader source, so f32 and f16 weights share every line of kernel code.
//!
//! A kernel that reads a weight tensor declares it on one line and reads it only through an accessor
//! defined on the next:
//!
//! ```wgsl
//! @group(0) @binding(2) var<storage, read> wt: array<f32>;
//! fn wt_at(i: u32) -> f32 { return wt[i]; }
//! ```
//!
//! [`ShaderSource::f16_weights`] derives the variant that reads the same tensor stored as IEEE halves,
//! two per 32-bit word (element `i` in half `i % 2` of word `i / 2`, the byte order of a little-endian f16
//! array), by replacing those two lines:
//!
//! ```wgsl
//! @group(0) @binding(2) var<storage, read> wt: array<u32>;
//! fn wt_at(i: u32) -> f32 { return unpack2x16float(wt[i >> 1u])[i & 1u]; }
//! ```
//!
//! A kernel that reads 4 consecutive weights at a time declares the tensor as `array<vec4<f32>>` with the
//! accessor `fn wt_at4(i: u32) -> vec4<f32> { return wt[i]; }` (`i` counts groups of 4); its f16 variant
//! reads the group as two words, `array<vec2<u32>>`.
//!
//! [`ShaderSource::texture_reads`] derives the variant that reads the binding from a 2-D read-only storage
//! texture instead (CPU adapters: see below), `rgba32float`, or `rgba16float` where the data is f16
//! ([`ShaderSource::half_texels`]); `textureLoad` widens both to f32. The executor copies the bound range of
//! the tensor into the texture right before the dispatch ([`crate::graph::op::Bind::texture`]),
//! [`TEXEL_ROW`] texels (4 values each) per texture row, so element `i` of the binding is component `i % 4`
//! of texel `i / 4`:
//!
//! ```wgsl
//! @group(0) @binding(2) var wt: texture_storage_2d<rgba32float, read>;
//! fn wt_at(i: u32) -> f32 { return textureLoad(wt, vec2<u32>((i >> 2u) & 4095u, i >> 14u))[i & 3u]; }
//! ```
//!
//! Why textures: lavapipe (Mesa 22.3) builds a lane-varying storage-buffer load lane by lane, inserting
//! each value into the result vector through memory; without AVX-512 every insert is a store-forwarding
//! stall (~70 cycles per vec4 per lane measured on a Zen 3 CPU), while a texel fetch is a gather with fixed
//! lane positions (~11 cycles). The copy costs a memcpy of the range, small beside the kernels that read
//! each value many times. Why storage textures rather than sampled ones: lavapipe fetches a sampled
//! texel through a call that handles a mip level per lane (each lane's row stride and level offset are
//! gathered too); an image load has no level and is inlined. Measured on a Zen 3 CPU, the f32 GEGLU
//! projection (8192×320 · (2560×320)ᵀ, `bench kernels --filter linear`): 525 → 420 ms.
//!
//! Why packed words rather than `array<f16>`: `unpack2x16float` is core WGSL, so the half-size weights
//! work on every adapter, `SHADER_F16` or not, and the kernel keeps accumulating in f32. Element indices,
//! and the element shifts of sub-range bindings (`Bind::elements`), keep their meaning: a binding starts
//! on a 4-byte boundary, so element 0 of a binding is the low half of its word 0.

use super::ShaderSource;

/// Texels per row of a texture-read binding (a power of two: the accessors split indices with shifts).
pub const TEXEL_ROW: u32 = 4096;
const TEXEL_ROW_SHIFT: u32 = TEXEL_ROW.trailing_zeros();

/// How a weight binding is read: one value or four consecutive values at a time.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Width {
    Scalar,
    Vec4,
}

impl Width {
    fn f32_type(self) -> &'static str {
        match self {
            Width::Scalar => "array<f32>",
            Width::Vec4 => "array<vec4<f32>>",
        }
    }

    fn f32_accessor(self, var: &str) -> String {
        match self {
            Width::Scalar => format!("fn {var}_at(i: u32) -> f32 {{ return {var}[i]; }}"),
            Width::Vec4 => format!("fn {var}_at4(i: u32) -> vec4<f32> {{ return {var}[i]; }}"),
        }
    }

    fn f16_type(self) -> &'static str {
        match self {
            Width::Scalar => "array<u32>;  // f16 pairs",
            Width::Vec4 => "array<vec2<u32>>;  // f16 quadruples",
        }
    }

    fn f16_accessor(self, var: &str) -> String {
        match self {
            Width::Scalar => format!("fn {var}_at(i: u32) -> f32 {{ return unpack2x16float({var}[i >> 1u])[i & 1u]; }}"),
            Width::Vec4 => format!(
                "fn {var}_at4(i: u32) -> vec4<f32> {{ let h = {var}[i]; return vec4<f32>(unpack2x16float(h.x), unpack2x16float(h.y)); }}"
            ),
        }
    }
}

/// The two lines of an f32 weight binding `var` in `src` and how it is read, or a description of what is
/// missing.
fn f32_lines(src: &str, var: &str) -> Result<(String, String, Width), String> {
    for width in [Width::Scalar, Width::Vec4] {
        let decl = src.lines().find(|l| {
            l.contains("var<storage, read>") && l.trim_end().ends_with(&format!(" {var}: {};", width.f32_type()))
        });
        let Some(decl) = decl else { continue };
        let accessor = width.f32_accessor(var);
        if !src.lines().any(|l| l.trim() == accessor) {
            return Err(format!("no accessor `{accessor}`"));
        }
        return Ok((decl.to_string(), accessor, width));
    }
    Err(format!("no line declaring `{var}: array<f32>` or `{var}: array<vec4<f32>>` as read-only storage"))
}

impl ShaderSource {
    /// The variant of this shader that reads weight binding `var` as packed f16 (see the module docs).
    /// Panics when the shader does not follow the convention: a mistake in the kernel library, which
    /// `tests/shaders.rs` reports by name.
    pub fn f16_weights(&self, var: &str) -> ShaderSource {
        let (decl, accessor, width) = f32_lines(self.source, var)
            .unwrap_or_else(|e| panic!("shaders/{}.wgsl cannot take f16 weights for `{var}`: {e}", self.name));
        let f16_decl = decl.replace(&format!("{};", width.f32_type()), width.f16_type());
        let source = self.source.replacen(&decl, &f16_decl, 1).replacen(&accessor, &width.f16_accessor(var), 1);
        ShaderSource {
            name: Box::leak(format!("{}.f16w", self.name).into_boxed_str()),
            source: Box::leak(source.into_boxed_str()),
        }
    }
}

impl ShaderSource {
    /// The variant of this shader that reads each of `vars` (f32 bindings following the accessor
    /// convention) from a texture (see the module docs). Panics like [`ShaderSource::f16_weights`].
    pub fn texture_reads(&self, vars: &[&str]) -> ShaderSource {
        let mut source = self.source.to_string();
        for var in vars {
            let (decl, accessor, width) = f32_lines(&source, var)
                .unwrap_or_else(|e| panic!("shaders/{}.wgsl cannot read `{var}` from a texture: {e}", self.name));
            let binding = decl.split("var<storage, read>").next().unwrap_or_default();
            let tex_decl = format!("{binding}var {var}: {F32_TEXTURE};");
            let (mask, shift) = (TEXEL_ROW - 1, TEXEL_ROW_SHIFT);
            let tex_accessor = match width {
                Width::Scalar => format!(
                    "fn {var}_at(i: u32) -> f32 {{ return textureLoad({var}, vec2<u32>((i >> 2u) & {mask}u, i >> {}u))[i & 3u]; }}",
                    shift + 2
                ),
                Width::Vec4 => format!(
                    "fn {var}_at4(i: u32) -> vec4<f32> {{ return textureLoad({var}, vec2<u32>(i & {mask}u, i >> {shift}u)); }}"
                ),
            };
            source = source.replacen(&decl, &tex_decl, 1).replacen(&accessor, &tex_accessor, 1);
        }
        ShaderSource {
            name: Box::leak(format!("{}.tex", self.name).into_boxed_str()),
            source: Box::leak(source.into_boxed_str()),
        }
    }

    /// The variant of a [`texture_reads`](ShaderSource::texture_reads) shader whose texture `bindings`
    /// hold f16 texels (`rgba16float`): a storage texture's declaration names its format.
    pub fn half_texels(&self, bindings: &[u32]) -> ShaderSource {
        let lines: Vec<String> = self
            .source
            .lines()
            .map(|line| {
                let texture_of = |b: &u32| line.contains(&format!("@binding({b}) var ")) && line.contains(F32_TEXTURE);
                if bindings.iter().any(texture_of) { line.replace(F32_TEXTURE, F16_TEXTURE) } else { line.to_string() }
            })
            .collect();
        let list: Vec<String> = bindings.iter().map(|b| b.to_string()).collect();
        ShaderSource {
            name: Box::leak(format!("{}.h{}", self.name, list.join("_")).into_boxed_str()),
            source: Box::leak((lines.join("\n") + "\n").into_boxed_str()),
        }
    }
}

/// How [`ShaderSource::texture_reads`] declares a binding, and [`ShaderSource::half_texels`] one holding f16.
const F32_TEXTURE: &str = "texture_storage_2d<rgba32float, read>";
const F16_TEXTURE: &str = "texture_storage_2d<rgba16float, read>";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derives_the_packed_reader_and_refuses_a_shader_without_the_convention() {
        let src = ShaderSource {
            name: "t",
            source: "@group(0) @binding(2) var<storage, read> w: array<f32>;\nfn w_at(i: u32) -> f32 { return w[i]; }\n",
        };
        let v = src.f16_weights("w");
        assert_eq!(v.name, "t.f16w");
        assert!(v.source.contains("var<storage, read> w: array<u32>;"));
        assert!(v.source.contains("unpack2x16float(w[i >> 1u])[i & 1u]"));
        assert!(!v.source.contains("array<f32>"));
        let bare = ShaderSource { name: "u", source: "@group(0) @binding(2) var<storage, read> w: array<f32>;\n" };
        assert!(f32_lines(bare.source, "w").unwrap_err().contains("no accessor"));
        assert!(f32_lines(bare.source, "v").is_err());
        let src4 = ShaderSource {
            name: "t4",
            source: "@group(0) @binding(2) var<storage, read> w: array<vec4<f32>>;\nfn w_at4(i: u32) -> vec4<f32> { return w[i]; }\n",
        };
        let v = src4.f16_weights("w");
        assert!(v.source.contains("var<storage, read> w: array<vec2<u32>>;"), "{}", v.source);
        assert!(v.source.contains("vec4<f32>(unpack2x16float(h.x), unpack2x16float(h.y))"));
        assert!(!v.source.contains("f32>>"));
    }

    #[test]
    fn derives_texture_readers_for_both_widths() {
        let src = ShaderSource {
            name: "t",
            source: "@group(0) @binding(2) var<storage, read> w: array<f32>;\nfn w_at(i: u32) -> f32 { return w[i]; }\n\
                     @group(0) @binding(2) var<storage, read> w4: array<vec4<f32>>;\nfn w4_at4(i: u32) -> vec4<f32> { return w4[i]; }\n",
        };
        let v = src.texture_reads(&["w", "w4"]);
        assert_eq!(v.name, "t.tex");
        assert!(v.source.contains("@group(0) @binding(2) var w: texture_storage_2d<rgba32float, read>;"), "{}", v.source);
        assert!(v.source.contains("textureLoad(w, vec2<u32>((i >> 2u) & 4095u, i >> 14u))[i & 3u]"));
        assert!(v.source.contains("textureLoad(w4, vec2<u32>(i & 4095u, i >> 12u))"));
        assert!(!v.source.contains("var<storage"));
        // f16 texels for binding 2 only: both of its declarations change, nothing else.
        let two = ShaderSource { name: "t2", source: Box::leak(format!("{}@group(0) @binding(3) var<storage, read> x: array<f32>;\nfn x_at(i: u32) -> f32 {{ return x[i]; }}\n", src.source).into_boxed_str()) };
        let both = two.texture_reads(&["w", "w4", "x"]);
        let h = both.half_texels(&[2]);
        assert_eq!(h.name, "t2.tex.h2");
        assert_eq!(h.source.matches("texture_storage_2d<rgba16float, read>").count(), 2, "{}", h.source);
        assert!(h.source.contains("@binding(3) var x: texture_storage_2d<rgba32float, read>;"), "{}", h.source);
        assert_eq!(h.source.lines().count(), both.source.lines().count());
    }
}
