//! Cannistraci-Hebb link prediction on the device; shader `shaders/ch_link.wgsl`, CPU twin
//! `cht_sparse::predict::scores`. Node-based predictors sum in the twin's order, so the scores agree
//! bit for bit where f32 division is correctly rounded (CH3.1 uses `pow`: rounding only);
//! path-based predictors agree to rounding.

use cht_sparse::CsrPattern;
use cht_sparse::predict::{Predictor, scores};

use crate::device::{Backend, Device};
use crate::error::Result;
use crate::gpu::{Access, Kernel};
use crate::ops::{bytes, grid_1d};
use crate::sparse::SparsePattern;
use crate::tensor::{DType, Tensor, as_f32_mut};

const SOURCE: &str = include_str!("../../../../shaders/ch_link.wgsl");
const fn kernel(entry: &'static str, access: &'static [Access]) -> Kernel {
    Kernel {
        family: "ch_l3n",
        source: SOURCE,
        entry,
        access,
    }
}
const R: Access = Access::Read;
const W: Access = Access::ReadWrite;
const COUNT: Kernel = kernel("l3n_count", &[R, R, R, R, W]);
const WEIGHTS: Kernel = kernel("l3n_weights", &[R, R, W]);
const ROWS: Kernel = kernel("l3n_rows", &[R, R, R, W]);
const COLS: Kernel = kernel("l3n_cols", &[R, R, R, W]);
const PATHS: Kernel = kernel("l3p_cols", &[R, R, R, R, R, W]);

/// Scratch entries (per buffer) a link-prediction pass may use: 4 Mi words = 16 MiB.
const SCRATCH_WORDS: usize = 1 << 22;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    others: u32,
    start: u32,
    chunk: u32,
    variant: u32,
    _pad: [u32; 3],
}

/// Which side of the layer a phase takes its seeds from.
#[derive(Clone, Copy, Debug)]
enum Side {
    Rows,
    Cols,
}

/// Bounded scratch for scoring `rows × cols` layers, created once per shape.
#[derive(Clone, Debug)]
pub struct LinkScratch {
    rows: usize,
    cols: usize,
    counts: Tensor,
    weights: Tensor,
}

impl LinkScratch {
    fn chunk(&self, seeds_side: usize) -> usize {
        (SCRATCH_WORDS / seeds_side.max(1)).clamp(1, seeds_side.max(1))
    }
}

impl Device {
    /// Scratch for [`Device::link_scores`] on `rows × cols` layers (at most 2 × 16 MiB).
    pub fn link_scratch(&self, label: &str, rows: usize, cols: usize) -> LinkScratch {
        let words = (rows * rows).max(cols * cols).clamp(1, SCRATCH_WORDS);
        LinkScratch {
            rows,
            cols,
            counts: self.zeros(&format!("{label}.cn"), words, 1, DType::U32),
            weights: self.zeros(&format!("{label}.node_weights"), words, 1, DType::F32),
        }
    }

    /// Writes the `predictor`'s score of every pair of the pattern into `scores` (`[rows, cols]`,
    /// existing links 0).
    pub fn link_scores(
        &self,
        pattern: &SparsePattern,
        predictor: Predictor,
        scratch: &LinkScratch,
        out: &Tensor,
    ) -> Result<()> {
        const OP: &str = "link_scores";
        let (rows, cols) = (pattern.rows, pattern.cols);
        out.expect(OP, DType::F32, rows, cols)?;
        if (scratch.rows, scratch.cols) != (rows, cols) {
            return Err(crate::error::shape_err(
                OP,
                "scratch was made for another shape",
            ));
        }
        match &self.backend {
            Backend::Gpu(g) => {
                let variant = match predictor {
                    Predictor::Ch3L3n => 0,
                    Predictor::Ch2L3n => 1,
                    Predictor::Ch31L3n => 2,
                    Predictor::Ch3L3p => 3,
                    Predictor::Ch2L3p => 4,
                    Predictor::RaL3 => 5,
                };
                let p = pattern;
                // Each phase takes chunks of seeds on one side: CN counts and node weights of
                // the chunk, then one gather kernel. `Side::Rows` seeds are output neurons (CSR
                // lists, CSC for the other side); `Side::Cols` the reverse.
                let phase = |side: Side, last: &Kernel, last_bindings: &[&Tensor]| -> Result<()> {
                    let (seeds, others, seed_ptr, seed_idx, other_ptr, other_idx) = match side {
                        Side::Rows => (rows, cols, &p.row_ptr, &p.col_idx, &p.col_ptr, &p.row_idx),
                        Side::Cols => (cols, rows, &p.col_ptr, &p.row_idx, &p.row_ptr, &p.col_idx),
                    };
                    let chunk = scratch.chunk(seeds);
                    for start in (0..seeds).step_by(chunk) {
                        let n = chunk.min(seeds - start);
                        let params = Params {
                            rows: seeds as u32,
                            others: others as u32,
                            start: start as u32,
                            chunk: n as u32,
                            variant,
                            _pad: [0; 3],
                        };
                        let params = bytes(&params);
                        g.clear(scratch.counts.gpu_slice(OP)?, scratch.counts.len());
                        let count = [seed_ptr, seed_idx, other_ptr, other_idx, &scratch.counts];
                        g.dispatch(&COUNT, &[], params, &count, grid_1d(p.capacity))?;
                        let weights = [seed_ptr, &scratch.counts, &scratch.weights];
                        g.dispatch(&WEIGHTS, &[], params, &weights, grid_1d(n * seeds))?;
                        let mut bindings: Vec<&Tensor> = last_bindings.to_vec();
                        bindings.extend([&scratch.weights, out]);
                        g.dispatch(last, &[], params, &bindings, grid_1d(n * others))?;
                    }
                    Ok(())
                };
                if predictor.is_path_based() {
                    // Factors f(k; j) per seed column, then every path through (j, a).
                    phase(
                        Side::Cols,
                        &PATHS,
                        &[&p.row_ptr, &p.col_idx, &p.col_ptr, &p.row_idx],
                    )?;
                } else {
                    // Output-side LC nodes (writes every score), then input-side ones (adds, and
                    // zeroes existing links).
                    phase(Side::Rows, &ROWS, &[&p.col_ptr, &p.row_idx])?;
                    phase(Side::Cols, &COLS, &[&p.row_ptr, &p.col_idx])?;
                }
                Ok(())
            }
            Backend::Cpu => {
                let row_ptr = pattern.row_ptr.cpu_read(OP)?.to_vec();
                let mut col_idx = pattern.col_idx.cpu_read(OP)?.to_vec();
                col_idx.truncate(row_ptr[rows] as usize);
                let csr = CsrPattern::new(rows, cols, row_ptr, col_idx)?;
                let s = scores(&csr, predictor);
                as_f32_mut(&mut out.cpu_write(OP)?).copy_from_slice(&s);
                Ok(())
            }
        }
    }
}
