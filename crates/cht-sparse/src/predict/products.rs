//! Node-based (L3n) scores through dense products — spec §1.2 steps 1–6 — summed in exactly the
//! order of the sparse walk, so both paths give the same bits.
//!
//! With `W_out[b][a] = w(CN(a, b), deg b)` (`b ≠ a`, `CN > 0`, else 0) the weight of output node
//! `b` in the local community of seed `a`, and `W_in[k][j] = w(CN(j, k), deg k)` likewise for input
//! nodes (`W_out = Q_DTᵀ`, `W_in = Q_TDᵀ` of the spec):
//!
//! ```text
//! S[a, j] = Σ_{b asc, M[b,j]} W_out[b][a]  +  Σ_{k asc, M[a,k]} W_in[k][j]      (M[a, j] = 0)
//!         = (Q_DT · D)[a, j]               +  (Q_TD · Dᵀ)ᵀ[a, j]
//! ```
//!
//! Each half starts from 0 and adds its terms in ascending order, one accumulator, as the walk
//! does; products with the 0/1 matrix are exact and adding the walk's skipped zeros changes
//! nothing (every term is ≥ 0), so the sums are the walk's to the bit. The halves are then added
//! once, output side + input side, as in the walk.
//!
//! * Counts `CN` (`DD = D·Dᵀ`, `TT = Dᵀ·D`) are exact integers: popcounts of bit-packed lists,
//!   each symmetric matrix once per unordered pair in `T × T` tiles (`n²/2 · words` word
//!   operations), or — when cheaper, on sparse layers — scattered along the lists like the walk
//!   does (`Σ deg²` increments).
//! * The weights are written straight into the layout the products read: blocks of `T` rows,
//!   each holding its `T × P` tile of every column panel of `P` floats.
//! * The real-valued halves are products of the 0/1 pattern with the weights, one column panel at
//!   a time (`n · P` floats, which stay in the L2 cache): each row adds its links' panel rows into
//!   `P` register accumulators — `nnz · (rows + cols)` adds in all, the dense product's work times
//!   the density, vectorised across the panel.
//! * The hot loops run compiled for AVX2 + POPCNT where the CPU has them (detected at run time);
//!   the operations and their order are the same, so are the bits.
//! * Memory: `rows² + cols²` weights (one side at a time), the larger side's counts while its
//!   weights are built (`n²/2` words, popcount only), and two `rows × cols` halves.

use super::{Both, Predictor, external, row};
use crate::CsrPattern;

/// Tile edge of the count pass (pairs per tile side).
const T: usize = 64;
/// Column-panel width of the products (floats: eight SSE or four AVX registers of accumulators).
const P: usize = 32;

/// A set of `n` lists as bits: list `x` is `words` 64-bit words, bit `c` of the list set when `c`
/// is in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BitRows {
    n: usize,
    words: usize,
    data: Vec<u64>,
}

impl BitRows {
    /// The rows of `p` as bits over its columns (`p.cols()` bits each).
    pub fn from_csr(p: &CsrPattern) -> BitRows {
        let words = p.cols().div_ceil(64);
        let mut data = vec![0u64; p.rows() * words];
        for r in 0..p.rows() {
            let out = &mut data[r * words..(r + 1) * words];
            for &c in row(p, r) {
                out[c as usize / 64] |= 1 << (c % 64);
            }
        }
        BitRows {
            n: p.rows(),
            words,
            data,
        }
    }

    /// Lists.
    pub fn len(&self) -> usize {
        self.n
    }

    /// Whether there are no lists.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    fn list(&self, x: usize) -> &[u64] {
        &self.data[x * self.words..(x + 1) * self.words]
    }

    /// `CN(x, y)`: the number of elements lists `x` and `y` share.
    pub fn common(&self, x: usize, y: usize) -> u32 {
        and_count(self.list(x), self.list(y))
    }

    /// Every `CN(x, y)`, row-major `n × n` (symmetric; the diagonal holds the list sizes).
    pub fn common_matrix(&self) -> Vec<u32> {
        let tri = self.lower_tiles();
        let n = self.n;
        let mut out = vec![0u32; n * n];
        for_chunks(&mut out, T * n.max(1), |bx, rows| {
            for (xx, out_row) in rows.chunks_mut(n).enumerate() {
                for (y, o) in out_row.iter_mut().enumerate() {
                    *o = tri.get(bx, xx, y);
                }
            }
        });
        out
    }

    /// The counts of every pair `(x, y)` with `y`'s tile at or below `x`'s, as `T × T` tiles.
    fn lower_tiles(&self) -> LowerTiles {
        let isa = isa();
        let blocks = self.n.div_ceil(T);
        let tiles = par_map(blocks, |bx| {
            let mut row = vec![0u32; (bx + 1) * T * T];
            for (by, tile) in row.chunks_mut(T * T).enumerate() {
                run(
                    isa,
                    Hot::CountTile {
                        bits: self,
                        bx,
                        by,
                        tile,
                    },
                );
            }
            row
        });
        LowerTiles { tiles }
    }
}

/// Counts of tile `(bx, by)` of `bits`: `tile[xx·T + yy] = CN(bx·T + xx, by·T + yy)` (0 outside).
#[inline(always)]
fn count_tile(bits: &BitRows, bx: usize, by: usize, tile: &mut [u32]) {
    let xs = bx * T..((bx + 1) * T).min(bits.n);
    let ys = by * T..((by + 1) * T).min(bits.n);
    let w = bits.words;
    // Two lists of each side at a time: each loaded word serves two counts.
    let mut x = xs.start;
    while x < xs.end {
        let x2 = (x + 1 < xs.end).then_some(x + 1);
        let mut y = ys.start;
        while y < ys.end {
            let y2 = (y + 1 < ys.end).then_some(y + 1);
            let (a0, b0) = (bits.list(x), bits.list(y));
            let a1 = bits.list(x2.unwrap_or(x));
            let b1 = bits.list(y2.unwrap_or(y));
            let (mut c00, mut c01, mut c10, mut c11) = (0u32, 0u32, 0u32, 0u32);
            for i in 0..w {
                c00 += (a0[i] & b0[i]).count_ones();
                c01 += (a0[i] & b1[i]).count_ones();
                c10 += (a1[i] & b0[i]).count_ones();
                c11 += (a1[i] & b1[i]).count_ones();
            }
            let at = |x: usize, y: usize| (x - xs.start) * T + (y - ys.start);
            tile[at(x, y)] = c00;
            if let Some(y2) = y2 {
                tile[at(x, y2)] = c01;
            }
            if let Some(x2) = x2 {
                tile[at(x2, y)] = c10;
                if let Some(y2) = y2 {
                    tile[at(x2, y2)] = c11;
                }
            }
            y += 2;
        }
        x += 2;
    }
}

/// `Σ popcount(a[i] & b[i])`.
fn and_count(a: &[u64], b: &[u64]) -> u32 {
    a.iter().zip(b).map(|(x, y)| (x & y).count_ones()).sum()
}

/// Lower-triangular count tiles: block row `bx` holds tiles `(bx, 0..=bx)`.
struct LowerTiles {
    tiles: Vec<Vec<u32>>,
}

impl LowerTiles {
    /// `CN(bx·T + xx, y)`.
    fn get(&self, bx: usize, xx: usize, y: usize) -> u32 {
        let (by, yy) = (y / T, y % T);
        if by <= bx {
            self.tiles[bx][by * T * T + xx * T + yy]
        } else {
            self.tiles[by][bx * T * T + yy * T + xx]
        }
    }

    /// Tile `(bx, by)` as `tile[xx·T + yy]` (transposing a tile above the diagonal).
    fn tile(&self, bx: usize, by: usize, scratch: &mut [u32]) {
        if by <= bx {
            scratch.copy_from_slice(&self.tiles[bx][by * T * T..(by + 1) * T * T]);
        } else {
            let src = &self.tiles[by][bx * T * T..(bx + 1) * T * T];
            for xx in 0..T {
                for yy in 0..T {
                    scratch[xx * T + yy] = src[yy * T + xx];
                }
            }
        }
    }
}

/// Which side's local-community nodes a weight matrix is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Side {
    /// Output neurons `b` (seeds `a` are outputs too): `W_out[b][a] = w(CN(a, b), deg b)`.
    Outputs,
    /// Input neurons `k` (seeds `j` are inputs too): `W_in[k][j] = w(CN(j, k), deg k)`.
    Inputs,
}

/// How a weight matrix is laid out: which index the node (whose degree enters the weight) is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Layout {
    /// `[node][seed]`: the layout the CPU products use (`W_out`, `W_in`).
    NodeMajor,
    /// `[seed][node]`: the spec's `Q_DT` / `Q_TD`.
    SeedMajor,
}

/// The L3n node weights of one side of `p` (`n × n` for that side's `n` neurons): 0 on the
/// diagonal and where `CN = 0`, `predictor`'s weight `w(CN, deg node)` elsewhere; row-major.
///
/// # Panics
/// If `predictor` is path-based.
pub fn node_weights(p: &CsrPattern, predictor: Predictor, side: Side, layout: Layout) -> Vec<f32> {
    assert!(
        !predictor.is_path_based(),
        "node weights are for L3n predictors"
    );
    let both = Both::new(p);
    match side {
        Side::Outputs => weights(both.p, &both.t, predictor, layout).to_row_major(),
        Side::Inputs => weights(&both.t, both.p, predictor, layout).to_row_major(),
    }
}

/// A scatter increment costs about as much as the popcount of one word pair (measured on the
/// 2-core development machine: on a 2048×5461 layer the two meet near 10 % density).
const SCATTER_VS_POPCOUNT: usize = 1;

/// An `n × n` weight matrix in blocks of `T` rows, each block holding its `T × P` tile of every
/// column panel of `P` (zero-padded): a block is one contiguous chunk (built in parallel) and a
/// row's part of a panel is `P` contiguous floats (what the products read).
struct Weights {
    n: usize,
    panels: usize,
    data: Vec<f32>,
}

impl Weights {
    fn zeros(n: usize) -> Weights {
        let panels = n.div_ceil(P);
        Weights {
            n,
            panels,
            data: vec![0f32; n.div_ceil(T) * panels * T * P],
        }
    }

    /// Where `(x, y)` lives.
    #[inline]
    fn at(&self, x: usize, y: usize) -> usize {
        ((x / T * self.panels + y / P) * T + x % T) * P + y % P
    }

    /// Row `x`'s `P` weights in column panel `panel`.
    #[inline]
    fn panel_row(&self, x: usize, panel: usize) -> &[f32; P] {
        let at = ((x / T * self.panels + panel) * T + x % T) * P;
        self.data[at..at + P]
            .try_into()
            .expect("a panel row is P floats")
    }

    fn to_row_major(&self) -> Vec<f32> {
        let n = self.n;
        (0..n * n)
            .map(|i| self.data[self.at(i / n, i % n)])
            .collect()
    }
}

/// The weights of every pair of `lists` (the rows of a pattern; `others` is its transpose), in
/// `layout`. The counts come from popcounts of the bit-packed lists — `n²/2 · words` word
/// operations — or, when that is cheaper on a sparse layer, by scattering each list's elements'
/// lists like the walk — `Σ_c deg(c)²` increments. Both are exact integers.
fn weights(
    lists: &CsrPattern,
    others: &CsrPattern,
    predictor: Predictor,
    layout: Layout,
) -> Weights {
    let n = lists.rows();
    let words = lists.cols().div_ceil(64);
    let scatter: usize = (0..others.rows())
        .map(|c| row(others, c).len().pow(2))
        .sum();
    let by = if scatter.saturating_mul(SCATTER_VS_POPCOUNT) < n * (n + 1) / 2 * words {
        CountBy::Scatter
    } else {
        CountBy::Popcount
    };
    weights_by(lists, others, predictor, layout, by)
}

/// How [`weights_by`] counts common neighbours.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CountBy {
    Popcount,
    Scatter,
}

fn weights_by(
    lists: &CsrPattern,
    others: &CsrPattern,
    predictor: Predictor,
    layout: Layout,
    by: CountBy,
) -> Weights {
    let n = lists.rows();
    let deg: Vec<u32> = (0..n).map(|x| row(lists, x).len() as u32).collect();
    let ch31 = if predictor == Predictor::Ch31L3n {
        super::ch31_denominators(lists.cols())
    } else {
        Vec::new()
    };
    let mut w = Weights::zeros(n);
    let block_len = w.panels * T * P;
    // Row `x` for the counts of seeds `y0 ..` (`y0` a multiple of P): one panel at a time.
    let fill = |block: &mut [f32], x: usize, counts: &[u32], y0: usize| {
        for (i, seg) in counts.chunks(P).enumerate() {
            let y = y0 + i * P;
            let at = (y / P * T + x % T) * P;
            let dst = &mut block[at..at + seg.len()];
            match layout {
                Layout::NodeMajor => node_row(predictor, &ch31, deg[x], seg, dst),
                Layout::SeedMajor => {
                    for (k, (o, &c)) in dst.iter_mut().zip(seg).enumerate() {
                        node_row(predictor, &ch31, deg[y + k], &[c], std::slice::from_mut(o));
                    }
                }
            }
            if (y..y + seg.len()).contains(&x) {
                dst[x - y] = 0.0;
            }
        }
    };
    if n == 0 {
        return w;
    }
    if by == CountBy::Scatter {
        for_chunks(&mut w.data, block_len, |bx, block| {
            let mut counts = vec![0u32; n];
            for x in bx * T..((bx + 1) * T).min(n) {
                counts.fill(0);
                for &c in row(lists, x) {
                    for &y in row(others, c as usize) {
                        counts[y as usize] += 1;
                    }
                }
                fill(block, x, &counts, 0);
            }
        });
        return w;
    }
    let tri = BitRows::from_csr(lists).lower_tiles();
    const { assert!(T.is_multiple_of(P)) };
    for_chunks(&mut w.data, block_len, |bx, block| {
        let mut tile = vec![0u32; T * T];
        for by in 0..n.div_ceil(T) {
            tri.tile(bx, by, &mut tile);
            let y0 = by * T;
            let width = T.min(n - y0);
            for x in bx * T..((bx + 1) * T).min(n) {
                let xx = x - bx * T;
                fill(block, x, &tile[xx * T..xx * T + width], y0);
            }
        }
    });
    w
}

/// The weights `w(c, deg)` of one node of degree `deg` for consecutive counts `c` (0 where
/// `c = 0`): the operations of [`Predictor::node_term`] (CH3.1's `pow` from `ch31`), written
/// branch-free per predictor so that they vectorise.
#[inline]
fn node_row(predictor: Predictor, ch31: &[f32], deg: u32, counts: &[u32], dst: &mut [f32]) {
    match predictor {
        Predictor::Ch3L3n => {
            for (o, &c) in dst.iter_mut().zip(counts) {
                let w = 1.0 / (1.0 + external(deg, c) as f32);
                *o = if c == 0 { 0.0 } else { w };
            }
        }
        Predictor::Ch2L3n => {
            for (o, &c) in dst.iter_mut().zip(counts) {
                let w = (1.0 + c as f32) / (1.0 + external(deg, c) as f32);
                *o = if c == 0 { 0.0 } else { w };
            }
        }
        _ => {
            for (o, &c) in dst.iter_mut().zip(counts) {
                *o = if c == 0 {
                    0.0
                } else {
                    (1.0 + c as f32) / ch31[external(deg, c) as usize]
                };
            }
        }
    }
}

/// `out[panel][r][0..P] = Σ_{k ∈ row r of pattern, ascending} w[k][panel·P .. panel·P + P]`:
/// the product of a 0/1 pattern (`m` rows, `w.n` columns) with the weights, by column panels of
/// `P` (zero-padded past `w.n`), each entry summed from 0 in ascending `k` with one accumulator.
/// A panel of the weights is `w.n · P` floats (0.7 MB for 5461 rows): it stays in L2 while every
/// row adds its links' panel rows into `P` register accumulators.
fn products_by_panel(pattern: &CsrPattern, w: &Weights) -> Vec<f32> {
    let m = pattern.rows();
    debug_assert_eq!(pattern.cols(), w.n);
    let mut out = vec![0f32; w.panels * m * P];
    let isa = isa();
    for_chunks(&mut out, m * P, |panel, dst| {
        run(
            isa,
            Hot::Panel {
                pattern,
                w,
                panel,
                dst,
            },
        );
    });
    out
}

/// One panel of [`products_by_panel`].
#[inline(always)]
fn panel_products(pattern: &CsrPattern, w: &Weights, panel: usize, dst: &mut [f32]) {
    for (r, to) in dst.chunks_exact_mut(P).enumerate() {
        let mut acc = [0f32; P];
        for &k in row(pattern, r) {
            for (a, &s) in acc.iter_mut().zip(w.panel_row(k as usize, panel)) {
                *a += s;
            }
        }
        to.copy_from_slice(&acc);
    }
}

/// The instruction set the hot loops run with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Isa {
    /// The target's baseline (SSE2 on x86-64, SIMD128-less WebAssembly, …).
    Base,
    /// x86-64 with AVX2 and POPCNT, detected at run time.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    Avx2,
}

fn isa() -> Isa {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("popcnt") {
        return Isa::Avx2;
    }
    Isa::Base
}

/// A hot loop of this module, run by [`run`].
enum Hot<'a> {
    CountTile {
        bits: &'a BitRows,
        bx: usize,
        by: usize,
        tile: &'a mut [u32],
    },
    Panel {
        pattern: &'a CsrPattern,
        w: &'a Weights,
        panel: usize,
        dst: &'a mut [f32],
    },
}

/// Runs a hot loop, compiled for AVX2 + POPCNT when `isa` says the CPU has them: the same
/// operations in the same order, only wider instructions, so the same bits.
fn run(isa: Isa, job: Hot<'_>) {
    #[cfg(target_arch = "x86_64")]
    if isa == Isa::Avx2 {
        // SAFETY: `Isa::Avx2` comes only from `isa()`, which detected AVX2 and POPCNT on this
        // CPU — all that `run_avx2` requires; it touches memory only through safe slices.
        #[allow(unsafe_code)]
        unsafe {
            run_avx2(job)
        };
        return;
    }
    let _ = isa;
    run_body(job);
}

/// [`run_body`] compiled for AVX2 + POPCNT.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,popcnt")]
fn run_avx2(job: Hot<'_>) {
    run_body(job);
}

#[inline(always)]
fn run_body(job: Hot<'_>) {
    match job {
        Hot::CountTile { bits, bx, by, tile } => count_tile(bits, bx, by, tile),
        Hot::Panel {
            pattern,
            w,
            panel,
            dst,
        } => panel_products(pattern, w, panel, dst),
    }
}

/// Node-based scores of `p` through products (the walk's bits), row-major, existing links 0.
pub(super) fn node_scores(p: &CsrPattern, predictor: Predictor) -> Vec<f32> {
    let (rows, cols) = (p.rows(), p.cols());
    let mut s = vec![0f32; rows * cols];
    if p.nnz() == 0 {
        return s;
    }
    let both = Both::new(p);
    // Output side, transposed: out_t[panel of a][j][a % P] = Σ_{b ∈ column j} W_out[b][a].
    let out_t = products_by_panel(&both.t, &weights(p, &both.t, predictor, Layout::NodeMajor));
    // Input side: in_p[panel of j][a][j % P] = Σ_{k ∈ row a} W_in[k][j].
    let in_p = products_by_panel(p, &weights(&both.t, p, predictor, Layout::NodeMajor));
    // S = output side + input side, P × P tiles at a time (one of them transposed); links → 0.
    for_chunks(&mut s, P * cols, |ap, block| {
        let a0 = ap * P;
        let height = block.len() / cols;
        for jp in 0..cols.div_ceil(P) {
            let j0 = jp * P;
            let width = P.min(cols - j0);
            let outs = &out_t[(ap * cols + j0) * P..];
            for aa in 0..height {
                let ins = &in_p[(jp * rows + a0 + aa) * P..][..width];
                let dst = &mut block[aa * cols + j0..aa * cols + j0 + width];
                for (jj, (o, &v)) in dst.iter_mut().zip(ins).enumerate() {
                    *o = outs[jj * P + aa] + v;
                }
            }
        }
        for aa in 0..height {
            for &j in row(p, a0 + aa) {
                block[aa * cols + j as usize] = 0.0;
            }
        }
    });
    s
}

/// Runs `f(index, chunk)` over the `len`-long chunks of `out`, in parallel natively.
fn for_chunks<T: Send>(out: &mut [T], len: usize, f: impl Fn(usize, &mut [T]) + Send + Sync) {
    if len == 0 || out.is_empty() {
        return;
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        use rayon::prelude::*;
        out.par_chunks_mut(len)
            .enumerate()
            .for_each(|(i, c)| f(i, c));
    }
    #[cfg(target_arch = "wasm32")]
    out.chunks_mut(len).enumerate().for_each(|(i, c)| f(i, c));
}

/// `(0..n).map(f).collect()`, in parallel natively.
fn par_map<R: Send>(n: usize, f: impl Fn(usize) -> R + Send + Sync) -> Vec<R> {
    #[cfg(not(target_arch = "wasm32"))]
    {
        use rayon::prelude::*;
        (0..n).into_par_iter().map(f).collect()
    }
    #[cfg(target_arch = "wasm32")]
    (0..n).map(f).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Mask;
    use crate::rng::{RngKey, Stream};

    fn random(rows: usize, cols: usize, density: f64, seed: u32) -> CsrPattern {
        CsrPattern::random(
            rows,
            cols,
            density,
            RngKey::new(seed, Stream::Synthetic, 9, 0),
        )
        .unwrap()
    }

    /// `CN` straight from the lists.
    fn naive_common(p: &CsrPattern) -> Vec<u32> {
        let n = p.rows();
        let m = p.to_mask();
        let mut out = vec![0; n * n];
        for x in 0..n {
            for y in 0..n {
                out[x * n + y] = (0..p.cols())
                    .filter(|&c| m.get(x, c) && m.get(y, c))
                    .count() as u32;
            }
        }
        out
    }

    #[test]
    fn bit_counts_match_naive_counts() {
        // Odd sizes around the tile edge (T = 64) and the word edge (64 bits), empty lists, every
        // density from nothing to everything.
        let shapes = [
            (1, 1),
            (3, 1),
            (1, 5),
            (2, 64),
            (65, 63),
            (64, 65),
            (129, 130),
            (70, 200),
        ];
        for (case, &(n, bits)) in shapes.iter().enumerate() {
            for (d, density) in [0.0, 0.01, 0.1, 0.5, 0.9, 1.0].into_iter().enumerate() {
                let p = random(n, bits, density, (case * 10 + d) as u32);
                let b = BitRows::from_csr(&p);
                assert_eq!(b.len(), n);
                let got = b.common_matrix();
                assert_eq!(
                    got,
                    naive_common(&p),
                    "{n} lists of {bits} bits, d={density}"
                );
                for x in 0..n {
                    assert_eq!(b.common(x, x), row(&p, x).len() as u32);
                }
            }
        }
    }

    #[test]
    fn bit_counts_are_symmetric_and_exact_at_word_edges() {
        // Lists that share exactly the bits at word boundaries 0, 63, 64, 127, 128.
        let rows: &[&[u32]] = &[
            &[0, 63, 64, 127, 128],
            &[0, 64, 128],
            &[63, 127],
            &[],
            &[128],
        ];
        let cols = 129;
        let mut ptr = vec![0u32];
        let mut idx = vec![];
        for r in rows {
            idx.extend_from_slice(r);
            ptr.push(idx.len() as u32);
        }
        let p = CsrPattern::new(rows.len(), cols, ptr, idx).unwrap();
        let m = BitRows::from_csr(&p).common_matrix();
        let n = rows.len();
        #[rustfmt::skip]
        let want = [
            5, 3, 2, 0, 1,
            3, 3, 0, 0, 1,
            2, 0, 2, 0, 0,
            0, 0, 0, 0, 0,
            1, 1, 0, 0, 1,
        ];
        assert_eq!(m, want);
        for x in 0..n {
            for y in 0..n {
                assert_eq!(m[x * n + y], m[y * n + x]);
            }
        }
    }

    #[test]
    fn node_weights_are_the_terms_of_the_walk() {
        // Spec §1.4 mask B: W_out[b][a] = w(CN(a,b), deg b); CH2: (1 + i) / (1 + e).
        let mask = Mask::from_bools(
            3,
            4,
            [1, 1, 0, 0, 1, 0, 1, 0, 0, 1, 1, 1]
                .iter()
                .map(|&v| v != 0)
                .collect(),
        )
        .unwrap();
        let p = CsrPattern::from_mask(&mask);
        let w = node_weights(&p, Predictor::Ch2L3n, Side::Outputs, Layout::NodeMajor);
        // DD = [[2,1,1],[1,2,1],[1,1,3]], deg = [2,2,3]: e(b; a) = deg b − CN − 1.
        assert_eq!(w, [0.0, 2.0, 2.0, 2.0, 0.0, 2.0, 1.0, 1.0, 0.0]);
        let q = node_weights(&p, Predictor::Ch2L3n, Side::Outputs, Layout::SeedMajor);
        for a in 0..3 {
            for b in 0..3 {
                assert_eq!(q[a * 3 + b], w[b * 3 + a]);
            }
        }
        for predictor in [Predictor::Ch3L3n, Predictor::Ch2L3n, Predictor::Ch31L3n] {
            let p = random(37, 91, 0.2, 4);
            for side in [Side::Outputs, Side::Inputs] {
                let q = match side {
                    Side::Outputs => p.clone(),
                    Side::Inputs => Both::new(&p).t,
                };
                let cn = naive_common(&q);
                let n = q.rows();
                let w = node_weights(&p, predictor, side, Layout::NodeMajor);
                for x in 0..n {
                    let deg = row(&q, x).len() as u32;
                    for y in 0..n {
                        let i = cn[x * n + y];
                        let want = if i == 0 || x == y {
                            0.0
                        } else {
                            predictor.node_term(i, external(deg, i), deg)
                        };
                        assert_eq!(
                            w[x * n + y].to_bits(),
                            want.to_bits(),
                            "{predictor:?} {side:?}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn scattered_and_bit_counts_give_the_same_weights() {
        for (case, &(rows, cols)) in [(1, 1), (7, 130), (130, 7), (65, 64), (90, 200)]
            .iter()
            .enumerate()
        {
            for density in [0.0, 0.01, 0.1, 0.6, 1.0] {
                let p = random(rows, cols, density, case as u32 + 40);
                let both = Both::new(&p);
                for predictor in [Predictor::Ch3L3n, Predictor::Ch2L3n, Predictor::Ch31L3n] {
                    for layout in [Layout::NodeMajor, Layout::SeedMajor] {
                        for (lists, others) in [(&p, &both.t), (&both.t, &p)] {
                            let a = weights_by(lists, others, predictor, layout, CountBy::Popcount);
                            let b = weights_by(lists, others, predictor, layout, CountBy::Scatter);
                            let bits =
                                |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                            assert_eq!(
                                bits(&a.data),
                                bits(&b.data),
                                "{rows}x{cols} d={density} {predictor:?}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn panel_products_sum_in_ascending_order() {
        // Values whose sums round: any other order would give other bits somewhere.
        let p = random(45, 77, 0.4, 2);
        let n = 77; // two full panels and a partial one
        let mut w = Weights::zeros(n);
        let value = |k: usize, c: usize| {
            let i = k * n + c;
            1.0 / (1.0 + (i % 97) as f32) + (i % 13) as f32 * 1e-3
        };
        for k in 0..n {
            for c in 0..n {
                let at = w.at(k, c);
                w.data[at] = value(k, c);
            }
        }
        assert_eq!(w.to_row_major()[5 * n + 70], value(5, 70));
        let out = products_by_panel(&p, &w);
        for r in 0..45 {
            for c in 0..n {
                let want = row(&p, r)
                    .iter()
                    .fold(0f32, |acc, &k| acc + value(k as usize, c));
                assert_eq!(
                    out[((c / P) * 45 + r) * P + c % P].to_bits(),
                    want.to_bits()
                );
            }
            // Padding columns of the last panel stay 0.
            for c in n..n.div_ceil(P) * P {
                assert_eq!(out[((c / P) * 45 + r) * P + c % P], 0.0);
            }
        }
    }
}
