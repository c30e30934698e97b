//! Link removal (spec §2) and the regrowth count that follows it (spec §3.1).
//!
//! One removal, for a layer of `rows × cols` entries (`N = rows·cols`) whose mask has `n_ones` links:
//!
//! 1. [`removal_counts`]: `n_prune = floor(n_ones·ζ_t)` and `n_keep = n_ones − n_prune` (§2.1);
//! 2. [`RemovalScore::scores`]: a score per entry of the dense matrix (§2.2);
//! 3. [`hard_keep`] keeps the `n_keep` best entries, or [`SoftRemoval::keep_mask`] samples them with
//!    probability `∝ score^T` (§2.3); everything else is removed;
//! 4. after chain removal ([`crate::chain`]), [`RegrowCount::count`] says how many links to regrow.
//!
//! Scores are row-major `f32`, like the weights they come from; sums are accumulated in `f64` in a
//! fixed order so that the same weights always give the same scores.

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};

use crate::Mask;
use crate::rng::RngKey;
use crate::sample;
use crate::schedule::{ScheduleError, check_unit, ems_regrow_fraction};

/// ε in the relative-importance denominators (spec §2.2).
pub const RI_EPSILON: f64 = 1e-5;

/// The default weight of the gradient term in the MEST score (`--factor`, spec §2.2).
pub const MEST_FACTOR: f64 = 0.01;

/// The floor \[NEW\] puts under soft-removal scores (spec §2.3).
pub const SOFT_SCORE_FLOOR: f64 = 1e-12;

/// Invalid input to removal or to the regrowth count.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum RemovalError {
    /// A parameter (ζ, a sparsity, the temperature, the MEST factor) is out of range.
    #[error(transparent)]
    Parameter(#[from] ScheduleError),
    /// A dense buffer does not have one entry per mask entry.
    #[error("{what} has {got} entries, expected {expected}")]
    Length {
        /// Which buffer.
        what: &'static str,
        /// Its length.
        got: usize,
        /// `rows·cols` of the mask.
        expected: usize,
    },
    /// The MEST score needs the dense gradient.
    #[error("the MEST removal score needs the dense gradient")]
    MissingGradient,
    /// A score is NaN, infinite or negative.
    #[error("score[{index}] = {value} is not a finite non-negative number")]
    InvalidScore {
        /// Flat row-major index.
        index: usize,
        /// The score.
        value: f32,
    },
    /// More entries are to be kept than the matrix has.
    #[error("cannot keep {n_keep} of {entries} entries")]
    KeepTooMany {
        /// Requested.
        n_keep: usize,
        /// `rows·cols`.
        entries: usize,
    },
    /// [`ScoreFloor::Strict`] soft removal needs at least `needed` positive scores (\[OLD\] raises here).
    #[error("soft removal must keep {needed} links but only {positive} scores are positive")]
    TooFewPositive {
        /// Positive scores.
        positive: usize,
        /// `max(1, n_keep)`.
        needed: usize,
    },
    /// A link count exceeds the number of entries.
    #[error("{what} = {count} exceeds the {total} entries of the layer")]
    CountTooLarge {
        /// Which count.
        what: &'static str,
        /// Its value.
        count: usize,
        /// `N = rows·cols`.
        total: usize,
    },
    /// The layer has more entries than the 32-bit random-draw index can address.
    #[error("a layer of {0} entries is too large for 32-bit random indices")]
    TooLarge(usize),
}

/// How many links one removal takes out of a layer (spec §2.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemovalCounts {
    /// `n_ones`, the links before removal.
    pub n_ones: usize,
    /// `n_prune = floor(n_ones·ζ_t)`.
    pub n_prune: usize,
    /// `n_keep = n_ones − n_prune`.
    pub n_keep: usize,
}

/// `n_prune = floor(n_ones·ζ_t)` and `n_keep = n_ones − n_prune` (spec §2.1); ζ_t must be in `[0, 1]`.
///
/// The floor forgives f64 representation error (see [`guarded_floor`]).
pub fn removal_counts(n_ones: usize, zeta: f64) -> Result<RemovalCounts, RemovalError> {
    check_unit("zeta", zeta)?;
    let n_prune = guarded_floor(n_ones as f64 * zeta).min(n_ones);
    Ok(RemovalCounts {
        n_ones,
        n_prune,
        n_keep: n_ones - n_prune,
    })
}

/// `floor((1 − S)·N)`, the number of links a layer of `total` entries has at sparsity `S`
/// (spec §3.1, §5.1); `S` must be in `[0, 1]`.
pub fn target_links(sparsity: f64, total: usize) -> Result<usize, RemovalError> {
    check_unit("sparsity", sparsity)?;
    Ok(guarded_floor((1.0 - sparsity) * total as f64).min(total))
}

/// `floor(x)` for a non-negative product of a count and a fraction, except that a value within 1e-9
/// (relative) below an integer counts as that integer.
///
/// Why: `(1 − 0.9)·100` is `9.999…` in f64 and the Python code floors it to 9. The port gives the
/// 10 a reader expects; it differs from the official code by one link in such cases only.
pub fn guarded_floor(x: f64) -> usize {
    if !x.is_finite() || x <= 0.0 {
        return 0;
    }
    let nearest = x.round();
    if (x - nearest).abs() <= 1e-9 * nearest.max(1.0) {
        nearest as usize
    } else {
        x.floor() as usize
    }
}

/// How relative importance adds ε to its two denominators (spec §2.2).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum RiEpsilon {
    /// \[NEW\]: `Σ|W| + ε`, ε added once after the sum. The default.
    #[default]
    New,
    /// \[OLD\]: `Σ(|W| + ε) = Σ|W| + n·ε`, ε added to each of the `n` summed entries.
    Old,
}

/// The removal score of each entry (spec §2.2). Higher scores are kept.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum RemovalScore {
    /// `|W[a,j]|` (`weight_magnitude`).
    WeightMagnitude,
    /// Relative importance (`ri`): `|W[a,j]|/(Σ_a'|W[a',j]| + ε) + |W[a,j]|/(Σ_j'|W[a,j']| + ε)`,
    /// the weight normalised by its input column's total plus by its output row's total.
    RelativeImportance {
        /// Where ε goes.
        epsilon: RiEpsilon,
    },
    /// MEST: `|W| + factor·|G_dense|·M`.
    Mest {
        /// The gradient weight, [`MEST_FACTOR`] by default.
        factor: f64,
    },
}

impl RemovalScore {
    /// MEST with the default factor 0.01.
    pub fn mest() -> RemovalScore {
        RemovalScore::Mest {
            factor: MEST_FACTOR,
        }
    }

    /// Scores every entry of the dense `mask.rows() × mask.cols()` matrix, row-major.
    ///
    /// The weights are used as given. The live weights are re-masked after every optimizer step, so
    /// inactive entries score 0; passing an unmasked copy (the historical weights of spec §5.1) lets
    /// them compete.
    pub fn scores(&self, input: &ScoreInput<'_>) -> Result<Vec<f32>, RemovalError> {
        let expected = input.mask.rows() * input.mask.cols();
        check_length("weights", input.weights.len(), expected)?;
        match *self {
            RemovalScore::WeightMagnitude => Ok(input.weights.iter().map(|w| w.abs()).collect()),
            RemovalScore::RelativeImportance { epsilon } => Ok(relative_importance(
                input.weights,
                input.mask.cols(),
                epsilon,
            )),
            RemovalScore::Mest { factor } => {
                if !(factor.is_finite() && factor >= 0.0) {
                    return Err(ScheduleError::OutOfRange {
                        name: "MEST factor",
                        value: factor,
                        range: "[0, ∞)",
                    }
                    .into());
                }
                let grad = input.dense_grad.ok_or(RemovalError::MissingGradient)?;
                check_length("dense gradient", grad.len(), expected)?;
                Ok(mest(input.weights, grad, input.mask, factor))
            }
        }
    }
}

/// What a [`RemovalScore`] reads.
#[derive(Clone, Copy, Debug)]
pub struct ScoreInput<'a> {
    /// The layer's mask; it gives the shape and the `M` of the MEST score.
    pub mask: &'a Mask,
    /// Dense row-major weights, `rows·cols` entries.
    pub weights: &'a [f32],
    /// The dense (unmasked) gradient, needed by MEST only.
    pub dense_grad: Option<&'a [f32]>,
}

/// Keeps the `n_keep` highest-scoring entries of the whole matrix (hard removal, spec §2.2).
///
/// Ties are broken deterministically: among equal scores an entry that is a link in `mask` comes
/// first, so hard removal never switches a link on while removing an equal-scoring one; within the
/// same state the lower flat index wins. Scores must be finite and non-negative.
pub fn hard_keep(scores: &[f32], mask: &Mask, n_keep: usize) -> Result<Mask, RemovalError> {
    let entries = mask.rows() * mask.cols();
    check_length("scores", scores.len(), entries)?;
    check_keep(n_keep, entries)?;
    check_scores(scores)?;
    let links = mask.as_bools();
    let kept = top_k(entries, n_keep, |a, b| {
        scores[b]
            .total_cmp(&scores[a])
            .then(links[b].cmp(&links[a]))
            .then(a.cmp(&b))
    });
    mask_from_indices(mask.rows(), mask.cols(), &kept)
}

/// What soft removal does with zero (and invalid) scores (spec §2.3, §9.6).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ScoreFloor {
    /// \[NEW\]: `p ∝ max(score, 1e-12)^T`, so every entry has a (vanishing) chance; a NaN or infinite
    /// score makes the draw uniform. Never fails on scores. The default.
    #[default]
    Clamp,
    /// \[OLD\]: `p ∝ score^T`; zero scores are never kept, and fewer than `max(1, n_keep)` positive
    /// scores, or a NaN, infinite or negative score, is an error.
    Strict,
}

/// Soft removal (spec §2.3): keep `max(1, n_keep)` entries drawn without replacement with
/// probability `∝ score^T`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SoftRemoval {
    /// `T > 0`; larger is sharper, `T → ∞` is [`hard_keep`]. See
    /// [`crate::schedule::TemperatureSchedule`].
    pub temperature: f64,
    /// Zero-score handling.
    pub floor: ScoreFloor,
}

impl SoftRemoval {
    /// The normalised probabilities `p_i = s_i^T / Σ_j s_j^T` of one draw, in `f64`.
    ///
    /// `n_keep` is only used for the [`ScoreFloor::Strict`] check. Scores are divided by their
    /// maximum before the power, so large `T` does not overflow; under [`ScoreFloor::Clamp`] a
    /// floored score may still underflow to probability 0.
    pub fn keep_probabilities(
        &self,
        scores: &[f32],
        n_keep: usize,
    ) -> Result<Vec<f64>, RemovalError> {
        let log_weights = self.log_weights(scores, n_keep)?;
        let max = log_weights
            .iter()
            .copied()
            .fold(f64::NEG_INFINITY, f64::max);
        let weights: Vec<f64> = log_weights.iter().map(|&l| (l - max).exp()).collect();
        let total: f64 = weights.iter().sum();
        Ok(weights.iter().map(|w| w / total).collect())
    }

    /// Draws the entries to keep and returns them as the new mask (shape of `mask`).
    ///
    /// Sampling without replacement uses the Gumbel-top-k trick with the integer-exact keys of
    /// [`crate::sample`] (`p ∝ score^T`, `U_i` from `key` at index `i`): the `max(1, n_keep)`
    /// largest keys are kept (ties: lower index). This has the distribution of sequential
    /// multinomial draws (spec §10), depends only on `key` and the scores, and gives the same mask
    /// on the CPU and on any GPU.
    pub fn keep_mask(
        &self,
        scores: &[f32],
        mask: &Mask,
        n_keep: usize,
        key: RngKey,
    ) -> Result<Mask, RemovalError> {
        let entries = mask.rows() * mask.cols();
        check_length("scores", scores.len(), entries)?;
        check_keep(n_keep, entries)?;
        if u32::try_from(entries.saturating_sub(1)).is_err() {
            return Err(RemovalError::TooLarge(entries));
        }
        // Validates T and the floor rule (errors for [OLD]'s too few positive scores).
        let log_weights = self.log_weights(scores, n_keep)?;
        let uniform =
            log_weights.iter().all(|&l| l == 0.0) && scores.iter().any(|s| !s.is_finite());
        let folded = key.folded();
        let t_fixed = sample::temperature_fixed(self.temperature as f32);
        let keys: Vec<u32> = scores
            .iter()
            .enumerate()
            .map(|(i, &s)| {
                let w = match (uniform, self.floor) {
                    // [NEW]'s uniform fallback: every entry equally likely.
                    (true, _) => 1.0,
                    (false, ScoreFloor::Clamp) => s.max(SOFT_SCORE_FLOOR as f32),
                    (false, ScoreFloor::Strict) => s,
                };
                let t = if uniform { sample::T_SCALE } else { t_fixed };
                sample::key(w, t, folded, i as u32)
            })
            .collect();
        let draws = n_keep.max(1).min(entries);
        let kept: Vec<usize> = sample::top_k_by_key(&keys, draws)
            .into_iter()
            .map(|i| i as usize)
            .collect();
        mask_from_indices(mask.rows(), mask.cols(), &kept)
    }

    /// `T·ln(score)` per entry (an unnormalised log-probability), after the floor rule.
    fn log_weights(&self, scores: &[f32], n_keep: usize) -> Result<Vec<f64>, RemovalError> {
        let t = self.temperature;
        if !(t.is_finite() && t > 0.0) {
            return Err(ScheduleError::OutOfRange {
                name: "temperature T",
                value: t,
                range: "(0, ∞)",
            }
            .into());
        }
        check_keep(n_keep, scores.len())?;
        match self.floor {
            ScoreFloor::Clamp => {
                if scores.iter().any(|s| !s.is_finite()) {
                    // [NEW] falls back to a uniform permutation when the sum is not finite.
                    return Ok(vec![0.0; scores.len()]);
                }
                Ok(scores
                    .iter()
                    .map(|&s| t * f64::from(s).max(SOFT_SCORE_FLOOR).ln())
                    .collect())
            }
            ScoreFloor::Strict => {
                check_scores(scores)?;
                let positive = scores.iter().filter(|&&s| s > 0.0).count();
                let needed = n_keep.max(1);
                if positive < needed {
                    return Err(RemovalError::TooFewPositive { positive, needed });
                }
                // ln 0 = −∞: zero scores get probability 0 and the lowest keys.
                Ok(scores.iter().map(|&s| t * f64::from(s).ln()).collect())
            }
        }
    }
}

/// How many links to regrow after removal and chain removal (spec §3.1).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum RegrowCount {
    /// \[OLD\]: `n_ones_before − nnz_after`, what removal and chain removal took out, so the density
    /// stays constant. Without chain removal this is `n_prune`.
    ReplaceRemoved,
    /// \[NEW\]: `floor((1 − S_l)·N) − nnz_after`, the refill to the layer's scheduled density; 0 when
    /// the layer is already there.
    RefillToTarget,
    /// EM_S: `5%·N` while `t ≤ 0.6·T_end`, then `2.5%·N` while `t < T_end − ΔT`, then 0 (§5.4).
    EmS {
        /// `T_end`.
        t_end: u64,
        /// ΔT.
        interval: u64,
    },
}

/// What [`RegrowCount::count`] reads.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct RegrowInput {
    /// Links before removal.
    pub n_ones_before: usize,
    /// Links after removal and chain removal.
    pub nnz_after: usize,
    /// `N = rows·cols`.
    pub total: usize,
    /// The layer's scheduled sparsity `S_l` (read by [`RegrowCount::RefillToTarget`]).
    pub target_sparsity: f64,
    /// The optimizer step `t` (read by [`RegrowCount::EmS`]).
    pub step: u64,
}

impl RegrowCount {
    /// The number of links to regrow, capped by the number of non-links `N − nnz_after`.
    /// 0 means the layer skips regrowth (the \[OLD\] fix of 2025-07-09, spec §9.29).
    pub fn count(&self, input: &RegrowInput) -> Result<usize, RemovalError> {
        check_unit("target sparsity S_l", input.target_sparsity)?;
        for (what, count) in [
            ("n_ones_before", input.n_ones_before),
            ("nnz_after", input.nnz_after),
        ] {
            if count > input.total {
                return Err(RemovalError::CountTooLarge {
                    what,
                    count,
                    total: input.total,
                });
            }
        }
        let wanted = match *self {
            RegrowCount::ReplaceRemoved => input.n_ones_before.saturating_sub(input.nnz_after),
            RegrowCount::RefillToTarget => {
                target_links(input.target_sparsity, input.total)?.saturating_sub(input.nnz_after)
            }
            RegrowCount::EmS { t_end, interval } => {
                let fraction = ems_regrow_fraction(input.step, t_end, interval);
                guarded_floor(fraction * input.total as f64)
            }
        };
        Ok(wanted.min(input.total - input.nnz_after))
    }
}

/// Relative importance on a dense row-major matrix with `cols` columns (spec §2.2).
fn relative_importance(weights: &[f32], cols: usize, epsilon: RiEpsilon) -> Vec<f32> {
    if cols == 0 {
        return Vec::new();
    }
    let rows = weights.len() / cols;
    let mut row_sums = vec![0.0f64; rows];
    let mut col_sums = vec![0.0f64; cols];
    for (i, w) in weights.iter().enumerate() {
        let w = f64::from(w.abs());
        row_sums[i / cols] += w;
        col_sums[i % cols] += w;
    }
    let (row_eps, col_eps) = match epsilon {
        RiEpsilon::New => (RI_EPSILON, RI_EPSILON),
        // Each row sums `cols` entries, each column `rows` entries, each with its own ε.
        RiEpsilon::Old => (cols as f64 * RI_EPSILON, rows as f64 * RI_EPSILON),
    };
    weights
        .iter()
        .enumerate()
        .map(|(i, w)| {
            let w = f64::from(w.abs());
            (w / (col_sums[i % cols] + col_eps) + w / (row_sums[i / cols] + row_eps)) as f32
        })
        .collect()
}

/// `|W| + factor·|G|·M`.
fn mest(weights: &[f32], grad: &[f32], mask: &Mask, factor: f64) -> Vec<f32> {
    weights
        .iter()
        .zip(grad)
        .zip(mask.as_bools())
        .map(|((w, g), &on)| {
            let gradient_term = if on { factor * f64::from(g.abs()) } else { 0.0 };
            (f64::from(w.abs()) + gradient_term) as f32
        })
        .collect()
}

/// The `k` best of `0..len` under `better` (a strict total order, best first), in that order.
fn top_k(len: usize, k: usize, better: impl Fn(usize, usize) -> Ordering) -> Vec<usize> {
    if k == 0 {
        return Vec::new();
    }
    let mut indices: Vec<usize> = (0..len).collect();
    if k < len {
        indices.select_nth_unstable_by(k - 1, |&a, &b| better(a, b));
        indices.truncate(k);
    }
    indices.sort_unstable_by(|&a, &b| better(a, b));
    indices
}

fn mask_from_indices(rows: usize, cols: usize, kept: &[usize]) -> Result<Mask, RemovalError> {
    let mut bits = vec![false; rows * cols];
    for &i in kept {
        bits[i] = true;
    }
    Mask::from_bools(rows, cols, bits).map_err(|_| RemovalError::Length {
        what: "mask",
        got: kept.len(),
        expected: rows * cols,
    })
}

fn check_length(what: &'static str, got: usize, expected: usize) -> Result<(), RemovalError> {
    if got == expected {
        Ok(())
    } else {
        Err(RemovalError::Length {
            what,
            got,
            expected,
        })
    }
}

fn check_keep(n_keep: usize, entries: usize) -> Result<(), RemovalError> {
    if n_keep <= entries {
        Ok(())
    } else {
        Err(RemovalError::KeepTooMany { n_keep, entries })
    }
}

fn check_scores(scores: &[f32]) -> Result<(), RemovalError> {
    match scores.iter().position(|s| !(s.is_finite() && *s >= 0.0)) {
        Some(index) => Err(RemovalError::InvalidScore {
            index,
            value: scores[index],
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::{Counter, Stream};

    /// Spec §2.3 test matrix, 2 × 3.
    const W: [f32; 6] = [0.5, -0.25, 0.0, 0.1, 0.4, -0.2];

    fn spec_mask() -> Mask {
        Mask::from_bools(2, 3, W.iter().map(|&w| w != 0.0).collect()).unwrap()
    }

    fn assert_close<T: Into<f64> + Copy>(got: &[T], want: &[f64], tol: f64) {
        assert_eq!(got.len(), want.len());
        for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
            let g: f64 = g.into();
            assert!((g - w).abs() <= tol, "entry {i}: got {g}, want {w}");
        }
    }

    fn spec_scores(score: RemovalScore) -> Vec<f32> {
        let mask = spec_mask();
        let input = ScoreInput {
            mask: &mask,
            weights: &W,
            dense_grad: None,
        };
        score.scores(&input).unwrap()
    }

    #[test]
    fn relative_importance_matches_spec_vectors() {
        let new = spec_scores(RemovalScore::RelativeImportance {
            epsilon: RiEpsilon::New,
        });
        let want_new = [1.499977, 0.717938, 0.0, 0.309519, 1.186796, 1.285660];
        assert_close(&new, &want_new, 1e-6);
        let old = spec_scores(RemovalScore::RelativeImportance {
            epsilon: RiEpsilon::Old,
        });
        let want_old = [1.499946, 0.717924, 0.0, 0.309512, 1.186770, 1.285602];
        assert_close(&old, &want_old, 1e-6);
    }

    #[test]
    fn weight_magnitude_keep_probabilities_match_spec() {
        let scores = spec_scores(RemovalScore::WeightMagnitude);
        assert_eq!(scores, [0.5, 0.25, 0.0, 0.1, 0.4, 0.2]);
        let strict = |temperature| SoftRemoval {
            temperature,
            floor: ScoreFloor::Strict,
        };
        let t1 = strict(1.0).keep_probabilities(&scores, 3).unwrap();
        let want_t1 = [0.344828, 0.172414, 0.0, 0.068966, 0.275862, 0.137931];
        assert_close(&t1, &want_t1, 1e-6);
        let t2 = strict(2.0).keep_probabilities(&scores, 3).unwrap();
        let want_t2 = [0.478469, 0.119617, 0.0, 0.019139, 0.306220, 0.076555];
        assert_close(&t2, &want_t2, 1e-6);
        assert_eq!(t1[2], 0.0);
    }

    #[test]
    fn clamp_gives_zero_scores_a_vanishing_chance() {
        let scores = spec_scores(RemovalScore::WeightMagnitude);
        let clamp = SoftRemoval {
            temperature: 1.0,
            floor: ScoreFloor::Clamp,
        };
        let p = clamp.keep_probabilities(&scores, 3).unwrap();
        assert!(
            p[2] > 0.0 && (p[2] - 1e-12 / 1.45).abs() < 1e-18,
            "{}",
            p[2]
        );
        assert_close(
            &p,
            &[0.344828, 0.172414, 0.0, 0.068966, 0.275862, 0.137931],
            1e-6,
        );
        // Non-finite scores fall back to uniform.
        let uniform = clamp
            .keep_probabilities(&[1.0, f32::NAN, 0.0, 2.0], 2)
            .unwrap();
        assert_close(&uniform, &[0.25; 4], 1e-15);
    }

    #[test]
    fn strict_rejects_too_few_positive_scores() {
        let scores = spec_scores(RemovalScore::WeightMagnitude);
        let strict = SoftRemoval {
            temperature: 2.0,
            floor: ScoreFloor::Strict,
        };
        assert!(strict.keep_probabilities(&scores, 5).is_ok());
        assert_eq!(
            strict.keep_probabilities(&scores, 6),
            Err(RemovalError::TooFewPositive {
                positive: 5,
                needed: 6
            })
        );
        assert_eq!(
            strict.keep_probabilities(&[0.0, 0.0], 0),
            Err(RemovalError::TooFewPositive {
                positive: 0,
                needed: 1
            })
        );
        assert!(matches!(
            strict.keep_probabilities(&[1.0, -1.0], 1),
            Err(RemovalError::InvalidScore { index: 1, .. })
        ));
        let cold = SoftRemoval {
            temperature: 0.0,
            floor: ScoreFloor::Strict,
        };
        assert!(cold.keep_probabilities(&scores, 1).is_err());
    }

    #[test]
    fn mest_adds_masked_gradient() {
        let mask = spec_mask();
        let grad = [1.0, -2.0, 3.0, 0.0, 1.0, -1.0];
        let input = ScoreInput {
            mask: &mask,
            weights: &W,
            dense_grad: Some(&grad),
        };
        let scores = RemovalScore::mest().scores(&input).unwrap();
        assert_close(&scores, &[0.51, 0.27, 0.0, 0.1, 0.41, 0.21], 1e-7);
        let no_grad = ScoreInput {
            dense_grad: None,
            ..input
        };
        assert_eq!(
            RemovalScore::mest().scores(&no_grad),
            Err(RemovalError::MissingGradient)
        );
        let short = ScoreInput {
            weights: &W[..5],
            ..input
        };
        assert!(matches!(
            RemovalScore::WeightMagnitude.scores(&short),
            Err(RemovalError::Length { got: 5, .. })
        ));
    }

    #[test]
    fn removal_counts_floor_the_product() {
        let counts = removal_counts(100, 0.3).unwrap();
        assert_eq!((counts.n_prune, counts.n_keep), (30, 70));
        let counts = removal_counts(7, 0.5).unwrap();
        assert_eq!((counts.n_prune, counts.n_keep), (3, 4));
        // 0.29·100 is 28.999… in f64; the guard keeps it at 29.
        assert_eq!(removal_counts(100, 0.29).unwrap().n_prune, 29);
        assert_eq!(removal_counts(0, 0.3).unwrap().n_keep, 0);
        assert_eq!(removal_counts(9, 1.0).unwrap().n_keep, 0);
        assert!(removal_counts(9, 1.2).is_err());
        assert!(removal_counts(9, f64::NAN).is_err());
        assert_eq!(target_links(0.9, 100).unwrap(), 10);
        assert_eq!(target_links(0.99, 1568 * 784).unwrap(), 12293);
        assert_eq!(guarded_floor(2.5), 2);
        assert_eq!(guarded_floor(-3.0), 0);
    }

    #[test]
    fn hard_keep_keeps_the_top_scores() {
        let scores = spec_scores(RemovalScore::WeightMagnitude);
        let mask = spec_mask();
        let kept = hard_keep(&scores, &mask, 2).unwrap();
        assert_eq!(kept.as_bools(), &[true, false, false, false, true, false]);
        let kept = hard_keep(&scores, &mask, 3).unwrap();
        assert_eq!(kept.as_bools(), &[true, true, false, false, true, false]);
        assert_eq!(hard_keep(&scores, &mask, 0).unwrap().nnz(), 0);
        assert!(hard_keep(&scores, &mask, 7).is_err());
        assert!(hard_keep(&[0.0, f32::NAN, 0.0, 0.0, 0.0, 0.0], &mask, 1).is_err());
    }

    #[test]
    fn hard_keep_breaks_ties_by_state_then_index() {
        // All scores equal: links first, then lower flat index.
        let mask = Mask::from_bools(2, 3, vec![false, true, false, false, true, true]).unwrap();
        let scores = [1.0; 6];
        let kept = hard_keep(&scores, &mask, 2).unwrap();
        assert_eq!(kept.as_bools(), &[false, true, false, false, true, false]);
        let kept = hard_keep(&scores, &mask, 4).unwrap();
        assert_eq!(kept.as_bools(), &[true, true, false, false, true, true]);
        let empty = Mask::zeros(2, 3);
        let kept = hard_keep(&scores, &empty, 2).unwrap();
        assert_eq!(kept.as_bools(), &[true, true, false, false, false, false]);
    }

    /// A random layer: mask of given density and masked normal weights.
    fn random_layer(rows: usize, cols: usize, density: f32, layer: u32) -> (Mask, Vec<f32>) {
        let mut rng = Counter::new(RngKey::new(7, Stream::Synthetic, 0, layer));
        let bits: Vec<bool> = (0..rows * cols)
            .map(|_| rng.next_uniform() < density)
            .collect();
        let weights = bits
            .iter()
            .map(|&on| if on { rng.normal() } else { 0.0 })
            .collect();
        (Mask::from_bools(rows, cols, bits).unwrap(), weights)
    }

    #[test]
    fn removal_keeps_exactly_n_keep_links_of_the_old_mask() {
        for layer in 0..8 {
            let (mask, weights) = random_layer(17, 23, 0.3, layer);
            let counts = removal_counts(mask.nnz(), 0.3).unwrap();
            let input = ScoreInput {
                mask: &mask,
                weights: &weights,
                dense_grad: None,
            };
            let scores = RemovalScore::RelativeImportance {
                epsilon: RiEpsilon::New,
            }
            .scores(&input)
            .unwrap();
            let hard = hard_keep(&scores, &mask, counts.n_keep).unwrap();
            let soft = SoftRemoval {
                temperature: 3.0,
                floor: ScoreFloor::Strict,
            }
            .keep_mask(
                &scores,
                &mask,
                counts.n_keep,
                RngKey::new(1, Stream::Removal, 5, layer),
            )
            .unwrap();
            for kept in [&hard, &soft] {
                assert_eq!(kept.nnz(), counts.n_keep);
                let subset = kept
                    .as_bools()
                    .iter()
                    .zip(mask.as_bools())
                    .all(|(&k, &m)| !k || m);
                assert!(subset, "layer {layer} switched a link on");
            }
            // Hard removal keeps the best: no removed link outscores a kept one.
            let kept_min = (0..scores.len())
                .filter(|&i| hard.as_bools()[i])
                .map(|i| scores[i])
                .fold(f32::INFINITY, f32::min);
            let removed_max = (0..scores.len())
                .filter(|&i| mask.as_bools()[i] && !hard.as_bools()[i])
                .map(|i| scores[i])
                .fold(0.0, f32::max);
            assert!(kept_min >= removed_max);
        }
    }

    #[test]
    fn soft_keep_is_deterministic_and_follows_the_scores() {
        let (mask, weights) = random_layer(8, 8, 1.0, 3);
        let scores: Vec<f32> = weights.iter().map(|w| w.abs()).collect();
        let soft = SoftRemoval {
            temperature: 2.0,
            floor: ScoreFloor::Clamp,
        };
        let key = RngKey::new(11, Stream::Removal, 100, 0);
        let a = soft.keep_mask(&scores, &mask, 20, key).unwrap();
        let b = soft.keep_mask(&scores, &mask, 20, key).unwrap();
        assert_eq!(a, b);
        let other = soft.keep_mask(&scores, &mask, 20, RngKey::new(12, Stream::Removal, 100, 0));
        assert_ne!(a, other.unwrap());
        // Over many keys the highest-score entry is kept far more often than the lowest.
        let best = (0..64)
            .max_by(|&i, &j| scores[i].total_cmp(&scores[j]))
            .unwrap();
        let worst = (0..64)
            .min_by(|&i, &j| scores[i].total_cmp(&scores[j]))
            .unwrap();
        let (mut best_kept, mut worst_kept) = (0, 0);
        for step in 0..200 {
            let key = RngKey::new(11, Stream::Removal, step, 0);
            let kept = soft.keep_mask(&scores, &mask, 20, key).unwrap();
            best_kept += usize::from(kept.as_bools()[best]);
            worst_kept += usize::from(kept.as_bools()[worst]);
        }
        assert!(
            best_kept > 150 && worst_kept < 20,
            "{best_kept} vs {worst_kept}"
        );
        // n_keep = 0 still keeps one entry.
        assert_eq!(soft.keep_mask(&scores, &mask, 0, key).unwrap().nnz(), 1);
    }

    #[test]
    fn regrow_counts() {
        let input = RegrowInput {
            n_ones_before: 100,
            nnz_after: 60,
            total: 1000,
            target_sparsity: 0.85,
            step: 700,
        };
        assert_eq!(RegrowCount::ReplaceRemoved.count(&input).unwrap(), 40);
        assert_eq!(RegrowCount::RefillToTarget.count(&input).unwrap(), 90);
        let ems = RegrowCount::EmS {
            t_end: 1000,
            interval: 100,
        };
        assert_eq!(ems.count(&input).unwrap(), 25);
        assert_eq!(ems.count(&RegrowInput { step: 600, ..input }).unwrap(), 50);
        assert_eq!(ems.count(&RegrowInput { step: 900, ..input }).unwrap(), 0);
        // Already at or above target: skip.
        let dense = RegrowInput {
            target_sparsity: 0.95,
            ..input
        };
        assert_eq!(RegrowCount::RefillToTarget.count(&dense).unwrap(), 0);
        // Capped by the non-links.
        let nearly_full = RegrowInput {
            n_ones_before: 10,
            nnz_after: 8,
            total: 10,
            target_sparsity: 0.0,
            step: 100,
        };
        assert_eq!(RegrowCount::RefillToTarget.count(&nearly_full).unwrap(), 2);
        assert_eq!(ems.count(&nearly_full).unwrap(), 0);
        let ems_small = RegrowInput {
            total: 100,
            nnz_after: 99,
            n_ones_before: 99,
            ..input
        };
        assert_eq!(ems.count(&ems_small).unwrap(), 1);
        let bad = RegrowInput {
            nnz_after: 1001,
            ..input
        };
        assert!(RegrowCount::ReplaceRemoved.count(&bad).is_err());
        let bad = RegrowInput {
            target_sparsity: -0.1,
            ..input
        };
        assert!(RegrowCount::RefillToTarget.count(&bad).is_err());
    }
}
