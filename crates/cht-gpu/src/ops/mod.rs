//! One module per kernel family: its WGSL (from `shaders/`), its launcher on [`crate::Device`], its
//! CPU twin (the reference in tests and the CPU backend), and unit tests of the twin.
//!
//! | module        | shader                   | ops |
//! |---------------|--------------------------|-----|
//! | `spmm`        | `shaders/spmm.wgsl`      | sparse forward, sparse input gradient |
//! | `sddmm`       | `shaders/sddmm.wgsl`     | sparse weight gradient |
//! | `gemm`        | `shaders/gemm.wgsl`      | dense and masked-dense products |
//! | `elementwise` | `shaders/elementwise.wgsl` | ReLU backward, bias gradient |
//! | `loss`        | `shaders/loss.wgsl`      | softmax cross-entropy, metric sums |
//! | `optim`       | `shaders/optim.wgsl`     | SGD with momentum and weight decay, AdamW |
//! | `arena`       | `shaders/optim.wgsl`, `reduce.wgsl` | fused AdamW / SGD over every parameter, clipping |
//! | `norm`        | `shaders/norm.wgsl`      | RMSNorm forward and backward |
//! | `rope`        | `shaders/rope.wgsl`      | rotary position embeddings, forward and backward |
//! | `swiglu`      | `shaders/swiglu.wgsl`    | SwiGLU gating, forward and backward |
//! | `embedding`   | `shaders/embedding.wgsl` | token embedding gather and its atomic-free gradient |
//! | `attention`   | `shaders/attention.wgsl` | causal multi-head attention, forward and backward |
//! | `reduce`      | `shaders/reduce.wgsl`    | global-norm gradient clipping, residual adds |
//! | `csr_build`   | `shaders/csr_build.wgsl` | CSR/CSC from a mask, gather/scatter values |
//! | `random`      | `shaders/random.wgsl`    | counter-based RNG fill |
//! | `predict`     | `shaders/ch_link.wgsl`   | CH link prediction (L3n by sparse walk or dense products, L3p) |
//! | `topology`    | `shaders/topology.wgsl`  | removal scores, mask edits, chain sweeps |
//! | `sample`      | `shaders/sample.wgsl`    | sampling keys, exact top-k selection |

pub mod arena;
pub mod attention;
#[doc(hidden)]
pub mod catalogue;
pub mod csr_build;
pub mod elementwise;
pub mod embedding;
pub mod gemm;
pub mod loss;
pub mod norm;
pub mod optim;
pub mod predict;
pub mod random;
pub mod reduce;
pub mod rope;
pub mod sample;
pub mod sddmm;
pub mod spmm;
pub mod swiglu;
pub mod topology;

/// Invocations per workgroup of the 1-D kernels (`WG` in the shaders).
pub(crate) const WG: usize = 64;

/// Workgroup grid for `threads` invocations of a 1-D kernel with `WG` lanes. Grids wider than the
/// 65535 limit wrap into a second dimension; shaders rebuild the linear index from `num_workgroups`.
pub(crate) fn grid_1d(threads: usize) -> [u32; 3] {
    grid_1d_wg(threads, WG)
}

/// [`grid_1d`] for kernels with `wg` invocations per workgroup.
pub(crate) fn grid_1d_wg(threads: usize, wg: usize) -> [u32; 3] {
    let groups = threads.div_ceil(wg);
    const MAX: usize = 65_535;
    if groups <= MAX {
        [groups as u32, 1, 1]
    } else {
        [MAX as u32, groups.div_ceil(MAX) as u32, 1]
    }
}

/// Views a parameter struct as the bytes of its uniform block.
pub(crate) fn bytes<T: bytemuck::Pod>(params: &T) -> &[u8] {
    bytemuck::bytes_of(params)
}
