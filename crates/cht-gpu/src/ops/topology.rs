//! Mask and count bookkeeping of a topology update: removal scores, dense-mask edits, chain-removal
//! sweeps and the on-device regrowth count; shader `shaders/topology.wgsl`.

use crate::device::{Backend, Device};
use crate::error::Result;
use crate::gpu::{Access, Kernel};
use crate::ops::sample::Selector;
use crate::ops::{bytes, grid_1d};
use crate::sparse::SparsePattern;
use crate::tensor::{DType, Tensor, as_f32, as_f32_mut};

const SOURCE: &str = include_str!("../../shaders/topology.wgsl");
const fn kernel(entry: &'static str, access: &'static [Access]) -> Kernel {
    Kernel {
        family: "topology",
        source: SOURCE,
        entry,
        access,
    }
}
const R: Access = Access::Read;
const W: Access = Access::ReadWrite;
pub(crate) const REMOVAL_SCORES: Kernel = kernel("removal_scores", &[R, R, R, R, R, R, W]);
pub(crate) const ROW_SUMS: Kernel = kernel("abs_row_sums", &[R, R, R, W]);
pub(crate) const COL_SUMS: Kernel = kernel("abs_col_sums", &[R, R, R, W]);
pub(crate) const SET_LINKS: Kernel = kernel("mask_set_links", &[R, R, R, R, W]);
pub(crate) const OR: Kernel = kernel("mask_or", &[R, W]);
pub(crate) const ROW_ANY: Kernel = kernel("row_any", &[R, W]);
pub(crate) const COL_ANY: Kernel = kernel("col_any", &[R, W]);
pub(crate) const ZERO_ROWS: Kernel = kernel("zero_rows", &[R, W]);
pub(crate) const ZERO_COLS: Kernel = kernel("zero_cols", &[R, W]);
pub(crate) const DEFICIT: Kernel = kernel("count_deficit", &[R, W]);
pub(crate) const LIVE: Kernel = kernel("live_links", &[R, W]);

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    cols: u32,
    kind: u32,
    wanted: u32,
    epsilon: f32,
    factor: f32,
    _pad: [u32; 2],
}

fn params(rows: usize, cols: usize) -> Params {
    Params {
        rows: rows as u32,
        cols: cols as u32,
        kind: 0,
        wanted: 0,
        epsilon: 0.0,
        factor: 0.0,
        _pad: [0; 2],
    }
}

/// Removal score of each live link (spec §2.2).
#[derive(Clone, Copy, Debug)]
pub enum LinkScore<'a> {
    /// `|w|`.
    WeightMagnitude,
    /// `|w| / (Σ_col |w| + ε) + |w| / (Σ_row |w| + ε)` (ε added once, after the sums).
    RelativeImportance {
        /// ε (1e-5 in the official code).
        epsilon: f32,
    },
    /// `|w| + factor · |g|` with `g` the links' gradient (CSR order).
    Mest {
        /// Gradient weight (0.01 in the official code).
        factor: f32,
        /// Gradient of the links.
        grad: &'a Tensor,
    },
}

/// Which side of a mask a chain-removal sweep inspects or clears.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Axis {
    /// Rows (output neurons).
    Rows,
    /// Columns (input neurons).
    Cols,
}

impl Device {
    /// Removal scores of the live links of `p` (CSR order) into `out` (`[capacity, 1]`);
    /// `row_sums`/`col_sums` are scratch of `rows` and `cols` entries.
    pub fn removal_scores(
        &self,
        p: &SparsePattern,
        values: &Tensor,
        score: LinkScore<'_>,
        row_sums: &Tensor,
        col_sums: &Tensor,
        out: &Tensor,
    ) -> Result<()> {
        const OP: &str = "removal_scores";
        values.expect(OP, DType::F32, p.capacity, 1)?;
        out.expect(OP, DType::F32, p.capacity, 1)?;
        row_sums.expect(OP, DType::F32, p.rows, 1)?;
        col_sums.expect(OP, DType::F32, p.cols, 1)?;
        let mut prm = params(p.rows, p.cols);
        let (aux0, aux1) = match score {
            LinkScore::WeightMagnitude => (row_sums, col_sums),
            LinkScore::RelativeImportance { epsilon } => {
                prm.kind = 1;
                prm.epsilon = epsilon;
                (row_sums, col_sums)
            }
            LinkScore::Mest { factor, grad } => {
                grad.expect(OP, DType::F32, p.capacity, 1)?;
                prm.kind = 2;
                prm.factor = factor;
                (grad, col_sums)
            }
        };
        match &self.backend {
            Backend::Gpu(g) => {
                if prm.kind == 1 {
                    g.dispatch(
                        &ROW_SUMS,
                        &[],
                        bytes(&prm),
                        &[&p.row_ptr, &p.row_ptr, values, row_sums],
                        grid_1d(p.rows),
                    )?;
                    g.dispatch(
                        &COL_SUMS,
                        &[],
                        bytes(&prm),
                        &[&p.col_ptr, &p.perm, values, col_sums],
                        grid_1d(p.cols),
                    )?;
                }
                let t = [&p.row_ptr, &p.row_of, &p.col_idx, values, aux0, aux1, out];
                g.dispatch(&REMOVAL_SCORES, &[], bytes(&prm), &t, grid_1d(p.capacity))
            }
            Backend::Cpu => {
                let _timer = self.op_timer(OP);
                let (rp, ro, ci) = (
                    p.row_ptr.cpu_read(OP)?,
                    p.row_of.cpu_read(OP)?,
                    p.col_idx.cpu_read(OP)?,
                );
                let v = values.cpu_read(OP)?;
                let v = as_f32(&v);
                let nnz = (rp[p.rows] as usize).min(p.capacity);
                let mut o = out.cpu_write(OP)?;
                let o = as_f32_mut(&mut o);
                match score {
                    LinkScore::WeightMagnitude => {
                        for k in 0..nnz {
                            o[k] = v[k].abs();
                        }
                    }
                    LinkScore::RelativeImportance { epsilon } => {
                        let (cp, perm) = (p.col_ptr.cpu_read(OP)?, p.perm.cpu_read(OP)?);
                        let rs: Vec<f32> = (0..p.rows)
                            .map(|r| (rp[r]..rp[r + 1]).fold(0.0, |s, k| s + v[k as usize].abs()))
                            .collect();
                        let cs: Vec<f32> = (0..p.cols)
                            .map(|c| {
                                (cp[c]..cp[c + 1])
                                    .fold(0.0, |s, k| s + v[perm[k as usize] as usize].abs())
                            })
                            .collect();
                        for k in 0..nnz {
                            let w = v[k].abs();
                            o[k] = w / (cs[ci[k] as usize] + epsilon)
                                + w / (rs[ro[k] as usize] + epsilon);
                        }
                        as_f32_mut(&mut row_sums.cpu_write(OP)?).copy_from_slice(&rs);
                        as_f32_mut(&mut col_sums.cpu_write(OP)?).copy_from_slice(&cs);
                    }
                    LinkScore::Mest { factor, grad } => {
                        let gr = grad.cpu_read(OP)?;
                        let gr = as_f32(&gr);
                        for k in 0..nnz {
                            o[k] = v[k].abs() + factor * gr[k].abs();
                        }
                    }
                }
                Ok(())
            }
        }
    }

    /// Sets `mask[r, c] = 1` for every live link of `p` whose `flags` entry (CSR order) is set.
    pub fn mask_set_links(&self, p: &SparsePattern, flags: &Tensor, mask: &Tensor) -> Result<()> {
        const OP: &str = "mask_set_links";
        flags.expect(OP, DType::U32, p.capacity, 1)?;
        mask.expect(OP, DType::U32, p.rows, p.cols)?;
        match &self.backend {
            Backend::Gpu(g) => {
                let t = [&p.row_ptr, &p.row_of, &p.col_idx, flags, mask];
                g.dispatch(
                    &SET_LINKS,
                    &[],
                    bytes(&params(p.rows, p.cols)),
                    &t,
                    grid_1d(p.capacity),
                )
            }
            Backend::Cpu => {
                let _timer = self.op_timer(OP);
                let (rp, ro, ci) = (
                    p.row_ptr.cpu_read(OP)?,
                    p.row_of.cpu_read(OP)?,
                    p.col_idx.cpu_read(OP)?,
                );
                let f = flags.cpu_read(OP)?;
                let mut m = mask.cpu_write(OP)?;
                for k in 0..(rp[p.rows] as usize).min(p.capacity) {
                    if f[k] != 0 {
                        m[ro[k] as usize * p.cols + ci[k] as usize] = 1;
                    }
                }
                Ok(())
            }
        }
    }

    /// `a |= b` elementwise on two 0/1 masks of the same shape.
    pub fn mask_or(&self, a: &Tensor, b: &Tensor) -> Result<()> {
        const OP: &str = "mask_or";
        a.expect(OP, DType::U32, b.rows(), b.cols())?;
        b.expect(OP, DType::U32, a.rows(), a.cols())?;
        match &self.backend {
            Backend::Gpu(g) => g.dispatch(
                &OR,
                &[],
                bytes(&params(a.rows(), a.cols())),
                &[b, a],
                grid_1d(a.len()),
            ),
            Backend::Cpu => {
                let _timer = self.op_timer(OP);
                let bv = b.cpu_read(OP)?;
                let mut av = a.cpu_write(OP)?;
                for (x, &y) in av.iter_mut().zip(bv.iter()) {
                    if y != 0 {
                        *x = 1;
                    }
                }
                Ok(())
            }
        }
    }

    /// `flags[i] = 1` if row (or column) `i` of `mask` has a link.
    pub fn mask_any(&self, mask: &Tensor, axis: Axis, flags: &Tensor) -> Result<()> {
        const OP: &str = "mask_any";
        let (rows, cols) = (mask.rows(), mask.cols());
        let n = if axis == Axis::Rows { rows } else { cols };
        mask.expect(OP, DType::U32, rows, cols)?;
        flags.expect(OP, DType::U32, n, 1)?;
        match &self.backend {
            Backend::Gpu(g) => {
                let k = if axis == Axis::Rows {
                    &ROW_ANY
                } else {
                    &COL_ANY
                };
                g.dispatch(
                    k,
                    &[],
                    bytes(&params(rows, cols)),
                    &[mask, flags],
                    grid_1d(n),
                )
            }
            Backend::Cpu => {
                let _timer = self.op_timer(OP);
                let m = mask.cpu_read(OP)?;
                let mut f = flags.cpu_write(OP)?;
                for (i, o) in f.iter_mut().enumerate() {
                    let any = match axis {
                        Axis::Rows => m[i * cols..(i + 1) * cols].iter().any(|&v| v != 0),
                        Axis::Cols => (0..rows).any(|r| m[r * cols + i] != 0),
                    };
                    *o = u32::from(any);
                }
                Ok(())
            }
        }
    }

    /// Clears every row (or column) `i` of `mask` whose `flags[i]` is 0.
    pub fn mask_clear_unflagged(&self, mask: &Tensor, axis: Axis, flags: &Tensor) -> Result<()> {
        const OP: &str = "mask_clear_unflagged";
        let (rows, cols) = (mask.rows(), mask.cols());
        let n = if axis == Axis::Rows { rows } else { cols };
        mask.expect(OP, DType::U32, rows, cols)?;
        flags.expect(OP, DType::U32, n, 1)?;
        match &self.backend {
            Backend::Gpu(g) => {
                let k = if axis == Axis::Rows {
                    &ZERO_ROWS
                } else {
                    &ZERO_COLS
                };
                g.dispatch(
                    k,
                    &[],
                    bytes(&params(rows, cols)),
                    &[flags, mask],
                    grid_1d(mask.len()),
                )
            }
            Backend::Cpu => {
                let _timer = self.op_timer(OP);
                let f = flags.cpu_read(OP)?;
                let mut m = mask.cpu_write(OP)?;
                for (i, v) in m.iter_mut().enumerate() {
                    let line = if axis == Axis::Rows {
                        i / cols
                    } else {
                        i % cols
                    };
                    if f[line] == 0 {
                        *v = 0;
                    }
                }
                Ok(())
            }
        }
    }

    /// Sets the selection count of `sel` to `target − min(target, have[0])` on the device: the
    /// number of links to regrow when `have[0]` links survived removal (e.g. a CSR builder's status).
    pub fn set_select_deficit(&self, sel: &Selector, target: u32, have: &Tensor) -> Result<()> {
        const OP: &str = "set_select_deficit";
        match &self.backend {
            Backend::Gpu(g) => {
                let prm = Params {
                    wanted: target,
                    ..params(0, 0)
                };
                g.dispatch(&DEFICIT, &[], bytes(&prm), &[have, &sel.state], [1, 1, 1])
            }
            Backend::Cpu => {
                let _timer = self.op_timer(OP);
                let h = have.cpu_read(OP)?[0];
                sel.state.cpu_write(OP)?[0] = target - target.min(h);
                Ok(())
            }
        }
    }

    /// `flags[k] = 1` for the CSR slots of `p` that hold a link, 0 for spare capacity.
    pub fn live_link_flags(&self, p: &SparsePattern, flags: &Tensor) -> Result<()> {
        const OP: &str = "live_link_flags";
        flags.expect(OP, DType::U32, p.capacity, 1)?;
        match &self.backend {
            Backend::Gpu(g) => g.dispatch(
                &LIVE,
                &[],
                bytes(&params(p.rows, p.cols)),
                &[&p.row_ptr, flags],
                grid_1d(p.capacity),
            ),
            Backend::Cpu => {
                let _timer = self.op_timer(OP);
                let n = p.row_ptr.cpu_read(OP)?[p.rows] as usize;
                for (k, f) in flags.cpu_write(OP)?.iter_mut().enumerate() {
                    *f = u32::from(k < n);
                }
                Ok(())
            }
        }
    }
}
