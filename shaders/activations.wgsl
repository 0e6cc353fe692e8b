// Activation functions shared by every kernel that applies or fuses one. This file has no entry point:
// it is prepended to the shader files that use it (see `shader!` in src/kernels/mod.rs).
// The codes match `Activation` in src/kernels/unary.rs.

const ACT_NONE: u32 = 0u;
const ACT_SILU: u32 = 1u;
const ACT_GELU: u32 = 2u;
const ACT_GELU_TANH: u32 = 3u;
const ACT_QUICK_GELU: u32 = 4u;
const ACT_RELU: u32 = 5u;
const ACT_TANH: u32 = 6u;

// WGSL has no erf. Abramowitz & Stegun 7.1.26: absolute error below 1.5e-7 for every x.
fn erf_approx(x: f32) -> f32 {
    let z = abs(x);
    let t = 1.0 / (1.0 + 0.3275911 * z);
    let poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))));
    let y = 1.0 - poly * exp(-z * z);
    return select(y, -y, x < 0.0);
}

// Exact GELU (PyTorch's default, used by SD's GEGLU and the SD 2 text encoder).
fn gelu(x: f32) -> f32 {
    return 0.5 * x * (1.0 + erf_approx(x * 0.7071067811865476));
}

fn gelu_tanh(x: f32) -> f32 {
    return 0.5 * x * (1.0 + tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)));
}

fn silu(x: f32) -> f32 {
    return x / (1.0 + exp(-x));
}

// CLIP's quick_gelu (SD 1.x text encoder).
fn quick_gelu(x: f32) -> f32 {
    return x / (1.0 + exp(-1.702 * x));
}

// A pipeline made for one activation fixes ACT when it is created (`Dispatch::constants`); left at
// ACT_RUNTIME, `activate` switches on its argument. Why fix it: lavapipe runs both sides of every branch, so
// the runtime switch computes every activation (exp, divisions) for every element it writes.
const ACT_RUNTIME: u32 = 4294967295u;
override ACT: u32 = ACT_RUNTIME;

// The activation a kernel applies: ACT where the pipeline fixed it, else the code it was given. Kernels that
// branch on the code themselves (GroupNorm's SiLU fast paths) read it through this too.
fn act_code(act: u32) -> u32 {
    return select(act, ACT, ACT != ACT_RUNTIME);
}

fn activate(x: f32, act: u32) -> f32 {
    switch act_code(act) {
        case 1u: { return silu(x); }
        case 2u: { return gelu(x); }
        case 3u: { return gelu_tanh(x); }
        case 4u: { return quick_gelu(x); }
        case 5u: { return max(x, 0.0); }
        case 6u: { return tanh(x); }
        default: { return x; }
    }
}
