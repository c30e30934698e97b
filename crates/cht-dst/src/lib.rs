//! # cht-dst: dynamic sparse training — policies, presets and the topology update
//!
//! A [`DstScheduler`] holds everything that decides how a sparse network's topology evolves: the
//! removal rule (weight magnitude, relative importance, MEST; hard top-k or soft sampling with a
//! temperature schedule), the regrowth rule (Cannistraci-Hebb link prediction, random, gradient;
//! soft sampling or hard top-k), the removal fraction ζ, chain removal, density decay and the update
//! interval, plus the RNG state. [`DstScheduler::step`] says whether an optimizer step is a
//! topology update; [`DstScheduler::update`] then rewires every sparse layer **on the device** —
//! score, sample, chain-remove, regrow, rebuild CSR/CSC, re-gather weights and optimizer state —
//! without a readback, recorded into one submit.
//!
//! Presets reproduce the paper's methods (spec §3.2, §7): FC, SET, RigL, MEST, GMP, GraNet, CHT,
//! CHTs (path- and node-based) and CHTss; [`MlpRecipe`] and [`LlmRecipe`] are the paper's whole
//! recipes for its two tasks. To train a network, `cht_nn::DstModel` owns the scheduler, its
//! [`Topology`] scratch and the layers, and builds the [`LayerRef`]s each update needs; use the
//! scheduler directly only for a network of your own.

mod config;
mod recipe;
mod scheduler;
mod update;

pub use config::{
    ChainRemoval, DensityDistribution, DstConfig, Method, PairChains, RegrowScores, RegrownWeights,
    Regrowth, Removal, RemovalScoreKind, Selection, Updates,
};
pub use recipe::{LlmRecipe, MlpRecipe, three_quarters};
pub use scheduler::{DstScheduler, LayerReport, UpdateReport};
pub use update::{LayerRef, Topology, chain_removal, pair_chain_removal};

/// Errors of the scheduler.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// From the device.
    #[error(transparent)]
    Device(#[from] cht_gpu::Error),
    /// From a schedule.
    #[error(transparent)]
    Schedule(#[from] cht_sparse::schedule::ScheduleError),
    /// An invalid configuration, naming the field.
    #[error("invalid DST configuration: {0}")]
    Config(String),
    /// A sparse layer handed to the scheduler does not match what it manages: its shape, its
    /// link capacity (the density it was built for) or its optimizer state.
    #[error("sparse layer {layer}: {reason}")]
    Layer {
        /// Index of the layer among the scheduler's sparse layers (forward order).
        layer: usize,
        /// What does not match, in the layer's terms (`out × in`, links, density).
        reason: String,
    },
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
