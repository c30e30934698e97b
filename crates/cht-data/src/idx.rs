//! Reading IDX files, the format of MNIST and Fashion-MNIST, plain or gzip-compressed.
//!
//! An IDX file is a 4-byte magic `00 00 TT RR` (`TT` the element type, `RR` the rank), `RR`
//! big-endian `u32` dimensions, then the elements in row-major order. Only unsigned bytes (`TT` =
//! `0x08`) are read, which is all that MNIST-like data sets use: images have rank 3 (magic
//! `0x00000803`), labels rank 1 (`0x00000801`).
//!
//! Files are untrusted. The reader never panics, never allocates from a size that a header claims
//! (only from bytes actually present), and decompresses with a hard limit so that a small `.gz`
//! cannot expand without bound. Compression is recognised by the gzip magic bytes `1f 8b`, not by
//! the file name.

use std::fmt;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use cht_sparse::io::{FileError, read_bounded};
use flate2::read::MultiGzDecoder;

/// The largest file, compressed or decompressed, that [`read`] accepts: 512 MiB.
///
/// MNIST's largest file is 47 MB uncompressed, so this only stops runaway input.
pub const MAX_BYTES: u64 = 512 << 20;

/// What an IDX file must hold; each kind fixes the element type and the rank.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IdxKind {
    /// Unsigned-byte images `count × rows × cols` (magic `0x00000803`).
    Images,
    /// Unsigned-byte labels `count` (magic `0x00000801`).
    Labels,
}

impl IdxKind {
    /// The number of dimensions of this kind.
    pub fn rank(self) -> u8 {
        match self {
            IdxKind::Images => 3,
            IdxKind::Labels => 1,
        }
    }

    /// The full 4-byte magic number of this kind.
    pub fn magic(self) -> u32 {
        (u32::from(TYPE_U8) << 8) | u32::from(self.rank())
    }
}

impl fmt::Display for IdxKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IdxKind::Images => "images",
            IdxKind::Labels => "labels",
        })
    }
}

/// A decoded IDX file: its dimensions and its elements in row-major order.
///
/// `data.len()` is exactly the product of `dims`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdxArray {
    /// The dimensions, outermost first (e.g. `[60000, 28, 28]`).
    pub dims: Vec<u32>,
    /// The elements, row-major.
    pub data: Vec<u8>,
}

/// Why an IDX file was rejected. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum IdxError {
    /// The file could not be opened or read.
    #[error("{path}: cannot read: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating-system error.
        #[source]
        source: io::Error,
    },
    /// The file (or its decompressed content) has no bytes at all.
    #[error("{path}: the file is empty; delete it and fetch the data again")]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// Fewer bytes than the header needs.
    #[error("{path}: {found} bytes, too short for an IDX header of {needed} bytes")]
    ShortHeader {
        /// The file.
        path: PathBuf,
        /// Bytes present.
        found: usize,
        /// Bytes the header needs.
        needed: usize,
    },
    /// The first two bytes are not zero, so this is not an IDX file.
    #[error(
        "{path}: not an IDX file (magic 0x{magic:08x}; IDX files start with two zero bytes, \
         e.g. 0x00000803 for images)"
    )]
    BadMagic {
        /// The file.
        path: PathBuf,
        /// The first four bytes, big-endian.
        magic: u32,
    },
    /// Elements of a type other than unsigned bytes.
    #[error(
        "{path}: the IDX elements are {} (type code 0x{found:02x}); only unsigned bytes (0x08) are supported",
        type_name(*.found)
    )]
    WrongType {
        /// The file.
        path: PathBuf,
        /// The type code found (third magic byte).
        found: u8,
    },
    /// A rank other than the one the kind requires.
    #[error(
        "{path}: IDX rank {found}, but {kind} have rank {} (magic 0x{:08x})",
        .kind.rank(),
        .kind.magic()
    )]
    WrongRank {
        /// The file.
        path: PathBuf,
        /// The rank found (fourth magic byte).
        found: u8,
        /// What the file should hold.
        kind: IdxKind,
    },
    /// Fewer data bytes than the dimensions claim.
    #[error(
        "{path}: truncated: the header ({}) claims {claimed} data bytes but only {found} follow; \
         delete the file and fetch the data again",
        DimsDisplay(.dims)
    )]
    Truncated {
        /// The file.
        path: PathBuf,
        /// The dimensions in the header.
        dims: Vec<u32>,
        /// Data bytes the dimensions claim.
        claimed: u128,
        /// Data bytes present.
        found: u128,
    },
    /// More data bytes than the dimensions claim.
    #[error(
        "{path}: {} trailing bytes: the header ({}) claims {claimed} data bytes but {found} follow",
        .found - .claimed,
        DimsDisplay(.dims)
    )]
    TrailingBytes {
        /// The file.
        path: PathBuf,
        /// The dimensions in the header.
        dims: Vec<u32>,
        /// Data bytes the dimensions claim.
        claimed: u128,
        /// Data bytes present.
        found: u128,
    },
    /// The file, or its decompressed content, exceeds the size limit.
    #[error(
        "{path}: more than {limit} bytes (compressed or decompressed); too large for an MNIST-like IDX file"
    )]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The limit in bytes.
        limit: u64,
    },
    /// Not a regular file (a directory, FIFO or device), or another refusal of the bounded reader.
    #[error(transparent)]
    File(FileError),
    /// The file starts with the gzip magic but is not a valid gzip stream.
    #[error("{path}: corrupt gzip data: {source}; delete the file and fetch the data again")]
    Gzip {
        /// The file.
        path: PathBuf,
        /// The decoder's error.
        #[source]
        source: io::Error,
    },
}

/// Reads an IDX file of `kind` (plain or gzip) with the default limit [`MAX_BYTES`].
pub fn read(path: &Path, kind: IdxKind) -> Result<IdxArray, IdxError> {
    read_with_limit(path, kind, MAX_BYTES)
}

/// Reads an IDX file of `kind` (plain or gzip), accepting at most `max_bytes` both for the file and
/// for its decompressed content. Only regular files are read (see [`cht_sparse::io::read_bounded`]).
pub fn read_with_limit(path: &Path, kind: IdxKind, max_bytes: u64) -> Result<IdxArray, IdxError> {
    // A regular file of at most `max_bytes`, refused before opening otherwise (a FIFO would
    // block, a device never end).
    let raw = read_bounded(path, "IDX", max_bytes).map_err(|e| match e {
        FileError::Io { source, .. } => IdxError::Io {
            path: path.to_owned(),
            source,
        },
        FileError::TooLarge { limit, .. } => IdxError::TooLarge {
            path: path.to_owned(),
            limit,
        },
        other => IdxError::File(other),
    })?;
    parse(path, raw, kind, max_bytes)
}

/// Decodes the bytes of an IDX file (plain or gzip) already in memory; `path` only names the file
/// in errors.
///
/// ```rust
/// use std::path::Path;
/// use cht_data::idx::{self, IdxKind, MAX_BYTES};
///
/// // Two 2 × 3 images.
/// let bytes = idx::encode(&[2, 2, 3], &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]).unwrap();
/// assert_eq!(bytes[..4], [0, 0, 0x08, 3]); // magic: unsigned bytes, rank 3
/// let path = Path::new("tiny-images"); // only used in error messages
/// let images = idx::parse(path, bytes.clone(), IdxKind::Images, MAX_BYTES)?;
/// assert_eq!(images.dims, vec![2, 2, 3]);
/// assert_eq!(images.data[6..], [6, 7, 8, 9, 10, 11]);
/// // A rank-3 file is not a labels file, and a truncated one is rejected.
/// assert!(idx::parse(path, bytes.clone(), IdxKind::Labels, MAX_BYTES).is_err());
/// assert!(idx::parse(path, bytes[..15].to_vec(), IdxKind::Images, MAX_BYTES).is_err());
/// # Ok::<(), cht_data::IdxError>(())
/// ```
pub fn parse(
    path: &Path,
    raw: Vec<u8>,
    kind: IdxKind,
    max_bytes: u64,
) -> Result<IdxArray, IdxError> {
    let bytes = if raw.starts_with(&GZIP_MAGIC) {
        gunzip(path, &raw, max_bytes)?
    } else {
        raw
    };
    decode(path, bytes, kind)
}

/// Encodes an unsigned-byte IDX file (uncompressed). Returns `None` when `data.len()` is not the
/// product of `dims` or the rank exceeds 255, because such a file could not be read back.
pub fn encode(dims: &[u32], data: &[u8]) -> Option<Vec<u8>> {
    let rank = u8::try_from(dims.len()).ok()?;
    if claimed_len(dims) != data.len() as u128 {
        return None;
    }
    let mut out = Vec::with_capacity(4 + 4 * dims.len() + data.len());
    out.extend_from_slice(&[0, 0, TYPE_U8, rank]);
    for d in dims {
        out.extend_from_slice(&d.to_be_bytes());
    }
    out.extend_from_slice(data);
    Some(out)
}

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const TYPE_U8: u8 = 0x08;

/// Decompresses with a hard output limit; the output grows only as data actually decompresses.
fn gunzip(path: &Path, compressed: &[u8], max_bytes: u64) -> Result<Vec<u8>, IdxError> {
    let mut out = Vec::new();
    // A multi-member decoder, because concatenated gzip members are a valid gzip file.
    MultiGzDecoder::new(compressed)
        .take(max_bytes.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|source| IdxError::Gzip {
            path: path.to_owned(),
            source,
        })?;
    if out.len() as u64 > max_bytes {
        return Err(IdxError::TooLarge {
            path: path.to_owned(),
            limit: max_bytes,
        });
    }
    Ok(out)
}

fn decode(path: &Path, mut bytes: Vec<u8>, kind: IdxKind) -> Result<IdxArray, IdxError> {
    let path = || path.to_owned();
    if bytes.is_empty() {
        return Err(IdxError::Empty { path: path() });
    }
    let [z0, z1, type_code, rank] = match bytes.get(..4) {
        Some(&[a, b, c, d]) => [a, b, c, d],
        _ => {
            return Err(IdxError::ShortHeader {
                path: path(),
                found: bytes.len(),
                needed: 4,
            });
        }
    };
    if z0 != 0 || z1 != 0 {
        return Err(IdxError::BadMagic {
            path: path(),
            magic: u32::from_be_bytes([z0, z1, type_code, rank]),
        });
    }
    if type_code != TYPE_U8 {
        return Err(IdxError::WrongType {
            path: path(),
            found: type_code,
        });
    }
    if rank != kind.rank() {
        return Err(IdxError::WrongRank {
            path: path(),
            found: rank,
            kind,
        });
    }
    // At most 4 + 4 · 255 bytes: no overflow.
    let header = 4 + 4 * usize::from(rank);
    let (Some(dim_bytes), Some(data)) = (bytes.get(4..header), bytes.get(header..)) else {
        return Err(IdxError::ShortHeader {
            path: path(),
            found: bytes.len(),
            needed: header,
        });
    };
    let dims: Vec<u32> = dim_bytes
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes(<[u8; 4]>::try_from(c).unwrap_or_default()))
        .collect();
    // Compared with the bytes present, never used to allocate; in u128, so no product of at
    // most 255 dimensions below 2^32 is lost (the product saturates beyond 2^128).
    let claimed = claimed_len(&dims);
    let found = data.len() as u128;
    if found < claimed {
        return Err(IdxError::Truncated {
            path: path(),
            dims,
            claimed,
            found,
        });
    }
    if found > claimed {
        return Err(IdxError::TrailingBytes {
            path: path(),
            dims,
            claimed,
            found,
        });
    }
    bytes.drain(..header);
    Ok(IdxArray { dims, data: bytes })
}

/// The product of the dimensions; saturates, which no real file reaches (rank ≤ 3 fits in u128).
fn claimed_len(dims: &[u32]) -> u128 {
    dims.iter()
        .try_fold(1u128, |acc, &d| acc.checked_mul(u128::from(d)))
        .unwrap_or(u128::MAX)
}

fn type_name(code: u8) -> &'static str {
    match code {
        0x08 => "unsigned bytes",
        0x09 => "signed bytes",
        0x0b => "16-bit integers",
        0x0c => "32-bit integers",
        0x0d => "32-bit floats",
        0x0e => "64-bit floats",
        _ => "of an unknown type",
    }
}

/// Formats dimensions as `60000×28×28`.
struct DimsDisplay<'a>(&'a [u32]);

impl fmt::Display for DimsDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("×")?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use cht_sparse::rng::{Counter, RngKey, Stream};
    use flate2::Compression;
    use flate2::write::GzEncoder;

    use super::*;
    use crate::testutil::TempDir;

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
        enc.write_all(bytes).unwrap();
        enc.finish().unwrap()
    }

    fn images(n: u32) -> (Vec<u8>, Vec<u8>) {
        let data: Vec<u8> = (0..n * 4 * 3).map(|i| (i * 7 % 256) as u8).collect();
        (encode(&[n, 4, 3], &data).unwrap(), data)
    }

    /// Writes `bytes` plainly and gzipped, and returns both paths.
    fn write_both(dir: &TempDir, name: &str, bytes: &[u8]) -> [PathBuf; 2] {
        let plain = dir.path().join(name);
        let gz = dir.path().join(format!("{name}.gz"));
        std::fs::write(&plain, bytes).unwrap();
        std::fs::write(&gz, gzip(bytes)).unwrap();
        [plain, gz]
    }

    #[test]
    fn reads_good_files_plain_and_gzip() {
        let dir = TempDir::new("idx-good");
        let (file, data) = images(5);
        for path in write_both(&dir, "img", &file) {
            let got = read(&path, IdxKind::Images).unwrap();
            assert_eq!(got.dims, [5, 4, 3]);
            assert_eq!(got.data, data);
        }
        let labels = encode(&[4], &[3, 1, 4, 1]).unwrap();
        assert_eq!(labels[..8], [0, 0, 8, 1, 0, 0, 0, 4]);
        for path in write_both(&dir, "lab", &labels) {
            let got = read(&path, IdxKind::Labels).unwrap();
            assert_eq!((got.dims, got.data), (vec![4], vec![3, 1, 4, 1]));
        }
    }

    #[test]
    fn gzip_is_detected_by_content_not_name() {
        let dir = TempDir::new("idx-names");
        let (file, data) = images(2);
        let gz_named_plain = dir.path().join("plain-content.gz");
        let plain_named_gz = dir.path().join("gzip-content");
        std::fs::write(&gz_named_plain, &file).unwrap();
        std::fs::write(&plain_named_gz, gzip(&file)).unwrap();
        for path in [gz_named_plain, plain_named_gz] {
            assert_eq!(read(&path, IdxKind::Images).unwrap().data, data);
        }
    }

    #[test]
    fn rejects_bad_magic() {
        let dir = TempDir::new("idx-magic");
        let (mut file, _) = images(2);
        file[0] = 0x12;
        for path in write_both(&dir, "img", &file) {
            let err = read(&path, IdxKind::Images).unwrap_err();
            assert!(
                matches!(
                    err,
                    IdxError::BadMagic {
                        magic: 0x1200_0803,
                        ..
                    }
                ),
                "{err}"
            );
            assert!(err.to_string().contains("img"), "{err}");
        }
    }

    #[test]
    fn rejects_other_element_types() {
        let dir = TempDir::new("idx-type");
        let (mut file, _) = images(2);
        file[2] = 0x0d;
        let [path, _] = write_both(&dir, "img", &file);
        let err = read(&path, IdxKind::Images).unwrap_err();
        assert!(
            matches!(err, IdxError::WrongType { found: 0x0d, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("32-bit floats"), "{err}");
    }

    #[test]
    fn rejects_wrong_rank() {
        let dir = TempDir::new("idx-rank");
        let (file, _) = images(2);
        for path in write_both(&dir, "img", &file) {
            let err = read(&path, IdxKind::Labels).unwrap_err();
            assert!(
                matches!(
                    err,
                    IdxError::WrongRank {
                        found: 3,
                        kind: IdxKind::Labels,
                        ..
                    }
                ),
                "{err}"
            );
            assert!(err.to_string().contains("0x00000801"), "{err}");
        }
    }

    #[test]
    fn rejects_truncated_data_and_headers() {
        let dir = TempDir::new("idx-trunc");
        let (file, _) = images(3);
        for path in write_both(&dir, "img", &file[..file.len() - 1]) {
            let err = read(&path, IdxKind::Images).unwrap_err();
            assert!(
                matches!(
                    err,
                    IdxError::Truncated {
                        claimed: 36,
                        found: 35,
                        ..
                    }
                ),
                "{err}"
            );
            assert!(err.to_string().contains("3×4×3"), "{err}");
        }
        for cut in [3, 4, 10, 15] {
            let [path, _] = write_both(&dir, "head", &file[..cut]);
            let err = read(&path, IdxKind::Images).unwrap_err();
            assert!(matches!(err, IdxError::ShortHeader { .. }), "{cut}: {err}");
        }
    }

    #[test]
    fn rejects_trailing_bytes() {
        let dir = TempDir::new("idx-trail");
        let (mut file, _) = images(3);
        file.extend_from_slice(&[0, 0]);
        for path in write_both(&dir, "img", &file) {
            let err = read(&path, IdxKind::Images).unwrap_err();
            assert!(
                matches!(
                    err,
                    IdxError::TrailingBytes {
                        claimed: 36,
                        found: 38,
                        ..
                    }
                ),
                "{err}"
            );
            assert!(err.to_string().contains("2 trailing bytes"), "{err}");
        }
    }

    #[test]
    fn rejects_empty_files_and_empty_gzip() {
        let dir = TempDir::new("idx-empty");
        for path in write_both(&dir, "empty", &[]) {
            let err = read(&path, IdxKind::Labels).unwrap_err();
            assert!(matches!(err, IdxError::Empty { .. }), "{err}");
        }
    }

    #[test]
    fn only_regular_files_are_read() {
        let dir = TempDir::new("idx-special");
        let err = read(dir.path(), IdxKind::Labels).unwrap_err();
        assert!(matches!(err, IdxError::File(_)), "{err}");
        assert!(err.to_string().contains("a directory"), "{err}");
        #[cfg(unix)]
        {
            let err = read(Path::new("/dev/zero"), IdxKind::Labels).unwrap_err();
            assert!(err.to_string().contains("character device"), "{err}");
        }
    }

    #[test]
    fn missing_file_is_an_io_error_naming_it() {
        let dir = TempDir::new("idx-missing");
        let path = dir.path().join("nope");
        let err = read(&path, IdxKind::Labels).unwrap_err();
        assert!(matches!(err, IdxError::Io { .. }), "{err}");
        assert!(err.to_string().contains("nope"), "{err}");
    }

    #[test]
    fn huge_claimed_dimensions_do_not_allocate() {
        // A 16-byte header claiming 2^96 bytes must be rejected from the bytes present.
        let dir = TempDir::new("idx-huge");
        let mut file = vec![0, 0, 8, 3];
        for _ in 0..3 {
            file.extend_from_slice(&u32::MAX.to_be_bytes());
        }
        file.extend_from_slice(&[1, 2, 3]);
        for path in write_both(&dir, "img", &file) {
            let err = read(&path, IdxKind::Images).unwrap_err();
            let IdxError::Truncated { claimed, found, .. } = err else {
                panic!("{err}");
            };
            assert_eq!(claimed, u128::from(u32::MAX).pow(3));
            assert_eq!(found, 3);
        }
        let mut labels = vec![0, 0, 8, 1];
        labels.extend_from_slice(&u32::MAX.to_be_bytes());
        let [path, _] = write_both(&dir, "lab", &labels);
        assert!(matches!(
            read(&path, IdxKind::Labels),
            Err(IdxError::Truncated { found: 0, .. })
        ));
    }

    #[test]
    fn size_limit_applies_to_files_and_decompressed_content() {
        let dir = TempDir::new("idx-limit");
        let zeros = encode(&[1 << 20], &vec![0; 1 << 20]).unwrap();
        let [plain, gz] = write_both(&dir, "lab", &zeros);
        // The gzip file is tiny; only its decompressed content exceeds the limit.
        assert!(std::fs::metadata(&gz).unwrap().len() < 10_000);
        for path in [plain, gz] {
            let err = read_with_limit(&path, IdxKind::Labels, 100_000).unwrap_err();
            assert!(
                matches!(err, IdxError::TooLarge { limit: 100_000, .. }),
                "{err}"
            );
            assert_eq!(read(&path, IdxKind::Labels).unwrap().data.len(), 1 << 20);
        }
    }

    #[test]
    fn corrupt_gzip_is_reported() {
        let dir = TempDir::new("idx-gz");
        let (file, _) = images(3);
        let mut gz = gzip(&file);
        let n = gz.len();
        gz[n / 2] ^= 0xff;
        gz.truncate(n - 3);
        let path = dir.path().join("img.gz");
        std::fs::write(&path, gz).unwrap();
        let err = read(&path, IdxKind::Images).unwrap_err();
        assert!(matches!(err, IdxError::Gzip { .. }), "{err}");
    }

    #[test]
    fn encode_refuses_inconsistent_input() {
        assert!(encode(&[2, 2], &[0; 3]).is_none());
        assert!(encode(&[1; 256], &[0]).is_none());
        assert!(encode(&[2, 2], &[0; 4]).is_some());
    }

    /// Random and mutated inputs must give `Ok` or `Err`, never a panic.
    #[test]
    fn random_bytes_never_panic() {
        let mut rng = Counter::new(RngKey::new(7, Stream::Synthetic, 0, 0));
        let path = Path::new("fuzz");
        let (good, _) = images(2);
        let good_gz = gzip(&good);
        let mut outcomes = [0usize; 2];
        for case in 0..4000 {
            let mut bytes: Vec<u8> = match case % 4 {
                // Pure noise.
                0 => (0..rng.below(40)).map(|_| rng.next_u32() as u8).collect(),
                // A plausible header followed by noise.
                1 => {
                    let mut b = vec![0, 0, 8, rng.below(5) as u8];
                    b.extend((0..rng.below(40)).map(|_| rng.below(4) as u8));
                    b
                }
                // A valid file with a few bytes flipped and maybe cut.
                2 => good.clone(),
                _ => good_gz.clone(),
            };
            if case % 4 >= 2 {
                for _ in 0..=rng.below(3) {
                    let i = rng.below(bytes.len() as u32) as usize;
                    bytes[i] ^= 1 << rng.below(8);
                }
                if rng.below(2) == 0 {
                    bytes.truncate(rng.below(bytes.len() as u32 + 1) as usize);
                }
            }
            let kind = if rng.below(2) == 0 {
                IdxKind::Images
            } else {
                IdxKind::Labels
            };
            let result = parse(path, bytes, kind, 1 << 16);
            if let Ok(array) = &result {
                assert_eq!(array.data.len() as u128, claimed_len(&array.dims));
            }
            outcomes[usize::from(result.is_ok())] += 1;
        }
        // Both outcomes occur, so the generator really explores valid and invalid files.
        assert!(outcomes[0] > 100 && outcomes[1] > 10, "{outcomes:?}");
    }
}
