//! Pictures of the topology for the page: adjacency images that show what an update changed, a
//! heat-map of the Cannistraci-Hebb scores, and which hidden neurons are still alive.

use cht_sparse::predict::{Predictor, scores};
use cht_sparse::{CsrPattern, Mask};

/// Background, kept link, regrown link, removed link (RGB).
const BACKGROUND: [u8; 3] = [12, 17, 32];
const KEPT: [u8; 3] = [190, 200, 222];
const REGROWN: [u8; 3] = [64, 224, 128];
const REMOVED: [u8; 3] = [244, 84, 84];

/// RGBA image, `cols` wide and `rows` high, of `cur`; links absent from `prev` are drawn as
/// regrown, links of `prev` absent from `cur` as removed.
pub fn adjacency_rgba(prev: Option<&Mask>, cur: &Mask) -> Vec<u8> {
    let (rows, cols) = (cur.rows(), cur.cols());
    let mut out = Vec::with_capacity(rows * cols * 4);
    for r in 0..rows {
        for c in 0..cols {
            let now = cur.get(r, c);
            let before = prev.map_or(now, |p| p.get(r, c));
            let rgb = match (before, now) {
                (true, true) => KEPT,
                (false, true) => REGROWN,
                (true, false) => REMOVED,
                (false, false) => BACKGROUND,
            };
            out.extend_from_slice(&[rgb[0], rgb[1], rgb[2], 255]);
        }
    }
    out
}

/// RGBA heat-map (`cols` × `rows`) of the CH2-L3n scores of every non-link of `mask`, on a log
/// scale from dark (no L3 path) through red to yellow (highest score); existing links in blue.
pub fn scores_rgba(mask: &Mask) -> Vec<u8> {
    let pattern = CsrPattern::from_mask(mask);
    let s = scores(&pattern, Predictor::Ch2L3n);
    let max = s.iter().copied().fold(0.0f32, f32::max);
    let scale = if max > 0.0 {
        1.0 / (1.0 + max).ln()
    } else {
        0.0
    };
    let mut out = Vec::with_capacity(s.len() * 4);
    for (i, &v) in s.iter().enumerate() {
        let (r, c) = (i / mask.cols(), i % mask.cols());
        let rgb = if mask.get(r, c) {
            [70, 110, 220]
        } else {
            heat((1.0 + v).ln() * scale)
        };
        out.extend_from_slice(&[rgb[0], rgb[1], rgb[2], 255]);
    }
    out
}

/// Black → red → yellow → white for `t` in `[0, 1]`.
fn heat(t: f32) -> [u8; 3] {
    let t = t.clamp(0.0, 1.0);
    let ch = |x: f32| (x.clamp(0.0, 1.0) * 255.0) as u8;
    [ch(t * 3.0), ch(t * 3.0 - 1.0), ch(t * 3.0 - 2.0)]
}

/// Grey levels (0–255, brightest = most links) of the first layer's inputs: with 784 inputs, a
/// 28×28 picture of which pixels the network still reads.
pub fn input_degrees(first: &Mask) -> Vec<u8> {
    let degrees: Vec<usize> = (0..first.cols())
        .map(|c| (0..first.rows()).filter(|&r| first.get(r, c)).count())
        .collect();
    let max = degrees.iter().copied().max().unwrap_or(0).max(1);
    degrees
        .iter()
        .map(|&d| ((d * 255 + max / 2) / max) as u8)
        .collect()
}

/// For each hidden layer (the outputs of sparse layer `l`), 1 where the neuron still has an
/// incoming link and — if another sparse layer follows — an outgoing one, else 0.
pub fn alive_neurons(masks: &[Mask]) -> Vec<Vec<u8>> {
    masks
        .iter()
        .enumerate()
        .map(|(l, m)| {
            (0..m.rows())
                .map(|h| {
                    let has_in = (0..m.cols()).any(|c| m.get(h, c));
                    let has_out = masks
                        .get(l + 1)
                        .is_none_or(|next| (0..next.rows()).any(|r| next.get(r, h)));
                    u8::from(has_in && has_out)
                })
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mask(rows: usize, cols: usize, bits: &[u8]) -> Mask {
        Mask::from_bools(rows, cols, bits.iter().map(|&b| b == 1).collect()).unwrap()
    }

    #[test]
    fn adjacency_colours_changes() {
        let prev = mask(1, 3, &[1, 1, 0]);
        let cur = mask(1, 3, &[1, 0, 1]);
        let img = adjacency_rgba(Some(&prev), &cur);
        assert_eq!(&img[0..3], &KEPT);
        assert_eq!(&img[4..7], &REMOVED);
        assert_eq!(&img[8..11], &REGROWN);
        assert_eq!(adjacency_rgba(None, &cur)[8..11], KEPT);
    }

    #[test]
    fn alive_neurons_follow_percolation() {
        // Hidden neuron 1 of layer 0 has inputs but no outgoing link in layer 1.
        let l0 = mask(2, 2, &[1, 0, 0, 1]);
        let l1 = mask(2, 2, &[1, 0, 1, 0]);
        assert_eq!(alive_neurons(&[l0, l1]), vec![vec![1, 0], vec![1, 1]]);
    }

    #[test]
    fn input_degrees_scale_to_the_busiest_input() {
        let m = mask(2, 3, &[1, 1, 0, 0, 1, 0]);
        assert_eq!(input_degrees(&m), vec![128, 255, 0]);
    }

    #[test]
    fn heat_map_marks_links_and_zero_scores() {
        let m = mask(2, 3, &[1, 1, 0, 0, 1, 1]);
        let img = scores_rgba(&m);
        assert_eq!(img.len(), 2 * 3 * 4);
        assert_eq!(&img[0..3], &[70, 110, 220]);
    }
}
