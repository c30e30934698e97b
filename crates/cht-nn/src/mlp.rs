//! The MLP: `input → [Linear → ReLU] × hidden → Linear → softmax`, any layer sparse or dense.

use cht_gpu::{Activation, DType, Device, METRICS_LEN, ParamArena, SgdStep, Tensor};
use cht_sparse::CsrPattern;
use cht_sparse::rng::{RngKey, Stream};

use crate::layer::{
    DenseLinear, ExecutionPolicy, Layer, Param, SparseLinear, apply_policy, collect_for_pack, pack,
    pack_masks,
};
use crate::{Error, Result};

/// Shape and sparsity of an MLP.
///
/// Built by [`MlpConfig::new`], then edited field by field; `#[non_exhaustive]`, so fields can
/// be added without breaking callers.
///
/// ```rust
/// use cht_nn::MlpConfig;
///
/// let mut config = MlpConfig::new(vec![784, 1568, 10], 0.05);
/// config.seed = 7;
/// assert!(config.dense_last);
/// ```
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct MlpConfig {
    /// Neurons per layer, input first, classes last (e.g. `[784, 1568, 1568, 1568, 10]`).
    pub sizes: Vec<usize>,
    /// Density of each hidden layer's weights (Erdős–Rényi with an exact link count); `1.0` makes
    /// the hidden layers dense.
    pub density: f64,
    /// Keep the last (classifier) layer dense, as the paper does.
    pub dense_last: bool,
    /// Seed of topology and weight initialisation.
    pub seed: u32,
}

impl MlpConfig {
    /// Layers of `sizes` neurons (input first, classes last), the hidden ones at `density`, the
    /// classifier dense, seed 0.
    pub fn new(sizes: Vec<usize>, density: f64) -> MlpConfig {
        MlpConfig {
            sizes,
            density,
            dense_last: true,
            seed: 0,
        }
    }
}

/// Parameters of an MLP on a device. Every weight and bias (with its gradient and SGD momentum)
/// lives in one [`ParamArena`], so the optimizer step is one dispatch.
#[derive(Debug)]
pub struct Mlp {
    /// Layers, input side first.
    pub layers: Vec<Layer>,
    arena: ParamArena,
    policy: ExecutionPolicy,
}

/// Per-batch-size buffers: activations, their gradients, and the on-device loss accumulators.
#[derive(Debug)]
pub struct Workspace {
    batch: usize,
    /// `acts[0]` is the input `[in, batch]`; `acts[l + 1]` is layer `l`'s output.
    acts: Vec<Tensor>,
    /// `grads[l]` is the gradient w.r.t. `acts[l + 1]` (for the last layer: the logits).
    grads: Vec<Tensor>,
    labels: Tensor,
    sample: Tensor,
    metrics: Tensor,
}

/// Sums accumulated on the device since the last read.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Metrics {
    /// Mean cross-entropy per sample.
    pub loss: f64,
    /// Fraction of samples classified correctly.
    pub accuracy: f64,
    /// Samples counted.
    pub samples: u64,
}

impl Mlp {
    /// Builds the layers: hidden layers sparse at `config.density` (dense at 1.0), last dense or not.
    pub fn new(device: &Device, config: &MlpConfig) -> Result<Mlp> {
        if config.sizes.len() < 2 || config.sizes.contains(&0) {
            return Err(Error::Config(format!(
                "an MLP needs at least two non-zero layer sizes, got {:?}",
                config.sizes
            )));
        }
        if !(0.0..=1.0).contains(&config.density) || config.density == 0.0 {
            return Err(Error::Config(format!(
                "density must be in (0, 1], got {}",
                config.density
            )));
        }
        let n = config.sizes.len() - 1;
        let mut layers = Vec::with_capacity(n);
        for l in 0..n {
            let (inp, out) = (config.sizes[l], config.sizes[l + 1]);
            let label = format!("layer{l}");
            let dense = config.density >= 1.0 || (l == n - 1 && config.dense_last);
            layers.push(if dense {
                Layer::Dense(DenseLinear::new(
                    device,
                    &label,
                    out,
                    inp,
                    config.seed,
                    l as u32,
                )?)
            } else {
                let key = RngKey::new(config.seed, Stream::TopologyInit, 0, l as u32);
                let pattern = CsrPattern::random(out, inp, config.density, key)?;
                Layer::Sparse(SparseLinear::new(
                    device,
                    &label,
                    &pattern,
                    config.seed,
                    l as u32,
                )?)
            });
        }
        Mlp::from_layers(device, layers)
    }

    /// An MLP from ready-made layers (input side first); hidden layers get ReLU. Their
    /// parameters move into the model's arena.
    pub fn from_layers(device: &Device, layers: Vec<Layer>) -> Result<Mlp> {
        if layers.is_empty() {
            return Err(Error::Config("an MLP needs at least one layer".into()));
        }
        for (l, w) in layers.windows(2).enumerate() {
            if w[0].out_features() != w[1].in_features() {
                return Err(Error::Config(format!(
                    "layer {l} has {} outputs but layer {} has {} inputs",
                    w[0].out_features(),
                    l + 1,
                    w[1].in_features()
                )));
            }
        }
        let mut mlp = Mlp {
            layers,
            arena: device.param_arena("mlp.params", &[], 1)?.0,
            policy: ExecutionPolicy::csr(),
        };
        mlp.repack(device)?;
        Ok(mlp)
    }

    /// Moves every trainable tensor into a fresh arena (after construction and whenever a layer
    /// switches between CSR and masked-dense execution).
    fn repack(&mut self, device: &Device) -> Result<()> {
        let mut params: Vec<&mut Param> = Vec::new();
        let mut masks: Vec<&mut Tensor> = Vec::new();
        for l in &mut self.layers {
            collect_for_pack(device, l, 1, &mut params, &mut masks)?;
        }
        self.arena = pack(device, "mlp.params", params, 1)?;
        pack_masks(device, "mlp.masks", masks)?;
        Ok(())
    }

    /// The parameter arena: every weight and bias with its gradient and momentum.
    pub fn arena(&self) -> &ParamArena {
        &self.arena
    }

    /// Every parameter's gradient (arena order) with its live entries, for a data-parallel
    /// exchange.
    pub fn gradients(&self) -> Vec<crate::Gradient<'_>> {
        let mut out = Vec::new();
        let mut sparse = 0;
        for l in &self.layers {
            crate::layer::collect_gradients(l, &mut sparse, &mut out);
        }
        out
    }

    /// One SGD step on the gradients as they are (after a data-parallel exchange), one submit.
    pub fn optimizer_step(&self, device: &Device, sgd: SgdStep) -> Result<()> {
        device.sgd_arena(&self.arena, sgd)?;
        device.submit()?;
        Ok(())
    }

    /// Records the copy of every masked-dense layer's weights, momentum and gradient into CSR
    /// order: before a topology update or reading the CSR side for a checkpoint.
    pub fn sync_to_csr(&self, device: &Device) -> Result<()> {
        crate::layer::sync_to_csr(device, self.layers.iter())
    }

    /// Records the rebuild of every masked-dense layer from its CSR side (after a topology update
    /// or a restore).
    pub fn sync_from_csr(&self, device: &Device) -> Result<()> {
        crate::layer::sync_from_csr(device, self.layers.iter())
    }

    /// Sets how sparse layers execute and switches each by its density (`densities[i]` for the
    /// i-th sparse layer); re-packs the arena when anything switched. See
    /// [`crate::Lm::set_execution`].
    pub fn set_execution(
        &mut self,
        device: &Device,
        policy: ExecutionPolicy,
        densities: &[f64],
    ) -> Result<()> {
        self.policy = policy;
        if apply_policy(device, self.layers.iter_mut(), policy, densities)? {
            self.repack(device)?;
        }
        Ok(())
    }

    /// After a topology update (recorded on the device) with the new density of every sparse
    /// layer: rebuilds masked-dense layers from their CSR side and switches executions where the
    /// density crossed the policy's crossover.
    pub fn after_topology_update(&mut self, device: &Device, densities: &[f64]) -> Result<()> {
        self.sync_from_csr(device)?;
        let policy = self.policy;
        self.set_execution(device, policy, densities)
    }

    /// The execution policy in force.
    pub fn execution_policy(&self) -> ExecutionPolicy {
        self.policy
    }

    /// Input features.
    pub fn in_features(&self) -> usize {
        self.layers[0].in_features()
    }

    /// Classes.
    pub fn classes(&self) -> usize {
        self.layers.last().map_or(0, Layer::out_features)
    }

    /// Allocates the buffers for batches of `batch` samples (once; reuse it every step).
    pub fn workspace(&self, device: &Device, batch: usize) -> Workspace {
        let f32s = |label: String, rows| device.zeros(&label, rows, batch, DType::F32);
        let mut acts = vec![f32s("act0.input".into(), self.in_features())];
        let mut grads = Vec::new();
        for (l, layer) in self.layers.iter().enumerate() {
            acts.push(f32s(format!("act{}", l + 1), layer.out_features()));
            grads.push(f32s(format!("act{}.grad", l + 1), layer.out_features()));
        }
        Workspace {
            batch,
            acts,
            grads,
            labels: device.zeros("labels", batch, 1, DType::U32),
            sample: device.zeros("sample_loss", 2, batch, DType::F32),
            metrics: device.zeros("metrics", METRICS_LEN, 1, DType::F32),
        }
    }

    /// Queues the upload of one batch: `x` is feature-major `[in, batch]`, `labels` has `batch`
    /// entries.
    pub fn load_batch(
        &self,
        device: &Device,
        ws: &Workspace,
        x: &[f32],
        labels: &[u32],
    ) -> Result<()> {
        if labels.iter().any(|&y| y as usize >= self.classes()) {
            return Err(Error::Config(format!(
                "a label is ≥ the {} classes",
                self.classes()
            )));
        }
        device.write_f32(&ws.acts[0], x)?;
        device.write_u32(&ws.labels, labels)?;
        Ok(())
    }

    /// One training step on the loaded batch, sent as a single submit:
    /// forward, loss (accumulated on the device), backward, and — unless `sgd` is `None`, as on
    /// topology-update steps — the optimizer.
    pub fn train_step(&self, device: &Device, ws: &Workspace, sgd: Option<SgdStep>) -> Result<()> {
        self.train_step_capturing(device, ws, sgd, &[])
    }

    /// [`Mlp::train_step`] that also writes the *dense* weight gradient `δ·xᵀ` of the listed layers
    /// into the given `[out, in]` tensors (RigL/GraNet regrowth scores; only on update steps, since
    /// it costs a dense product).
    pub fn train_step_capturing(
        &self,
        device: &Device,
        ws: &Workspace,
        sgd: Option<SgdStep>,
        capture: &[(usize, &Tensor)],
    ) -> Result<()> {
        self.record_forward_loss(device, ws)?;
        // Backward: grads[l] holds dL/d(pre-activation of layer l) once ReLU backward has run.
        for (l, layer) in self.layers.iter().enumerate().rev() {
            let dx = (l > 0).then(|| &ws.grads[l - 1]);
            layer.backward(device, &ws.acts[l], &ws.grads[l], dx)?;
            for (_, dense) in capture.iter().filter(|(i, _)| *i == l) {
                let nt = cht_gpu::Gemm::new(cht_gpu::Transpose::No, cht_gpu::Transpose::Yes);
                device.gemm(&nt, &ws.grads[l], &ws.acts[l], dense)?;
            }
            if let Some(dx) = dx {
                device.relu_backward(&ws.acts[l], dx)?;
            }
        }
        if let Some(step) = sgd {
            device.sgd_arena(&self.arena, step)?;
        }
        device.submit()?;
        Ok(())
    }

    /// Forward and loss only (evaluation), one submit.
    pub fn eval_step(&self, device: &Device, ws: &Workspace) -> Result<()> {
        self.record_forward_loss(device, ws)?;
        device.submit()?;
        Ok(())
    }

    fn record_forward_loss(&self, device: &Device, ws: &Workspace) -> Result<()> {
        let last = self.layers.len() - 1;
        for (l, layer) in self.layers.iter().enumerate() {
            let act = if l == last {
                Activation::None
            } else {
                Activation::Relu
            };
            layer.forward(device, &ws.acts[l], act, &ws.acts[l + 1])?;
        }
        device.softmax_xent(
            &ws.acts[last + 1],
            &ws.labels,
            &ws.grads[last],
            &ws.sample,
            &ws.metrics,
        )?;
        Ok(())
    }

    /// Reads and resets the loss/accuracy sums (the only readback of a training loop; call it every
    /// N steps).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn take_metrics(&self, device: &Device, ws: &Workspace) -> Result<Metrics> {
        let m = device.read_f32(&ws.metrics)?;
        device.clear(&ws.metrics)?;
        Ok(Metrics::from_sums(&m))
    }

    /// Async [`Mlp::take_metrics`] for the browser.
    pub async fn take_metrics_async(&self, device: &Device, ws: &Workspace) -> Result<Metrics> {
        let m = device.read_f32_async(&ws.metrics).await?;
        device.clear(&ws.metrics)?;
        Ok(Metrics::from_sums(&m))
    }
}

impl Workspace {
    /// Samples per batch.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// The logits of the last forward pass, `[classes, batch]` (feature-major).
    pub fn logits(&self) -> &Tensor {
        // `acts` always holds the input plus one output per layer, so it is never empty.
        &self.acts[self.acts.len() - 1]
    }
}

impl Metrics {
    pub(crate) fn from_sums(m: &[f32]) -> Metrics {
        let samples = m[2] as u64;
        let n = f64::from(m[2]).max(1.0);
        Metrics {
            loss: f64::from(m[0]) / n,
            accuracy: f64::from(m[1]) / n,
            samples,
        }
    }
}
