//! One error type for the whole crate. Every variant says *what* failed in terms a user can act on:
//! the op and node, the shapes involved, the device limit, or the driver to install.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    /// No usable GPU adapter: tells the user what to install.
    #[error("no GPU adapter found{detail}. wgsd needs a Vulkan, Metal or DX12 driver; on Linux without a GPU install Mesa's CPU Vulkan driver: `sudo apt-get install mesa-vulkan-drivers libvulkan1` (Debian/Ubuntu) or `dnf install mesa-vulkan-drivers vulkan-loader` (Fedora)")]
    NoAdapter { detail: String },

    /// An adapter was asked for by name or backend and none matched.
    #[error("no GPU adapter matches {wanted}; available: {available}")]
    AdapterNotFound { wanted: String, available: String },

    /// An op was recorded with inputs it cannot take.
    #[error("{op}: {msg}")]
    Shape { op: String, msg: String },

    /// An op was given a dtype its kernels do not implement.
    #[error("{op}: dtype mismatch: {msg}")]
    DType { op: String, msg: String },

    /// A tensor or binding is larger than the device allows and the op cannot split it.
    #[error("{op}: {what} needs {needed} bytes but the device limit {limit_name} is {limit} bytes{hint}")]
    Limit {
        op: String,
        what: String,
        needed: u64,
        limit_name: &'static str,
        limit: u64,
        hint: String,
    },

    /// A weight file that cannot be used: unreadable, truncated, corrupt, a tensor missing or mis-shaped.
    #[error("{file}: {msg}")]
    Weights { file: String, msg: String },

    /// A model config that cannot be read, or holds a value wgsd does not support.
    #[error("{file}: {msg}")]
    Config { file: String, msg: String },

    /// A user input file (init image, mask, depth map) that cannot be used: unreadable, or of the wrong size.
    #[error("{file}: {msg}")]
    Input { file: String, msg: String },

    /// Misuse of the graph API (unknown tensor id, wrong data length, ...).
    #[error("{0}")]
    Usage(String),

    /// A computation produced NaN or infinity (the message names where and the likely cause); nothing is
    /// saved.
    #[error("{0}; no image was written")]
    Numeric(String),

    /// The driver reported an error (validation, out of memory, device lost).
    #[error("GPU error{context}: {msg}")]
    Gpu { context: String, msg: String },
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn shape(op: impl Into<String>, msg: impl Into<String>) -> Self {
        Error::Shape { op: op.into(), msg: msg.into() }
    }
    pub fn usage(msg: impl Into<String>) -> Self {
        Error::Usage(msg.into())
    }
}
