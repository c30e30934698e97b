//! Parallel corpora for translation: Multi30k task 1 (Elliott et al. 2016; the paper's smallest
//! translation task), read from its three release tarballs or from the extracted text files.
//!
//! Given a folder, each split's two files are looked up as `<split>.<lang>` in the folder (files
//! a user extracted), then inside the split's tarball in the folder (`training.tar.gz`,
//! `validation.tar.gz`, `mmt16_task1_test.tar.gz`, as released). The test split's files are
//! also found as `test2016.<lang>`. Lines are split on `\n` (a `\r` before it is dropped); the
//! empty lines at the end of a file (the release's train and val files end with one) are not
//! sentences. Both sides must have the same number of lines. Nothing here uses the network.

use std::io::Read;
use std::path::{Path, PathBuf};

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
}
