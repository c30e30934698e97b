//! [`DstModel`]: a network trained with dynamic sparse training — the network, its optimizer
//! state and the [`DstScheduler`] with its device scratch, kept consistent by construction.
//!
//! Read [`DstModel::train_step`] top to bottom: the scheduler counts the step; an ordinary step
//! is the network's one-submit training step with the optimizer; a topology-update step runs
//! forward and backward without the optimizer (capturing dense gradients when regrowth needs
//! them), hands every sparse layer — pattern, weights, *all* their optimizer state, gradients —
//! to the update on the device, rebuilds masked-dense layers, and (natively) reads the new masks
//! back once for ANP, ITOP and the execution choice. In the browser that readback is
//! [`DstModel::observe_async`], called when the page wants the metrics.
//!
//! [`SparseMlp`] and [`SparseLm`] are the two networks of the paper; any type implementing
//! [`Network`] can be trained the same way.

use cht_dst::{DstConfig, DstScheduler, LayerRef, Method, RegrowScores, Topology, UpdateReport};
use cht_gpu::{AdamWStep, DType, Device, ParamArena, SgdStep, Tensor};
use cht_sparse::init::Correlation;
use cht_sparse::{CsrPattern, Mask};

use crate::data_parallel::{CommStats, DataParallel, Gradient};
use crate::layer::{DenseLinear, ExecutionPolicy, Layer, LinearInit, SparseLinear};
use crate::lm::{Lm, LmConfig, LmWorkspace};
use crate::mlp::{Mlp, Workspace};
use crate::{Error, Result};

/// A network whose sparse layers a [`DstModel`] rewires: it lists them in the scheduler's order
/// and runs one training step. Implemented by [`Mlp`] and [`Lm`].
pub trait Network {
    /// Per-batch buffers of a step.
    type Workspace;
    /// Parameters of one optimizer step (e.g. [`SgdStep`]).
    type Optimizer: Copy;

    /// The sparse layers, in the order a scheduler manages them.
    fn sparse_layers(&self) -> Vec<&SparseLinear>;
    /// The same, mutable (to replace patterns on restore).
    fn sparse_layers_mut(&mut self) -> Vec<&mut SparseLinear>;
    /// Whether each sparse layer feeds the next (an MLP), so active-neuron percolation (ANP) is
    /// defined; `false` for layers side by side (a Transformer's projections).
    fn is_chain(&self) -> bool;
    /// One training step on the loaded batch, one submit: forward, loss, backward, then the
    /// optimizer unless `optimizer` is `None`; writes the dense weight gradient `[out, in]` of
    /// sparse layer `i` into `t` for every `(i, t)` of `capture`.
    fn train_step_capturing(
        &self,
        device: &Device,
        ws: &Self::Workspace,
        optimizer: Option<Self::Optimizer>,
        capture: &[(usize, &Tensor)],
    ) -> Result<()>;
    /// The parameter arena (every trainable tensor with its gradient and optimizer states).
    fn arena(&self) -> &ParamArena;
    /// Every parameter's gradient in the arena with its live entries (a data-parallel exchange
    /// sends only those); the `i` of [`crate::Live::Links`]/[`crate::Live::Masked`] is the scheduler's order.
    fn gradients(&self) -> Vec<Gradient<'_>>;
    /// The optimizer step alone, on the gradients as they are, one submit (data-parallel steps
    /// average the gradients between the backward pass and this).
    fn optimizer_step(&self, device: &Device, optimizer: Self::Optimizer) -> Result<()>;
    /// Records the copy of masked-dense layers into CSR order (before an update or a readback).
    fn sync_to_csr(&self, device: &Device) -> Result<()>;
    /// After the patterns changed: rebuilds masked-dense layers from CSR and switches executions
    /// by the sparse layers' `densities`.
    fn after_topology_update(&mut self, device: &Device, densities: &[f64]) -> Result<()>;
    /// Sets the execution policy and switches each sparse layer by its density.
    fn set_execution(
        &mut self,
        device: &Device,
        policy: ExecutionPolicy,
        densities: &[f64],
    ) -> Result<()>;
    /// The execution policy in force.
    fn execution_policy(&self) -> ExecutionPolicy;
}

/// A network trained with dynamic sparse training (or densely, without a scheduler).
///
/// It owns the network, the scheduler and the scheduler's device scratch, so the optimizer
/// state handed to every topology update is the network's own (a mismatch is an error at
/// construction, never a silent skip), and it observes the masks itself for ANP and ITOP.
///
/// ```
/// use cht_dst::{Method, MlpRecipe};
/// use cht_gpu::{Device, SgdStep};
/// use cht_nn::{SparseMlp, SparseMlpConfig};
///
/// let device = Device::cpu();
/// // SET at 25 %: a topology update every epoch of 4 steps (none at the very last step).
/// let dst = MlpRecipe::new(Method::Set, 0.25).epochs(2).steps_per_epoch(4).build();
/// let mut model = SparseMlp::new(&device, &SparseMlpConfig::new(vec![6, 8, 3], dst))?;
/// let ws = model.network().workspace(&device, 2);
/// let (x, labels) = (vec![0.5f32; 6 * 2], vec![0u32, 2]);
/// let mut updates = 0;
/// for _ in 0..8 {
///     model.network().load_batch(&device, &ws, &x, &labels)?;
///     if model.train_step(&device, &ws, SgdStep::new(0.05, 0.9, 0.0))?.is_some() {
///         updates += 1;
///     }
/// }
/// assert_eq!(updates, 1);
/// // The model observed the masks itself: ITOP counts every link ever active.
/// assert!(model.itop().unwrap() >= 0.25);
/// # Ok::<(), cht_nn::Error>(())
/// ```
#[derive(Debug)]
pub struct DstModel<N: Network> {
    net: N,
    dst: Option<Dst>,
    /// Data-parallel training (see [`DstModel::set_collective`]).
    parallel: Option<DataParallel>,
}

/// An MLP trained with DST: hidden layers sparse, classifier dense (spec §7.2).
pub type SparseMlp = DstModel<Mlp>;
/// A LLaMA-style language model whose projections train with DST (spec §7.4).
pub type SparseLm = DstModel<Lm>;

#[derive(Debug)]
struct Dst {
    scheduler: DstScheduler,
    topology: Topology,
    /// Dense gradients of the sparse layers (gradient regrowth only), one per layer.
    dense_grads: Vec<Tensor>,
    /// Density of every sparse layer as last observed (planned before the first observation).
    densities: Vec<f64>,
    /// A topology update was recorded whose masks were not read back yet.
    unobserved: bool,
}

/// How the parameters of a [`SparseMlp`] that the DST initialisers do not set start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MlpInit {
    /// Kaiming-uniform dense weights, zero biases (the paper).
    #[default]
    Kaiming,
    /// PyTorch's `nn.Linear` defaults for every bias and the classifier (the official code,
    /// spec §6.6).
    Pytorch,
}

/// What a [`SparseMlp`] is: sizes, the DST configuration, initialisation.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct SparseMlpConfig {
    /// Neurons per layer, input first, classes last (e.g. `[784, 1568, 1568, 1568, 10]`): every
    /// layer but the classifier is sparse.
    pub sizes: Vec<usize>,
    /// The DST method and its schedules ([`Method::Fc`] trains every layer dense).
    pub dst: DstConfig,
    /// Initialisation of what the DST initialisers do not set.
    pub init: MlpInit,
    /// Seed of the dense layers' and biases' initialisation (the DST configuration has its own).
    pub seed: u32,
    /// Correlation of the input features: required by the CSTI topology initialiser only.
    pub correlation: Option<Correlation>,
}

impl SparseMlpConfig {
    /// `sizes` trained as `dst` says, with Kaiming initialisation and `dst.seed`.
    pub fn new(sizes: Vec<usize>, dst: DstConfig) -> SparseMlpConfig {
        SparseMlpConfig {
            sizes,
            seed: dst.seed,
            dst,
            init: MlpInit::default(),
            correlation: None,
        }
    }
}

/// Parameters of one step of the language model's optimizer: AdamW and global-norm clipping.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LmOptimizer {
    /// AdamW (its `t` counts the optimizer steps taken, update steps excluded).
    pub adam: AdamWStep,
    /// Clip the global gradient norm to this value (`None`: no clipping).
    pub clip: Option<f32>,
}

impl<N: Network> DstModel<N> {
    /// A network trained densely (no scheduler, no topology updates).
    pub fn dense(net: N) -> DstModel<N> {
        DstModel {
            net,
            dst: None,
            parallel: None,
        }
    }

    /// Wraps `net` whose sparse layers `scheduler` manages. Errors, in the layers' terms, when
    /// the counts differ, a layer's `out × in` differs (or is swapped), a layer was built for
    /// another link capacity than the scheduler plans (another density), or the layers carry
    /// different numbers of optimizer-state tensors.
    pub fn from_parts(device: &Device, net: N, mut scheduler: DstScheduler) -> Result<DstModel<N>> {
        let shapes = scheduler.shapes();
        let layers = net.sparse_layers();
        if layers.len() != shapes.len() {
            return Err(Error::Config(format!(
                "the network has {} sparse layers, the scheduler manages {}",
                layers.len(),
                shapes.len()
            )));
        }
        let states = layers.first().map_or(0, |s| s.weight.state.len());
        for (l, s) in layers.iter().enumerate() {
            if s.weight.state.len() != states {
                return Err(cht_dst::Error::Layer {
                    layer: l,
                    reason: format!(
                        "it carries {} optimizer-state tensors, sparse layer 0 carries {states}",
                        s.weight.state.len()
                    ),
                }
                .into());
            }
        }
        let topology = scheduler.topology(device, states);
        let needs_dense_grads = scheduler
            .config()
            .regrowth
            .as_ref()
            .is_some_and(|r| r.scores == RegrowScores::Gradient);
        let dense_grads: Vec<Tensor> = if needs_dense_grads {
            shapes
                .iter()
                .enumerate()
                .map(|(l, &(r, c))| {
                    device.zeros(&format!("dst.layer{l}.dense_grad"), r, c, DType::F32)
                })
                .collect()
        } else {
            Vec::new()
        };
        {
            let states = state_refs(&layers);
            topology.check_layers(&layer_refs(&layers, &states, &dense_grads))?;
        }
        if !net.is_chain() && !scheduler.is_side_by_side() {
            scheduler = scheduler.side_by_side();
        }
        let densities = shapes
            .iter()
            .enumerate()
            .map(|(l, &(r, c))| scheduler.links(l) as f64 / (r * c) as f64)
            .collect();
        Ok(DstModel {
            net,
            dst: Some(Dst {
                scheduler,
                topology,
                dense_grads,
                densities,
                unobserved: false,
            }),
            parallel: None,
        })
    }

    /// The network (read-only: its sparse layers belong to the scheduler).
    pub fn network(&self) -> &N {
        &self.net
    }

    /// Gives the network back, dropping the scheduler.
    pub fn into_network(self) -> N {
        self.net
    }

    /// The scheduler (`None` for dense training).
    pub fn scheduler(&self) -> Option<&DstScheduler> {
        self.dst.as_ref().map(|d| &d.scheduler)
    }

    /// The topology update's device scratch (its historical-weight memories belong in a
    /// checkpoint; see [`Topology::history`]).
    pub fn topology(&self) -> Option<&Topology> {
        self.dst.as_ref().map(|d| &d.topology)
    }

    /// Whether the next [`DstModel::train_step`] is a topology update (its optimizer is skipped).
    pub fn next_step_is_update(&self) -> bool {
        self.dst
            .as_ref()
            .is_some_and(|d| d.scheduler.next_step_is_update())
    }

    /// Trains data-parallel over `comm` from now on: every rank holds this same model (built from
    /// the same configuration and seed) and loads its own share of each global batch; each step
    /// averages the live gradients over the ranks before the optimizer (two submits instead of
    /// one), and each topology update ends with a check that every rank holds the same masks
    /// (see [`crate::data_parallel`]). Checks the masks once now. With one rank nothing changes.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn set_collective(
        &mut self,
        device: &Device,
        comm: std::sync::Arc<dyn cht_dist::Collective>,
    ) -> Result<()> {
        let mut parallel = DataParallel::new(comm);
        let masks = self.masks(device)?;
        parallel.check_masks(&masks, self.step_count())?;
        parallel.set_masks(&masks);
        self.parallel = Some(parallel);
        Ok(())
    }

    /// The data-parallel side, if [`DstModel::set_collective`] was called.
    pub fn data_parallel(&self) -> Option<&DataParallel> {
        self.parallel.as_ref()
    }

    /// Communication of the last data-parallel step (`None` when not data-parallel).
    pub fn comm_stats(&self) -> Option<CommStats> {
        self.parallel.as_ref().map(DataParallel::last_step)
    }

    /// Steps the scheduler has counted (0 when dense).
    #[cfg(not(target_arch = "wasm32"))]
    fn step_count(&self) -> u64 {
        self.dst.as_ref().map_or(0, |d| d.scheduler.step_count())
    }

    /// One training step on the batch loaded into `ws`, one submit. Every `interval` steps (until
    /// the scheduler's `t_end`) it is a topology update instead, as in the paper's loops: no
    /// optimizer step, the sparse layers rewired on the device; its report is returned.
    /// Data-parallel (more than one rank): the backward pass, the gradient all-reduce, then the
    /// optimizer — two submits.
    pub fn train_step(
        &mut self,
        device: &Device,
        ws: &N::Workspace,
        optimizer: N::Optimizer,
    ) -> Result<Option<UpdateReport>> {
        let update = self.dst.as_mut().is_some_and(|d| d.scheduler.step());
        let parallel = self.parallel.as_mut().filter(|p| p.is_distributed());
        if !update {
            match parallel {
                None => self
                    .net
                    .train_step_capturing(device, ws, Some(optimizer), &[])?,
                Some(p) => {
                    self.net.train_step_capturing(device, ws, None, &[])?;
                    p.exchange(device, self.net.arena(), &self.net.gradients())?;
                    self.net.optimizer_step(device, optimizer)?;
                }
            }
            return Ok(None);
        }
        let dst = self.dst.as_mut().expect("an update step has a scheduler");
        // Forward and backward without the optimizer, capturing dense gradients for regrowth.
        let capture: Vec<(usize, &Tensor)> = dst.dense_grads.iter().enumerate().collect();
        self.net.train_step_capturing(device, ws, None, &capture)?;
        if let Some(p) = parallel {
            // The update reads the link gradients (and, for gradient regrowth, the dense ones):
            // every rank must see the global ones.
            p.exchange(device, self.net.arena(), &self.net.gradients())?;
            p.average_dense(device, &dst.dense_grads)?;
        }
        // Masked-dense layers hand their weights and state to the update in CSR order.
        self.net.sync_to_csr(device)?;
        let report = {
            let layers = self.net.sparse_layers();
            let states = state_refs(&layers);
            let refs = layer_refs(&layers, &states, &dst.dense_grads);
            dst.scheduler.update(device, &dst.topology, &refs)?
        };
        // Masked-dense layers rebuild from the new CSR patterns (executions switch on observing).
        self.net.after_topology_update(device, &dst.densities)?;
        dst.unobserved = true;
        if let Some(p) = self.parallel.as_mut() {
            p.invalidate();
        }
        // Patterns change only here: observing each new one (a readback every ΔT steps) makes
        // ITOP exact. The browser cannot block; it observes with `observe_async`.
        #[cfg(not(target_arch = "wasm32"))]
        {
            let masks = self.observe(device)?;
            if let Some(p) = &self.parallel {
                p.check_masks(&masks, report.step)?;
            }
        }
        Ok(Some(report))
    }

    /// Whether a topology update happened since the masks were last observed (in the browser,
    /// until [`DstModel::observe_async`]).
    pub fn has_unobserved_update(&self) -> bool {
        self.dst.as_ref().is_some_and(|d| d.unobserved)
    }

    /// The current masks of the sparse layers (one readback per layer; empty when dense).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn masks(&self, device: &Device) -> Result<Vec<Mask>> {
        if self.dst.is_none() {
            return Ok(Vec::new());
        }
        self.net
            .sparse_layers()
            .iter()
            .map(|s| Ok(device.download_pattern(&s.pattern)?.to_mask()))
            .collect()
    }

    /// [`DstModel::masks`] without blocking (the browser).
    pub async fn masks_async(&self, device: &Device) -> Result<Vec<Mask>> {
        let mut out = Vec::new();
        if self.dst.is_none() {
            return Ok(out);
        }
        for s in self.net.sparse_layers() {
            out.push(device.download_pattern_async(&s.pattern).await?.to_mask());
        }
        Ok(out)
    }

    /// Reads the masks back and records them for ANP and ITOP; switches each sparse layer's
    /// execution by its new density. Natively every topology update already did this.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn observe(&mut self, device: &Device) -> Result<Vec<Mask>> {
        let masks = self.masks(device)?;
        self.record_observation(device, &masks)?;
        Ok(masks)
    }

    /// [`DstModel::observe`] without blocking (the browser).
    pub async fn observe_async(&mut self, device: &Device) -> Result<Vec<Mask>> {
        let masks = self.masks_async(device).await?;
        self.record_observation(device, &masks)?;
        Ok(masks)
    }

    fn record_observation(&mut self, device: &Device, masks: &[Mask]) -> Result<()> {
        let Some(dst) = self.dst.as_mut() else {
            return Ok(());
        };
        dst.scheduler.observe(masks)?;
        dst.densities = masks.iter().map(Mask::density).collect();
        dst.unobserved = false;
        if let Some(p) = self.parallel.as_mut() {
            p.set_masks(masks);
        }
        let policy = self.net.execution_policy();
        self.net.set_execution(device, policy, &dst.densities)
    }

    /// Sets how sparse layers execute (CSR or masked-dense by density, see [`ExecutionPolicy`])
    /// and switches each by its last observed density.
    pub fn set_execution(&mut self, device: &Device, policy: ExecutionPolicy) -> Result<()> {
        let densities = self.densities();
        if let Some(p) = self.parallel.as_mut() {
            p.invalidate();
        }
        self.net.set_execution(device, policy, &densities)
    }

    /// Density of every sparse layer as last observed (empty when dense).
    pub fn densities(&self) -> Vec<f64> {
        self.dst
            .as_ref()
            .map_or_else(Vec::new, |d| d.densities.clone())
    }

    /// Active-neuron percolation rate (spec §4.3) as of the last observation; `None` when dense,
    /// before any observation, and for layers side by side.
    pub fn anp(&self) -> Option<f64> {
        self.scheduler().and_then(DstScheduler::anp)
    }

    /// In-time over-parameterisation rate: the fraction of all possible links ever active
    /// (`None` when dense).
    pub fn itop(&self) -> Option<f64> {
        self.scheduler().map(DstScheduler::itop)
    }

    /// The scheduler's readable summary (an empty string when dense).
    pub fn summary(&self) -> String {
        self.scheduler()
            .map_or_else(String::new, DstScheduler::summary)
    }

    /// Restores the sparse layers' `patterns` and (optionally) the scheduler's state, e.g. from a
    /// checkpoint. Write the weights and optimizer states (CSR order of these patterns) first:
    /// masked-dense layers are rebuilt from them here. Each pattern is checked against its layer.
    pub fn restore(
        &mut self,
        device: &Device,
        patterns: &[CsrPattern],
        scheduler: Option<DstScheduler>,
    ) -> Result<()> {
        let Some(dst) = self.dst.as_mut() else {
            if patterns.is_empty() && scheduler.is_none() {
                return Ok(());
            }
            return Err(Error::Config(
                "a dense model has no sparse patterns or scheduler to restore".into(),
            ));
        };
        let mut layers = self.net.sparse_layers_mut();
        if patterns.len() != layers.len() {
            return Err(Error::Config(format!(
                "{} patterns given for {} sparse layers",
                patterns.len(),
                layers.len()
            )));
        }
        if let Some(s) = &scheduler {
            s.check_resumable(&dst.scheduler)?;
        }
        for (l, (layer, p)) in layers.iter().zip(patterns).enumerate() {
            let bad =
                |reason: String| -> Error { cht_dst::Error::Layer { layer: l, reason }.into() };
            let (rows, cols) = (layer.pattern.rows(), layer.pattern.cols());
            if (p.rows(), p.cols()) != (rows, cols) {
                return Err(bad(format!(
                    "the pattern is {} × {}, the layer {rows} × {cols} (out × in)",
                    p.rows(),
                    p.cols()
                )));
            }
            if p.nnz() > layer.pattern.capacity() {
                return Err(bad(format!(
                    "the pattern has {} links, the layer room for {}",
                    p.nnz(),
                    layer.pattern.capacity()
                )));
            }
        }
        for (layer, p) in layers.iter_mut().zip(patterns) {
            let label = layer
                .weight
                .value
                .label()
                .trim_end_matches(".values")
                .to_owned();
            layer.pattern = device.upload_pattern(&label, p, layer.pattern.capacity())?;
        }
        dst.densities = patterns.iter().map(CsrPattern::density).collect();
        if let Some(s) = scheduler {
            dst.scheduler = s;
        }
        if let Some(p) = self.parallel.as_mut() {
            let masks: Vec<Mask> = patterns.iter().map(CsrPattern::to_mask).collect();
            p.set_masks(&masks);
        }
        dst.unobserved = false;
        self.net.after_topology_update(device, &dst.densities)
    }
}

impl DstModel<Mlp> {
    /// Builds an MLP whose hidden layers start from `config.dst`'s initial topology and weights
    /// (spec §6) and whose classifier is dense; the initial masks count for ITOP. With
    /// [`Method::Fc`] every layer is dense and there is no scheduler.
    pub fn new(device: &Device, config: &SparseMlpConfig) -> Result<SparseMlp> {
        let sizes = &config.sizes;
        if sizes.len() < 3 || sizes.contains(&0) {
            return Err(Error::Config(format!(
                "a sparse MLP needs inputs, at least one hidden layer and classes, all non-zero; \
                 got sizes {sizes:?}"
            )));
        }
        let torch = config.init == MlpInit::Pytorch;
        let seed = config.seed;
        let hidden: Vec<(usize, usize)> = sizes[..sizes.len() - 1]
            .windows(2)
            .map(|w| (w[1], w[0]))
            .collect();
        let n = hidden.len();
        let classifier = |device: &Device| -> Result<Layer> {
            let init = if torch {
                LinearInit::Torch
            } else {
                LinearInit::KaimingZeroBias
            };
            let shape = (sizes[n + 1], sizes[n]);
            let layer = DenseLinear::with_init(device, "classifier", shape, seed, n as u32, init)?;
            Ok(Layer::Dense(layer))
        };
        if config.dst.method == Method::Fc {
            let mut layers = Vec::with_capacity(n + 1);
            for (l, &(out, inp)) in hidden.iter().enumerate() {
                let layer =
                    DenseLinear::new(device, &format!("layer{l}"), out, inp, seed, l as u32)?;
                if torch {
                    layer.init_torch_bias(device, seed, l as u32)?;
                }
                layers.push(Layer::Dense(layer));
            }
            layers.push(classifier(device)?);
            return Ok(DstModel::dense(Mlp::from_layers(device, layers)?));
        }
        if let cht_sparse::init::TopologyInit::Csti { .. } = config.dst.topology_init
            && config.correlation.is_none()
        {
            return Err(Error::Config(
                "the CSTI topology (the paper's MLP recipe for the CH methods) needs the input \
                 features' correlation: set SparseMlpConfig::correlation \
                 (Correlation::from_samples), or choose another topology_init"
                    .into(),
            ));
        }
        let mut scheduler = DstScheduler::new(config.dst.clone(), &hidden)?;
        let (sparse, masks) =
            initial_layers(device, &mut scheduler, config.correlation.as_ref(), &|l| {
                format!("layer{l}")
            })?;
        let mut layers = Vec::with_capacity(n + 1);
        for (l, layer) in sparse.into_iter().enumerate() {
            if torch {
                layer.init_torch_bias(device, seed, l as u32)?;
            }
            layers.push(Layer::Sparse(layer));
        }
        layers.push(classifier(device)?);
        let mut model = DstModel::from_parts(device, Mlp::from_layers(device, layers)?, scheduler)?;
        model.set_initial_densities(&masks);
        Ok(model)
    }
}

impl DstModel<Lm> {
    /// Builds a language model whose 7 projections per block start from `dst`'s initial topology
    /// and weights (spec §6, §7.4), or — with [`Method::Fc`] — are dense, initialised as
    /// `dense_init` says. The layers are side by side (no ANP); the initial masks count for ITOP.
    pub fn new(
        device: &Device,
        config: &LmConfig,
        dst: &DstConfig,
        dense_init: LinearInit,
    ) -> Result<SparseLm> {
        let shapes = config.projection_shapes();
        let label = |l: usize| format!("block{}.{}", l / 7, PROJECTIONS[l % 7]);
        if dst.method == Method::Fc {
            let projections = shapes
                .iter()
                .enumerate()
                .map(|(l, &shape)| {
                    // Layer ids leave one slot per block for its norms (as the official code).
                    let id = (l / 7 * 8 + l % 7) as u32;
                    DenseLinear::with_init(device, &label(l), shape, config.seed, id, dense_init)
                        .map(Layer::Dense)
                })
                .collect::<Result<Vec<_>>>()?;
            return Ok(DstModel::dense(Lm::with_projections(
                device,
                config,
                projections,
            )?));
        }
        let mut scheduler = DstScheduler::new(dst.clone(), &shapes)?.side_by_side();
        let (sparse, masks) = initial_layers(device, &mut scheduler, None, &label)?;
        let projections = sparse.into_iter().map(Layer::Sparse).collect();
        let lm = Lm::with_projections(device, config, projections)?;
        let mut model = DstModel::from_parts(device, lm, scheduler)?;
        model.set_initial_densities(&masks);
        Ok(model)
    }
}

impl<N: Network> DstModel<N> {
    fn set_initial_densities(&mut self, masks: &[Mask]) {
        if let Some(d) = self.dst.as_mut() {
            d.densities = masks.iter().map(Mask::density).collect();
        }
    }
}

/// Names of a block's projections, in [`LmConfig::projection_shapes`] order.
pub const PROJECTIONS: [&str; 7] = ["q", "k", "v", "o", "gate", "up", "down"];

/// The scheduler's initial sparse layers (spec §6: topology, then weights in CSR order, each
/// with room for the scheduler's link capacity), labelled `label(l)`, and their masks, which the
/// scheduler observes (ITOP counts the initial links).
fn initial_layers(
    device: &Device,
    scheduler: &mut DstScheduler,
    correlation: Option<&Correlation>,
    label: &dyn Fn(usize) -> String,
) -> Result<(Vec<SparseLinear>, Vec<Mask>)> {
    let masks = scheduler.initial_masks(correlation)?;
    scheduler.observe(&masks)?;
    let layers = masks
        .iter()
        .enumerate()
        .map(|(l, mask)| {
            let weights = scheduler.initial_weights(l, mask)?;
            SparseLinear::from_parts(
                device,
                &label(l),
                &CsrPattern::from_mask(mask),
                scheduler.capacity(l),
                &weights,
            )
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((layers, masks))
}

fn state_refs<'a>(layers: &[&'a SparseLinear]) -> Vec<Vec<&'a Tensor>> {
    layers
        .iter()
        .map(|s| s.weight.state.iter().collect())
        .collect()
}

/// The one place a sparse layer is handed to the topology update: CSR pattern, weights, every
/// optimizer-state tensor, the link gradient and (gradient regrowth) the dense gradient.
fn layer_refs<'a>(
    layers: &[&'a SparseLinear],
    states: &'a [Vec<&'a Tensor>],
    dense_grads: &'a [Tensor],
) -> Vec<LayerRef<'a>> {
    layers
        .iter()
        .zip(states)
        .enumerate()
        .map(|(l, (s, state))| {
            LayerRef::new(&s.pattern, &s.weight.value, state)
                .with_grad(&s.weight.grad)
                .with_dense_grad(dense_grads.get(l))
        })
        .collect()
}

impl Network for Mlp {
    type Workspace = Workspace;
    type Optimizer = SgdStep;

    fn sparse_layers(&self) -> Vec<&SparseLinear> {
        self.layers.iter().filter_map(Layer::as_sparse).collect()
    }

    fn sparse_layers_mut(&mut self) -> Vec<&mut SparseLinear> {
        self.layers
            .iter_mut()
            .filter_map(Layer::as_sparse_mut)
            .collect()
    }

    fn is_chain(&self) -> bool {
        true
    }

    fn train_step_capturing(
        &self,
        device: &Device,
        ws: &Workspace,
        optimizer: Option<SgdStep>,
        capture: &[(usize, &Tensor)],
    ) -> Result<()> {
        let positions = sparse_positions(self.layers.iter());
        let capture = by_position(&positions, capture)?;
        Mlp::train_step_capturing(self, device, ws, optimizer, &capture)
    }

    fn arena(&self) -> &ParamArena {
        Mlp::arena(self)
    }

    fn gradients(&self) -> Vec<Gradient<'_>> {
        Mlp::gradients(self)
    }

    fn optimizer_step(&self, device: &Device, optimizer: SgdStep) -> Result<()> {
        Mlp::optimizer_step(self, device, optimizer)
    }

    fn sync_to_csr(&self, device: &Device) -> Result<()> {
        Mlp::sync_to_csr(self, device)
    }

    fn after_topology_update(&mut self, device: &Device, densities: &[f64]) -> Result<()> {
        Mlp::after_topology_update(self, device, densities)
    }

    fn set_execution(
        &mut self,
        device: &Device,
        policy: ExecutionPolicy,
        densities: &[f64],
    ) -> Result<()> {
        Mlp::set_execution(self, device, policy, densities)
    }

    fn execution_policy(&self) -> ExecutionPolicy {
        Mlp::execution_policy(self)
    }
}

impl Network for Lm {
    type Workspace = LmWorkspace;
    type Optimizer = LmOptimizer;

    fn sparse_layers(&self) -> Vec<&SparseLinear> {
        self.projections().filter_map(Layer::as_sparse).collect()
    }

    fn sparse_layers_mut(&mut self) -> Vec<&mut SparseLinear> {
        self.projections_mut()
            .filter_map(Layer::as_sparse_mut)
            .collect()
    }

    fn is_chain(&self) -> bool {
        false
    }

    fn train_step_capturing(
        &self,
        device: &Device,
        ws: &LmWorkspace,
        optimizer: Option<LmOptimizer>,
        capture: &[(usize, &Tensor)],
    ) -> Result<()> {
        let positions = sparse_positions(self.projections());
        let capture = by_position(&positions, capture)?;
        let (adam, clip) = optimizer.map_or((None, None), |o| (Some(o.adam), o.clip));
        Lm::train_step_capturing(self, device, ws, adam, clip, &capture)
    }

    fn arena(&self) -> &ParamArena {
        Lm::arena(self)
    }

    fn gradients(&self) -> Vec<Gradient<'_>> {
        Lm::gradients(self)
    }

    fn optimizer_step(&self, device: &Device, optimizer: LmOptimizer) -> Result<()> {
        Lm::optimizer_step(self, device, optimizer.adam, optimizer.clip)
    }

    fn sync_to_csr(&self, device: &Device) -> Result<()> {
        Lm::sync_to_csr(self, device)
    }

    fn after_topology_update(&mut self, device: &Device, densities: &[f64]) -> Result<()> {
        Lm::after_topology_update(self, device, densities)
    }

    fn set_execution(
        &mut self,
        device: &Device,
        policy: ExecutionPolicy,
        densities: &[f64],
    ) -> Result<()> {
        Lm::set_execution(self, device, policy, densities)
    }

    fn execution_policy(&self) -> ExecutionPolicy {
        Lm::execution_policy(self)
    }
}

/// Position among `layers` of every sparse one.
fn sparse_positions<'a>(layers: impl Iterator<Item = &'a Layer>) -> Vec<usize> {
    layers
        .enumerate()
        .filter(|(_, l)| matches!(l, Layer::Sparse(_)))
        .map(|(i, _)| i)
        .collect()
}

/// Maps sparse-layer indices of `capture` to layer positions.
fn by_position<'t>(
    positions: &[usize],
    capture: &[(usize, &'t Tensor)],
) -> Result<Vec<(usize, &'t Tensor)>> {
    capture
        .iter()
        .map(|&(i, t)| {
            positions.get(i).map(|&p| (p, t)).ok_or_else(|| {
                Error::Config(format!(
                    "dense gradient of sparse layer {i} asked, the network has {}",
                    positions.len()
                ))
            })
        })
        .collect()
}
