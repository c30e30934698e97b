//! # cht — Cannistraci-Hebb dynamic sparse training on any GPU
//!
//! The facade crate: `cargo add cht` and use
//! * [`sparse`] — validated sparse patterns (CSR, CSC permutation, masks) and the counter-based RNG;
//! * [`gpu`] — the [`gpu::Device`] (wgpu adapter or CPU twins) and every kernel;
//! * [`dst`] — the dynamic sparse training scheduler: presets (FC, SET, RigL, MEST, GMP, GraNet,
//!   CHT, CHTs, CHTss) and the topology update, run on the device;
//! * [`nn`] — sparse and dense layers, the MLP and its one-submit training step.
//!
//! See README.md for the command-line tool and `docs/` for benchmarks.

pub use cht_dst as dst;
pub use cht_gpu as gpu;
pub use cht_nn as nn;
pub use cht_sparse as sparse;
