//! Byte-level BPE through the Hugging Face `tokenizers` library (native targets only): training,
//! `tokenizer.json` I/O, the on-disk cache of trained tokenizers and the training benchmark
//! against the hand-written trainer of earlier versions.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cht_sparse::io::{FileError, read_bounded, write_atomic};
use serde::{Serialize, Serializer};
use tokenizers::decoders::byte_level::ByteLevel;
use tokenizers::models::bpe::{BPE, BpeTrainer};
use tokenizers::models::{ModelWrapper, TrainerWrapper};

use super::{MAX_TOKEN_BYTES, MAX_VOCAB, TextError, Tokenizer, TokenizerSource};

/// The `tokenizers` release line this build uses; part of the cache key, so a cached tokenizer is
/// retrained when the library (and possibly its training) changes.
pub const TOKENIZERS_VERSION: &str = "0.22";

/// The largest `tokenizer.json` [`HfTokenizer::from_file`] reads: 256 MiB.
pub const MAX_TOKENIZER_FILE_BYTES: u64 = 256 << 20;

/// Texts are encoded in pieces of about this many bytes (cut where a line ends and the next one
/// starts with a non-space character, where the byte-level pre-tokenizer always splits), in
/// parallel and without the per-character offsets of one huge encoding.
const CHUNK_BYTES: usize = 1 << 16;

/// A tokenizer of the Hugging Face `tokenizers` library with its `tokenizer.json` text: a
/// byte-level BPE that cht trained ([`HfTokenizer::train_byte_level_bpe`]) or any tokenizer a
/// user supplies as a `tokenizer.json` ([`HfTokenizer::from_file`]).
///
/// Two are equal when their canonical `tokenizer.json` texts (as the library writes them) are.
/// It serialises (inside [`Tokenizer`]) as `{"json": "<tokenizer.json text>"}`, so a checkpoint
/// carries its tokenizer whole.
#[derive(Clone)]
pub struct HfTokenizer {
    inner: tokenizers::Tokenizer,
    /// Canonical `tokenizer.json` text (compact).
    json: String,
    /// Token ids are below this (with added tokens).
    vocab: usize,
    /// Whether texts may be encoded in pieces ([`chunks`]); false for tokenizers whose ids of
    /// pieces differ from those of the whole (e.g. one adding a space in front of each text).
    chunked: bool,
}

impl fmt::Debug for HfTokenizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HfTokenizer")
            .field("vocab", &self.vocab)
            .field("json_bytes", &self.json.len())
            .finish()
    }
}

impl PartialEq for HfTokenizer {
    fn eq(&self, other: &Self) -> bool {
        self.json == other.json
    }
}

impl Serialize for HfTokenizer {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Raw<'a> {
            json: &'a str,
        }
        Raw { json: &self.json }.serialize(s)
    }
}

fn lib_error(e: impl fmt::Display) -> String {
    e.to_string()
}

impl HfTokenizer {
    /// Learns a byte-level BPE (the GPT-2 pre-tokenizer and decoder, no prefix space) on `text`
    /// with the library's `BpeTrainer` until the vocabulary has `vocab` tokens (256 bytes plus
    /// merges) or no pair occurs twice. Training is deterministic: the same text and size give
    /// the same `tokenizer.json`. Bytes that are not UTF-8 are read as U+FFFD.
    pub fn train_byte_level_bpe(text: &[u8], vocab: usize) -> Result<HfTokenizer, TextError> {
        if !(257..=MAX_VOCAB).contains(&vocab) {
            return Err(TextError::Config(format!(
                "data.bpe_vocab must be in 257..=65536 (256 bytes plus merges), got {vocab}"
            )));
        }
        let text = String::from_utf8_lossy(text);
        let trainer = BpeTrainer::builder()
            .vocab_size(vocab)
            .min_frequency(2)
            .show_progress(false)
            .initial_alphabet(
                tokenizers::pre_tokenizers::byte_level::ByteLevel::alphabet()
                    .into_iter()
                    .collect(),
            )
            .max_token_length(Some(MAX_TOKEN_BYTES))
            .build();
        let mut trainer = TrainerWrapper::BpeTrainer(trainer);
        let mut tokenizer = tokenizers::Tokenizer::new(ModelWrapper::BPE(BPE::default()));
        tokenizer
            .with_pre_tokenizer(Some(byte_level()))
            .with_decoder(Some(byte_level()));
        tokenizer
            .train(&mut trainer, chunks(&text).into_iter())
            .map_err(|e| TextError::InvalidTokenizer(format!("BPE training failed: {e}")))?;
        let json = tokenizer.to_string(false).map_err(|e| {
            TextError::InvalidTokenizer(format!("cannot serialise the tokenizer: {e}"))
        })?;
        HfTokenizer::from_json(&json)
    }

    /// Parses a `tokenizer.json` text (any model of the library). Padding and truncation are
    /// turned off (a corpus is one stream of tokens); the vocabulary, added tokens included, must
    /// have between 1 and [`MAX_VOCAB`] tokens.
    pub fn from_json(json: &str) -> Result<HfTokenizer, TextError> {
        let mut inner: tokenizers::Tokenizer = json
            .parse()
            .map_err(|e| TextError::InvalidTokenizer(format!("not a tokenizer.json: {e}")))?;
        inner.with_padding(None);
        inner
            .with_truncation(None)
            .map_err(|e| TextError::InvalidTokenizer(lib_error(e)))?;
        let vocab = inner.get_vocab_size(true);
        if vocab == 0 || vocab > MAX_VOCAB {
            return Err(TextError::InvalidTokenizer(format!(
                "its vocabulary has {vocab} tokens; cht models take 1 to {MAX_VOCAB}"
            )));
        }
        // Added tokens may have ids past the model's vocabulary: ids must stay below `vocab`.
        if let Some(max) = inner.get_vocab(true).values().max()
            && *max as usize >= vocab
        {
            return Err(TextError::InvalidTokenizer(format!(
                "token id {max} is not below its vocabulary size {vocab} (ids must be dense)"
            )));
        }
        let json = inner.to_string(false).map_err(|e| {
            TextError::InvalidTokenizer(format!("cannot serialise the tokenizer: {e}"))
        })?;
        let mut t = HfTokenizer {
            inner,
            json,
            vocab,
            chunked: false,
        };
        // Pieces cut as `chunks` does must encode as the whole does: probe it.
        let probe = "Ab cd.\nEf  gh\n\nIj, 'kl'\nMn\n";
        let whole = t.encode(probe)?;
        let mut pieces = Vec::new();
        for piece in ["Ab cd.\n", "Ef  gh\n\n", "Ij, 'kl'\n", "Mn\n"] {
            pieces.extend(t.encode(piece)?);
        }
        t.chunked = whole == pieces;
        Ok(t)
    }

    /// Reads a `tokenizer.json` (at most [`MAX_TOKENIZER_FILE_BYTES`]) written by the
    /// `tokenizers` library (Python or Rust) or by cht.
    pub fn from_file(path: &Path) -> Result<HfTokenizer, TextError> {
        let file_error = |message: String| TextError::TokenizerFile {
            path: path.to_owned(),
            message,
        };
        let bytes = read_bounded(path, "tokenizer", MAX_TOKENIZER_FILE_BYTES).map_err(|e| {
            file_error(match e {
                FileError::Io { source, .. } => source.to_string(),
                other => other.to_string(),
            })
        })?;
        let text = std::str::from_utf8(&bytes)
            .map_err(|e| file_error(format!("not UTF-8 (at byte {})", e.valid_up_to())))?;
        HfTokenizer::from_json(text).map_err(|e| match e {
            TextError::InvalidTokenizer(m) => file_error(m),
            other => other,
        })
    }

    /// The canonical `tokenizer.json` text (compact).
    pub fn json(&self) -> &str {
        &self.json
    }

    /// Number of token ids (added tokens included).
    pub fn vocab_size(&self) -> usize {
        self.vocab
    }

    /// Token ids of `text` (no special tokens are added).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, TextError> {
        let pieces = if self.chunked {
            chunks(text)
        } else {
            vec![text]
        };
        let encodings = self
            .inner
            .encode_batch_fast(pieces, false)
            .map_err(|e| TextError::InvalidTokenizer(format!("encoding failed: {e}")))?;
        let mut ids = Vec::with_capacity(encodings.iter().map(|e| e.len()).sum());
        for e in &encodings {
            ids.extend_from_slice(e.get_ids());
        }
        if let Some(&token) = ids.iter().find(|&&t| t as usize >= self.vocab) {
            return Err(TextError::UnknownToken {
                token,
                vocab: self.vocab,
            });
        }
        Ok(ids)
    }

    /// Token ids of bytes (invalid UTF-8 is read as U+FFFD).
    pub(super) fn encode_bytes(&self, text: &[u8]) -> Result<Vec<u32>, TextError> {
        self.encode(&String::from_utf8_lossy(text))
    }

    /// The text of `ids` (special tokens kept).
    pub fn decode(&self, ids: &[u32]) -> Result<String, TextError> {
        if let Some(&token) = ids.iter().find(|&&t| t as usize >= self.vocab) {
            return Err(TextError::UnknownToken {
                token,
                vocab: self.vocab,
            });
        }
        self.inner
            .decode(ids, false)
            .map_err(|e| TextError::InvalidTokenizer(format!("decoding failed: {e}")))
    }
}

/// The byte-level pre-tokenizer / decoder: GPT-2's split, no space added in front of a text (so
/// decoding gives back exactly the text encoded).
fn byte_level() -> ByteLevel {
    ByteLevel::new(false, false, true)
}

/// `text` in pieces of about [`CHUNK_BYTES`], each cut after a `'\n'` that a non-whitespace
/// character follows: GPT-2's pre-tokenizer ends a piece there whatever comes around it, so
/// encoding the pieces gives the ids of encoding the whole.
fn chunks(text: &str) -> Vec<&str> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(text.len() / CHUNK_BYTES + 1);
    let mut start = 0;
    while start < bytes.len() {
        let mut cut = (start + CHUNK_BYTES).min(bytes.len());
        while cut < bytes.len()
            && !(bytes[cut - 1] == b'\n' && !bytes[cut].is_ascii_whitespace() && bytes[cut] < 0x80)
        {
            cut += 1;
        }
        // `cut` is the end of the text or follows an ASCII '\n': a character boundary.
        out.push(&text[start..cut]);
        start = cut;
    }
    out
}

/// The folder for cached tokenizers when the corpus's own folder is not writable:
/// `$CHT_CACHE_DIR`, else `$XDG_CACHE_HOME/cht`, else `$HOME/.cache/cht` (`None` without any).
pub fn default_cache_dir() -> Option<PathBuf> {
    let var = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    var("CHT_CACHE_DIR")
        .or_else(|| var("XDG_CACHE_HOME").map(|d| d.join("cht")))
        .or_else(|| var("HOME").map(|d| d.join(".cache").join("cht")))
}

/// The cache key of a byte-level BPE trained on `train_text` at `vocab`: 32 hexadecimal digits of
/// two 64-bit FNV-1a hashes (different offsets) over the settings, the `tokenizers` version and
/// the text, plus the text's length. Stable across builds and platforms.
pub fn cache_key(train_text: &[u8], vocab: usize) -> String {
    let settings = format!(
        "cht byte-level-bpe v1; tokenizers {TOKENIZERS_VERSION}; vocab {vocab}; bytes {}\n",
        train_text.len()
    );
    let fnv = |basis: u64| {
        let mut h = basis;
        for &b in settings.as_bytes().iter().chain(train_text) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        h
    };
    format!(
        "{:016x}{:016x}",
        fnv(0xcbf2_9ce4_8422_2325),
        fnv(0x6c62_272e_07bb_0142)
    )
}

/// The cache file names for a corpus at `corpus`: next to it, then in `fallback`.
fn cache_paths(corpus: &Path, key: &str, fallback: Option<&Path>) -> Vec<PathBuf> {
    let name = corpus
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "corpus".into());
    let file = format!("{name}.cht-tokenizer-{key}.json");
    let mut paths = vec![corpus.with_file_name(&file)];
    if let Some(dir) = fallback {
        paths.push(dir.join(&file));
    }
    paths
}

/// The byte-level BPE of `train_text` (the training part of the corpus at `corpus`) at `vocab`,
/// through the cache: if `<corpus>.cht-tokenizer-<key>.json` exists next to the corpus or in
/// `fallback` (see [`default_cache_dir`]) and parses, it is used; otherwise the tokenizer is
/// trained and written (atomically) next to the corpus, or into `fallback` when that fails. A
/// cache that cannot be written is not an error: the run just trains again next time.
pub fn cached_byte_level_bpe(
    corpus: &Path,
    train_text: &[u8],
    vocab: usize,
    fallback: Option<&Path>,
) -> Result<(HfTokenizer, TokenizerSource), TextError> {
    let key = cache_key(train_text, vocab);
    let paths = cache_paths(corpus, &key, fallback);
    for path in &paths {
        if path.is_file()
            && let Ok(t) = HfTokenizer::from_file(path)
        {
            return Ok((t, TokenizerSource::Cached(path.clone())));
        }
    }
    let tokenizer = HfTokenizer::train_byte_level_bpe(train_text, vocab)?;
    let mut written = None;
    for path in &paths {
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
            && std::fs::create_dir_all(dir).is_err()
        {
            continue;
        }
        if write_atomic(path, "tokenizer cache", tokenizer.json().as_bytes()).is_ok() {
            written = Some(path.clone());
            break;
        }
    }
    Ok((tokenizer, TokenizerSource::Trained { cache: written }))
}

/// Training times of the two BPE trainers on the same text and vocabulary size
/// ([`bench_bpe_training`]).
#[derive(Clone, Copy, Debug)]
pub struct BpeTrainingTimes {
    /// The hand-written trainer of earlier versions ([`Tokenizer::train_bpe`]).
    pub old: Duration,
    /// The `tokenizers` library's ([`HfTokenizer::train_byte_level_bpe`]).
    pub new: Duration,
    /// Vocabulary the old trainer reached.
    pub old_vocab: usize,
    /// Vocabulary the new trainer reached.
    pub new_vocab: usize,
}

impl BpeTrainingTimes {
    /// How many times faster the new trainer is.
    pub fn speedup(&self) -> f64 {
        self.old.as_secs_f64() / self.new.as_secs_f64().max(1e-9)
    }
}

/// Trains a byte-level BPE of `vocab` tokens on `text` with both trainers, one after the other,
/// and returns their wall-clock times.
pub fn bench_bpe_training(text: &[u8], vocab: usize) -> Result<BpeTrainingTimes, TextError> {
    let t = Instant::now();
    let new = HfTokenizer::train_byte_level_bpe(text, vocab)?;
    let new_time = t.elapsed();
    let t = Instant::now();
    let old = Tokenizer::train_bpe(text, vocab)?;
    let old_time = t.elapsed();
    Ok(BpeTrainingTimes {
        old: old_time,
        new: new_time,
        old_vocab: old.vocab_size(),
        new_vocab: new.vocab_size(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::TempDir;
    use crate::text::{Corpus, CorpusOptions, TokenizerKind};

    const TEXT: &str = "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\n\
                        Speak, speak.\n\nFirst Citizen:\nYou are all resolved rather to die \
                        than to famish?\n";

    fn corpus_text() -> String {
        (0..1000)
            .map(|i| format!("{TEXT}{i} naïve café {}\n", i * 7 % 13))
            .collect()
    }

    fn options(kind: TokenizerKind, file: Option<PathBuf>) -> CorpusOptions {
        CorpusOptions {
            tokenizer: kind,
            bpe_vocab: 400,
            tokenizer_file: file,
            cache_dir: None,
            val_fraction: 0.1,
            seq: 8,
        }
    }

    #[test]
    fn byte_level_bpe_round_trips_compresses_and_is_deterministic() {
        let text = corpus_text();
        assert!(text.len() > 2 * CHUNK_BYTES, "several pieces");
        let t = HfTokenizer::train_byte_level_bpe(text.as_bytes(), 400).unwrap();
        assert_eq!(t.vocab_size(), 400);
        assert!(t.chunked);
        let ids = t.encode(&text).unwrap();
        assert!(
            ids.len() * 3 < text.len(),
            "{} ids, {} bytes",
            ids.len(),
            text.len()
        );
        assert_eq!(t.decode(&ids).unwrap(), text);
        // Pieces encode as the whole does.
        assert_eq!(ids, t.inner.encode(text.as_str(), false).unwrap().get_ids());
        // Unseen text and bytes round-trip (byte fallback).
        for other in [
            "Zebra! 12 µs",
            "  leading spaces\r\n\ttabs  ",
            "日本語 🙂",
            "",
        ] {
            assert_eq!(t.decode(&t.encode(other).unwrap()).unwrap(), other);
        }
        // Deterministic: the same tokenizer.json bytes and ids.
        let again = HfTokenizer::train_byte_level_bpe(text.as_bytes(), 400).unwrap();
        assert_eq!(again.json(), t.json());
        assert_eq!(again.encode(&text).unwrap(), ids);
        assert!(matches!(
            t.decode(&[400]),
            Err(TextError::UnknownToken {
                token: 400,
                vocab: 400
            })
        ));
        assert!(HfTokenizer::train_byte_level_bpe(b"abc", 256).is_err());
        // Invalid UTF-8 is read as U+FFFD.
        assert_eq!(
            t.decode(&t.encode_bytes(b"a\xffb").unwrap()).unwrap(),
            "a\u{fffd}b"
        );
    }

    #[test]
    fn checkpoint_serialisation_embeds_the_tokenizer_json() {
        let t = Tokenizer::HuggingFace(Box::new(
            HfTokenizer::train_byte_level_bpe(corpus_text().as_bytes(), 300).unwrap(),
        ));
        let json = serde_json::to_string(&t).unwrap();
        assert!(
            json.starts_with(r#"{"HuggingFace":{"json":"{"#),
            "{}",
            &json[..60]
        );
        let back: Tokenizer = serde_json::from_str(&json).unwrap();
        assert_eq!(back, t);
        assert_eq!(back.encode(TEXT).unwrap(), t.encode(TEXT).unwrap());
        let err =
            serde_json::from_str::<Tokenizer>(r#"{"HuggingFace":{"json":"{nope"}}"#).unwrap_err();
        assert!(err.to_string().contains("not a tokenizer.json"), "{err}");
    }

    #[test]
    fn the_cache_is_written_once_and_read_on_the_second_load() {
        let dir = TempDir::new("bpe-cache");
        let path = dir.path().join("input.txt");
        std::fs::write(&path, corpus_text()).unwrap();
        let opts = options(TokenizerKind::Bpe, None);
        let first = Corpus::load(&path, &opts).unwrap();
        let TokenizerSource::Trained { cache: Some(cache) } = &first.tokenizer_source else {
            panic!("{:?}", first.tokenizer_source);
        };
        assert_eq!(cache.parent(), Some(dir.path()));
        let name = cache.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            name.starts_with("input.txt.cht-tokenizer-") && name.ends_with(".json"),
            "{name}"
        );
        let modified = std::fs::metadata(cache).unwrap().modified().unwrap();
        let second = Corpus::load(&path, &opts).unwrap();
        assert_eq!(
            second.tokenizer_source,
            TokenizerSource::Cached(cache.clone())
        );
        assert_eq!(
            std::fs::metadata(cache).unwrap().modified().unwrap(),
            modified
        );
        assert_eq!(second.tokenizer, first.tokenizer);
        assert_eq!(
            (second.train, second.val),
            (first.train.clone(), first.val.clone())
        );
        // The cached file is the tokenizer's json, byte for byte.
        let Tokenizer::HuggingFace(t) = &first.tokenizer else {
            panic!()
        };
        assert_eq!(std::fs::read_to_string(cache).unwrap(), t.json());
        // Another vocabulary size is another key; a corrupt cache file is trained over.
        let other = Corpus::load(
            &path,
            &CorpusOptions {
                bpe_vocab: 300,
                ..opts.clone()
            },
        )
        .unwrap();
        assert!(matches!(
            other.tokenizer_source,
            TokenizerSource::Trained { .. }
        ));
        std::fs::write(cache, "{ corrupt").unwrap();
        let third = Corpus::load(&path, &opts).unwrap();
        assert!(matches!(
            third.tokenizer_source,
            TokenizerSource::Trained { .. }
        ));
        assert_eq!(third.tokenizer, first.tokenizer);
        // Without a writable corpus folder, the fallback folder is used.
        let fallback = TempDir::new("bpe-cache-fallback");
        let (_, source) = cached_byte_level_bpe(
            Path::new("/proc/nonexistent/input.txt"),
            b"abab abab",
            258,
            Some(fallback.path()),
        )
        .unwrap();
        let TokenizerSource::Trained { cache: Some(c) } = source else {
            panic!("{source:?}")
        };
        assert_eq!(c.parent(), Some(fallback.path()));
        // Keys depend on the text and the settings.
        assert_ne!(cache_key(b"abc", 300), cache_key(b"abd", 300));
        assert_ne!(cache_key(b"abc", 300), cache_key(b"abc", 301));
        assert_eq!(cache_key(b"abc", 300).len(), 32);
    }

    /// A `tokenizer.json` the library writes itself (not through cht): a GPT-2 style byte-level
    /// BPE with a prefix space, built from a vocabulary and merges.
    fn library_tokenizer() -> tokenizers::Tokenizer {
        use tokenizers::pre_tokenizers::byte_level::ByteLevel as Pre;
        let mut vocab: tokenizers::models::bpe::Vocab = Pre::alphabet()
            .into_iter()
            .map(|c| c.to_string())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .enumerate()
            .map(|(i, s)| (s, i as u32))
            .collect();
        let merges: Vec<(String, String)> = [("Ġ", "s"), ("p", "e"), ("Ġs", "pe"), ("a", "k")]
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        for (a, b) in &merges {
            let n = vocab.len() as u32;
            vocab.insert(format!("{a}{b}"), n);
        }
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .build()
            .unwrap();
        let mut t = tokenizers::Tokenizer::new(bpe);
        t.with_pre_tokenizer(Some(Pre::default()));
        t.with_decoder(Some(ByteLevel::default()));
        t
    }

    #[test]
    fn a_tokenizer_json_of_the_library_loads_and_gives_its_ids() {
        let dir = TempDir::new("tokenizer-file");
        let file = dir.path().join("tokenizer.json");
        let lib = library_tokenizer();
        lib.save(&file, true).unwrap();
        let ours = HfTokenizer::from_file(&file).unwrap();
        // A prefix space per text: encoded whole, not in pieces.
        assert!(!ours.chunked);
        for text in [TEXT, "speak speak", &corpus_text()] {
            let expected = lib.encode(text, false).unwrap().get_ids().to_vec();
            assert_eq!(ours.encode(text).unwrap(), expected);
        }
        // Through the corpus options.
        let corpus_path = dir.path().join("input.txt");
        std::fs::write(&corpus_path, corpus_text()).unwrap();
        let c = Corpus::load(
            &corpus_path,
            &options(TokenizerKind::File, Some(file.clone())),
        )
        .unwrap();
        assert_eq!(c.tokenizer_source, TokenizerSource::File(file.clone()));
        assert_eq!(c.tokenizer.vocab_size(), lib.get_vocab_size(true));
        // cht's own trained tokenizer, saved by cht, loads back the same.
        let trained = HfTokenizer::train_byte_level_bpe(corpus_text().as_bytes(), 300).unwrap();
        std::fs::write(&file, trained.json()).unwrap();
        assert_eq!(HfTokenizer::from_file(&file).unwrap(), trained);
    }

    #[test]
    fn bad_tokenizer_files_are_clear_errors() {
        let dir = TempDir::new("tokenizer-bad");
        let file = dir.path().join("tokenizer.json");
        let corpus_path = dir.path().join("input.txt");
        std::fs::write(&corpus_path, corpus_text()).unwrap();
        let cases: [(&[u8], &str); 4] = [
            (
                b"{\"version\": \"1.0\", \"model\": ",
                "not a tokenizer.json",
            ),
            (b"[1, 2, 3]", "not a tokenizer.json"),
            (b"\xff\xfe", "not UTF-8"),
            (b"", "not a tokenizer.json"),
        ];
        for (bytes, needle) in cases {
            std::fs::write(&file, bytes).unwrap();
            let err = Corpus::load(
                &corpus_path,
                &options(TokenizerKind::File, Some(file.clone())),
            )
            .unwrap_err();
            let msg = err.to_string();
            assert!(matches!(err, TextError::TokenizerFile { .. }), "{msg}");
            assert!(
                msg.contains(needle) && msg.contains("tokenizer.json"),
                "{msg}"
            );
        }
        let missing = dir.path().join("missing.json");
        let err = HfTokenizer::from_file(&missing).unwrap_err().to_string();
        assert!(
            err.contains("missing.json") && err.contains("data.tokenizer_file"),
            "{err}"
        );
        let err = HfTokenizer::from_file(dir.path()).unwrap_err().to_string();
        assert!(err.contains("directory"), "{err}");
        let err = Corpus::load(&corpus_path, &options(TokenizerKind::File, None)).unwrap_err();
        assert!(err.to_string().contains("data.tokenizer_file"), "{err}");
    }

    /// The acceptance benchmark: both trainers on 4 MB of text (tiny-shakespeare repeated, with
    /// numbered lines so repeats are not identical) at vocabulary 8 192. Slow (the old trainer
    /// takes minutes): `cargo test --release -p cht-data -- --ignored --nocapture bench_bpe`.
    /// `CHT_BENCH_CORPUS` names another text; `CHT_BENCH_BYTES` another size.
    #[test]
    #[ignore]
    fn bench_bpe_training_4mb_vocab_8192() {
        let path = std::env::var_os("CHT_BENCH_CORPUS")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("../../../shared/data/tinyshakespeare/input.txt")
            });
        let size: usize = std::env::var("CHT_BENCH_BYTES")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(4 << 20);
        let base = std::fs::read_to_string(&path).unwrap();
        let mut text = String::with_capacity(size + base.len());
        let mut copy = 0;
        while text.len() < size {
            for (i, line) in base.lines().enumerate() {
                if text.len() >= size {
                    break;
                }
                if i % 50 == 0 {
                    text.push_str(&format!("{copy}.{i}\n"));
                }
                text.push_str(line);
                text.push('\n');
            }
            copy += 1;
        }
        let times = bench_bpe_training(text.as_bytes(), 8192).unwrap();
        println!(
            "BPE training on {} bytes of {} at vocabulary 8192: old (hand-written) {:.1} s \
             (vocab {}), new (tokenizers {TOKENIZERS_VERSION}) {:.2} s (vocab {}), {:.1}x faster",
            text.len(),
            path.display(),
            times.old.as_secs_f64(),
            times.old_vocab,
            times.new.as_secs_f64(),
            times.new_vocab,
            times.speedup()
        );
        // A benchmark, not a timed test: it prints the ratio (docs/BENCHMARKS.md records it).
    }
}
