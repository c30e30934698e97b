//! Device-owned tensors: a GPU buffer or a CPU vector behind one handle.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::error::{Error, Result};

/// Element type of a tensor. Both are 32 bits, so one storage word holds one element.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    /// 32-bit float.
    F32,
    /// 32-bit unsigned integer (indices, labels, masks, counters).
    U32,
}

/// A 2-D tensor (`rows × cols`, row-major) owned by a [`crate::Device`]. Vectors are `n × 1`.
///
/// Cloning a `Tensor` clones the handle, not the data. Activations are stored feature-major
/// (`[features, batch]`): every sparse kernel then reads a neuron's whole batch contiguously.
#[derive(Clone, Debug)]
pub struct Tensor {
    pub(crate) inner: Arc<TensorInner>,
}

#[derive(Debug)]
pub(crate) struct TensorInner {
    pub(crate) id: u64,
    pub(crate) label: String,
    pub(crate) rows: usize,
    pub(crate) cols: usize,
    pub(crate) dtype: DType,
    pub(crate) store: Store,
}

#[derive(Debug)]
pub(crate) enum Store {
    Gpu(wgpu::Buffer),
    Cpu(RwLock<Vec<u32>>),
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

impl Tensor {
    // In the browser wgpu's handles are not `Send`; there is only one thread there anyway.
    #[cfg_attr(target_arch = "wasm32", allow(clippy::arc_with_non_send_sync))]
    pub(crate) fn new(label: &str, rows: usize, cols: usize, dtype: DType, store: Store) -> Tensor {
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        Tensor {
            inner: Arc::new(TensorInner {
                id,
                label: label.to_owned(),
                rows,
                cols,
                dtype,
                store,
            }),
        }
    }

    /// Rows (features for activations, output neurons for weights).
    pub fn rows(&self) -> usize {
        self.inner.rows
    }

    /// Columns (batch for activations, input neurons for weights).
    pub fn cols(&self) -> usize {
        self.inner.cols
    }

    /// `rows · cols`.
    pub fn len(&self) -> usize {
        self.inner.rows * self.inner.cols
    }

    /// Whether the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Element type.
    pub fn dtype(&self) -> DType {
        self.inner.dtype
    }

    /// The label given at creation (also the wgpu buffer label).
    pub fn label(&self) -> &str {
        &self.inner.label
    }

    pub(crate) fn id(&self) -> u64 {
        self.inner.id
    }

    pub(crate) fn gpu_buffer(&self, op: &'static str) -> Result<&wgpu::Buffer> {
        match &self.inner.store {
            Store::Gpu(b) => Ok(b),
            Store::Cpu(_) => Err(self.wrong_backend(op)),
        }
    }

    pub(crate) fn cpu_read(&self, op: &'static str) -> Result<RwLockReadGuard<'_, Vec<u32>>> {
        match &self.inner.store {
            Store::Cpu(v) => v
                .try_read()
                .map_err(|_| Error::Aliased(self.label().into(), op)),
            Store::Gpu(_) => Err(self.wrong_backend(op)),
        }
    }

    pub(crate) fn cpu_write(&self, op: &'static str) -> Result<RwLockWriteGuard<'_, Vec<u32>>> {
        match &self.inner.store {
            Store::Cpu(v) => v
                .try_write()
                .map_err(|_| Error::Aliased(self.label().into(), op)),
            Store::Gpu(_) => Err(self.wrong_backend(op)),
        }
    }

    fn wrong_backend(&self, op: &'static str) -> Error {
        Error::WrongBackend {
            op,
            tensor: self.label().into(),
        }
    }

    /// Checks the element type and shape; `op` names the operation in the error.
    pub(crate) fn expect(
        &self,
        op: &'static str,
        dtype: DType,
        rows: usize,
        cols: usize,
    ) -> Result<()> {
        if self.dtype() != dtype {
            return Err(Error::DType {
                op,
                tensor: self.label().into(),
                got: self.dtype(),
                expected: dtype,
            });
        }
        if self.rows() != rows || self.cols() != cols {
            return Err(crate::error::shape_err(
                op,
                format!(
                    "tensor {:?} is {}x{}, expected {rows}x{cols}",
                    self.label(),
                    self.rows(),
                    self.cols()
                ),
            ));
        }
        Ok(())
    }
}

/// Reinterprets storage words as floats (same size and alignment).
pub(crate) fn as_f32(words: &[u32]) -> &[f32] {
    bytemuck::cast_slice(words)
}

/// Mutable variant of [`as_f32`].
pub(crate) fn as_f32_mut(words: &mut [u32]) -> &mut [f32] {
    bytemuck::cast_slice_mut(words)
}
