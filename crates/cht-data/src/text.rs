//! Text corpora for the language model: a character-level tokenizer, a byte-level BPE tokenizer
//! trained on the corpus itself, the contiguous train/validation split, and deterministic batches.
//!
//! Tiny-shakespeare is not in any registry, so the corpus is always a path the user gives (the
//! repository's `../shared/data/tinyshakespeare/input.txt`, or any UTF-8 / byte text). Nothing here
//! touches the network.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use cht_sparse::rng::{Counter, RngKey, Stream};
use serde::{Deserialize, Serialize};

/// What can go wrong with a corpus or a tokenizer; messages name the file and what to do.
#[derive(Debug, thiserror::Error)]
pub enum TextError {
    /// The corpus file cannot be read.
    #[error(
        "cannot read the corpus {path}: {source}; pass the path of a text file, e.g. \
         `--set data.corpus=../shared/data/tinyshakespeare/input.txt`"
    )]
    Read {
        /// The path given.
        path: PathBuf,
        /// The operating-system error.
        #[source]
        source: std::io::Error,
    },
    /// Character-level tokenisation needs UTF-8 text.
    #[error(
        "{path} is not UTF-8 text (invalid byte at offset {offset}); use `data.tokenizer = \"bpe\"` \
         (byte level) for other encodings"
    )]
    NotUtf8 {
        /// The corpus.
        path: PathBuf,
        /// First invalid byte.
        offset: usize,
    },
    /// The corpus is too short for the context length.
    #[error(
        "{path}: {what} has {tokens} tokens, but a context of {seq} needs at least {needed}; use a \
         longer corpus, a smaller `model.seq` or another `data.val_fraction`"
    )]
    TooShort {
        /// The corpus.
        path: PathBuf,
        /// Which split.
        what: &'static str,
        /// Tokens in it.
        tokens: usize,
        /// The context length.
        seq: usize,
        /// Tokens needed.
        needed: usize,
    },
    /// A character that the character-level vocabulary does not know (e.g. in a prompt).
    #[error("the character {0:?} is not in the vocabulary of the training corpus")]
    UnknownChar(char),
    /// A token id outside the vocabulary.
    #[error("token {token} is outside the vocabulary of {vocab}")]
    UnknownToken {
        /// The id.
        token: u32,
        /// The vocabulary size.
        vocab: usize,
    },
    /// Bad tokenizer settings.
    #[error("{0}")]
    Config(String),
}

/// Which tokenizer to build from a corpus.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TokenizerKind {
    /// One token per Unicode character seen in the corpus (sorted).
    Char,
    /// Byte-level BPE: 256 byte tokens plus merges learnt from the corpus.
    Bpe,
}

/// A tokenizer, serialisable so that a checkpoint carries its own.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Tokenizer {
    /// Character level: the sorted characters of the corpus.
    Char {
        /// Token `i` is `chars[i]`.
        chars: Vec<char>,
    },
    /// Byte-level BPE: token `256 + i` is the concatenation of the two tokens of `merges[i]`.
    Bpe {
        /// Merges in the order they were learnt (their rank).
        merges: Vec<(u32, u32)>,
    },
}

impl Tokenizer {
    /// The character vocabulary of `text` (at least one character).
    ///
    /// ```rust
    /// use cht_data::Tokenizer;
    ///
    /// let tok = Tokenizer::char_level("hello world")?;
    /// assert_eq!(tok.vocab_size(), 8); // ' ', d, e, h, l, o, r, w
    /// let ids = tok.encode("hold")?;
    /// assert_eq!(ids, vec![3, 5, 4, 1]);
    /// assert_eq!(tok.decode(&ids)?, "hold");
    /// assert!(tok.encode("help").is_err()); // 'p' is not in the vocabulary
    /// # Ok::<(), cht_data::TextError>(())
    /// ```
    pub fn char_level(text: &str) -> Result<Tokenizer, TextError> {
        let mut chars: Vec<char> = text.chars().collect();
        chars.sort_unstable();
        chars.dedup();
        if chars.is_empty() {
            return Err(TextError::Config("the corpus is empty".into()));
        }
        Ok(Tokenizer::Char { chars })
    }

    /// Learns byte-level BPE merges on `text` until the vocabulary has `vocab` tokens (or no pair
    /// occurs twice). Words (a letter run with its leading space, or a single other byte) are the
    /// units, so merges never cross word boundaries; ties go to the smallest pair, so training is
    /// deterministic.
    pub fn train_bpe(text: &[u8], vocab: usize) -> Result<Tokenizer, TextError> {
        if !(257..=65_536).contains(&vocab) {
            return Err(TextError::Config(format!(
                "data.bpe_vocab must be in 257..=65536 (256 bytes plus merges), got {vocab}"
            )));
        }
        let mut counts: HashMap<&[u8], u64> = HashMap::new();
        for w in words(text) {
            *counts.entry(w).or_default() += 1;
        }
        let mut words: Vec<(Vec<u32>, u64)> = counts
            .into_iter()
            .map(|(w, n)| (w.iter().map(|&b| u32::from(b)).collect(), n))
            .collect();
        words.sort_unstable();
        let mut merges = Vec::new();
        while 256 + merges.len() < vocab {
            let mut pairs: HashMap<(u32, u32), u64> = HashMap::new();
            for (w, n) in &words {
                for p in w.windows(2) {
                    *pairs.entry((p[0], p[1])).or_default() += n;
                }
            }
            let best = pairs
                .into_iter()
                .filter(|&(_, n)| n >= 2)
                .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0)));
            let Some((pair, _)) = best else { break };
            let id = 256 + merges.len() as u32;
            for (w, _) in &mut words {
                merge_pair(w, pair, id);
            }
            merges.push(pair);
        }
        Ok(Tokenizer::Bpe { merges })
    }

    /// Number of tokens.
    pub fn vocab_size(&self) -> usize {
        match self {
            Tokenizer::Char { chars } => chars.len(),
            Tokenizer::Bpe { merges } => 256 + merges.len(),
        }
    }

    /// Token ids of `text`.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, TextError> {
        self.encode_bytes(text.as_bytes())
    }

    fn encode_bytes(&self, text: &[u8]) -> Result<Vec<u32>, TextError> {
        match self {
            Tokenizer::Char { chars } => {
                let s = std::str::from_utf8(text).map_err(|e| {
                    TextError::Config(format!("text is not UTF-8 at byte {}", e.valid_up_to()))
                })?;
                s.chars()
                    .map(|c| {
                        chars
                            .binary_search(&c)
                            .map(|i| i as u32)
                            .map_err(|_| TextError::UnknownChar(c))
                    })
                    .collect()
            }
            Tokenizer::Bpe { merges } => {
                let rank: HashMap<(u32, u32), u32> = merges
                    .iter()
                    .enumerate()
                    .map(|(i, &p)| (p, i as u32))
                    .collect();
                let mut cache: HashMap<&[u8], Vec<u32>> = HashMap::new();
                let mut out = Vec::with_capacity(text.len() / 2);
                for w in words(text) {
                    let ids = cache.entry(w).or_insert_with(|| bpe_word(w, &rank));
                    out.extend_from_slice(ids);
                }
                Ok(out)
            }
        }
    }

    /// The text of `ids` (invalid UTF-8 from partial BPE byte sequences becomes U+FFFD).
    pub fn decode(&self, ids: &[u32]) -> Result<String, TextError> {
        let vocab = self.vocab_size();
        if let Some(&token) = ids.iter().find(|&&t| t as usize >= vocab) {
            return Err(TextError::UnknownToken { token, vocab });
        }
        match self {
            Tokenizer::Char { chars } => Ok(ids.iter().map(|&i| chars[i as usize]).collect()),
            Tokenizer::Bpe { merges } => {
                let mut bytes = Vec::new();
                for &t in ids {
                    expand(t, merges, &mut bytes);
                }
                Ok(String::from_utf8_lossy(&bytes).into_owned())
            }
        }
    }
}

/// A tokenised corpus split into a training part (the first `1 − val_fraction`) and a validation
/// part (the rest), contiguously, as is usual for tiny-shakespeare.
#[derive(Clone, Debug)]
pub struct Corpus {
    /// The tokenizer built from the training text.
    pub tokenizer: Tokenizer,
    /// Training tokens.
    pub train: Vec<u32>,
    /// Validation tokens.
    pub val: Vec<u32>,
}

/// How to read a corpus.
#[derive(Clone, Debug)]
pub struct CorpusOptions {
    /// Tokenizer kind.
    pub tokenizer: TokenizerKind,
    /// BPE vocabulary size (BPE only).
    pub bpe_vocab: usize,
    /// Fraction of the text (by bytes, cut at a character boundary) held out for validation.
    pub val_fraction: f64,
    /// Context length: both parts must hold at least one window of `seq + 1` tokens.
    pub seq: usize,
}

impl Corpus {
    /// Reads, tokenises and splits the corpus at `path`. The character vocabulary covers the
    /// whole text (so validation has no unknown characters); BPE merges are learnt on the
    /// training part only.
    pub fn load(path: &Path, options: &CorpusOptions) -> Result<Corpus, TextError> {
        let bytes = std::fs::read(path).map_err(|source| TextError::Read {
            path: path.to_owned(),
            source,
        })?;
        Corpus::from_bytes(path, &bytes, options)
    }

    /// [`Corpus::load`] on bytes already read (`path` only names them in errors).
    pub fn from_bytes(
        path: &Path,
        bytes: &[u8],
        options: &CorpusOptions,
    ) -> Result<Corpus, TextError> {
        if !(options.val_fraction > 0.0 && options.val_fraction < 1.0) {
            return Err(TextError::Config(format!(
                "data.val_fraction must be in (0, 1), got {}",
                options.val_fraction
            )));
        }
        let mut cut = ((1.0 - options.val_fraction) * bytes.len() as f64) as usize;
        // Cut at a UTF-8 character boundary.
        while cut < bytes.len() && (bytes[cut] & 0xC0) == 0x80 {
            cut += 1;
        }
        let (train_text, val_text) = bytes.split_at(cut);
        let tokenizer = match options.tokenizer {
            TokenizerKind::Char => {
                let text = std::str::from_utf8(bytes).map_err(|e| TextError::NotUtf8 {
                    path: path.to_owned(),
                    offset: e.valid_up_to(),
                })?;
                Tokenizer::char_level(text).map_err(|_| TextError::TooShort {
                    path: path.to_owned(),
                    what: "the corpus",
                    tokens: 0,
                    seq: options.seq,
                    needed: 2 * (options.seq + 1),
                })?
            }
            TokenizerKind::Bpe => Tokenizer::train_bpe(train_text, options.bpe_vocab)?,
        };
        let train = tokenizer.encode_bytes(train_text)?;
        let val = tokenizer.encode_bytes(val_text)?;
        for (what, part) in [("the training part", &train), ("the validation part", &val)] {
            if part.len() < options.seq + 1 {
                return Err(TextError::TooShort {
                    path: path.to_owned(),
                    what,
                    tokens: part.len(),
                    seq: options.seq,
                    needed: options.seq + 1,
                });
            }
        }
        Ok(Corpus {
            tokenizer,
            train,
            val,
        })
    }
}

/// Random training windows: sequence `b` of step `step` starts at a position drawn from the
/// counter-based RNG keyed by `(seed, step, b)`, so any step's batch is known without replaying
/// the run (resuming needs no data-loader state). Fills `ids` and next-token `targets`
/// (`batch · seq` each, sequence-major).
pub fn train_batch(
    tokens: &[u32],
    seq: usize,
    batch: usize,
    seed: u32,
    step: u64,
    ids: &mut Vec<u32>,
    targets: &mut Vec<u32>,
) {
    assert!(tokens.len() > seq, "Corpus::load guarantees a window");
    ids.clear();
    targets.clear();
    let starts = (tokens.len() - seq) as u32;
    for b in 0..batch {
        let mut rng = Counter::new(RngKey::new(seed, Stream::Shuffle, step as u32, b as u32));
        let s = rng.below(starts) as usize;
        ids.extend_from_slice(&tokens[s..s + seq]);
        targets.extend_from_slice(&tokens[s + 1..s + seq + 1]);
    }
}

/// The validation windows: start positions of consecutive, non-overlapping windows of `seq`
/// tokens (plus the next-token target) over the validation part, as many whole groups of `batch`
/// as fit (the model's batch is fixed, so up to `batch − 1` trailing windows are left out).
pub fn val_windows(tokens: &[u32], seq: usize, batch: usize) -> Vec<usize> {
    let n = (tokens.len().saturating_sub(1) / seq) / batch * batch;
    (0..n).map(|i| i * seq).collect()
}

/// Fills `ids` / `targets` with the windows starting at `starts` (see [`train_batch`]).
pub fn windows(
    tokens: &[u32],
    seq: usize,
    starts: &[usize],
    ids: &mut Vec<u32>,
    targets: &mut Vec<u32>,
) {
    ids.clear();
    targets.clear();
    for &s in starts {
        ids.extend_from_slice(&tokens[s..s + seq]);
        targets.extend_from_slice(&tokens[s + 1..s + seq + 1]);
    }
}

/// Pre-tokenisation: a run of letters/digits/non-ASCII bytes with at most one leading space, or
/// any other single byte.
fn words(text: &[u8]) -> impl Iterator<Item = &[u8]> {
    let word = |b: u8| b.is_ascii_alphanumeric() || b >= 0x80 || b == b'\'';
    let mut i = 0;
    std::iter::from_fn(move || {
        if i >= text.len() {
            return None;
        }
        let start = i;
        if text[i] == b' ' && i + 1 < text.len() && word(text[i + 1]) {
            i += 1;
        }
        if word(text[i]) {
            while i < text.len() && word(text[i]) {
                i += 1;
            }
        } else {
            i += 1;
        }
        Some(&text[start..i])
    })
}

fn merge_pair(w: &mut Vec<u32>, pair: (u32, u32), id: u32) {
    let mut out = 0;
    let mut i = 0;
    while i < w.len() {
        if i + 1 < w.len() && (w[i], w[i + 1]) == pair {
            w[out] = id;
            i += 2;
        } else {
            w[out] = w[i];
            i += 1;
        }
        out += 1;
    }
    w.truncate(out);
}

/// BPE of one word: repeatedly apply the lowest-ranked merge present.
fn bpe_word(word: &[u8], rank: &HashMap<(u32, u32), u32>) -> Vec<u32> {
    let mut w: Vec<u32> = word.iter().map(|&b| u32::from(b)).collect();
    loop {
        let best = w
            .windows(2)
            .filter_map(|p| rank.get(&(p[0], p[1])).map(|&r| (r, (p[0], p[1]))))
            .min();
        let Some((r, pair)) = best else { return w };
        merge_pair(&mut w, pair, 256 + r);
    }
}

fn expand(t: u32, merges: &[(u32, u32)], out: &mut Vec<u8>) {
    if t < 256 {
        out.push(t as u8);
    } else {
        let (a, b) = merges[(t - 256) as usize];
        expand(a, merges, out);
        expand(b, merges, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str =
        "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n";

    fn options(tokenizer: TokenizerKind, seq: usize) -> CorpusOptions {
        CorpusOptions {
            tokenizer,
            bpe_vocab: 300,
            val_fraction: 0.25,
            seq,
        }
    }

    #[test]
    fn char_level_round_trips_and_rejects_unknown_characters() {
        let t = Tokenizer::char_level(TEXT).unwrap();
        let ids = t.encode(TEXT).unwrap();
        assert_eq!(ids.len(), TEXT.chars().count());
        assert_eq!(t.decode(&ids).unwrap(), TEXT);
        assert!(matches!(t.encode("xyz@"), Err(TextError::UnknownChar(_))));
        assert!(t.decode(&[t.vocab_size() as u32]).is_err());
        assert!(Tokenizer::char_level("").is_err());
    }

    #[test]
    fn bpe_compresses_round_trips_and_is_deterministic() {
        let text = TEXT.repeat(20) + "naïve café ünïcode";
        let t = Tokenizer::train_bpe(text.as_bytes(), 320).unwrap();
        assert!(t.vocab_size() > 256 && t.vocab_size() <= 320);
        let ids = t.encode(&text).unwrap();
        assert!(
            ids.len() * 3 < text.len(),
            "{} tokens for {} bytes",
            ids.len(),
            text.len()
        );
        assert_eq!(t.decode(&ids).unwrap(), text);
        // Text never seen still encodes (byte fallback) and round-trips.
        let other = "Zebra! 12 µs";
        assert_eq!(t.decode(&t.encode(other).unwrap()).unwrap(), other);
        assert_eq!(t, Tokenizer::train_bpe(text.as_bytes(), 320).unwrap());
        assert!(Tokenizer::train_bpe(b"abc", 256).is_err());
    }

    #[test]
    fn corpus_splits_contiguously_and_checks_its_length() {
        let path = Path::new("mem.txt");
        let c =
            Corpus::from_bytes(path, TEXT.as_bytes(), &options(TokenizerKind::Char, 8)).unwrap();
        let all = c.tokenizer.encode(TEXT).unwrap();
        assert_eq!([c.train.clone(), c.val.clone()].concat(), all);
        assert!((c.val.len() as f64 / all.len() as f64 - 0.25).abs() < 0.02);
        let err = Corpus::from_bytes(path, TEXT.as_bytes(), &options(TokenizerKind::Char, 40))
            .unwrap_err();
        assert!(err.to_string().contains("validation part"), "{err}");
        let err = Corpus::from_bytes(path, b"", &options(TokenizerKind::Char, 4)).unwrap_err();
        assert!(matches!(err, TextError::TooShort { .. }), "{err}");
        let err =
            Corpus::from_bytes(path, b"ab\xffcd", &options(TokenizerKind::Char, 1)).unwrap_err();
        assert!(matches!(err, TextError::NotUtf8 { offset: 2, .. }), "{err}");
        let bad = CorpusOptions {
            val_fraction: 1.0,
            ..options(TokenizerKind::Char, 4)
        };
        assert!(Corpus::from_bytes(path, TEXT.as_bytes(), &bad).is_err());
        let err = Corpus::load(Path::new("/nonexistent/input.txt"), &bad).unwrap_err();
        assert!(err.to_string().contains("data.corpus"), "{err}");
        let c = Corpus::from_bytes(
            path,
            TEXT.repeat(5).as_bytes(),
            &options(TokenizerKind::Bpe, 8),
        )
        .unwrap();
        assert!(c.tokenizer.vocab_size() > 256);
    }

    #[test]
    fn batches_are_keyed_windows_and_val_windows_cover_the_split() {
        let tokens: Vec<u32> = (0..100).collect();
        let (mut ids, mut targets) = (Vec::new(), Vec::new());
        train_batch(&tokens, 10, 3, 7, 5, &mut ids, &mut targets);
        assert_eq!(ids.len(), 30);
        for b in 0..3 {
            for i in 0..10 {
                assert_eq!(targets[b * 10 + i], ids[b * 10 + i] + 1);
            }
        }
        let (again, _) = {
            let (mut i2, mut t2) = (Vec::new(), Vec::new());
            train_batch(&tokens, 10, 3, 7, 5, &mut i2, &mut t2);
            (i2, t2)
        };
        assert_eq!(ids, again, "same key, same batch");
        let (mut other, mut t2) = (Vec::new(), Vec::new());
        train_batch(&tokens, 10, 3, 7, 6, &mut other, &mut t2);
        assert_ne!(ids, other, "another step, another batch");
        let starts = val_windows(&tokens, 10, 4);
        assert_eq!(
            starts,
            [0, 10, 20, 30, 40, 50, 60, 70],
            "9 whole windows, 2 batches of 4"
        );
        windows(&tokens, 10, &starts[..2], &mut ids, &mut targets);
        assert_eq!(ids[10], 10);
        assert_eq!(targets[19], 20);
        assert!(val_windows(&tokens, 10, 16).is_empty());
    }
}
