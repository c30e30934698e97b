//! Parallel corpora for translation: Multi30k task 1 (Elliott et al. 2016; the paper's smallest
//! translation task), read from its three release tarballs or from the extracted text files.
//!
//! Given a folder, each split's two files are looked up as `<split>.<lang>` in the folder (files
//! a user extracted), then inside the split's tarball in the folder (`training.tar.gz`,
//! `validation.tar.gz`, `mmt16_task1_test.tar.gz`, as released). The test split's files are
//! also found as `test2016.<lang>`. Lines are split on `\n` (a `\r` before it is dropped); the
//! empty lines at the end of a file (the release's train and val files end with one) are not
//! sentences. Both sides must have the same number of lines. Nothing here uses the network.
//!
//! For training, [`EncodedPairs`] holds the token ids of each pair (any subword tokenizer, given
//! as a function) and [`batches`] groups them by length into padded batches of at most a token
//! budget, as OpenNMT's token batching does (the paper's Multi30k batch is 1 024 tokens).

use std::io::Read;
use std::path::{Path, PathBuf};

use cht_sparse::rng::{Counter, RngKey, Stream};

use crate::shuffled_indices;

/// One split of a parallel corpus: `source[i]` translates to `target[i]`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Parallel {
    /// Source-language sentences, one per line of the source file.
    pub source: Vec<String>,
    /// Target-language sentences.
    pub target: Vec<String>,
}

impl Parallel {
    /// Number of sentence pairs.
    pub fn len(&self) -> usize {
        self.source.len()
    }

    /// Whether there are no pairs.
    pub fn is_empty(&self) -> bool {
        self.source.is_empty()
    }
}

/// Multi30k's three splits in one direction.
#[derive(Clone, Debug, PartialEq)]
pub struct Multi30k {
    /// 29 000 pairs in the release.
    pub train: Parallel,
    /// 1 014 pairs (`val.*`).
    pub valid: Parallel,
    /// 1 000 pairs (the 2016 test set, `test.*` / `test2016.*`).
    pub test: Parallel,
}

/// The three splits: name, file stems, release tarball.
const SPLITS: [(&str, &[&str], &str); 3] = [
    ("train", &["train"], "training.tar.gz"),
    ("valid", &["val"], "validation.tar.gz"),
    ("test", &["test", "test2016"], "mmt16_task1_test.tar.gz"),
];

/// The largest text file (or tarball member) read: Multi30k's largest is 2 MB.
const FILE_LIMIT: u64 = 256 << 20;

/// Why a parallel corpus could not be read. Messages name the file and say what is expected.
#[derive(Debug, thiserror::Error)]
pub enum TranslationError {
    /// The folder does not exist.
    #[error(
        "translation data not found: {dir} is not a folder; point it at the folder holding \
         Multi30k's training.tar.gz, validation.tar.gz and mmt16_task1_test.tar.gz (or the \
         extracted train/val/test.<lang> files)"
    )]
    MissingDir {
        /// The folder given.
        dir: PathBuf,
    },
    /// Neither the extracted file nor the tarball holding it is there.
    #[error(
        "no {split} data for language '{lang}' in {dir}: looked for {looked}; Multi30k task 1 \
         has the languages en, de (and fr, cs for some splits)"
    )]
    MissingFile {
        /// The folder.
        dir: PathBuf,
        /// The split (`train`, `valid`, `test`).
        split: &'static str,
        /// The language code.
        lang: String,
        /// What was looked for.
        looked: String,
    },
    /// Reading a file or tarball failed.
    #[error("reading {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A file is larger than any Multi30k file could be.
    #[error("{path}: larger than {limit} bytes, not a Multi30k text file")]
    TooLarge {
        /// The file (or `tarball:member`).
        path: String,
        /// The limit.
        limit: u64,
    },
    /// A file is not UTF-8 text.
    #[error("{path}: line {line} is not UTF-8 text")]
    NotUtf8 {
        /// The file (or `tarball:member`).
        path: String,
        /// 1-based line.
        line: usize,
    },
    /// The two sides of a split have different numbers of lines.
    #[error(
        "{split}: {source_lines} lines in the {src} file but {target_lines} in the {tgt} file; \
         a parallel corpus has one line per sentence on both sides"
    )]
    Lengths {
        /// The split.
        split: &'static str,
        /// Source language.
        src: String,
        /// Target language.
        tgt: String,
        /// Lines on the source side.
        source_lines: usize,
        /// Lines on the target side.
        target_lines: usize,
    },
    /// A split holds no sentence.
    #[error("{split}: no sentences in {path}")]
    Empty {
        /// The split.
        split: &'static str,
        /// The file.
        path: String,
    },
}

impl Multi30k {
    /// Reads the train, validation and test splits from `dir`, `src` → `tgt` (e.g. `"en"`,
    /// `"de"`, the paper's direction).
    pub fn load(dir: &Path, src: &str, tgt: &str) -> Result<Multi30k, TranslationError> {
        if !dir.is_dir() {
            return Err(TranslationError::MissingDir {
                dir: dir.to_owned(),
            });
        }
        let split = |i: usize| -> Result<Parallel, TranslationError> {
            let (name, stems, tarball) = SPLITS[i];
            let (source, src_path) = read_lines(dir, name, stems, tarball, src)?;
            let (target, _) = read_lines(dir, name, stems, tarball, tgt)?;
            if source.len() != target.len() {
                return Err(TranslationError::Lengths {
                    split: name,
                    src: src.to_owned(),
                    tgt: tgt.to_owned(),
                    source_lines: source.len(),
                    target_lines: target.len(),
                });
            }
            if source.is_empty() {
                return Err(TranslationError::Empty {
                    split: name,
                    path: src_path,
                });
            }
            Ok(Parallel { source, target })
        };
        Ok(Multi30k {
            train: split(0)?,
            valid: split(1)?,
            test: split(2)?,
        })
    }
}

/// The sentences of one language of one split, and where they came from.
fn read_lines(
    dir: &Path,
    split: &'static str,
    stems: &[&str],
    tarball: &str,
    lang: &str,
) -> Result<(Vec<String>, String), TranslationError> {
    let names: Vec<String> = stems.iter().map(|s| format!("{s}.{lang}")).collect();
    for name in &names {
        let path = dir.join(name);
        if path.is_file() {
            let file = std::fs::File::open(&path).map_err(|source| TranslationError::Io {
                path: path.clone(),
                source,
            })?;
            let label = path.display().to_string();
            let bytes = read_bounded(file, &label, &path)?;
            return Ok((lines(&bytes, &label)?, label));
        }
    }
    let tar_path = dir.join(tarball);
    if tar_path.is_file()
        && let Some(found) = read_from_tarball(&tar_path, &names)?
    {
        return Ok(found);
    }
    Err(TranslationError::MissingFile {
        dir: dir.to_owned(),
        split,
        lang: lang.to_owned(),
        looked: format!("{} and {tarball} holding it", names.join(" / ")),
    })
}

/// The member of `tar_path` whose file name is one of `names` (AppleDouble `._*` entries
/// skipped), as lines.
fn read_from_tarball(
    tar_path: &Path,
    names: &[String],
) -> Result<Option<(Vec<String>, String)>, TranslationError> {
    let io = |source| TranslationError::Io {
        path: tar_path.to_owned(),
        source,
    };
    let file = std::fs::File::open(tar_path).map_err(io)?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    for entry in archive.entries().map_err(io)? {
        let entry = entry.map_err(io)?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let path = entry.path().map_err(io)?.into_owned();
        let Some(base) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if names.iter().any(|n| n == base) {
            let label = format!("{}:{}", tar_path.display(), path.display());
            let bytes = read_bounded(entry, &label, tar_path)?;
            return Ok(Some((lines(&bytes, &label)?, label)));
        }
    }
    Ok(None)
}

fn read_bounded(r: impl Read, label: &str, path: &Path) -> Result<Vec<u8>, TranslationError> {
    let mut bytes = Vec::new();
    r.take(FILE_LIMIT + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| TranslationError::Io {
            path: path.to_owned(),
            source,
        })?;
    if bytes.len() as u64 > FILE_LIMIT {
        return Err(TranslationError::TooLarge {
            path: label.to_owned(),
            limit: FILE_LIMIT,
        });
    }
    Ok(bytes)
}

/// `bytes` as lines: split on `\n`, a trailing `\r` dropped, empty lines at the end dropped.
fn lines(bytes: &[u8], label: &str) -> Result<Vec<String>, TranslationError> {
    let mut out = Vec::new();
    for (i, line) in bytes.split(|&b| b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let text = std::str::from_utf8(line).map_err(|_| TranslationError::NotUtf8 {
            path: label.to_owned(),
            line: i + 1,
        })?;
        out.push(text.to_owned());
    }
    while out.last().is_some_and(String::is_empty) {
        out.pop();
    }
    Ok(out)
}

/// The special tokens of a translation vocabulary, numbered after the subword tokenizer's
/// `vocab` ids: padding, beginning and end of sentence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Specials {
    /// Fills batches past each sentence's end (never a prediction target).
    pub pad: u32,
    /// Starts every decoder input.
    pub bos: u32,
    /// Ends every decoder target.
    pub eos: u32,
}

impl Specials {
    /// The specials of a subword vocabulary of `vocab` ids: `vocab`, `vocab + 1`, `vocab + 2`.
    pub fn after(vocab: usize) -> Specials {
        let v = u32::try_from(vocab).expect("vocabulary beyond u32");
        Specials {
            pad: v,
            bos: v + 1,
            eos: v + 2,
        }
    }

    /// The whole vocabulary's size, specials included (the embedding and generator rows).
    pub fn vocab_size(&self) -> usize {
        self.eos as usize + 1
    }
}

/// The token ids of each sentence pair of a split.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EncodedPairs {
    /// Source sentences as subword ids (no specials).
    pub source: Vec<Vec<u32>>,
    /// Target sentences as subword ids (no specials).
    pub target: Vec<Vec<u32>>,
    /// Which pair of the split each entry is (pairs over `max_len` are left out).
    pub index: Vec<usize>,
}

impl EncodedPairs {
    /// Encodes `pairs` with the two tokenizers, leaving out pairs whose source or target has more
    /// than `max_len` ids or none (the paper's preprocessing keeps at most 256), so that a caller
    /// can say how many were dropped (`pairs.len() - self.len()`).
    pub fn encode<E>(
        pairs: &Parallel,
        source: impl Fn(&str) -> Result<Vec<u32>, E>,
        target: impl Fn(&str) -> Result<Vec<u32>, E>,
        max_len: usize,
    ) -> Result<EncodedPairs, E> {
        let mut out = EncodedPairs::default();
        for (i, (s, t)) in pairs.source.iter().zip(&pairs.target).enumerate() {
            let (s, t) = (source(s)?, target(t)?);
            if s.is_empty() || t.is_empty() || s.len() > max_len || t.len() > max_len {
                continue;
            }
            out.source.push(s);
            out.target.push(t);
            out.index.push(i);
        }
        Ok(out)
    }

    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.source.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.source.is_empty()
    }
}

/// How [`batches`] groups pairs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BatchOptions {
    /// The most padded tokens of a batch: rows × the longer of the padded source and decoder
    /// lengths (a single longer pair gets a batch of its own).
    pub max_tokens: usize,
    /// Shuffle the pairs before bucketing and the batches after (training); without it the
    /// batches come in length order (evaluation; [`PairBatch::index`] says whose rows they are).
    pub shuffle: bool,
    /// Seed of the shuffles (with the epoch, keys the counter-based RNG).
    pub seed: u32,
    /// Pairs sorted by length together: a pool of this many shuffled pairs is sorted, then cut
    /// into batches, so batches hold similar lengths but still vary between epochs.
    pub pool: usize,
}

impl Default for BatchOptions {
    /// 1 024 tokens (the paper's Multi30k batch), shuffled, seed 0, pools of 4 096 pairs.
    fn default() -> Self {
        BatchOptions {
            max_tokens: 1024,
            shuffle: true,
            seed: 0,
            pool: 4096,
        }
    }
}

/// One padded batch of sentence pairs, row-major `[rows, len]`.
#[derive(Clone, Debug, PartialEq)]
pub struct PairBatch {
    /// Sentences in the batch.
    pub rows: usize,
    /// Padded source length (the longest source).
    pub source_len: usize,
    /// Padded decoder length (the longest target + 1).
    pub target_len: usize,
    /// Source ids, `[rows, source_len]`, padded with `pad`.
    pub source: Vec<u32>,
    /// Each row's source length.
    pub source_lens: Vec<u32>,
    /// Decoder input `bos, t₁ … tₙ`, `[rows, target_len]`, padded with `pad`.
    pub decoder_in: Vec<u32>,
    /// Decoder target `t₁ … tₙ, eos`, `[rows, target_len]`, padded with `pad`.
    pub decoder_out: Vec<u32>,
    /// Each row's decoder length `n + 1`.
    pub target_lens: Vec<u32>,
    /// Each row's position in the [`EncodedPairs`].
    pub index: Vec<usize>,
}

impl PairBatch {
    /// Target tokens the loss is taken over (padding excluded).
    pub fn target_tokens(&self) -> usize {
        self.target_lens.iter().map(|&l| l as usize).sum()
    }
}

/// `pairs` in padded batches of at most `options.max_tokens` tokens, for epoch `epoch`: pairs of
/// similar lengths together (sorted by target, then source length within each pool), every pair
/// exactly once.
pub fn batches(
    pairs: &EncodedPairs,
    specials: Specials,
    options: &BatchOptions,
    epoch: u32,
) -> Vec<PairBatch> {
    let n = pairs.len();
    let order: Vec<usize> = if options.shuffle {
        shuffled_indices(n as u32, options.seed, epoch)
            .into_iter()
            .map(|i| i as usize)
            .collect()
    } else {
        (0..n).collect()
    };
    let key = |i: &usize| (pairs.target[*i].len(), pairs.source[*i].len());
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let pool = if options.shuffle {
        options.pool.max(1)
    } else {
        n.max(1)
    };
    for chunk in order.chunks(pool) {
        let mut chunk = chunk.to_vec();
        chunk.sort_by_key(key);
        let mut current: Vec<usize> = Vec::new();
        let (mut src_max, mut tgt_max) = (0, 0);
        for i in chunk {
            let (s, t) = (pairs.source[i].len(), pairs.target[i].len() + 1);
            let (s2, t2) = (src_max.max(s), tgt_max.max(t));
            if !current.is_empty() && (current.len() + 1) * s2.max(t2) > options.max_tokens {
                groups.push(std::mem::take(&mut current));
                (src_max, tgt_max) = (s, t);
            } else {
                (src_max, tgt_max) = (s2, t2);
            }
            current.push(i);
        }
        if !current.is_empty() {
            groups.push(current);
        }
    }
    if options.shuffle {
        // The batches' order: a second stream of the same key, so epochs differ here too.
        let mut rng = Counter::new(RngKey::new(options.seed, Stream::Shuffle, epoch, 1));
        for i in (1..groups.len()).rev() {
            let j = rng.below(i as u32 + 1) as usize;
            groups.swap(i, j);
        }
    }
    groups.iter().map(|g| pad(pairs, g, specials)).collect()
}

/// The batch of the pairs `rows`.
fn pad(pairs: &EncodedPairs, rows: &[usize], sp: Specials) -> PairBatch {
    let source_len = rows
        .iter()
        .map(|&i| pairs.source[i].len())
        .max()
        .unwrap_or(0);
    let target_len = rows
        .iter()
        .map(|&i| pairs.target[i].len() + 1)
        .max()
        .unwrap_or(0);
    let mut b = PairBatch {
        rows: rows.len(),
        source_len,
        target_len,
        source: vec![sp.pad; rows.len() * source_len],
        source_lens: Vec::with_capacity(rows.len()),
        decoder_in: vec![sp.pad; rows.len() * target_len],
        decoder_out: vec![sp.pad; rows.len() * target_len],
        target_lens: Vec::with_capacity(rows.len()),
        index: rows.to_vec(),
    };
    for (r, &i) in rows.iter().enumerate() {
        let (s, t) = (&pairs.source[i], &pairs.target[i]);
        b.source[r * source_len..r * source_len + s.len()].copy_from_slice(s);
        b.source_lens.push(s.len() as u32);
        let row = r * target_len;
        b.decoder_in[row] = sp.bos;
        b.decoder_in[row + 1..row + 1 + t.len()].copy_from_slice(t);
        b.decoder_out[row..row + t.len()].copy_from_slice(t);
        b.decoder_out[row + t.len()] = sp.eos;
        b.target_lens.push(t.len() as u32 + 1);
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailing_empty_lines_are_not_sentences() {
        let got = lines(b"a b\r\nc\n\n", "x").unwrap();
        assert_eq!(got, ["a b", "c"]);
        assert_eq!(lines(b"", "x").unwrap(), Vec::<String>::new());
        assert_eq!(lines(b"a\n\nb", "x").unwrap(), ["a", "", "b"]);
        let e = lines(b"ok\n\xff\n", "f").unwrap_err();
        assert_eq!(e.to_string(), "f: line 2 is not UTF-8 text");
    }

    /// Pairs `i` with a source of `i % 7 + 1` ids and a target of `i % 5 + 1` ids.
    fn pairs(n: usize) -> EncodedPairs {
        let p = Parallel {
            source: (0..n).map(|i| "s".repeat(i % 7 + 1)).collect(),
            target: (0..n).map(|i| "t".repeat(i % 5 + 1)).collect(),
        };
        let ids = |s: &str| Ok::<_, ()>(s.bytes().map(u32::from).collect());
        EncodedPairs::encode(&p, ids, ids, 256).unwrap()
    }

    #[test]
    fn every_pair_is_in_one_batch_within_the_budget() {
        let p = pairs(103);
        let sp = Specials::after(200);
        for shuffle in [true, false] {
            let o = BatchOptions {
                max_tokens: 24,
                shuffle,
                seed: 3,
                pool: 16,
            };
            let b = batches(&p, sp, &o, 0);
            let mut seen: Vec<usize> = b.iter().flat_map(|b| b.index.clone()).collect();
            seen.sort_unstable();
            assert_eq!(seen, (0..103).collect::<Vec<_>>());
            for b in &b {
                assert!(b.rows * b.source_len.max(b.target_len) <= 24, "{b:?}");
                for (r, &i) in b.index.iter().enumerate() {
                    let (s, t) = (&p.source[i], &p.target[i]);
                    let src = &b.source[r * b.source_len..(r + 1) * b.source_len];
                    assert_eq!(&src[..s.len()], &s[..]);
                    assert!(src[s.len()..].iter().all(|&x| x == sp.pad));
                    let row = r * b.target_len;
                    let (din, dout) = (
                        &b.decoder_in[row..row + b.target_len],
                        &b.decoder_out[row..row + b.target_len],
                    );
                    assert_eq!(din[0], sp.bos);
                    assert_eq!(&din[1..=t.len()], &t[..]);
                    assert_eq!(&dout[..t.len()], &t[..]);
                    assert_eq!(dout[t.len()], sp.eos);
                    assert!(din[t.len() + 1..].iter().all(|&x| x == sp.pad));
                    assert!(dout[t.len() + 1..].iter().all(|&x| x == sp.pad));
                    assert_eq!(b.target_lens[r] as usize, t.len() + 1);
                }
            }
            if !shuffle {
                // Evaluation order: sorted by target then source length.
                let keys: Vec<_> = b
                    .iter()
                    .flat_map(|b| {
                        b.index
                            .iter()
                            .map(|&i| (p.target[i].len(), p.source[i].len()))
                    })
                    .collect();
                assert!(keys.windows(2).all(|w| w[0] <= w[1]));
            }
        }
    }

    #[test]
    fn epochs_shuffle_differently_and_reproducibly() {
        let p = pairs(300);
        let sp = Specials::after(200);
        let o = BatchOptions {
            max_tokens: 40,
            ..BatchOptions::default()
        };
        let first = |e| batches(&p, sp, &o, e)[0].index.clone();
        assert_eq!(first(0), first(0));
        assert_ne!(first(0), first(1));
        // A pair longer than the budget gets a batch of its own.
        let tiny = BatchOptions { max_tokens: 1, ..o };
        assert!(batches(&p, sp, &tiny, 0).iter().all(|b| b.rows == 1));
    }

    #[test]
    fn encoding_drops_empty_and_overlong_pairs() {
        let p = Parallel {
            source: vec!["ab".into(), "".into(), "abcdef".into(), "a".into()],
            target: vec!["x".into(), "y".into(), "z".into(), "".into()],
        };
        let ids = |s: &str| Ok::<_, ()>(s.bytes().map(u32::from).collect());
        let e = EncodedPairs::encode(&p, ids, ids, 4).unwrap();
        assert_eq!(e.index, [0]);
        assert_eq!(Specials::after(10).vocab_size(), 13);
    }
}
