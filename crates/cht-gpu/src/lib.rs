//! # cht-gpu: the device layer of cht
//!
//! A [`Device`] owns [`Tensor`]s and runs every kernel of sparse training, either on a wgpu adapter
//! (Vulkan, Metal, DX12, GL, WebGPU) or through the kernel's Rust CPU twin when there is no
//! adapter. The same calls work on both; see [`ops`] for where each kernel's WGSL, launcher and twin
//! live.
//!
//! Conventions:
//! * activations are feature-major, `[features, batch]`: a neuron's whole batch is contiguous, so
//!   sparse kernels (one link → one contiguous batch vector) read memory linearly;
//! * weights are `[out, in]`; sparse weights are CSR `values` over a [`SparsePattern`];
//! * on the GPU, ops only *record*; [`Device::submit`] sends the step (one submit per step) and
//!   reads happen only when asked for;
//! * every kernel stays within WebGPU's default limits (64- or 256-invocation workgroups, ≤ 8
//!   storage buffers, ≤ 16 KiB workgroup memory), which the native device also requests, so a
//!   kernel validated natively also runs in the browser (the tensor-core GEMM, native only,
//!   stays within them too but needs features browsers lack).

mod cpu;
mod device;
mod error;
mod gpu;
pub mod ops;
mod sparse;
mod tensor;

pub use cpu::threads as cpu_threads;
pub use device::{BackendChoice, Device, DeviceInfo, DeviceOptions, OpTime};
pub use error::{Error, Result};
pub use gpu::{AdapterFilter, AdapterSummary};
pub use ops::arena::{ArenaChunk, ParamArena, ParamSlot};
pub use ops::attention::AttentionShape;
pub use ops::csr_build::CsrBuilder;
pub use ops::embedding::TokenIndex;
pub use ops::gemm::{Gemm, GemmKernel, MaskOn, Precision, TensorCoreKernel, Transpose};
pub use ops::loss::{LabelSmoothing, METRICS_LEN};
pub use ops::optim::{AdamWStep, SgdStep};
pub use ops::rope::{RopeDirection, RopeTables};
pub use ops::spmm::{Activation, Epilogue};
pub use sparse::SparsePattern;
pub use tensor::{DType, Tensor, VIEW_ALIGN};
