//! [`Device`]: one API, two executions. On the GPU an op records a dispatch into the step's command
//! encoder; on the CPU it runs the op's Rust twin at once. [`Device::submit`] ends a step.

use std::sync::RwLock;

use crate::error::{Error, Result};
use crate::gpu::{AdapterFilter, AdapterSummary, Gpu};
use crate::ops::gemm::Precision;
use crate::tensor::{DType, Store, Tensor};

/// Which execution to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum BackendChoice {
    /// A hardware GPU adapter if one exists, else the CPU twins (reported once in the log).
    /// Software adapters (lavapipe, SwiftShader, WARP: device type `Cpu`) are slower than the CPU
    /// twins, so `Auto` skips them; ask for `Gpu` to use one anyway.
    #[default]
    Auto,
    /// A GPU adapter, or an error.
    Gpu,
    /// The CPU twins.
    Cpu,
}

impl std::str::FromStr for BackendChoice {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(BackendChoice::Auto),
            "gpu" => Ok(BackendChoice::Gpu),
            "cpu" => Ok(BackendChoice::Cpu),
            other => Err(Error::Unsupported(format!(
                "unknown backend {other:?}: expected auto, gpu or cpu"
            ))),
        }
    }
}

/// How to open a [`Device`].
///
/// Start from [`DeviceOptions::default`] (automatic backend, any adapter, f32) or
/// [`DeviceOptions::from_env`] and adjust with the `with_*` setters; the struct is
/// `#[non_exhaustive]`, so options can be added without breaking callers.
///
/// ```rust
/// use cht_gpu::{BackendChoice, DeviceOptions, Precision};
///
/// let options = DeviceOptions::default()
///     .with_backend(BackendChoice::Cpu)
///     .with_precision(Precision::F32);
/// assert_eq!(options.backend, BackendChoice::Cpu);
/// ```
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct DeviceOptions {
    /// GPU, CPU or automatic.
    pub backend: BackendChoice,
    /// Restricts the adapter by name. The wgpu backend itself comes from `WGPU_BACKEND`
    /// (vulkan, metal, dx12, gl, webgpu).
    pub adapter: AdapterFilter,
    /// Arithmetic of dense GEMMs: f32 (default) or f16 on tensor cores (an error at
    /// [`Device::open`] where the adapter has none).
    pub precision: Precision,
}

impl DeviceOptions {
    /// Options from the environment: `CHT_BACKEND` (auto|gpu|cpu), `CHT_ADAPTER` (name filter),
    /// `CHT_ADAPTER_INDEX` (which of several hardware adapters) and `CHT_PRECISION` (f32|f16-tc).
    pub fn from_env() -> Result<DeviceOptions> {
        let backend = match std::env::var("CHT_BACKEND") {
            Ok(v) if !v.is_empty() => v.parse()?,
            _ => BackendChoice::Auto,
        };
        let name_contains = std::env::var("CHT_ADAPTER").ok().filter(|s| !s.is_empty());
        let index = match std::env::var("CHT_ADAPTER_INDEX") {
            Ok(v) if !v.trim().is_empty() => Some(v.trim().parse().map_err(|_| {
                Error::Unsupported(format!(
                    "CHT_ADAPTER_INDEX={v:?}: expected a non-negative integer"
                ))
            })?),
            _ => None,
        };
        let precision = match std::env::var("CHT_PRECISION") {
            Ok(v) if !v.is_empty() => v.parse()?,
            _ => Precision::F32,
        };
        Ok(DeviceOptions {
            backend,
            adapter: AdapterFilter {
                name_contains,
                index,
            },
            precision,
        })
    }

    /// These options with the execution `backend`.
    #[must_use]
    pub fn with_backend(mut self, backend: BackendChoice) -> DeviceOptions {
        self.backend = backend;
        self
    }

    /// These options restricted to adapters whose name contains `name` (case-insensitive; sets
    /// [`AdapterFilter::name_contains`]).
    #[must_use]
    pub fn with_adapter(mut self, name: impl Into<String>) -> DeviceOptions {
        self.adapter.name_contains = Some(name.into());
        self
    }

    /// These options taking the `index`-th hardware adapter (see [`AdapterFilter::index`]).
    #[must_use]
    pub fn with_adapter_index(mut self, index: usize) -> DeviceOptions {
        self.adapter.index = Some(index);
        self
    }

    /// These options with the dense-GEMM arithmetic `precision`.
    #[must_use]
    pub fn with_precision(mut self, precision: Precision) -> DeviceOptions {
        self.precision = precision;
        self
    }
}

/// The execution behind a device.
#[derive(Debug)]
pub(crate) enum Backend {
    Gpu(Box<Gpu>),
    Cpu,
}

/// Owner of tensors and executor of every kernel. See the crate docs for the data flow.
///
/// ```rust
/// use cht_gpu::{DType, Device, Gemm, Transpose};
///
/// let dev = Device::cpu(); // or Device::open_blocking(&DeviceOptions::from_env()?)
/// // c[2, 2] = a[2, 3] · b[3, 2]
/// let a = dev.tensor_f32("a", 2, 3, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0])?;
/// let b = dev.tensor_f32("b", 3, 2, &[1.0, 0.0, 0.0, 1.0, 1.0, 1.0])?;
/// let c = dev.zeros("c", 2, 2, DType::F32);
/// dev.gemm(&Gemm::new(Transpose::No, Transpose::No), &a, &b, &c)?;
/// dev.submit()?; // ends the step (a no-op on the CPU)
/// assert_eq!(dev.read_f32(&c)?, vec![4.0, 5.0, 10.0, 11.0]);
/// # Ok::<(), cht_gpu::Error>(())
/// ```
#[derive(Debug)]
pub struct Device {
    pub(crate) backend: Backend,
    profiler: OpProfiler,
}

/// Time spent in one kind of op while [`Device::profile_ops`] was on (CPU backend).
#[derive(Clone, Debug, PartialEq)]
pub struct OpTime {
    /// The op, e.g. `"gemm"` or `"attention_backward"`.
    pub op: &'static str,
    /// Calls.
    pub calls: u64,
    /// Wall time of those calls in seconds.
    pub seconds: f64,
}

/// Per-op wall time of the CPU twins, off unless asked for.
#[derive(Debug, Default)]
struct OpProfiler {
    on: std::sync::atomic::AtomicBool,
    table: std::sync::Mutex<Vec<OpTime>>,
}

/// Adds the time since it was made to its op's entry when dropped.
pub(crate) struct OpTimer<'a> {
    profiler: &'a OpProfiler,
    op: &'static str,
    start: std::time::Instant,
}

impl Drop for OpTimer<'_> {
    fn drop(&mut self) {
        let seconds = self.start.elapsed().as_secs_f64();
        let mut table = self
            .profiler
            .table
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        match table.iter_mut().find(|t| t.op == self.op) {
            Some(t) => {
                t.calls += 1;
                t.seconds += seconds;
            }
            None => table.push(OpTime {
                op: self.op,
                calls: 1,
                seconds,
            }),
        }
    }
}

/// What `cht info` prints.
#[derive(Clone, Debug)]
pub enum DeviceInfo {
    /// A wgpu adapter.
    Gpu(Box<AdapterSummary>),
    /// The CPU twins.
    Cpu {
        /// Worker threads the twins run on ([`crate::cpu_threads`]).
        threads: usize,
    },
}

impl Device {
    /// Opens a device as `options` ask.
    pub async fn open(options: &DeviceOptions) -> Result<Device> {
        let device: Result<Device> = match options.backend {
            BackendChoice::Cpu => Ok(Device::cpu()),
            BackendChoice::Gpu => Ok(Device {
                backend: Backend::Gpu(Box::new(
                    Gpu::open(&options.adapter, options.precision).await?,
                )),
                profiler: OpProfiler::default(),
            }),
            BackendChoice::Auto => match Gpu::open(&options.adapter, options.precision).await {
                // A software rasteriser is slower than the CPU twins; only an explicit request
                // (an adapter name or `Gpu`) uses it.
                Ok(gpu)
                    if gpu.summary.device_type == "Cpu"
                        && options.adapter.name_contains.is_none() =>
                {
                    log::info!(
                        "adapter {:?} is a software rasteriser: using the faster CPU backend",
                        gpu.summary.name
                    );
                    Ok(Device::cpu())
                }
                Ok(gpu) => Ok(Device {
                    backend: Backend::Gpu(Box::new(gpu)),
                    profiler: OpProfiler::default(),
                }),
                Err(e) => {
                    log::warn!("no usable GPU adapter ({e}); running on the CPU backend");
                    Ok(Device::cpu())
                }
            },
        };
        let device = device?;
        device.check_precision(options.precision)?;
        Ok(device)
    }

    /// Blocking [`Device::open`] (native only).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn open_blocking(options: &DeviceOptions) -> Result<Device> {
        pollster::block_on(Device::open(options))
    }

    /// The CPU backend (always available).
    pub fn cpu() -> Device {
        Device {
            backend: Backend::Cpu,
            profiler: OpProfiler::default(),
        }
    }

    /// Starts (`true`) or stops timing every op on the CPU backend: wall time and calls per op,
    /// read with [`Device::take_op_profile`]. On a GPU adapter ops only record commands, so there
    /// is nothing to time this way (`cht bench kernels` uses timestamp queries there); nor in the browser,
    /// which has no clock for it.
    pub fn profile_ops(&self, on: bool) {
        // `std::time::Instant` panics in the browser, so the wasm build never times.
        let on = on && !self.is_gpu() && !cfg!(target_arch = "wasm32");
        self.profiler
            .on
            .store(on, std::sync::atomic::Ordering::Relaxed);
    }

    /// The op times gathered since the last call (most expensive first), and a fresh table.
    pub fn take_op_profile(&self) -> Vec<OpTime> {
        let mut table = std::mem::take(
            &mut *self
                .profiler
                .table
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        );
        table.sort_by(|a, b| b.seconds.total_cmp(&a.seconds));
        table
    }

    /// A timer for one call of `op` while profiling is on.
    pub(crate) fn op_timer(&self, op: &'static str) -> Option<OpTimer<'_>> {
        self.profiler
            .on
            .load(std::sync::atomic::Ordering::Relaxed)
            .then(|| OpTimer {
                profiler: &self.profiler,
                op,
                start: std::time::Instant::now(),
            })
    }

    /// Whether ops run on a GPU adapter.
    pub fn is_gpu(&self) -> bool {
        matches!(self.backend, Backend::Gpu(_))
    }

    /// Adapter or CPU description.
    pub fn info(&self) -> DeviceInfo {
        match &self.backend {
            Backend::Gpu(g) => DeviceInfo::Gpu(Box::new(g.summary.clone())),
            Backend::Cpu => DeviceInfo::Cpu {
                threads: crate::cpu::threads(),
            },
        }
    }

    /// A short name for logs and benchmark records: the adapter name, or "cpu".
    pub fn name(&self) -> String {
        match &self.backend {
            Backend::Gpu(g) => g.summary.name.clone(),
            Backend::Cpu => format!("cpu ({} threads)", crate::cpu::threads()),
        }
    }

    /// Compute dispatches recorded since the device was opened (GPU; 0 on the CPU backend, whose
    /// ops run at once). The difference around a training step is its dispatch count.
    pub fn dispatch_count(&self) -> u64 {
        match &self.backend {
            Backend::Gpu(g) => g.dispatch_count(),
            Backend::Cpu => 0,
        }
    }

    /// A zero-filled `rows × cols` tensor.
    pub fn zeros(&self, label: &str, rows: usize, cols: usize, dtype: DType) -> Tensor {
        let len = rows * cols;
        let store = match &self.backend {
            Backend::Gpu(g) => Store::Gpu(g.create_buffer(label, len)),
            Backend::Cpu => Store::Cpu(RwLock::new(vec![0; len])),
        };
        Tensor::new(label, rows, cols, dtype, store)
    }

    /// One zero-filled storage holding several tensors, returned as views in order (and the
    /// whole storage as the first element). Each part starts at a multiple of
    /// [`crate::VIEW_ALIGN`] elements; when every part's size is such a multiple the parts are
    /// back to back, so consecutive parts with the same column count can also be viewed as one
    /// tensor ([`Device::stacked_rows`]).
    pub fn zeros_stacked(
        &self,
        label: &str,
        parts: &[(&str, usize, usize)],
        dtype: DType,
    ) -> Result<(Tensor, Vec<Tensor>)> {
        let mut offsets = Vec::with_capacity(parts.len());
        let mut end = 0;
        for &(_, rows, cols) in parts {
            offsets.push(end);
            end += (rows * cols).next_multiple_of(crate::VIEW_ALIGN);
        }
        let whole = self.zeros(label, end, 1, dtype);
        let views = parts
            .iter()
            .zip(offsets)
            .map(|(&(name, rows, cols), off)| whole.view(name, off, rows, cols))
            .collect::<Result<Vec<_>>>()?;
        Ok((whole, views))
    }

    /// The rows of consecutive views `parts` (same storage, same column count, back to back) as
    /// one tensor, or `None` when they are not contiguous.
    pub fn stacked_rows(&self, label: &str, parts: &[&Tensor]) -> Option<Tensor> {
        let first = parts.first()?;
        let cols = first.cols();
        let mut next = first.inner.offset;
        for p in parts {
            if !p.shares_storage(first) || p.cols() != cols || p.inner.offset != next {
                return None;
            }
            next += p.len();
        }
        let rows = parts.iter().map(|p| p.rows()).sum();
        Some(crate::tensor::Tensor::view_of_store(
            label, first, rows, cols,
        ))
    }

    /// A tensor holding `data` (row-major, `rows × cols`).
    pub fn tensor_f32(
        &self,
        label: &str,
        rows: usize,
        cols: usize,
        data: &[f32],
    ) -> Result<Tensor> {
        let t = self.zeros(label, rows, cols, DType::F32);
        self.write_f32(&t, data)?;
        Ok(t)
    }

    /// A u32 tensor holding `data`.
    pub fn tensor_u32(
        &self,
        label: &str,
        rows: usize,
        cols: usize,
        data: &[u32],
    ) -> Result<Tensor> {
        let t = self.zeros(label, rows, cols, DType::U32);
        self.write_u32(&t, data)?;
        Ok(t)
    }

    /// Overwrites a float tensor. On the GPU the write is queued before the next submit.
    pub fn write_f32(&self, t: &Tensor, data: &[f32]) -> Result<()> {
        t.expect("write_f32", DType::F32, t.rows(), t.cols())?;
        self.write_words(t, bytemuck::cast_slice(data))
    }

    /// Overwrites a u32 tensor.
    pub fn write_u32(&self, t: &Tensor, data: &[u32]) -> Result<()> {
        t.expect("write_u32", DType::U32, t.rows(), t.cols())?;
        self.write_words(t, data)
    }

    fn write_words(&self, t: &Tensor, words: &[u32]) -> Result<()> {
        if words.len() != t.len() {
            return Err(crate::error::shape_err(
                "write",
                format!(
                    "{} values for tensor {:?} of {} elements",
                    words.len(),
                    t.label(),
                    t.len()
                ),
            ));
        }
        match &self.backend {
            Backend::Gpu(g) => {
                g.write(t.gpu_slice("write")?, words);
                Ok(())
            }
            Backend::Cpu => {
                t.cpu_write("write")?.copy_from_slice(words);
                Ok(())
            }
        }
    }

    /// Sets every element to zero (recorded into the step on the GPU).
    pub fn clear(&self, t: &Tensor) -> Result<()> {
        match &self.backend {
            Backend::Gpu(g) => {
                g.clear(t.gpu_slice("clear")?, t.len());
                Ok(())
            }
            Backend::Cpu => {
                let _timer = self.op_timer("clear");
                t.cpu_write("clear")?.fill(0);
                Ok(())
            }
        }
    }

    /// Copies `src` into `dst` (same dtype and size); on the CPU in parallel chunks.
    pub fn copy(&self, src: &Tensor, dst: &Tensor) -> Result<()> {
        dst.expect("copy", src.dtype(), src.rows(), src.cols())?;
        if src.id() == dst.id() {
            return Ok(());
        }
        match &self.backend {
            Backend::Gpu(g) => {
                g.copy(src.gpu_slice("copy")?, dst.gpu_slice("copy")?, src.len());
                Ok(())
            }
            Backend::Cpu => {
                let _timer = self.op_timer("copy");
                let s = src.cpu_read("copy")?;
                crate::cpu::copy(&s, &mut dst.cpu_write("copy")?);
                Ok(())
            }
        }
    }

    /// Ends a step: submits everything recorded since the last submit (GPU), and reports any GPU
    /// error raised meanwhile. A no-op on the CPU.
    pub fn submit(&self) -> Result<()> {
        match &self.backend {
            Backend::Gpu(g) => g.submit(),
            Backend::Cpu => Ok(()),
        }
    }

    /// Submits and waits until all work is done.
    pub async fn finish(&self) -> Result<()> {
        match &self.backend {
            Backend::Gpu(g) => g.finish().await,
            Backend::Cpu => Ok(()),
        }
    }

    /// Reads a float tensor back to the host (submits pending work first).
    pub async fn read_f32_async(&self, t: &Tensor) -> Result<Vec<f32>> {
        if t.dtype() != DType::F32 {
            return Err(Error::DType {
                op: "read_f32",
                tensor: t.label().into(),
                got: t.dtype(),
                expected: DType::F32,
            });
        }
        let words = self.read_words(t).await?;
        Ok(bytemuck::cast_slice(&words).to_vec())
    }

    /// Reads a u32 tensor back to the host.
    pub async fn read_u32_async(&self, t: &Tensor) -> Result<Vec<u32>> {
        if t.dtype() != DType::U32 {
            return Err(Error::DType {
                op: "read_u32",
                tensor: t.label().into(),
                got: t.dtype(),
                expected: DType::U32,
            });
        }
        self.read_words(t).await
    }

    async fn read_words(&self, t: &Tensor) -> Result<Vec<u32>> {
        match &self.backend {
            Backend::Gpu(g) => g.read_words(t.gpu_slice("read")?, t.len()).await,
            Backend::Cpu => Ok(t.cpu_read("read")?.to_vec()),
        }
    }

    /// Blocking [`Device::read_f32_async`] (native only).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn read_f32(&self, t: &Tensor) -> Result<Vec<f32>> {
        pollster::block_on(self.read_f32_async(t))
    }

    /// Blocking [`Device::read_u32_async`] (native only).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn read_u32(&self, t: &Tensor) -> Result<Vec<u32>> {
        pollster::block_on(self.read_u32_async(t))
    }

    /// Blocking [`Device::finish`] (native only).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn finish_blocking(&self) -> Result<()> {
        pollster::block_on(self.finish())
    }

    /// Runs `record` once and returns how long its work took in milliseconds, measured by GPU
    /// timestamp queries when the adapter has them, else by wall time around a full sync.
    /// Returns `(ms, "timestamp" | "wall")`.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn time_ms(
        &self,
        record: impl FnOnce(&Device) -> Result<()>,
    ) -> Result<(f64, &'static str)> {
        match &self.backend {
            Backend::Gpu(g) if g.has_timestamps() => {
                self.finish_blocking()?;
                g.timestamp(0);
                record(self)?;
                g.timestamp(1);
                let ms = pollster::block_on(g.elapsed_ms())?.unwrap_or(f64::NAN);
                Ok((ms, "timestamp"))
            }
            _ => {
                self.finish_blocking()?;
                let start = std::time::Instant::now();
                record(self)?;
                self.finish_blocking()?;
                Ok((start.elapsed().as_secs_f64() * 1e3, "wall"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Gemm, Transpose};

    #[test]
    fn op_profile_counts_calls_only_while_on() {
        let dev = Device::cpu();
        let a = dev.tensor_f32("a", 2, 2, &[1.0, 2.0, 3.0, 4.0]).unwrap();
        let c = dev.zeros("c", 2, 2, DType::F32);
        let product = Gemm::new(Transpose::No, Transpose::No);
        dev.gemm(&product, &a, &a, &c).unwrap();
        assert!(dev.take_op_profile().is_empty(), "off by default");
        dev.profile_ops(true);
        dev.gemm(&product, &a, &a, &c).unwrap();
        dev.gemm(&product, &a, &a, &c).unwrap();
        dev.copy(&a, &c).unwrap();
        let profile = dev.take_op_profile();
        let calls = |op: &str| profile.iter().find(|t| t.op == op).map(|t| t.calls);
        assert_eq!(calls("gemm A·B"), Some(2));
        assert_eq!(calls("copy"), Some(1));
        assert!(profile.iter().all(|t| t.seconds >= 0.0));
        assert!(dev.take_op_profile().is_empty(), "taking clears the table");
        dev.profile_ops(false);
        dev.copy(&a, &c).unwrap();
        assert!(dev.take_op_profile().is_empty());
    }
}
