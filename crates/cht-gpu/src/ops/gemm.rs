//! Dense and masked-dense GEMM `C = op(A)·op(B)` with a fused epilogue; shader `shaders/gemm.wgsl`.

use crate::device::{Backend, Device};
use crate::error::{Result, shape_err};
use crate::gpu::{Access, Kernel};
use crate::ops::bytes;
use crate::ops::spmm::{Activation, epilogue_flags};
use crate::tensor::{DType, Tensor, as_f32, as_f32_mut};

const KERNEL: Kernel = Kernel {
    family: "gemm",
    source: include_str!("../../../../shaders/gemm.wgsl"),
    entry: "gemm",
    access: &[
        Access::Read,
        Access::Read,
        Access::Read,
        Access::Read,
        Access::ReadWrite,
    ],
};
const KERNEL_TILED: Kernel = Kernel {
    entry: "gemm_tiled",
    ..KERNEL
};
const FLAG_ACCUMULATE: u32 = 4;

/// Which GEMM kernel runs on a GPU (both compute the same products; see `shaders/gemm.wgsl`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum GemmKernel {
    /// `Tiled` on hardware GPUs (discrete or integrated), `Registers` on CPU drivers and adapters
    /// that do not say what they are.
    #[default]
    Auto,
    /// Register blocking only (4×4 per invocation), no workgroup memory.
    Registers,
    /// Workgroup-memory tiles of op(A) and op(B) plus register blocking.
    Tiled,
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
    Ok((m, n, k))
}

impl Device {
    /// `c = act(op(a)·op(b) + bias)` (optionally masked, optionally accumulated).
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
                let constants = [
                    (
                        "TRANS_A",
                        f64::from(u8::from(cfg.trans_a == Transpose::Yes)),
                    ),
                    (
                        "TRANS_B",
                        f64::from(u8::from(cfg.trans_b == Transpose::Yes)),
                    ),
                    ("MASK_A", f64::from(u8::from(mask_a))),
                    ("MASK_C", f64::from(u8::from(mask_c))),
                ];
                let bias = cfg.bias.unwrap_or(&g.dummy);
                let groups = [n.div_ceil(64) as u32, m.div_ceil(64) as u32, 1];
                let tiled = match cfg.kernel {
                    GemmKernel::Tiled => true,
                    GemmKernel::Registers => false,
                    GemmKernel::Auto => matches!(
                        g.summary.device_type.as_str(),
                        "DiscreteGpu" | "IntegratedGpu"
                    ),
                };
                g.dispatch(
                    if tiled { &KERNEL_TILED } else { &KERNEL },
                    &constants,
                    bytes(&params),
                    &[a, b, bias, mask, c],
                    groups,
                )
            }
            Backend::Cpu => {
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
                    bias.as_deref().map(|b| as_f32(b)),
                    cfg.act,
                    mask,
                    cfg.accumulate,
                    as_f32_mut(&mut cv),
                );
                Ok(())
            }
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

/// CPU twin of `gemm`: per row of C, loops k outermost (row of op(B) contiguous when not
/// transposed) and applies the epilogue in the shader's order (bias, ReLU, mask, accumulate).
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
    let a_idx = |row: usize, kk: usize| match s.trans_a {
        Transpose::No => row * s.k + kk,
        Transpose::Yes => kk * s.m + row,
    };
    // NT without an A mask (weight gradients): every entry is a dot product of two contiguous
    // rows, summed in the same k order as the general loop and the shader.
    let dots =
        s.trans_a == Transpose::No && s.trans_b == Transpose::Yes && !matches!(mask, CpuMask::A(_));
    crate::cpu::for_each_chunk(c, s.n, |row, out| {
        let mut acc = vec![0f32; s.n];
        if dots {
            let a_row = &a[row * s.k..(row + 1) * s.k];
            for (col, o) in acc.iter_mut().enumerate() {
                let b_row = &b[col * s.k..(col + 1) * s.k];
                *o = a_row
                    .iter()
                    .zip(b_row)
                    .fold(0.0, |sum, (&x, &y)| sum + x * y);
            }
        }
        let k_loop = if dots { 0 } else { s.k };
        for kk in 0..k_loop {
            let ai = a_idx(row, kk);
            let av = match mask {
                CpuMask::A(m) if m[ai] == 0 => 0.0,
                _ => a[ai],
            };
            match s.trans_b {
                Transpose::No => {
                    for (o, &bv) in acc.iter_mut().zip(&b[kk * s.n..(kk + 1) * s.n]) {
                        *o += av * bv;
                    }
                }
                Transpose::Yes => {
                    for (col, o) in acc.iter_mut().enumerate() {
                        *o += av * b[col * s.k + kk];
                    }
                }
            }
        }
        for (col, (o, mut v)) in out.iter_mut().zip(acc).enumerate() {
            if let Some(bias) = bias {
                v += bias[row];
            }
            if act == Activation::Relu {
                v = v.max(0.0);
            }
            if let CpuMask::C(m) = mask {
                if m[row * s.n + col] == 0 {
                    v = 0.0;
                }
            }
            *o = if accumulate { *o + v } else { v };
        }
    });
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
}
