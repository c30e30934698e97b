//! Validated sparse patterns and the counter-based RNG shared by every part of cht.
//!
//! A sparse layer of `rows` output neurons and `cols` input neurons keeps its weights in CSR order over
//! its mask. [`CsrPattern`] is the validated structure (row pointers, column indices); its constructor
//! checks every invariant once, so kernels and launchers take `&CsrPattern` and never re-check.
//! [`CscPerm`] is the transposed view (column pointers, row indices and a permutation into the CSR
//! `values`) that the input-gradient kernel walks, because WGSL has no float atomics to scatter-add.
//!
//! Nothing here depends on wgpu: this crate is the bottom layer, usable on any target.

pub mod chain;
mod csr;
pub mod init;
pub mod io;
mod mask;
pub mod mask_io;
pub mod predict;
pub mod removal;
pub mod rng;
pub mod sample;
pub mod schedule;

pub use csr::{CscPerm, CsrPattern};
pub use mask::Mask;

/// Errors raised when sparse structures are built from untrusted input.
#[derive(Clone, Debug, thiserror::Error, PartialEq)]
pub enum Error {
    /// `row_ptr` must have `rows + 1` entries.
    #[error("row_ptr has {got} entries, expected rows + 1 = {expected}")]
    RowPtrLength {
        /// Number of entries in the given `row_ptr`.
        got: usize,
        /// `rows + 1`.
        expected: usize,
    },
    /// `row_ptr[0]` must be 0.
    #[error("row_ptr[0] is {0}, expected 0")]
    RowPtrStart(u32),
    /// Row pointers must never decrease.
    #[error("row_ptr is not monotone: row_ptr[{row}] = {start} > row_ptr[{row} + 1] = {end}")]
    RowPtrNotMonotone {
        /// The row whose pointers decrease.
        row: usize,
        /// `row_ptr[row]`.
        start: u32,
        /// `row_ptr[row + 1]`, smaller than `start`.
        end: u32,
    },
    /// `row_ptr[rows]` must equal the number of column indices.
    #[error("row_ptr ends at {end} but col_idx has {nnz} entries")]
    NnzMismatch {
        /// `row_ptr[rows]`, the number of entries the pointers claim.
        end: u32,
        /// Length of `col_idx`.
        nnz: usize,
    },
    /// A column index is outside `0..cols`.
    #[error("col_idx[{pos}] = {col} is out of range for {cols} columns (row {row})")]
    ColumnOutOfRange {
        /// Position of the bad entry in `col_idx`.
        pos: usize,
        /// Row the entry belongs to.
        row: usize,
        /// The offending column index.
        col: u32,
        /// Number of columns of the pattern.
        cols: usize,
    },
    /// Column indices within a row must be strictly increasing (sorted, no duplicates).
    #[error(
        "row {row}: column indices are not strictly increasing at position {pos} ({prev} then {col})"
    )]
    ColumnsNotSorted {
        /// Row whose columns are out of order.
        row: usize,
        /// Position in `col_idx` of the entry that is not larger than its predecessor.
        pos: usize,
        /// Column index at `pos - 1`.
        prev: u32,
        /// Column index at `pos`.
        col: u32,
    },
    /// Dimensions too large for the 32-bit indices used on the GPU.
    #[error("shape {rows}x{cols} does not fit 32-bit indices")]
    TooLarge {
        /// Requested number of rows.
        rows: usize,
        /// Requested number of columns.
        cols: usize,
    },
    /// A dense buffer does not have `rows * cols` entries.
    #[error("dense data has {got} entries, expected {rows}x{cols} = {expected}")]
    DenseLength {
        /// Length of the given buffer.
        got: usize,
        /// Rows of the target shape.
        rows: usize,
        /// Columns of the target shape.
        cols: usize,
        /// `rows * cols`.
        expected: usize,
    },
    /// A density outside `[0, 1]` was requested.
    #[error("density {0} is outside [0, 1]")]
    Density(f64),
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
