//! [`SparseTensor`]: a sparse layer's pattern resident on the device, with spare capacity so that
//! topology updates can rebuild it in place without reallocating or reading back.

use cht_sparse::CsrPattern;

use crate::device::Device;
use crate::error::Result;
use crate::tensor::{DType, Tensor};

/// CSR + CSC index arrays of a `rows × cols` pattern on a device. Link arrays have `capacity`
/// slots; the live count is `row_ptr[rows]`, read by the kernels on the device.
///
/// The CSR link arrays (`row_of`, `col_idx`) are views of one storage and the CSC ones (`row_idx`,
/// `perm`) of another, so the fused backward kernel binds a pattern with three bindings.
#[derive(Clone, Debug)]
pub struct SparsePattern {
    pub(crate) rows: usize,
    pub(crate) cols: usize,
    pub(crate) capacity: usize,
    /// Storage of `row_of` (at 0) and `col_idx` (at `col_idx_at`).
    pub(crate) csr_links: Tensor,
    pub(crate) col_idx_at: usize,
    /// Storage of `row_idx` (at 0) and `perm` (at `perm_at`).
    pub(crate) csc_links: Tensor,
    pub(crate) perm_at: usize,
    /// `rows + 1` CSR row pointers.
    pub row_ptr: Tensor,
    /// Column of each link (CSR order).
    pub col_idx: Tensor,
    /// Row of each link (CSR order), for one-invocation-per-link kernels.
    pub row_of: Tensor,
    /// `cols + 1` CSC column pointers.
    pub col_ptr: Tensor,
    /// Row of each link in CSC order.
    pub row_idx: Tensor,
    /// CSR position of each link in CSC order.
    pub perm: Tensor,
}

impl SparsePattern {
    /// Output neurons.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Input neurons.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Link slots allocated (≥ the live count).
    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

impl Device {
    /// An empty pattern (no links) with room for `capacity` links.
    pub fn sparse_pattern(
        &self,
        label: &str,
        rows: usize,
        cols: usize,
        capacity: usize,
    ) -> SparsePattern {
        let t = |name: &str, n: usize| self.zeros(&format!("{label}.{name}"), n, 1, DType::U32);
        let pair = |what: &str, a: &str, b: &str| {
            let (na, nb) = (format!("{label}.{a}"), format!("{label}.{b}"));
            let parts = [(na.as_str(), capacity, 1), (nb.as_str(), capacity, 1)];
            self.zeros_stacked(&format!("{label}.{what}"), &parts, DType::U32)
                .expect("two aligned parts always fit their storage")
        };
        let (csr_links, csr) = pair("csr_links", "row_of", "col_idx");
        let (csc_links, csc) = pair("csc_links", "row_idx", "perm");
        let second = capacity.next_multiple_of(crate::VIEW_ALIGN);
        SparsePattern {
            rows,
            cols,
            capacity,
            csr_links,
            col_idx_at: second,
            csc_links,
            perm_at: second,
            row_ptr: t("row_ptr", rows + 1),
            row_of: csr[0].clone(),
            col_idx: csr[1].clone(),
            col_ptr: t("col_ptr", cols + 1),
            row_idx: csc[0].clone(),
            perm: csc[1].clone(),
        }
    }

    /// Uploads a validated pattern (CSC built on the host) with room for `capacity` links
    /// (at least its own count).
    pub fn upload_pattern(
        &self,
        label: &str,
        p: &CsrPattern,
        capacity: usize,
    ) -> Result<SparsePattern> {
        let capacity = capacity.max(p.nnz());
        let dev = self.sparse_pattern(label, p.rows(), p.cols(), capacity);
        let pad = |mut v: Vec<u32>| {
            v.resize(capacity, 0);
            v
        };
        let csc = p.csc();
        self.write_u32(&dev.row_ptr, p.row_ptr())?;
        self.write_u32(&dev.col_idx, &pad(p.col_idx().to_vec()))?;
        self.write_u32(&dev.row_of, &pad(p.row_of_links()))?;
        self.write_u32(&dev.col_ptr, &csc.col_ptr)?;
        self.write_u32(&dev.row_idx, &pad(csc.row_idx))?;
        self.write_u32(&dev.perm, &pad(csc.perm))?;
        Ok(dev)
    }

    /// Reads the CSR part back and validates it (native only).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn download_pattern(&self, p: &SparsePattern) -> Result<CsrPattern> {
        pollster::block_on(self.download_pattern_async(p))
    }

    /// Reads the CSR part back and validates it (awaitable in the browser).
    pub async fn download_pattern_async(&self, p: &SparsePattern) -> Result<CsrPattern> {
        let row_ptr = self.read_u32_async(&p.row_ptr).await?;
        let nnz = row_ptr[p.rows] as usize;
        let mut col_idx = self.read_u32_async(&p.col_idx).await?;
        col_idx.truncate(nnz.min(col_idx.len()));
        Ok(CsrPattern::new(p.rows, p.cols, row_ptr, col_idx)?)
    }
}
