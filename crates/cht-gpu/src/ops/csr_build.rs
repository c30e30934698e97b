//! CSR + CSC construction from a dense 0/1 mask on the device, and value gather/scatter between
//! CSR order and dense layout; shader `shaders/csr_build.wgsl`.
//!
//! A topology update then never leaves the device: scatter the old values to a dense scratch,
//! build the new pattern from the new mask, gather the values back (links that are new read 0).

use crate::device::{Backend, Device};
use crate::error::Result;
use crate::gpu::{Access, Kernel};
use crate::ops::{bytes, grid_1d};
use crate::sparse::SparsePattern;
use crate::tensor::{DType, Tensor, as_f32, as_f32_mut};

const SOURCE: &str = include_str!("../../shaders/csr_build.wgsl");
const fn kernel(entry: &'static str, access: &'static [Access]) -> Kernel {
    Kernel {
        family: "csr_build",
        source: SOURCE,
        entry,
        access,
    }
}
const R: Access = Access::Read;
const W: Access = Access::ReadWrite;
pub(crate) const COUNT_ROWS: Kernel = kernel("count_rows", &[R, W]);
pub(crate) const COUNT_COLS: Kernel = kernel("count_cols", &[R, W]);
pub(crate) const SCAN: Kernel = kernel("exclusive_scan", &[R, W, W]);
pub(crate) const FILL_ROWS: Kernel = kernel("fill_rows", &[R, R, W, W, W]);
pub(crate) const FILL_COLS: Kernel = kernel("fill_cols", &[R, R, R, W, W]);
pub(crate) const GATHER: Kernel = kernel("csr_gather", &[R, R, R, R, W]);
pub(crate) const SCATTER: Kernel = kernel("csr_scatter", &[R, R, R, R, W]);
pub(crate) const MASK: Kernel = kernel("csr_mask", &[R, R, R, W]);

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    cols: u32,
    n: u32,
    capacity: u32,
    slot: u32,
    _pad: [u32; 3],
}

/// Parameters of the one-invocation-per-link kernels (gather, scatter, mask) over `p`.
fn link_params(p: &SparsePattern) -> Params {
    Params {
        rows: p.rows as u32,
        cols: p.cols as u32,
        n: 0,
        capacity: p.capacity as u32,
        slot: 0,
        _pad: [0; 3],
    }
}

/// Records `output[0] = 0, output[i + 1] = Σ_{j ≤ i} input[j]` for `n` words on the GPU (one
/// workgroup; exact integer arithmetic); `status[0]` receives the total.
pub(crate) fn exclusive_scan_gpu(
    g: &crate::gpu::Gpu,
    input: &Tensor,
    output: &Tensor,
    status: &Tensor,
    n: usize,
) -> Result<()> {
    let params = Params {
        rows: 0,
        cols: 0,
        n: n as u32,
        capacity: u32::MAX,
        slot: 0,
        _pad: [0; 3],
    };
    g.dispatch(
        &SCAN,
        &[],
        bytes(&params),
        &[input, output, status],
        [1, 1, 1],
    )
}

/// Scratch buffers for rebuilding patterns of one `rows × cols` shape, created once and reused.
#[derive(Clone, Debug)]
pub struct CsrBuilder {
    rows: usize,
    cols: usize,
    row_counts: Tensor,
    col_counts: Tensor,
    pos: Tensor,
    /// `[links counted by rows, links counted by columns]` of the last build; more than the
    /// pattern's capacity means links were dropped.
    pub status: Tensor,
}

impl Device {
    /// Scratch space to rebuild `rows × cols` patterns.
    pub fn csr_builder(&self, label: &str, rows: usize, cols: usize) -> CsrBuilder {
        CsrBuilder {
            rows,
            cols,
            row_counts: self.zeros(&format!("{label}.row_counts"), rows, 1, DType::U32),
            col_counts: self.zeros(&format!("{label}.col_counts"), cols, 1, DType::U32),
            pos: self.zeros(&format!("{label}.pos"), rows, cols, DType::U32),
            status: self.zeros(&format!("{label}.status"), 2, 1, DType::U32),
        }
    }

    /// Rebuilds `out` (CSR and CSC) from `mask` (`[rows, cols]`, u32, nonzero = link) on the device.
    pub fn build_pattern(&self, b: &CsrBuilder, mask: &Tensor, out: &SparsePattern) -> Result<()> {
        const OP: &str = "build_pattern";
        mask.expect(OP, DType::U32, b.rows, b.cols)?;
        if (out.rows, out.cols) != (b.rows, b.cols) {
            return Err(crate::error::shape_err(
                OP,
                format!(
                    "builder is {}x{}, pattern is {}x{}",
                    b.rows, b.cols, out.rows, out.cols
                ),
            ));
        }
        let params = |n: usize, slot: u32| Params {
            rows: b.rows as u32,
            cols: b.cols as u32,
            n: n as u32,
            capacity: out.capacity as u32,
            slot,
            _pad: [0; 3],
        };
        match &self.backend {
            Backend::Gpu(g) => {
                let p = params(0, 0);
                g.dispatch(
                    &COUNT_ROWS,
                    &[],
                    bytes(&p),
                    &[mask, &b.row_counts],
                    grid_1d(b.rows),
                )?;
                g.dispatch(
                    &COUNT_COLS,
                    &[],
                    bytes(&p),
                    &[mask, &b.col_counts],
                    grid_1d(b.cols),
                )?;
                let pr = params(b.rows, 0);
                g.dispatch(
                    &SCAN,
                    &[],
                    bytes(&pr),
                    &[&b.row_counts, &out.row_ptr, &b.status],
                    [1, 1, 1],
                )?;
                let pc = params(b.cols, 1);
                g.dispatch(
                    &SCAN,
                    &[],
                    bytes(&pc),
                    &[&b.col_counts, &out.col_ptr, &b.status],
                    [1, 1, 1],
                )?;
                let fill_rows = [mask, &out.row_ptr, &out.col_idx, &out.row_of, &b.pos];
                g.dispatch(&FILL_ROWS, &[], bytes(&p), &fill_rows, grid_1d(b.rows))?;
                let fill_cols = [mask, &out.col_ptr, &b.pos, &out.row_idx, &out.perm];
                g.dispatch(&FILL_COLS, &[], bytes(&p), &fill_cols, grid_1d(b.cols))
            }
            Backend::Cpu => {
                let _timer = self.op_timer(OP);
                let m = mask.cpu_read(OP)?;
                // The link arrays are disjoint views of two storages: lock them together.
                let all = [
                    &out.row_ptr,
                    &out.col_idx,
                    &out.row_of,
                    &out.col_ptr,
                    &out.row_idx,
                    &out.perm,
                ];
                let status = Tensor::cpu_write_disjoint(&all, OP, |s| {
                    let [row_ptr, col_idx, row_of, col_ptr, row_idx, perm] = s else {
                        unreachable!("six tensors were locked")
                    };
                    let mut arrays = CsrArrays {
                        row_ptr: &mut **row_ptr,
                        col_idx: &mut **col_idx,
                        row_of: &mut **row_of,
                        col_ptr: &mut **col_ptr,
                        row_idx: &mut **row_idx,
                        perm: &mut **perm,
                    };
                    build_pattern_cpu(b.rows, b.cols, out.capacity, &m, &mut arrays)
                })?;
                b.status.cpu_write(OP)?.copy_from_slice(&status);
                Ok(())
            }
        }
    }

    /// `values[k] = dense[row(k), col(k)]` for every live link of `p`; `dense` is `[rows, cols]`.
    pub fn csr_gather(&self, p: &SparsePattern, dense: &Tensor, values: &Tensor) -> Result<()> {
        self.move_values(p, Move::Gather, dense, values)
    }

    /// Writes the live links' `values` into `dense` (`[rows, cols]`), zeros elsewhere.
    pub fn csr_scatter(&self, p: &SparsePattern, values: &Tensor, dense: &Tensor) -> Result<()> {
        self.move_values(p, Move::Scatter, dense, values)
    }

    /// Writes the live links' `values` into `dense` and leaves every other entry as it was: a
    /// dense memory of each position's last live value (historical weights, spec §3.5).
    pub fn csr_overlay(&self, p: &SparsePattern, values: &Tensor, dense: &Tensor) -> Result<()> {
        self.move_values(p, Move::Overlay, dense, values)
    }

    /// Writes the pattern's 0/1 mask into `mask` (`[rows, cols]` u32): the mask of a
    /// masked-dense layer.
    pub fn pattern_mask(&self, p: &SparsePattern, mask: &Tensor) -> Result<()> {
        const OP: &str = "pattern_mask";
        mask.expect(OP, DType::U32, p.rows, p.cols)?;
        match &self.backend {
            Backend::Gpu(g) => {
                let params = link_params(p);
                g.clear(mask.gpu_slice(OP)?, mask.len());
                let tensors = [&p.row_ptr, &p.row_of, &p.col_idx, mask];
                g.dispatch(&MASK, &[], bytes(&params), &tensors, grid_1d(p.capacity))
            }
            Backend::Cpu => {
                let _timer = self.op_timer(OP);
                let (rp, ro, ci) = (
                    p.row_ptr.cpu_read(OP)?,
                    p.row_of.cpu_read(OP)?,
                    p.col_idx.cpu_read(OP)?,
                );
                let mut m = mask.cpu_write(OP)?;
                m.fill(0);
                let nnz = (rp[p.rows] as usize).min(p.capacity);
                (0..nnz).for_each(|k| m[ro[k] as usize * p.cols + ci[k] as usize] = 1);
                Ok(())
            }
        }
    }

    fn move_values(
        &self,
        p: &SparsePattern,
        how: Move,
        dense: &Tensor,
        values: &Tensor,
    ) -> Result<()> {
        let op = match how {
            Move::Gather => "csr_gather",
            Move::Scatter => "csr_scatter",
            Move::Overlay => "csr_overlay",
        };
        dense.expect(op, DType::F32, p.rows, p.cols)?;
        values.expect(op, DType::F32, p.capacity, 1)?;
        match &self.backend {
            Backend::Gpu(g) => {
                let params = link_params(p);
                let (kernel, src, dst) = match how {
                    Move::Gather => (&GATHER, dense, values),
                    Move::Scatter => {
                        g.clear(dense.gpu_slice(op)?, dense.len());
                        (&SCATTER, values, dense)
                    }
                    Move::Overlay => (&SCATTER, values, dense),
                };
                let tensors = [&p.row_ptr, &p.row_of, &p.col_idx, src, dst];
                g.dispatch(kernel, &[], bytes(&params), &tensors, grid_1d(p.capacity))
            }
            Backend::Cpu => {
                let _timer = self.op_timer(op);
                let (rp, ro, ci) = (
                    p.row_ptr.cpu_read(op)?,
                    p.row_of.cpu_read(op)?,
                    p.col_idx.cpu_read(op)?,
                );
                let nnz = (rp[p.rows] as usize).min(p.capacity);
                let at = |k: usize| ro[k] as usize * p.cols + ci[k] as usize;
                match how {
                    Move::Gather => {
                        let d = dense.cpu_read(op)?;
                        let mut v = values.cpu_write(op)?;
                        let (d, v) = (as_f32(&d), as_f32_mut(&mut v));
                        (0..nnz).for_each(|k| v[k] = d[at(k)]);
                    }
                    Move::Scatter | Move::Overlay => {
                        let v = values.cpu_read(op)?;
                        let mut d = dense.cpu_write(op)?;
                        let (v, d) = (as_f32(&v), as_f32_mut(&mut d));
                        if matches!(how, Move::Scatter) {
                            d.fill(0.0);
                        }
                        (0..nnz).for_each(|k| d[at(k)] = v[k]);
                    }
                }
                Ok(())
            }
        }
    }
}

/// Direction of [`Device::csr_gather`] / [`Device::csr_scatter`] / [`Device::csr_overlay`].
#[derive(Clone, Copy, Debug)]
enum Move {
    Gather,
    /// Clear `dense`, then write the links.
    Scatter,
    /// Write the links over what `dense` holds.
    Overlay,
}

/// Output arrays of [`build_pattern_cpu`].
#[derive(Debug)]
pub struct CsrArrays<V> {
    /// `rows + 1`.
    pub row_ptr: V,
    /// Capacity.
    pub col_idx: V,
    /// Capacity.
    pub row_of: V,
    /// `cols + 1`.
    pub col_ptr: V,
    /// Capacity.
    pub row_idx: V,
    /// Capacity.
    pub perm: V,
}

/// CPU twin of the build: same clamping to `capacity`, same fill order. Returns the status words
/// (true link counts by rows and by columns).
pub fn build_pattern_cpu<V: std::ops::DerefMut<Target = [u32]>>(
    rows: usize,
    cols: usize,
    capacity: usize,
    mask: &[u32],
    out: &mut CsrArrays<V>,
) -> [u32; 2] {
    let on = |r: usize, c: usize| mask[r * cols + c] != 0;
    let mut total = [0u32; 2];
    out.row_ptr[0] = 0;
    for r in 0..rows {
        total[0] += (0..cols).filter(|&c| on(r, c)).count() as u32;
        out.row_ptr[r + 1] = total[0].min(capacity as u32);
    }
    out.col_ptr[0] = 0;
    for c in 0..cols {
        total[1] += (0..rows).filter(|&r| on(r, c)).count() as u32;
        out.col_ptr[c + 1] = total[1].min(capacity as u32);
    }
    let mut pos = vec![0u32; rows * cols];
    for r in 0..rows {
        let (mut k, end) = (out.row_ptr[r], out.row_ptr[r + 1]);
        for c in 0..cols {
            if on(r, c) && k < end {
                out.col_idx[k as usize] = c as u32;
                out.row_of[k as usize] = r as u32;
                pos[r * cols + c] = k;
                k += 1;
            }
        }
    }
    for c in 0..cols {
        let (mut k, end) = (out.col_ptr[c], out.col_ptr[c + 1]);
        for r in 0..rows {
            if on(r, c) && k < end {
                out.row_idx[k as usize] = r as u32;
                out.perm[k as usize] = pos[r * cols + c];
                k += 1;
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use cht_sparse::CsrPattern;
    use cht_sparse::rng::{RngKey, Stream};

    #[test]
    fn twin_agrees_with_the_host_pattern_and_clamps_overflow() {
        let p = CsrPattern::random(11, 7, 0.4, RngKey::new(4, Stream::Synthetic, 0, 0)).unwrap();
        let mask = p.to_mask().to_u32();
        let cap = p.nnz() + 3;
        let mut a = CsrArrays {
            row_ptr: vec![0; 12].into_boxed_slice(),
            col_idx: vec![0; cap].into_boxed_slice(),
            row_of: vec![0; cap].into_boxed_slice(),
            col_ptr: vec![0; 8].into_boxed_slice(),
            row_idx: vec![0; cap].into_boxed_slice(),
            perm: vec![0; cap].into_boxed_slice(),
        };
        let status = build_pattern_cpu(11, 7, cap, &mask, &mut a);
        assert_eq!(status, [p.nnz() as u32; 2]);
        assert_eq!(&a.row_ptr[..], p.row_ptr());
        assert_eq!(&a.col_idx[..p.nnz()], p.col_idx());
        let csc = p.csc();
        assert_eq!(*a.col_ptr, csc.col_ptr);
        assert_eq!(&a.perm[..p.nnz()], &csc.perm[..]);
        // Too small: pointers are clamped, status tells the truth.
        let status = build_pattern_cpu(11, 7, 2, &mask, &mut a);
        assert_eq!(status[0] as usize, p.nnz());
        assert_eq!(a.row_ptr[11], 2);
    }
}
