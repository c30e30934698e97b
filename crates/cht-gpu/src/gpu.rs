//! The wgpu side of a [`crate::Device`]: adapter and device, pipeline and bind-group caches, the
//! per-step command encoder, the parameter arena, readbacks and timestamp queries.
//!
//! How one training step reaches the GPU:
//! 1. every op calls [`Gpu::dispatch`], which appends the op's small parameter block to a CPU-side
//!    arena and records one compute pass into the open command encoder (nothing is sent yet);
//! 2. [`Gpu::submit`] uploads the arena with one `write_buffer` (ordered before the commands by the
//!    queue) and submits the encoder: one submit per step;
//! 3. reads (`read_words`) are explicit and only happen when the caller asks (every N steps).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};
use crate::ops::gemm::{Precision, TensorCoreKernel, describe_configs, select_tensor_core_kernel};
use crate::tensor::{GpuSlice, Tensor};

/// Bytes reserved per dispatch in the parameter arena: the WebGPU default (and maximum) uniform
/// offset alignment, so the same layout works on every adapter.
pub(crate) const PARAM_STRIDE: usize = 256;
/// Arena size: up to 4096 dispatches per submit before an early flush is forced.
const ARENA_BYTES: usize = PARAM_STRIDE * 4096;
/// Bind groups cached before the cache is cleared (entries of dropped tensors go with it).
const BIND_GROUP_CACHE_MAX: usize = 4096;

/// How a kernel binding is accessed; binding 0 is always the parameter block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Access {
    Read,
    ReadWrite,
}

/// One WGSL entry point and the storage bindings it declares (bindings 1..=n, in order).
#[derive(Debug)]
pub(crate) struct Kernel {
    /// Shader file, e.g. `"spmm"`; also the shader-module cache key.
    pub family: &'static str,
    /// Full WGSL source of the family.
    pub source: &'static str,
    /// Entry point name.
    pub entry: &'static str,
    /// Access of bindings 1..=n.
    pub access: &'static [Access],
}

/// Pipeline cache key: (shader, entry point, override constants).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct PipelineKey {
    family: &'static str,
    entry: &'static str,
    constants: Vec<(&'static str, u64)>,
}

#[derive(Debug)]
struct Pipeline {
    id: usize,
    pipeline: wgpu::ComputePipeline,
    layout: wgpu::BindGroupLayout,
}

#[derive(Debug, Default)]
struct Frame {
    encoder: Option<wgpu::CommandEncoder>,
    params: Vec<u8>,
}

/// Facts about the adapter in use, for `cht info` and benchmark records.
#[derive(Clone, Debug)]
pub struct AdapterSummary {
    /// Adapter name, e.g. "llvmpipe (LLVM 15.0.6, 256 bits)".
    pub name: String,
    /// Backend, e.g. "Vulkan".
    pub backend: String,
    /// Device type, e.g. "Cpu" for software rasterisers.
    pub device_type: String,
    /// Driver name and version string.
    pub driver: String,
    /// Limits the device was created with.
    pub limits: wgpu::Limits,
    /// Optional features enabled on the device.
    pub features: wgpu::Features,
    /// Whether the adapter offers f16 in shaders (SHADER_F16; enabled only for tensor cores).
    pub shader_f16: bool,
    /// Smallest and largest subgroup size the adapter reports.
    pub subgroup_sizes: (u32, u32),
    /// Cooperative-matrix configurations the adapter offers, e.g. "16x16x16 F16->F32".
    pub cooperative_matrix: Vec<String>,
    /// The tensor-core GEMM kernel this adapter could run, or why it cannot.
    pub tensor_cores: std::result::Result<TensorCoreKernel, String>,
    /// Precision of the device's dense GEMMs.
    pub precision: Precision,
}

impl AdapterSummary {
    /// Whether the adapter is a software rasteriser running on the CPU (Mesa's lavapipe and
    /// llvmpipe, SwiftShader, WARP): what the driver reports as its device type, or a known name.
    pub fn is_software(&self) -> bool {
        let name = self.name.to_lowercase();
        self.device_type == "Cpu"
            || ["llvmpipe", "lavapipe", "swiftshader", "basic render driver"]
                .iter()
                .any(|s| name.contains(s))
    }

    /// The backend in words, e.g. "Vulkan (software: Mesa lavapipe)", "OpenGL 4.5 (Core Profile)
    /// through EGL (software: Mesa llvmpipe)", "Metal", "Direct3D 12", "WebGPU (the browser's)".
    pub fn backend_in_words(&self) -> String {
        let name = self.name.to_lowercase();
        let api = match self.backend.as_str() {
            "Vulkan" => "Vulkan".to_owned(),
            "Metal" => "Metal".to_owned(),
            "Dx12" => "Direct3D 12".to_owned(),
            "BrowserWebGpu" => "WebGPU (the browser's)".to_owned(),
            "Gl" => {
                // wgpu's GL backend reports the context's version string as the driver: "OpenGL
                // ES 3.2 Mesa …" for GLES contexts, "4.5 (Core Profile) Mesa …" for desktop ones.
                let version = self.driver.split(" Mesa").next().unwrap_or("").trim();
                let context = if version.is_empty() {
                    "OpenGL".to_owned()
                } else if version.starts_with("OpenGL") {
                    version.to_owned()
                } else {
                    format!("OpenGL {version}")
                };
                let through = if cfg!(target_arch = "wasm32") {
                    "WebGL"
                } else if cfg!(windows) {
                    "WGL"
                } else {
                    "EGL"
                };
                format!("{context} through {through}")
            }
            other => other.to_owned(),
        };
        if !self.is_software() {
            return api;
        }
        let renderer = if name.contains("llvmpipe") || name.contains("lavapipe") {
            if self.backend == "Vulkan" {
                "Mesa lavapipe"
            } else {
                "Mesa llvmpipe"
            }
        } else if name.contains("swiftshader") {
            "SwiftShader"
        } else if name.contains("basic render driver") {
            "WARP"
        } else {
            "a CPU driver"
        };
        format!("{api} (software: {renderer})")
    }
}

/// The GPU execution of a device.
#[derive(Debug)]
pub(crate) struct Gpu {
    pub(crate) summary: AdapterSummary,
    device: wgpu::Device,
    queue: wgpu::Queue,
    modules: Mutex<HashMap<&'static str, wgpu::ShaderModule>>,
    pipelines: Mutex<HashMap<PipelineKey, Arc<Pipeline>>>,
    bind_groups: Mutex<HashMap<(usize, Vec<u64>), wgpu::BindGroup>>,
    frame: Mutex<Frame>,
    arena: wgpu::Buffer,
    staging: Mutex<HashMap<u64, wgpu::Buffer>>,
    errors: Arc<Mutex<Vec<String>>>,
    // Used by `Device::time_ms`, which is native-only (wall clocks need std::time).
    #[cfg_attr(target_arch = "wasm32", allow(dead_code))]
    timer: Option<Timer>,
    /// One-word buffer bound where an optional operand (bias, mask) is absent.
    pub(crate) dummy: Tensor,
    /// The tensor-core GEMM kernel, when the device was opened with
    /// [`Precision::F16TensorCores`] (and so has the features it needs).
    pub(crate) tensor_cores: Option<TensorCoreKernel>,
    /// One-word buffer bound where an optional *output* is absent (wgpu forbids one buffer as
    /// read-only and read-write storage in the same dispatch, so inputs and outputs need their own).
    pub(crate) dummy_out: Tensor,
    /// Compute dispatches recorded since the device was opened.
    dispatches: AtomicU64,
}

#[derive(Debug)]
#[cfg_attr(target_arch = "wasm32", allow(dead_code))]
struct Timer {
    queries: wgpu::QuerySet,
    resolve: wgpu::Buffer,
    period_ns: f32,
}

/// Which adapter to use.
#[derive(Clone, Debug, Default)]
pub struct AdapterFilter {
    /// Case-insensitive substring the adapter name must contain (e.g. "llvmpipe", "NVIDIA").
    pub name_contains: Option<String>,
    /// Take the adapter at this position (modulo their count) among the hardware adapters of one
    /// wgpu backend (those the name filter keeps): the data-parallel ranks of one machine each
    /// take their own GPU this way (`cht` sets it from the launcher's local rank).
    pub index: Option<usize>,
}

impl Gpu {
    /// Opens an adapter (honouring `WGPU_BACKEND` and the name filter) and a device limited to the
    /// WebGPU defaults, except buffer sizes (large layers need them) and timestamp queries (when the
    /// adapter has them). With [`Precision::F16TensorCores`] it also enables SHADER_F16, SUBGROUP
    /// and the experimental cooperative-matrix feature, natively, when the adapter has a
    /// configuration the tensor-core kernel can use, and fails otherwise.
    pub(crate) async fn open(filter: &AdapterFilter, precision: Precision) -> Result<Gpu> {
        let instance =
            wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        let adapter = pick_adapter(&instance, filter).await?;
        let info = adapter.get_info();
        let adapter_limits = adapter.limits();
        let adapter_features = adapter.features();
        let coop_configs = adapter.cooperative_matrix_properties();
        let tensor_core_choice = select_tensor_core_kernel(
            info.backend,
            adapter_features,
            &coop_configs,
            info.subgroup_max_size,
        );

        // Stay inside the WebGPU defaults so every kernel validated here also runs in browsers;
        // natively, buffer sizes go up to the adapter's maximum so large models fit (the browser
        // build keeps the defaults: 256 MiB buffers, 128 MiB bindings).
        let mut limits = wgpu::Limits::defaults();
        if cfg!(not(target_arch = "wasm32")) {
            limits.max_storage_buffer_binding_size = adapter_limits.max_storage_buffer_binding_size;
            limits.max_buffer_size = adapter_limits.max_buffer_size;
        }
        let timestamps =
            wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS;
        let mut wanted = timestamps;
        let mut experimental_features = wgpu::ExperimentalFeatures::disabled();
        let mut tensor_cores = None;
        if precision == Precision::F16TensorCores {
            match &tensor_core_choice {
                Ok(kernel) => {
                    wanted |= wgpu::Features::SHADER_F16
                        | wgpu::Features::SUBGROUP
                        | wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX;
                    experimental_features = allow_experimental_features();
                    tensor_cores = Some(*kernel);
                }
                Err(why) => {
                    return Err(Error::Unsupported(format!(
                        "precision f16-tc asks for tensor cores, but adapter {:?} ({:?}) cannot \
                         run the cooperative-matrix GEMM: {why} (use precision f32)",
                        info.name, info.backend
                    )));
                }
            }
        }
        let features = adapter_features & wanted;

        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("cht.device"),
                required_features: features,
                required_limits: limits.clone(),
                experimental_features,
                ..Default::default()
            })
            .await
            .map_err(|e| Error::DeviceRequest {
                adapter: info.name.clone(),
                reason: e.to_string(),
            })?;

        // Errors outside an explicit scope are collected and returned by the next submit or read,
        // instead of wgpu's default handler, which panics.
        let errors = Arc::new(Mutex::new(Vec::new()));
        let sink = errors.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            sink.lock().expect("error sink").push(e.to_string());
        }));

        let arena = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("cht.params_arena"),
            size: ARENA_BYTES as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });

        let timer = features.contains(timestamps).then(|| Timer {
            queries: device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("cht.timestamps"),
                ty: wgpu::QueryType::Timestamp,
                count: 2,
            }),
            resolve: device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("cht.timestamps.resolve"),
                size: 16,
                usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            }),
            period_ns: queue.get_timestamp_period(),
        });

        let summary = AdapterSummary {
            name: info.name.clone(),
            backend: format!("{:?}", info.backend),
            device_type: format!("{:?}", info.device_type),
            driver: format!("{} {}", info.driver, info.driver_info)
                .trim()
                .to_owned(),
            limits,
            features,
            shader_f16: adapter_features.contains(wgpu::Features::SHADER_F16),
            subgroup_sizes: (info.subgroup_min_size, info.subgroup_max_size),
            cooperative_matrix: describe_configs(&coop_configs),
            tensor_cores: tensor_core_choice,
            precision,
        };
        let dummy_buffer = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("cht.unused_operand"),
            size: 4,
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        });
        let dummy = Tensor::new(
            "cht.unused_operand",
            1,
            1,
            crate::tensor::DType::F32,
            crate::tensor::Store::Gpu(dummy_buffer),
        );
        let dummy_out = Tensor::new(
            "cht.unused_output",
            1,
            1,
            crate::tensor::DType::F32,
            crate::tensor::Store::Gpu(device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("cht.unused_output"),
                size: 4,
                usage: wgpu::BufferUsages::STORAGE,
                mapped_at_creation: false,
            })),
        );
        Ok(Gpu {
            dummy,
            tensor_cores,
            dummy_out,
            summary,
            device,
            queue,
            modules: Mutex::default(),
            pipelines: Mutex::default(),
            bind_groups: Mutex::default(),
            frame: Mutex::default(),
            arena,
            staging: Mutex::default(),
            errors,
            timer,
            dispatches: AtomicU64::new(0),
        })
    }

    /// Creates a zero-filled storage buffer.
    pub(crate) fn create_buffer(&self, label: &str, words: usize) -> wgpu::Buffer {
        // wgpu rejects zero-sized bindings, so empty tensors get one word.
        let mut size = (words.max(1) as u64).saturating_mul(4);
        let max = self.summary.limits.max_buffer_size;
        if size > max {
            // A clear error at the next submit or read instead of wgpu's, and a placeholder
            // buffer so that recording goes on without allocating anything large.
            self.errors.lock().expect("error sink").push(format!(
                "tensor {label:?} needs {} MiB, more than the adapter's largest buffer ({} MiB)",
                size >> 20,
                max >> 20
            ));
            size = 4;
        }
        self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size,
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })
    }

    /// Queues a write of `words` at the start of `dst` (ordered before the next submit).
    pub(crate) fn write(&self, dst: GpuSlice<'_>, words: &[u32]) {
        if !words.is_empty() {
            self.queue
                .write_buffer(dst.buffer, dst.offset, bytemuck::cast_slice(words));
        }
    }

    /// Records a zero-fill of the first `words` words of `dst` into the step's encoder.
    pub(crate) fn clear(&self, dst: GpuSlice<'_>, words: usize) {
        if words == 0 {
            return;
        }
        let mut frame = self.frame.lock().expect("frame");
        let encoder = self.encoder(&mut frame);
        encoder.clear_buffer(dst.buffer, dst.offset, Some((words * 4) as u64));
    }

    /// Records a copy of `words` words from `src` to `dst`.
    pub(crate) fn copy(&self, src: GpuSlice<'_>, dst: GpuSlice<'_>, words: usize) {
        if words == 0 {
            return;
        }
        let mut frame = self.frame.lock().expect("frame");
        let encoder = self.encoder(&mut frame);
        encoder.copy_buffer_to_buffer(
            src.buffer,
            src.offset,
            dst.buffer,
            dst.offset,
            Some((words * 4) as u64),
        );
    }

    /// Records one dispatch of `kernel` over `groups` workgroups with `params` in binding 0 and
    /// `tensors` in bindings 1..=n.
    pub(crate) fn dispatch(
        &self,
        kernel: &Kernel,
        constants: &[(&'static str, f64)],
        params: &[u8],
        tensors: &[&Tensor],
        groups: [u32; 3],
    ) -> Result<()> {
        assert_eq!(
            tensors.len(),
            kernel.access.len(),
            "{}: binding count",
            kernel.entry
        );
        assert!(
            params.len() <= PARAM_STRIDE,
            "{}: parameter block too large",
            kernel.entry
        );
        if groups.contains(&0) {
            return Ok(());
        }
        let max = self.summary.limits.max_compute_workgroups_per_dimension;
        if groups.iter().any(|&g| g > max) {
            return Err(Error::Unsupported(format!(
                "{}: {groups:?} workgroups exceed the adapter limit {max} per dimension",
                kernel.entry
            )));
        }
        let pipeline = self.pipeline(kernel, constants)?;
        let buffers = tensors
            .iter()
            .map(|t| t.gpu_slice(kernel.entry))
            .collect::<Result<Vec<_>>>()?;
        let max_binding = self.summary.limits.max_storage_buffer_binding_size;
        if let Some((t, b)) = tensors
            .iter()
            .zip(&buffers)
            .find(|(_, b)| b.size > max_binding)
        {
            return Err(Error::Unsupported(format!(
                "{}: tensor {:?} ({} MiB) is larger than the adapter's storage binding limit \
                 ({} MiB)",
                kernel.entry,
                t.label(),
                b.size >> 20,
                max_binding >> 20
            )));
        }

        let mut frame = self.frame.lock().expect("frame");
        if frame.params.len() + PARAM_STRIDE > ARENA_BYTES {
            // The arena is full: this step is unusually long. Flush what we have and carry on.
            log::warn!(
                "more than {} dispatches in one submit: flushing early",
                ARENA_BYTES / PARAM_STRIDE
            );
            self.flush(&mut frame);
        }
        let offset = frame.params.len();
        frame.params.extend_from_slice(params);
        frame.params.resize(offset + PARAM_STRIDE, 0);

        let bind_group = self.bind_group(&pipeline, tensors, &buffers);
        let encoder = self.encoder(&mut frame);
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some(kernel.entry),
            timestamp_writes: None,
        });
        pass.set_pipeline(&pipeline.pipeline);
        pass.set_bind_group(0, &bind_group, &[offset as u32]);
        pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
        self.dispatches.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Compute dispatches recorded since the device was opened.
    pub(crate) fn dispatch_count(&self) -> u64 {
        self.dispatches.load(Ordering::Relaxed)
    }

    /// Uploads the parameter arena and submits the step's commands (no-op when nothing is recorded).
    pub(crate) fn submit(&self) -> Result<()> {
        let mut frame = self.frame.lock().expect("frame");
        self.flush(&mut frame);
        drop(frame);
        self.take_errors()
    }

    fn flush(&self, frame: &mut Frame) {
        if !frame.params.is_empty() {
            self.queue.write_buffer(&self.arena, 0, &frame.params);
            frame.params.clear();
        }
        if let Some(encoder) = frame.encoder.take() {
            self.queue.submit([encoder.finish()]);
        }
    }

    /// Submits pending work and waits until the GPU is idle (native); errors surface here.
    pub(crate) async fn finish(&self) -> Result<()> {
        self.submit()?;
        let (tx, rx) = futures_intrusive::channel::shared::oneshot_channel();
        self.queue.on_submitted_work_done(move || {
            let _ = tx.send(());
        });
        self.poll()?;
        rx.receive().await;
        self.take_errors()
    }

    /// Copies the first `words` words of `src` back to the host.
    pub(crate) async fn read_words(&self, src: GpuSlice<'_>, words: usize) -> Result<Vec<u32>> {
        if words == 0 {
            return Ok(Vec::new());
        }
        let bytes = (words * 4) as u64;
        // Taken out of the pool while mapped, so concurrent reads never share a staging buffer.
        let pooled = self.staging.lock().expect("staging pool").remove(&bytes);
        let staging = pooled.unwrap_or_else(|| {
            self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("cht.readback"),
                size: bytes,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        });
        {
            let mut frame = self.frame.lock().expect("frame");
            let encoder = self.encoder(&mut frame);
            encoder.copy_buffer_to_buffer(src.buffer, src.offset, &staging, 0, Some(bytes));
        }
        self.submit()?;
        let (tx, rx) = futures_intrusive::channel::shared::oneshot_channel();
        staging.map_async(wgpu::MapMode::Read, .., move |r| {
            let _ = tx.send(r);
        });
        self.poll()?;
        match rx.receive().await {
            Some(Ok(())) => {}
            Some(Err(e)) => return Err(Error::Device(format!("readback failed: {e}"))),
            None => return Err(Error::Device("readback was cancelled".into())),
        }
        let words_out = {
            let view = staging
                .get_mapped_range(..)
                .map_err(|e| Error::Device(format!("mapping the readback buffer: {e}")))?;
            bytemuck::cast_slice::<u8, u32>(&view).to_vec()
        };
        staging.unmap();
        self.staging
            .lock()
            .expect("staging pool")
            .insert(bytes, staging);
        self.take_errors()?;
        Ok(words_out)
    }

    #[cfg_attr(target_arch = "wasm32", allow(dead_code))]
    /// Whether kernel-level GPU timestamps are available.
    pub(crate) fn has_timestamps(&self) -> bool {
        self.timer.is_some()
    }

    #[cfg_attr(target_arch = "wasm32", allow(dead_code))]
    /// Writes timestamp `index` (0 = start, 1 = end) into the step's encoder.
    pub(crate) fn timestamp(&self, index: u32) {
        if let Some(timer) = &self.timer {
            let mut frame = self.frame.lock().expect("frame");
            self.encoder(&mut frame)
                .write_timestamp(&timer.queries, index);
        }
    }

    #[cfg_attr(target_arch = "wasm32", allow(dead_code))]
    /// Resolves the two timestamps and returns the elapsed GPU time in milliseconds.
    pub(crate) async fn elapsed_ms(&self) -> Result<Option<f64>> {
        let Some(timer) = &self.timer else {
            return Ok(None);
        };
        {
            let mut frame = self.frame.lock().expect("frame");
            self.encoder(&mut frame)
                .resolve_query_set(&timer.queries, 0..2, &timer.resolve, 0);
        }
        let resolve = GpuSlice {
            buffer: &timer.resolve,
            offset: 0,
            size: 16,
        };
        let words = self.read_words(resolve, 4).await?;
        let start = u64::from(words[0]) | (u64::from(words[1]) << 32);
        let end = u64::from(words[2]) | (u64::from(words[3]) << 32);
        Ok(Some(
            end.saturating_sub(start) as f64 * f64::from(timer.period_ns) * 1e-6,
        ))
    }

    fn poll(&self) -> Result<()> {
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map(|_| ())
            .map_err(|e| Error::Device(format!("waiting for the GPU: {e}")))
    }

    fn take_errors(&self) -> Result<()> {
        let mut errors = self.errors.lock().expect("error sink");
        if errors.is_empty() {
            return Ok(());
        }
        let all = errors.drain(..).collect::<Vec<_>>().join("; ");
        if all.to_lowercase().contains("out of memory") {
            Err(Error::OutOfMemory(all))
        } else if all.contains("more than the adapter's largest buffer") {
            Err(Error::Unsupported(all))
        } else {
            Err(Error::Validation(all))
        }
    }

    fn encoder<'a>(&self, frame: &'a mut Frame) -> &'a mut wgpu::CommandEncoder {
        frame.encoder.get_or_insert_with(|| {
            self.device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                    label: Some("cht.step"),
                })
        })
    }

    fn pipeline(
        &self,
        kernel: &Kernel,
        constants: &[(&'static str, f64)],
    ) -> Result<Arc<Pipeline>> {
        let key = PipelineKey {
            family: kernel.family,
            entry: kernel.entry,
            constants: constants.iter().map(|&(k, v)| (k, v.to_bits())).collect(),
        };
        let mut pipelines = self.pipelines.lock().expect("pipeline cache");
        if let Some(p) = pipelines.get(&key) {
            return Ok(p.clone());
        }
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let module = {
            let mut modules = self.modules.lock().expect("module cache");
            modules
                .entry(kernel.family)
                .or_insert_with(|| create_module(&self.device, kernel))
                .clone()
        };
        let mut entries = vec![wgpu::BindGroupLayoutEntry {
            binding: 0,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: wgpu::BufferBindingType::Uniform,
                has_dynamic_offset: true,
                min_binding_size: None,
            },
            count: None,
        }];
        for (i, access) in kernel.access.iter().enumerate() {
            entries.push(wgpu::BindGroupLayoutEntry {
                binding: i as u32 + 1,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: wgpu::BindingType::Buffer {
                    ty: wgpu::BufferBindingType::Storage {
                        read_only: *access == Access::Read,
                    },
                    has_dynamic_offset: false,
                    min_binding_size: None,
                },
                count: None,
            });
        }
        let layout = self
            .device
            .create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                label: Some(kernel.entry),
                entries: &entries,
            });
        let pipeline_layout = self
            .device
            .create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                label: Some(kernel.entry),
                bind_group_layouts: &[Some(&layout)],
                immediate_size: 0,
            });
        let pipeline = self
            .device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(kernel.entry),
                layout: Some(&pipeline_layout),
                module: &module,
                entry_point: Some(kernel.entry),
                compilation_options: wgpu::PipelineCompilationOptions {
                    constants,
                    ..Default::default()
                },
                cache: None,
            });
        check_scope(scope, kernel)?;
        let p = Arc::new(Pipeline {
            id: pipelines.len(),
            pipeline,
            layout,
        });
        pipelines.insert(key, p.clone());
        Ok(p)
    }

    fn bind_group(
        &self,
        pipeline: &Pipeline,
        tensors: &[&Tensor],
        buffers: &[GpuSlice<'_>],
    ) -> wgpu::BindGroup {
        let key = (
            pipeline.id,
            tensors.iter().map(|t| t.id()).collect::<Vec<_>>(),
        );
        let mut cache = self.bind_groups.lock().expect("bind group cache");
        if let Some(bg) = cache.get(&key) {
            return bg.clone();
        }
        if cache.len() >= BIND_GROUP_CACHE_MAX {
            cache.clear();
        }
        let mut entries = vec![wgpu::BindGroupEntry {
            binding: 0,
            resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer: &self.arena,
                offset: 0,
                size: wgpu::BufferSize::new(PARAM_STRIDE as u64),
            }),
        }];
        for (i, b) in buffers.iter().enumerate() {
            entries.push(wgpu::BindGroupEntry {
                binding: i as u32 + 1,
                resource: b.binding(),
            });
        }
        let bg = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("cht.bind_group"),
            layout: &pipeline.layout,
            entries: &entries,
        });
        cache.insert(key, bg.clone());
        bg
    }
}

/// Shader families whose kernels keep every index in bounds by construction (the launcher checks
/// each operand's shape against the dimensions the kernels index with): created without runtime
/// bounds checks on native adapters. Only the GEMM family is trusted this way.
const UNCHECKED_FAMILIES: [&str; 2] = ["gemm", "gemm_coop"];

/// Whether the shader modules of `family` are created with wgpu's runtime checks (bounds checks,
/// loop bounding, integer-division guards): every family except [`UNCHECKED_FAMILIES`] natively,
/// and every family in the browser.
pub(crate) fn family_has_runtime_checks(family: &str) -> bool {
    cfg!(target_arch = "wasm32") || !UNCHECKED_FAMILIES.contains(&family)
}

/// The shader module of `kernel`'s family (labelled with the family name).
fn create_module(device: &wgpu::Device, kernel: &Kernel) -> wgpu::ShaderModule {
    let desc = wgpu::ShaderModuleDescriptor {
        label: Some(kernel.family),
        source: wgpu::ShaderSource::Wgsl(kernel.source.into()),
    };
    #[cfg(not(target_arch = "wasm32"))]
    if !family_has_runtime_checks(kernel.family) {
        return create_gemm_module_unchecked(device, desc);
    }
    device.create_shader_module(desc)
}

/// A GEMM shader module (`shaders/gemm.wgsl` or `shaders/gemm_coop.wgsl`) without runtime bounds
/// checks, loop bounding or integer-division guards.
#[cfg(not(target_arch = "wasm32"))]
#[allow(unsafe_code)]
fn create_gemm_module_unchecked(
    device: &wgpu::Device,
    desc: wgpu::ShaderModuleDescriptor<'_>,
) -> wgpu::ShaderModule {
    // SAFETY: `create_shader_module_trusted` requires that the shaders never index out of bounds,
    // never loop forever and never divide by zero. For the GEMM family this holds by construction:
    // * `ops::gemm::dims` checks, before any dispatch, that A, B, C, bias and mask have exactly the
    //   shapes the Params (m, n, k) describe and that every dimension and operand length is below
    //   2^31, so no index or loop counter computed in u32 wraps; `Device::gemm` returns early when
    //   m or n is 0 and binds a one-word buffer for absent operands, which the kernels only read
    //   under the flag (FLAG_BIAS) or override (MASK_A, MASK_C) that the launcher sets only when
    //   the operand is present;
    // * every global load and store either stays inside an interior tile (rows < m, columns < n,
    //   k < k, checked once per tile and k-slice against Params) or is checked element by element
    //   (clamped in `gemm`); the vec4 entry is chosen only when each operand's contiguous dimension
    //   is a multiple of 4 and k > 0, so a quad is wholly inside or outside its operand;
    // * workgroup arrays are indexed with invocation ids and constants whose largest values the
    //   array sizes cover, and cooperative loads/stores address whole tiles inside them (or, for
    //   the direct store to C, a full tile inside C);
    // * every loop is bounded by a constant, by Params (below 2^31), or by the workgroup size;
    //   divisors are non-zero constants or the workgroup size.
    unsafe { device.create_shader_module_trusted(desc, wgpu::ShaderRuntimeChecks::unchecked()) }
}

/// The token that lets a device request experimental features (the cooperative matrices of the
/// tensor-core GEMM).
#[cfg(not(target_arch = "wasm32"))]
#[allow(unsafe_code)]
fn allow_experimental_features() -> wgpu::ExperimentalFeatures {
    // SAFETY: the token only permits requesting features named EXPERIMENTAL_*; cht requests one,
    // EXPERIMENTAL_COOPERATIVE_MATRIX, and only when the user asked for precision f16-tc and the
    // adapter reports the feature and a configuration the kernel uses. Its sole user is
    // `shaders/gemm_coop.wgsl`, validated by naga in the tests for every entry point and override
    // combination the launcher creates.
    unsafe { wgpu::ExperimentalFeatures::enabled() }
}

#[cfg(target_arch = "wasm32")]
fn allow_experimental_features() -> wgpu::ExperimentalFeatures {
    // Cooperative matrices are native-only: `select_tensor_core_kernel` never picks a kernel on
    // the WebGPU backend, so this is never reached with a kernel to run.
    wgpu::ExperimentalFeatures::disabled()
}

#[cfg(not(target_arch = "wasm32"))]
fn check_scope(scope: wgpu::ErrorScopeGuard, kernel: &Kernel) -> Result<()> {
    match pollster::block_on(scope.pop()) {
        None => Ok(()),
        Some(e) => Err(Error::Validation(format!(
            "pipeline {}/{}: {e}",
            kernel.family, kernel.entry
        ))),
    }
}

#[cfg(target_arch = "wasm32")]
fn check_scope(scope: wgpu::ErrorScopeGuard, _kernel: &Kernel) -> Result<()> {
    // The browser reports the scope asynchronously; errors reach the uncaptured handler instead.
    drop(scope);
    Ok(())
}

async fn pick_adapter(instance: &wgpu::Instance, filter: &AdapterFilter) -> Result<wgpu::Adapter> {
    let backends = wgpu::Backends::from_env().unwrap_or(wgpu::Backends::all());
    if let Some(index) = filter.index {
        let adapters = instance.enumerate_adapters(backends).await;
        let wanted = filter.name_contains.as_deref().map(str::to_lowercase);
        let keep = |a: &wgpu::Adapter| {
            let info = a.get_info();
            let named = wanted
                .as_deref()
                .is_none_or(|w| info.name.to_lowercase().contains(w));
            // Software rasterisers only when asked for by name.
            named && (wanted.is_some() || info.device_type != wgpu::DeviceType::Cpu)
        };
        let mut candidates: Vec<wgpu::Adapter> = adapters.into_iter().filter(keep).collect();
        // One physical GPU shows up once per wgpu backend (Vulkan and GL): count the GPUs of
        // the first backend found, so every rank uses the same backend.
        let Some(first) = candidates.first().map(|a| a.get_info().backend) else {
            return Err(Error::NoAdapter(format!(
                " at index {index}: no hardware adapter{}",
                filter
                    .name_contains
                    .as_ref()
                    .map_or(String::new(), |w| format!(" whose name contains {w:?}"))
            )));
        };
        candidates.retain(|a| a.get_info().backend == first);
        let n = candidates.len();
        return Ok(candidates.swap_remove(index % n));
    }
    if let Some(wanted) = &filter.name_contains {
        let wanted_lower = wanted.to_lowercase();
        let adapters = instance.enumerate_adapters(backends).await;
        let names: Vec<String> = adapters.iter().map(|a| a.get_info().name).collect();
        return adapters
            .into_iter()
            .find(|a| a.get_info().name.to_lowercase().contains(&wanted_lower))
            .ok_or_else(|| {
                Error::NoAdapter(format!(
                    " whose name contains {wanted:?} (found: {names:?})"
                ))
            });
    }
    instance
        .request_adapter(&wgpu::RequestAdapterOptions {
            power_preference: wgpu::PowerPreference::from_env()
                .unwrap_or(wgpu::PowerPreference::HighPerformance),
            ..Default::default()
        })
        .await
        .map_err(|e| Error::NoAdapter(format!(": {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(name: &str, backend: &str, device_type: &str, driver: &str) -> AdapterSummary {
        AdapterSummary {
            name: name.into(),
            backend: backend.into(),
            device_type: device_type.into(),
            driver: driver.into(),
            limits: wgpu::Limits::defaults(),
            features: wgpu::Features::empty(),
            shader_f16: false,
            subgroup_sizes: (0, 0),
            cooperative_matrix: Vec::new(),
            tensor_cores: Err("none".into()),
            precision: Precision::F32,
        }
    }

    #[test]
    fn backends_are_described_in_words() {
        // What lavapipe and Mesa's GL reported here (`cht --backend gpu info`).
        let lavapipe = summary(
            "llvmpipe (LLVM 15.0.6, 256 bits)",
            "Vulkan",
            "Cpu",
            "llvmpipe Mesa 22.3.6 (LLVM 15.0.6)",
        );
        assert!(lavapipe.is_software());
        assert_eq!(
            lavapipe.backend_in_words(),
            "Vulkan (software: Mesa lavapipe)"
        );
        let gl = summary(
            "llvmpipe (LLVM 15.0.6, 256 bits)",
            "Gl",
            "Cpu",
            "4.5 (Core Profile) Mesa 22.3.6",
        );
        let through = if cfg!(windows) { "WGL" } else { "EGL" };
        assert_eq!(
            gl.backend_in_words(),
            format!("OpenGL 4.5 (Core Profile) through {through} (software: Mesa llvmpipe)")
        );
        let gles = summary("Mali-G710", "Gl", "IntegratedGpu", "OpenGL ES 3.2 v1.r38p1");
        assert!(!gles.is_software());
        assert_eq!(
            gles.backend_in_words(),
            format!("OpenGL ES 3.2 v1.r38p1 through {through}")
        );
        let metal = summary("Apple M2", "Metal", "IntegratedGpu", "");
        assert_eq!(metal.backend_in_words(), "Metal");
        let warp = summary("Microsoft Basic Render Driver", "Dx12", "Cpu", "");
        assert_eq!(warp.backend_in_words(), "Direct3D 12 (software: WARP)");
        let nvidia = summary("NVIDIA H200", "Dx12", "DiscreteGpu", "");
        assert_eq!(nvidia.backend_in_words(), "Direct3D 12");
        let swiftshader = summary("SwiftShader Device", "BrowserWebGpu", "Cpu", "");
        assert_eq!(
            swiftshader.backend_in_words(),
            "WebGPU (the browser's) (software: SwiftShader)"
        );
    }
}
