//! # cht-nn: layers, the MLP, and its one-submit training step
//!
//! Read [`Mlp::train_step`] top to bottom: forward through every layer, softmax cross-entropy,
//! backward in reverse, SGD on every parameter — all recorded on the device and sent with a single
//! submit. Parameters live in [`Mlp`]; per-batch-size buffers (activations, gradients) live in a
//! [`Workspace`], so training and evaluation can use different batch sizes.

pub mod calibrate;
mod layer;
pub mod lm;
mod mlp;
pub mod synthetic;
pub mod transformer;

pub use layer::{
    DenseLinear, Execution, ExecutionPolicy, Layer, LayerOutput, LinearInit, MaskedDense, Param,
    SparseLinear, pack,
};
pub use lm::{Lm, LmConfig, LmWorkspace, LrSchedule, SparseProjection};
pub use mlp::{Metrics, Mlp, MlpConfig, Workspace};
pub use transformer::{Block, BlockConfig, BlockWorkspace};

/// Errors of the model layer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// From the device.
    #[error(transparent)]
    Device(#[from] cht_gpu::Error),
    /// From sparse structure validation.
    #[error(transparent)]
    Sparse(#[from] cht_sparse::Error),
    /// An invalid model configuration.
    #[error("invalid model configuration: {0}")]
    Config(String),
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
