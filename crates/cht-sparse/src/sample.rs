//! Weighted sampling without replacement with integer-exact keys, so that the CPU, every GPU and
//! the browser select the same links for the same seed.
//!
//! Gumbel-top-k: drawing `k` items one after another without replacement with `p ∝ wᵀ` selects
//! the same set, in distribution, as taking the `k` largest keys `T·ln w − ln(−ln U)`. Floats would
//! make the keys depend on each platform's `ln`, so the keys are computed in 16.16 fixed point
//! with integer operations only:
//!
//! `key = T·log₂ w − log₂(−log₂ U)` (the constant `log₂ ln 2` dropped), with `log₂` of a float
//! taken from its exponent plus 16 fraction bits found by repeated squaring of the mantissa
//! ([`log2_fixed`]); `T` is rounded to a multiple of 1/64 and `log₂ w` clamped to ±32 (weights
//! below 2⁻³² ≈ 2·10⁻¹⁰ count as 2⁻³²), which keeps every product inside `i32`. Zero weights are
//! never drawn. `shaders/sample.wgsl` implements the same integer steps.
//!
//! Selection is exact: the `k` largest keys, ties broken by the lower index.

use crate::rng::{RngKey, draw_u32};

/// Fraction bits of the fixed-point logarithms.
pub const FRAC_BITS: u32 = 16;
/// Temperature resolution: `T` is stored as a multiple of `1 / T_SCALE`.
pub const T_SCALE: u32 = 64;
/// Largest supported temperature (keeps `T·log₂ w` inside `i32`).
pub const T_MAX: f32 = 15.0;
const LOG_CLAMP: i32 = 32 << FRAC_BITS;

/// `log₂ x` in 16.16 fixed point for a positive normal or subnormal `x`, from integer operations
/// only: the exponent gives the integer part; each fraction bit comes from squaring the mantissa
/// (in 2.30 fixed point) and checking whether it passed 2. Mirrors `log2_fixed` in WGSL.
pub fn log2_fixed(x: f32) -> i32 {
    let bits = x.to_bits() & 0x7fff_ffff;
    let exp = (bits >> 23) as i32;
    let mut mantissa = bits & 0x007f_ffff;
    let mut e = exp - 127;
    if exp == 0 {
        // Subnormal: normalise the mantissa.
        let shift = mantissa.leading_zeros() - 8;
        mantissa = (mantissa << shift) & 0x007f_ffff;
        e = -126 - shift as i32;
    }
    (e << FRAC_BITS) + log2_mantissa(mantissa)
}

/// `log₂ n` in 16.16 fixed point for an integer `n ≥ 1`.
pub fn log2_fixed_u32(n: u32) -> i32 {
    let top = 31 - n.leading_zeros();
    // The bits below the leading one, left-aligned into 23 mantissa bits.
    let rest = n ^ (1 << top);
    let mantissa = if top >= 23 {
        rest >> (top - 23)
    } else {
        rest << (23 - top)
    };
    ((top as i32) << FRAC_BITS) + log2_mantissa(mantissa)
}

/// 16 fraction bits of `log₂(1 + mantissa / 2²³)`.
fn log2_mantissa(mantissa: u32) -> i32 {
    // m in [1, 2) as 2.30 fixed point.
    let mut m = (1u32 << 30) | (mantissa << 7);
    let mut frac = 0i32;
    for _ in 0..FRAC_BITS {
        let (hi, lo) = mul_wide(m, m);
        // m² in 2.30: (m·m) >> 30, in [1, 4).
        let sq = (hi << 2) | (lo >> 30);
        frac <<= 1;
        if sq >= 1 << 31 {
            frac |= 1;
            m = sq >> 1;
        } else {
            m = sq;
        }
    }
    frac
}

/// 32×32 → 64-bit product as (high, low) words, from 16-bit halves (WGSL has no 64-bit integers).
pub fn mul_wide(a: u32, b: u32) -> (u32, u32) {
    let (a0, a1) = (a & 0xffff, a >> 16);
    let (b0, b1) = (b & 0xffff, b >> 16);
    let p00 = a0 * b0;
    let p01 = a0 * b1;
    let p10 = a1 * b0;
    let p11 = a1 * b1;
    let mid = (p00 >> 16) + (p01 & 0xffff) + (p10 & 0xffff);
    let lo = (p00 & 0xffff) | (mid << 16);
    let hi = p11 + (p01 >> 16) + (p10 >> 16) + (mid >> 16);
    (hi, lo)
}

/// A temperature as the integer multiplier of the keys.
pub fn temperature_fixed(t: f32) -> u32 {
    (t.clamp(0.0, T_MAX) * T_SCALE as f32).round() as u32
}

/// The sampling key of item `index` with weight `w` under random key `folded` (see
/// [`RngKey::folded`]) and fixed-point temperature `t_fixed`, as an order-preserving `u32`
/// (larger = preferred). Weights ≤ 0 (and NaN) get key 0: never chosen while any positive weight
/// is left.
pub fn key(w: f32, t_fixed: u32, folded: u32, index: u32) -> u32 {
    if w.is_nan() || w <= 0.0 {
        return 0;
    }
    let lw = log2_fixed(w).clamp(-LOG_CLAMP, LOG_CLAMP - 1);
    // Random part: E' = −log₂ U with U = (b + 0.5)/2²⁴, i.e. 25 − log₂(2b + 1), always > 0.
    let b = draw_u32(folded, index) >> 8;
    let e = (25 << FRAC_BITS) - log2_fixed_u32(2 * b + 1);
    // log₂ E' in 16.16 (E' is itself 16.16 fixed point).
    let le = log2_fixed_u32(e as u32) - ((FRAC_BITS as i32) << FRAC_BITS);
    let tw = (t_fixed as i32 * lw) / T_SCALE as i32;
    let k = tw - le;
    // i32 → order-preserving u32; the +1 keeps every positive weight above the 0 of "never".
    ((k as u32) ^ 0x8000_0000).max(1)
}

/// Indices of the `k` items with the largest keys (ties: lower index first), ascending.
pub fn top_k_by_key(keys: &[u32], k: usize) -> Vec<u32> {
    let mut order: Vec<u64> = keys
        .iter()
        .enumerate()
        .map(|(i, &key)| (u64::from(key) << 32) | u64::from(!(i as u32)))
        .collect();
    let k = k.min(order.len());
    if k == 0 {
        return Vec::new();
    }
    // Descending composite: key first, then lower index (larger !index) first.
    order.select_nth_unstable_by(k - 1, |a, b| b.cmp(a));
    let mut chosen: Vec<u32> = order[..k].iter().map(|&c| !(c as u32)).collect();
    chosen.sort_unstable();
    chosen
}

/// Samples `k` of `weights` without replacement with `p ∝ w^t` (items with weight ≤ 0 are never
/// drawn), keyed by `key`: the same call gives the same indices on every platform.
pub fn sample_without_replacement(weights: &[f32], k: usize, t: f32, key: RngKey) -> Vec<u32> {
    let folded = key.folded();
    let t_fixed = temperature_fixed(t);
    let keys: Vec<u32> = weights
        .iter()
        .enumerate()
        .map(|(i, &w)| sample_key_or_zero(w, t_fixed, folded, i as u32))
        .collect();
    let positive = keys.iter().filter(|&&k| k > 0).count();
    top_k_by_key(&keys, k.min(positive))
}

fn sample_key_or_zero(w: f32, t_fixed: u32, folded: u32, index: u32) -> u32 {
    key(w, t_fixed, folded, index)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Stream;

    #[test]
    fn fixed_point_log2_is_accurate() {
        for &x in &[1.0f32, 2.0, 3.0, 0.5, 0.1, 1e-8, 1234.5, 1e-40, f32::MAX] {
            let got = log2_fixed(x) as f64 / 65536.0;
            assert!(
                (got - f64::from(x).log2()).abs() < 4.0 / 65536.0,
                "{x}: {got}"
            );
        }
        for n in [1u32, 2, 3, 7, 1000, 1 << 24, u32::MAX] {
            let got = log2_fixed_u32(n) as f64 / 65536.0;
            assert!(
                (got - f64::from(n).log2()).abs() < 4.0 / 65536.0,
                "{n}: {got}"
            );
        }
        assert_eq!(mul_wide(u32::MAX, u32::MAX), (0xffff_fffe, 1));
        assert_eq!(mul_wide(0x1234_5678, 0x9abc_def0), {
            let p = 0x1234_5678u64 * 0x9abc_def0u64;
            ((p >> 32) as u32, p as u32)
        });
    }

    #[test]
    fn higher_weight_means_higher_key_on_average_and_zero_is_never_chosen() {
        let key = RngKey::new(1, Stream::Regrowth, 0, 0);
        let w = [0.0, 1.0, 0.0, 3.0];
        let chosen = sample_without_replacement(&w, 4, 1.0, key);
        assert_eq!(chosen, vec![1, 3], "only positive weights may be drawn");
        assert!(sample_without_replacement(&[], 3, 1.0, key).is_empty());
    }

    /// Chi-square test: inclusion frequencies of 2-of-5 sampling against exact sequential
    /// multinomial sampling without replacement.
    #[test]
    fn inclusion_frequencies_match_sequential_sampling() {
        let w = [1.0f32, 2.0, 3.0, 4.0, 10.0];
        for &t in &[1.0f32, 2.0] {
            let p: Vec<f64> = w.iter().map(|&x| f64::from(x).powf(f64::from(t))).collect();
            let total: f64 = p.iter().sum();
            // Exact inclusion probability of each item in 2 sequential draws.
            let mut incl = vec![0.0; 5];
            for a in 0..5 {
                for b in 0..5 {
                    if a != b {
                        let pr = p[a] / total * p[b] / (total - p[a]);
                        incl[a] += pr;
                        incl[b] += pr;
                    }
                }
            }
            let trials = 40_000u32;
            let mut counts = [0u32; 5];
            for trial in 0..trials {
                let key = RngKey::new(7, Stream::Regrowth, trial, 0);
                for i in sample_without_replacement(&w, 2, t, key) {
                    counts[i as usize] += 1;
                }
            }
            let chi2: f64 = (0..5)
                .map(|i| {
                    let expected = incl[i] * f64::from(trials);
                    (f64::from(counts[i]) - expected).powi(2) / expected
                })
                .sum();
            // 4 degrees of freedom (inclusion counts are not independent, which only makes the
            // statistic smaller): the 99.9 % quantile is 18.47.
            assert!(
                chi2 < 18.47,
                "T={t}: chi² = {chi2}, counts {counts:?}, expected {incl:?}"
            );
        }
    }

    #[test]
    fn top_k_breaks_ties_by_lower_index() {
        assert_eq!(top_k_by_key(&[5, 7, 7, 1, 7], 2), vec![1, 2]);
        assert_eq!(top_k_by_key(&[5, 7, 7, 1, 7], 10), vec![0, 1, 2, 3, 4]);
    }
}
