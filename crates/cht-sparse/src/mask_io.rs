//! Reading masks from files and writing score matrices: whitespace-separated 0/1 text (one row per
//! line; rows = output neurons, columns = input neurons) and NumPy `.npy` (2-D, C or Fortran order,
//! bool / integer / float elements that are all 0 or 1).

use std::fmt::Write as _;

use crate::Mask;

/// Why a mask file was rejected. Messages name the line/element so users can fix the file.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
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
}

/// Parses a whitespace-separated 0/1 text matrix.
pub fn parse_text(text: &str) -> Result<Mask, MaskFileError> {
    let mut bits = Vec::new();
    let mut cols = None;
    let mut rows = 0;
    for (n, line) in text.lines().enumerate() {
        let entries: Vec<&str> = line.split_whitespace().collect();
        if entries.is_empty() {
            continue;
        }
        let expected = *cols.get_or_insert(entries.len());
        if entries.len() != expected {
            return Err(MaskFileError::Ragged {
                line: n + 1,
                got: entries.len(),
                expected,
            });
        }
        for (c, e) in entries.iter().enumerate() {
            bits.push(match *e {
                "0" => false,
                "1" => true,
                other => match other.parse::<f64>() {
                    Ok(0.0) => false,
                    Ok(1.0) => true,
                    _ => {
                        return Err(MaskFileError::NotBinary {
                            at: format!("line {}, column {}", n + 1, c + 1),
                            value: other.to_owned(),
                        });
                    }
                },
            });
        }
        rows += 1;
    }
    let cols = cols.ok_or(MaskFileError::Empty)?;
    Ok(Mask::from_bools(rows, cols, bits).expect("row lengths were checked"))
}

/// Writes a row-major score matrix as text, one row per line.
pub fn format_text(rows: usize, cols: usize, values: &[f32]) -> String {
    let mut out = String::with_capacity(rows * cols * 8);
    for r in 0..rows {
        for c in 0..cols {
            if c > 0 {
                out.push(' ');
            }
            let v = values[r * cols + c];
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

/// Parses a 2-D `.npy` array of 0/1 values.
pub fn parse_npy(bytes: &[u8]) -> Result<Mask, MaskFileError> {
    let err = |m: &str| MaskFileError::Npy(m.to_owned());
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(err("missing the \\x93NUMPY magic"));
    }
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        v => {
            return Err(MaskFileError::Npy(format!(
                "unsupported format version {v}"
            )));
        }
    };
    let header = bytes
        .get(start..start + header_len)
        .and_then(|h| std::str::from_utf8(h).ok())
        .ok_or_else(|| err("truncated or non-UTF-8 header"))?;
    let descr = dict_value(header, "descr").ok_or_else(|| err("header has no 'descr'"))?;
    let fortran =
        dict_value(header, "fortran_order").ok_or_else(|| err("header has no 'fortran_order'"))?;
    let shape = dict_value(header, "shape").ok_or_else(|| err("header has no 'shape'"))?;
    let dims: Vec<usize> = shape
        .trim_matches(|c| c == '(' || c == ')')
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>().map_err(|_| err("bad shape")))
        .collect::<Result<_, _>>()?;
    let [rows, cols] = dims[..] else {
        return Err(MaskFileError::Npy(format!(
            "expected a 2-D array, got shape {shape}"
        )));
    };
    if rows == 0 || cols == 0 {
        return Err(MaskFileError::Empty);
    }
    let descr = descr.trim_matches(|c| c == '\'' || c == '"');
    let (little, kind, size) = parse_descr(descr).ok_or_else(|| {
        MaskFileError::Npy(format!(
            "unsupported element type {descr:?} (use bool, int or float)"
        ))
    })?;
    let data = &bytes[start + header_len..];
    let n = rows
        .checked_mul(cols)
        .ok_or_else(|| err("shape too large"))?;
    if data.len() < n * size {
        return Err(MaskFileError::Npy(format!(
            "data has {} bytes, shape needs {}",
            data.len(),
            n * size
        )));
    }
    let mut bits = vec![false; n];
    for idx in 0..n {
        let raw = &data[idx * size..(idx + 1) * size];
        let value = element(raw, kind, little);
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
        // Fortran order stores columns first.
        let (r, c) = if fortran == "True" {
            (idx % rows, idx / rows)
        } else {
            (idx / cols, idx % cols)
        };
        bits[r * cols + c] = bit;
    }
    Ok(Mask::from_bools(rows, cols, bits).expect("length checked"))
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
    out.extend((header.len() as u16).to_le_bytes());
    out.extend(header.as_bytes());
    for v in values {
        out.extend(v.to_le_bytes());
    }
    out
}

fn dict_value<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let at = header.find(&format!("'{key}'"))?;
    let rest = header[at + key.len() + 2..]
        .trim_start()
        .strip_prefix(':')?
        .trim_start();
    let end = if rest.starts_with('(') {
        rest.find(')')? + 1
    } else {
        rest.find([',', '}'])?
    };
    Some(rest[..end].trim())
}

#[derive(Clone, Copy)]
enum Kind {
    Bool,
    Int,
    Uint,
    Float,
}

fn parse_descr(d: &str) -> Option<(bool, Kind, usize)> {
    let (order, rest) = d.split_at(1);
    let little = match order {
        "<" | "|" | "=" => true,
        ">" => false,
        _ => return None,
    };
    let (k, size) = rest.split_at(1);
    let size: usize = size.parse().ok()?;
    let kind = match k {
        "b" => Kind::Bool,
        "i" => Kind::Int,
        "u" => Kind::Uint,
        "f" => Kind::Float,
        _ => return None,
    };
    let ok = match kind {
        Kind::Bool => size == 1,
        Kind::Int | Kind::Uint => matches!(size, 1 | 2 | 4 | 8),
        Kind::Float => matches!(size, 4 | 8),
    };
    ok.then_some((little, kind, size))
}

fn element(raw: &[u8], kind: Kind, little: bool) -> f64 {
    let mut b = raw.to_vec();
    if !little {
        b.reverse();
    }
    let mut w = [0u8; 8];
    w[..b.len()].copy_from_slice(&b);
    let u = u64::from_le_bytes(w);
    match (kind, b.len()) {
        (Kind::Bool, _) | (Kind::Uint, _) => u as f64,
        (Kind::Int, n) => {
            let shift = 64 - 8 * n as u32;
            ((u << shift) as i64 >> shift) as f64
        }
        (Kind::Float, 4) => f64::from(f32::from_bits(u as u32)),
        (Kind::Float, _) => f64::from_bits(u),
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
        assert_eq!(parse_text("").unwrap_err(), MaskFileError::Empty);
        assert_eq!(
            parse_text("1 0\n1").unwrap_err(),
            MaskFileError::Ragged {
                line: 2,
                got: 1,
                expected: 2
            }
        );
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
}
