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
//! anything else, so a truncated download is caught.

use std::ffi::OsString;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::mnist::{CLASSES, SIDE};
use crate::{Dataset, DatasetKind, Error, Result, Split};

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
/// Errors if a split is not 28 × 28 with 10 classes, has more than `u32::MAX` samples, or its
/// images, labels and `n` disagree.
pub fn encode(train: &Dataset, test: &Dataset) -> Result<Vec<u8>, WebSubsetError> {
    for set in [train, test] {
        let why = if (set.rows, set.cols) != (SIDE, SIDE) {
            Some(format!("images are {}×{}, not 28×28", set.rows, set.cols))
        } else if set.classes != CLASSES {
            Some(format!("{} classes, not 10", set.classes))
        } else if u32::try_from(set.n).is_err() {
            Some(format!("{} samples do not fit a u32", set.n))
        } else if set.labels.len() != set.n || set.images.len() != set.n * set.features() {
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
    let mut out = Vec::with_capacity(
        HEADER_LEN
            + train.labels.len()
            + test.labels.len()
            + train.images.len()
            + test.images.len(),
    );
    out.extend_from_slice(MAGIC);
    for v in [train.n, test.n, SIDE, SIDE] {
        out.extend_from_slice(&(v as u32).to_le_bytes());
    }
    out.extend_from_slice(&train.labels);
    out.extend_from_slice(&test.labels);
    out.extend_from_slice(&train.images);
    out.extend_from_slice(&test.images);
    Ok(out)
}

/// Parses the bytes of a web subset into MNIST training and test splits (named `mnist-train` and
/// `mnist-test`). Checks the magic, the 28 × 28 size, the exact length and the labels; never
/// panics and allocates only as much as the input holds.
pub fn decode(bytes: &[u8]) -> Result<(Dataset, Dataset), WebSubsetError> {
    if bytes.len() < HEADER_LEN {
        return Err(WebSubsetError::ShortHeader { found: bytes.len() });
    }
    if &bytes[..8] != MAGIC {
        return Err(WebSubsetError::BadMagic {
            found: String::from_utf8_lossy(&bytes[..8]).into_owned(),
        });
    }
    let word = |i: usize| {
        let at = 8 + 4 * i;
        u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
    };
    let (n_train, n_test, rows, cols) = (word(0), word(1), word(2), word(3));
    if (rows as usize, cols as usize) != (SIDE, SIDE) {
        return Err(WebSubsetError::ImageSize { rows, cols });
    }
    // In u64, so huge header counts cannot overflow.
    let samples = u64::from(n_train) + u64::from(n_test);
    let expected = HEADER_LEN as u64 + samples * (1 + (SIDE * SIDE) as u64);
    if bytes.len() as u64 != expected {
        return Err(WebSubsetError::Length {
            n_train,
            n_test,
            found: bytes.len(),
            expected,
        });
    }
    let (n_train, n_test) = (n_train as usize, n_test as usize);
    let features = SIDE * SIDE;
    let (labels, images) = bytes[HEADER_LEN..].split_at(n_train + n_test);
    let (train_labels, test_labels) = labels.split_at(n_train);
    let (train_images, test_images) = images.split_at(n_train * features);
    let split = |split: Split, n: usize, labels: &[u8], images: &[u8]| {
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
            n,
            rows: SIDE,
            cols: SIDE,
            classes: CLASSES,
        })
    };
    Ok((
        split(Split::Train, n_train, train_labels, train_images)?,
        split(Split::Test, n_test, test_labels, test_images)?,
    ))
}

/// Writes the web subset of `train` and `test` to `path`: parent folders are created, and the
/// bytes go to a temporary file beside `path` that is then renamed over it, so the page never
/// fetches a half-written file. Returns the file size in bytes.
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
    let name = path.file_name().ok_or_else(|| Error::Io {
        path: path.to_owned(),
        action: "write",
        source: io::Error::new(io::ErrorKind::InvalidInput, "the path does not name a file"),
    })?;
    // Distinguishes temporary files of concurrent writes within this process.
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut tmp_name = OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(
        ".{}.{}.tmp",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let tmp: PathBuf = dir.join(tmp_name);
    let result = write_then_rename(&tmp, path, &bytes);
    if result.is_err() {
        // Best effort: the original error matters more than a failed cleanup.
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(Error::io(path, "write"))?;
    Ok(bytes.len() as u64)
}

/// Reads and decodes the web subset at `path` (see [`decode`]).
pub fn read(path: &Path) -> Result<(Dataset, Dataset)> {
    let bytes = fs::read(path).map_err(Error::io(path, "read"))?;
    decode(&bytes).map_err(|source| Error::WebSubset {
        path: path.to_owned(),
        source,
    })
}

fn write_then_rename(tmp: &Path, path: &Path, bytes: &[u8]) -> io::Result<()> {
    // `create_new` never clobbers a file that happens to have the temporary name.
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(tmp)?;
    file.write_all(bytes)?;
    // Flush to disk before the rename, or a crash could leave `path` naming an empty file.
    file.sync_all()?;
    drop(file);
    fs::rename(tmp, path)
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
        // Rewriting replaces the file; an empty split is allowed.
        let empty = synthetic(Split::Test, 0, 0);
        write(&path, &synthetic(Split::Train, 2, 1), &empty).unwrap();
        let (a, b) = read(&path).unwrap();
        assert_eq!((a.n, b.n), (2, 0));
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
