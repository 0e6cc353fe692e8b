//! GPU kernel tests: every kernel against its CPU twin, on random inputs of awkward sizes and at real
//! Stable Diffusion shapes. One test binary (one link) for all families; each family is a module.
//! They run on whatever adapter wgpu picks (lavapipe on CI) and fail, not skip, without one.

mod attention;
mod attention_backward;
mod backward;
mod conv2d;
mod conv2d_backward;
mod elementwise;
mod elementwise_backward;
mod executor;
mod im2col;
mod linear_geglu;
mod matmul;
mod norm;
mod norm_backward;
mod optimizer;
mod resample;
mod winograd;
