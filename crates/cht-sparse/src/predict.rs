//! Cannistraci-Hebb link predictors on a bipartite layer (spec §1), computed from the sparse
//! structure — never from dense `out×out` / `in×in` matrix products over all pairs.
//!
//! A candidate (non-)link `(a, j)` between output `a` and input `j` is closed by length-3 paths
//! `a – k – b – j` (`k` an input neighbour of `a`, `b` an output neighbour of `j`). For an interior
//! node `x` the *internal degree* `i_x` is its number of common neighbours with the seed on its
//! side of the path (`i_b = CN(a, b)`, `i_k = CN(j, k)`), and its *external degree* is
//! `e_x = deg(x) − i_x − 1`.
//!
//! * Path-based (`L3p`, exact): one term per path, the product of a factor for each interior
//!   node — CH3: `1/√(1+e)`, CH2: `√((1+i)/(1+e))`, RA: `1/√deg` — so a path contributes
//!   `f(k)·f(b)`.
//! * Node-based (`L3n`, the paper's GPU-friendly approximation): one term per local-community
//!   node — CH3: `1/(1+e)`, CH2: `(1+i)/(1+e)`, CH3.1: `(1+i)/(1+e)^(1+e/(1+e))`.
//!
//! Scores of existing links are 0; pairs without an L3 path score exactly 0. Sums run in a fixed
//! order (ascending indices), so results are deterministic.
//!
//! Cost: L3n has two paths that give the same bits ([`L3nPath`]): the *walk*, per row, over the
//! rows sharing an input with it (`O(Σ_a Σ_{b∈C(a)} deg b)`, fast on sparse layers), and the
//! *products* of spec §1.2 (bit-packed common-neighbour counts and 0/1 × dense products,
//! `O((rows² + cols²)·(rows + cols)/64 + nnz·(rows + cols))`, fast on denser ones); [`scores`]
//! takes the products above [`L3N_DENSE_ABOVE`]. L3p walks every L3 path once (`O(#paths)`) with
//! a dense common-neighbour table of the *smaller* side only (`min(out, in)²` floats).

use crate::{CsrPattern, Mask};

pub mod products;

/// Default density above which [`scores`] computes node-based predictors through products
/// rather than the sparse walk: both paths give the same bits, so this only changes speed.
/// Measured on the 2-core development machine (docs/BENCHMARKS.md, `cht bench scores`): the two
/// cost the same at 0.65–1 % density on 1568×784 … 2048×5461 layers and at about 1.3 % on
/// 512×512 (where both take under 2 ms); at 1 % the products are 1.05–1.8× faster on those large
/// shapes, at 2 % 3.5–4.7×, and the gap keeps growing with the density.
pub const L3N_DENSE_ABOVE: f64 = 0.01;

/// How node-based (L3n) scores are computed. Both paths sum every score in the same order and
/// give the same bits; only their cost differs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum L3nPath {
    /// Walk the sparse structure: cost grows with the density squared.
    Walk,
    /// Dense products (spec §1.2 steps 1–6): counts by popcounts of bit-packed rows, then the
    /// 0/1 pattern times the node weights. Needs `rows² + cols²` floats.
    Products,
}

impl L3nPath {
    /// The path for a `rows × cols` layer with `links` links: [`L3nPath::Products`] when the
    /// density is above `dense_above` and the products fit ([`products_fit`]), else the walk.
    pub fn choose(rows: usize, cols: usize, links: usize, dense_above: f64) -> L3nPath {
        let total = rows * cols;
        if total > 0 && links as f64 > dense_above * total as f64 && products_fit(rows, cols) {
            L3nPath::Products
        } else {
            L3nPath::Walk
        }
    }
}

/// Whether the product path can score a `rows × cols` layer: counts below 2²⁴ (exact in f32 on
/// every backend) and `rows² + cols²` weights within a memory cap (2²⁹ floats natively, 2²⁶ in
/// WebAssembly).
pub fn products_fit(rows: usize, cols: usize) -> bool {
    const EXACT: usize = 1 << 24;
    let cap: usize = if cfg!(target_arch = "wasm32") {
        1 << 26
    } else {
        1 << 29
    };
    rows < EXACT
        && cols < EXACT
        && rows
            .checked_mul(rows)
            .zip(cols.checked_mul(cols))
            .and_then(|(a, b)| a.checked_add(b))
            .is_some_and(|n| n <= cap)
}

/// CH3.1's denominator `(1 + e)^(1 + e/(1 + e))` for external degree `e` — the one transcendental
/// step of the L3n weights, shared by every implementation (GPUs get it as a table, so `pow`'s
/// rounding cannot differ).
pub fn ch31_denominator(e: f32) -> f32 {
    (1.0 + e).powf(1.0 + e / (1.0 + e))
}

/// [`ch31_denominator`] of `e = 0, 1, …, max_e`.
pub fn ch31_denominators(max_e: usize) -> Vec<f32> {
    (0..=max_e).map(|e| ch31_denominator(e as f32)).collect()
}

/// A link predictor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Predictor {
    /// Exact path-based CH3 (the CHT predictor).
    Ch3L3p,
    /// Exact path-based CH2.
    Ch2L3p,
    /// Exact path-based resource allocation on L3 paths.
    RaL3,
    /// Node-based CH3.
    Ch3L3n,
    /// Node-based CH2 (the CHTs/CHTss predictor of the paper).
    Ch2L3n,
    /// Node-based CH3.1.
    Ch31L3n,
}

impl Predictor {
    /// All predictors, for CLIs and tests.
    pub const ALL: [Predictor; 6] = [
        Predictor::Ch3L3p,
        Predictor::Ch2L3p,
        Predictor::RaL3,
        Predictor::Ch3L3n,
        Predictor::Ch2L3n,
        Predictor::Ch31L3n,
    ];

    /// The command-line name, e.g. `ch2-l3n`.
    pub fn name(self) -> &'static str {
        match self {
            Predictor::Ch3L3p => "ch3-l3p",
            Predictor::Ch2L3p => "ch2-l3p",
            Predictor::RaL3 => "ra-l3",
            Predictor::Ch3L3n => "ch3-l3n",
            Predictor::Ch2L3n => "ch2-l3n",
            Predictor::Ch31L3n => "ch3.1-l3n",
        }
    }

    /// Whether this is a path-based (exact) predictor.
    pub fn is_path_based(self) -> bool {
        matches!(
            self,
            Predictor::Ch3L3p | Predictor::Ch2L3p | Predictor::RaL3
        )
    }

    /// The per-interior-node factor of a path-based predictor, or the per-node weight of a
    /// node-based one, for internal degree `i`, external degree `e` and degree `deg`.
    pub fn node_term(self, i: u32, e: u32, deg: u32) -> f32 {
        let (i, e, deg) = (i as f32, e as f32, deg as f32);
        match self {
            Predictor::Ch3L3p => 1.0 / (1.0 + e).sqrt(),
            Predictor::Ch2L3p => ((1.0 + i) / (1.0 + e)).sqrt(),
            Predictor::RaL3 => 1.0 / deg.sqrt(),
            Predictor::Ch3L3n => 1.0 / (1.0 + e),
            Predictor::Ch2L3n => (1.0 + i) / (1.0 + e),
            Predictor::Ch31L3n => (1.0 + i) / ch31_denominator(e),
        }
    }
}

impl std::str::FromStr for Predictor {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let lower = s.to_ascii_lowercase().replace('_', "-");
        Predictor::ALL
            .into_iter()
            .find(|p| p.name() == lower)
            .ok_or_else(|| {
                let names: Vec<_> = Predictor::ALL.iter().map(|p| p.name()).collect();
                format!(
                    "unknown predictor {s:?}; expected one of {}",
                    names.join(", ")
                )
            })
    }
}

/// Scores of every pair of a `rows × cols` layer, row-major; existing links score 0. Node-based
/// predictors take the path [`L3nPath::choose`] picks at [`L3N_DENSE_ABOVE`].
///
/// ```rust
/// use cht_sparse::predict::{Predictor, scores};
/// use cht_sparse::{CsrPattern, Mask};
///
/// // Links (0,0), (1,0), (1,1): the missing link (0,1) closes the path 0 – in 0 – out 1 – in 1.
/// let mask = Mask::from_bools(2, 2, vec![true, false, true, true])?;
/// let p = CsrPattern::from_mask(&mask);
/// for predictor in [Predictor::Ch3L3p, Predictor::Ch2L3n] {
///     let s = scores(&p, predictor);
///     assert_eq!(s.len(), 4);
///     assert!(s[1] > 0.0);
///     assert_eq!([s[0], s[2], s[3]], [0.0; 3]); // existing links score 0
/// }
/// # Ok::<(), cht_sparse::Error>(())
/// ```
pub fn scores(p: &CsrPattern, predictor: Predictor) -> Vec<f32> {
    let path = L3nPath::choose(p.rows(), p.cols(), p.nnz(), L3N_DENSE_ABOVE);
    scores_via(p, predictor, path)
}

/// [`scores`] with the node-based path given (path-based predictors ignore it). Both paths give
/// the same bits; [`L3nPath::Products`] falls back to the walk where the products do not fit.
pub fn scores_via(p: &CsrPattern, predictor: Predictor, path: L3nPath) -> Vec<f32> {
    if predictor.is_path_based() {
        path_scores(p, predictor)
    } else if path == L3nPath::Products && products_fit(p.rows(), p.cols()) {
        products::node_scores(p, predictor)
    } else {
        node_scores(p, predictor)
    }
}

/// External degree `deg − i − 1`, clamped at 0 (the clamp only affects existing links, §1.2).
fn external(deg: u32, i: u32) -> u32 {
    deg.saturating_sub(i + 1)
}

/// A pattern and its transpose as CSR (the transpose's CSR is the pattern's CSC).
struct Both<'a> {
    p: &'a CsrPattern,
    t: CsrPattern,
}

impl<'a> Both<'a> {
    fn new(p: &'a CsrPattern) -> Both<'a> {
        let csc = p.csc();
        let t = CsrPattern::new(p.cols(), p.rows(), csc.col_ptr, csc.row_idx)
            .expect("the CSC of a valid pattern is a valid CSR of its transpose");
        Both { p, t }
    }
}

fn row(p: &CsrPattern, r: usize) -> &[u32] {
    &p.col_idx()[p.row_ptr()[r] as usize..p.row_ptr()[r + 1] as usize]
}

/// Runs `f(r, out_row)` over the rows of `out` (`row_len` each), in parallel natively.
fn for_rows(out: &mut [f32], row_len: usize, f: impl Fn(usize, &mut [f32]) + Send + Sync) {
    if row_len == 0 {
        return;
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        use rayon::prelude::*;
        out.par_chunks_mut(row_len)
            .enumerate()
            .for_each(|(r, c)| f(r, c));
    }
    #[cfg(target_arch = "wasm32")]
    out.chunks_mut(row_len)
        .enumerate()
        .for_each(|(r, c)| f(r, c));
}

/// Node-based scores: `S[a, j] = T(P)[a, j] + T(Pᵀ)[j, a]`, where `T(P)[a, j]` sums the weights
/// of the output-side local-community nodes `b` (rows sharing an input with `a` and linked to `j`)
/// in ascending `b`, and `T(Pᵀ)` likewise the input-side nodes `k` in ascending `k`.
fn node_scores(p: &CsrPattern, predictor: Predictor) -> Vec<f32> {
    let both = Both::new(p);
    let (rows, cols) = (p.rows(), p.cols());
    // Upper bound of the input-side weight lists' total length.
    let bound: usize = (0..cols)
        .map(|k| {
            row(&both.t, k)
                .iter()
                .map(|&b| row(p, b as usize).len())
                .sum::<usize>()
                .min(cols)
        })
        .sum();
    if bound <= cols * cols / 4 {
        // Sparse regime: per input k, the list of (j, w_k for seed j); rows then add the lists of
        // their inputs — no second dense matrix, no transpose.
        let lists = input_side_lists(both.p, &both.t, predictor);
        let mut s = vec![0f32; rows * cols];
        for_rows(&mut s, cols, |a, acc| {
            output_side_row(both.p, &both.t, predictor, a, acc);
            let mut in_side = vec![0f32; cols];
            for &k in row(p, a) {
                for &(j, w) in &lists[k as usize] {
                    in_side[j as usize] += w;
                }
            }
            for (o, v) in acc.iter_mut().zip(in_side) {
                *o += v;
            }
            for &j in row(p, a) {
                acc[j as usize] = 0.0;
            }
        });
        s
    } else {
        let mut s = output_side_terms(both.p, &both.t, predictor);
        let in_side = output_side_terms(&both.t, both.p, predictor);
        // s += in_sideᵀ, in tiles so both matrices are walked cache-friendly.
        const TILE: usize = 32;
        for a0 in (0..rows).step_by(TILE) {
            for j0 in (0..cols).step_by(TILE) {
                for a in a0..(a0 + TILE).min(rows) {
                    for j in j0..(j0 + TILE).min(cols) {
                        s[a * cols + j] += in_side[j * rows + a];
                    }
                }
            }
        }
        mask_existing(p, &mut s);
        s
    }
}

/// For every input `k`: `(j, w(CN(j, k), deg k))` for each other input `j` sharing a row with `k`,
/// ascending in `j`.
fn input_side_lists(p: &CsrPattern, t: &CsrPattern, predictor: Predictor) -> Vec<Vec<(u32, f32)>> {
    let cols = p.cols();
    let build = |k: usize| {
        let deg = row(t, k).len() as u32;
        let mut cn = vec![0u32; cols];
        for &b in row(t, k) {
            for &j in row(p, b as usize) {
                cn[j as usize] += 1;
            }
        }
        cn.iter()
            .enumerate()
            .filter(|&(j, &i)| i > 0 && j != k)
            .map(|(j, &i)| (j as u32, predictor.node_term(i, external(deg, i), deg)))
            .collect()
    };
    #[cfg(not(target_arch = "wasm32"))]
    {
        use rayon::prelude::*;
        (0..cols).into_par_iter().map(build).collect()
    }
    #[cfg(target_arch = "wasm32")]
    (0..cols).map(build).collect()
}

/// `T[a, j] = Σ_{b ≠ a, CN(a,b) > 0, M[b,j] = 1} w(CN(a,b), deg b)` for every `(a, j)`.
///
/// Per row `a`, the node weights `q[b]` are either scattered along each LC node's links (cheap when
/// the local community is small) or gathered down each column (cheaper when it covers most rows).
/// Both sum in ascending `b` for every entry, so the choice does not change any bit of the result.
fn output_side_terms(p: &CsrPattern, t: &CsrPattern, predictor: Predictor) -> Vec<f32> {
    let (rows, cols) = (p.rows(), p.cols());
    let mut out = vec![0f32; rows * cols];
    for_rows(&mut out, cols, |a, acc| {
        output_side_row(p, t, predictor, a, acc)
    });
    out
}

/// Row `a` of [`output_side_terms`], written into `acc` (zero on entry).
fn output_side_row(
    p: &CsrPattern,
    t: &CsrPattern,
    predictor: Predictor,
    a: usize,
    acc: &mut [f32],
) {
    let rows = p.rows();
    let nnz = p.nnz();
    let mut cn = vec![0u32; rows];
    let mut scatter_cost = 0;
    for &k in row(p, a) {
        for &b in row(t, k as usize) {
            if b as usize != a {
                if cn[b as usize] == 0 {
                    scatter_cost += row(p, b as usize).len();
                }
                cn[b as usize] += 1;
            }
        }
    }
    // q[b]: the weight of LC node b (0 for rows outside the local community).
    let q: Vec<f32> = cn
        .iter()
        .enumerate()
        .map(|(b, &i)| {
            if i == 0 {
                return 0.0;
            }
            let deg = row(p, b).len() as u32;
            predictor.node_term(i, external(deg, i), deg)
        })
        .collect();
    if scatter_cost * 2 < nnz {
        for (b, &w) in q.iter().enumerate() {
            if cn[b] > 0 {
                for &j in row(p, b) {
                    acc[j as usize] += w;
                }
            }
        }
    } else {
        for (j, o) in acc.iter_mut().enumerate() {
            // Rows of column j, ascending: the same order as the scatter above.
            *o = row(t, j).iter().fold(0.0, |sum, &b| sum + q[b as usize]);
        }
    }
}

/// Path-based scores. Iterates the larger side so that the dense common-neighbour table covers
/// the smaller side.
fn path_scores(p: &CsrPattern, predictor: Predictor) -> Vec<f32> {
    let both = Both::new(p);
    if p.cols() <= p.rows() {
        let mut s = path_scores_by_rows(both.p, &both.t, predictor);
        mask_existing(p, &mut s);
        s
    } else {
        let st = path_scores_by_rows(&both.t, both.p, predictor);
        let (rows, cols) = (p.rows(), p.cols());
        let mut s = vec![0f32; rows * cols];
        for j in 0..cols {
            for a in 0..rows {
                s[a * cols + j] = st[j * rows + a];
            }
        }
        mask_existing(p, &mut s);
        s
    }
}

/// `S[a, j] = Σ_{k ∈ N(a)} Σ_{b ∈ N(k), b ≠ a} Σ_{j ∈ N(b)} f_out(CN(a,b), deg b) · f_in(CN(j,k), deg k)`
/// with the input-side factors precomputed in a dense `cols × cols` table.
fn path_scores_by_rows(p: &CsrPattern, t: &CsrPattern, predictor: Predictor) -> Vec<f32> {
    let (rows, cols) = (p.rows(), p.cols());
    // table[k * cols + j] = f_in(CN(j, k), deg k), for pairs with a common row.
    let mut table = vec![0f32; cols * cols];
    for_rows(&mut table, cols, |k, out| {
        let deg_k = row(t, k).len() as u32;
        let mut cn = vec![0u32; cols];
        for &b in row(t, k) {
            for &j in row(p, b as usize) {
                cn[j as usize] += 1;
            }
        }
        for (j, o) in out.iter_mut().enumerate() {
            if cn[j] > 0 && j != k {
                *o = predictor.node_term(cn[j], external(deg_k, cn[j]), deg_k);
            }
        }
    });
    let mut s = vec![0f32; rows * cols];
    for_rows(&mut s, cols, |a, acc| {
        let mut cn = vec![0u32; rows];
        for &k in row(p, a) {
            for &b in row(t, k as usize) {
                cn[b as usize] += 1;
            }
        }
        for &k in row(p, a) {
            let f_k = &table[k as usize * cols..(k as usize + 1) * cols];
            for &b in row(t, k as usize) {
                if b as usize == a {
                    continue;
                }
                let nb = row(p, b as usize);
                let i = cn[b as usize];
                let w = predictor.node_term(i, external(nb.len() as u32, i), nb.len() as u32);
                for &j in nb {
                    acc[j as usize] += w * f_k[j as usize];
                }
            }
        }
    });
    s
}

fn mask_existing(p: &CsrPattern, s: &mut [f32]) {
    let cols = p.cols();
    for a in 0..p.rows() {
        for &j in row(p, a) {
            s[a * cols + j as usize] = 0.0;
        }
    }
}

/// Straight-from-the-definitions references (slow; for tests and for checking other
/// implementations): enumerate every L3 path `a – k – b – j` of every non-link and compute `i` and
/// `e` of each interior node by counting neighbours inside the local community.
pub mod reference {
    use super::*;

    /// Scores in f64, row-major, existing links 0.
    pub fn scores(mask: &Mask, predictor: Predictor) -> Vec<f64> {
        let (rows, cols) = (mask.rows(), mask.cols());
        let deg_row = |b: usize| (0..cols).filter(|&c| mask.get(b, c)).count() as u32;
        let deg_col = |k: usize| (0..rows).filter(|&r| mask.get(r, k)).count() as u32;
        let mut out = vec![0f64; rows * cols];
        for a in 0..rows {
            for j in 0..cols {
                if mask.get(a, j) {
                    continue;
                }
                // Every L3 path and the local community (interior nodes).
                let mut paths = Vec::new();
                for k in (0..cols).filter(|&k| mask.get(a, k)) {
                    for b in (0..rows).filter(|&b| b != a && mask.get(b, k) && mask.get(b, j)) {
                        paths.push((k, b));
                    }
                }
                let lc_in: Vec<usize> = dedup(paths.iter().map(|p| p.0));
                let lc_out: Vec<usize> = dedup(paths.iter().map(|p| p.1));
                // Internal degree: neighbours inside the local community.
                let i_in = |k: usize| lc_out.iter().filter(|&&b| mask.get(b, k)).count() as u32;
                let i_out = |b: usize| lc_in.iter().filter(|&&k| mask.get(b, k)).count() as u32;
                let term = |i: u32, deg: u32| {
                    f64::from(predictor.node_term(i, deg.saturating_sub(i + 1), deg))
                };
                out[a * cols + j] = if predictor.is_path_based() {
                    paths
                        .iter()
                        .map(|&(k, b)| term(i_in(k), deg_col(k)) * term(i_out(b), deg_row(b)))
                        .sum()
                } else {
                    lc_in
                        .iter()
                        .map(|&k| term(i_in(k), deg_col(k)))
                        .sum::<f64>()
                        + lc_out
                            .iter()
                            .map(|&b| term(i_out(b), deg_row(b)))
                            .sum::<f64>()
                };
            }
        }
        out
    }

    fn dedup(it: impl Iterator<Item = usize>) -> Vec<usize> {
        let mut v: Vec<usize> = it.collect();
        v.sort_unstable();
        v.dedup();
        v
    }
}

#[cfg(test)]
#[allow(clippy::approx_constant)] // the spec's test vectors, to six decimals
mod tests {
    use super::*;
    use crate::rng::{Counter, RngKey, Stream};

    fn mask(rows: &[&[u8]]) -> Mask {
        let bits = rows
            .iter()
            .flat_map(|r| r.iter().map(|&v| v != 0))
            .collect();
        Mask::from_bools(rows.len(), rows[0].len(), bits).unwrap()
    }

    fn check(m: &Mask, predictor: Predictor, want: &[f64]) {
        let got = scores(&CsrPattern::from_mask(m), predictor);
        let reference = reference::scores(m, predictor);
        for (idx, ((&g, &r), &w)) in got.iter().zip(&reference).zip(want).enumerate() {
            assert!(
                (f64::from(g) - w).abs() < 1e-5,
                "{predictor:?} [{idx}]: got {g}, want {w}"
            );
            assert!(
                (r - w).abs() < 1e-5,
                "{predictor:?} reference [{idx}]: {r} vs {w}"
            );
        }
    }

    #[test]
    fn spec_vectors_mask_b() {
        let b = mask(&[&[1, 1, 0, 0], &[1, 0, 1, 0], &[0, 1, 1, 1]]);
        let (x, y) = (1.707107, 0.707107);
        check(
            &b,
            Predictor::Ch3L3p,
            &[0., 0., x, y, 0., x, 0., y, 2., 0., 0., 0.],
        );
        let (x, y) = (3.414214, 1.414214);
        check(
            &b,
            Predictor::Ch2L3p,
            &[0., 0., x, y, 0., x, 0., y, 4., 0., 0., 0.],
        );
        check(
            &b,
            Predictor::Ch3L3n,
            &[0., 0., 3.5, 1.5, 0., 3.5, 0., 1.5, 4., 0., 0., 0.],
        );
        check(
            &b,
            Predictor::Ch2L3n,
            &[0., 0., 7., 3., 0., 7., 0., 3., 8., 0., 0., 0.],
        );
        let (x, y) = (6.707107, 2.707107);
        check(
            &b,
            Predictor::Ch31L3n,
            &[0., 0., x, y, 0., x, 0., y, 8., 0., 0., 0.],
        );
    }

    #[test]
    fn spec_vectors_mask_a() {
        let a = mask(&[&[1, 1, 0, 0], &[0, 1, 1, 0], &[0, 0, 1, 1]]);
        let v = |s: f64| [0., 0., s, 0., s, 0., 0., s, 0., s, 0., 0.];
        check(&a, Predictor::Ch3L3p, &v(1.0));
        check(&a, Predictor::Ch3L3n, &v(2.0));
        check(&a, Predictor::Ch2L3p, &v(2.0));
        check(&a, Predictor::Ch2L3n, &v(4.0));
    }

    #[test]
    fn agree_with_brute_force_on_hundreds_of_random_masks() {
        let mut rng = Counter::new(RngKey::new(5, Stream::Synthetic, 0, 0));
        for case in 0..300u32 {
            let rows = 1 + rng.below(if case < 250 { 12 } else { 64 }) as usize;
            let cols = 1 + rng.below(if case < 250 { 12 } else { 64 }) as usize;
            let density = 0.02 + 0.88 * f64::from(rng.next_uniform());
            let key = RngKey::new(case, Stream::Synthetic, 1, 0);
            let p = CsrPattern::random(rows, cols, density, key).unwrap();
            let m = p.to_mask();
            for predictor in Predictor::ALL {
                let got = scores(&p, predictor);
                let want = reference::scores(&m, predictor);
                for (idx, (&g, &w)) in got.iter().zip(&want).enumerate() {
                    // f32 sums of up to a few thousand terms against an f64 reference.
                    let tol = 1e-4 * (1.0 + w.abs());
                    assert!(
                        (f64::from(g) - w).abs() <= tol,
                        "case {case} {rows}x{cols} d={density:.2} {predictor:?} [{idx}]: {g} vs {w}"
                    );
                    if w == 0.0 {
                        assert_eq!(g, 0.0, "pairs without an L3 path must score exactly 0");
                    }
                }
            }
        }
    }

    #[test]
    fn names_round_trip() {
        for p in Predictor::ALL {
            assert_eq!(p.name().parse::<Predictor>().unwrap(), p);
        }
        assert!("ch9".parse::<Predictor>().is_err());
        assert_eq!("CH2_L3n".parse::<Predictor>().unwrap(), Predictor::Ch2L3n);
    }
}
