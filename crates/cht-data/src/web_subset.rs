//! The browser demo's data file: a prefix of MNIST's training and test splits in one small binary
//! file that the page fetches and parses without a decompressor.
//!
//! Layout (all integers little-endian):
//!
//! | bytes | content |
//! |---|---|
//! | 0..8 | ASCII magic `CHTMNIST` |
//! | 8..24 | `u32` n_train, `u32` n_test, `u32` rows (28), `u32` cols (28) |
//! | then | n_train label bytes, then n_test label bytes (classes 0..10) |
//! | then | n_train · rows · cols image bytes, then n_test · rows · cols image bytes |
//!
//! Images are raw `u8` pixels, sample after sample, each row-major, exactly as in the IDX files.
//! The file length is exactly `24 + (n_train + n_test) · (1 + rows · cols)`; [`decode`] rejects
//! anything else, so a truncated download is caught. Both splits hold at least one image (the
//! page needs both). Every offset is computed in checked `u64` arithmetic and converted to `usize`
//! only once it is known to lie within the bytes present, so the decoder behaves the same where
//! `usize` has 32 bits (wasm32) as where it has 64.

use std::fs;
use std::path::Path;

use cht_sparse::io::{FileError, read_bounded, write_atomic};

use crate::mnist::{CLASSES, SIDE};
use crate::{Dataset, DatasetKind, Error, Result, Split};

/// The largest web subset [`read`] accepts: 256 MiB (all of MNIST is 55 MB in this layout).
pub const MAX_FILE_BYTES: u64 = 256 << 20;

/// The first eight bytes of the file.
pub const MAGIC: &[u8; 8] = b"CHTMNIST";
/// Bytes before the labels: the magic and four `u32`s.
pub const HEADER_LEN: usize = 24;

/// Why a web subset could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum WebSubsetError {
    /// Fewer bytes than the header needs.
    #[error("{found} bytes, too short for the {HEADER_LEN}-byte header of a CHTMNIST file")]
    ShortHeader {
        /// Bytes present.
        found: usize,
    },
    /// The file does not start with `CHTMNIST`.
    #[error("not a CHTMNIST file (it starts with {found:?}, not \"CHTMNIST\")")]
    BadMagic {
        /// The first eight bytes, lossily as text.
        found: String,
    },
    /// Images of a size other than 28 × 28.
    #[error("images are {rows}×{cols}, but MNIST images are 28×28")]
    ImageSize {
        /// Rows in the header.
        rows: u32,
        /// Columns in the header.
        cols: u32,
    },
    /// The length disagrees with the counts in the header (e.g. a truncated download).
    #[error(
        "{found} bytes, but a CHTMNIST file of {n_train} training and {n_test} test images has \
         {expected} bytes (truncated or corrupt; write it again with `cht data web-subset`)"
    )]
    Length {
        /// Training images in the header.
        n_train: u32,
        /// Test images in the header.
        n_test: u32,
        /// Bytes present.
        found: usize,
        /// Bytes the header implies.
        expected: u64,
    },
    /// A label outside `0..10`.
    #[error("label {label} of {split} sample {index} is not a class 0..10")]
    BadLabel {
        /// `train` or `test`.
        split: &'static str,
        /// The sample.
        index: usize,
        /// The label found.
        label: u8,
    },
    /// A split without images: the page needs both a training and a test split.
    #[error("the {split} split has no images; the page needs at least one of each")]
    EmptySplit {
        /// `train` or `test`.
        split: &'static str,
    },
    /// The file could not be read (missing, not a regular file, too large).
    #[error(transparent)]
    File(FileError),
    /// The splits to encode are not consistent 28 × 28 data sets.
    #[error("data set {name} cannot be written: {why}")]
    Unencodable {
        /// The data set's name.
        name: String,
        /// What is wrong.
        why: String,
    },
}

/// The file bytes of `train` and `test` in the layout of the module documentation.
///
/// Errors if a split is empty, is not 28 × 28 with 10 classes, has more than `u32::MAX` samples,
/// or its images, labels and `n` disagree.
pub fn encode(train: &Dataset, test: &Dataset) -> Result<Vec<u8>, WebSubsetError> {
    for set in [train, test] {
        let why = if set.n == 0 {
            Some(
                "it has no images (the page needs at least one training and one test image)"
                    .to_owned(),
            )
        } else if (set.rows, set.cols) != (SIDE, SIDE) {
            Some(format!("images are {}×{}, not 28×28", set.rows, set.cols))
        } else if set.classes != CLASSES {
            Some(format!("{} classes, not 10", set.classes))
        } else if u32::try_from(set.n).is_err() {
            Some(format!("{} samples do not fit a u32", set.n))
        } else if set.labels.len() != set.n
            || Some(set.images.len()) != set.n.checked_mul(set.features())
        {
            Some("images, labels and n disagree".to_owned())
        } else {
            None
        };
        if let Some(why) = why {
            return Err(WebSubsetError::Unencodable {
                name: set.name.clone(),
                why,
            });
        }
    }
    let mut out = Vec::new();
    out.extend_from_slice(MAGIC);
    for v in [train.n, test.n, SIDE, SIDE] {
        // Checked above: every count fits a u32.
        out.extend_from_slice(&u32::try_from(v).unwrap_or(u32::MAX).to_le_bytes());
    }
    out.extend_from_slice(&train.labels);
    out.extend_from_slice(&test.labels);
    out.extend_from_slice(&train.images);
    out.extend_from_slice(&test.images);
    Ok(out)
}

/// Parses the bytes of a web subset into MNIST training and test splits (named `mnist-train` and
/// `mnist-test`). Checks the magic, the 28 × 28 size, that both splits have images, the exact
/// length and the labels; never panics and allocates only as much as the input holds.
pub fn decode(bytes: &[u8]) -> Result<(Dataset, Dataset), WebSubsetError> {
    let (Some(magic), Some(words)) = (bytes.get(..8), bytes.get(8..HEADER_LEN)) else {
        return Err(WebSubsetError::ShortHeader { found: bytes.len() });
    };
    if magic != MAGIC {
        return Err(WebSubsetError::BadMagic {
            found: String::from_utf8_lossy(magic).into_owned(),
        });
    }
    let mut header = words
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes(<[u8; 4]>::try_from(c).unwrap_or_default()));
    let mut word = || header.next().unwrap_or_default();
    let (n_train, n_test, rows, cols) = (word(), word(), word(), word());
    if (u64::from(rows), u64::from(cols)) != (SIDE as u64, SIDE as u64) {
        return Err(WebSubsetError::ImageSize { rows, cols });
    }
    // Every size and offset in u64 (at most 2^33 · 785 < 2^43: no overflow), compared with the
    // length before anything becomes a usize.
    let features = (SIDE * SIDE) as u64;
    let samples = u64::from(n_train) + u64::from(n_test);
    let expected = HEADER_LEN as u64 + samples * (1 + features);
    if bytes.len() as u64 != expected {
        return Err(WebSubsetError::Length {
            n_train,
            n_test,
            found: bytes.len(),
            expected,
        });
    }
    if n_train == 0 || n_test == 0 {
        return Err(WebSubsetError::EmptySplit {
            split: if n_train == 0 { "training" } else { "test" },
        });
    }
    // Offsets of the four parts, all ≤ `expected` = the length, so they fit a usize.
    let bounds = [
        HEADER_LEN as u64,
        HEADER_LEN as u64 + u64::from(n_train),
        HEADER_LEN as u64 + samples,
        HEADER_LEN as u64 + samples + u64::from(n_train) * features,
        expected,
    ];
    let part = |i: usize| -> Result<&[u8], WebSubsetError> {
        let at = |k: usize| {
            bounds
                .get(k)
                .and_then(|&b| usize::try_from(b).ok())
                .unwrap_or(usize::MAX)
        };
        bytes.get(at(i)..at(i + 1)).ok_or(WebSubsetError::Length {
            n_train,
            n_test,
            found: bytes.len(),
            expected,
        })
    };
    let (train_labels, test_labels, train_images, test_images) =
        (part(0)?, part(1)?, part(2)?, part(3)?);
    let split = |split: Split, labels: &[u8], images: &[u8]| {
        if let Some((index, &label)) = labels
            .iter()
            .enumerate()
            .find(|&(_, &l)| usize::from(l) >= CLASSES)
        {
            return Err(WebSubsetError::BadLabel {
                split: split.name(),
                index,
                label,
            });
        }
        Ok(Dataset {
            name: format!("{}-{}", DatasetKind::Mnist.name(), split.name()),
            kind: DatasetKind::Mnist,
            split,
            images: images.to_vec(),
            labels: labels.to_vec(),
            n: labels.len(),
            rows: SIDE,
            cols: SIDE,
            classes: CLASSES,
        })
    };
    Ok((
        split(Split::Train, train_labels, train_images)?,
        split(Split::Test, test_labels, test_images)?,
    ))
}

/// Writes the web subset of `train` and `test` to `path` (both splits non-empty): parent folders
/// are created, and the file is replaced atomically ([`cht_sparse::io::write_atomic`]), so the
/// page never fetches a half-written file. Returns the file size in bytes.
pub fn write(path: &Path, train: &Dataset, test: &Dataset) -> Result<u64> {
    let bytes = encode(train, test).map_err(|source| Error::WebSubset {
        path: path.to_owned(),
        source,
    })?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    fs::create_dir_all(dir).map_err(Error::io(dir, "create the directory"))?;
    write_atomic(path, "web subset", &bytes).map_err(|e| file_error(path, e))?;
    Ok(bytes.len() as u64)
}

/// Reads and decodes the web subset at `path` (see [`decode`]): a regular file of at most
/// [`MAX_FILE_BYTES`].
pub fn read(path: &Path) -> Result<(Dataset, Dataset)> {
    let bytes =
        read_bounded(path, "web subset", MAX_FILE_BYTES).map_err(|e| file_error(path, e))?;
    decode(&bytes).map_err(|source| Error::WebSubset {
        path: path.to_owned(),
        source,
    })
}

/// An I/O failure as before ([`Error::Io`]); a refusal of the bounded reader or writer (not a
/// regular file, too large) as a [`WebSubsetError::File`].
fn file_error(path: &Path, e: FileError) -> Error {
    match e {
        FileError::Io { action, source, .. } => Error::Io {
            path: path.to_owned(),
            action,
            source,
        },
        other => Error::WebSubset {
            path: path.to_owned(),
            source: WebSubsetError::File(other),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mnist::FEATURES;
    use crate::testutil::TempDir;

    fn synthetic(split: Split, n: usize, salt: usize) -> Dataset {
        Dataset {
            name: format!("mnist-{}", split.name()),
            kind: DatasetKind::Mnist,
            split,
            images: (0..n * FEATURES)
                .map(|k| ((k / FEATURES * 31 + k % FEATURES + salt) % 256) as u8)
                .collect(),
            labels: (0..n).map(|i| ((i + salt) % 10) as u8).collect(),
            n,
            rows: SIDE,
            cols: SIDE,
            classes: CLASSES,
        }
    }

    #[test]
    fn round_trips_through_a_file_with_the_documented_layout() {
        let dir = TempDir::new("web-subset");
        let (train, test) = (synthetic(Split::Train, 13, 0), synthetic(Split::Test, 5, 7));
        let path = dir.path().join("nested/folder/mnist-subset.bin");
        let size = write(&path, &train, &test).unwrap();
        let bytes = fs::read(&path).unwrap();
        assert_eq!(size, bytes.len() as u64);
        assert_eq!(bytes.len(), 24 + 18 * (1 + 784));
        // The layout, byte for byte.
        assert_eq!(&bytes[..8], b"CHTMNIST");
        assert_eq!(
            bytes[8..24],
            [13, 0, 0, 0, 5, 0, 0, 0, 28, 0, 0, 0, 28, 0, 0, 0]
        );
        assert_eq!(&bytes[24..37], train.labels.as_slice());
        assert_eq!(&bytes[37..42], test.labels.as_slice());
        assert_eq!(&bytes[42..42 + 13 * 784], train.images.as_slice());
        assert_eq!(&bytes[42 + 13 * 784..], test.images.as_slice());
        assert_eq!(read(&path).unwrap(), (train, test));
        // Only the file itself is left: the temporary file was renamed away.
        let names: Vec<_> = fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["mnist-subset.bin"]);
        // Rewriting replaces the file.
        write(
            &path,
            &synthetic(Split::Train, 2, 1),
            &synthetic(Split::Test, 1, 0),
        )
        .unwrap();
        let (a, b) = read(&path).unwrap();
        assert_eq!((a.n, b.n), (2, 1));
        // An empty split is refused, by the writer (leaving the file) and by the reader.
        let empty = synthetic(Split::Test, 0, 0);
        let err = write(&path, &synthetic(Split::Train, 2, 1), &empty).unwrap_err();
        assert!(err.to_string().contains("no images"), "{err}");
        let err = write(&path, &empty, &synthetic(Split::Test, 2, 1)).unwrap_err();
        assert!(err.to_string().contains("no images"), "{err}");
        assert_eq!(read(&path).unwrap().1.n, 1);
        let mut bytes = fs::read(&path).unwrap();
        bytes[12..16].copy_from_slice(&0u32.to_le_bytes());
        bytes.truncate(24 + 2 * 785);
        assert!(matches!(
            decode(&bytes),
            Err(WebSubsetError::EmptySplit { split: "test" })
        ));
        // Special files are refused, not read or replaced.
        #[cfg(unix)]
        {
            let err = read(Path::new("/dev/zero")).unwrap_err();
            assert!(err.to_string().contains("not a regular file"), "{err}");
            let err = write(Path::new("/dev/null"), &a, &b).unwrap_err();
            assert!(err.to_string().contains("not a regular file"), "{err}");
        }
    }

    #[test]
    fn rejects_a_bad_magic() {
        let mut bytes = encode(
            &synthetic(Split::Train, 3, 0),
            &synthetic(Split::Test, 2, 0),
        )
        .unwrap();
        bytes[..8].copy_from_slice(b"CHTFASHN");
        let err = decode(&bytes).unwrap_err();
        assert!(matches!(err, WebSubsetError::BadMagic { .. }), "{err}");
        assert!(err.to_string().contains("CHTFASHN"), "{err}");
        // An IDX file is not a web subset either.
        let err = decode(&[
            0, 0, 8, 3, 0, 0, 0, 1, 0, 0, 0, 28, 0, 0, 0, 28, 0, 0, 0, 0, 0, 0, 0, 0,
        ])
        .unwrap_err();
        assert!(matches!(err, WebSubsetError::BadMagic { .. }), "{err}");
    }

    #[test]
    fn rejects_truncated_and_padded_files() {
        let dir = TempDir::new("web-subset-short");
        let bytes = encode(
            &synthetic(Split::Train, 4, 0),
            &synthetic(Split::Test, 3, 0),
        )
        .unwrap();
        for len in [0, 7, 23] {
            let err = decode(&bytes[..len]).unwrap_err();
            assert!(
                matches!(err, WebSubsetError::ShortHeader { found } if found == len),
                "{err}"
            );
        }
        for len in [24, 30, bytes.len() - 1] {
            let err = decode(&bytes[..len]).unwrap_err();
            assert!(
                matches!(err, WebSubsetError::Length { n_train: 4, n_test: 3, expected, .. }
                    if expected == bytes.len() as u64),
                "{err}"
            );
        }
        let mut padded = bytes.clone();
        padded.push(0);
        assert!(matches!(
            decode(&padded),
            Err(WebSubsetError::Length { .. })
        ));
        // A header claiming billions of samples is rejected without allocating for them.
        let mut huge = bytes.clone();
        huge[8..16].copy_from_slice(&[0xff; 8]);
        assert!(matches!(decode(&huge), Err(WebSubsetError::Length { .. })));
        // Through `read`, the error names the file.
        let path = dir.path().join("cut.bin");
        fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        let msg = read(&path).unwrap_err().to_string();
        assert!(
            msg.contains("cut.bin") && msg.contains("truncated"),
            "{msg}"
        );
    }

    #[test]
    fn rejects_bad_sizes_and_labels() {
        let mut bytes = encode(
            &synthetic(Split::Train, 2, 0),
            &synthetic(Split::Test, 1, 0),
        )
        .unwrap();
        bytes[20] = 29;
        assert!(matches!(
            decode(&bytes),
            Err(WebSubsetError::ImageSize { rows: 28, cols: 29 })
        ));
        bytes[20] = 28;
        bytes[24 + 2] = 10; // the test label
        assert!(matches!(
            decode(&bytes),
            Err(WebSubsetError::BadLabel {
                split: "test",
                index: 0,
                label: 10
            })
        ));
        let mut odd = synthetic(Split::Train, 2, 0);
        odd.labels.pop();
        let err = encode(&odd, &synthetic(Split::Test, 1, 0)).unwrap_err();
        assert!(matches!(err, WebSubsetError::Unencodable { .. }), "{err}");
    }
}
