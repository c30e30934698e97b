//! Corpus BLEU on detokenised text, computed as sacreBLEU does by default (the `13a` tokenizer of
//! `mteval-v13a.pl`, n-grams up to 4, exponential smoothing of empty n-gram orders, the closest
//! reference length), so scores compare with the literature's `multi-bleu-detok.perl` / sacreBLEU
//! numbers. `tests/bleu.rs` checks every tokenised line and score against sacreBLEU's on fixtures
//! (`scripts/bleu_fixtures.py` regenerates them from PyPI's sacreBLEU).
//!
//! ```
//! use cht_data::bleu::{Bleu, BleuOptions};
//! let hyps = ["Ein Mann fährt Fahrrad."];
//! let refs = [vec!["Ein Mann fährt ein Fahrrad."]];
//! let b = Bleu::corpus(&hyps, &refs, &BleuOptions::default()).unwrap();
//! assert!(b.score > 0.0 && b.score < 100.0);
//! ```

use std::collections::HashMap;
use std::fmt;

/// The longest n-gram BLEU counts.
pub const MAX_ORDER: usize = 4;

/// How BLEU treats an n-gram order without any match (sacreBLEU's `smooth_method`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Smoothing {
    /// No smoothing: an order without matches makes the score 0.
    None,
    /// Such an order's precision is `value / total` (Chen & Cherry's method 1).
    Floor(f64),
    /// `value` is added to the matches and totals of orders 2 to 4 (method 2).
    AddK(f64),
    /// The k-th order without matches has precision `1 / (2^k · total)` (NIST's, sacreBLEU's
    /// default).
    Exp,
}

/// What sacreBLEU calls the metric's signature: the choices that change the number.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BleuOptions {
    /// Lowercase hypotheses and references first (sacreBLEU `-lc`); default false.
    pub lowercase: bool,
    /// Default [`Smoothing::Exp`].
    pub smoothing: Smoothing,
}

impl Default for BleuOptions {
    fn default() -> Self {
        BleuOptions {
            lowercase: false,
            smoothing: Smoothing::Exp,
        }
    }
}

/// Why BLEU cannot be computed.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum BleuError {
    /// The hypothesis and reference lists differ in length.
    #[error("{hyps} hypotheses but {refs} reference lists: give one reference list per hypothesis")]
    Lengths {
        /// Number of hypotheses.
        hyps: usize,
        /// Number of reference lists.
        refs: usize,
    },
    /// A hypothesis has no reference.
    #[error("hypothesis {index} has no reference")]
    NoReference {
        /// Its index.
        index: usize,
    },
}

/// The counts BLEU is computed from, summed over segments.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BleuStats {
    /// Matched n-grams of each order (clipped by the references' counts).
    pub correct: [u64; MAX_ORDER],
    /// Hypothesis n-grams of each order.
    pub total: [u64; MAX_ORDER],
    /// Hypothesis tokens.
    pub sys_len: u64,
    /// Reference tokens (the closest reference's length per segment).
    pub ref_len: u64,
}

/// A BLEU score with what it is made of.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bleu {
    /// BLEU in percent (0–100).
    pub score: f64,
    /// n-gram precisions in percent, orders 1 to 4, after smoothing.
    pub precisions: [f64; MAX_ORDER],
    /// Brevity penalty.
    pub bp: f64,
    /// The counts.
    pub stats: BleuStats,
}

impl Bleu {
    /// Corpus BLEU of `hyps` against `refs` (one list of references per hypothesis, all lists
    /// equally long is not required).
    pub fn corpus<H: AsRef<str>, R: AsRef<str>>(
        hyps: &[H],
        refs: &[Vec<R>],
        options: &BleuOptions,
    ) -> Result<Bleu, BleuError> {
        if hyps.len() != refs.len() {
            return Err(BleuError::Lengths {
                hyps: hyps.len(),
                refs: refs.len(),
            });
        }
        let mut stats = BleuStats::default();
        for (index, (h, r)) in hyps.iter().zip(refs).enumerate() {
            if r.is_empty() {
                return Err(BleuError::NoReference { index });
            }
            stats.add_segment(h.as_ref(), r, options);
        }
        Ok(stats.bleu(options.smoothing))
    }
}

impl BleuStats {
    /// Adds one segment: a hypothesis and its references, detokenised text.
    pub fn add_segment<R: AsRef<str>>(&mut self, hyp: &str, refs: &[R], options: &BleuOptions) {
        let prepare = |s: &str| {
            let s = if options.lowercase {
                s.to_lowercase()
            } else {
                s.to_owned()
            };
            tokenize_13a(s.trim_end_matches(is_python_space))
        };
        let hyp = prepare(hyp);
        let hyp: Vec<&str> = hyp
            .split(is_python_space)
            .filter(|t| !t.is_empty())
            .collect();
        let refs: Vec<String> = refs.iter().map(|r| prepare(r.as_ref())).collect();
        // The references' n-gram counts, each the largest over the references.
        let mut ref_counts: HashMap<&[&str], u64> = HashMap::new();
        let mut ref_lens = Vec::with_capacity(refs.len());
        let ref_tokens: Vec<Vec<&str>> = refs
            .iter()
            .map(|r| r.split(is_python_space).filter(|t| !t.is_empty()).collect())
            .collect();
        for tokens in &ref_tokens {
            ref_lens.push(tokens.len() as u64);
            for (gram, count) in ngrams(tokens) {
                let c = ref_counts.entry(gram).or_insert(0);
                *c = (*c).max(count);
            }
        }
        for (gram, count) in ngrams(&hyp) {
            let n = gram.len() - 1;
            self.total[n] += count;
            self.correct[n] += count.min(ref_counts.get(gram).copied().unwrap_or(0));
        }
        let hyp_len = hyp.len() as u64;
        self.sys_len += hyp_len;
        self.ref_len += closest_length(hyp_len, &ref_lens);
    }

    /// The score of these counts.
    pub fn bleu(&self, smoothing: Smoothing) -> Bleu {
        let (sys, refl) = (self.sys_len as f64, self.ref_len as f64);
        let bp = match () {
            _ if self.sys_len >= self.ref_len => 1.0,
            _ if self.sys_len == 0 => 0.0,
            _ => (1.0 - refl / sys).exp(),
        };
        let mut precisions = [0.0; MAX_ORDER];
        let stats = *self;
        if self.correct.iter().all(|&c| c == 0) {
            return Bleu {
                score: 0.0,
                precisions,
                bp,
                stats,
            };
        }
        let mut exp_factor = 1.0;
        for (n, precision) in precisions.iter_mut().enumerate() {
            let (mut correct, mut total) = (self.correct[n] as f64, self.total[n] as f64);
            if let Smoothing::AddK(k) = smoothing
                && n > 0
            {
                correct += k;
                total += k;
            }
            if total == 0.0 {
                break;
            }
            *precision = if correct == 0.0 {
                match smoothing {
                    Smoothing::Exp => {
                        exp_factor *= 2.0;
                        100.0 / (exp_factor * total)
                    }
                    Smoothing::Floor(v) => 100.0 * v / total,
                    _ => 0.0,
                }
            } else {
                100.0 * correct / total
            };
        }
        // A zero precision counts as log 0 = −∞ (sacreBLEU uses −9 999 999 999: the same 0).
        let log_mean = precisions
            .iter()
            .map(|&p| if p == 0.0 { -9_999_999_999.0 } else { p.ln() })
            .sum::<f64>()
            / MAX_ORDER as f64;
        Bleu {
            score: bp * log_mean.exp(),
            precisions,
            bp,
            stats,
        }
    }
}

impl fmt::Display for Bleu {
    /// `BLEU = 32.03 63.1/38.2/25.7/17.9 (BP = 1.000 ratio = 1.012 hyp_len = 12345 ref_len =
    /// 12200)`, sacreBLEU's line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = self.precisions;
        let ratio = if self.stats.ref_len == 0 {
            0.0
        } else {
            self.stats.sys_len as f64 / self.stats.ref_len as f64
        };
        write!(
            f,
            "BLEU = {:.2} {:.1}/{:.1}/{:.1}/{:.1} (BP = {:.3} ratio = {:.3} hyp_len = {} ref_len = {})",
            self.score,
            p[0],
            p[1],
            p[2],
            p[3],
            self.bp,
            ratio,
            self.stats.sys_len,
            self.stats.ref_len
        )
    }
}

/// The `13a` tokenization of one line (mteval-v13a's, as sacreBLEU applies it): HTML entities
/// for `" & < >` decoded, punctuation and symbols split off, `.` and `,` split off except between
/// digits, `-` after a digit split off; tokens joined by single spaces.
pub fn tokenize_13a(line: &str) -> String {
    let mut line = line
        .replace("<skipped>", "")
        .replace("-\n", "")
        .replace('\n', " ");
    if line.contains('&') {
        line = line
            .replace("&quot;", "\"")
            .replace("&amp;", "&")
            .replace("&lt;", "<")
            .replace("&gt;", ">");
    }
    let chars: Vec<char> = format!(" {line} ").chars().collect();
    // 1. Symbols and most ASCII punctuation become tokens of their own.
    let mut out = Vec::with_capacity(chars.len() * 2);
    for &c in &chars {
        if is_split_symbol(c) {
            out.extend([' ', c, ' ']);
        } else {
            out.push(c);
        }
    }
    // 2–4. Pairs matched left to right without overlap (as a regular-expression substitution).
    let digit = |c: char| c.is_ascii_digit();
    let period_comma = |c: char| c == '.' || c == ',';
    let out = substitute_pairs(
        &out,
        |a, b| !digit(a) && period_comma(b),
        |a, b| vec![a, ' ', b, ' '],
    );
    let out = substitute_pairs(
        &out,
        |a, b| period_comma(a) && !digit(b),
        |a, b| vec![' ', a, ' ', b],
    );
    let out = substitute_pairs(
        &out,
        |a, b| digit(a) && b == '-',
        |a, b| vec![a, ' ', b, ' '],
    );
    let text: String = out.into_iter().collect();
    text.split(is_python_space)
        .filter(|t| !t.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The characters step 1 of 13a splits off: `{|}~ [\]^_` space !"#$%& ()*+ :;<=>?@ /`.
fn is_split_symbol(c: char) -> bool {
    matches!(c, '{'..='~' | '['..='`' | ' '..='&' | '('..='+' | ':'..='@' | '/')
}

/// Whitespace as Python's `str.split()` sees it (Unicode White_Space and the ASCII separators
/// U+001C–U+001F).
fn is_python_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// `chars` with each non-overlapping pair `(a, b)` for which `hit` holds, scanned from the left,
/// replaced by `with(a, b)`.
fn substitute_pairs(
    chars: &[char],
    hit: impl Fn(char, char) -> bool,
    with: impl Fn(char, char) -> Vec<char>,
) -> Vec<char> {
    let mut out = Vec::with_capacity(chars.len() + chars.len() / 4);
    let mut i = 0;
    while i < chars.len() {
        if i + 1 < chars.len() && hit(chars[i], chars[i + 1]) {
            out.extend(with(chars[i], chars[i + 1]));
            i += 2;
        } else {
            out.push(chars[i]);
            i += 1;
        }
    }
    out
}

/// Every n-gram of `tokens`, orders 1 to [`MAX_ORDER`], with its count.
fn ngrams<'a, 'b>(tokens: &'a [&'b str]) -> HashMap<&'a [&'b str], u64> {
    let mut counts = HashMap::new();
    for n in 1..=MAX_ORDER {
        for gram in tokens.windows(n) {
            *counts.entry(gram).or_insert(0) += 1;
        }
    }
    counts
}

/// The reference length closest to `hyp_len` (the shorter on a tie).
fn closest_length(hyp_len: u64, ref_lens: &[u64]) -> u64 {
    ref_lens
        .iter()
        .copied()
        .min_by_key(|&r| (r.abs_diff(hyp_len), r))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thirteen_a_splits_punctuation_but_not_numbers() {
        assert_eq!(tokenize_13a("Hello, world!"), "Hello , world !");
        assert_eq!(
            tokenize_13a("It costs 1,000.50 dollars."),
            "It costs 1,000.50 dollars ."
        );
        assert_eq!(tokenize_13a("a 5-year-old"), "a 5 - year-old");
        assert_eq!(
            tokenize_13a("&quot;Hi&quot; &amp; (bye)"),
            "\" Hi \" & ( bye )"
        );
        assert_eq!(tokenize_13a("don't"), "don't");
        assert_eq!(tokenize_13a("   "), "");
    }

    #[test]
    fn identical_text_scores_100_and_nothing_matching_0() {
        let o = BleuOptions::default();
        let s = ["Ein Hund läuft durch das hohe Gras ."];
        let b = Bleu::corpus(&s, &[vec![s[0]]], &o).unwrap();
        assert!((b.score - 100.0).abs() < 1e-9, "{b}");
        let b = Bleu::corpus(&["x y z"], &[vec![s[0]]], &o).unwrap();
        assert_eq!(b.score, 0.0);
        let b = Bleu::corpus(&[""], &[vec![s[0]]], &o).unwrap();
        assert_eq!((b.score, b.bp), (0.0, 0.0));
    }

    #[test]
    fn lengths_must_agree() {
        let o = BleuOptions::default();
        let e = Bleu::corpus(&["a", "b"], &[vec!["a"]], &o).unwrap_err();
        assert_eq!(e, BleuError::Lengths { hyps: 2, refs: 1 });
        let none: Vec<&str> = Vec::new();
        let e = Bleu::corpus(&["a"], &[none], &o).unwrap_err();
        assert_eq!(e, BleuError::NoReference { index: 0 });
    }

    #[test]
    fn the_closest_reference_wins_ties_to_the_shorter() {
        assert_eq!(closest_length(5, &[3, 7, 9]), 3);
        assert_eq!(closest_length(8, &[3, 7, 9]), 7);
        assert_eq!(closest_length(10, &[3, 7, 9]), 9);
    }
}
