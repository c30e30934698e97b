//! Sparse forward `Y = act(W·X + b)` and the fused sparse backward pass (weight gradient on the
//! links and input gradient `dX = Wᵀ·dY`, one dispatch) over a [`SparsePattern`]; shader
//! `shaders/spmm.wgsl`. The weight gradient's twin is [`crate::ops::sddmm::sddmm_cpu`].

use crate::device::{Backend, Device};
use crate::error::Result;
use crate::gpu::{Access, Kernel};
use crate::ops::{bytes, grid_1d};
use crate::sparse::SparsePattern;
use crate::tensor::{DType, Tensor, as_f32, as_f32_mut};

const SOURCE: &str = include_str!("../../shaders/spmm.wgsl");
pub(crate) const FORWARD: Kernel = Kernel {
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
pub(crate) const BACKWARD: Kernel = Kernel {
    family: "spmm",
    source: SOURCE,
    entry: "sparse_backward",
    access: &[
        Access::Read,
        Access::Read,
        Access::Read,
        Access::Read,
        Access::Read,
        Access::Read,
        Access::ReadWrite,
        Access::ReadWrite,
    ],
};

pub(crate) const FLAG_BIAS: u32 = 1;
pub(crate) const FLAG_RELU: u32 = 2;
pub(crate) const FLAG_ACCUMULATE: u32 = 4;

/// What a product does with its result: add a row bias, apply an activation, and write or add
/// into the output (`accumulate`: residual connections and sums of several products without an
/// extra pass).
#[derive(Clone, Copy, Debug, Default)]
pub struct Epilogue<'a> {
    /// Row bias `[rows, 1]`.
    pub bias: Option<&'a Tensor>,
    /// Fused activation.
    pub act: Activation,
    /// `out += result` instead of `out = result`.
    pub accumulate: bool,
}

impl Epilogue<'_> {
    pub(crate) fn flags(&self) -> u32 {
        epilogue_flags(self.bias, self.act) | if self.accumulate { FLAG_ACCUMULATE } else { 0 }
    }
}

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
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    out_rows: u32,
    batch: u32,
    flags: u32,
    dw_len: u32,
    dw_groups: u32,
    col_idx_at: u32,
    perm_at: u32,
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
    /// `[cols, batch]`, `y` is `[rows, batch]`, `bias` is `[rows, 1]`, `values` is
    /// `[capacity, 1]`. Other shapes are an [`Error::Shape`](crate::Error::Shape).
    ///
    /// ```rust
    /// use cht_gpu::{Activation, DType, Device};
    /// use cht_sparse::{CsrPattern, Mask};
    ///
    /// let dev = Device::cpu();
    /// // W [2, 3] with links (0, 0), (0, 2), (1, 1); x [3, 2] is features × batch.
    /// let mask = Mask::from_bools(2, 3, vec![true, false, true, false, true, false])?;
    /// let w = dev.upload_pattern("w", &CsrPattern::from_mask(&mask), 3)?;
    /// let values = dev.tensor_f32("w.values", 3, 1, &[2.0, -1.0, 0.5])?;
    /// let x = dev.tensor_f32("x", 3, 2, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0])?;
    /// let y = dev.zeros("y", 2, 2, DType::F32);
    /// dev.spmm_forward(&w, &values, &x, None, Activation::None, &y)?;
    /// // y[0, b] = 2·x[0, b] − x[2, b] and y[1, b] = 0.5·x[1, b].
    /// assert_eq!(dev.read_f32(&y)?, vec![-3.0, -2.0, 1.5, 2.0]);
    /// # Ok::<(), cht_gpu::Error>(())
    /// ```
    pub fn spmm_forward(
        &self,
        w: &SparsePattern,
        values: &Tensor,
        x: &Tensor,
        bias: Option<&Tensor>,
        act: Activation,
        y: &Tensor,
    ) -> Result<()> {
        let epilogue = Epilogue {
            bias,
            act,
            accumulate: false,
        };
        self.spmm_forward_with(w, values, x, &epilogue, y)
    }

    /// [`Device::spmm_forward`] with any [`Epilogue`] (e.g. accumulating into `y`).
    pub fn spmm_forward_with(
        &self,
        w: &SparsePattern,
        values: &Tensor,
        x: &Tensor,
        epilogue: &Epilogue<'_>,
        y: &Tensor,
    ) -> Result<()> {
        const OP: &str = "spmm_forward";
        let batch = x.cols();
        values.expect(OP, DType::F32, w.capacity, 1)?;
        x.expect(OP, DType::F32, w.cols, batch)?;
        y.expect(OP, DType::F32, w.rows, batch)?;
        if let Some(b) = epilogue.bias {
            b.expect(OP, DType::F32, w.rows, 1)?;
        }
        match &self.backend {
            Backend::Gpu(g) => {
                let params = Params {
                    out_rows: w.rows as u32,
                    batch: batch as u32,
                    flags: epilogue.flags(),
                    ..Params::default()
                };
                let bias = epilogue.bias.unwrap_or(&g.dummy);
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
                let _timer = self.op_timer(OP);
                let row_ptr = w.row_ptr.cpu_read(OP)?;
                let col_idx = w.col_idx.cpu_read(OP)?;
                let values = values.cpu_read(OP)?;
                let x = x.cpu_read(OP)?;
                let bias = epilogue.bias.map(|b| b.cpu_read(OP)).transpose()?;
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
                    epilogue.act,
                    epilogue.accumulate,
                    as_f32_mut(&mut y),
                );
                Ok(())
            }
        }
    }

    /// `dx = Wᵀ·dy` through the pattern's CSC permutation; `dy` is `[rows, batch]`, `dx` is
    /// `[cols, batch]`. Every `dx` element is written (no atomics).
    pub fn spmm_backward_input(
        &self,
        w: &SparsePattern,
        values: &Tensor,
        dy: &Tensor,
        dx: &Tensor,
    ) -> Result<()> {
        self.sparse_backward(w, values, dy, None, None, Some((dx, false)))
    }

    /// The backward pass of a sparse layer in one dispatch: the weight gradient on the links
    /// (`dw[k] = Σ_b dy[row(k), b] · x[col(k), b]`, when `dw_x = Some((dw, x))`; slots past the
    /// live count are left untouched) and the input gradient `dx (+)= Wᵀ·dy` (when
    /// `dx = Some((dx, accumulate))`). `dy` is `[rows, batch]`, `x` and `dx` are `[cols, batch]`,
    /// `dw` and `values` have the pattern's capacity.
    pub fn sparse_backward(
        &self,
        w: &SparsePattern,
        values: &Tensor,
        dy: &Tensor,
        dw: Option<&Tensor>,
        x: Option<&Tensor>,
        dx: Option<(&Tensor, bool)>,
    ) -> Result<()> {
        const OP: &str = "sparse_backward";
        let batch = dy.cols();
        dy.expect(OP, DType::F32, w.rows, batch)?;
        let dw_x = match (dw, x) {
            (Some(dw), Some(x)) => {
                dw.expect(OP, DType::F32, w.capacity, 1)?;
                x.expect(OP, DType::F32, w.cols, batch)?;
                Some((dw, x))
            }
            (None, None) => None,
            _ => {
                return Err(crate::error::shape_err(
                    OP,
                    "the weight gradient needs both dw and the layer input x",
                ));
            }
        };
        if let Some((dx, _)) = dx {
            values.expect(OP, DType::F32, w.capacity, 1)?;
            dx.expect(OP, DType::F32, w.cols, batch)?;
        }
        match &self.backend {
            Backend::Gpu(g) => {
                let dw_len = if dw_x.is_some() { w.capacity } else { 0 };
                let dw_groups = dw_len.div_ceil(crate::ops::WG);
                let dx_threads = if dx.is_some() {
                    w.cols * batch.div_ceil(4)
                } else {
                    0
                };
                let groups = dw_groups + dx_threads.div_ceil(crate::ops::WG);
                let params = Params {
                    out_rows: w.cols as u32,
                    batch: batch as u32,
                    flags: if dx.is_some_and(|(_, acc)| acc) {
                        FLAG_ACCUMULATE
                    } else {
                        0
                    },
                    dw_len: dw_len as u32,
                    dw_groups: dw_groups as u32,
                    col_idx_at: w.col_idx_at as u32,
                    perm_at: w.perm_at as u32,
                    _pad: 0,
                };
                let (dw_t, x_t) = dw_x.unwrap_or((&g.dummy_out, &g.dummy));
                let dx_t = dx.map_or(&g.dummy_out, |(t, _)| t);
                let values = if dx.is_some() { values } else { &g.dummy };
                let tensors = [
                    &w.col_ptr,
                    &w.csr_links,
                    &w.csc_links,
                    values,
                    dy,
                    x_t,
                    dw_t,
                    dx_t,
                ];
                g.dispatch(
                    &BACKWARD,
                    &[],
                    bytes(&params),
                    &tensors,
                    crate::ops::grid_1d_wg(groups * crate::ops::WG, crate::ops::WG),
                )
            }
            Backend::Cpu => {
                let _timer = self.op_timer(OP);
                let col_ptr = w.col_ptr.cpu_read(OP)?;
                let dyv = dy.cpu_read(OP)?;
                if let Some((dw, x)) = dw_x {
                    let row_of = w.row_of.cpu_read(OP)?;
                    let col_idx = w.col_idx.cpu_read(OP)?;
                    let xv = x.cpu_read(OP)?;
                    let mut dwv = dw.cpu_write(OP)?;
                    let nnz = (col_ptr[w.cols] as usize).min(w.capacity);
                    crate::ops::sddmm::sddmm_cpu(
                        batch,
                        &row_of[..nnz],
                        &col_idx[..nnz],
                        as_f32(&dyv),
                        as_f32(&xv),
                        &mut as_f32_mut(&mut dwv)[..nnz],
                    );
                }
                if let Some((dx, accumulate)) = dx {
                    let row_idx = w.row_idx.cpu_read(OP)?;
                    let perm = w.perm.cpu_read(OP)?;
                    let values = values.cpu_read(OP)?;
                    let mut dxv = dx.cpu_write(OP)?;
                    spmm_cpu(
                        SpmmArgs {
                            batch,
                            ptr: &col_ptr,
                            idx: &row_idx,
                            perm: Some(&perm),
                            values: as_f32(&values),
                        },
                        as_f32(&dyv),
                        None,
                        Activation::None,
                        accumulate,
                        as_f32_mut(&mut dxv),
                    );
                }
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

/// CPU twin of `spmm_forward` (CSR) and of the input-gradient role of `sparse_backward` (CSC):
/// `out[r, b] (+)= act(Σ_{k∈r} values[perm(k)] · input[idx[k], b] + bias[r])`, summed in link
/// order as the shader does; with `accumulate` the finished value is added to `out`.
///
/// One task per output row; within a row, blocks of [`SPMM_BLOCK`] batch columns are summed in
/// registers over all of the row's links before one store (the compiler keeps the block in vector
/// registers; AVX-512 or AVX2 where the CPU has them, same bits as plain code — no fused
/// multiply-adds).
pub fn spmm_cpu(
    a: SpmmArgs<'_>,
    input: &[f32],
    bias: Option<&[f32]>,
    act: Activation,
    accumulate: bool,
    out: &mut [f32],
) {
    let row_args = RowArgs {
        a,
        input,
        relu: act == Activation::Relu,
        accumulate,
    };
    let simd = crate::cpu::Simd::detect();
    crate::cpu::for_each_chunk(out, a.batch, |r, row| {
        let b = bias.map(|b| b[r]);
        match simd {
            // SAFETY (both): `Simd::detect` found the features these copies are compiled for.
            #[cfg(target_arch = "x86_64")]
            #[allow(unsafe_code)]
            crate::cpu::Simd::Avx512 => unsafe { spmm_row_avx512(&row_args, r, b, row) },
            #[cfg(target_arch = "x86_64")]
            #[allow(unsafe_code)]
            crate::cpu::Simd::Avx2 => unsafe { spmm_row_avx2(&row_args, r, b, row) },
            _ => spmm_row(&row_args, r, b, row),
        }
    });
}

/// Batch columns [`spmm_cpu`] sums in registers at a time.
pub const SPMM_BLOCK: usize = 64;

/// What every row of [`spmm_cpu`] reads.
struct RowArgs<'a> {
    a: SpmmArgs<'a>,
    input: &'a [f32],
    relu: bool,
    accumulate: bool,
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
fn spmm_row_avx512(args: &RowArgs<'_>, r: usize, bias: Option<f32>, row: &mut [f32]) {
    spmm_row(args, r, bias, row);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn spmm_row_avx2(args: &RowArgs<'_>, r: usize, bias: Option<f32>, row: &mut [f32]) {
    spmm_row(args, r, bias, row);
}

/// `Σ_k value(k) · input[idx[k], c0 .. c0 + SPMM_BLOCK]` over `links`, in link order, returned
/// by value so that the block stays in registers.
#[inline(always)]
fn block_sum(
    links: std::ops::Range<usize>,
    value: &impl Fn(usize) -> f32,
    idx: &[u32],
    input: &[f32],
    batch: usize,
    c0: usize,
) -> [f32; SPMM_BLOCK] {
    let mut acc = [0f32; SPMM_BLOCK];
    for k in links {
        let v = value(k);
        let start = idx[k] as usize * batch + c0;
        let x = &input[start..start + SPMM_BLOCK];
        for i in 0..SPMM_BLOCK {
            acc[i] += v * x[i];
        }
    }
    acc
}

/// Row `r` of [`spmm_cpu`].
#[inline(always)]
fn spmm_row(args: &RowArgs<'_>, r: usize, bias: Option<f32>, row: &mut [f32]) {
    let RowArgs {
        a,
        input,
        relu,
        accumulate,
    } = *args;
    let batch = a.batch;
    let links = a.ptr[r] as usize..a.ptr[r + 1] as usize;
    let value = |k: usize| a.values[a.perm.map_or(k, |p| p[k] as usize)];
    let finish = |acc: &mut [f32], out: &mut [f32]| {
        if let Some(b) = bias {
            acc.iter_mut().for_each(|o| *o += b);
        }
        if relu {
            acc.iter_mut().for_each(|o| *o = o.max(0.0));
        }
        if accumulate {
            out.iter_mut().zip(acc.iter()).for_each(|(o, a)| *o += a);
        } else {
            out.copy_from_slice(acc);
        }
    };
    let mut c0 = 0;
    // Full blocks: fixed length, so the block lives in registers.
    while c0 + SPMM_BLOCK <= batch {
        let mut acc = block_sum(links.clone(), &value, a.idx, input, batch, c0);
        finish(&mut acc, &mut row[c0..c0 + SPMM_BLOCK]);
        c0 += SPMM_BLOCK;
    }
    // The remaining columns (all of them when the batch is small).
    if c0 < batch {
        let w = batch - c0;
        let mut acc = [0f32; SPMM_BLOCK];
        let acc = &mut acc[..w];
        for k in links {
            let v = value(k);
            let x = &input[a.idx[k] as usize * batch + c0..][..w];
            for (o, &xv) in acc.iter_mut().zip(x) {
                *o += v * xv;
            }
        }
        finish(acc, &mut row[c0..]);
    }
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

    /// Full register blocks, a tail, accumulation and empty rows: the same bits as summing
    /// each entry in link order.
    #[test]
    fn blocked_twin_sums_each_entry_in_link_order() {
        for (rows, cols, batch, density) in [(9, 7, 130, 0.4), (5, 3, 64, 0.0), (33, 17, 1, 0.2)] {
            let p =
                CsrPattern::random(rows, cols, density, RngKey::new(7, Stream::Synthetic, 0, 0))
                    .unwrap();
            let values = randn(p.nnz(), 8);
            let x = randn(cols * batch, 9);
            let start = randn(rows * batch, 10);
            let csr = SpmmArgs {
                batch,
                ptr: p.row_ptr(),
                idx: p.col_idx(),
                perm: None,
                values: &values,
            };
            for accumulate in [false, true] {
                let mut y = if accumulate {
                    start.clone()
                } else {
                    vec![f32::NAN; rows * batch]
                };
                spmm_cpu(csr, &x, None, Activation::None, accumulate, &mut y);
                for r in 0..rows {
                    for b in 0..batch {
                        let mut sum = 0.0f32;
                        for k in p.row_ptr()[r] as usize..p.row_ptr()[r + 1] as usize {
                            sum += values[k] * x[p.col_idx()[k] as usize * batch + b];
                        }
                        let want = if accumulate {
                            start[r * batch + b] + sum
                        } else {
                            sum
                        };
                        let got = y[r * batch + b];
                        assert_eq!(got.to_bits(), want.to_bits(), "{rows}x{cols} b{batch} r{r}");
                    }
                }
            }
        }
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
        spmm_cpu(csr, &x, Some(&bias), Activation::Relu, false, &mut y);
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
        spmm_cpu(args, &dy, None, Activation::None, false, &mut dx);
        for c in 0..cols {
            for b in 0..batch {
                let want: f32 = (0..rows).map(|r| w[r * cols + c] * dy[r * batch + b]).sum();
                assert!((dx[c * batch + b] - want).abs() < 1e-5);
            }
        }
    }
}
