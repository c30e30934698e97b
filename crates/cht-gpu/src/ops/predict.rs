//! Cannistraci-Hebb link prediction on the device; shader `shaders/ch_link.wgsl`, CPU twin
//! `cht_sparse::predict::scores`.
//!
//! Node-based predictors (L3n) have two paths that give the same bits ([`L3nPath`]): the sparse
//! walk (`l3n_*` kernels, bounded scratch) and the dense products of spec §1.2 (`lp_*` kernels
//! plus two [`Device::gemm`] calls, scratch `rows² + cols²` floats, see [`ProductScratch`]).
//! Both sum in the twin's order and their node weights are the twin's bits on any adapter
//! (correctly rounded division, CH3.1's `pow` from a host table), so node-based scores agree with
//! the CPU bit for bit. Path-based predictors agree to rounding.

use cht_sparse::CsrPattern;
use cht_sparse::predict::products::{self, Layout, Side};
use cht_sparse::predict::{L3N_DENSE_ABOVE, L3nPath, Predictor, ch31_denominators, scores_via};

use crate::device::{Backend, Device};
use crate::error::{Error, Result};
use crate::gpu::{Access, Gpu, Kernel};
use crate::ops::gemm::{Gemm, GemmKernel, Transpose};
use crate::ops::{bytes, grid_1d};
use crate::sparse::SparsePattern;
use crate::tensor::{DType, Tensor, as_f32_mut};

const SOURCE: &str = include_str!("../../shaders/ch_link.wgsl");
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
pub(crate) const COUNT: Kernel = kernel("l3n_count", &[R, R, R, R, W]);
pub(crate) const WEIGHTS: Kernel = kernel("l3n_weights", &[R, R, W, R]);
pub(crate) const ROWS: Kernel = kernel("l3n_rows", &[R, R, R, W]);
pub(crate) const COLS: Kernel = kernel("l3n_cols", &[R, R, R, W]);
pub(crate) const PATHS: Kernel = kernel("l3p_cols", &[R, R, R, R, R, W]);
pub(crate) const LP_PACK: Kernel = kernel("lp_pack", &[R, R, R, W, W]);
pub(crate) const LP_COUNT: Kernel = kernel("lp_count", &[R, W]);
pub(crate) const LP_WEIGHTS: Kernel = kernel("lp_weights", &[R, R, W]);
pub(crate) const LP_DENSE: Kernel = kernel("lp_dense", &[R, W]);
pub(crate) const LP_COMBINE: Kernel = kernel("lp_combine", &[R, R, W]);

/// Scratch entries (per buffer) a link-prediction pass may use: 4 Mi words = 16 MiB.
const SCRATCH_WORDS: usize = 1 << 22;

#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    others: u32,
    start: u32,
    chunk: u32,
    variant: u32,
    words_r: u32,
    words_c: u32,
    n: u32,
    words: u32,
    seed_major: u32,
    _pad: [u32; 2],
}

/// Which side of the layer a phase takes its seeds from.
#[derive(Clone, Copy, Debug)]
enum Phase {
    Rows,
    Cols,
}

/// The shader's variant number of a predictor.
fn variant(predictor: Predictor) -> u32 {
    match predictor {
        Predictor::Ch3L3n => 0,
        Predictor::Ch2L3n => 1,
        Predictor::Ch31L3n => 2,
        Predictor::Ch3L3p => 3,
        Predictor::Ch2L3p => 4,
        Predictor::RaL3 => 5,
    }
}

/// Scratch for scoring `rows × cols` layers, created once per shape: the walk's bounded buffers,
/// CH3.1's denominators, and optionally the product path's [`ProductScratch`].
#[derive(Clone, Debug)]
pub struct LinkScratch {
    rows: usize,
    cols: usize,
    counts: Tensor,
    weights: Tensor,
    /// `ch31_denominator(e)` for `e = 0..=max(rows, cols)`.
    ch31: Tensor,
    products: Option<ProductScratch>,
    on_cpu: bool,
}

impl LinkScratch {
    fn chunk(&self, seeds_side: usize) -> usize {
        (SCRATCH_WORDS / seeds_side.max(1)).clamp(1, seeds_side.max(1))
    }

    /// Adds the product path's scratch (made by [`Device::l3n_product_scratch`] for this shape;
    /// one may serve every layer of the shape, as a device runs recorded ops in order).
    pub fn with_products(mut self, products: ProductScratch) -> Result<LinkScratch> {
        if (products.rows, products.cols) != (self.rows, self.cols) {
            return Err(crate::error::shape_err(
                "link_scratch",
                format!(
                    "product scratch for {}x{} given to a {}x{} layer",
                    products.rows, products.cols, self.rows, self.cols
                ),
            ));
        }
        self.products = Some(products);
        Ok(self)
    }

    /// Whether [`L3nPath::Products`] can run with this scratch: always on the CPU backend (where
    /// [`cht_sparse::predict::products_fit`] allows), on a GPU when product scratch was added.
    pub fn has_products(&self) -> bool {
        if self.on_cpu {
            cht_sparse::predict::products_fit(self.rows, self.cols)
        } else {
            self.products.is_some()
        }
    }

    /// The path for a layer of this shape with (about) `links` links: [`L3nPath::choose`] at
    /// `dense_above`, the walk where this scratch cannot run the products.
    pub fn path_for(&self, links: usize, dense_above: f64) -> L3nPath {
        match L3nPath::choose(self.rows, self.cols, links, dense_above) {
            L3nPath::Products if self.has_products() => L3nPath::Products,
            _ => L3nPath::Walk,
        }
    }
}

/// Device scratch of the node-based product path for `rows × cols` layers: the pattern as bit
/// lists (rows over columns, columns over rows), the weight matrices `Q_DT` (`rows × rows`,
/// seed-major) and `W_in` (`cols × cols`, node-major), the dense 0/1 pattern and the input-side
/// half of the scores (`rows × cols` each). Cloning shares the buffers.
#[derive(Clone, Debug)]
pub struct ProductScratch {
    rows: usize,
    cols: usize,
    bits_r: Tensor,
    bits_c: Tensor,
    w_out: Tensor,
    w_in: Tensor,
    dense: Tensor,
    s_in: Tensor,
}

/// Whether `words` 32-bit words fit one storage binding and buffer of the adapter.
fn fits_binding(g: &Gpu, words: usize) -> bool {
    let bytes = (words.max(1) as u64).saturating_mul(4);
    bytes <= g.summary.limits.max_storage_buffer_binding_size
        && bytes <= g.summary.limits.max_buffer_size
}

impl Device {
    /// Scratch for [`Device::link_scores`] on `rows × cols` layers: the walk's (at most
    /// 2 × 16 MiB) and CH3.1's table; add [`Device::l3n_product_scratch`] for the product path on
    /// a GPU.
    pub fn link_scratch(&self, label: &str, rows: usize, cols: usize) -> LinkScratch {
        let words = (rows * rows).max(cols * cols).clamp(1, SCRATCH_WORDS);
        let table = ch31_denominators(rows.max(cols));
        let ch31 = self.zeros(&format!("{label}.ch31"), table.len(), 1, DType::F32);
        self.write_f32(&ch31, &table)
            .expect("a table written to a tensor of its own length");
        LinkScratch {
            rows,
            cols,
            counts: self.zeros(&format!("{label}.cn"), words, 1, DType::U32),
            weights: self.zeros(&format!("{label}.node_weights"), words, 1, DType::F32),
            ch31,
            products: None,
            on_cpu: !self.is_gpu(),
        }
    }

    /// Scratch of the node-based product path for `rows × cols` layers (`rows² + cols²` floats,
    /// two `rows × cols` float buffers and the bit lists), or `None` where the products do not fit
    /// ([`cht_sparse::predict::products_fit`], or a buffer above the adapter's binding limit). The
    /// CPU backend needs no device scratch: there it is empty.
    pub fn l3n_product_scratch(
        &self,
        label: &str,
        rows: usize,
        cols: usize,
    ) -> Option<ProductScratch> {
        if !cht_sparse::predict::products_fit(rows, cols) {
            return None;
        }
        let (wr, wc) = (cols.div_ceil(32), rows.div_ceil(32));
        let shapes = [
            (rows, wr),
            (cols, wc),
            (rows, rows),
            (cols, cols),
            (rows, cols),
        ];
        match &self.backend {
            Backend::Gpu(g) if !shapes.iter().all(|&(r, c)| fits_binding(g, r * c)) => None,
            Backend::Gpu(_) => {
                let t = |name: &str, r: usize, c: usize, d: DType| {
                    self.zeros(&format!("{label}.{name}"), r, c, d)
                };
                Some(ProductScratch {
                    rows,
                    cols,
                    bits_r: t("bits_r", rows, wr, DType::U32),
                    bits_c: t("bits_c", cols, wc, DType::U32),
                    w_out: t("q_dt", rows, rows, DType::F32),
                    w_in: t("w_in", cols, cols, DType::F32),
                    dense: t("dense", rows, cols, DType::F32),
                    s_in: t("s_in", rows, cols, DType::F32),
                })
            }
            Backend::Cpu => {
                let t = |name: &str, d: DType| self.zeros(&format!("{label}.{name}"), 0, 0, d);
                Some(ProductScratch {
                    rows,
                    cols,
                    bits_r: t("bits_r", DType::U32),
                    bits_c: t("bits_c", DType::U32),
                    w_out: t("q_dt", DType::F32),
                    w_in: t("w_in", DType::F32),
                    dense: t("dense", DType::F32),
                    s_in: t("s_in", DType::F32),
                })
            }
        }
    }

    /// Writes the `predictor`'s score of every pair of the pattern into `scores` (`[rows, cols]`,
    /// existing links 0). Node-based predictors take the path [`LinkScratch::path_for`] picks at
    /// [`L3N_DENSE_ABOVE`] — on the CPU backend from the live link count, on a GPU (which reads
    /// nothing back) from the pattern's capacity; both paths give the same bits.
    pub fn link_scores(
        &self,
        pattern: &SparsePattern,
        predictor: Predictor,
        scratch: &LinkScratch,
        out: &Tensor,
    ) -> Result<()> {
        match &self.backend {
            Backend::Gpu(_) => {
                let path = scratch.path_for(pattern.capacity, L3N_DENSE_ABOVE);
                self.link_scores_via(pattern, predictor, path, scratch, out)
            }
            Backend::Cpu => {
                let csr = cpu_pattern(pattern, "link_scores")?;
                let path = scratch.path_for(csr.nnz(), L3N_DENSE_ABOVE);
                write_scores(out, &scores_via(&csr, predictor, path))
            }
        }
    }

    /// [`Device::link_scores`] along a given node-based path (path-based predictors ignore it).
    /// [`L3nPath::Products`] on a GPU needs [`LinkScratch::with_products`]; both paths give the
    /// same bits.
    pub fn link_scores_via(
        &self,
        pattern: &SparsePattern,
        predictor: Predictor,
        path: L3nPath,
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
                if !predictor.is_path_based() && path == L3nPath::Products {
                    let products = scratch.products.as_ref().ok_or_else(|| {
                        Error::Unsupported(format!(
                            "{OP}: the product path needs LinkScratch::with_products \
                             ({rows}x{cols} layer)"
                        ))
                    })?;
                    return self.record_products(g, pattern, predictor, scratch, products, out);
                }
                let variant = variant(predictor);
                let p = pattern;
                // Each phase takes chunks of seeds on one side: CN counts and node weights of
                // the chunk, then one gather kernel. `Phase::Rows` seeds are output neurons (CSR
                // lists, CSC for the other side); `Phase::Cols` the reverse.
                let phase = |side: Phase, last: &Kernel, last_bindings: &[&Tensor]| -> Result<()> {
                    let (seeds, others, seed_ptr, seed_idx, other_ptr, other_idx) = match side {
                        Phase::Rows => (rows, cols, &p.row_ptr, &p.col_idx, &p.col_ptr, &p.row_idx),
                        Phase::Cols => (cols, rows, &p.col_ptr, &p.row_idx, &p.row_ptr, &p.col_idx),
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
                            ..Params::default()
                        };
                        let params = bytes(&params);
                        g.clear(scratch.counts.gpu_slice(OP)?, scratch.counts.len());
                        let count = [seed_ptr, seed_idx, other_ptr, other_idx, &scratch.counts];
                        g.dispatch(&COUNT, &[], params, &count, grid_1d(p.capacity))?;
                        let weights = [seed_ptr, &scratch.counts, &scratch.weights, &scratch.ch31];
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
                        Phase::Cols,
                        &PATHS,
                        &[&p.row_ptr, &p.col_idx, &p.col_ptr, &p.row_idx],
                    )?;
                } else {
                    // Output-side LC nodes (writes every score), then input-side ones (adds, and
                    // zeroes existing links).
                    phase(Phase::Rows, &ROWS, &[&p.col_ptr, &p.row_idx])?;
                    phase(Phase::Cols, &COLS, &[&p.row_ptr, &p.col_idx])?;
                }
                Ok(())
            }
            Backend::Cpu => {
                let _timer = self.op_timer(OP);
                let csr = cpu_pattern(pattern, OP)?;
                write_scores(out, &scores_via(&csr, predictor, path))
            }
        }
    }

    /// The product path on a GPU: bit lists, `CN` counts and node weights of both sides, the dense
    /// 0/1 pattern, `S_out = Q_DT · D` into `out`, `S_in = D · W_in`, then `out = S_out + S_in`
    /// with existing links 0 (see `shaders/ch_link.wgsl`). Everything is recorded: no readback.
    fn record_products(
        &self,
        g: &Gpu,
        pattern: &SparsePattern,
        predictor: Predictor,
        scratch: &LinkScratch,
        ps: &ProductScratch,
        out: &Tensor,
    ) -> Result<()> {
        let (rows, cols) = (pattern.rows, pattern.cols);
        if rows == 0 || cols == 0 {
            return Ok(());
        }
        self.record_pack(g, pattern, ps)?;
        let weights = |side, layout, target| {
            self.record_weights(
                g,
                Some(predictor),
                side,
                layout,
                pattern,
                scratch,
                ps,
                target,
            )
        };
        weights(Side::Outputs, Layout::SeedMajor, &ps.w_out)?;
        weights(Side::Inputs, Layout::NodeMajor, &ps.w_in)?;
        let params = lp_params(ps);
        let grid = grid_1d(rows * cols);
        g.dispatch(
            &LP_DENSE,
            &[],
            bytes(&params),
            &[&ps.bits_r, &ps.dense],
            grid,
        )?;
        let gemm = exact_gemm(g);
        self.gemm(&gemm, &ps.w_out, &ps.dense, out)?;
        self.gemm(&gemm, &ps.dense, &ps.w_in, &ps.s_in)?;
        let combine = [&ps.bits_r, &ps.s_in, out];
        g.dispatch(&LP_COMBINE, &[], bytes(&params), &combine, grid)
    }

    /// Clears the bit lists and sets one bit per link in each.
    fn record_pack(&self, g: &Gpu, pattern: &SparsePattern, ps: &ProductScratch) -> Result<()> {
        const OP: &str = "l3n_pack";
        g.clear(ps.bits_r.gpu_slice(OP)?, ps.bits_r.len());
        g.clear(ps.bits_c.gpu_slice(OP)?, ps.bits_c.len());
        let pack = [
            &pattern.row_ptr,
            &pattern.row_of,
            &pattern.col_idx,
            &ps.bits_r,
            &ps.bits_c,
        ];
        g.dispatch(
            &LP_PACK,
            &[],
            bytes(&lp_params(ps)),
            &pack,
            grid_1d(pattern.capacity),
        )
    }

    /// `CN` counts of one side into `target` (`n × n`), then (with a predictor) its node weights
    /// in place.
    #[allow(clippy::too_many_arguments)]
    fn record_weights(
        &self,
        g: &Gpu,
        predictor: Option<Predictor>,
        side: Side,
        layout: Layout,
        pattern: &SparsePattern,
        scratch: &LinkScratch,
        ps: &ProductScratch,
        target: &Tensor,
    ) -> Result<()> {
        let (n, words, bits, ptr) = match side {
            Side::Outputs => (ps.rows, ps.cols.div_ceil(32), &ps.bits_r, &pattern.row_ptr),
            Side::Inputs => (ps.cols, ps.rows.div_ceil(32), &ps.bits_c, &pattern.col_ptr),
        };
        let params = Params {
            n: n as u32,
            words: words as u32,
            variant: predictor.map_or(0, variant),
            seed_major: u32::from(layout == Layout::SeedMajor),
            ..lp_params(ps)
        };
        let grid = grid_1d(n * n);
        g.dispatch(&LP_COUNT, &[], bytes(&params), &[bits, target], grid)?;
        if predictor.is_some() {
            let weights = [ptr, &scratch.ch31, target];
            g.dispatch(&LP_WEIGHTS, &[], bytes(&params), &weights, grid)?;
        }
        Ok(())
    }

    /// The common-neighbour counts `CN` of one side of the pattern (`n × n` f32, exact integers;
    /// the diagonal holds the degrees), as the product path computes them. CPU twin:
    /// [`cht_sparse::predict::products::BitRows::common_matrix`].
    pub fn l3n_counts(
        &self,
        pattern: &SparsePattern,
        side: Side,
        scratch: &LinkScratch,
        out: &Tensor,
    ) -> Result<()> {
        self.l3n_side(pattern, None, side, Layout::NodeMajor, scratch, out)
    }

    /// The node weights of one side of the pattern in `layout` (`n × n`), as the product path
    /// computes them. CPU twin: [`cht_sparse::predict::products::node_weights`].
    pub fn l3n_node_weights(
        &self,
        pattern: &SparsePattern,
        predictor: Predictor,
        side: Side,
        layout: Layout,
        scratch: &LinkScratch,
        out: &Tensor,
    ) -> Result<()> {
        if predictor.is_path_based() {
            return Err(Error::Unsupported(format!(
                "l3n_node_weights: {} is path-based",
                predictor.name()
            )));
        }
        self.l3n_side(pattern, Some(predictor), side, layout, scratch, out)
    }

    fn l3n_side(
        &self,
        pattern: &SparsePattern,
        predictor: Option<Predictor>,
        side: Side,
        layout: Layout,
        scratch: &LinkScratch,
        out: &Tensor,
    ) -> Result<()> {
        const OP: &str = "l3n_node_weights";
        let n = match side {
            Side::Outputs => pattern.rows,
            Side::Inputs => pattern.cols,
        };
        out.expect(OP, DType::F32, n, n)?;
        if (scratch.rows, scratch.cols) != (pattern.rows, pattern.cols) {
            return Err(crate::error::shape_err(
                OP,
                "scratch was made for another shape",
            ));
        }
        match &self.backend {
            Backend::Gpu(g) => {
                let ps = scratch.products.as_ref().ok_or_else(|| {
                    Error::Unsupported(format!("{OP}: needs LinkScratch::with_products"))
                })?;
                if n == 0 {
                    return Ok(());
                }
                self.record_pack(g, pattern, ps)?;
                self.record_weights(g, predictor, side, layout, pattern, scratch, ps, out)
            }
            Backend::Cpu => {
                let _timer = self.op_timer(OP);
                let csr = cpu_pattern(pattern, OP)?;
                let values = match predictor {
                    Some(predictor) => products::node_weights(&csr, predictor, side, layout),
                    None => {
                        let lists = match side {
                            Side::Outputs => csr,
                            Side::Inputs => transpose(&csr)?,
                        };
                        products::BitRows::from_csr(&lists)
                            .common_matrix()
                            .into_iter()
                            .map(|c| c as f32)
                            .collect()
                    }
                };
                write_scores(out, &values)
            }
        }
    }
}

/// The product kernels' shape parameters.
fn lp_params(ps: &ProductScratch) -> Params {
    Params {
        rows: ps.rows as u32,
        others: ps.cols as u32,
        words_r: ps.cols.div_ceil(32) as u32,
        words_c: ps.rows.div_ceil(32) as u32,
        ..Params::default()
    }
}

/// The GEMM configuration of the product path: plain f32 products, each entry summed over k in
/// increasing order from 0 with one accumulator (every f32 GEMM kernel's contract), so that
/// products with the 0/1 pattern are the walk's sums. A device opened for f16 tensor cores gets
/// its f32 kernel instead: f16 operands would round the weights.
fn exact_gemm(g: &Gpu) -> Gemm<'static> {
    let mut cfg = Gemm::new(Transpose::No, Transpose::No);
    if g.tensor_cores.is_some() {
        cfg.kernel = GemmKernel::Large;
    }
    cfg
}

/// The live CSR part of a CPU-backend pattern.
fn cpu_pattern(pattern: &SparsePattern, op: &'static str) -> Result<CsrPattern> {
    let row_ptr = pattern.row_ptr.cpu_read(op)?.to_vec();
    let mut col_idx = pattern.col_idx.cpu_read(op)?.to_vec();
    col_idx.truncate(row_ptr[pattern.rows] as usize);
    Ok(CsrPattern::new(
        pattern.rows,
        pattern.cols,
        row_ptr,
        col_idx,
    )?)
}

/// The transpose of a pattern (its CSC as a CSR).
fn transpose(p: &CsrPattern) -> Result<CsrPattern> {
    let csc = p.csc();
    Ok(CsrPattern::new(
        p.cols(),
        p.rows(),
        csc.col_ptr,
        csc.row_idx,
    )?)
}

fn write_scores(out: &Tensor, values: &[f32]) -> Result<()> {
    as_f32_mut(&mut out.cpu_write("link_scores")?).copy_from_slice(values);
    Ok(())
}

#[cfg(test)]
mod tests {
    use cht_sparse::predict::ch31_denominator;
    use cht_sparse::rng::{Counter, RngKey, Stream};

    /// `div_rn` of `shaders/ch_link.wgsl`, step for step.
    fn div_rn(a: f32, b: f32) -> f32 {
        let (ba, bb) = (a.to_bits(), b.to_bits());
        let ma = (ba & 0x7f_ffff) | 0x80_0000;
        let mb = (bb & 0x7f_ffff) | 0x80_0000;
        let mut e = (ba >> 23) as i32 - (bb >> 23) as i32 + 127;
        let (mut q, mut r, bits) = if ma >= mb {
            (1u32, ma - mb, 23)
        } else {
            e -= 1;
            (0, ma, 24)
        };
        for _ in 0..bits {
            r <<= 1;
            q <<= 1;
            if r >= mb {
                r -= mb;
                q |= 1;
            }
        }
        let twice = r << 1;
        if twice > mb || (twice == mb && q & 1 == 1) {
            q += 1;
            if q == 0x100_0000 {
                q = 0x80_0000;
                e += 1;
            }
        }
        f32::from_bits(((e as u32) << 23) | (q & 0x7f_ffff))
    }

    #[test]
    fn long_division_is_correctly_rounded() {
        // Every quotient the L3n weights take for degrees below 700.
        for e in 0..700u32 {
            let den = 1.0 + e as f32;
            let ch31 = ch31_denominator(e as f32);
            for i in 0..700u32 {
                let num = 1.0 + i as f32;
                assert_eq!(
                    div_rn(num, den).to_bits(),
                    (num / den).to_bits(),
                    "{num}/{den}"
                );
                assert_eq!(
                    div_rn(num, ch31).to_bits(),
                    (num / ch31).to_bits(),
                    "{num}/{ch31}"
                );
            }
        }
        // Random normal operands whose quotients stay normal.
        let mut rng = Counter::new(RngKey::new(3, Stream::Synthetic, 0, 0));
        for _ in 0..2_000_000 {
            let a = f32::from_bits((rng.next_u32() & 0x7f_ffff) | ((96 + rng.below(64)) << 23));
            let b = f32::from_bits((rng.next_u32() & 0x7f_ffff) | ((96 + rng.below(64)) << 23));
            assert_eq!(div_rn(a, b).to_bits(), (a / b).to_bits(), "{a:e}/{b:e}");
        }
        for (a, b) in [
            (3.0f32, 2.0f32),
            (1.0, 3.0),
            (16_777_215.0, 16_777_214.0),
            (1.0, 1.0),
        ] {
            assert_eq!(div_rn(a, b).to_bits(), (a / b).to_bits(), "{a}/{b}");
        }
    }
}
