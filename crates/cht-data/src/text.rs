//! Text corpora for the language model: a character-level tokenizer, a byte-level BPE tokenizer
//! trained on the corpus itself with the Hugging Face `tokenizers` library (cached on disk), a
//! user's `tokenizer.json`, the contiguous train/validation split, and deterministic batches.
//!
//! Tiny-shakespeare is not in any registry, so the corpus is always a path the user gives (the
//! repository's `../shared/data/tinyshakespeare/input.txt`, or any UTF-8 / byte text). Nothing here
//! touches the network.
//!
//! # The BPE cache
//!
//! [`Corpus::load`] with [`TokenizerKind::Bpe`] trains once per training text and vocabulary size:
//! the `tokenizer.json` goes next to the corpus as `<corpus>.cht-tokenizer-<key>.json` (or, when
//! that folder is not writable, into [`CorpusOptions::cache_dir`] / [`default_cache_dir`]), where
//! `<key>` ([`cache_key`]) hashes the training part's bytes, the vocabulary size, the tokenizer
//! kind and the `tokenizers` version. Later loads read it instead of training.
//!
//! The library is native only: on wasm32, [`TokenizerKind::Bpe`] falls back to the hand-written
//! trainer ([`Tokenizer::train_bpe`]) and [`TokenizerKind::File`] is an error.

#[cfg(not(target_arch = "wasm32"))]
mod hf;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

#[cfg(not(target_arch = "wasm32"))]
pub use hf::{
    BpeTrainingTimes, HfTokenizer, MAX_TOKENIZER_FILE_BYTES, TOKENIZERS_VERSION,
    bench_bpe_training, cache_key, cached_byte_level_bpe, default_cache_dir,
};

use cht_sparse::io::{FileError, read_bounded};
use cht_sparse::rng::{Counter, RngKey, Stream};
use serde::{Deserialize, Serialize};

/// The largest corpus [`Corpus::load`] reads: 2 GiB (tiny-shakespeare is 1 MB).
pub const MAX_CORPUS_BYTES: u64 = 2 << 30;

/// The largest vocabulary of either tokenizer: 65 536 tokens (character level: distinct
/// characters; BPE: 256 bytes plus at most 65 280 merges).
pub const MAX_VOCAB: usize = 65_536;

/// The most bytes one BPE token may stand for: 65 536. Training never learns a longer token and a
/// loaded tokenizer with one is rejected, so decoding `n` tokens yields at most `n · 65 536`
/// bytes, however the merges nest.
pub const MAX_TOKEN_BYTES: usize = 1 << 16;

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
    /// The corpus is not a regular file, or larger than [`MAX_CORPUS_BYTES`].
    #[error(
        "{source}; pass the path of a text file of at most {MAX_CORPUS_BYTES} bytes as data.corpus"
    )]
    File {
        /// What the bounded reader refused.
        #[source]
        source: FileError,
    },
    /// A tokenizer (from a checkpoint or a file) that no training could have produced.
    #[error("invalid tokenizer: {0}")]
    InvalidTokenizer(String),
    /// A `tokenizer.json` (`data.tokenizer_file`) that cannot be read or parsed.
    #[error(
        "cannot use the tokenizer file {path}: {message}; pass a tokenizer.json written by the \
         Hugging Face tokenizers library as data.tokenizer_file"
    )]
    TokenizerFile {
        /// The file given.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
}

/// Which tokenizer to build from a corpus.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TokenizerKind {
    /// One token per Unicode character seen in the corpus (sorted).
    Char,
    /// Byte-level BPE: 256 byte tokens plus merges learnt from the training part with the
    /// `tokenizers` library (cached; see the [module documentation](self)).
    Bpe,
    /// A `tokenizer.json` of the user's ([`CorpusOptions::tokenizer_file`]).
    File,
}

/// A tokenizer, serialisable so that a checkpoint carries its own.
///
/// Deserialisation validates (see [`Tokenizer::validate`]), so a tokenizer read from a checkpoint
/// or any file is one that training could have produced: a character vocabulary that is
/// non-empty, sorted, without repeats and at most [`MAX_VOCAB`] long; hand-written BPE merges (at
/// most [`MAX_VOCAB`] − 256) where merge `i` only combines tokens below `256 + i` and no token
/// stands for more than [`MAX_TOKEN_BYTES`] bytes; a `tokenizer.json` that the `tokenizers`
/// library parses, with 1 to [`MAX_VOCAB`] dense ids.
///
/// ```rust
/// use cht_data::Tokenizer;
///
/// let ok: Tokenizer = serde_json::from_str(r#"{"Bpe":{"merges":[[104,105],[256,33]]}}"#)?;
/// assert_eq!(ok.decode(&[257])?, "hi!");
/// // Merge 0 (token 256) may not use itself.
/// assert!(serde_json::from_str::<Tokenizer>(r#"{"Bpe":{"merges":[[256,1]]}}"#).is_err());
/// assert!(serde_json::from_str::<Tokenizer>(r#"{"Char":{"chars":["b","a"]}}"#).is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawTokenizer")]
pub enum Tokenizer {
    /// Character level: the sorted characters of the corpus.
    Char {
        /// Token `i` is `chars[i]`.
        chars: Vec<char>,
    },
    /// The hand-written byte-level BPE of cht before 2026-11-30: token `256 + i` is the
    /// concatenation of the two tokens of `merges[i]`. New runs use [`Tokenizer::HuggingFace`];
    /// this one is kept so that checkpoints of earlier runs still sample and resume.
    Bpe {
        /// Merges in the order they were learnt (their rank).
        merges: Vec<(u32, u32)>,
    },
    /// A tokenizer of the `tokenizers` library: the byte-level BPE cht trains, or a user's
    /// `tokenizer.json`. Serialised as `{"HuggingFace":{"json":"<tokenizer.json text>"}}`.
    #[cfg(not(target_arch = "wasm32"))]
    HuggingFace(Box<HfTokenizer>),
}

/// What a serialised tokenizer holds before it is validated (the same JSON as [`Tokenizer`]).
#[derive(Deserialize)]
enum RawTokenizer {
    Char {
        chars: Vec<char>,
    },
    Bpe {
        merges: Vec<(u32, u32)>,
    },
    HuggingFace {
        // Only parsed natively (wasm32 refuses these).
        #[cfg_attr(target_arch = "wasm32", allow(dead_code))]
        json: String,
    },
}

impl TryFrom<RawTokenizer> for Tokenizer {
    type Error = TextError;

    fn try_from(raw: RawTokenizer) -> Result<Tokenizer, TextError> {
        let tokenizer = match raw {
            RawTokenizer::Char { chars } => Tokenizer::Char { chars },
            RawTokenizer::Bpe { merges } => Tokenizer::Bpe { merges },
            #[cfg(not(target_arch = "wasm32"))]
            RawTokenizer::HuggingFace { json } => {
                return Ok(Tokenizer::HuggingFace(Box::new(HfTokenizer::from_json(
                    &json,
                )?)));
            }
            #[cfg(target_arch = "wasm32")]
            RawTokenizer::HuggingFace { .. } => {
                return Err(TextError::InvalidTokenizer(
                    "tokenizers of the tokenizers library are not available on wasm32".into(),
                ));
            }
        };
        tokenizer.validate()?;
        Ok(tokenizer)
    }
}

impl Tokenizer {
    /// Checks what deserialisation checks (see [`Tokenizer`]); the variants' fields are public, so
    /// a tokenizer built by hand may need it. [`Tokenizer::encode`] and [`Tokenizer::decode`] never
    /// panic either way, but only a valid tokenizer decodes every id below its vocabulary size.
    pub fn validate(&self) -> Result<(), TextError> {
        let bad = |m: String| Err(TextError::InvalidTokenizer(m));
        match self {
            Tokenizer::Char { chars } => {
                if chars.is_empty() {
                    return bad("the character vocabulary is empty".into());
                }
                if chars.len() > MAX_VOCAB {
                    return bad(format!(
                        "{} characters, more than the limit of {MAX_VOCAB}",
                        chars.len()
                    ));
                }
                if let Some(i) = chars.windows(2).position(|w| w.first() >= w.get(1)) {
                    return bad(format!(
                        "the characters are not sorted without repeats (at position {})",
                        i + 1
                    ));
                }
            }
            Tokenizer::Bpe { merges } => {
                if merges.len() > MAX_VOCAB - 256 {
                    return bad(format!(
                        "{} merges, more than the limit of {}",
                        merges.len(),
                        MAX_VOCAB - 256
                    ));
                }
                // Bytes each token stands for, in u64 (sums of two values ≤ MAX_TOKEN_BYTES).
                let mut len: Vec<u64> = vec![1; 256];
                for (i, &(a, b)) in merges.iter().enumerate() {
                    let id = 256 + i;
                    let (Some(&la), Some(&lb)) = (len.get(a as usize), len.get(b as usize)) else {
                        return bad(format!(
                            "merge {i} (token {id}) combines ({a}, {b}), but only tokens below \
                             {id} exist before it"
                        ));
                    };
                    let l = la + lb;
                    if l > MAX_TOKEN_BYTES as u64 {
                        return bad(format!(
                            "merge {i} (token {id}) stands for {l} bytes, more than the limit of \
                             {MAX_TOKEN_BYTES}"
                        ));
                    }
                    len.push(l);
                }
            }
            // Checked when built.
            #[cfg(not(target_arch = "wasm32"))]
            Tokenizer::HuggingFace(_) => {}
        }
        Ok(())
    }

    /// The character vocabulary of `text` (at least one character, at most [`MAX_VOCAB`]).
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
        if chars.len() > MAX_VOCAB {
            return Err(TextError::Config(format!(
                "the corpus has {} distinct characters, more than the {MAX_VOCAB} a character-level \
                 vocabulary may hold; use `data.tokenizer = \"bpe\"`",
                chars.len()
            )));
        }
        Ok(Tokenizer::Char { chars })
    }

    /// The hand-written BPE trainer of earlier versions (new runs use
    /// [`HfTokenizer::train_byte_level_bpe`], far faster; this one is kept for the wasm32 build and
    /// the benchmark [`bench_bpe_training`]). It recounts every pair for each merge.
    ///
    /// Learns byte-level BPE merges on `text` until the vocabulary has `vocab` tokens (or no pair
    /// occurs twice). Words (a letter run with its leading space, or a single other byte) are the
    /// units, so merges never cross word boundaries; ties go to the smallest pair, so training is
    /// deterministic. Pairs that would make a token longer than [`MAX_TOKEN_BYTES`] are not merged.
    pub fn train_bpe(text: &[u8], vocab: usize) -> Result<Tokenizer, TextError> {
        if !(257..=MAX_VOCAB).contains(&vocab) {
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
        // Bytes each token stands for.
        let mut token_len: Vec<usize> = vec![1; 256];
        let len_of = |lens: &[usize], t: u32| lens.get(t as usize).copied().unwrap_or(usize::MAX);
        while 256 + merges.len() < vocab {
            let mut pairs: HashMap<(u32, u32), u64> = HashMap::new();
            for (w, n) in &words {
                for p in w.windows(2) {
                    if let [a, b] = *p {
                        *pairs.entry((a, b)).or_default() += n;
                    }
                }
            }
            let best = pairs
                .into_iter()
                .filter(|&((a, b), n)| {
                    n >= 2
                        && len_of(&token_len, a).saturating_add(len_of(&token_len, b))
                            <= MAX_TOKEN_BYTES
                })
                .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0)));
            let Some((pair, _)) = best else { break };
            let id = 256 + merges.len() as u32;
            for (w, _) in &mut words {
                merge_pair(w, pair, id);
            }
            token_len.push(len_of(&token_len, pair.0).saturating_add(len_of(&token_len, pair.1)));
            merges.push(pair);
        }
        Ok(Tokenizer::Bpe { merges })
    }

    /// Number of tokens.
    pub fn vocab_size(&self) -> usize {
        match self {
            Tokenizer::Char { chars } => chars.len(),
            Tokenizer::Bpe { merges } => 256 + merges.len(),
            #[cfg(not(target_arch = "wasm32"))]
            Tokenizer::HuggingFace(t) => t.vocab_size(),
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
            #[cfg(not(target_arch = "wasm32"))]
            Tokenizer::HuggingFace(t) => t.encode_bytes(text),
        }
    }

    /// The text of `ids` (invalid UTF-8 from partial BPE byte sequences becomes U+FFFD).
    pub fn decode(&self, ids: &[u32]) -> Result<String, TextError> {
        let vocab = self.vocab_size();
        if let Some(&token) = ids.iter().find(|&&t| t as usize >= vocab) {
            return Err(TextError::UnknownToken { token, vocab });
        }
        match self {
            Tokenizer::Char { chars } => ids
                .iter()
                .map(|&t| {
                    chars
                        .get(t as usize)
                        .copied()
                        .ok_or(TextError::UnknownToken { token: t, vocab })
                })
                .collect(),
            Tokenizer::Bpe { merges } => {
                let mut bytes = Vec::new();
                let mut stack = Vec::new();
                for &t in ids {
                    expand(t, merges, &mut stack, &mut bytes)?;
                }
                Ok(String::from_utf8_lossy(&bytes).into_owned())
            }
            #[cfg(not(target_arch = "wasm32"))]
            Tokenizer::HuggingFace(t) => t.decode(ids),
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
    /// Where the tokenizer came from (trained now, read from the cache, or a user's file).
    pub tokenizer_source: TokenizerSource,
}

/// Where a corpus's tokenizer came from ([`Corpus::tokenizer_source`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenizerSource {
    /// Built from the text without the cache (the character vocabulary, a BPE trained by
    /// [`Corpus::from_bytes`], or one given to [`Corpus::load_with`]).
    Built,
    /// Trained now; `cache` is the file it was stored in (`None` when no cache folder was
    /// writable).
    Trained {
        /// The cache file written.
        cache: Option<PathBuf>,
    },
    /// Read from the cache file of an earlier training on the same text and settings.
    Cached(PathBuf),
    /// Read from the user's `tokenizer.json` ([`CorpusOptions::tokenizer_file`]).
    File(PathBuf),
}

/// How to read a corpus.
#[derive(Clone, Debug)]
pub struct CorpusOptions {
    /// Tokenizer kind.
    pub tokenizer: TokenizerKind,
    /// BPE vocabulary size (BPE only).
    pub bpe_vocab: usize,
    /// The `tokenizer.json` to use ([`TokenizerKind::File`] only).
    pub tokenizer_file: Option<PathBuf>,
    /// Where [`Corpus::load`] caches a trained BPE when the corpus's folder is not writable;
    /// `None`: [`default_cache_dir`] (native only).
    pub cache_dir: Option<PathBuf>,
    /// Fraction of the text (by bytes, cut at a character boundary) held out for validation.
    pub val_fraction: f64,
    /// Context length: both parts must hold at least one window of `seq + 1` tokens.
    pub seq: usize,
}

impl Corpus {
    /// Reads, tokenises and splits the corpus at `path`. The character vocabulary covers the
    /// whole text (so validation has no unknown characters); BPE is learnt on the training part
    /// only, once: later loads read the cached `tokenizer.json` (see the
    /// [module documentation](self)); [`TokenizerKind::File`] reads
    /// [`CorpusOptions::tokenizer_file`].
    ///
    /// The file must be a regular file of at most [`MAX_CORPUS_BYTES`].
    pub fn load(path: &Path, options: &CorpusOptions) -> Result<Corpus, TextError> {
        let bytes = read_corpus(path)?;
        Corpus::build(path, &bytes, options, true)
    }

    /// [`Corpus::load`] on bytes already read (`path` only names them in errors), without the
    /// BPE cache.
    pub fn from_bytes(
        path: &Path,
        bytes: &[u8],
        options: &CorpusOptions,
    ) -> Result<Corpus, TextError> {
        Corpus::build(path, bytes, options, false)
    }

    /// Reads and splits the corpus at `path` like [`Corpus::load`], but tokenises it with the
    /// tokenizer `make` returns from the training part (its first argument) and the whole text
    /// (the second), e.g. a checkpoint's own tokenizer, or one trained the way an earlier version
    /// did. [`CorpusOptions::tokenizer`] is not used.
    pub fn load_with(
        path: &Path,
        options: &CorpusOptions,
        make: impl FnOnce(&[u8], &[u8]) -> Result<Tokenizer, TextError>,
    ) -> Result<Corpus, TextError> {
        let bytes = read_corpus(path)?;
        let (train_text, val_text) = split(&bytes, options.val_fraction)?;
        let tokenizer = make(train_text, &bytes)?;
        Corpus::encode(
            path,
            options,
            tokenizer,
            TokenizerSource::Built,
            train_text,
            val_text,
        )
    }

    fn build(
        path: &Path,
        bytes: &[u8],
        options: &CorpusOptions,
        cache: bool,
    ) -> Result<Corpus, TextError> {
        let (train_text, val_text) = split(bytes, options.val_fraction)?;
        let (tokenizer, source) = match options.tokenizer {
            TokenizerKind::Char => {
                let text = std::str::from_utf8(bytes).map_err(|e| TextError::NotUtf8 {
                    path: path.to_owned(),
                    offset: e.valid_up_to(),
                })?;
                let t = Tokenizer::char_level(text).map_err(|_| TextError::TooShort {
                    path: path.to_owned(),
                    what: "the corpus",
                    tokens: 0,
                    seq: options.seq,
                    needed: options.seq.saturating_add(1).saturating_mul(2),
                })?;
                (t, TokenizerSource::Built)
            }
            #[cfg(not(target_arch = "wasm32"))]
            TokenizerKind::Bpe if cache => {
                let fallback = options.cache_dir.clone().or_else(default_cache_dir);
                let (t, source) = cached_byte_level_bpe(
                    path,
                    train_text,
                    options.bpe_vocab,
                    fallback.as_deref(),
                )?;
                (Tokenizer::HuggingFace(Box::new(t)), source)
            }
            #[cfg(not(target_arch = "wasm32"))]
            TokenizerKind::Bpe => (
                Tokenizer::HuggingFace(Box::new(HfTokenizer::train_byte_level_bpe(
                    train_text,
                    options.bpe_vocab,
                )?)),
                TokenizerSource::Built,
            ),
            #[cfg(target_arch = "wasm32")]
            TokenizerKind::Bpe => {
                let _ = cache;
                (
                    Tokenizer::train_bpe(train_text, options.bpe_vocab)?,
                    TokenizerSource::Built,
                )
            }
            TokenizerKind::File => {
                let Some(file) = &options.tokenizer_file else {
                    return Err(TextError::Config(
                        "data.tokenizer = \"file\" needs data.tokenizer_file, the path of a \
                         tokenizer.json"
                            .into(),
                    ));
                };
                #[cfg(not(target_arch = "wasm32"))]
                {
                    (
                        Tokenizer::HuggingFace(Box::new(HfTokenizer::from_file(file)?)),
                        TokenizerSource::File(file.clone()),
                    )
                }
                #[cfg(target_arch = "wasm32")]
                {
                    return Err(TextError::TokenizerFile {
                        path: file.clone(),
                        message: "tokenizer files are not supported on wasm32".into(),
                    });
                }
            }
        };
        Corpus::encode(path, options, tokenizer, source, train_text, val_text)
    }

    fn encode(
        path: &Path,
        options: &CorpusOptions,
        tokenizer: Tokenizer,
        tokenizer_source: TokenizerSource,
        train_text: &[u8],
        val_text: &[u8],
    ) -> Result<Corpus, TextError> {
        let train = tokenizer.encode_bytes(train_text)?;
        let val = tokenizer.encode_bytes(val_text)?;
        for (what, part) in [("the training part", &train), ("the validation part", &val)] {
            let needed = options.seq.saturating_add(1);
            if part.len() < needed {
                return Err(TextError::TooShort {
                    path: path.to_owned(),
                    what,
                    tokens: part.len(),
                    seq: options.seq,
                    needed,
                });
            }
        }
        Ok(Corpus {
            tokenizer,
            train,
            val,
            tokenizer_source,
        })
    }
}

fn read_corpus(path: &Path) -> Result<Vec<u8>, TextError> {
    read_bounded(path, "corpus", MAX_CORPUS_BYTES).map_err(|e| match e {
        FileError::Io { source, .. } => TextError::Read {
            path: path.to_owned(),
            source,
        },
        source => TextError::File { source },
    })
}

/// The training part (the first `1 − val_fraction` of the bytes, cut at a UTF-8 character
/// boundary) and the validation part.
fn split(bytes: &[u8], val_fraction: f64) -> Result<(&[u8], &[u8]), TextError> {
    if !(val_fraction > 0.0 && val_fraction < 1.0) {
        return Err(TextError::Config(format!(
            "data.val_fraction must be in (0, 1), got {val_fraction}"
        )));
    }
    let mut cut = ((1.0 - val_fraction) * bytes.len() as f64) as usize;
    while cut < bytes.len() && (bytes[cut] & 0xC0) == 0x80 {
        cut += 1;
    }
    Ok(bytes.split_at(cut))
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

/// Appends the bytes of token `t`, iteratively (an explicit stack, so a deep chain of merges
/// cannot overflow the call stack). Every merge may only refer to smaller tokens, so this ends
/// even for a tokenizer built by hand; a merge that does not is an error.
fn expand(
    t: u32,
    merges: &[(u32, u32)],
    stack: &mut Vec<u32>,
    out: &mut Vec<u8>,
) -> Result<(), TextError> {
    stack.clear();
    stack.push(t);
    while let Some(t) = stack.pop() {
        if let Ok(byte) = u8::try_from(t) {
            out.push(byte);
            continue;
        }
        let merge = usize::try_from(t - 256).ok().and_then(|i| merges.get(i));
        match merge {
            Some(&(a, b)) if a < t && b < t => {
                stack.push(b);
                stack.push(a);
            }
            _ => {
                return Err(TextError::InvalidTokenizer(format!(
                    "token {t} does not expand to bytes (its merge refers to itself, a later \
                     token or nothing)"
                )));
            }
        }
    }
    Ok(())
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
            tokenizer_file: None,
            cache_dir: None,
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
    fn deserialised_tokenizers_are_validated_and_the_format_is_unchanged() {
        let bpe = Tokenizer::train_bpe(TEXT.repeat(20).as_bytes(), 300).unwrap();
        let json = serde_json::to_string(&bpe).unwrap();
        assert!(json.starts_with(r#"{"Bpe":{"merges":[["#), "{json}");
        assert_eq!(serde_json::from_str::<Tokenizer>(&json).unwrap(), bpe);
        let chars = Tokenizer::char_level("ba").unwrap();
        let json = serde_json::to_string(&chars).unwrap();
        assert_eq!(json, r#"{"Char":{"chars":["a","b"]}}"#);
        assert_eq!(serde_json::from_str::<Tokenizer>(&json).unwrap(), chars);
        for (bad, needle) in [
            (r#"{"Char":{"chars":[]}}"#, "empty"),
            (r#"{"Char":{"chars":["a","a"]}}"#, "repeats"),
            (r#"{"Bpe":{"merges":[[256,1]]}}"#, "below 256"),
            (r#"{"Bpe":{"merges":[[1,2],[258,1]]}}"#, "below 257"),
            (r#"{"Bpe":{"merges":[[4294967295,1]]}}"#, "below 256"),
        ] {
            let err = serde_json::from_str::<Tokenizer>(bad).unwrap_err();
            assert!(err.to_string().contains(needle), "{bad}: {err}");
        }
        // Each merge doubling the last: 2^17 bytes for one token is over the limit.
        let mut merges = vec![(97, 97)];
        merges.extend((0..16).map(|i| (256 + i, 256 + i)));
        let err = Tokenizer::Bpe { merges }.validate().unwrap_err();
        assert!(err.to_string().contains("131072 bytes"), "{err}");
        // A tokenizer built by hand with a self-reference decodes to an error, not a crash.
        let cyclic = Tokenizer::Bpe {
            merges: vec![(256, 97)],
        };
        assert!(cyclic.validate().is_err());
        assert!(cyclic.decode(&[256]).is_err());
        // Training never learns a token longer than MAX_TOKEN_BYTES.
        let long = "a".repeat(3 * MAX_TOKEN_BYTES);
        let t = Tokenizer::train_bpe(long.as_bytes(), 300).unwrap();
        t.validate().unwrap();
        assert_eq!(t.decode(&t.encode(&long).unwrap()).unwrap(), long);
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
        let err = Corpus::load(&std::env::temp_dir(), &bad).unwrap_err();
        assert!(
            err.to_string().contains("a directory") && err.to_string().contains("data.corpus"),
            "{err}"
        );
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
