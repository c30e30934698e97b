//! Device-owned tensors: a GPU buffer or a CPU vector behind one handle.

use std::ops::{Deref, DerefMut, Range};
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
///
/// A tensor may be a *view*: a range of another tensor's storage (see [`Tensor::view`] and
/// [`crate::Device::zeros_stacked`]). Views let one kernel see several tensors as one (a fused
/// optimizer over every parameter, one GEMM for q, k and v) while each stays addressable alone.
/// A view starts at a multiple of [`VIEW_ALIGN`] words, the storage-binding offset alignment
/// every WebGPU adapter accepts.
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
    /// The storage, shared by a tensor and its views.
    pub(crate) store: Arc<Store>,
    /// First word of this tensor in `store`.
    pub(crate) offset: usize,
}

/// Words between the starts of views: 256 bytes, WebGPU's default (and largest allowed)
/// `minStorageBufferOffsetAlignment`.
pub const VIEW_ALIGN: usize = 64;

/// A tensor's range of a GPU buffer, as bound to a kernel.
#[derive(Clone, Copy, Debug)]
pub(crate) struct GpuSlice<'a> {
    pub(crate) buffer: &'a wgpu::Buffer,
    /// Byte offset.
    pub(crate) offset: u64,
    /// Bytes (the tensor's words; one word for an empty tensor, which wgpu cannot bind).
    pub(crate) size: u64,
}

impl GpuSlice<'_> {
    pub(crate) fn binding(&self) -> wgpu::BindingResource<'_> {
        wgpu::BindingResource::Buffer(wgpu::BufferBinding {
            buffer: self.buffer,
            offset: self.offset,
            size: wgpu::BufferSize::new(self.size),
        })
    }
}

/// Read access to a CPU tensor's words (its range of the shared storage).
#[derive(Debug)]
pub(crate) struct CpuRead<'a> {
    guard: RwLockReadGuard<'a, Vec<u32>>,
    range: Range<usize>,
}

impl Deref for CpuRead<'_> {
    type Target = [u32];
    fn deref(&self) -> &[u32] {
        &self.guard[self.range.clone()]
    }
}

/// Write access to a CPU tensor's words.
#[derive(Debug)]
pub(crate) struct CpuWrite<'a> {
    guard: RwLockWriteGuard<'a, Vec<u32>>,
    range: Range<usize>,
}

impl Deref for CpuWrite<'_> {
    type Target = [u32];
    fn deref(&self) -> &[u32] {
        &self.guard[self.range.clone()]
    }
}

impl DerefMut for CpuWrite<'_> {
    fn deref_mut(&mut self) -> &mut [u32] {
        &mut self.guard[self.range.clone()]
    }
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
        Tensor::with_store(label, rows, cols, dtype, Arc::new(store), 0)
    }

    #[cfg_attr(target_arch = "wasm32", allow(clippy::arc_with_non_send_sync))]
    fn with_store(
        label: &str,
        rows: usize,
        cols: usize,
        dtype: DType,
        store: Arc<Store>,
        offset: usize,
    ) -> Tensor {
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        Tensor {
            inner: Arc::new(TensorInner {
                id,
                label: label.to_owned(),
                rows,
                cols,
                dtype,
                store,
                offset,
            }),
        }
    }

    /// A `rows × cols` view of this tensor's storage starting `offset` elements in (a multiple of
    /// [`VIEW_ALIGN`]), with the same element type. Writes through the view change this tensor.
    pub fn view(&self, label: &str, offset: usize, rows: usize, cols: usize) -> Result<Tensor> {
        let len = rows * cols;
        if !offset.is_multiple_of(VIEW_ALIGN) || offset + len > self.len() {
            return Err(crate::error::shape_err(
                "view",
                format!(
                    "a {rows}x{cols} view at element {offset} of tensor {:?} ({} elements): views \
                     must lie inside it and start at a multiple of {VIEW_ALIGN}",
                    self.label(),
                    self.len()
                ),
            ));
        }
        Ok(Tensor::with_store(
            label,
            rows,
            cols,
            self.dtype(),
            self.inner.store.clone(),
            self.inner.offset + offset,
        ))
    }

    /// A `rows × cols` tensor over `first`'s storage from `first`'s start (callers check bounds).
    pub(crate) fn view_of_store(label: &str, first: &Tensor, rows: usize, cols: usize) -> Tensor {
        Tensor::with_store(
            label,
            rows,
            cols,
            first.dtype(),
            first.inner.store.clone(),
            first.inner.offset,
        )
    }

    /// Rows `start .. start + rows` of this (row-major) tensor as a view.
    pub fn rows_view(&self, label: &str, start: usize, rows: usize) -> Result<Tensor> {
        self.view(label, start * self.cols(), rows, self.cols())
    }

    /// Where this tensor starts in its storage, in elements: 0 unless it is a view
    /// ([`Tensor::view`]); with [`Tensor::shares_storage`], where a view lies in its parent.
    pub fn storage_offset(&self) -> usize {
        self.inner.offset
    }

    /// Whether `self` and `other` share storage (one is a view of the other, or both of a third).
    pub fn shares_storage(&self, other: &Tensor) -> bool {
        Arc::ptr_eq(&self.inner.store, &other.inner.store)
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

    /// The tensor's range of its GPU buffer.
    pub(crate) fn gpu_slice(&self, op: &'static str) -> Result<GpuSlice<'_>> {
        match &*self.inner.store {
            Store::Gpu(b) => Ok(GpuSlice {
                buffer: b,
                offset: (self.inner.offset * 4) as u64,
                size: (self.len().max(1) * 4) as u64,
            }),
            Store::Cpu(_) => Err(self.wrong_backend(op)),
        }
    }

    fn range(&self) -> Range<usize> {
        self.inner.offset..self.inner.offset + self.len()
    }

    /// Reads the tensor's words. Fails (instead of blocking) while an overlapping write is held,
    /// which is how an op that reads and writes the same storage is caught on the CPU backend.
    pub(crate) fn cpu_read(&self, op: &'static str) -> Result<CpuRead<'_>> {
        match &*self.inner.store {
            Store::Cpu(v) => Ok(CpuRead {
                guard: v
                    .try_read()
                    .map_err(|_| Error::Aliased(self.label().into(), op))?,
                range: self.range(),
            }),
            Store::Gpu(_) => Err(self.wrong_backend(op)),
        }
    }

    /// Writes the tensor's words (the whole storage is locked, so two views of one storage cannot
    /// be written by one op through this; see [`Tensor::cpu_write_disjoint`]).
    pub(crate) fn cpu_write(&self, op: &'static str) -> Result<CpuWrite<'_>> {
        match &*self.inner.store {
            Store::Cpu(v) => Ok(CpuWrite {
                guard: v
                    .try_write()
                    .map_err(|_| Error::Aliased(self.label().into(), op))?,
                range: self.range(),
            }),
            Store::Gpu(_) => Err(self.wrong_backend(op)),
        }
    }

    /// Runs `f` with write access to every tensor of `ts` at once, even when some are disjoint
    /// views of one storage (which [`Tensor::cpu_write`] cannot lock twice). Overlapping tensors
    /// are an [`Error::Aliased`].
    pub(crate) fn cpu_write_disjoint<R>(
        ts: &[&Tensor],
        op: &'static str,
        f: impl FnOnce(&mut [&mut [u32]]) -> R,
    ) -> Result<R> {
        // Lock each storage once, then split its words into the requested disjoint ranges.
        let mut stores: Vec<&Arc<Store>> = Vec::new();
        for t in ts {
            if !stores.iter().any(|s| Arc::ptr_eq(s, &t.inner.store)) {
                stores.push(&t.inner.store);
            }
        }
        let mut guards = Vec::with_capacity(stores.len());
        for s in &stores {
            match &***s {
                Store::Cpu(v) => guards.push(
                    v.try_write()
                        .map_err(|_| Error::Aliased(ts[0].label().into(), op))?,
                ),
                Store::Gpu(_) => return Err(ts[0].wrong_backend(op)),
            }
        }
        let mut slots: Vec<Option<&mut [u32]>> = ts.iter().map(|_| None).collect();
        for (s, guard) in stores.iter().zip(guards.iter_mut()) {
            let mut mine: Vec<usize> = (0..ts.len())
                .filter(|&i| Arc::ptr_eq(&ts[i].inner.store, s))
                .collect();
            mine.sort_by_key(|&i| ts[i].inner.offset);
            let mut rest: &mut [u32] = &mut guard[..];
            let mut at = 0;
            for i in mine {
                let r = ts[i].range();
                if r.start < at {
                    return Err(Error::Aliased(ts[i].label().into(), op));
                }
                let (_, tail) = rest.split_at_mut(r.start - at);
                let (this, tail) = tail.split_at_mut(r.len());
                slots[i] = Some(this);
                rest = tail;
                at = r.end;
            }
        }
        let mut slices: Vec<&mut [u32]> = slots
            .into_iter()
            .map(|s| s.expect("every tensor was assigned a range"))
            .collect();
        Ok(f(&mut slices))
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
