//! Reading masks from files and writing score matrices: whitespace-separated 0/1 text (one row per
//! line; rows = output neurons, columns = input neurons) and NumPy `.npy` (2-D, C or Fortran order,
//! bool / integer / float elements that are all 0 or 1).
//!
//! Mask files are untrusted: [`read_mask`] reads at most [`MAX_MASK_FILE_BYTES`] from a regular
//! file, and both parsers work on the bytes with checked arithmetic, never allocate from a size
//! that a header claims (only after checking it against the bytes present), accept at most
//! [`MAX_ENTRIES`] entries, and never panic. The `.npy` header, a Python dict literal, is parsed by
//! a small tokenizer: exactly the keys `descr`, `fortran_order` and `shape`, each once, with a
//! string, `True`/`False` and a tuple of integers as values.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::Mask;
use crate::io::{FileError, read_bounded};

/// The largest mask file [`read_mask`] reads: 1 GiB.
pub const MAX_MASK_FILE_BYTES: u64 = 1 << 30;

/// The most entries (`rows × cols`) a mask file may hold: 2^28 = 268 435 456, e.g. a
/// 16 384 × 16 384 layer. The mask takes one byte per entry in memory.
pub const MAX_ENTRIES: usize = 1 << 28;

/// Why a mask file was rejected. Messages name the line/element so users can fix the file.
#[derive(Debug, thiserror::Error)]
pub enum MaskFileError {
    /// No rows at all.
    #[error("the mask is empty (no rows)")]
    Empty,
    /// A row with a different number of entries than the first.
    #[error("line {line}: {got} entries, but the first row has {expected} (ragged rows)")]
    Ragged {
        /// 1-based line number of the ragged row.
        line: usize,
        /// Entries on that line.
        got: usize,
        /// Entries on the first row.
        expected: usize,
    },
    /// An entry other than 0 or 1.
    #[error("{at}: value {value:?} is not 0 or 1")]
    NotBinary {
        /// Where the entry is: `line N, column M` (1-based) for text, `element N` (0-based, file
        /// order) for `.npy`.
        at: String,
        /// The entry as written in the text file, or the decoded `.npy` element.
        value: String,
    },
    /// A malformed `.npy` file.
    #[error("not a valid .npy mask: {0}")]
    Npy(String),
    /// More entries than [`MAX_ENTRIES`].
    #[error(
        "the mask has more than {limit} entries ({what}), the limit for mask files; \
         masks this large are not supported"
    )]
    TooLarge {
        /// The shape or row count found, in words.
        what: String,
        /// [`MAX_ENTRIES`].
        limit: usize,
    },
    /// Neither `.npy` (no `\x93NUMPY` magic) nor UTF-8 text.
    #[error(
        "neither a .npy file (no \\x93NUMPY magic) nor UTF-8 text (invalid byte at offset {offset})"
    )]
    NotText {
        /// The first byte that is not UTF-8.
        offset: usize,
    },
    /// The file could not be read (missing, not a regular file, larger than
    /// [`MAX_MASK_FILE_BYTES`], …).
    #[error(transparent)]
    File(#[from] FileError),
    /// A file's content was rejected; the error names the file.
    #[error("{path}: {source}")]
    InFile {
        /// The mask file.
        path: PathBuf,
        /// What is wrong with it.
        #[source]
        source: Box<MaskFileError>,
    },
}

/// Reads the mask at `path`: a `.npy` file (recognised by its `\x93NUMPY` magic, whatever the
/// file's name) or a 0/1 text matrix. The file must be a regular file of at most
/// [`MAX_MASK_FILE_BYTES`]; errors name it.
pub fn read_mask(path: &Path) -> Result<Mask, MaskFileError> {
    let bytes = read_bounded(path, "mask", MAX_MASK_FILE_BYTES)?;
    parse_mask(&bytes).map_err(|source| MaskFileError::InFile {
        path: path.to_owned(),
        source: Box::new(source),
    })
}

/// Parses the bytes of a mask file: `.npy` when they start with the `\x93NUMPY` magic, else UTF-8
/// text (see [`parse_npy`] and [`parse_text`]).
pub fn parse_mask(bytes: &[u8]) -> Result<Mask, MaskFileError> {
    if bytes.starts_with(NPY_MAGIC) {
        return parse_npy(bytes);
    }
    let text = std::str::from_utf8(bytes).map_err(|e| MaskFileError::NotText {
        offset: e.valid_up_to(),
    })?;
    parse_text(text)
}

/// Parses a whitespace-separated 0/1 text matrix (`0`, `1`, or numbers equal to them such as
/// `1.0`); blank lines are skipped. At most [`MAX_ENTRIES`] entries.
pub fn parse_text(text: &str) -> Result<Mask, MaskFileError> {
    let mut bits = Vec::new();
    let mut cols: Option<usize> = None;
    let mut rows = 0usize;
    for (n, line) in text.lines().enumerate() {
        let line_no = n.saturating_add(1);
        let mut got = 0usize;
        for (c, e) in line.split_whitespace().enumerate() {
            if bits.len() >= MAX_ENTRIES {
                return Err(MaskFileError::TooLarge {
                    what: format!("more than {MAX_ENTRIES} entries by line {line_no}"),
                    limit: MAX_ENTRIES,
                });
            }
            if let Some(expected) = cols
                && c >= expected
            {
                return Err(MaskFileError::Ragged {
                    line: line_no,
                    got: line.split_whitespace().count(),
                    expected,
                });
            }
            bits.push(match e {
                "0" => false,
                "1" => true,
                other => match other.parse::<f64>() {
                    Ok(0.0) => false,
                    Ok(1.0) => true,
                    _ => {
                        return Err(MaskFileError::NotBinary {
                            at: format!("line {line_no}, column {}", c.saturating_add(1)),
                            value: other.to_owned(),
                        });
                    }
                },
            });
            got += 1;
        }
        if got == 0 {
            continue;
        }
        let expected = *cols.get_or_insert(got);
        if got != expected {
            return Err(MaskFileError::Ragged {
                line: line_no,
                got,
                expected,
            });
        }
        rows += 1;
    }
    let cols = cols.ok_or(MaskFileError::Empty)?;
    mask(rows, cols, bits)
}

/// The mask of checked dimensions (`bits.len() == rows * cols` by construction).
fn mask(rows: usize, cols: usize, bits: Vec<bool>) -> Result<Mask, MaskFileError> {
    Mask::from_bools(rows, cols, bits)
        .map_err(|e| MaskFileError::Npy(format!("inconsistent mask: {e}")))
}

/// Writes a row-major score matrix as text, one row per line (`values` holds `rows · cols`
/// entries; missing ones are left out).
pub fn format_text(rows: usize, cols: usize, values: &[f32]) -> String {
    let mut out = String::with_capacity(values.len().saturating_mul(8));
    if cols == 0 {
        return out;
    }
    for row in values.chunks(cols).take(rows) {
        for (c, &v) in row.iter().enumerate() {
            if c > 0 {
                out.push(' ');
            }
            if v == 0.0 {
                out.push('0');
            } else {
                let _ = write!(out, "{v}");
            }
        }
        out.push('\n');
    }
    out
}

const NPY_MAGIC: &[u8] = b"\x93NUMPY";

/// Parses a 2-D `.npy` array of 0/1 values: format version 1.0 (`u16` header length, Latin-1
/// header), 2.0 (`u32` length, Latin-1) or 3.0 (`u32` length, UTF-8); bool, integer or float
/// elements in either byte order; C or Fortran order. The data must be exactly `rows · cols`
/// elements.
pub fn parse_npy(bytes: &[u8]) -> Result<Mask, MaskFileError> {
    let err = |m: &str| MaskFileError::Npy(m.to_owned());
    let rest = bytes
        .strip_prefix(NPY_MAGIC)
        .ok_or_else(|| err("missing the \\x93NUMPY magic"))?;
    let (&major, rest) = rest
        .split_first()
        .ok_or_else(|| err("truncated before the version"))?;
    let (&minor, rest) = rest
        .split_first()
        .ok_or_else(|| err("truncated before the version"))?;
    let (len_bytes, utf8) = match (major, minor) {
        (1, 0) => (2, false),
        (2, 0) => (4, false),
        (3, 0) => (4, true),
        _ => {
            return Err(MaskFileError::Npy(format!(
                "unsupported format version {major}.{minor} (1.0, 2.0 and 3.0 are supported)"
            )));
        }
    };
    let (len_field, rest) = rest
        .split_at_checked(len_bytes)
        .ok_or_else(|| err("truncated before the header length"))?;
    let mut word = [0u8; 4];
    word.get_mut(..len_bytes)
        .ok_or_else(|| err("bad header length field"))?
        .copy_from_slice(len_field);
    let header_len = u32::from_le_bytes(word);
    let (header, data) = usize::try_from(header_len)
        .ok()
        .and_then(|n| rest.split_at_checked(n))
        .ok_or_else(|| {
            MaskFileError::Npy(format!(
                "the header length {header_len} runs past the end of the file ({} bytes after \
                 the length field)",
                rest.len()
            ))
        })?;
    let header: String = if utf8 {
        std::str::from_utf8(header)
            .map_err(|e| {
                MaskFileError::Npy(format!(
                    "the version 3.0 header is not UTF-8 (byte {})",
                    e.valid_up_to()
                ))
            })?
            .to_owned()
    } else {
        // Versions 1.0 and 2.0: Latin-1, one character per byte.
        header.iter().map(|&b| char::from(b)).collect()
    };
    let Header {
        descr,
        fortran,
        shape,
    } = parse_header(&header)?;
    let [rows, cols] = shape[..] else {
        return Err(MaskFileError::Npy(format!(
            "expected a 2-D array, got shape {shape:?}"
        )));
    };
    let (rows, cols) = match (usize::try_from(rows), usize::try_from(cols)) {
        (Ok(r), Ok(c)) => (r, c),
        _ => {
            return Err(MaskFileError::TooLarge {
                what: format!("shape ({rows}, {cols})"),
                limit: MAX_ENTRIES,
            });
        }
    };
    if rows == 0 || cols == 0 {
        return Err(MaskFileError::Empty);
    }
    let (order, kind, size) = parse_descr(&descr).ok_or_else(|| {
        MaskFileError::Npy(format!(
            "unsupported element type {descr:?} (use bool, int or float, e.g. '<f4' or '|b1')"
        ))
    })?;
    let n = rows
        .checked_mul(cols)
        .filter(|&n| n <= MAX_ENTRIES)
        .ok_or_else(|| MaskFileError::TooLarge {
            what: format!("shape ({rows}, {cols})"),
            limit: MAX_ENTRIES,
        })?;
    // Checked against the bytes present before anything is allocated for the elements.
    let needed = n.checked_mul(size);
    if needed != Some(data.len()) {
        return Err(MaskFileError::Npy(format!(
            "the data has {} bytes, but shape ({rows}, {cols}) of {descr:?} needs {}",
            data.len(),
            needed.map_or_else(|| "more than fit in memory".to_owned(), |b| b.to_string())
        )));
    }
    let mut bits = vec![false; n];
    for (idx, raw) in data.chunks_exact(size).enumerate() {
        let value = element(raw, kind, order);
        let bit = match value {
            0.0 => false,
            1.0 => true,
            v => {
                return Err(MaskFileError::NotBinary {
                    at: format!("element {idx}"),
                    value: format!("{v}"),
                });
            }
        };
        // Fortran order stores columns first; both indices are below rows · cols.
        let at = if fortran {
            (idx % rows) * cols + idx / rows
        } else {
            idx
        };
        if let Some(b) = bits.get_mut(at) {
            *b = bit;
        }
    }
    mask(rows, cols, bits)
}

/// Serialises a row-major f32 matrix as a version-1 `.npy` file.
pub fn format_npy(rows: usize, cols: usize, values: &[f32]) -> Vec<u8> {
    let mut header =
        format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {cols}), }}");
    // Pad so that magic + version + length + header is a multiple of 64, ending in a newline.
    let total = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - total % 64) % 64));
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    // The header of two numbers is far below 64 KiB.
    out.extend(
        u16::try_from(header.len())
            .unwrap_or(u16::MAX)
            .to_le_bytes(),
    );
    out.extend(header.as_bytes());
    for v in values {
        out.extend(v.to_le_bytes());
    }
    out
}

/// The three entries of a `.npy` header.
struct Header {
    descr: String,
    fortran: bool,
    shape: Vec<u64>,
}

/// A token of the Python literal in a `.npy` header.
#[derive(Debug, Clone, PartialEq)]
enum Token {
    Open(char),
    Close(char),
    Comma,
    Colon,
    Str(String),
    Int(u64),
    Name(String),
}

/// The longest string, name or number token accepted (real headers hold a few dozen bytes).
const MAX_TOKEN: usize = 256;
/// The most tokens a header may hold (a 2-D header has about 16).
const MAX_TOKENS: usize = 1024;

fn tokenize(header: &str) -> Result<Vec<Token>, MaskFileError> {
    let err = |m: String| MaskFileError::Npy(format!("header: {m}"));
    let mut tokens = Vec::new();
    let mut chars = header.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        if tokens.len() >= MAX_TOKENS {
            return Err(err(format!("more than {MAX_TOKENS} tokens")));
        }
        let token = match c {
            c if c.is_ascii_whitespace() => continue,
            '{' | '(' | '[' => Token::Open(c),
            '}' | ')' | ']' => Token::Close(c),
            ',' => Token::Comma,
            ':' => Token::Colon,
            '\'' | '"' => {
                let mut s = String::new();
                loop {
                    match chars.next() {
                        Some((_, q)) if q == c => break,
                        Some((_, '\\')) => {
                            return Err(err("escapes in strings are not supported".into()));
                        }
                        Some((_, '\n')) | None => {
                            return Err(err(format!("unterminated string at character {at}")));
                        }
                        Some((_, ch)) if s.len() < MAX_TOKEN => s.push(ch),
                        Some(_) => return Err(err(format!("string longer than {MAX_TOKEN}"))),
                    }
                }
                Token::Str(s)
            }
            '0'..='9' => {
                let mut v = u64::from(c.to_digit(10).unwrap_or(0));
                while let Some(&(_, d)) = chars.peek() {
                    let Some(digit) = d.to_digit(10) else { break };
                    chars.next();
                    v = v
                        .checked_mul(10)
                        .and_then(|v| v.checked_add(u64::from(digit)))
                        .ok_or_else(|| err("a number does not fit 64 bits".into()))?;
                }
                // Python 2 headers write long integers as `3L`.
                if let Some(&(_, 'L')) = chars.peek() {
                    chars.next();
                }
                Token::Int(v)
            }
            c if c.is_ascii_alphabetic() || c == '_' => {
                let mut s = String::from(c);
                while let Some(&(_, d)) = chars.peek() {
                    if !(d.is_ascii_alphanumeric() || d == '_') {
                        break;
                    }
                    chars.next();
                    if s.len() >= MAX_TOKEN {
                        return Err(err(format!("name longer than {MAX_TOKEN}")));
                    }
                    s.push(d);
                }
                Token::Name(s)
            }
            other => return Err(err(format!("unexpected character {other:?} at {at}"))),
        };
        tokens.push(token);
    }
    Ok(tokens)
}

/// A value of the header dict.
enum Value {
    Str(String),
    Bool(bool),
    Tuple(Vec<u64>),
}

/// Parses `{'descr': <str>, 'fortran_order': <bool>, 'shape': <tuple>}` (any key order, an
/// optional trailing comma, surrounding whitespace), refusing missing, unknown and repeated keys
/// and values of the wrong type.
fn parse_header(header: &str) -> Result<Header, MaskFileError> {
    let err = |m: String| MaskFileError::Npy(format!("header: {m}"));
    let tokens = tokenize(header)?;
    let mut it = tokens.into_iter().peekable();
    if it.next() != Some(Token::Open('{')) {
        return Err(err("does not start with '{'".into()));
    }
    let (mut descr, mut fortran, mut shape) = (None, None, None);
    loop {
        let key = match it.next() {
            Some(Token::Close('}')) => break,
            Some(Token::Str(key)) => key,
            other => return Err(err(format!("expected a key or '}}', found {other:?}"))),
        };
        if !matches!(key.as_str(), "descr" | "fortran_order" | "shape") {
            return Err(err(format!(
                "unknown key {key:?} (a mask header has 'descr', 'fortran_order' and 'shape')"
            )));
        }
        if it.next() != Some(Token::Colon) {
            return Err(err(format!("expected ':' after the key {key:?}")));
        }
        let value = match it.next() {
            Some(Token::Str(s)) => Value::Str(s),
            Some(Token::Name(n)) if n == "True" => Value::Bool(true),
            Some(Token::Name(n)) if n == "False" => Value::Bool(false),
            Some(Token::Open('(')) => Value::Tuple(parse_tuple(&mut it)?),
            other => {
                return Err(err(format!(
                    "unsupported value {other:?} for {key:?} (expected a string, True, False \
                     or a tuple of integers)"
                )));
            }
        };
        let slot_taken = match (key.as_str(), value) {
            ("descr", Value::Str(s)) => descr.replace(s).is_some(),
            ("fortran_order", Value::Bool(b)) => fortran.replace(b).is_some(),
            ("shape", Value::Tuple(t)) => shape.replace(t).is_some(),
            _ => {
                return Err(err(format!(
                    "{key:?} has a value of the wrong type (descr: a string, fortran_order: \
                     True or False, shape: a tuple)"
                )));
            }
        };
        if slot_taken {
            return Err(err(format!("the key {key:?} appears twice")));
        }
        match it.next() {
            Some(Token::Comma) => {}
            Some(Token::Close('}')) => break,
            other => return Err(err(format!("expected ',' or '}}', found {other:?}"))),
        }
    }
    if let Some(extra) = it.next() {
        return Err(err(format!("unexpected {extra:?} after the dict")));
    }
    Ok(Header {
        descr: descr.ok_or_else(|| err("no 'descr'".into()))?,
        fortran: fortran.ok_or_else(|| err("no 'fortran_order'".into()))?,
        shape: shape.ok_or_else(|| err("no 'shape'".into()))?,
    })
}

/// The integers of a tuple after its `(`: `()`, `(n,)`, `(a, b)`, `(a, b,)`.
fn parse_tuple(it: &mut impl Iterator<Item = Token>) -> Result<Vec<u64>, MaskFileError> {
    let err = |m: &str| MaskFileError::Npy(format!("header: shape: {m}"));
    let mut dims = Vec::new();
    loop {
        match it.next() {
            Some(Token::Close(')')) => return Ok(dims),
            Some(Token::Int(v)) => dims.push(v),
            _ => return Err(err("expected an integer or ')'")),
        }
        match it.next() {
            Some(Token::Comma) => {}
            Some(Token::Close(')')) => return Ok(dims),
            _ => return Err(err("expected ',' or ')'")),
        }
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Bool,
    Int,
    Uint,
    Float,
}

/// `(little_endian, kind, size)` of a descr such as `<f4`, `>i8` or `|b1`.
fn parse_descr(d: &str) -> Option<(bool, Kind, usize)> {
    let mut chars = d.chars();
    let order = chars.next()?;
    let kind = match chars.next()? {
        'b' => Kind::Bool,
        'i' => Kind::Int,
        'u' => Kind::Uint,
        'f' => Kind::Float,
        _ => return None,
    };
    let digits = chars.as_str();
    if digits.is_empty() || digits.len() > 2 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let size: usize = digits.parse().ok()?;
    let little = match order {
        '<' => true,
        '>' => false,
        '=' => cfg!(target_endian = "little"),
        // "Not applicable": single bytes only.
        '|' if size == 1 => true,
        _ => return None,
    };
    let ok = match kind {
        Kind::Bool => size == 1,
        Kind::Int | Kind::Uint => matches!(size, 1 | 2 | 4 | 8),
        Kind::Float => matches!(size, 4 | 8),
    };
    ok.then_some((little, kind, size))
}

/// The value of one element of `raw.len()` (1, 2, 4 or 8) bytes.
fn element(raw: &[u8], kind: Kind, little: bool) -> f64 {
    let n = raw.len().min(8);
    let mut w = [0u8; 8];
    for (i, &b) in raw.iter().take(n).enumerate() {
        // Little-endian into the low bytes of `w`.
        let at = if little { i } else { n - 1 - i };
        if let Some(slot) = w.get_mut(at) {
            *slot = b;
        }
    }
    let u = u64::from_le_bytes(w);
    match kind {
        Kind::Bool | Kind::Uint => u as f64,
        Kind::Int => {
            let shift = 64u32.saturating_sub(8 * n as u32).min(63);
            (((u << shift) as i64) >> shift) as f64
        }
        Kind::Float if n == 4 => f64::from(f32::from_bits(u as u32)),
        Kind::Float => f64::from_bits(u),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trip_and_errors() {
        let m = parse_text("1 0 1\n0 1 1\n\n").unwrap();
        assert_eq!((m.rows(), m.cols(), m.nnz()), (2, 3, 4));
        assert!(parse_text("1.0 0.0\n0 1").is_ok());
        assert!(matches!(parse_text("").unwrap_err(), MaskFileError::Empty));
        assert!(matches!(
            parse_text("1 0\n1").unwrap_err(),
            MaskFileError::Ragged {
                line: 2,
                got: 1,
                expected: 2
            }
        ));
        assert!(matches!(
            parse_text("1 0\n1 1 0").unwrap_err(),
            MaskFileError::Ragged {
                line: 2,
                got: 3,
                expected: 2
            }
        ));
        assert!(matches!(
            parse_text("1 2").unwrap_err(),
            MaskFileError::NotBinary { .. }
        ));
        assert!(matches!(
            parse_text("1 x").unwrap_err(),
            MaskFileError::NotBinary { .. }
        ));
        assert_eq!(format_text(1, 3, &[0.0, 1.5, 0.25]), "0 1.5 0.25\n");
    }

    #[test]
    fn npy_round_trip_and_errors() {
        let bytes = format_npy(2, 3, &[1.0, 0.0, 1.0, 0.0, 0.0, 1.0]);
        assert_eq!(
            (bytes.len() - 6 * 4) % 64,
            0,
            "header must be padded to 64 bytes"
        );
        let m = parse_npy(&bytes).unwrap();
        assert_eq!(m.as_bools(), &[true, false, true, false, false, true]);
        let scores = format_npy(2, 3, &[0.5, 0.0, 0.0, 0.0, 0.0, 0.0]);
        assert!(matches!(
            parse_npy(&scores).unwrap_err(),
            MaskFileError::NotBinary { .. }
        ));
        assert!(matches!(
            parse_npy(b"not numpy").unwrap_err(),
            MaskFileError::Npy(_)
        ));
        let mut truncated = bytes.clone();
        truncated.truncate(bytes.len() - 4);
        assert!(matches!(
            parse_npy(&truncated).unwrap_err(),
            MaskFileError::Npy(_)
        ));
        // Fortran order and a 1-byte bool array written by hand.
        let header = "{'descr': '|b1', 'fortran_order': True, 'shape': (2, 2), }";
        let mut f = b"\x93NUMPY\x01\x00".to_vec();
        f.extend((header.len() as u16).to_le_bytes());
        f.extend(header.as_bytes());
        f.extend([1u8, 0, 1, 1]); // column-major [[1,1],[0,1]]
        assert_eq!(
            parse_npy(&f).unwrap().as_bools(),
            &[true, true, false, true]
        );
    }

    fn npy_with(version: u8, header: &str, data: &[u8]) -> Vec<u8> {
        let mut f = b"\x93NUMPY".to_vec();
        f.extend([version, 0]);
        if version == 1 {
            f.extend((header.len() as u16).to_le_bytes());
        } else {
            f.extend((header.len() as u32).to_le_bytes());
        }
        f.extend(header.as_bytes());
        f.extend(data);
        f
    }

    fn npy_err(version: u8, header: &str, data: &[u8]) -> String {
        match parse_npy(&npy_with(version, header, data)) {
            Ok(m) => panic!("{header}: accepted as {m:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn npy_headers_are_parsed_not_searched() {
        let ok = |v, h: &str, d: &[u8]| parse_npy(&npy_with(v, h, d)).unwrap();
        // Any key order, double quotes, no trailing comma, versions 2 and 3, Python 2 longs.
        let m = ok(
            2,
            "{\"shape\": (1L, 2L), \"fortran_order\": False, \"descr\": \"<u2\"}\n",
            &[1, 0, 0, 0],
        );
        assert_eq!(m.as_bools(), &[true, false]);
        ok(
            3,
            "{'descr': '|u1', 'fortran_order': False, 'shape': (1, 1)}",
            &[1],
        );
        for (header, needle) in [
            (
                "{'descr': '', 'fortran_order': False, 'shape': (1, 1), }",
                "element type",
            ),
            (
                "{'descr': '<', 'fortran_order': False, 'shape': (1, 1), }",
                "element type",
            ),
            (
                "{'descr': '<\u{e9}4', 'fortran_order': False, 'shape': (1, 1), }",
                "element type",
            ),
            (
                "{'descr': '<f+4', 'fortran_order': False, 'shape': (1, 1), }",
                "element type",
            ),
            (
                "{'descr': '|f4', 'fortran_order': False, 'shape': (1, 1), }",
                "element type",
            ),
            (
                "{'descr': '|u1', 'fortran_order': 'maybe', 'shape': (1, 1), }",
                "wrong type",
            ),
            (
                "{'descr': '|u1', 'fortran_order': false, 'shape': (1, 1), }",
                "unsupported value",
            ),
            (
                "{'descr': '|u1', 'descr': '|u1', 'fortran_order': False, 'shape': (1, 1)}",
                "twice",
            ),
            (
                "{'descr': '|u1', 'fortran_order': False, 'shape': (1, 1), 'x': 1}",
                "unknown key",
            ),
            (
                "{'descr': '|u1', 'fortran_order': False, 'shape': (1, 1), '\u{e9}': 1}",
                "unknown",
            ),
            ("{'descr': '|u1', 'fortran_order': False}", "no 'shape'"),
            (
                "{'descr': '|u1', 'fortran_order': False, 'shape': ((1, 1))}",
                "shape",
            ),
            (
                "{'descr': '|u1', 'fortran_order': False, 'shape': (1, 1)} x",
                "after the dict",
            ),
            (
                "{'descr': '|u1', 'fortran_order': False, 'shape': (1, 1)",
                "expected",
            ),
            (
                "{'descr': '|u1', 'fortran_order': False, 'shape': (1,)}",
                "2-D",
            ),
            (
                "{'descr': '|u1\\n', 'fortran_order': False, 'shape': (1, 1)}",
                "escapes",
            ),
            (
                "{'descr': '|u1, 'fortran_order': False, 'shape': (1, 1)}",
                "unterminated",
            ),
        ] {
            let e = npy_err(1, header, &[1]);
            assert!(e.contains(needle), "{header}: {e}");
        }
        // Sizes: overflowing, over the limit, or not matching the data are errors before any
        // allocation.
        for shape in [
            "(2305843009213693952, 1)",
            "(18446744073709551615, 2)",
            "(65536, 65536)",
        ] {
            let h = format!("{{'descr': '<f8', 'fortran_order': False, 'shape': {shape}}}");
            let e = npy_err(1, &h, &[0; 8]);
            assert!(e.contains("limit") || e.contains("needs"), "{shape}: {e}");
        }
        let e = npy_err(
            1,
            "{'descr': '<f8', 'fortran_order': False, 'shape': (99999999999999999999, 1)}",
            &[],
        );
        assert!(e.contains("64 bits"), "{e}");
        let e = npy_err(
            1,
            "{'descr': '|u1', 'fortran_order': False, 'shape': (1, 1)}",
            &[1, 0],
        );
        assert!(e.contains("needs 1"), "{e}");
        // The header length may not run past the file; versions and minor versions are checked.
        let mut f = npy_with(
            1,
            "{'descr': '|u1', 'fortran_order': False, 'shape': (1, 1)}",
            &[1],
        );
        f[8] = 0xff;
        assert!(
            parse_npy(&f)
                .unwrap_err()
                .to_string()
                .contains("past the end")
        );
        let mut f = npy_with(
            2,
            "{'descr': '|u1', 'fortran_order': False, 'shape': (1, 1)}",
            &[1],
        );
        f[11] = 0xff;
        assert!(
            parse_npy(&f)
                .unwrap_err()
                .to_string()
                .contains("past the end")
        );
        f[6] = 4;
        assert!(
            parse_npy(&f)
                .unwrap_err()
                .to_string()
                .contains("version 4.0")
        );
        for cut in 0..12 {
            assert!(parse_npy(&f[..cut]).is_err());
        }
        // Version 3 headers must be UTF-8; versions 1 and 2 are Latin-1 (so never invalid).
        let mut f = npy_with(
            3,
            "{'descr': '|u1', 'fortran_order': False, 'shape': (1, 1)}",
            &[1],
        );
        f[20] = 0xff;
        assert!(parse_npy(&f).unwrap_err().to_string().contains("UTF-8"));
    }

    #[test]
    fn read_mask_picks_the_format_by_magic_and_names_the_file() {
        let dir = std::env::temp_dir().join(format!("cht-mask-io-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let npy = dir.join("mask.txt");
        std::fs::write(&npy, format_npy(1, 2, &[1.0, 0.0])).unwrap();
        assert_eq!(read_mask(&npy).unwrap().as_bools(), &[true, false]);
        let text = dir.join("mask.npy");
        std::fs::write(&text, "0 1\n").unwrap();
        assert_eq!(read_mask(&text).unwrap().as_bools(), &[false, true]);
        std::fs::write(&text, b"0 \xff\n").unwrap();
        let e = read_mask(&text).unwrap_err();
        assert!(
            e.to_string().contains("mask.npy") && e.to_string().contains("offset 2"),
            "{e}"
        );
        assert!(matches!(read_mask(&dir), Err(MaskFileError::File(_))));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
