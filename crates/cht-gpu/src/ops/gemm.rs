//! Dense and masked-dense GEMM `C = op(A)·op(B)` with a fused epilogue; shaders
//! `shaders/gemm.wgsl` (f32 kernels) and `shaders/gemm_coop.wgsl` (tensor cores, native only).

use crate::cpu::Simd;
use crate::device::{Backend, Device};
use crate::error::{Error, Result, shape_err};
use crate::gpu::{Access, Gpu, Kernel};
use crate::ops::bytes;
use crate::ops::spmm::{Activation, epilogue_flags};
use crate::tensor::{DType, Tensor, as_f32, as_f32_mut};

const ACCESS: &[Access] = &[
    Access::Read,
    Access::Read,
    Access::Read,
    Access::Read,
    Access::ReadWrite,
];
pub(crate) const KERNEL: Kernel = Kernel {
    family: "gemm",
    source: include_str!("../../shaders/gemm.wgsl"),
    entry: "gemm",
    access: ACCESS,
};
pub(crate) const KERNEL_TILED: Kernel = Kernel {
    entry: "gemm_tiled",
    ..KERNEL
};
pub(crate) const KERNEL_LARGE: Kernel = Kernel {
    entry: "gemm_large",
    ..KERNEL
};
pub(crate) const KERNEL_LARGE_V4: Kernel = Kernel {
    entry: "gemm_large_v4",
    ..KERNEL
};
/// WGSL of the tensor-core kernels (`shaders/gemm_coop.wgsl`), public for validation tests.
pub const TENSOR_CORE_WGSL: &str = include_str!("../../shaders/gemm_coop.wgsl");
pub(crate) const KERNEL_COOP: Kernel = Kernel {
    family: "gemm_coop",
    source: TENSOR_CORE_WGSL,
    entry: "gemm_coop16",
    access: ACCESS,
};
/// Rows × columns of C per workgroup of `gemm_large`.
const LARGE_TILE: (usize, usize) = (128, 64);
const FLAG_ACCUMULATE: u32 = 4;
/// Operand lengths and dimensions must stay below this: every index and loop counter of the
/// kernels then fits in a u32 without wrapping (which the unchecked shader modules rely on).
const MAX_ELEMENTS: usize = 1 << 31;

/// Which GEMM kernel runs on a GPU (all compute the same products; see `shaders/gemm.wgsl`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum GemmKernel {
    /// With [`Precision::F16TensorCores`], `TensorCores`; otherwise `Large` on hardware GPUs
    /// (discrete or integrated) and `Registers` on CPU drivers and adapters that do not say what
    /// they are.
    #[default]
    Auto,
    /// Register blocking only (4×4 per invocation), no workgroup memory.
    Registers,
    /// 64×64 tiles: workgroup-memory slices of op(A) and op(B) plus 4×4 register blocking.
    Tiled,
    /// 128×64 tiles, 8×4 outputs per invocation, slices prefetched into registers, vec4 loads
    /// and stores when the contiguous dimensions allow: the f32 kernel for hardware GPUs.
    Large,
    /// f16 operands on cooperative matrices (tensor cores), f32 results; needs a device opened
    /// with [`Precision::F16TensorCores`] on an adapter that supports it.
    TensorCores,
}

/// Arithmetic of the dense and masked-dense GEMMs of a GPU device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Precision {
    /// f32 operands and sums, every entry summed in k order (bit-compatible with the CPU twin).
    #[default]
    F32,
    /// f16 operands (rounded from the f32 tensors) multiplied on tensor cores through cooperative
    /// matrices, f32 accumulation where the adapter offers it, f32 results. Native Vulkan and
    /// Metal adapters only; asking for it elsewhere is an error when the device is opened.
    F16TensorCores,
}

impl std::str::FromStr for Precision {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "f32" => Ok(Precision::F32),
            "f16-tc" => Ok(Precision::F16TensorCores),
            other => Err(Error::Unsupported(format!(
                "unknown precision {other:?}: expected f32 or f16-tc"
            ))),
        }
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Precision::F32 => "f32",
            Precision::F16TensorCores => "f16-tc",
        })
    }
}

/// The tensor-core kernel an adapter can run: one entry point of `shaders/gemm_coop.wgsl`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TensorCoreKernel {
    /// Cooperative matrix size S (S×S×S products, S = 16 or 8).
    pub size: u32,
    /// f16 × f16 → f32 products (true), or f16 products per S-wide k-slice summed into f32.
    pub f32_accumulator: bool,
    /// Invocations per workgroup: 4 × the adapter's largest subgroup, at least 128.
    pub workgroup: u32,
}

impl TensorCoreKernel {
    /// The WGSL entry point.
    pub fn entry(&self) -> &'static str {
        match (self.size, self.f32_accumulator) {
            (16, true) => "gemm_coop16",
            (16, false) => "gemm_coop16_h",
            (_, true) => "gemm_coop8",
            (_, false) => "gemm_coop8_h",
        }
    }

    /// Rows (and columns) of C per workgroup.
    pub fn tile(&self) -> usize {
        4 * self.size as usize
    }
}

impl std::fmt::Display for TensorCoreKernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.size;
        let acc = if self.f32_accumulator {
            "f16 x f16 -> f32"
        } else {
            "f16 x f16 -> f16 per k-slice, summed in f32"
        };
        write!(
            f,
            "{} ({s}x{s}x{s} {acc}, {} invocations)",
            self.entry(),
            self.workgroup
        )
    }
}

/// Picks the tensor-core kernel for an adapter, or says why there is none.
///
/// Needs the Vulkan or Metal backend, the features SHADER_F16, SUBGROUP and
/// EXPERIMENTAL_COOPERATIVE_MATRIX, a largest subgroup of at most 64 invocations (the workgroup
/// holds four of them, within WebGPU's 256) and a square 16×16×16 or 8×8×8 configuration with f16
/// operands, preferring f32 accumulators, then the larger size. DX12 is refused: naga 30's HLSL
/// writer has `unimplemented!()` for cooperative stores, so the kernel cannot be translated there.
pub fn select_tensor_core_kernel(
    backend: wgpu::Backend,
    features: wgpu::Features,
    configs: &[wgpu::CooperativeMatrixProperties],
    subgroup_max_size: u32,
) -> std::result::Result<TensorCoreKernel, String> {
    use wgpu::CooperativeScalarType as T;
    match backend {
        wgpu::Backend::Vulkan | wgpu::Backend::Metal => {}
        wgpu::Backend::Dx12 => {
            return Err(
                "DX12: naga 30's HLSL writer cannot emit cooperative-matrix stores \
                        (unimplemented), so the tensor-core kernel is not used there"
                    .into(),
            );
        }
        other => {
            return Err(format!(
                "the {other:?} backend has no cooperative matrices (Vulkan or Metal only)"
            ));
        }
    }
    let needed = [
        (wgpu::Features::SHADER_F16, "SHADER_F16"),
        (wgpu::Features::SUBGROUP, "SUBGROUP"),
        (
            wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX,
            "EXPERIMENTAL_COOPERATIVE_MATRIX",
        ),
    ];
    let missing: Vec<&str> = needed
        .iter()
        .filter(|(f, _)| !features.contains(*f))
        .map(|(_, name)| *name)
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "the adapter lacks the feature(s) {}",
            missing.join(", ")
        ));
    }
    if subgroup_max_size == 0 || subgroup_max_size > 64 {
        return Err(format!(
            "largest subgroup of {subgroup_max_size} invocations: four of them must fit in a \
             256-invocation workgroup"
        ));
    }
    for (size, cr) in [(16, T::F32), (8, T::F32), (16, T::F16), (8, T::F16)] {
        let offered = configs.iter().any(|c| {
            c.m_size == size
                && c.n_size == size
                && c.k_size == size
                && c.ab_type == T::F16
                && c.cr_type == cr
        });
        if offered {
            return Ok(TensorCoreKernel {
                size,
                f32_accumulator: cr == T::F32,
                workgroup: (4 * subgroup_max_size).max(128),
            });
        }
    }
    Err(format!(
        "no square 16x16x16 or 8x8x8 configuration with f16 operands among the {} offered: {}",
        configs.len(),
        describe_configs(configs).join(", ")
    ))
}

/// Cooperative-matrix configurations as text, e.g. "16x16x16 F16->F32".
pub fn describe_configs(configs: &[wgpu::CooperativeMatrixProperties]) -> Vec<String> {
    configs
        .iter()
        .map(|c| {
            format!(
                "{}x{}x{} {:?}->{:?}",
                c.m_size, c.n_size, c.k_size, c.ab_type, c.cr_type
            )
        })
        .collect()
}

/// Every (entry point, override constants) pipeline the tensor-core launcher can create: each
/// kernel variant with every transpose, mask kind and workgroup size. Tests validate each one.
pub fn tensor_core_pipelines() -> Vec<(&'static str, Vec<(&'static str, f64)>)> {
    let mut out = Vec::new();
    for size in [16, 8] {
        for f32_accumulator in [true, false] {
            for workgroup in [128, 256] {
                let kernel = TensorCoreKernel {
                    size,
                    f32_accumulator,
                    workgroup,
                };
                for trans_a in [Transpose::No, Transpose::Yes] {
                    for trans_b in [Transpose::No, Transpose::Yes] {
                        for (mask_a, mask_c) in [(false, false), (true, false), (false, true)] {
                            let mut constants =
                                constants(trans_a, trans_b, mask_a, mask_c).to_vec();
                            constants.push(("WG", f64::from(workgroup)));
                            out.push((kernel.entry(), constants));
                        }
                    }
                }
            }
        }
    }
    out
}

/// The override constants shared by every GEMM kernel.
pub(crate) fn constants(
    trans_a: Transpose,
    trans_b: Transpose,
    mask_a: bool,
    mask_c: bool,
) -> [(&'static str, f64); 4] {
    [
        ("TRANS_A", f64::from(u8::from(trans_a == Transpose::Yes))),
        ("TRANS_B", f64::from(u8::from(trans_b == Transpose::Yes))),
        ("MASK_A", f64::from(u8::from(mask_a))),
        ("MASK_C", f64::from(u8::from(mask_c))),
    ]
}

/// Whether an operand is used as stored or transposed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Transpose {
    /// As stored.
    #[default]
    No,
    /// Transposed.
    Yes,
}

/// Where a 0/1 mask applies in a masked-dense product.
#[derive(Clone, Copy, Debug)]
pub enum MaskOn<'a> {
    /// No mask.
    None,
    /// `op(A ⊙ mask)`: forward and input gradient of a masked-dense layer (`mask` shaped like A).
    A(&'a Tensor),
    /// `(op(A)·op(B)) ⊙ mask`: weight gradient of a masked-dense layer (`mask` shaped like C).
    C(&'a Tensor),
}

/// Everything but the operands of a GEMM call.
#[derive(Clone, Copy, Debug)]
pub struct Gemm<'a> {
    /// Transpose of A.
    pub trans_a: Transpose,
    /// Transpose of B.
    pub trans_b: Transpose,
    /// Row bias added to C (`[m, 1]`).
    pub bias: Option<&'a Tensor>,
    /// Fused activation.
    pub act: Activation,
    /// Optional mask.
    pub mask: MaskOn<'a>,
    /// Add into C instead of overwriting it.
    pub accumulate: bool,
    /// Kernel choice on a GPU (the CPU backend ignores it).
    pub kernel: GemmKernel,
}

impl Gemm<'_> {
    /// Plain `C = op(A)·op(B)`.
    pub fn new(trans_a: Transpose, trans_b: Transpose) -> Gemm<'static> {
        Gemm {
            trans_a,
            trans_b,
            bias: None,
            act: Activation::None,
            mask: MaskOn::None,
            accumulate: false,
            kernel: GemmKernel::Auto,
        }
    }
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    m: u32,
    n: u32,
    k: u32,
    flags: u32,
}

/// GEMM dimensions `(m, n, k)` checked against the stored shapes.
fn dims(cfg: &Gemm<'_>, a: &Tensor, b: &Tensor, c: &Tensor) -> Result<(usize, usize, usize)> {
    const OP: &str = "gemm";
    let (m, k) = match cfg.trans_a {
        Transpose::No => (a.rows(), a.cols()),
        Transpose::Yes => (a.cols(), a.rows()),
    };
    let (kb, n) = match cfg.trans_b {
        Transpose::No => (b.rows(), b.cols()),
        Transpose::Yes => (b.cols(), b.rows()),
    };
    if k != kb {
        return Err(shape_err(
            OP,
            format!("inner dimensions differ: op(A) is {m}x{k}, op(B) is {kb}x{n}"),
        ));
    }
    c.expect(OP, DType::F32, m, n)?;
    a.expect(OP, DType::F32, a.rows(), a.cols())?;
    b.expect(OP, DType::F32, b.rows(), b.cols())?;
    if let Some(bias) = cfg.bias {
        bias.expect(OP, DType::F32, m, 1)?;
    }
    match cfg.mask {
        MaskOn::A(mask) => mask.expect(OP, DType::U32, a.rows(), a.cols())?,
        MaskOn::C(mask) => mask.expect(OP, DType::U32, m, n)?,
        MaskOn::None => {}
    }
    let largest = [m, n, k, a.len(), b.len(), c.len()].into_iter().max();
    if largest.is_some_and(|l| l >= MAX_ELEMENTS) {
        return Err(Error::Unsupported(format!(
            "{OP}: {m}x{n}x{k} has a dimension or operand of 2^31 elements or more"
        )));
    }
    Ok((m, n, k))
}

/// Whether [`GemmKernel::Large`] runs its vec4 entry point (`gemm_large_v4`) for this product:
/// when every quad it reads or writes lies inside one row of its operand, i.e. the contiguous
/// dimension of A, B and C is a multiple of 4 (and k > 0: an empty operand is bound as one word).
pub fn large_uses_vec4(
    m: usize,
    n: usize,
    k: usize,
    trans_a: Transpose,
    trans_b: Transpose,
) -> bool {
    let a_row = if trans_a == Transpose::Yes { m } else { k };
    let b_row = if trans_b == Transpose::Yes { k } else { n };
    k > 0 && a_row.is_multiple_of(4) && b_row.is_multiple_of(4) && n.is_multiple_of(4)
}

/// The kernel `choice` resolves to on `g`.
fn resolve(choice: GemmKernel, g: &Gpu) -> Result<GemmKernel> {
    Ok(match choice {
        GemmKernel::Auto if g.tensor_cores.is_some() => GemmKernel::TensorCores,
        GemmKernel::Auto => match g.summary.device_type.as_str() {
            "DiscreteGpu" | "IntegratedGpu" => GemmKernel::Large,
            _ => GemmKernel::Registers,
        },
        GemmKernel::TensorCores if g.tensor_cores.is_none() => {
            return Err(Error::Unsupported(format!(
                "gemm: the tensor-core kernel needs a device opened with precision f16-tc \
                 (CHT_PRECISION / --precision); adapter {:?}: {}",
                g.summary.name,
                match &g.summary.tensor_cores {
                    Ok(k) => format!("would run {k}"),
                    Err(why) => why.clone(),
                }
            )));
        }
        other => other,
    })
}

impl Device {
    /// `c = act(op(a)·op(b) + bias)` (optionally masked, optionally accumulated). `c` is `[m, n]`,
    /// `op(a)` `[m, k]`, `op(b)` `[k, n]`; other shapes or dtypes are an [`Error::Shape`] or
    /// [`Error::DType`].
    ///
    /// On the CPU backend this runs the twin [`gemm_cpu`]; a GPU agrees with it up to rounding.
    ///
    /// ```rust
    /// use cht_gpu::ops::gemm::{CpuMask, GemmShape, gemm_cpu};
    /// use cht_gpu::{Activation, DType, Device, Gemm, Transpose};
    ///
    /// let dev = Device::cpu();
    /// // c[2, 3] = relu(aᵀ·b + bias), with a stored as [4, 2], b [4, 3] and bias [2, 1].
    /// let (a, bias) = ([0.5, -1.0, 2.0, 0.0, -0.5, 1.5, 1.0, 1.0], [0.25, -0.25]);
    /// let b: Vec<f32> = (0..12).map(|i| i as f32 - 6.0).collect();
    /// let (at, bt) = (dev.tensor_f32("a", 4, 2, &a)?, dev.tensor_f32("b", 4, 3, &b)?);
    /// let (bias_t, c) = (dev.tensor_f32("bias", 2, 1, &bias)?, dev.zeros("c", 2, 3, DType::F32));
    /// let plain = Gemm::new(Transpose::Yes, Transpose::No);
    /// let cfg = Gemm { bias: Some(&bias_t), act: Activation::Relu, ..plain };
    /// dev.gemm(&cfg, &at, &bt, &c)?;
    /// let shape = GemmShape { m: 2, n: 3, k: 4, trans_a: Transpose::Yes, trans_b: Transpose::No };
    /// let mut twin = vec![0.0; 6];
    /// gemm_cpu(shape, &a, &b, Some(&bias), Activation::Relu, CpuMask::None, false, &mut twin);
    /// assert_eq!(dev.read_f32(&c)?, twin);
    /// # Ok::<(), cht_gpu::Error>(())
    /// ```
    pub fn gemm(&self, cfg: &Gemm<'_>, a: &Tensor, b: &Tensor, c: &Tensor) -> Result<()> {
        const OP: &str = "gemm";
        let (m, n, k) = dims(cfg, a, b, c)?;
        let flags =
            epilogue_flags(cfg.bias, cfg.act) | if cfg.accumulate { FLAG_ACCUMULATE } else { 0 };
        match &self.backend {
            Backend::Gpu(g) => {
                if m == 0 || n == 0 {
                    return Ok(());
                }
                let params = Params {
                    m: m as u32,
                    n: n as u32,
                    k: k as u32,
                    flags,
                };
                let (mask, mask_a, mask_c) = match cfg.mask {
                    MaskOn::None => (&g.dummy, false, false),
                    MaskOn::A(t) => (t, true, false),
                    MaskOn::C(t) => (t, false, true),
                };
                let constants = constants(cfg.trans_a, cfg.trans_b, mask_a, mask_c);
                let bias = cfg.bias.unwrap_or(&g.dummy);
                let params = bytes(&params);
                let tiles = |rows: usize, cols: usize| {
                    [n.div_ceil(cols) as u32, m.div_ceil(rows) as u32, 1]
                };
                match resolve(cfg.kernel, g)? {
                    GemmKernel::Registers | GemmKernel::Auto => g.dispatch(
                        &KERNEL,
                        &constants,
                        params,
                        &[a, b, bias, mask, c],
                        tiles(64, 64),
                    ),
                    GemmKernel::Tiled => g.dispatch(
                        &KERNEL_TILED,
                        &constants,
                        params,
                        &[a, b, bias, mask, c],
                        tiles(64, 64),
                    ),
                    GemmKernel::Large => {
                        let v4 = large_uses_vec4(m, n, k, cfg.trans_a, cfg.trans_b);
                        let (kernel, mask) = match (v4, cfg.mask) {
                            // The unused mask binding of the vec4 entry needs 16 bytes: A
                            // stands in (never read without MASK_A / MASK_C).
                            (true, MaskOn::None) => (&KERNEL_LARGE_V4, a),
                            (true, _) => (&KERNEL_LARGE_V4, mask),
                            (false, _) => (&KERNEL_LARGE, mask),
                        };
                        let (rows, cols) = LARGE_TILE;
                        g.dispatch(
                            kernel,
                            &constants,
                            params,
                            &[a, b, bias, mask, c],
                            tiles(rows, cols),
                        )
                    }
                    GemmKernel::TensorCores => {
                        let tc = g.tensor_cores.expect("resolved only when available");
                        let mut constants = constants.to_vec();
                        constants.push(("WG", f64::from(tc.workgroup)));
                        let kernel = Kernel {
                            entry: tc.entry(),
                            ..KERNEL_COOP
                        };
                        g.dispatch(
                            &kernel,
                            &constants,
                            params,
                            &[a, b, bias, mask, c],
                            tiles(tc.tile(), tc.tile()),
                        )
                    }
                }
            }
            Backend::Cpu => {
                // Profiled by the operands' layout: forward, weight-gradient or input-gradient
                // shaped products behave differently on a CPU.
                let _timer = self.op_timer(match (cfg.trans_a, cfg.trans_b) {
                    (Transpose::No, Transpose::No) => "gemm A·B",
                    (Transpose::No, Transpose::Yes) => "gemm A·Bᵀ",
                    (Transpose::Yes, Transpose::No) => "gemm Aᵀ·B",
                    (Transpose::Yes, Transpose::Yes) => "gemm Aᵀ·Bᵀ",
                });
                let (av, bv) = (a.cpu_read(OP)?, b.cpu_read(OP)?);
                let bias = cfg.bias.map(|t| t.cpu_read(OP)).transpose()?;
                let mask = match cfg.mask {
                    MaskOn::A(t) | MaskOn::C(t) => Some(t.cpu_read(OP)?),
                    MaskOn::None => None,
                };
                let mut cv = c.cpu_write(OP)?;
                let shape = GemmShape {
                    m,
                    n,
                    k,
                    trans_a: cfg.trans_a,
                    trans_b: cfg.trans_b,
                };
                let mask = match (cfg.mask, mask.as_deref()) {
                    (MaskOn::A(_), Some(mv)) => CpuMask::A(mv),
                    (MaskOn::C(_), Some(mv)) => CpuMask::C(mv),
                    _ => CpuMask::None,
                };
                gemm_cpu(
                    shape,
                    as_f32(&av),
                    as_f32(&bv),
                    bias.as_deref().map(as_f32),
                    cfg.act,
                    mask,
                    cfg.accumulate,
                    as_f32_mut(&mut cv),
                );
                Ok(())
            }
        }
    }

    /// The tensor-core kernel dense GEMMs use on this device (`None`: f32 kernels only; the
    /// device was opened with [`Precision::F32`], or is the CPU backend).
    pub fn tensor_core_kernel(&self) -> Option<TensorCoreKernel> {
        match &self.backend {
            Backend::Gpu(g) => g.tensor_cores,
            Backend::Cpu => None,
        }
    }

    /// Checks that this device can compute at `precision` (called when it is opened).
    pub(crate) fn check_precision(&self, precision: Precision) -> Result<()> {
        match (&self.backend, precision) {
            (_, Precision::F32) => Ok(()),
            (Backend::Gpu(g), Precision::F16TensorCores) if g.tensor_cores.is_some() => Ok(()),
            (Backend::Gpu(g), Precision::F16TensorCores) => Err(Error::Unsupported(format!(
                "precision f16-tc: adapter {:?} opened without tensor cores",
                g.summary.name
            ))),
            (Backend::Cpu, Precision::F16TensorCores) => Err(Error::Unsupported(
                "precision f16-tc needs a GPU adapter with cooperative matrices (tensor cores); \
                 the CPU backend computes in f32 (use --precision f32, or see the log for why no \
                 such adapter was opened)"
                    .into(),
            )),
        }
    }
}

/// Dimensions and transposes of a GEMM for the CPU twin.
#[derive(Clone, Copy, Debug)]
pub struct GemmShape {
    /// Rows of C.
    pub m: usize,
    /// Columns of C.
    pub n: usize,
    /// Inner dimension.
    pub k: usize,
    /// A stored `k × m`.
    pub trans_a: Transpose,
    /// B stored `n × k`.
    pub trans_b: Transpose,
}

/// Mask of the CPU twin (0/1 words).
#[derive(Clone, Copy, Debug)]
pub enum CpuMask<'a> {
    /// No mask.
    None,
    /// Shaped like A.
    A(&'a [u32]),
    /// Shaped like C.
    C(&'a [u32]),
}

/// CPU twin of `gemm`, blocked for speed: it is also the CPU backend's dense path (FC baselines,
/// language models), so it computes `MR × NR` tiles of C with the products in registers.
///
/// Every entry is still summed in plain k order from 0 (`((0 + a₀b₀) + a₁b₁) + …`), then the
/// epilogue runs in the shader's order (bias, ReLU, mask, accumulate). On x86-64 CPUs with FMA
/// (AVX2 + FMA: 6 × 16 tiles in `ymm` registers; AVX-512: 12 × 32 tiles in `zmm` registers) the
/// products use fused multiply-adds (one rounding each instead of two), so CPU results can differ
/// in the last bits between such a CPU and an older one; AVX2 and AVX-512 give the same bits, and
/// on one machine results never depend on the thread count.
///
/// Work: op(B) is packed once into `NR`-column panels (in parallel, panel by panel), then each
/// task owns a strip of rows of C and walks the panels, reading op(A) in place where it can.
#[allow(clippy::too_many_arguments)]
pub fn gemm_cpu(
    s: GemmShape,
    a: &[f32],
    b: &[f32],
    bias: Option<&[f32]>,
    act: Activation,
    mask: CpuMask<'_>,
    accumulate: bool,
    c: &mut [f32],
) {
    let args = GemmArgs {
        s,
        a,
        b,
        bias,
        act,
        mask,
        accumulate,
    };
    match Simd::detect() {
        k @ Simd::Avx512 => gemm_blocked::<12, 32>(k, &args, c),
        k => gemm_blocked::<6, 16>(k, &args, c),
    }
}

/// The inputs of [`gemm_cpu`] but C.
struct GemmArgs<'a> {
    s: GemmShape,
    a: &'a [f32],
    b: &'a [f32],
    bias: Option<&'a [f32]>,
    act: Activation,
    mask: CpuMask<'a>,
    accumulate: bool,
}

/// Whether the CPU GEMM's products are fused multiply-adds (AVX2 + FMA or AVX-512 present).
fn fused(simd: Simd) -> bool {
    simd != Simd::Plain
}

fn gemm_blocked<const MR: usize, const NR: usize>(
    kernel: Simd,
    args: &GemmArgs<'_>,
    c: &mut [f32],
) {
    let s = args.s;
    if s.n == 0 {
        return;
    }
    // op(B) as NR-column panels, packed (k rows of NR values, back to back). Reading a
    // row-major B in place instead would walk its panels with a stride of n floats — a power of
    // two for most layers, which maps every row of a panel to the same few cache sets.
    let panels = s.n.div_ceil(NR);
    // The packing buffer is kept per thread: a step's products neither allocate nor fault in
    // fresh pages.
    crate::cpu::with_scratch(panels * s.k * NR, |packed| {
        pack_b::<NR>(s, args.b, packed);
        gemm_strips::<MR, NR>(kernel, args, packed, c);
    });
}

/// op(B) into `packed` in panels of NR columns: each k rows of NR values, zero-padded at the right.
/// Panels are packed in parallel; a transposed B is read 16 values of k at a time so the writes
/// of one block stay in cache.
fn pack_b<const NR: usize>(s: GemmShape, b: &[f32], packed: &mut [f32]) {
    const KB: usize = 16;
    crate::cpu::for_each_chunk(packed, s.k * NR, |p, panel| {
        let width = NR.min(s.n - p * NR);
        match s.trans_b {
            Transpose::No => {
                for (kk, row) in panel.chunks_exact_mut(NR).enumerate() {
                    row[..width].copy_from_slice(&b[kk * s.n + p * NR..][..width]);
                    row[width..].fill(0.0);
                }
            }
            Transpose::Yes => {
                for k0 in (0..s.k).step_by(KB) {
                    let kb = KB.min(s.k - k0);
                    for j in 0..width {
                        let src = &b[(p * NR + j) * s.k + k0..][..kb];
                        for (t, &v) in src.iter().enumerate() {
                            panel[(k0 + t) * NR + j] = v;
                        }
                    }
                    for t in 0..kb {
                        panel[(k0 + t) * NR + width..(k0 + t + 1) * NR].fill(0.0);
                    }
                }
            }
        }
    });
}

/// C in parallel strips of rows. A task first gathers op(A) for its micro-strips (in place where
/// it can), then walks the panels of op(B), each panel serving every micro-strip of the strip
/// while it is in cache.
fn gemm_strips<const MR: usize, const NR: usize>(
    kernel: Simd,
    args: &GemmArgs<'_>,
    b_packed: &[f32],
    c: &mut [f32],
) {
    let GemmArgs {
        s,
        a,
        bias,
        act,
        mask,
        accumulate,
        ..
    } = *args;
    let panels = s.n.div_ceil(NR);
    // One task per strip of rows of C (up to 16 micro-strips of MR rows; fewer when m is small,
    // so that every thread gets work).
    let strip_rows =
        s.m.div_ceil(4 * crate::cpu::threads())
            .next_multiple_of(MR)
            .clamp(MR, 16 * MR);
    let mask_a = match mask {
        CpuMask::A(m) => Some(m),
        _ => None,
    };
    crate::cpu::for_each_chunk(c, strip_rows * s.n, |strip, out| {
        let strip_len = out.len() / s.n;
        let micro = strip_len.div_ceil(MR);
        let rows_of = |u: usize| MR.min(strip_len - u * MR);
        // op(A)'s rows of micro-strip u as `src[i·ri + kk·rk]`: read in place when the
        // micro-strip is full and unmasked, else copied (masked entries and missing rows zero).
        let in_place = |u: usize| rows_of(u) == MR && s.k > 0 && mask_a.is_none();
        let copied: Vec<usize> = (0..micro).filter(|&u| !in_place(u)).collect();
        let mut a_buf = vec![0f32; copied.len() * s.k * MR];
        for (&u, buf) in copied.iter().zip(a_buf.chunks_exact_mut((s.k * MR).max(1))) {
            let row0 = strip * strip_rows + u * MR;
            // Walk op(A) in its storage order: row by row, or k by k when transposed.
            let (outer, inner) = match s.trans_a {
                Transpose::No => (rows_of(u), s.k),
                Transpose::Yes => (s.k, rows_of(u)),
            };
            for o in 0..outer {
                for n in 0..inner {
                    let (i, kk, idx) = match s.trans_a {
                        Transpose::No => (o, n, (row0 + o) * s.k + n),
                        Transpose::Yes => (n, o, o * s.m + row0 + n),
                    };
                    let keep = mask_a.is_none_or(|m| m[idx] != 0);
                    buf[kk * MR + i] = if keep { a[idx] } else { 0.0 };
                }
            }
        }
        let sources: Vec<ASource<'_>> = (0..micro)
            .map(|u| {
                let row0 = strip * strip_rows + u * MR;
                match (in_place(u), s.trans_a) {
                    (true, Transpose::No) => (&a[row0 * s.k..], s.k, 1),
                    (true, Transpose::Yes) => (&a[row0..], 1, s.m),
                    (false, _) => {
                        let j = copied.iter().position(|&c| c == u).expect("copied above");
                        (&a_buf[j * s.k * MR..(j + 1) * s.k * MR], 1, MR)
                    }
                }
            })
            .collect();
        let mut tile = [[0f32; NR]; MR];
        for p in 0..panels {
            let b_panel: BSource<'_> = (&b_packed[p * s.k * NR..][..s.k * NR], NR);
            let (col0, width) = (p * NR, NR.min(s.n - p * NR));
            for (u, &a_src) in sources.iter().enumerate() {
                micro_tile(kernel, a_src, b_panel, s.k, &mut tile);
                // Epilogue, one row segment at a time (same per-entry order as the shader); full
                // segments get a constant length so the copies and loops compile to vector moves.
                let row0 = strip * strip_rows + u * MR;
                for (i, tile_row) in tile.iter_mut().enumerate().take(rows_of(u)) {
                    let row = row0 + i;
                    let epi = Epilogue {
                        bias: bias.map(|b| b[row]),
                        relu: act == Activation::Relu,
                        mask: match mask {
                            CpuMask::C(m) => Some(&m[row * s.n + col0..]),
                            _ => None,
                        },
                        accumulate,
                    };
                    let o = &mut out[(u * MR + i) * s.n + col0..];
                    if width == NR {
                        epi.apply(&mut tile_row[..NR], &mut o[..NR]);
                    } else {
                        epi.apply(&mut tile_row[..width], &mut o[..width]);
                    }
                }
            }
        }
    });
}

/// The per-row part of the GEMM epilogue.
struct Epilogue<'m> {
    bias: Option<f32>,
    relu: bool,
    /// The row's mask words from the tile's first column on.
    mask: Option<&'m [u32]>,
    accumulate: bool,
}

impl Epilogue<'_> {
    /// Finishes products `v` and stores them into `out` (both the same length).
    #[inline(always)]
    fn apply(&self, v: &mut [f32], out: &mut [f32]) {
        if let Some(b) = self.bias {
            v.iter_mut().for_each(|x| *x += b);
        }
        if self.relu {
            v.iter_mut().for_each(|x| *x = x.max(0.0));
        }
        if let Some(m) = self.mask {
            // Branch-free (random masks defeat branch prediction): all-ones or all-zeros bits,
            // so a masked entry becomes +0.0 as the shader's `select` gives.
            for (x, &keep) in v.iter_mut().zip(m) {
                let bits = u32::from(keep != 0).wrapping_neg();
                *x = f32::from_bits(x.to_bits() & bits);
            }
        }
        if self.accumulate {
            out.iter_mut().zip(v.iter()).for_each(|(o, x)| *o += x);
        } else {
            out.copy_from_slice(v);
        }
    }
}

/// Where a micro-tile reads op(A): `A(i, kk) = slice[i·ri + kk·rk]`.
type ASource<'a> = (&'a [f32], usize, usize);

/// Where a micro-tile reads a panel of op(B): `B(kk, j) = slice[kk·stride + j]`, `j < NR`.
type BSource<'a> = (&'a [f32], usize);

/// `tile = A · B_panel` over `k` for one `MR × NR` tile.
fn micro_tile<const MR: usize, const NR: usize>(
    kernel: Simd,
    a: ASource<'_>,
    b: BSource<'_>,
    k: usize,
    tile: &mut [[f32; NR]; MR],
) {
    #[cfg(target_arch = "x86_64")]
    {
        let ((a_slice, ri, rk), (b_slice, stride)) = (a, b);
        // Every read lies in the slices: checked once here, not per product.
        let fits = k == 0
            || (a_slice.len() > (MR - 1) * ri + (k - 1) * rk
                && b_slice.len() >= (k - 1) * stride + NR);
        match kernel {
            // SAFETY: `Simd::detect` chose Avx512 after detecting AVX-512F, AVX2 and FMA on this
            // CPU; the kernel reads `a` and `b` within the bounds checked just above.
            #[allow(unsafe_code)]
            Simd::Avx512 if NR == 32 && fits => {
                return unsafe { micro_tile_avx512(a, b, k, tile) };
            }
            // SAFETY: as above, for AVX2 and FMA.
            #[allow(unsafe_code)]
            Simd::Avx2 if NR == 16 && fits => {
                return unsafe { micro_tile_avx2(a, b, k, tile) };
            }
            _ => {}
        }
    }
    if fused(kernel) {
        micro_tile_body::<true, MR, NR>(a, b, k, tile);
    } else {
        micro_tile_body::<false, MR, NR>(a, b, k, tile);
    }
}

/// [`micro_tile_body`] with fused multiply-adds on AVX-512F: each k step loads the B row into
/// two zmm registers and broadcasts one A value per row of the tile (`MR × 2` accumulators).
///
/// # Safety
/// The CPU has AVX-512F, AVX2 and FMA; `NR == 32`; for `k > 0`,
/// `a.len() > (MR−1)·ri + (k−1)·rk` and `b.len() ≥ (k−1)·stride + 32`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
#[allow(unsafe_code)]
unsafe fn micro_tile_avx512<const MR: usize, const NR: usize>(
    (a, ri, rk): ASource<'_>,
    (b, stride): BSource<'_>,
    k: usize,
    tile: &mut [[f32; NR]; MR],
) {
    use std::arch::x86_64::_mm512_storeu_ps;
    use std::arch::x86_64::{_mm512_fmadd_ps, _mm512_loadu_ps, _mm512_set1_ps, _mm512_setzero_ps};
    let (ap, bp) = (a.as_ptr(), b.as_ptr());
    let mut acc = [[_mm512_setzero_ps(); 2]; MR];
    for kk in 0..k {
        // SAFETY (the reads): within `a` and `b` by the caller's bounds.
        let (b0, b1) = unsafe {
            (
                _mm512_loadu_ps(bp.add(kk * stride)),
                _mm512_loadu_ps(bp.add(kk * stride + 16)),
            )
        };
        for (i, row) in acc.iter_mut().enumerate() {
            let av = _mm512_set1_ps(unsafe { *ap.add(i * ri + kk * rk) });
            row[0] = _mm512_fmadd_ps(av, b0, row[0]);
            row[1] = _mm512_fmadd_ps(av, b1, row[1]);
        }
    }
    for (out, row) in tile.iter_mut().zip(&acc) {
        // SAFETY: each tile row holds NR = 32 floats.
        unsafe {
            _mm512_storeu_ps(out.as_mut_ptr(), row[0]);
            _mm512_storeu_ps(out.as_mut_ptr().add(16), row[1]);
        }
    }
}

/// [`micro_tile_body`] with fused multiply-adds on AVX2: the B row in two ymm registers, one
/// broadcast A value per row of the tile (`MR × 2` accumulators).
///
/// # Safety
/// The CPU has AVX2 and FMA; `NR == 16`; for `k > 0`, `a.len() > (MR−1)·ri + (k−1)·rk` and
/// `b.len() ≥ (k−1)·stride + 16`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(unsafe_code)]
unsafe fn micro_tile_avx2<const MR: usize, const NR: usize>(
    (a, ri, rk): ASource<'_>,
    (b, stride): BSource<'_>,
    k: usize,
    tile: &mut [[f32; NR]; MR],
) {
    use std::arch::x86_64::_mm256_storeu_ps;
    use std::arch::x86_64::{_mm256_fmadd_ps, _mm256_loadu_ps, _mm256_set1_ps, _mm256_setzero_ps};
    let (ap, bp) = (a.as_ptr(), b.as_ptr());
    let mut acc = [[_mm256_setzero_ps(); 2]; MR];
    for kk in 0..k {
        // SAFETY (the reads): within `a` and `b` by the caller's bounds.
        let (b0, b1) = unsafe {
            (
                _mm256_loadu_ps(bp.add(kk * stride)),
                _mm256_loadu_ps(bp.add(kk * stride + 8)),
            )
        };
        for (i, row) in acc.iter_mut().enumerate() {
            let av = _mm256_set1_ps(unsafe { *ap.add(i * ri + kk * rk) });
            row[0] = _mm256_fmadd_ps(av, b0, row[0]);
            row[1] = _mm256_fmadd_ps(av, b1, row[1]);
        }
    }
    for (out, row) in tile.iter_mut().zip(&acc) {
        // SAFETY: each tile row holds NR = 16 floats.
        unsafe {
            _mm256_storeu_ps(out.as_mut_ptr(), row[0]);
            _mm256_storeu_ps(out.as_mut_ptr().add(8), row[1]);
        }
    }
}

#[inline(always)]
fn micro_tile_body<const FUSED: bool, const MR: usize, const NR: usize>(
    (a, ri, rk): ASource<'_>,
    (b, stride): BSource<'_>,
    k: usize,
    tile: &mut [[f32; NR]; MR],
) {
    let mut acc = [[0f32; NR]; MR];
    for kk in 0..k {
        let b_k = &b[kk * stride..][..NR];
        for (i, acc_row) in acc.iter_mut().enumerate() {
            let av = a[i * ri + kk * rk];
            for (o, &bv) in acc_row.iter_mut().zip(b_k) {
                *o = if FUSED {
                    av.mul_add(bv, *o)
                } else {
                    *o + av * bv
                };
            }
        }
    }
    *tile = acc;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twin_handles_every_transpose() {
        // A = [[1,2,3],[4,5,6]] (2x3), B = [[1,0],[0,1],[1,1]] (3x2): AB = [[4,5],[10,11]].
        let a = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let a_t = [1.0, 4.0, 2.0, 5.0, 3.0, 6.0];
        let b = [1.0, 0.0, 0.0, 1.0, 1.0, 1.0];
        let b_t = [1.0, 0.0, 1.0, 0.0, 1.0, 1.0];
        for (ta, tb, av, bv) in [
            (Transpose::No, Transpose::No, &a, &b),
            (Transpose::Yes, Transpose::No, &a_t, &b),
            (Transpose::No, Transpose::Yes, &a, &b_t),
            (Transpose::Yes, Transpose::Yes, &a_t, &b_t),
        ] {
            let mut c = [0.0; 4];
            let s = GemmShape {
                m: 2,
                n: 2,
                k: 3,
                trans_a: ta,
                trans_b: tb,
            };
            gemm_cpu(
                s,
                av,
                bv,
                None,
                Activation::None,
                CpuMask::None,
                false,
                &mut c,
            );
            assert_eq!(c, [4.0, 5.0, 10.0, 11.0], "{ta:?} {tb:?}");
        }
        let mut c = [1.0; 4];
        let s = GemmShape {
            m: 2,
            n: 2,
            k: 3,
            trans_a: Transpose::No,
            trans_b: Transpose::No,
        };
        gemm_cpu(
            s,
            &a,
            &b,
            Some(&[-20.0, 0.0]),
            Activation::Relu,
            CpuMask::C(&[1, 1, 0, 1]),
            true,
            &mut c,
        );
        assert_eq!(c, [1.0, 1.0, 1.0, 12.0]);
    }

    /// Entries summed in plain k order from 0, with or without fused multiply-adds: the blocked
    /// twin must equal this bit for bit, whatever the tiling, transposes or strip tails.
    fn naive(s: GemmShape, a: &[f32], b: &[f32], fused: bool) -> Vec<f32> {
        let mut c = vec![0f32; s.m * s.n];
        for i in 0..s.m {
            for j in 0..s.n {
                let mut acc = 0f32;
                for kk in 0..s.k {
                    let av = match s.trans_a {
                        Transpose::No => a[i * s.k + kk],
                        Transpose::Yes => a[kk * s.m + i],
                    };
                    let bv = match s.trans_b {
                        Transpose::No => b[kk * s.n + j],
                        Transpose::Yes => b[j * s.k + kk],
                    };
                    acc = if fused {
                        av.mul_add(bv, acc)
                    } else {
                        acc + av * bv
                    };
                }
                c[i * s.n + j] = acc;
            }
        }
        c
    }

    #[test]
    fn blocked_twin_sums_in_k_order_bit_for_bit() {
        // Every micro-kernel this CPU can run, not only the one `gemm_cpu` picks.
        let mut kernels = vec![Simd::Plain];
        let detected = Simd::detect();
        if detected != Simd::Plain {
            kernels.push(Simd::Avx2);
        }
        if detected == Simd::Avx512 {
            kernels.push(Simd::Avx512);
        }
        // Odd sizes around the MR × NR tiles and the row strips, empty dimensions included.
        for (m, n, k) in [
            (0, 5, 3),
            (5, 0, 3),
            (1, 1, 1),
            (5, 17, 9),
            (67, 33, 70),
            (130, 16, 4),
            (25, 65, 33),
            (13, 3, 0),
        ] {
            for (ta, tb) in [
                (Transpose::No, Transpose::No),
                (Transpose::No, Transpose::Yes),
                (Transpose::Yes, Transpose::No),
                (Transpose::Yes, Transpose::Yes),
            ] {
                let s = GemmShape {
                    m,
                    n,
                    k,
                    trans_a: ta,
                    trans_b: tb,
                };
                // Values with many significant bits so that any change of order shows.
                let val = |i: usize, salt: usize| ((i * 7919 + salt) % 1000) as f32 / 37.0 - 13.0;
                let a: Vec<f32> = (0..m * k).map(|i| val(i, 1)).collect();
                let b: Vec<f32> = (0..k * n).map(|i| val(i, 2)).collect();
                let args = GemmArgs {
                    s,
                    a: &a,
                    b: &b,
                    bias: None,
                    act: Activation::None,
                    mask: CpuMask::None,
                    accumulate: false,
                };
                for &kernel in &kernels {
                    let mut c = vec![f32::NAN; m * n];
                    match kernel {
                        Simd::Avx512 => gemm_blocked::<12, 32>(kernel, &args, &mut c),
                        _ => gemm_blocked::<6, 16>(kernel, &args, &mut c),
                    }
                    let want = naive(s, &a, &b, fused(kernel));
                    let same = c.iter().zip(&want).all(|(x, y)| x.to_bits() == y.to_bits());
                    assert!(same, "{kernel:?} {m}x{n}x{k} {ta:?}/{tb:?}");
                }
                // What callers get: the detected kernel.
                let mut c = vec![f32::NAN; m * n];
                let none = CpuMask::None;
                gemm_cpu(s, &a, &b, None, Activation::None, none, false, &mut c);
                let want = naive(s, &a, &b, fused(detected));
                assert!(c.iter().zip(&want).all(|(x, y)| x.to_bits() == y.to_bits()));
            }
        }
    }
}
