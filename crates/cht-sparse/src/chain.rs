//! Chain removal (network percolation), node compression and topology statistics (spec §4).
//!
//! After link removal a hidden neuron can be left with inputs but no outputs, or the reverse. Its
//! remaining links then carry nothing useful, so chain removal takes them out too, before regrowth
//! (spec §4.1, §4.2). What survives training is measured by ANP, the active neuron
//! post-percolation rate (§4.3), and exploration by the ITOP rate, the share of all possible links
//! that were ever active.
//!
//! Masks are `out × in`: rows are a layer's output neurons, columns its input neurons, so layer `l`'s
//! rows are layer `l + 1`'s columns.

use serde::{Deserialize, Serialize};

use crate::Mask;

/// Masks whose shapes do not fit together, or a tracker that does not match its layer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    /// In a sequential chain, layer `layer` produces `produced` neurons but layer `layer + 1`
    /// consumes `consumed`.
    #[error("layer {layer} has {produced} outputs but layer {} has {consumed} inputs", layer + 1)]
    ChainShape {
        /// Index of the producing layer.
        layer: usize,
        /// Its rows.
        produced: usize,
        /// The next layer's columns.
        consumed: usize,
    },
    /// Two masks of a pair do not share the required dimension.
    #[error("{what}: shapes {a:?} and {b:?} do not fit")]
    PairShape {
        /// Which pairing rule.
        what: &'static str,
        /// `(rows, cols)` of the first mask.
        a: (usize, usize),
        /// `(rows, cols)` of the second mask.
        b: (usize, usize),
    },
    /// A mask observed by an [`ItopTracker`] has another shape than the tracker.
    #[error("the ITOP tracker is {expected:?} but the mask is {got:?}")]
    TrackerShape {
        /// The tracker's `(rows, cols)`.
        expected: (usize, usize),
        /// The mask's `(rows, cols)`.
        got: (usize, usize),
    },
    /// A deserialised [`ItopTracker`] is inconsistent.
    #[error("corrupt ITOP tracker: {0}")]
    CorruptTracker(&'static str),
}

/// Sequential chain removal for an MLP's sparse layers in forward order (spec §4.1).
///
/// 1. Backward sweep, `l = L−2 … 0`: a hidden neuron `h` with no outgoing link (column `h` of
///    `masks[l+1]` empty) loses its incoming links (row `h` of `masks[l]`).
/// 2. Forward sweep, `l = 1 … L−1`: a hidden neuron with no incoming link (row `h` of `masks[l−1]`
///    empty) loses its outgoing links (column `h` of `masks[l]`).
///
/// One sweep each way reaches the fixed point: afterwards every hidden neuron has incoming links
/// exactly when it has outgoing ones. The network's inputs and outputs are never removed as neurons.
/// Returns the number of links removed.
pub fn chain_removal_mlp(masks: &mut [Mask]) -> Result<usize, ChainError> {
    for (layer, pair) in masks.windows(2).enumerate() {
        if pair[0].rows() != pair[1].cols() {
            return Err(ChainError::ChainShape {
                layer,
                produced: pair[0].rows(),
                consumed: pair[1].cols(),
            });
        }
    }
    let mut removed = 0;
    for l in (0..masks.len().saturating_sub(1)).rev() {
        let has_output = cols_with_links(&masks[l + 1]);
        removed += clear_rows(&mut masks[l], &has_output);
    }
    for l in 1..masks.len() {
        let has_input = rows_with_links(&masks[l - 1]);
        removed += clear_cols(&mut masks[l], &has_input);
    }
    Ok(removed)
}

/// Pairwise chain for a producer whose outputs feed a consumer's inputs (spec §4.2), e.g.
/// `(v_proj, o_proj)` or `(w_1, w_2)`.
///
/// First the rows of `producer` whose column in `consumer` is empty are cleared, then the columns of
/// `consumer` whose (updated) row in `producer` is empty. Returns the number of links removed.
pub fn chain(producer: &mut Mask, consumer: &mut Mask) -> Result<usize, ChainError> {
    if producer.rows() != consumer.cols() {
        return Err(ChainError::PairShape {
            what: "chain (producer rows = consumer cols)",
            a: (producer.rows(), producer.cols()),
            b: (consumer.rows(), consumer.cols()),
        });
    }
    let consumed = cols_with_links(consumer);
    let mut removed = clear_rows(producer, &consumed);
    let produced = rows_with_links(producer);
    removed += clear_cols(consumer, &produced);
    Ok(removed)
}

/// Pairwise chain for two projections whose outputs are combined elementwise or by a dot product
/// (spec §4.2), e.g. `(k_proj, q_proj)` or `(gate_proj, up_proj)`: output `i` survives only if both
/// produce it.
///
/// First the rows of `a` whose row in `b` is empty are cleared, then the rows of `b` whose
/// (updated) row in `a` is empty. Returns the number of links removed.
pub fn qk_chain(a: &mut Mask, b: &mut Mask) -> Result<usize, ChainError> {
    if a.rows() != b.rows() {
        return Err(ChainError::PairShape {
            what: "qk_chain (equal rows)",
            a: (a.rows(), a.cols()),
            b: (b.rows(), b.cols()),
        });
    }
    let b_rows = rows_with_links(b);
    let mut removed = clear_rows(a, &b_rows);
    let a_rows = rows_with_links(a);
    removed += clear_rows(b, &a_rows);
    Ok(removed)
}

/// A count of active neurons out of all neurons.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NeuronCount {
    /// Neurons with at least one link.
    pub active: usize,
    /// All neurons.
    pub total: usize,
}

impl NeuronCount {
    /// `active / total`, 0 when there are no neurons.
    pub fn rate(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.active as f64 / self.total as f64
        }
    }
}

/// The active neuron post-percolation rate of a chain of sparse layers in forward order (spec §4.3,
/// as \[OLD-MLP\] `--record_anp` computes it).
///
/// Active: over all layers, the input neurons (mask columns) with at least one link, plus the output
/// neurons (rows) of the last layer with at least one link. Total: the sum of the input dimensions
/// plus the last layer's output dimension. Each hidden neuron is thus counted once, as an input of
/// the layer it feeds.
pub fn anp(masks: &[Mask]) -> NeuronCount {
    let inputs = masks.iter().map(|m| count(&cols_with_links(m)));
    let input_total: usize = masks.iter().map(Mask::cols).sum();
    let last = masks.last();
    NeuronCount {
        active: inputs.sum::<usize>() + last.map_or(0, |m| count(&rows_with_links(m))),
        total: input_total + last.map_or(0, Mask::rows),
    }
}

/// Topology statistics of one layer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerSummary {
    /// Output neurons.
    pub rows: usize,
    /// Input neurons.
    pub cols: usize,
    /// Links.
    pub nnz: usize,
    /// `nnz / (rows·cols)`.
    pub density: f64,
    /// Input neurons (columns) with at least one link.
    pub active_inputs: usize,
    /// Output neurons (rows) with at least one link.
    pub active_outputs: usize,
}

impl LayerSummary {
    /// Summarises `mask`.
    pub fn of(mask: &Mask) -> LayerSummary {
        LayerSummary {
            rows: mask.rows(),
            cols: mask.cols(),
            nnz: mask.nnz(),
            density: mask.density(),
            active_inputs: count(&cols_with_links(mask)),
            active_outputs: count(&rows_with_links(mask)),
        }
    }
}

/// Which entries of one layer have ever been links, for the ITOP rate (in-time
/// over-parameterisation, Liu et al. 2021): the share of all possible weights that were active at
/// least once during training.
///
/// Call [`ItopTracker::observe`] with the mask after initialisation and after every topology update.
/// The bits are packed 64 to a word, so checkpoints stay small.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "ItopRepr", into = "ItopRepr")]
pub struct ItopTracker {
    rows: usize,
    cols: usize,
    /// Bit `i % 64` of word `i / 64` is entry `i` (row-major); bits past `rows·cols` stay 0.
    words: Vec<u64>,
}

impl ItopTracker {
    /// Whether the record is internally consistent (one bit per entry, none past the end): false
    /// for a tracker deserialised from edited data.
    pub fn is_consistent(&self) -> bool {
        let Some(entries) = self.rows.checked_mul(self.cols) else {
            return false;
        };
        if self.words.len() != entries.div_ceil(64) {
            return false;
        }
        let tail = entries % 64;
        tail == 0 || self.words.last().is_none_or(|w| w >> tail == 0)
    }

    /// A tracker for a `rows × cols` layer with nothing observed yet.
    pub fn new(rows: usize, cols: usize) -> ItopTracker {
        ItopTracker {
            rows,
            cols,
            words: vec![0; (rows * cols).div_ceil(64)],
        }
    }

    /// A tracker that has observed `mask`.
    pub fn from_mask(mask: &Mask) -> ItopTracker {
        let mut tracker = ItopTracker::new(mask.rows(), mask.cols());
        tracker.mark(mask);
        tracker
    }

    /// Records the links of `mask` as ever active; its shape must match the tracker's.
    pub fn observe(&mut self, mask: &Mask) -> Result<(), ChainError> {
        if (mask.rows(), mask.cols()) != (self.rows, self.cols) {
            return Err(ChainError::TrackerShape {
                expected: (self.rows, self.cols),
                got: (mask.rows(), mask.cols()),
            });
        }
        self.mark(mask);
        Ok(())
    }

    /// The number of entries that have ever been links.
    pub fn ever_active(&self) -> usize {
        self.words.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// `rows·cols`, all possible links.
    pub fn entries(&self) -> usize {
        self.rows * self.cols
    }

    /// The ITOP rate of this layer, `ever_active / entries` (0 for an empty shape).
    pub fn rate(&self) -> f64 {
        NeuronCount {
            active: self.ever_active(),
            total: self.entries(),
        }
        .rate()
    }

    /// Whether entry `(row, col)` has ever been a link (`false` outside the shape).
    pub fn was_active(&self, row: usize, col: usize) -> bool {
        if row >= self.rows || col >= self.cols {
            return false;
        }
        let i = row * self.cols + col;
        self.words[i / 64] >> (i % 64) & 1 == 1
    }

    fn mark(&mut self, mask: &Mask) {
        for (i, _) in mask.as_bools().iter().enumerate().filter(|(_, on)| **on) {
            self.words[i / 64] |= 1 << (i % 64);
        }
    }
}

/// The ITOP rate over several layers: all ever-active entries over all possible entries.
pub fn itop_rate(trackers: &[ItopTracker]) -> f64 {
    NeuronCount {
        active: trackers.iter().map(ItopTracker::ever_active).sum(),
        total: trackers.iter().map(ItopTracker::entries).sum(),
    }
    .rate()
}

/// The serialised form of [`ItopTracker`], validated on the way in.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct ItopRepr {
    rows: usize,
    cols: usize,
    words: Vec<u64>,
}

impl TryFrom<ItopRepr> for ItopTracker {
    type Error = ChainError;

    fn try_from(repr: ItopRepr) -> Result<ItopTracker, ChainError> {
        let entries = repr
            .rows
            .checked_mul(repr.cols)
            .ok_or(ChainError::CorruptTracker("rows × cols overflows"))?;
        if repr.words.len() != entries.div_ceil(64) {
            return Err(ChainError::CorruptTracker(
                "word count does not match the shape",
            ));
        }
        let tail = entries % 64;
        if tail != 0 && repr.words.last().is_some_and(|w| w >> tail != 0) {
            return Err(ChainError::CorruptTracker("bits set past the last entry"));
        }
        Ok(ItopTracker {
            rows: repr.rows,
            cols: repr.cols,
            words: repr.words,
        })
    }
}

impl From<ItopTracker> for ItopRepr {
    fn from(tracker: ItopTracker) -> ItopRepr {
        ItopRepr {
            rows: tracker.rows,
            cols: tracker.cols,
            words: tracker.words,
        }
    }
}

/// For each row: whether it has at least one link.
fn rows_with_links(mask: &Mask) -> Vec<bool> {
    if mask.cols() == 0 {
        return vec![false; mask.rows()];
    }
    mask.as_bools()
        .chunks(mask.cols())
        .map(|row| row.iter().any(|&b| b))
        .collect()
}

/// For each column: whether it has at least one link.
fn cols_with_links(mask: &Mask) -> Vec<bool> {
    let mut any = vec![false; mask.cols()];
    for (i, &on) in mask.as_bools().iter().enumerate() {
        any[i % mask.cols()] |= on;
    }
    any
}

/// Clears every row `r` with `keep[r] == false`; returns the number of links removed.
fn clear_rows(mask: &mut Mask, keep: &[bool]) -> usize {
    clear_where(mask, |row, _| !keep[row])
}

/// Clears every column `c` with `keep[c] == false`; returns the number of links removed.
fn clear_cols(mask: &mut Mask, keep: &[bool]) -> usize {
    clear_where(mask, |_, col| !keep[col])
}

fn clear_where(mask: &mut Mask, drop: impl Fn(usize, usize) -> bool) -> usize {
    let mut removed = 0;
    for row in 0..mask.rows() {
        for col in 0..mask.cols() {
            if mask.get(row, col) && drop(row, col) {
                mask.set(row, col, false);
                removed += 1;
            }
        }
    }
    removed
}

fn count(flags: &[bool]) -> usize {
    flags.iter().filter(|&&b| b).count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::{Counter, RngKey, Stream};

    fn mask(rows: usize, cols: usize, bits: &[u8]) -> Mask {
        Mask::from_bools(rows, cols, bits.iter().map(|&b| b == 1).collect()).unwrap()
    }

    /// Spec §4.1 test vector, before chain removal.
    fn spec_chain() -> Vec<Mask> {
        vec![
            mask(3, 4, &[1, 0, 1, 0, 0, 0, 0, 0, 0, 1, 0, 1]),
            mask(3, 3, &[1, 1, 0, 0, 1, 0, 0, 0, 0]),
            mask(2, 3, &[1, 1, 1, 0, 0, 1]),
        ]
    }

    #[test]
    fn mlp_chain_removal_matches_spec_vector() {
        let mut masks = spec_chain();
        let removed = chain_removal_mlp(&mut masks).unwrap();
        assert_eq!(masks[0], mask(3, 4, &[1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]));
        assert_eq!(masks[1], mask(3, 3, &[1, 0, 0, 0, 0, 0, 0, 0, 0]));
        assert_eq!(masks[2], mask(2, 3, &[1, 0, 0, 0, 0, 0]));
        assert_eq!(removed, 11 - 4);
    }

    #[test]
    fn anp_matches_spec_vector() {
        let mut masks = spec_chain();
        assert_eq!(
            anp(&masks),
            NeuronCount {
                active: 11,
                total: 12
            }
        );
        chain_removal_mlp(&mut masks).unwrap();
        let after = anp(&masks);
        assert_eq!(
            after,
            NeuronCount {
                active: 5,
                total: 12
            }
        );
        assert!((after.rate() - 5.0 / 12.0).abs() < 1e-15);
        assert_eq!(anp(&[]).rate(), 0.0);
    }

    #[test]
    fn mlp_chain_rejects_mismatched_shapes() {
        let mut masks = vec![Mask::zeros(3, 4), Mask::zeros(2, 4)];
        assert_eq!(
            chain_removal_mlp(&mut masks),
            Err(ChainError::ChainShape {
                layer: 0,
                produced: 3,
                consumed: 4
            })
        );
        assert_eq!(chain_removal_mlp(&mut []), Ok(0));
        let mut single = vec![mask(1, 2, &[1, 0])];
        assert_eq!(chain_removal_mlp(&mut single), Ok(0));
    }

    /// Reference percolation: repeatedly strip every hidden neuron that has links on one side only,
    /// until nothing changes.
    fn percolate_naively(masks: &mut [Mask]) {
        loop {
            let mut changed = false;
            for l in 0..masks.len() - 1 {
                let has_in = rows_with_links(&masks[l]);
                let has_out = cols_with_links(&masks[l + 1]);
                for h in 0..has_in.len() {
                    if has_in[h] != has_out[h] {
                        changed = true;
                        for j in 0..masks[l].cols() {
                            masks[l].set(h, j, false);
                        }
                        for a in 0..masks[l + 1].rows() {
                            masks[l + 1].set(a, h, false);
                        }
                    }
                }
            }
            if !changed {
                return;
            }
        }
    }

    fn random_chain(dims: &[usize], density: f32, seed: u32) -> Vec<Mask> {
        let mut rng = Counter::new(RngKey::new(seed, Stream::Synthetic, 0, 0));
        dims.windows(2)
            .map(|io| {
                let bits = (0..io[0] * io[1])
                    .map(|_| rng.next_uniform() < density)
                    .collect();
                Mask::from_bools(io[1], io[0], bits).unwrap()
            })
            .collect()
    }

    #[test]
    fn mlp_chain_removal_reaches_the_percolation_fixed_point() {
        let mut nontrivial = 0;
        for seed in 0..40 {
            let density = [0.05, 0.1, 0.2][seed as usize % 3];
            let original = random_chain(&[12, 9, 15, 7, 5], density, seed);
            let mut swept = original.clone();
            let removed = chain_removal_mlp(&mut swept).unwrap();
            let mut reference = original.clone();
            percolate_naively(&mut reference);
            assert_eq!(swept, reference, "seed {seed}");
            // Only links are removed, and the count is right.
            let before: usize = original.iter().map(Mask::nnz).sum();
            let after: usize = swept.iter().map(Mask::nnz).sum();
            assert_eq!(before - after, removed);
            // Every hidden neuron: incoming links ⇔ outgoing links.
            for l in 0..swept.len() - 1 {
                assert_eq!(rows_with_links(&swept[l]), cols_with_links(&swept[l + 1]));
            }
            // A second pass has nothing left to do.
            assert_eq!(chain_removal_mlp(&mut swept), Ok(0));
            nontrivial += usize::from(removed > 0);
        }
        assert!(
            nontrivial > 10,
            "only {nontrivial} random chains needed percolation"
        );
    }

    #[test]
    fn pairwise_chain_by_hand() {
        // Producer 3×2 (outputs h0..h2), consumer 2×3 (reads h0..h2).
        let mut producer = mask(3, 2, &[1, 0, 1, 1, 0, 0]);
        let mut consumer = mask(2, 3, &[1, 0, 1, 0, 0, 1]);
        // h1 is produced but never consumed: row 1 of the producer goes.
        // h2 is consumed but never produced: column 2 of the consumer goes.
        assert_eq!(chain(&mut producer, &mut consumer), Ok(4));
        assert_eq!(producer, mask(3, 2, &[1, 0, 0, 0, 0, 0]));
        assert_eq!(consumer, mask(2, 3, &[1, 0, 0, 0, 0, 0]));
        let mut wrong = Mask::zeros(2, 2);
        assert!(chain(&mut producer, &mut wrong).is_err());
    }

    #[test]
    fn qk_chain_by_hand() {
        let mut k = mask(3, 2, &[1, 0, 0, 1, 0, 0]);
        let mut q = mask(3, 2, &[0, 0, 1, 1, 1, 0]);
        // Output 0: only k has it; output 2: only q has it; output 1: both.
        assert_eq!(qk_chain(&mut k, &mut q), Ok(2));
        assert_eq!(k, mask(3, 2, &[0, 0, 0, 1, 0, 0]));
        assert_eq!(q, mask(3, 2, &[0, 0, 1, 1, 0, 0]));
        assert_eq!(rows_with_links(&k), rows_with_links(&q));
        let mut wrong = Mask::zeros(2, 2);
        assert!(qk_chain(&mut k, &mut wrong).is_err());
    }

    #[test]
    fn layer_summary_counts_active_neurons() {
        let summary = LayerSummary::of(&spec_chain()[0]);
        assert_eq!(
            (summary.nnz, summary.active_inputs, summary.active_outputs),
            (4, 4, 2)
        );
        assert!((summary.density - 4.0 / 12.0).abs() < 1e-15);
    }

    #[test]
    fn itop_tracks_the_union_of_masks() {
        let masks = spec_chain();
        let mut tracker = ItopTracker::new(3, 4);
        assert_eq!(tracker.rate(), 0.0);
        tracker.observe(&masks[0]).unwrap();
        assert_eq!(tracker.ever_active(), 4);
        let moved = mask(3, 4, &[1, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0]);
        tracker.observe(&moved).unwrap();
        assert_eq!(tracker.ever_active(), 5);
        assert!((tracker.rate() - 5.0 / 12.0).abs() < 1e-15);
        assert!(tracker.was_active(0, 1) && tracker.was_active(2, 3));
        assert!(!tracker.was_active(1, 0) && !tracker.was_active(9, 9));
        assert!(tracker.observe(&masks[1]).is_err());
        let other = ItopTracker::from_mask(&masks[2]);
        assert!((itop_rate(&[tracker, other]) - 9.0 / 18.0).abs() < 1e-15);
        assert_eq!(itop_rate(&[]), 0.0);
    }

    #[test]
    fn itop_tracker_checks_its_serialised_form() {
        let tracker = ItopTracker::from_mask(&mask(10, 13, &[1; 130]));
        assert_eq!(tracker.ever_active(), 130);
        let repr = ItopRepr::from(tracker.clone());
        assert_eq!(ItopTracker::try_from(repr.clone()), Ok(tracker));
        let short = ItopRepr {
            words: vec![0],
            ..repr.clone()
        };
        assert!(ItopTracker::try_from(short).is_err());
        let mut overflowing = repr;
        overflowing.words[2] |= 1 << 2;
        assert!(ItopTracker::try_from(overflowing).is_err());
    }
}
