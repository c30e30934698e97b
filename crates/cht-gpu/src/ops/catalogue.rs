//! Every compute pipeline the launchers can create, listed from the launchers' own kernel
//! constants, so that tests can validate and translate exactly what reaches wgpu (see
//! `tests/backends.rs`: naga's MSL, HLSL, SPIR-V and GLSL back ends for every entry).

use crate::gpu::{Access, Kernel, family_has_runtime_checks};
use crate::ops::gemm::{self, Transpose};
use crate::ops::{
    attention, csr_build, elementwise, embedding, loss, norm, optim, predict, random, reduce, rope,
    sample, spmm, swiglu, topology,
};

/// One compute pipeline a launcher can create: shader text, entry point, override constants and
/// how wgpu gets the module.
#[doc(hidden)]
#[derive(Clone, Debug)]
pub struct ShaderPipeline {
    /// Shader file stem under `shaders/`, e.g. `"spmm"` (also the module cache key).
    pub family: &'static str,
    /// The WGSL text handed to wgpu: the launchers compose nothing, it is the file as included.
    pub source: &'static str,
    /// Entry point.
    pub entry: &'static str,
    /// Override constants the launcher sets for this pipeline.
    pub constants: Vec<(&'static str, f64)>,
    /// Whether the module is created with wgpu's runtime checks (bounds checks, loop bounding,
    /// integer-division guards); `false` for the GEMM families natively.
    pub runtime_checks: bool,
    /// Device features the module needs (empty for every kernel but the tensor-core GEMM, which
    /// needs SHADER_F16, SUBGROUP and EXPERIMENTAL_COOPERATIVE_MATRIX and is created only on
    /// devices that [`gemm::select_tensor_core_kernel`] accepted).
    pub features: wgpu::Features,
    /// Whether storage bindings 1..=n are read-only (binding 0 is the uniform parameter block).
    pub read_only: Vec<bool>,
}

/// The kernels whose launchers set no override constants.
fn plain_kernels() -> Vec<&'static Kernel> {
    vec![
        &attention::FORWARD,
        &attention::BACKWARD_DQ,
        &attention::BACKWARD_DKV,
        &csr_build::COUNT_ROWS,
        &csr_build::COUNT_COLS,
        &csr_build::SCAN,
        &csr_build::FILL_ROWS,
        &csr_build::FILL_COLS,
        &csr_build::GATHER,
        &csr_build::SCATTER,
        &csr_build::MASK,
        &elementwise::RELU_BACKWARD,
        &elementwise::BIAS_GRAD,
        &embedding::GATHER,
        &embedding::GRAD,
        &loss::XENT,
        &loss::SMOOTHED_XENT,
        &loss::METRICS,
        &norm::FORWARD,
        &norm::BACKWARD,
        &optim::KERNEL,
        &optim::ADAMW,
        &predict::COUNT,
        &predict::WEIGHTS,
        &predict::ROWS,
        &predict::COLS,
        &predict::PATHS,
        &predict::LP_PACK,
        &predict::LP_COUNT,
        &predict::LP_WEIGHTS,
        &predict::LP_DENSE,
        &predict::LP_COMBINE,
        &random::KERNEL,
        &reduce::SUM_SQUARES,
        &reduce::CLIP_FACTOR,
        &reduce::SCALE_BY,
        &reduce::SUM_SQUARES_PARTIALS,
        &reduce::ADD_ASSIGN,
        &rope::KERNEL,
        &sample::KEYS,
        &sample::HISTOGRAM,
        &sample::CHOOSE,
        &sample::TIE_COUNTS,
        &sample::MARK,
        &spmm::FORWARD,
        &spmm::BACKWARD,
        &swiglu::FORWARD,
        &swiglu::BACKWARD,
        &topology::REMOVAL_SCORES,
        &topology::ROW_SUMS,
        &topology::COL_SUMS,
        &topology::SET_LINKS,
        &topology::OR,
        &topology::ROW_ANY,
        &topology::COL_ANY,
        &topology::ZERO_ROWS,
        &topology::ZERO_COLS,
        &topology::DEFICIT,
        &topology::LIVE,
    ]
}

fn pipeline(
    kernel: &Kernel,
    entry: &'static str,
    constants: Vec<(&'static str, f64)>,
    features: wgpu::Features,
) -> ShaderPipeline {
    ShaderPipeline {
        family: kernel.family,
        source: kernel.source,
        entry,
        constants,
        runtime_checks: family_has_runtime_checks(kernel.family),
        features,
        read_only: kernel.access.iter().map(|a| *a == Access::Read).collect(),
    }
}

/// Every pipeline the launchers can create: each kernel with no override constants, the f32 GEMM
/// entries with every transpose and mask combination, and every tensor-core GEMM pipeline
/// ([`gemm::tensor_core_pipelines`]).
#[doc(hidden)]
pub fn shader_pipelines() -> Vec<ShaderPipeline> {
    let none = wgpu::Features::empty();
    let mut out: Vec<ShaderPipeline> = plain_kernels()
        .into_iter()
        .map(|k| pipeline(k, k.entry, Vec::new(), none))
        .collect();
    for kernel in [
        &gemm::KERNEL,
        &gemm::KERNEL_TILED,
        &gemm::KERNEL_LARGE,
        &gemm::KERNEL_LARGE_V4,
    ] {
        for trans_a in [Transpose::No, Transpose::Yes] {
            for trans_b in [Transpose::No, Transpose::Yes] {
                for (mask_a, mask_c) in [(false, false), (true, false), (false, true)] {
                    let constants = gemm::constants(trans_a, trans_b, mask_a, mask_c).to_vec();
                    out.push(pipeline(kernel, kernel.entry, constants, none));
                }
            }
        }
    }
    let tensor_cores = wgpu::Features::SHADER_F16
        | wgpu::Features::SUBGROUP
        | wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX;
    for (entry, constants) in gemm::tensor_core_pipelines() {
        out.push(pipeline(&gemm::KERNEL_COOP, entry, constants, tensor_cores));
    }
    out
}
