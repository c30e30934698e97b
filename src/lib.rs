//! # cht-train — Cannistraci-Hebb dynamic sparse training on any GPU
//!
//! Brain-inspired dynamic sparse training (CHT, CHTs, CHTss; arXiv 2501.19107) and the classic
//! methods (SET, RigL, MEST, GMP, GraNet) on any GPU through wgpu — Vulkan, Metal, DX12, GL,
//! WebGPU — or on the CPU, natively and in the browser (wasm32).
//!
//! ```toml
//! [dependencies]
//! cht-train = "0.1"
//! ```
//!
//! Train an MLP with SET (the CH methods work the same way; their CSTI start reads the inputs'
//! correlation, see README.md and `examples/train_mlp.rs`) and read its topology metrics:
//!
//! ```
//! use cht_train::prelude::*;
//!
//! let device = Device::cpu(); // or Device::open_blocking(&DeviceOptions::default())?
//! let dst = MlpRecipe::new(Method::Set, 0.1)
//!     .epochs(2)
//!     .steps_per_epoch(10)
//!     .build();
//! let mut model = SparseMlp::new(&device, &SparseMlpConfig::new(vec![16, 32, 4], dst))?;
//! let ws = model.network().workspace(&device, 8);
//! let (x, labels) = (vec![0.1f32; 16 * 8], vec![1u32; 8]);
//! for _ in 0..20 {
//!     model.network().load_batch(&device, &ws, &x, &labels)?;
//!     if let Some(report) = model.train_step(&device, &ws, SgdStep::new(0.05, 0.9, 5e-4))? {
//!         println!("step {}: rewired {} layers", report.step, report.layers.len());
//!     }
//! }
//! println!("{}", model.summary()); // per layer: links, density, ANP, ITOP
//! # Ok::<(), cht_train::Error>(())
//! ```
//!
//! The crates underneath, re-exported here:
//! * [`sparse`] — validated sparse patterns (CSR, CSC permutation, masks), link prediction on
//!   the CPU, schedules, initialisers and the counter-based RNG;
//! * [`gpu`] — the [`gpu::Device`] (a wgpu adapter or the CPU twins) and every kernel;
//! * [`dst`] — the scheduler: presets, the paper's recipes ([`dst::MlpRecipe`],
//!   [`dst::LlmRecipe`]) and the topology update on the device;
//! * [`nn`] — layers, the MLP and the language model, and [`nn::DstModel`], which trains any of
//!   them under a scheduler (data-parallel over several ranks with
//!   [`nn::DstModel::set_collective`]);
//! * [`dist`] — the collectives of data-parallel training: in-process ranks, and MPI with the
//!   `mpi` feature.
//!
//! Every fallible call returns [`Error`] (or converts into it with `?`). The examples in
//! `examples/` show a whole run, scoring a mask with link prediction, a custom training loop
//! and the browser API.

pub use cht_dist as dist;
pub use cht_dst as dst;
pub use cht_gpu as gpu;
pub use cht_nn as nn;
pub use cht_sparse as sparse;

/// The names most programs need: `use cht_train::prelude::*;`.
pub mod prelude {
    pub use crate::{Error, Result};
    pub use cht_dst::{DstConfig, DstScheduler, LlmRecipe, Method, MlpRecipe, Updates};
    pub use cht_gpu::{AdamWStep, BackendChoice, Device, DeviceOptions, SgdStep};
    pub use cht_nn::{
        DstModel, ExecutionPolicy, LmConfig, LmOptimizer, Metrics, MlpInit, Network, SparseLm,
        SparseMlp, SparseMlpConfig,
    };
    pub use cht_sparse::{CsrPattern, Mask};
}

/// Any error of the crates underneath, one enum to `?` through.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Sparse structure validation (a pattern, a mask).
    #[error(transparent)]
    Sparse(#[from] cht_sparse::Error),
    /// A topology or weight initialiser (e.g. CSTI's input correlation).
    #[error(transparent)]
    Init(#[from] cht_sparse::init::InitError),
    /// A schedule's input (ζ, temperature, density decay).
    #[error(transparent)]
    Schedule(#[from] cht_sparse::schedule::ScheduleError),
    /// A removal count or score.
    #[error(transparent)]
    Removal(#[from] cht_sparse::removal::RemovalError),
    /// Chain removal over layers that do not chain.
    #[error(transparent)]
    Chain(#[from] cht_sparse::chain::ChainError),
    /// A mask file (`.npy` or text).
    #[error(transparent)]
    MaskFile(#[from] cht_sparse::mask_io::MaskFileError),
    /// The device: adapter, buffers, shapes of a kernel's operands.
    #[error(transparent)]
    Device(#[from] cht_gpu::Error),
    /// The scheduler: its configuration, a layer that does not match it.
    #[error(transparent)]
    Dst(#[from] cht_dst::Error),
    /// A collective of data-parallel training.
    #[error(transparent)]
    Dist(#[from] cht_dist::Error),
    /// The models: their configuration and layers.
    #[error(transparent)]
    Nn(#[from] cht_nn::Error),
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The Rust blocks of README.md, compiled and run as doctests so that they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
