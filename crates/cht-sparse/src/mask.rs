//! Dense 0/1 masks: the interchange form between files, samplers and the CSR builder.

use crate::{Error, Result};

/// A dense `rows × cols` 0/1 mask, row-major (rows = output neurons, columns = input neurons).
///
/// ```rust
/// use cht_sparse::Mask;
///
/// let mut mask = Mask::zeros(2, 4);
/// mask.set(0, 1, true);
/// mask.set(1, 3, true);
/// assert!(mask.get(1, 3) && !mask.get(1, 2));
/// assert_eq!(mask.nnz(), 2);
/// assert_eq!(mask.density(), 0.25);
/// assert_eq!(mask.to_u32(), vec![0, 1, 0, 0, 0, 0, 0, 1]);
/// // The length must be rows * cols.
/// assert!(Mask::from_bools(2, 4, vec![true; 7]).is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mask {
    rows: usize,
    cols: usize,
    bits: Vec<bool>,
}

impl Mask {
    /// An all-zero mask.
    pub fn zeros(rows: usize, cols: usize) -> Mask {
        Mask {
            rows,
            cols,
            bits: vec![false; rows * cols],
        }
    }

    /// A mask from row-major booleans; the length must be `rows * cols`.
    pub fn from_bools(rows: usize, cols: usize, bits: Vec<bool>) -> Result<Mask> {
        if bits.len() != rows * cols {
            return Err(Error::DenseLength {
                got: bits.len(),
                rows,
                cols,
                expected: rows * cols,
            });
        }
        Ok(Mask { rows, cols, bits })
    }

    /// Number of output neurons.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of input neurons.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Whether the link `(row, col)` exists.
    pub fn get(&self, row: usize, col: usize) -> bool {
        self.bits[row * self.cols + col]
    }

    /// Adds or removes the link `(row, col)`.
    pub fn set(&mut self, row: usize, col: usize, on: bool) {
        self.bits[row * self.cols + col] = on;
    }

    /// Number of existing links.
    pub fn nnz(&self) -> usize {
        self.bits.iter().filter(|&&b| b).count()
    }

    /// Fraction of possible links that exist (0 for an empty shape).
    pub fn density(&self) -> f64 {
        if self.bits.is_empty() {
            0.0
        } else {
            self.nnz() as f64 / self.bits.len() as f64
        }
    }

    /// Row-major booleans.
    pub fn as_bools(&self) -> &[bool] {
        &self.bits
    }

    /// Row-major 0/1 words, the layout the GPU CSR builder reads.
    pub fn to_u32(&self) -> Vec<u32> {
        self.bits.iter().map(|&b| u32::from(b)).collect()
    }
}
