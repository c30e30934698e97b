//! # cht-nn: layers, models, their one-submit training steps, and training them with DST
//!
//! Start at [`DstModel`]: a network ([`Mlp`] or [`Lm`], or any [`Network`]) trained with dynamic
//! sparse training — it owns the network, its optimizer state and the scheduler, and its
//! [`DstModel::train_step`] is either an ordinary step or a topology update. [`SparseMlp`] and
//! [`SparseLm`] build the paper's two networks from a `cht_dst::DstConfig`.
//!
//! Underneath, read [`Mlp::train_step`] top to bottom: forward through every layer, softmax
//! cross-entropy, backward in reverse, SGD on every parameter — all recorded on the device and
//! sent with a single submit. Parameters live in [`Mlp`]; per-batch-size buffers (activations,
//! gradients) live in a [`Workspace`], so training and evaluation can use different batch sizes.

pub mod calibrate;
pub mod data_parallel;
mod dst_model;
mod layer;
pub mod lm;
mod mlp;
pub mod synthetic;
pub mod transformer;

pub use data_parallel::{CommStats, DataParallel, Gradient, Live};
pub use dst_model::{
    DstModel, LmOptimizer, MlpInit, Network, PROJECTIONS, SparseLm, SparseMlp, SparseMlpConfig,
};
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
    /// From the DST scheduler (a layer that does not match it, a schedule, a configuration).
    #[error(transparent)]
    Dst(#[from] cht_dst::Error),
    /// From a collective of data-parallel training (a rank stopped, a timeout).
    #[error(transparent)]
    Collective(#[from] cht_dist::Error),
    /// Data-parallel ranks no longer hold the same model.
    #[error("data-parallel ranks diverged: {0}")]
    Diverged(String),
    /// An invalid model configuration.
    #[error("invalid model configuration: {0}")]
    Config(String),
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
