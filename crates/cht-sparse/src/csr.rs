//! The validated CSR pattern of a sparse layer and its CSC permutation.

use crate::rng::{Counter, RngKey};
use crate::{Error, Mask, Result};

/// The sparsity pattern of a `rows × cols` layer in compressed sparse row order.
///
/// Invariants, checked once by [`CsrPattern::new`]: `row_ptr` has `rows + 1` non-decreasing entries
/// from 0 to `nnz`; every column index is `< cols`; column indices within a row are strictly
/// increasing. Values are kept apart (a `values[nnz]` array in the same order) because the pattern is
/// shared by weights, gradients and optimizer state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CsrPattern {
    rows: usize,
    cols: usize,
    row_ptr: Vec<u32>,
    col_idx: Vec<u32>,
}

/// The transposed view of a [`CsrPattern`]: for each column, the rows it links to (ascending) and
/// where each link's value lives in the CSR `values` array.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CscPerm {
    /// `cols + 1` column pointers.
    pub col_ptr: Vec<u32>,
    /// Row of each link, column by column.
    pub row_idx: Vec<u32>,
    /// Position of each link in the CSR `values` array.
    pub perm: Vec<u32>,
}

impl CsrPattern {
    /// Validates raw CSR arrays.
    pub fn new(rows: usize, cols: usize, row_ptr: Vec<u32>, col_idx: Vec<u32>) -> Result<Self> {
        check_shape(rows, cols)?;
        if row_ptr.len() != rows + 1 {
            return Err(Error::RowPtrLength {
                got: row_ptr.len(),
                expected: rows + 1,
            });
        }
        if row_ptr[0] != 0 {
            return Err(Error::RowPtrStart(row_ptr[0]));
        }
        for row in 0..rows {
            let (start, end) = (row_ptr[row], row_ptr[row + 1]);
            if start > end {
                return Err(Error::RowPtrNotMonotone { row, start, end });
            }
        }
        let end = row_ptr[rows];
        if end as usize != col_idx.len() {
            return Err(Error::NnzMismatch {
                end,
                nnz: col_idx.len(),
            });
        }
        for row in 0..rows {
            let range = row_ptr[row] as usize..row_ptr[row + 1] as usize;
            for pos in range.clone() {
                let col = col_idx[pos];
                if col as usize >= cols {
                    return Err(Error::ColumnOutOfRange {
                        pos,
                        row,
                        col,
                        cols,
                    });
                }
                if pos > range.start && col <= col_idx[pos - 1] {
                    let prev = col_idx[pos - 1];
                    return Err(Error::ColumnsNotSorted {
                        row,
                        pos,
                        prev,
                        col,
                    });
                }
            }
        }
        Ok(CsrPattern {
            rows,
            cols,
            row_ptr,
            col_idx,
        })
    }

    /// The pattern of the links set in `mask`.
    ///
    /// ```rust
    /// use cht_sparse::{CsrPattern, Mask};
    ///
    /// // 2 outputs × 3 inputs: output 0 reads inputs 0 and 2, output 1 reads input 1.
    /// let mask = Mask::from_bools(2, 3, vec![true, false, true, false, true, false])?;
    /// let p = CsrPattern::from_mask(&mask);
    /// assert_eq!(p.row_ptr(), &[0, 2, 3]);
    /// assert_eq!(p.col_idx(), &[0, 2, 1]);
    /// assert_eq!(p.nnz(), 3);
    /// // The CSC view lists input 1's only link, at CSR position 2.
    /// let csc = p.csc();
    /// assert_eq!(csc.col_ptr, vec![0, 1, 2, 3]);
    /// assert_eq!(csc.perm, vec![0, 2, 1]);
    /// assert_eq!(p.to_mask(), mask);
    /// # Ok::<(), cht_sparse::Error>(())
    /// ```
    pub fn from_mask(mask: &Mask) -> Self {
        let (rows, cols) = (mask.rows(), mask.cols());
        let mut row_ptr = Vec::with_capacity(rows + 1);
        let mut col_idx = Vec::new();
        row_ptr.push(0);
        for row in 0..rows {
            for col in 0..cols {
                if mask.get(row, col) {
                    col_idx.push(col as u32);
                }
            }
            row_ptr.push(col_idx.len() as u32);
        }
        CsrPattern {
            rows,
            cols,
            row_ptr,
            col_idx,
        }
    }

    /// The fully connected pattern.
    pub fn dense(rows: usize, cols: usize) -> Result<Self> {
        check_shape(rows, cols)?;
        let row_ptr = (0..=rows).map(|r| (r * cols) as u32).collect();
        let col_idx = (0..rows).flat_map(|_| 0..cols as u32).collect();
        Ok(CsrPattern {
            rows,
            cols,
            row_ptr,
            col_idx,
        })
    }

    /// An Erdős–Rényi pattern with exactly `round(density · rows · cols)` links, drawn by a partial
    /// Fisher–Yates shuffle under `key` (deterministic for a key).
    pub fn random(rows: usize, cols: usize, density: f64, key: RngKey) -> Result<Self> {
        check_shape(rows, cols)?;
        if !(0.0..=1.0).contains(&density) {
            return Err(Error::Density(density));
        }
        let total = rows * cols;
        let nnz = ((density * total as f64).round() as usize).min(total);
        let mut rng = Counter::new(key);
        let chosen: Vec<u32> = if nnz * 4 > total {
            // Dense enough: shuffle the prefix of all positions.
            let mut all: Vec<u32> = (0..total as u32).collect();
            for i in 0..nnz {
                let j = i + rng.below((total - i) as u32) as usize;
                all.swap(i, j);
            }
            all.truncate(nnz);
            all
        } else {
            // Sparse: rejection-sample distinct positions (expected < 4/3 draws each).
            let mut seen = vec![false; total];
            let mut out = Vec::with_capacity(nnz);
            while out.len() < nnz {
                let p = rng.below(total as u32);
                if !seen[p as usize] {
                    seen[p as usize] = true;
                    out.push(p);
                }
            }
            out
        };
        let mut mask = Mask::zeros(rows, cols);
        for p in chosen {
            mask.set(p as usize / cols, p as usize % cols, true);
        }
        Ok(CsrPattern::from_mask(&mask))
    }

    /// Number of output neurons.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of input neurons.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Number of links.
    pub fn nnz(&self) -> usize {
        self.col_idx.len()
    }

    /// `nnz / (rows · cols)`, or 0 for an empty shape.
    pub fn density(&self) -> f64 {
        let total = self.rows * self.cols;
        if total == 0 {
            0.0
        } else {
            self.nnz() as f64 / total as f64
        }
    }

    /// Row pointers (`rows + 1`).
    pub fn row_ptr(&self) -> &[u32] {
        &self.row_ptr
    }

    /// Column indices (`nnz`).
    pub fn col_idx(&self) -> &[u32] {
        &self.col_idx
    }

    /// The row of every link (COO rows), used by kernels that give each link its own thread.
    pub fn row_of_links(&self) -> Vec<u32> {
        let mut out = Vec::with_capacity(self.nnz());
        for row in 0..self.rows {
            let len = (self.row_ptr[row + 1] - self.row_ptr[row]) as usize;
            out.extend(std::iter::repeat_n(row as u32, len));
        }
        out
    }

    /// The links as a dense mask.
    pub fn to_mask(&self) -> Mask {
        let mut mask = Mask::zeros(self.rows, self.cols);
        for row in 0..self.rows {
            for &col in &self.col_idx[self.row_ptr[row] as usize..self.row_ptr[row + 1] as usize] {
                mask.set(row, col as usize, true);
            }
        }
        mask
    }

    /// Builds the CSC permutation by a counting sort over columns (rows stay ascending).
    pub fn csc(&self) -> CscPerm {
        let mut col_ptr = vec![0u32; self.cols + 1];
        for &c in &self.col_idx {
            col_ptr[c as usize + 1] += 1;
        }
        for c in 0..self.cols {
            col_ptr[c + 1] += col_ptr[c];
        }
        let mut next = col_ptr.clone();
        let mut row_idx = vec![0u32; self.nnz()];
        let mut perm = vec![0u32; self.nnz()];
        for row in 0..self.rows {
            for k in self.row_ptr[row]..self.row_ptr[row + 1] {
                let c = self.col_idx[k as usize] as usize;
                let dst = next[c] as usize;
                row_idx[dst] = row as u32;
                perm[dst] = k;
                next[c] += 1;
            }
        }
        CscPerm {
            col_ptr,
            row_idx,
            perm,
        }
    }

    /// Scatters CSR-ordered `values` into a dense row-major `rows × cols` matrix (zeros elsewhere).
    pub fn scatter_dense(&self, values: &[f32]) -> Vec<f32> {
        let mut dense = vec![0.0; self.rows * self.cols];
        for row in 0..self.rows {
            for k in self.row_ptr[row] as usize..self.row_ptr[row + 1] as usize {
                dense[row * self.cols + self.col_idx[k] as usize] = values[k];
            }
        }
        dense
    }

    /// Gathers the entries of a dense row-major matrix at the pattern's links, in CSR order.
    pub fn gather_dense(&self, dense: &[f32]) -> Result<Vec<f32>> {
        let expected = self.rows * self.cols;
        if dense.len() != expected {
            return Err(Error::DenseLength {
                got: dense.len(),
                rows: self.rows,
                cols: self.cols,
                expected,
            });
        }
        let rows = self.row_of_links();
        Ok(self
            .col_idx
            .iter()
            .zip(rows)
            .map(|(&c, r)| dense[r as usize * self.cols + c as usize])
            .collect())
    }
}

fn check_shape(rows: usize, cols: usize) -> Result<()> {
    if rows.checked_mul(cols).is_none_or(|n| n > u32::MAX as usize) {
        return Err(Error::TooLarge { rows, cols });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Stream;

    fn key(seed: u32) -> RngKey {
        RngKey::new(seed, Stream::Synthetic, 0, 0)
    }

    #[test]
    fn malformed_csr_is_rejected_with_a_reason() {
        let bad = |rows, cols, rp: &[u32], ci: &[u32]| {
            CsrPattern::new(rows, cols, rp.to_vec(), ci.to_vec()).unwrap_err()
        };
        assert_eq!(
            bad(2, 3, &[0, 1], &[0]),
            Error::RowPtrLength {
                got: 2,
                expected: 3
            }
        );
        assert_eq!(bad(1, 3, &[1, 1], &[0]), Error::RowPtrStart(1));
        assert!(matches!(
            bad(2, 3, &[0, 2, 1], &[0, 1]),
            Error::RowPtrNotMonotone { row: 1, .. }
        ));
        assert!(matches!(
            bad(1, 3, &[0, 2], &[0]),
            Error::NnzMismatch { end: 2, nnz: 1 }
        ));
        assert!(matches!(
            bad(1, 3, &[0, 1], &[3]),
            Error::ColumnOutOfRange { col: 3, .. }
        ));
        assert!(matches!(
            bad(1, 3, &[0, 2], &[1, 1]),
            Error::ColumnsNotSorted { .. }
        ));
        assert!(matches!(
            bad(1, 3, &[0, 2], &[2, 1]),
            Error::ColumnsNotSorted { .. }
        ));
        assert!(matches!(
            CsrPattern::new(1 << 20, 1 << 20, vec![], vec![]),
            Err(Error::TooLarge { .. })
        ));
    }

    #[test]
    fn random_pattern_has_exact_count_and_is_deterministic() {
        for (rows, cols, density) in [(7, 13, 0.1), (67, 131, 0.5), (1, 1, 1.0), (5, 5, 0.0)] {
            let p = CsrPattern::random(rows, cols, density, key(3)).unwrap();
            let expected = (density * (rows * cols) as f64).round() as usize;
            assert_eq!(p.nnz(), expected);
            assert_eq!(p, CsrPattern::random(rows, cols, density, key(3)).unwrap());
            // Round-trips through validation.
            CsrPattern::new(rows, cols, p.row_ptr().to_vec(), p.col_idx().to_vec()).unwrap();
        }
        assert!(CsrPattern::random(3, 3, 1.5, key(0)).is_err());
        let a = CsrPattern::random(50, 50, 0.1, key(1)).unwrap();
        let b = CsrPattern::random(50, 50, 0.1, key(2)).unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn csc_permutation_points_back_to_the_same_links() {
        let p = CsrPattern::random(19, 23, 0.3, key(5)).unwrap();
        let csc = p.csc();
        let rows = p.row_of_links();
        assert_eq!(csc.col_ptr[23] as usize, p.nnz());
        for c in 0..23 {
            let range = csc.col_ptr[c] as usize..csc.col_ptr[c + 1] as usize;
            for k in range.clone() {
                let v = csc.perm[k] as usize;
                assert_eq!(p.col_idx()[v] as usize, c);
                assert_eq!(rows[v], csc.row_idx[k]);
                if k > range.start {
                    assert!(csc.row_idx[k] > csc.row_idx[k - 1]);
                }
            }
        }
    }

    #[test]
    fn mask_round_trip_and_dense_scatter_gather() {
        let p = CsrPattern::random(9, 4, 0.4, key(8)).unwrap();
        assert_eq!(CsrPattern::from_mask(&p.to_mask()), p);
        let values: Vec<f32> = (0..p.nnz()).map(|i| i as f32 + 1.0).collect();
        let dense = p.scatter_dense(&values);
        assert_eq!(p.gather_dense(&dense).unwrap(), values);
        assert!(p.gather_dense(&dense[1..]).is_err());
        assert_eq!(CsrPattern::dense(3, 2).unwrap().nnz(), 6);
    }
}
