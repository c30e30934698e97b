//! Sparse forward `Y = act(W·X + b)` and sparse input gradient `dX = Wᵀ·dY` over a
//! [`SparsePattern`]; shader `shaders/spmm.wgsl`.

use crate::device::{Backend, Device};
use crate::error::Result;
use crate::gpu::{Access, Kernel};
use crate::ops::{bytes, grid_1d};
use crate::sparse::SparsePattern;
use crate::tensor::{DType, Tensor, as_f32, as_f32_mut};

const SOURCE: &str = include_str!("../../../../shaders/spmm.wgsl");
const FORWARD: Kernel = Kernel {
    family: "spmm",
    source: SOURCE,
    entry: "spmm_forward",
    access: &[
        Access::Read,
        Access::Read,
        Access::Read,
        Access::Read,
        Access::Read,
        Access::ReadWrite,
    ],
};
const BACKWARD_INPUT: Kernel = Kernel {
    family: "spmm",
    source: SOURCE,
    entry: "spmm_backward_input",
    access: &[
        Access::Read,
        Access::Read,
        Access::Read,
        Access::Read,
        Access::Read,
        Access::ReadWrite,
    ],
};

pub(crate) const FLAG_BIAS: u32 = 1;
pub(crate) const FLAG_RELU: u32 = 2;

/// Activation fused into a forward product.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Activation {
    /// Identity.
    #[default]
    None,
    /// `max(0, ·)`.
    Relu,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    out_rows: u32,
    batch: u32,
    flags: u32,
    _pad: u32,
}

pub(crate) fn epilogue_flags(bias: Option<&Tensor>, act: Activation) -> u32 {
    (if bias.is_some() { FLAG_BIAS } else { 0 })
        | (if act == Activation::Relu {
            FLAG_RELU
        } else {
            0
        })
}

impl Device {
    /// `y = act(W·x + bias)` for a sparse `W` (`values` in CSR order over `w`); `x` is
    /// `[cols, batch]`, `y` is `[rows, batch]`, `bias` is `[rows, 1]`.
    pub fn spmm_forward(
        &self,
        w: &SparsePattern,
        values: &Tensor,
        x: &Tensor,
        bias: Option<&Tensor>,
        act: Activation,
        y: &Tensor,
    ) -> Result<()> {
        const OP: &str = "spmm_forward";
        let batch = x.cols();
        values.expect(OP, DType::F32, w.capacity, 1)?;
        x.expect(OP, DType::F32, w.cols, batch)?;
        y.expect(OP, DType::F32, w.rows, batch)?;
        if let Some(b) = bias {
            b.expect(OP, DType::F32, w.rows, 1)?;
        }
        match &self.backend {
            Backend::Gpu(g) => {
                let params = Params {
                    out_rows: w.rows as u32,
                    batch: batch as u32,
                    flags: epilogue_flags(bias, act),
                    _pad: 0,
                };
                let bias = bias.unwrap_or(&g.dummy);
                let tensors = [&w.row_ptr, &w.col_idx, values, x, bias, y];
                g.dispatch(
                    &FORWARD,
                    &[],
                    bytes(&params),
                    &tensors,
                    grid_1d(w.rows * batch.div_ceil(4)),
                )
            }
            Backend::Cpu => {
                let row_ptr = w.row_ptr.cpu_read(OP)?;
                let col_idx = w.col_idx.cpu_read(OP)?;
                let values = values.cpu_read(OP)?;
                let x = x.cpu_read(OP)?;
                let bias = bias.map(|b| b.cpu_read(OP)).transpose()?;
                let mut y = y.cpu_write(OP)?;
                spmm_cpu(
                    SpmmArgs {
                        batch,
                        ptr: &row_ptr,
                        idx: &col_idx,
                        perm: None,
                        values: as_f32(&values),
                    },
                    as_f32(&x),
                    bias.as_deref().map(as_f32),
                    act,
                    as_f32_mut(&mut y),
                );
                Ok(())
            }
        }
    }

    /// `dx = Wᵀ·dy` through the pattern's CSC permutation; `dy` is `[rows, batch]`, `dx` is
    /// `[cols, batch]`. Every `dx` element is written (no accumulation, no atomics).
    pub fn spmm_backward_input(
        &self,
        w: &SparsePattern,
        values: &Tensor,
        dy: &Tensor,
        dx: &Tensor,
    ) -> Result<()> {
        const OP: &str = "spmm_backward_input";
        let batch = dy.cols();
        values.expect(OP, DType::F32, w.capacity, 1)?;
        dy.expect(OP, DType::F32, w.rows, batch)?;
        dx.expect(OP, DType::F32, w.cols, batch)?;
        match &self.backend {
            Backend::Gpu(g) => {
                let params = Params {
                    out_rows: w.cols as u32,
                    batch: batch as u32,
                    flags: 0,
                    _pad: 0,
                };
                let tensors = [&w.col_ptr, &w.row_idx, &w.perm, values, dy, dx];
                g.dispatch(
                    &BACKWARD_INPUT,
                    &[],
                    bytes(&params),
                    &tensors,
                    grid_1d(w.cols * batch.div_ceil(4)),
                )
            }
            Backend::Cpu => {
                let col_ptr = w.col_ptr.cpu_read(OP)?;
                let row_idx = w.row_idx.cpu_read(OP)?;
                let perm = w.perm.cpu_read(OP)?;
                let values = values.cpu_read(OP)?;
                let dy = dy.cpu_read(OP)?;
                let mut dx = dx.cpu_write(OP)?;
                spmm_cpu(
                    SpmmArgs {
                        batch,
                        ptr: &col_ptr,
                        idx: &row_idx,
                        perm: Some(&perm),
                        values: as_f32(&values),
                    },
                    as_f32(&dy),
                    None,
                    Activation::None,
                    as_f32_mut(&mut dx),
                );
                Ok(())
            }
        }
    }
}

/// A compressed sparse operand for [`spmm_cpu`]: CSR (`perm = None`) or CSC with its permutation.
#[derive(Clone, Copy, Debug)]
pub struct SpmmArgs<'a> {
    /// Samples per feature.
    pub batch: usize,
    /// `out_rows + 1` pointers.
    pub ptr: &'a [u32],
    /// Input row of each link.
    pub idx: &'a [u32],
    /// Position of each link's value (CSC), or `None` for CSR order.
    pub perm: Option<&'a [u32]>,
    /// Link values in CSR order.
    pub values: &'a [f32],
}

/// CPU twin of both `spmm_forward` (CSR) and `spmm_backward_input` (CSC):
/// `out[r, b] = act(Σ_{k∈r} values[perm(k)] · input[idx[k], b] + bias[r])`, summed in link order as
/// the shader does.
pub fn spmm_cpu(
    a: SpmmArgs<'_>,
    input: &[f32],
    bias: Option<&[f32]>,
    act: Activation,
    out: &mut [f32],
) {
    let batch = a.batch;
    crate::cpu::for_each_chunk(out, batch, |r, row| {
        row.fill(0.0);
        for k in a.ptr[r] as usize..a.ptr[r + 1] as usize {
            let v = a.values[a.perm.map_or(k, |p| p[k] as usize)];
            let base = a.idx[k] as usize * batch;
            for (o, &xv) in row.iter_mut().zip(&input[base..base + batch]) {
                *o += v * xv;
            }
        }
        if let Some(b) = bias {
            row.iter_mut().for_each(|o| *o += b[r]);
        }
        if act == Activation::Relu {
            row.iter_mut().for_each(|o| *o = o.max(0.0));
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use cht_sparse::CsrPattern;
    use cht_sparse::rng::{Counter, RngKey, Stream};

    fn randn(n: usize, seed: u32) -> Vec<f32> {
        let mut r = Counter::new(RngKey::new(seed, Stream::Synthetic, 0, 0));
        (0..n).map(|_| r.normal()).collect()
    }

    #[test]
    fn twin_matches_dense_reference_forward_and_transpose() {
        let (rows, cols, batch) = (13, 9, 5);
        let p =
            CsrPattern::random(rows, cols, 0.3, RngKey::new(1, Stream::Synthetic, 0, 0)).unwrap();
        let values = randn(p.nnz(), 2);
        let x = randn(cols * batch, 3);
        let bias = randn(rows, 4);
        let w = p.scatter_dense(&values);
        let mut y = vec![f32::NAN; rows * batch];
        let csr = SpmmArgs {
            batch,
            ptr: p.row_ptr(),
            idx: p.col_idx(),
            perm: None,
            values: &values,
        };
        spmm_cpu(csr, &x, Some(&bias), Activation::Relu, &mut y);
        for r in 0..rows {
            for b in 0..batch {
                let want: f32 = (0..cols)
                    .map(|c| w[r * cols + c] * x[c * batch + b])
                    .sum::<f32>()
                    + bias[r];
                assert!((y[r * batch + b] - want.max(0.0)).abs() < 1e-5);
            }
        }
        let csc = p.csc();
        let dy = randn(rows * batch, 5);
        let mut dx = vec![f32::NAN; cols * batch];
        let args = SpmmArgs {
            batch,
            ptr: &csc.col_ptr,
            idx: &csc.row_idx,
            perm: Some(&csc.perm),
            values: &values,
        };
        spmm_cpu(args, &dy, None, Activation::None, &mut dx);
        for c in 0..cols {
            for b in 0..batch {
                let want: f32 = (0..rows).map(|r| w[r * cols + c] * dy[r * batch + b]).sum();
                assert!((dx[c * batch + b] - want).abs() < 1e-5);
            }
        }
    }
}
