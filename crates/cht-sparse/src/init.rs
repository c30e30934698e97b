//! Sparse topology initialisation, weight initialisation (spec §6) and ERK layer-wise densities.
//!
//! A layer has `rows` output neurons and `cols` input neurons; masks are `rows × cols` (spec §0.2).
//! Every random choice comes from the counter-based RNG of [`crate::rng`], so a mask or a weight
//! vector is a pure function of its arguments and key. Invalid parameters come back as
//! [`InitError`], never as a panic.
//!
//! | what | spec | entry point | links |
//! |---|---|---|---|
//! | Erdős–Rényi | §6.1 | [`erdos_renyi`] | `N − floor(S·N)` ([`er_link_count`]) |
//! | BRF (bipartite receptive field) | §6.2, §9.18–20 | [`brf`] | sum of [`brf_degrees`] |
//! | BSW (bipartite small world) | §6.3 | [`bsw`] | sum of [`bsw_degrees`] |
//! | CSTI (correlated) | §6.5, §9.21 | [`csti`] | `abs(c) ≥ τ`: at least `floor(d·N) + 1` |
//! | weights | §6.6, §9.17 | [`dense_weights`], [`mask_weights`] | — |
//! | ERK densities | RigL | [`erk_densities`] | — |
//!
//! [`TopologyInit`] and [`WeightInit`] are the serialisable configurations; [`TopologyInit::mask`]
//! dispatches to the builders above. Here `N = rows·cols`, `d` is the density and `S = 1 − d`.
//!
//! BRF and BSW build an `n_small × n_large` adjacency, `n_small = min(rows, cols)`, and use it
//! as-is when `cols ≥ rows` (so for square layers the controlled side is the rows), transposed
//! otherwise.
//! BSF (§6.4) is not implemented: the official scheduler cannot reach it.

use serde::{Deserialize, Serialize};

use crate::Mask;
use crate::rng::{Counter, RngKey, draw_u32, to_unit};

/// The BRF randomness `r` used by the official CLI (spec §6.2); the README uses 0.3.
pub const DEFAULT_BRF_R: f64 = 0.25;

/// The BSW rewiring probability β of \[OLD-TR\] and \[NEW\] (spec §6.3); \[OLD-MLP\] uses 1.0.
pub const DEFAULT_BSW_BETA: f64 = 0.25;

/// The largest `rows · cols` accepted, so that every position and both Box–Muller draw indices
/// (`2p`, `2p + 1`) fit the 32-bit RNG counter.
pub const MAX_ENTRIES: usize = 1 << 31;

/// Invalid initialisation parameters.
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum InitError {
    /// A density, `r`, β or similar is not a finite number in its allowed range.
    #[error("{name} = {value} is outside {range}")]
    OutOfRange {
        /// Which parameter.
        name: &'static str,
        /// The rejected value.
        value: f64,
        /// The allowed range, in words.
        range: &'static str,
    },
    /// A layer shape with no entries.
    #[error("layer shape {rows}x{cols} has no entries")]
    EmptyShape {
        /// Output neurons.
        rows: usize,
        /// Input neurons.
        cols: usize,
    },
    /// A layer shape with more than [`MAX_ENTRIES`] entries.
    #[error("layer shape {rows}x{cols} has more than 2^31 entries")]
    TooLarge {
        /// Output neurons.
        rows: usize,
        /// Input neurons.
        cols: usize,
    },
    /// BRF `uniform` degrees give every node one link first, so they need `total ≥ n_small`.
    #[error(
        "BRF uniform degrees need at least one link per node: total {total} < n_small {n_small}"
    )]
    BrfTooFewLinks {
        /// `round(k̄ · n_small)`.
        total: usize,
        /// `min(rows, cols)`.
        n_small: usize,
    },
    /// A buffer does not have the length its dimensions imply.
    #[error("{what} has {got} entries, expected {expected}")]
    Length {
        /// Which buffer.
        what: &'static str,
        /// Its length.
        got: usize,
        /// The length implied by the dimensions.
        expected: usize,
    },
    /// A CSTI layer is larger than the tiled correlation matrix it is cropped from.
    #[error(
        "CSTI layer {rows}x{cols} does not fit the {dim}x{dim} tiling \
         of a {n_features}-feature correlation"
    )]
    CstiShape {
        /// Output neurons.
        rows: usize,
        /// Input neurons.
        cols: usize,
        /// Tiling factor (`--dim`).
        dim: usize,
        /// Side of the correlation matrix.
        n_features: usize,
    },
    /// [`TopologyInit::Csti`] was asked for without a correlation matrix.
    #[error("CSTI needs the input-feature correlation matrix")]
    MissingCorrelation,
    /// A mask could not be assembled (an internal shape mismatch).
    #[error(transparent)]
    Sparse(#[from] crate::Error),
}

/// Result alias for this module.
pub type Result<T, E = InitError> = std::result::Result<T, E>;

/// How the initial sparse topology of a layer is chosen (spec §6).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub enum TopologyInit {
    /// Uniformly random links (§6.1); the default of all three official codes.
    #[default]
    ErdosRenyi,
    /// Bipartite receptive field (§6.2): links near a (ring) diagonal, with randomness
    /// `r ∈ [0, 1]`.
    Brf {
        /// `r = 0` gives a deterministic band, `r = 1` uniform random columns.
        r: f64,
        /// How the degrees of the smaller side are drawn.
        degrees: BrfDegrees,
    },
    /// Bipartite small world (§6.3): a ring lattice with each link rewired with probability β.
    Bsw {
        /// Rewiring probability in `[0, 1]`; β = 1 gives ER with the lattice's link count.
        beta: f64,
    },
    /// Correlated sparse topological initialisation (§6.5): links where the input-feature
    /// correlation, tiled `dim × dim` and cropped to the layer, is largest in magnitude.
    Csti {
        /// The `--dim` tiling factor (1 or 2 in the official MLP code).
        dim: usize,
    },
}

/// Degree distribution of the smaller side in BRF (spec §6.2 step 2, §9.18).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum BrfDegrees {
    /// `floor(k̄)` or `floor(k̄) + 1` links per node, the larger degrees on randomly chosen nodes.
    Fixed,
    /// One link per node plus a multinomial share of the rest (the CLI default, misnamed
    /// "uniform" in the official code: the degrees are `1 + Multinomial`).
    #[default]
    Uniform,
}

/// How raw data samples are laid out in memory for [`pearson_correlation`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum SampleLayout {
    /// `samples[s * n_features + f]`: one contiguous row per sample (images as loaded).
    #[default]
    SampleMajor,
    /// `samples[f * n_samples + s]`: one contiguous row per feature.
    FeatureMajor,
}

/// How the initial weights are drawn (spec §6.6). The mask is applied afterwards.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub enum WeightInit {
    /// Kaiming normal, `N(0, 2/in)`, with the dense fan-in.
    Kaiming,
    /// Sparse weight initialisation: Kaiming with the fan counted over existing links only.
    Swi {
        /// Which fan the official codes use (§9.17).
        variant: SwiVariant,
    },
    /// Glorot (Xavier) uniform, `U(−a, a)` with `a = sqrt(6/(in + out))`.
    ///
    /// In the official codes `xavier` means "keep the model's own initialisation", which is the
    /// default of \[OLD-TR\] and \[NEW\]. The cht MLP's own initialisation is Glorot uniform, so
    /// that is what this variant draws.
    #[default]
    Xavier,
    /// `N(0, std²)` whatever the shape: HF LLaMA's own initialisation (`initializer_range` 0.02),
    /// which is what `xavier` ("keep the model's init") means in the official LLM code.
    Normal {
        /// Standard deviation (> 0).
        std: f64,
    },
}

/// The two SWI variants of the official codes (spec §6.6, §9.17). They agree on square layers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum SwiVariant {
    /// `σ = sqrt(2 / ((1−S)·in))`: the effective fan-in, as in the older per-layer `sparse.py`.
    ///
    /// This is the default because it is what the Kaiming argument gives for a sparse layer (each
    /// output neuron sums about `(1−S)·in` inputs); the spec reads the other form as a
    /// transposition slip.
    #[default]
    FanIn,
    /// `σ = sqrt(2 / ((1−S)·out))`: what the DSTScheduler of \[OLD-MLP\] and \[OLD-TR\] computes,
    /// i.e. what the released MLP results (`--init_mode swi`) used.
    DstScheduler,
}

/// A validated input-feature correlation matrix for CSTI (spec §6.5 steps 1–2).
///
/// It is square and row-major, has no NaN and has a zero diagonal.
#[derive(Clone, Debug, PartialEq)]
pub struct Correlation {
    n_features: usize,
    values: Vec<f32>,
}

impl TopologyInit {
    /// Builds the `rows × cols` mask of one layer at `density ∈ (0, 1]`.
    ///
    /// `key` is normally `RngKey::new(seed, Stream::TopologyInit, 0, layer)`. `correlation` is
    /// only read by [`TopologyInit::Csti`], which fails with [`InitError::MissingCorrelation`]
    /// without it.
    pub fn mask(
        &self,
        rows: usize,
        cols: usize,
        density: f64,
        key: RngKey,
        correlation: Option<&Correlation>,
    ) -> Result<Mask> {
        match *self {
            TopologyInit::ErdosRenyi => erdos_renyi(rows, cols, density, key),
            TopologyInit::Brf { r, degrees } => brf(rows, cols, density, r, degrees, key),
            TopologyInit::Bsw { beta } => bsw(rows, cols, density, beta, key),
            TopologyInit::Csti { dim } => {
                let correlation = correlation.ok_or(InitError::MissingCorrelation)?;
                csti(rows, cols, density, correlation, dim)
            }
        }
    }
}

/// The number of links of an Erdős–Rényi layer: `N − floor(S·N)` with `S = 1 − density` (§6.1).
///
/// The floor forgives a relative error of 1e-12, so decimal densities give the count decimal
/// arithmetic gives: at density 0.34, `(1 − 0.34)·100` is 65.99999999999999 in f64 but floors to 66.
/// The same tolerance applies to every `floor` of this module.
pub fn er_link_count(rows: usize, cols: usize, density: f64) -> Result<usize> {
    let n = check_shape(rows, cols)?;
    check_density(density)?;
    let zeros = floor_tolerant((1.0 - density) * n as f64) as usize;
    Ok(n - zeros.min(n))
}

/// Erdős–Rényi mask (§6.1): exactly [`er_link_count`] links at uniformly random positions.
pub fn erdos_renyi(rows: usize, cols: usize, density: f64, key: RngKey) -> Result<Mask> {
    let links = er_link_count(rows, cols, density)?;
    let n = rows * cols;
    let mut rng = Counter::new(key);
    // Draw whichever of ones or zeros is rarer, so the draw never crowds its own target.
    let bits = if 2 * links <= n {
        let mut bits = vec![false; n];
        flip_random(&mut bits, false, links, &mut rng);
        bits
    } else {
        let mut bits = vec![true; n];
        flip_random(&mut bits, true, n - links, &mut rng);
        bits
    };
    Ok(Mask::from_bools(rows, cols, bits)?)
}

/// The degrees of the `n_small = min(rows, cols)` controlled nodes of a BRF layer (§6.2 step 2).
///
/// With `k̄ = density · n_large` and `total = round(k̄ · n_small)`:
/// * [`BrfDegrees::Fixed`]: `round((k̄ − floor k̄)·n_small)` randomly chosen nodes get
///   `floor k̄ + 1`, the rest `floor k̄`; the sum is `total`.
/// * [`BrfDegrees::Uniform`]: every node gets 1, then each of the other `total − n_small` links
///   goes to a uniformly random node; fails with [`InitError::BrfTooFewLinks`] when
///   `total < n_small`.
///
/// Each degree is then capped at `n_large`, as in the official code (§6.2): a capped uniform draw
/// loses the excess, so the sum is `total` except when a node overflows (only at high density).
/// [`brf`] with the same key uses exactly these degrees for the nodes in this order.
pub fn brf_degrees(
    rows: usize,
    cols: usize,
    density: f64,
    degrees: BrfDegrees,
    key: RngKey,
) -> Result<Vec<usize>> {
    check_shape(rows, cols)?;
    check_density(density)?;
    let (n_small, n_large) = sides(rows, cols);
    draw_brf_degrees(n_small, n_large, density, degrees, &mut Counter::new(key))
}

/// The BRF sampling probabilities of one controlled node with centre `centre` (§6.2 step 4):
/// `p_j ∝ (1 + d_j)^(−α)` with ring distance `d_j = min(|j − c|, n_large − |j − c|)` and
/// `α = (1 − r)/r`, for `r ∈ (0, 1]` (`r = 0` is the deterministic band, not a distribution).
pub fn brf_probabilities(n_large: usize, centre: usize, r: f64) -> Result<Vec<f64>> {
    if n_large == 0 {
        return Err(InitError::EmptyShape {
            rows: 1,
            cols: n_large,
        });
    }
    if !(r > 0.0 && r <= 1.0) {
        return Err(out_of_range("r", r, "(0, 1]"));
    }
    if centre >= n_large {
        return Err(out_of_range("centre", centre as f64, "[0, n_large)"));
    }
    let alpha = (1.0 - r) / r;
    // The centre has weight 1, so the sum stays at least 1 even when far weights underflow.
    let weights: Vec<f64> = (0..n_large)
        .map(|j| (-alpha * (1.0 + ring_distance(j, centre, n_large) as f64).ln()).exp())
        .collect();
    let sum: f64 = weights.iter().sum();
    Ok(weights.into_iter().map(|w| w / sum).collect())
}

/// BRF mask (§6.2): each controlled node `i` gets [`brf_degrees`]`[i]` links to columns near its
/// centre `c_i = (i · stride) mod n_large`, `stride = max(1, n_large / n_small)` (integer division,
/// §9.19).
///
/// * `r = 0`: the `k_i` columns with the smallest ring distance. Ties (even `k_i`) go to the lower
///   column index; the official `argpartition` breaks them arbitrarily (§9.20).
/// * `r ∈ (0, 1]`: `k_i` distinct columns drawn without replacement with probabilities
///   [`brf_probabilities`]. Drawn by exponential keys (Efraimidis–Spirakis), which has the same
///   distribution as sequential draws with renormalisation.
///
/// The link count is the sum of the degrees.
pub fn brf(
    rows: usize,
    cols: usize,
    density: f64,
    r: f64,
    degrees: BrfDegrees,
    key: RngKey,
) -> Result<Mask> {
    check_shape(rows, cols)?;
    check_density(density)?;
    check_probability("r", r)?;
    let (n_small, n_large) = sides(rows, cols);
    let mut rng = Counter::new(key);
    let node_degrees = draw_brf_degrees(n_small, n_large, density, degrees, &mut rng)?;
    let choice = if r == 0.0 {
        BrfChoice::Band
    } else {
        BrfChoice::Sample {
            alpha: (1.0 - r) / r,
        }
    };
    let stride = (n_large / n_small).max(1);
    let mut bits = vec![false; n_small * n_large];
    for (i, (&k, row)) in node_degrees
        .iter()
        .zip(bits.chunks_mut(n_large))
        .enumerate()
    {
        let centre = (i * stride) % n_large;
        for j in brf_columns(centre, k, n_large, choice, &mut rng) {
            row[j] = true;
        }
    }
    small_major_to_mask(rows, cols, bits)
}

/// The degrees of the `n_large = max(rows, cols)` lattice nodes of a BSW layer (§6.3, \[NEW\]).
///
/// With `K = density · n_small`, `round((K − floor K)·n_large)` randomly chosen nodes get
/// `floor K + 1` and the rest `floor K`. [`bsw`] with the same key uses exactly these degrees, and
/// its link count is their sum whatever β is.
pub fn bsw_degrees(rows: usize, cols: usize, density: f64, key: RngKey) -> Result<Vec<usize>> {
    check_shape(rows, cols)?;
    check_density(density)?;
    let (n_small, n_large) = sides(rows, cols);
    Ok(draw_split_degrees(
        density * n_small as f64,
        n_large,
        n_small,
        &mut Counter::new(key),
    ))
}

/// BSW mask (§6.3, the \[NEW\] variant).
///
/// Lattice: large-side node `j` links small-side nodes
/// `(trunc(j·n_small/n_large − k_j/2) + t) mod n_small` for `t = 0..k_j`, with `trunc` toward zero
/// as Python's `int()`. Then every link is dropped with probability β (row-major over the
/// `n_small × n_large` adjacency) and exactly as many are added at uniformly random currently-empty
/// positions, which may include just-dropped ones. The link count is the sum of [`bsw_degrees`].
pub fn bsw(rows: usize, cols: usize, density: f64, beta: f64, key: RngKey) -> Result<Mask> {
    check_shape(rows, cols)?;
    check_density(density)?;
    check_probability("beta", beta)?;
    let (n_small, n_large) = sides(rows, cols);
    let mut rng = Counter::new(key);
    let degrees = draw_split_degrees(density * n_small as f64, n_large, n_small, &mut rng);
    let mut bits = vec![false; n_small * n_large];
    for (j, &k) in degrees.iter().enumerate() {
        let start = ((j * n_small) as f64 / n_large as f64 - k as f64 / 2.0).trunc() as i64;
        for t in 0..k as i64 {
            let s = (start + t).rem_euclid(n_small as i64) as usize;
            bits[s * n_large + j] = true;
        }
    }
    rewire(&mut bits, beta, &mut rng);
    small_major_to_mask(rows, cols, bits)
}

/// Pearson correlation between the `n_features` features over `n_samples` samples (§6.5 steps
/// 1–2), as a row-major `n_features × n_features` matrix.
///
/// Constant features (whose correlation is 0/0 = NaN) get 0, and so does the diagonal. Sums are
/// accumulated in f64 over mean-centred values.
pub fn pearson_correlation(
    samples: &[f32],
    n_samples: usize,
    n_features: usize,
    layout: SampleLayout,
) -> Result<Vec<f32>> {
    let expected = n_samples.checked_mul(n_features).ok_or(InitError::Length {
        what: "samples",
        got: samples.len(),
        expected: usize::MAX,
    })?;
    if samples.len() != expected {
        return Err(InitError::Length {
            what: "samples",
            got: samples.len(),
            expected,
        });
    }
    let value = |s: usize, f: usize| match layout {
        SampleLayout::SampleMajor => samples[s * n_features + f],
        SampleLayout::FeatureMajor => samples[f * n_samples + s],
    };
    let mut mean = vec![0.0f64; n_features];
    for s in 0..n_samples {
        for (f, m) in mean.iter_mut().enumerate() {
            *m += f64::from(value(s, f));
        }
    }
    mean.iter_mut().for_each(|m| *m /= n_samples.max(1) as f64);
    // Upper triangle of the centred scatter matrix, one rank-1 update per sample.
    let mut scatter = vec![0.0f64; n_features * n_features];
    let mut centred = vec![0.0f64; n_features];
    for s in 0..n_samples {
        for (f, c) in centred.iter_mut().enumerate() {
            *c = f64::from(value(s, f)) - mean[f];
        }
        for (i, &ci) in centred.iter().enumerate() {
            let row = &mut scatter[i * n_features..(i + 1) * n_features];
            for (acc, &cj) in row[i..].iter_mut().zip(&centred[i..]) {
                *acc += ci * cj;
            }
        }
    }
    let mut corr = vec![0.0f32; n_features * n_features];
    for i in 0..n_features {
        for j in i + 1..n_features {
            let denominator = (scatter[i * n_features + i] * scatter[j * n_features + j]).sqrt();
            let c = scatter[i * n_features + j] / denominator;
            let c = if c.is_nan() {
                0.0
            } else {
                c.clamp(-1.0, 1.0) as f32
            };
            corr[i * n_features + j] = c;
            corr[j * n_features + i] = c;
        }
    }
    Ok(corr)
}

impl Correlation {
    /// The Pearson correlation of raw samples (see [`pearson_correlation`]).
    pub fn from_samples(
        samples: &[f32],
        n_samples: usize,
        n_features: usize,
        layout: SampleLayout,
    ) -> Result<Correlation> {
        let values = pearson_correlation(samples, n_samples, n_features, layout)?;
        Ok(Correlation { n_features, values })
    }

    /// Wraps a precomputed row-major `n_features × n_features` matrix (for instance a cached
    /// `corr.mat`), setting NaN entries and the diagonal to 0 as §6.5 step 2 does.
    pub fn from_matrix(n_features: usize, mut values: Vec<f32>) -> Result<Correlation> {
        let expected = n_features * n_features;
        if values.len() != expected {
            return Err(InitError::Length {
                what: "correlation matrix",
                got: values.len(),
                expected,
            });
        }
        values
            .iter_mut()
            .filter(|v| v.is_nan())
            .for_each(|v| *v = 0.0);
        for i in 0..n_features {
            values[i * n_features + i] = 0.0;
        }
        Ok(Correlation { n_features, values })
    }

    /// Side of the matrix.
    pub fn n_features(&self) -> usize {
        self.n_features
    }

    /// Correlation of features `i` and `j`.
    pub fn get(&self, i: usize, j: usize) -> f32 {
        self.values[i * self.n_features + j]
    }

    /// Row-major values.
    pub fn as_slice(&self) -> &[f32] {
        &self.values
    }
}

/// CSTI mask (§6.5 steps 3–4, §9.21). Deterministic: no RNG.
///
/// The layer reads the correlation tiled `dim × dim` and cropped to its top-left `rows × cols`, so
/// entry `(a, j)` is `C[a mod n][j mod n]`; hidden layers therefore reuse the input-feature
/// correlation. With `n = floor(density · N)` (same floor tolerance as [`er_link_count`]) and `τ`
/// the `(n+1)`-th largest `|c|` of the layer, every entry with `|c| ≥ τ` becomes a link: at least
/// `n + 1`, more when values tie at `τ` (guaranteed by symmetry and tiling). When `n + 1 > N` the
/// layer is dense. When `τ = 0` every entry qualifies, so very high densities over many
/// zero correlations (constant pixels) give dense layers, as in the official code.
pub fn csti(
    rows: usize,
    cols: usize,
    density: f64,
    correlation: &Correlation,
    dim: usize,
) -> Result<Mask> {
    let n = check_shape(rows, cols)?;
    check_density(density)?;
    let side = dim.saturating_mul(correlation.n_features);
    if rows > side || cols > side {
        return Err(InitError::CstiShape {
            rows,
            cols,
            dim,
            n_features: correlation.n_features,
        });
    }
    let f = correlation.n_features;
    let magnitude: Vec<f32> = (0..n)
        .map(|p| correlation.get((p / cols) % f, (p % cols) % f).abs())
        .collect();
    let keep = floor_tolerant(density * n as f64) as usize;
    let bits = if keep >= n {
        vec![true; n]
    } else {
        let mut sorted = magnitude.clone();
        let (_, &mut tau, _) = sorted.select_nth_unstable_by(keep, |a, b| b.total_cmp(a));
        magnitude.iter().map(|&m| m >= tau).collect()
    };
    Ok(Mask::from_bools(rows, cols, bits)?)
}

impl WeightInit {
    /// The standard deviation of the initial weights of a `rows × cols` layer (§6.6).
    ///
    /// `density` is the `1 − S` that the SWI formula uses: normally the layer's target density
    /// (with EM_S, the initial one, `d + 0.05`). Kaiming and Xavier ignore it, but it is checked.
    /// SWI counts `eff_nnz = density · N`, clamped to at least 1 as \[NEW\] does.
    pub fn std(&self, rows: usize, cols: usize, density: f64) -> Result<f64> {
        let n = check_shape(rows, cols)?;
        check_density(density)?;
        let (fan_in, fan_out) = (cols as f64, rows as f64);
        let eff_nnz = (density * n as f64).max(1.0);
        Ok(match self {
            WeightInit::Kaiming => (2.0 / fan_in).sqrt(),
            WeightInit::Swi {
                variant: SwiVariant::FanIn,
            } => (2.0 / (eff_nnz / fan_out)).sqrt(),
            WeightInit::Swi {
                variant: SwiVariant::DstScheduler,
            } => (2.0 / (eff_nnz / fan_in)).sqrt(),
            WeightInit::Xavier => (2.0 / (fan_in + fan_out)).sqrt(),
            WeightInit::Normal { std } => {
                if !(std.is_finite() && *std > 0.0) {
                    return Err(InitError::OutOfRange {
                        name: "Normal weight-init std",
                        value: *std,
                        range: "(0, ∞)",
                    });
                }
                *std
            }
        })
    }
}

/// Dense row-major `rows × cols` initial weights (§6.6); see [`WeightInit::std`] for `density`.
///
/// The value at position `p = a·cols + j` depends only on `key` and `p`, so applying a mask to
/// these weights gives exactly [`mask_weights`] ("weights are drawn first, then multiplied by the
/// mask").
pub fn dense_weights(
    rows: usize,
    cols: usize,
    init: &WeightInit,
    density: f64,
    key: RngKey,
) -> Result<Vec<f32>> {
    let draw = WeightDraw::new(init, rows, cols, density, key)?;
    Ok((0..rows * cols).map(|p| draw.at(p)).collect())
}

/// Initial weights of the links of `mask`, in CSR order (row by row, columns increasing), i.e. the
/// `values` of [`crate::CsrPattern::from_mask`]; they equal [`dense_weights`] at those positions.
pub fn mask_weights(mask: &Mask, init: &WeightInit, density: f64, key: RngKey) -> Result<Vec<f32>> {
    let draw = WeightDraw::new(init, mask.rows(), mask.cols(), density, key)?;
    Ok(mask
        .as_bools()
        .iter()
        .enumerate()
        .filter(|(_, on)| **on)
        .map(|(p, _)| draw.at(p))
        .collect())
}

/// Erdős–Rényi-Kernel layer densities (RigL) for `shapes` of `(rows, cols)` at `global_density`.
///
/// Layer `l` gets `d_l = ε · (rows_l + cols_l)/(rows_l · cols_l)`, with ε chosen so that
/// `Σ d_l · N_l = global_density · Σ N_l`. Layers whose `d_l` would exceed 1 are made dense and ε
/// is re-solved over the others, until none exceeds 1 (ε only grows, so this ends after at most one
/// pass per layer).
pub fn erk_densities(shapes: &[(usize, usize)], global_density: f64) -> Result<Vec<f64>> {
    check_density(global_density)?;
    for &(rows, cols) in shapes {
        check_shape(rows, cols)?;
    }
    let entries = |&(rows, cols): &(usize, usize)| (rows * cols) as f64;
    let target = global_density * shapes.iter().map(entries).sum::<f64>();
    let mut dense = vec![false; shapes.len()];
    loop {
        let dense_entries: f64 = shapes
            .iter()
            .zip(&dense)
            .filter(|(_, d)| **d)
            .map(|(s, _)| entries(s))
            .sum();
        // Σ over sparse layers of raw_l · N_l, where raw_l · N_l = rows_l + cols_l.
        let kernel_sum: f64 = shapes
            .iter()
            .zip(&dense)
            .filter(|(_, d)| !**d)
            .map(|(&(rows, cols), _)| (rows + cols) as f64)
            .sum();
        let epsilon = if kernel_sum > 0.0 {
            (target - dense_entries) / kernel_sum
        } else {
            0.0
        };
        let densities: Vec<f64> = shapes
            .iter()
            .zip(&dense)
            .map(|(&(rows, cols), &is_dense)| {
                if is_dense {
                    1.0
                } else {
                    epsilon * (rows + cols) as f64 / (rows * cols) as f64
                }
            })
            .collect();
        let mut changed = false;
        for (is_dense, &d) in dense.iter_mut().zip(&densities) {
            if !*is_dense && d > 1.0 {
                *is_dense = true;
                changed = true;
            }
        }
        if !changed {
            return Ok(densities.into_iter().map(|d| d.clamp(0.0, 1.0)).collect());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Private helpers.

/// How BRF picks the columns of one node.
#[derive(Clone, Copy, Debug)]
enum BrfChoice {
    /// The nearest columns (`r = 0`).
    Band,
    /// Weighted sampling without replacement with weights `(1 + d)^(−alpha)`.
    Sample { alpha: f64 },
}

/// Draws weights position by position from one folded key.
#[derive(Clone, Copy, Debug)]
struct WeightDraw {
    folded: u32,
    shape: WeightShape,
}

/// The distribution of one weight.
#[derive(Clone, Copy, Debug)]
enum WeightShape {
    Normal { std: f32 },
    Uniform { bound: f32 },
}

impl WeightDraw {
    fn new(init: &WeightInit, rows: usize, cols: usize, density: f64, key: RngKey) -> Result<Self> {
        let std = init.std(rows, cols, density)?;
        let shape = match init {
            // Uniform on (−a, a) has standard deviation a / sqrt(3).
            WeightInit::Xavier => WeightShape::Uniform {
                bound: (std * 3f64.sqrt()) as f32,
            },
            WeightInit::Kaiming | WeightInit::Swi { .. } | WeightInit::Normal { .. } => {
                WeightShape::Normal { std: std as f32 }
            }
        };
        Ok(WeightDraw {
            folded: key.folded(),
            shape,
        })
    }

    /// The weight at dense position `p`, from draws `2p` and `2p + 1` (Box–Muller as
    /// [`Counter::normal`]); `p < MAX_ENTRIES` is guaranteed by the shape check.
    fn at(&self, p: usize) -> f32 {
        let u1 = to_unit(draw_u32(self.folded, 2 * p as u32));
        match self.shape {
            WeightShape::Uniform { bound } => bound * (2.0 * u1 - 1.0),
            WeightShape::Normal { std } => {
                let u2 = to_unit(draw_u32(self.folded, 2 * p as u32 + 1));
                std * (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
            }
        }
    }
}

/// Checks that a shape is non-empty and small enough; returns `rows · cols`.
fn check_shape(rows: usize, cols: usize) -> Result<usize> {
    if rows == 0 || cols == 0 {
        return Err(InitError::EmptyShape { rows, cols });
    }
    match rows.checked_mul(cols) {
        Some(n) if n <= MAX_ENTRIES => Ok(n),
        _ => Err(InitError::TooLarge { rows, cols }),
    }
}

/// Densities live in `(0, 1]`; NaN is rejected by the same test.
fn check_density(density: f64) -> Result<()> {
    if density > 0.0 && density <= 1.0 {
        Ok(())
    } else {
        Err(out_of_range("density", density, "(0, 1]"))
    }
}

/// Probabilities such as `r` and β live in `[0, 1]`.
fn check_probability(name: &'static str, value: f64) -> Result<()> {
    if (0.0..=1.0).contains(&value) {
        Ok(())
    } else {
        Err(out_of_range(name, value, "[0, 1]"))
    }
}

fn out_of_range(name: &'static str, value: f64, range: &'static str) -> InitError {
    InitError::OutOfRange { name, value, range }
}

/// `floor(x)` forgiving a relative rounding error of 1e-12 just below an integer.
fn floor_tolerant(x: f64) -> f64 {
    (x + 1e-12 * x.abs().max(1.0)).floor()
}

/// `(n_small, n_large)` of a layer (§6.2).
fn sides(rows: usize, cols: usize) -> (usize, usize) {
    (rows.min(cols), rows.max(cols))
}

/// Distance between columns `j` and `c` on a ring of `n` columns.
fn ring_distance(j: usize, c: usize, n: usize) -> usize {
    let d = j.abs_diff(c);
    d.min(n - d)
}

/// Turns a row-major `n_small × n_large` adjacency into the `rows × cols` mask: as-is when
/// `cols ≥ rows` (the small side is then the rows), transposed otherwise.
fn small_major_to_mask(rows: usize, cols: usize, bits: Vec<bool>) -> Result<Mask> {
    if cols >= rows {
        return Ok(Mask::from_bools(rows, cols, bits)?);
    }
    // Here the small side is the columns: bits is cols × rows.
    let transposed = (0..rows * cols)
        .map(|p| bits[(p % cols) * rows + p / cols])
        .collect();
    Ok(Mask::from_bools(rows, cols, transposed)?)
}

/// BRF degrees (see [`brf_degrees`]), drawn from `rng`.
fn draw_brf_degrees(
    n_small: usize,
    n_large: usize,
    density: f64,
    degrees: BrfDegrees,
    rng: &mut Counter,
) -> Result<Vec<usize>> {
    let mean = density * n_large as f64;
    match degrees {
        BrfDegrees::Fixed => Ok(draw_split_degrees(mean, n_small, n_large, rng)),
        BrfDegrees::Uniform => {
            let total = (mean * n_small as f64).round() as usize;
            if total < n_small {
                return Err(InitError::BrfTooFewLinks { total, n_small });
            }
            let mut out = vec![1usize; n_small];
            for _ in n_small..total {
                out[rng.below(n_small as u32) as usize] += 1;
            }
            out.iter_mut().for_each(|k| *k = (*k).min(n_large));
            Ok(out)
        }
    }
}

/// `nodes` degrees with mean `mean`: `round((mean − floor mean)·nodes)` randomly placed nodes get
/// `floor mean + 1`, the rest `floor mean`; each capped at `cap` (BRF fixed and BSW).
fn draw_split_degrees(mean: f64, nodes: usize, cap: usize, rng: &mut Counter) -> Vec<usize> {
    let base = floor_tolerant(mean);
    let extra = (((mean - base) * nodes as f64).round() as usize).min(nodes);
    let base = base as usize;
    let mut out: Vec<usize> = (0..nodes)
        .map(|i| if i < extra { base + 1 } else { base }.min(cap))
        .collect();
    shuffle(&mut out, rng);
    out
}

/// The `k` columns of a BRF node with centre `centre` (§6.2 step 4).
fn brf_columns(
    centre: usize,
    k: usize,
    n_large: usize,
    choice: BrfChoice,
    rng: &mut Counter,
) -> Vec<usize> {
    let mut columns: Vec<usize> = (0..n_large).collect();
    match choice {
        BrfChoice::Band => {
            columns.sort_unstable_by_key(|&j| (ring_distance(j, centre, n_large), j));
        }
        BrfChoice::Sample { alpha } => {
            // Efraimidis–Spirakis: the k smallest E_j / w_j with E_j ~ Exp(1) are a weighted sample
            // without replacement. In logs, ln E_j + α·ln(1 + d_j), which never overflows.
            let keys: Vec<f64> = columns
                .iter()
                .map(|&j| {
                    let exponential = -uniform_f64(rng).ln();
                    exponential.ln() + alpha * (1.0 + ring_distance(j, centre, n_large) as f64).ln()
                })
                .collect();
            if k < n_large {
                columns.select_nth_unstable_by(k, |&a, &b| {
                    keys[a].total_cmp(&keys[b]).then(a.cmp(&b))
                });
            }
        }
    }
    columns.truncate(k);
    columns
}

/// BSW rewiring (\[NEW\]): drop each link with probability β, then refill as many empty positions.
fn rewire(bits: &mut [bool], beta: f64, rng: &mut Counter) {
    let mut dropped = 0;
    for bit in bits.iter_mut().filter(|b| **b) {
        if f64::from(rng.next_uniform()) < beta {
            *bit = false;
            dropped += 1;
        }
    }
    flip_random(bits, false, dropped, rng);
}

/// Flips `k` distinct, uniformly chosen entries of `bits` that currently equal `from`.
fn flip_random(bits: &mut [bool], from: bool, k: usize, rng: &mut Counter) {
    let candidates = bits.iter().filter(|&&b| b == from).count();
    let k = k.min(candidates);
    if 2 * (candidates - k) >= bits.len() {
        // Candidates stay at least half of all entries, so each hit takes at most two draws.
        let mut left = k;
        while left > 0 {
            let p = rng.below(bits.len() as u32) as usize;
            if bits[p] == from {
                bits[p] = !from;
                left -= 1;
            }
        }
    } else {
        // Few candidates: a partial Fisher–Yates shuffle over their positions.
        let mut positions: Vec<u32> = (0..bits.len() as u32)
            .filter(|&p| bits[p as usize] == from)
            .collect();
        for i in 0..k {
            let j = i + rng.below((positions.len() - i) as u32) as usize;
            positions.swap(i, j);
            bits[positions[i] as usize] = !from;
        }
    }
}

/// Fisher–Yates shuffle.
fn shuffle<T>(items: &mut [T], rng: &mut Counter) {
    for i in (1..items.len()).rev() {
        let j = rng.below(i as u32 + 1) as usize;
        items.swap(i, j);
    }
}

/// A uniform in (0, 1) with 53 random bits, so that sampling keys practically never tie.
fn uniform_f64(rng: &mut Counter) -> f64 {
    let high = u64::from(rng.next_u32() >> 5);
    let low = u64::from(rng.next_u32() >> 6);
    (((high << 26) | low) as f64 + 0.5) / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Stream;

    fn key(seed: u32) -> RngKey {
        RngKey::new(seed, Stream::TopologyInit, 0, 0)
    }

    fn weight_key(seed: u32) -> RngKey {
        RngKey::new(seed, Stream::WeightInit, 0, 0)
    }

    fn mask_of(rows: &[&[u8]]) -> Mask {
        let cols = rows[0].len();
        let bits = rows
            .iter()
            .flat_map(|r| r.iter().map(|&b| b == 1))
            .collect();
        Mask::from_bools(rows.len(), cols, bits).unwrap()
    }

    fn transpose(mask: &Mask) -> Mask {
        let mut t = Mask::zeros(mask.cols(), mask.rows());
        for a in 0..mask.rows() {
            for j in 0..mask.cols() {
                t.set(j, a, mask.get(a, j));
            }
        }
        t
    }

    fn row_degrees(mask: &Mask) -> Vec<usize> {
        (0..mask.rows())
            .map(|a| (0..mask.cols()).filter(|&j| mask.get(a, j)).count())
            .collect()
    }

    fn col_degrees(mask: &Mask) -> Vec<usize> {
        row_degrees(&transpose(mask))
    }

    fn mean_and_std(values: &[f32]) -> (f64, f64) {
        let n = values.len() as f64;
        let mean = values.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
        let var = values
            .iter()
            .map(|&v| (f64::from(v) - mean).powi(2))
            .sum::<f64>()
            / n;
        (mean, var.sqrt())
    }

    // ---- §6.1 Erdős–Rényi ----

    #[test]
    fn er_has_exactly_n_minus_floor_sn_links() {
        // (rows, cols, density, expected N − floor(S·N)).
        let cases = [
            (4, 8, 0.375, 12),
            (10, 10, 0.3, 30),
            (10, 10, 0.34, 34), // (1 − 0.34)·100 is 65.99999999999999 in f64.
            (10, 10, 0.7, 70),
            (7, 13, 0.1, 10), // S·N = 81.9 → 91 − 81.
            (3, 5, 1.0, 15),
            (100, 100, 1e-9, 1), // S·N just below N.
            (50, 60, 0.9, 2700), // Dense side: drawn as zeros.
        ];
        for (rows, cols, density, expected) in cases {
            assert_eq!(
                er_link_count(rows, cols, density),
                Ok(expected),
                "{rows}x{cols} {density}"
            );
            let mask = erdos_renyi(rows, cols, density, key(3)).unwrap();
            assert_eq!((mask.rows(), mask.cols()), (rows, cols));
            assert_eq!(mask.nnz(), expected, "{rows}x{cols} {density}");
        }
    }

    #[test]
    fn er_is_deterministic_and_spread_out() {
        let a = erdos_renyi(64, 128, 0.1, key(1)).unwrap();
        assert_eq!(a, erdos_renyi(64, 128, 0.1, key(1)).unwrap());
        assert_ne!(a, erdos_renyi(64, 128, 0.1, key(2)).unwrap());
        // Uniform positions: every row gets about 12.8 links, none an extreme share.
        let degrees = row_degrees(&a);
        assert!(
            degrees.iter().all(|&k| (2..=30).contains(&k)),
            "{degrees:?}"
        );
        let left_half = (0..64).flat_map(|r| (0..64).map(move |c| (r, c)));
        let left = left_half.filter(|&(r, c)| a.get(r, c)).count() as f64;
        assert!((left / a.nnz() as f64 - 0.5).abs() < 0.05, "{left}");
    }

    // ---- §6.2 BRF ----

    #[test]
    fn brf_r0_fixed_matches_spec_vector_4x8() {
        let expected = mask_of(&[
            &[1, 1, 0, 0, 0, 0, 0, 1],
            &[0, 1, 1, 1, 0, 0, 0, 0],
            &[0, 0, 0, 1, 1, 1, 0, 0],
            &[0, 0, 0, 0, 0, 1, 1, 1],
        ]);
        let density = 1.0 - 0.625;
        let mask = brf(4, 8, density, 0.0, BrfDegrees::Fixed, key(0)).unwrap();
        assert_eq!(mask, expected);
        // The r = 0 band does not depend on the seed.
        assert_eq!(
            brf(4, 8, density, 0.0, BrfDegrees::Fixed, key(99)).unwrap(),
            expected
        );
        // For an 8×4 weight it is the transpose.
        let tall = brf(8, 4, density, 0.0, BrfDegrees::Fixed, key(0)).unwrap();
        assert_eq!(tall, transpose(&expected));
    }

    #[test]
    fn brf_r0_even_degree_ties_pick_the_lower_column() {
        // k = 2, centres 0, 2, 4, 6: the second link is at distance 1 on both sides, c − 1 and
        // c + 1 (ring), and goes to the lower index: 1 for centre 0 (not 7), c − 1 otherwise.
        let mask = brf(4, 8, 0.25, 0.0, BrfDegrees::Fixed, key(0)).unwrap();
        let expected = mask_of(&[
            &[1, 1, 0, 0, 0, 0, 0, 0],
            &[0, 1, 1, 0, 0, 0, 0, 0],
            &[0, 0, 0, 1, 1, 0, 0, 0],
            &[0, 0, 0, 0, 0, 1, 1, 0],
        ]);
        assert_eq!(mask, expected);
    }

    #[test]
    fn brf_probabilities_match_spec_vector() {
        let expected = [
            0.733501, 0.091688, 0.027167, 0.011461, 0.005868, 0.011461, 0.027167, 0.091688,
        ];
        let p = brf_probabilities(8, 0, 0.25).unwrap();
        assert_eq!(p.len(), 8);
        for (got, want) in p.iter().zip(expected) {
            assert!((got - want).abs() < 1e-6, "{p:?}");
        }
        // Moving the centre rotates the vector; r = 1 is uniform.
        let shifted = brf_probabilities(8, 3, 0.25).unwrap();
        for j in 0..8 {
            assert!((shifted[(j + 3) % 8] - p[j]).abs() < 1e-12);
        }
        let flat = brf_probabilities(8, 5, 1.0).unwrap();
        assert!(flat.iter().all(|&q| (q - 0.125).abs() < 1e-12));
        // Huge α must not underflow to a zero sum.
        let sharp = brf_probabilities(4096, 0, 1e-3).unwrap();
        assert!((sharp[0] - 1.0).abs() < 1e-12);
    }

    #[test]
    fn brf_single_link_sampling_follows_the_probabilities() {
        // 8×8 at density 1/8: every node has one link, centre i, so the ring offset of the link
        // is distributed as brf_probabilities(8, 0, r).
        let p = brf_probabilities(8, 0, 0.25).unwrap();
        let mut counts = [0usize; 8];
        let seeds = 2000;
        for seed in 0..seeds {
            let mask = brf(8, 8, 0.125, 0.25, BrfDegrees::Fixed, key(seed)).unwrap();
            for i in 0..8 {
                let cols: Vec<usize> = (0..8).filter(|&j| mask.get(i, j)).collect();
                assert_eq!(cols.len(), 1);
                counts[(cols[0] + 8 - i) % 8] += 1;
            }
        }
        let draws = f64::from(seeds * 8);
        for (offset, &c) in counts.iter().enumerate() {
            let sd = (p[offset] * (1.0 - p[offset]) / draws).sqrt();
            let freq = c as f64 / draws;
            assert!(
                (freq - p[offset]).abs() < 5.0 * sd + 1e-3,
                "{counts:?} vs {p:?}"
            );
        }
    }

    #[test]
    fn brf_links_concentrate_near_the_diagonal() {
        // Mean ring distance of links to their node's centre: uniform columns give n_large/4.
        // Density 13/128 gives every node k = 13 links.
        let mean_distance = |r: f64| {
            let mask = brf(32, 128, 13.0 / 128.0, r, BrfDegrees::Fixed, key(5)).unwrap();
            let mut sum = 0;
            for i in 0..32 {
                for j in (0..128).filter(|&j| mask.get(i, j)) {
                    sum += ring_distance(j, i * 4, 128);
                }
            }
            sum as f64 / mask.nnz() as f64
        };
        let near = mean_distance(0.25);
        let uniform = mean_distance(1.0);
        assert!(near < 12.0, "{near}");
        assert!((uniform - 32.0).abs() < 4.0, "{uniform}");
        // The band is the tightest: k = 13 links, distances 0, 1, 1, …, 6, 6.
        assert!((mean_distance(0.0) - 42.0 / 13.0).abs() < 1e-12);
    }

    #[test]
    fn brf_fixed_degrees_are_exact() {
        // k̄ = 0.3 · 37 = 11.1: one of the ten nodes gets 12, the others 11; total round(111.0).
        let degrees = brf_degrees(10, 37, 0.3, BrfDegrees::Fixed, key(4)).unwrap();
        let mut sorted = degrees.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, [11, 11, 11, 11, 11, 11, 11, 11, 11, 12]);
        for r in [0.0, 0.3, 1.0] {
            let mask = brf(10, 37, 0.3, r, BrfDegrees::Fixed, key(4)).unwrap();
            assert_eq!(row_degrees(&mask), degrees, "r = {r}");
            assert_eq!(mask.nnz(), 111);
            // Transposed layer: the controlled side is now the columns.
            let tall = brf(37, 10, 0.3, r, BrfDegrees::Fixed, key(4)).unwrap();
            assert_eq!(col_degrees(&tall), degrees, "r = {r}");
        }
    }

    #[test]
    fn brf_uniform_degrees_are_one_plus_multinomial() {
        // k̄ = 0.05 · 400 = 20, total = 2000 over 100 nodes; no node can reach the cap of 400.
        let degrees = brf_degrees(100, 400, 0.05, BrfDegrees::Uniform, key(8)).unwrap();
        assert_eq!(degrees.iter().sum::<usize>(), 2000);
        assert!(degrees.iter().all(|&k| k >= 1));
        // Multinomial spread (variance ≈ 19), unlike fixed degrees.
        assert!(degrees.iter().any(|&k| k != 20));
        assert!(
            degrees.iter().all(|&k| (3..=45).contains(&k)),
            "{degrees:?}"
        );
        let mask = brf(100, 400, 0.05, 0.25, BrfDegrees::Uniform, key(8)).unwrap();
        assert_eq!(row_degrees(&mask), degrees);
        assert_eq!(mask.nnz(), 2000);
        assert_ne!(
            degrees,
            brf_degrees(100, 400, 0.05, BrfDegrees::Uniform, key(9)).unwrap()
        );
    }

    #[test]
    fn brf_uniform_caps_degrees_at_n_large() {
        // 4 × 4 at density 0.9: total 14 over 4 nodes, so overflow beyond 4 is cut.
        for seed in 0..20 {
            let degrees = brf_degrees(4, 4, 0.9, BrfDegrees::Uniform, key(seed)).unwrap();
            assert!(degrees.iter().all(|&k| (1..=4).contains(&k)), "{degrees:?}");
            let mask = brf(4, 4, 0.9, 0.5, BrfDegrees::Uniform, key(seed)).unwrap();
            assert_eq!(mask.nnz(), degrees.iter().sum::<usize>());
        }
    }

    #[test]
    fn brf_is_deterministic() {
        let a = brf(48, 96, 0.2, 0.3, BrfDegrees::Uniform, key(1)).unwrap();
        assert_eq!(
            a,
            brf(48, 96, 0.2, 0.3, BrfDegrees::Uniform, key(1)).unwrap()
        );
        assert_ne!(
            a,
            brf(48, 96, 0.2, 0.3, BrfDegrees::Uniform, key(2)).unwrap()
        );
    }

    #[test]
    fn brf_rejects_invalid_parameters() {
        for r in [-0.1, 1.5, f64::NAN] {
            assert!(matches!(
                brf(4, 8, 0.5, r, BrfDegrees::Fixed, key(0)),
                Err(InitError::OutOfRange { name: "r", .. })
            ));
        }
        assert!(matches!(
            brf_probabilities(8, 0, 0.0),
            Err(InitError::OutOfRange { name: "r", .. })
        ));
        assert!(matches!(
            brf_probabilities(8, 8, 0.5),
            Err(InitError::OutOfRange { name: "centre", .. })
        ));
        // k̄ = 0.5 on 4 nodes: total 2 < 4.
        assert_eq!(
            brf(4, 100, 0.005, 0.5, BrfDegrees::Uniform, key(0)),
            Err(InitError::BrfTooFewLinks {
                total: 2,
                n_small: 4
            })
        );
        // Fixed degrees accept it (two nodes get a link).
        assert_eq!(
            brf(4, 100, 0.005, 0.5, BrfDegrees::Fixed, key(0))
                .unwrap()
                .nnz(),
            2
        );
    }

    // ---- §6.3 BSW ----

    #[test]
    fn bsw_beta0_matches_spec_vector_4x8() {
        let expected = mask_of(&[
            &[1, 1, 1, 1, 0, 0, 0, 0],
            &[0, 1, 1, 1, 1, 1, 0, 0],
            &[0, 0, 0, 0, 1, 1, 1, 1],
            &[1, 0, 0, 0, 0, 0, 1, 1],
        ]);
        let mask = bsw(4, 8, 0.5, 0.0, key(0)).unwrap();
        assert_eq!(mask, expected);
        assert_eq!(row_degrees(&mask), [4, 5, 4, 3]);
        assert_eq!(bsw(8, 4, 0.5, 0.0, key(7)).unwrap(), transpose(&expected));
    }

    #[test]
    fn bsw_fractional_lattice_degrees_are_exact() {
        // K = 0.3 · 20 = 6: integer. K = 0.33 · 20 = 6.6: round(0.6 · 50) = 30 nodes get 7.
        let degrees = bsw_degrees(20, 50, 0.33, key(2)).unwrap();
        assert_eq!(degrees.iter().filter(|&&k| k == 7).count(), 30);
        assert_eq!(degrees.iter().filter(|&&k| k == 6).count(), 20);
        let lattice = bsw(20, 50, 0.33, 0.0, key(2)).unwrap();
        assert_eq!(col_degrees(&lattice), degrees);
        assert_eq!(lattice.nnz(), 330);
    }

    #[test]
    fn bsw_rewiring_keeps_the_exact_link_count() {
        let lattice = bsw(40, 100, 0.1, 0.0, key(3)).unwrap();
        assert_eq!(lattice.nnz(), 400);
        for beta in [0.25, 0.5, 1.0] {
            let mask = bsw(40, 100, 0.1, beta, key(3)).unwrap();
            assert_eq!(mask.nnz(), 400, "beta = {beta}");
            let kept = (0..40 * 100)
                .filter(|&p| mask.as_bools()[p] && lattice.as_bools()[p])
                .count() as f64;
            // About (1 − β) of the lattice survives, plus refills that land back on it by chance.
            let expected = 400.0 * (1.0 - beta) + 400.0 * beta * 400.0 / 4000.0;
            assert!((kept - expected).abs() < 40.0, "beta = {beta}: kept {kept}");
        }
        // Dense side of the refill (more than half the positions filled).
        assert_eq!(bsw(10, 30, 0.8, 1.0, key(1)).unwrap().nnz(), 240);
    }

    #[test]
    fn bsw_is_deterministic_and_validates_beta() {
        let a = bsw(30, 60, 0.2, 0.5, key(1)).unwrap();
        assert_eq!(a, bsw(30, 60, 0.2, 0.5, key(1)).unwrap());
        assert_ne!(a, bsw(30, 60, 0.2, 0.5, key(2)).unwrap());
        for beta in [-0.01, 1.01, f64::NAN] {
            assert!(matches!(
                bsw(4, 8, 0.5, beta, key(0)),
                Err(InitError::OutOfRange { name: "beta", .. })
            ));
        }
    }

    // ---- Shared validation ----

    #[test]
    fn every_initialiser_rejects_bad_density_and_shape() {
        let corr = Correlation::from_matrix(4, vec![0.5; 16]).unwrap();
        let inits = [
            TopologyInit::ErdosRenyi,
            TopologyInit::Brf {
                r: 0.25,
                degrees: BrfDegrees::Fixed,
            },
            TopologyInit::Bsw { beta: 0.25 },
            TopologyInit::Csti { dim: 2 },
        ];
        for init in &inits {
            for density in [0.0, -0.5, 1.0001, f64::NAN, f64::INFINITY] {
                let got = init.mask(4, 8, density, key(0), Some(&corr));
                assert!(
                    matches!(
                        got,
                        Err(InitError::OutOfRange {
                            name: "density",
                            ..
                        })
                    ),
                    "{init:?} {density}: {got:?}"
                );
            }
            assert_eq!(
                init.mask(0, 8, 0.5, key(0), Some(&corr)),
                Err(InitError::EmptyShape { rows: 0, cols: 8 })
            );
            assert_eq!(
                init.mask(1 << 16, 1 << 16, 0.5, key(0), Some(&corr)),
                Err(InitError::TooLarge {
                    rows: 1 << 16,
                    cols: 1 << 16
                })
            );
            // Density 1 is dense for every method.
            assert_eq!(
                init.mask(4, 8, 1.0, key(0), Some(&corr)).unwrap().nnz(),
                32,
                "{init:?}"
            );
        }
        assert_eq!(
            TopologyInit::Csti { dim: 1 }.mask(4, 4, 0.5, key(0), None),
            Err(InitError::MissingCorrelation)
        );
    }

    // ---- §6.5 CSTI ----

    #[test]
    fn pearson_matches_hand_values_in_both_layouts() {
        // Features over four samples: f1 = 2·f0, f2 reversed, f3 constant, f4 = [1, 0, 1, 1].
        let features: [[f32; 4]; 5] = [
            [1.0, 2.0, 3.0, 4.0],
            [2.0, 4.0, 6.0, 8.0],
            [4.0, 3.0, 2.0, 1.0],
            [5.0, 5.0, 5.0, 5.0],
            [1.0, 0.0, 1.0, 1.0],
        ];
        let feature_major: Vec<f32> = features.iter().flatten().copied().collect();
        let sample_major: Vec<f32> = (0..4)
            .flat_map(|s| features.iter().map(move |f| f[s]))
            .collect();
        let c = pearson_correlation(&sample_major, 4, 5, SampleLayout::SampleMajor).unwrap();
        let c2 = pearson_correlation(&feature_major, 4, 5, SampleLayout::FeatureMajor).unwrap();
        assert_eq!(c, c2);
        let at = |i: usize, j: usize| c[i * 5 + j];
        let r04 = 0.5 / 3.75f32.sqrt();
        let expected = [
            [0.0, 1.0, -1.0, 0.0, r04],
            [1.0, 0.0, -1.0, 0.0, r04],
            [-1.0, -1.0, 0.0, 0.0, -r04],
            [0.0, 0.0, 0.0, 0.0, 0.0],
            [r04, r04, -r04, 0.0, 0.0],
        ];
        for (i, row) in expected.iter().enumerate() {
            for (j, &want) in row.iter().enumerate() {
                assert!(
                    (at(i, j) - want).abs() < 1e-6,
                    "({i},{j}): {} vs {want}",
                    at(i, j)
                );
            }
        }
        assert_eq!(
            pearson_correlation(&sample_major, 3, 5, SampleLayout::SampleMajor),
            Err(InitError::Length {
                what: "samples",
                got: 20,
                expected: 15
            })
        );
    }

    #[test]
    fn correlation_from_matrix_sanitises() {
        let corr = Correlation::from_matrix(2, vec![1.0, f32::NAN, 0.3, 1.0]).unwrap();
        assert_eq!(corr.as_slice(), [0.0, 0.0, 0.3, 0.0]);
        assert_eq!(corr.get(1, 0), 0.3);
        assert!(Correlation::from_matrix(2, vec![0.0; 3]).is_err());
    }

    fn three_feature_correlation() -> Correlation {
        // |c01| = 0.9, |c02| = 0.5, |c12| = 0.1.
        Correlation::from_matrix(3, vec![0.0, 0.9, -0.5, 0.9, 0.0, 0.1, -0.5, 0.1, 0.0]).unwrap()
    }

    #[test]
    fn csti_threshold_keeps_the_top_n_plus_one_and_ties() {
        let corr = three_feature_correlation();
        // n = floor(9/9) = 1: τ is the 2nd largest |c| = 0.9, both (0,1) and (1,0) reach it.
        let one = csti(3, 3, 1.0 / 9.0, &corr, 1).unwrap();
        assert_eq!(one, mask_of(&[&[0, 1, 0], &[1, 0, 0], &[0, 0, 0]]));
        // n = floor(2) = 2: τ = 3rd largest = 0.5, and its symmetric twin ties: 4 links.
        let two = csti(3, 3, 2.0 / 9.0, &corr, 1).unwrap();
        assert_eq!(two, mask_of(&[&[0, 1, 1], &[1, 0, 0], &[1, 0, 0]]));
        // n = floor(0.3 · 9) = 2 as well.
        assert_eq!(csti(3, 3, 0.3, &corr, 1).unwrap(), two);
        // Without ties it is exactly n + 1 links.
        let distinct =
            Correlation::from_matrix(3, vec![0.0, 0.9, 0.8, 0.7, 0.0, 0.6, 0.5, 0.4, 0.0]).unwrap();
        assert_eq!(csti(3, 3, 2.0 / 9.0, &distinct, 1).unwrap().nnz(), 3);
        // τ = 0: every entry qualifies (the diagonal is 0), so the layer is dense.
        assert_eq!(csti(3, 3, 6.0 / 9.0, &corr, 1).unwrap().nnz(), 9);
    }

    #[test]
    fn csti_tiles_and_crops_the_correlation() {
        let corr = three_feature_correlation();
        // 6×3 with dim 2 reads [C; C]: rows 3..6 repeat rows 0..3.
        let tall = csti(6, 3, 4.0 / 18.0, &corr, 2).unwrap();
        // n = 4, τ = 5th largest of {0.9 ×4, 0.5 ×4, 0.1 ×4, 0 ×6} = 0.5: 8 links.
        assert_eq!(
            tall,
            mask_of(&[
                &[0, 1, 1],
                &[1, 0, 0],
                &[1, 0, 0],
                &[0, 1, 1],
                &[1, 0, 0],
                &[1, 0, 0]
            ])
        );
        // 5×4 crop of the 6×6 tiling: column 3 repeats column 0.
        let crop = csti(5, 4, 0.2, &corr, 2).unwrap();
        for a in 0..5 {
            assert_eq!(crop.get(a, 3), crop.get(a, 0), "row {a}");
        }
        assert_eq!(
            csti(7, 3, 0.5, &corr, 2),
            Err(InitError::CstiShape {
                rows: 7,
                cols: 3,
                dim: 2,
                n_features: 3
            })
        );
        assert!(matches!(
            csti(3, 3, 0.5, &corr, 0),
            Err(InitError::CstiShape { .. })
        ));
    }

    #[test]
    fn csti_on_sampled_data_links_correlated_pixels() {
        // Four features: 0 and 1 move together, 2 and 3 are independent noise.
        let mut rng = Counter::new(key(11));
        let mut samples = Vec::new();
        for _ in 0..500 {
            let shared = rng.normal();
            samples.extend([
                shared,
                shared + 0.1 * rng.normal(),
                rng.normal(),
                rng.normal(),
            ]);
        }
        let corr = Correlation::from_samples(&samples, 500, 4, SampleLayout::SampleMajor).unwrap();
        assert!(corr.get(0, 1) > 0.95);
        assert!(corr.get(2, 3).abs() < 0.2);
        let mask = csti(4, 4, 1.0 / 16.0, &corr, 1).unwrap();
        assert_eq!(
            mask,
            mask_of(&[&[0, 1, 0, 0], &[1, 0, 0, 0], &[0, 0, 0, 0], &[0, 0, 0, 0]])
        );
    }

    // ---- §6.6 weights ----

    #[test]
    fn weight_std_formulas() {
        let kaiming = WeightInit::Kaiming.std(200, 800, 0.1).unwrap();
        assert!((kaiming - (2.0f64 / 800.0).sqrt()).abs() < 1e-15);
        let fan_in = WeightInit::Swi {
            variant: SwiVariant::FanIn,
        };
        let dst = WeightInit::Swi {
            variant: SwiVariant::DstScheduler,
        };
        // (1 − S)·in = 80 and (1 − S)·out = 20.
        assert!((fan_in.std(200, 800, 0.1).unwrap() - (2.0f64 / 80.0).sqrt()).abs() < 1e-12);
        assert!((dst.std(200, 800, 0.1).unwrap() - (2.0f64 / 20.0).sqrt()).abs() < 1e-12);
        let xavier = WeightInit::Xavier.std(200, 800, 0.1).unwrap();
        assert!((xavier - (2.0f64 / 1000.0).sqrt()).abs() < 1e-15);
        // eff_nnz = 0.2 is clamped to 1: σ = sqrt(2·out) or sqrt(2·in).
        assert!((fan_in.std(10, 20, 0.001).unwrap() - 20f64.sqrt()).abs() < 1e-12);
        assert!((dst.std(10, 20, 0.001).unwrap() - 40f64.sqrt()).abs() < 1e-12);
        assert!(matches!(
            dst.std(10, 20, 0.0),
            Err(InitError::OutOfRange {
                name: "density",
                ..
            })
        ));
    }

    #[test]
    fn dense_weights_have_the_documented_spread() {
        let (rows, cols) = (256, 512);
        let inits = [
            WeightInit::Kaiming,
            WeightInit::Swi {
                variant: SwiVariant::FanIn,
            },
            WeightInit::Swi {
                variant: SwiVariant::DstScheduler,
            },
            WeightInit::Xavier,
        ];
        for init in &inits {
            let want = init.std(rows, cols, 0.05).unwrap();
            let w = dense_weights(rows, cols, init, 0.05, weight_key(1)).unwrap();
            assert_eq!(w.len(), rows * cols);
            let (mean, std) = mean_and_std(&w);
            assert!((std / want - 1.0).abs() < 0.02, "{init:?}: {std} vs {want}");
            assert!(mean.abs() < 0.02 * want, "{init:?}: mean {mean}");
            assert_eq!(
                w,
                dense_weights(rows, cols, init, 0.05, weight_key(1)).unwrap()
            );
            assert_ne!(
                w,
                dense_weights(rows, cols, init, 0.05, weight_key(2)).unwrap()
            );
        }
        // Glorot uniform stays inside ±sqrt(6/(in + out)) and reaches near it.
        let bound = (6.0f64 / 768.0).sqrt() as f32;
        let w = dense_weights(rows, cols, &WeightInit::Xavier, 1.0, weight_key(1)).unwrap();
        let max = w.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        assert!(max <= bound && max > 0.99 * bound, "{max} vs {bound}");
        // Normal weights have normal tails: about 4.6% beyond two standard deviations.
        let w = dense_weights(rows, cols, &WeightInit::Kaiming, 1.0, weight_key(1)).unwrap();
        let sigma = (2.0f32 / 512.0).sqrt();
        let tails = w.iter().filter(|v| v.abs() > 2.0 * sigma).count() as f64 / w.len() as f64;
        assert!((tails - 0.0455).abs() < 0.003, "{tails}");
    }

    #[test]
    fn mask_weights_are_the_masked_dense_weights_in_csr_order() {
        let mask = erdos_renyi(64, 96, 0.1, key(4)).unwrap();
        let init = WeightInit::Swi {
            variant: SwiVariant::FanIn,
        };
        let dense = dense_weights(64, 96, &init, 0.1, weight_key(3)).unwrap();
        let values = mask_weights(&mask, &init, 0.1, weight_key(3)).unwrap();
        assert_eq!(values.len(), mask.nnz());
        let csr = crate::CsrPattern::from_mask(&mask);
        assert_eq!(csr.gather_dense(&dense).unwrap(), values);
        // Statistical spread of the link values alone.
        let big = erdos_renyi(400, 800, 0.1, key(5)).unwrap();
        let values = mask_weights(&big, &init, 0.1, weight_key(3)).unwrap();
        let want = init.std(400, 800, 0.1).unwrap();
        let (_, std) = mean_and_std(&values);
        assert!((std / want - 1.0).abs() < 0.03, "{std} vs {want}");
    }

    // ---- ERK ----

    #[test]
    fn erk_hand_example() {
        // eps = 1000.4 / 204 makes the 2×2 layer exceed 1; then eps = 996.4 / 200 for the other.
        let d = erk_densities(&[(2, 2), (100, 100)], 0.1).unwrap();
        assert_eq!(d[0], 1.0);
        assert!((d[1] - 996.4 / 200.0 * 0.02).abs() < 1e-12, "{d:?}");
    }

    #[test]
    fn erk_matches_the_global_budget() {
        let shapes = [(1568, 784), (1568, 1568), (1568, 1568), (10, 1568), (4, 3)];
        let total: f64 = shapes.iter().map(|&(r, c)| (r * c) as f64).sum();
        for global in [0.01, 0.05, 0.3, 0.9, 1.0] {
            let d = erk_densities(&shapes, global).unwrap();
            assert!(d.iter().all(|&x| x > 0.0 && x <= 1.0), "{global}: {d:?}");
            let used: f64 = shapes
                .iter()
                .zip(&d)
                .map(|(&(r, c), &x)| (r * c) as f64 * x)
                .sum();
            assert!(
                (used / (global * total) - 1.0).abs() < 1e-9,
                "{global}: {used}"
            );
            // The small output layer is denser than the big hidden layers (until both are dense).
            assert!(d[3] > d[1] || d[1] == 1.0, "{d:?}");
        }
        assert_eq!(erk_densities(&shapes, 1.0).unwrap(), [1.0; 5]);
        // Equal shapes share the global density.
        let same = erk_densities(&[(30, 40), (40, 30)], 0.2).unwrap();
        assert!(same.iter().all(|&x| (x - 0.2).abs() < 1e-12));
    }

    #[test]
    fn erk_rejects_invalid_parameters() {
        assert!(matches!(
            erk_densities(&[(4, 4)], 0.0),
            Err(InitError::OutOfRange {
                name: "density",
                ..
            })
        ));
        assert_eq!(
            erk_densities(&[(4, 4), (0, 3)], 0.5),
            Err(InitError::EmptyShape { rows: 0, cols: 3 })
        );
        assert_eq!(erk_densities(&[], 0.5), Ok(vec![]));
    }

    #[test]
    fn configs_round_trip_through_serde_shapes() {
        // No serde format crate here: check the derived traits by cloning and comparing.
        let init = TopologyInit::Brf {
            r: DEFAULT_BRF_R,
            degrees: BrfDegrees::default(),
        };
        assert_eq!(init.clone(), init);
        assert_eq!(TopologyInit::default(), TopologyInit::ErdosRenyi);
        assert_eq!(SwiVariant::default(), SwiVariant::FanIn);
        assert_eq!(WeightInit::default(), WeightInit::Xavier);
    }
}
