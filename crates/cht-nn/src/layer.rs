//! Linear layers, sparse or dense: parameters and gradients on the device, forward and backward.
//!
//! A trainable tensor is a [`Param`] (value, gradient, optimizer states of the same shape). Models
//! pack every `Param` into one [`cht_gpu::ParamArena`] ([`pack`]) so that one dispatch updates
//! them all; a layer keeps addressing its own tensors, which become views of the arena.
//!
//! A sparse layer executes in one of two ways ([`Execution`]): as CSR (links only; cheapest at low
//! density) or *masked-dense* (a dense `[out, in]` weight that is zero off the mask, multiplied by
//! the dense GEMM, its gradient masked; cheaper above a crossover density). Its CSR arrays stay
//! the source of truth for topology updates and checkpoints: [`SparseLinear::sync_to_csr`] and
//! [`SparseLinear::sync_from_csr`] move weights and optimizer states between the two.

use cht_gpu::{
    Activation, DType, Device, Epilogue, Gemm, MaskOn, ParamSlot, SparsePattern, Tensor, Transpose,
};
use cht_sparse::CsrPattern;
use cht_sparse::rng::{Counter, RngKey, Stream};

use crate::Result;

/// A trainable tensor with its gradient and optimizer states (all the same shape). States are
/// empty until a model packs its parameters ([`pack`]).
#[derive(Clone, Debug)]
pub struct Param {
    /// The values.
    pub value: Tensor,
    /// The gradient (written by the backward pass).
    pub grad: Tensor,
    /// Optimizer states: `[momentum]` for SGD, `[m, v]` for AdamW.
    pub state: Vec<Tensor>,
}

impl Param {
    /// A parameter holding `data` (`rows × cols`), zero gradient, no states yet.
    pub fn new(
        device: &Device,
        label: &str,
        rows: usize,
        cols: usize,
        data: &[f32],
    ) -> Result<Param> {
        Ok(Param {
            value: device.tensor_f32(label, rows, cols, data)?,
            grad: device.zeros(&format!("{label}.grad"), rows, cols, DType::F32),
            state: Vec::new(),
        })
    }

    /// A zero-filled parameter.
    pub fn zeros(device: &Device, label: &str, rows: usize, cols: usize) -> Param {
        Param {
            value: device.zeros(label, rows, cols, DType::F32),
            grad: device.zeros(&format!("{label}.grad"), rows, cols, DType::F32),
            state: Vec::new(),
        }
    }

    /// Gives the parameter `states` zero-filled optimizer states of its own (outside any arena).
    pub fn with_states(mut self, device: &Device, states: usize) -> Param {
        let (r, c) = (self.value.rows(), self.value.cols());
        self.state = (0..states)
            .map(|s| {
                device.zeros(
                    &format!("{}.state{s}", self.value.label()),
                    r,
                    c,
                    DType::F32,
                )
            })
            .collect();
        self
    }
}

/// How a sparse layer runs its products.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Execution {
    /// CSR: forward, input gradient and weight gradient touch the links only.
    #[default]
    Csr,
    /// Masked-dense: dense weights zero off the mask, dense GEMMs, masked weight gradient.
    MaskedDense,
}

/// Which execution each sparse layer takes, by its density: masked-dense above `crossover`
/// (measured per adapter, see `cht bench kernels` / the runners' calibration), CSR at or below.
///
/// Built by [`ExecutionPolicy::with_crossover`] or [`ExecutionPolicy::csr`] (the default);
/// `#[non_exhaustive]`, so settings can be added without breaking callers.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub struct ExecutionPolicy {
    /// Density above which a sparse layer runs masked-dense (≥ 1 keeps every layer CSR).
    pub crossover: f64,
}

impl Default for ExecutionPolicy {
    /// Always CSR (the behaviour before masked-dense execution existed).
    fn default() -> Self {
        ExecutionPolicy { crossover: 1.0 }
    }
}

impl ExecutionPolicy {
    /// Every sparse layer CSR.
    pub fn csr() -> Self {
        ExecutionPolicy::default()
    }

    /// Masked-dense for layers denser than `crossover`, CSR at or below it (≥ 1 keeps every
    /// layer CSR, 0 runs every sparse layer masked-dense).
    pub fn with_crossover(crossover: f64) -> Self {
        ExecutionPolicy { crossover }
    }

    /// The execution for a layer at `density`.
    pub fn for_density(&self, density: f64) -> Execution {
        if density > self.crossover {
            Execution::MaskedDense
        } else {
            Execution::Csr
        }
    }
}

/// A sparse layer's masked-dense form: `[out, in]` weights (zero off the mask) with gradient and
/// optimizer states, and the u32 mask that keeps the gradient on the links.
#[derive(Clone, Debug)]
pub struct MaskedDense {
    /// Dense weights.
    pub weight: Param,
    /// 0/1 mask of the links (`[out, in]`, u32).
    pub mask: Tensor,
}

/// `y = W·x + b` with `W` sparse: CSR values over a device-resident pattern (with spare capacity
/// for topology updates), optionally executed masked-dense.
#[derive(Debug)]
pub struct SparseLinear {
    /// Links (CSR + CSC).
    pub pattern: SparsePattern,
    /// Weights in CSR order (`[capacity, 1]`), their gradient and optimizer states (CSR order).
    pub weight: Param,
    /// Bias (`[out, 1]`), if the layer has one.
    pub bias: Option<Param>,
    /// The masked-dense form while the layer executes masked-dense.
    pub dense: Option<MaskedDense>,
}

/// `y = W·x + b` with a dense `W` (`[out, in]`).
#[derive(Debug)]
pub struct DenseLinear {
    /// Weights, row-major `[out, in]`.
    pub weight: Param,
    /// Bias (`[out, 1]`), if the layer has one.
    pub bias: Option<Param>,
}

/// One linear layer.
#[derive(Debug)]
pub enum Layer {
    /// Sparse weights.
    Sparse(SparseLinear),
    /// Dense weights.
    Dense(DenseLinear),
}

/// How the parameters that no sparse initialiser sets start: dense weights and every bias.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum LinearInit {
    /// Kaiming-uniform dense weights `U(±sqrt(6/in))` and zero biases.
    #[default]
    KaimingZeroBias,
    /// PyTorch's `nn.Linear` default, which the official code keeps for biases and for its dense
    /// `last_layer` (spec §6.6): weights and biases `U(±1/sqrt(in))`.
    Torch,
    /// `N(0, std²)` weights and zero biases: HF LLaMA's initialisation (`initializer_range`).
    Normal {
        /// Standard deviation.
        std: f32,
    },
}

/// Kaiming-uniform bound `sqrt(6 / fan_in)` for ReLU layers. For sparse layers `fan_in` is the mean
/// number of incoming links per neuron, so the activation scale does not shrink with density.
fn kaiming_bound(fan_in: f64) -> f32 {
    (6.0 / fan_in.max(1.0)).sqrt() as f32
}

fn uniform(n: usize, bound: f32, key: RngKey) -> Vec<f32> {
    let mut rng = Counter::new(key);
    (0..n)
        .map(|_| (2.0 * rng.next_uniform() - 1.0) * bound)
        .collect()
}

fn zero_bias(device: &Device, label: &str, rows: usize) -> Param {
    Param::zeros(device, &format!("{label}.bias"), rows, 1)
}

impl SparseLinear {
    /// A layer over `pattern` with Kaiming-uniform weights (effective fan-in) and zero bias.
    pub fn new(
        device: &Device,
        label: &str,
        pattern: &CsrPattern,
        seed: u32,
        layer: u32,
    ) -> Result<Self> {
        let (rows, nnz) = (pattern.rows(), pattern.nnz());
        let fan_in = nnz as f64 / rows.max(1) as f64;
        let w = uniform(
            nnz,
            kaiming_bound(fan_in),
            RngKey::new(seed, Stream::WeightInit, 0, layer),
        );
        Self::from_parts(device, label, pattern, nnz, &w)
    }

    /// A layer over `pattern` with the given weights (CSR order), room for `capacity` links
    /// (at least the pattern's), and zero bias.
    pub fn from_parts(
        device: &Device,
        label: &str,
        pattern: &CsrPattern,
        capacity: usize,
        weights: &[f32],
    ) -> Result<Self> {
        let capacity = capacity.max(pattern.nnz());
        let rows = pattern.rows();
        let mut w = weights.to_vec();
        w.resize(capacity, 0.0);
        Ok(SparseLinear {
            pattern: device.upload_pattern(label, pattern, capacity)?,
            weight: Param::new(device, &format!("{label}.values"), capacity, 1, &w)?,
            bias: Some(zero_bias(device, label, rows)),
            dense: None,
        })
    }

    /// The same layer without a bias (LLaMA's projections have none).
    pub fn without_bias(mut self) -> Self {
        self.bias = None;
        self
    }

    /// Draws the bias from PyTorch's default `U(±1/sqrt(in))` (the official code's biases).
    pub fn init_torch_bias(&self, device: &Device, seed: u32, layer: u32) -> Result<()> {
        if let Some(b) = &self.bias {
            let v = torch_bias(self.pattern.rows(), self.pattern.cols(), seed, layer);
            device.write_f32(&b.value, &v)?;
        }
        Ok(())
    }

    /// How the layer currently executes.
    pub fn execution(&self) -> Execution {
        if self.dense.is_some() {
            Execution::MaskedDense
        } else {
            Execution::Csr
        }
    }

    /// The weight the optimizer updates: the CSR values, or the masked-dense weights.
    pub fn trainable_weight(&self) -> &Param {
        self.dense.as_ref().map_or(&self.weight, |d| &d.weight)
    }

    /// Switches the execution, moving weights and optimizer states (the model must re-pack its
    /// arena afterwards, since the trainable tensor changes shape). The CSR side keeps its own
    /// optimizer states while masked-dense, for topology updates.
    pub fn set_execution(&mut self, device: &Device, execution: Execution) -> Result<()> {
        if execution == self.execution() {
            return Ok(());
        }
        match execution {
            Execution::MaskedDense => {
                let (out, inp) = (self.pattern.rows(), self.pattern.cols());
                let label = self
                    .weight
                    .value
                    .label()
                    .trim_end_matches(".values")
                    .to_owned();
                let weight = Param::zeros(device, &format!("{label}.dense"), out, inp)
                    .with_states(device, self.weight.state.len());
                let mask = device.zeros(&format!("{label}.mask"), out, inp, DType::U32);
                self.dense = Some(MaskedDense { weight, mask });
                self.sync_from_csr(device)
            }
            Execution::Csr => {
                self.sync_to_csr(device)?;
                self.dense = None;
                Ok(())
            }
        }
    }

    /// Masked-dense only: copies the dense weights, gradient and optimizer states into CSR order
    /// (before a topology update or a checkpoint). A no-op for CSR execution.
    pub fn sync_to_csr(&self, device: &Device) -> Result<()> {
        let Some(d) = &self.dense else {
            return Ok(());
        };
        device.csr_gather(&self.pattern, &d.weight.value, &self.weight.value)?;
        device.csr_gather(&self.pattern, &d.weight.grad, &self.weight.grad)?;
        for (dense, csr) in d.weight.state.iter().zip(&self.weight.state) {
            device.csr_gather(&self.pattern, dense, csr)?;
        }
        Ok(())
    }

    /// Masked-dense only: rebuilds the dense weights, states and mask from the CSR side (after a
    /// topology update or a restore); entries off the pattern become zero. A no-op for CSR.
    pub fn sync_from_csr(&self, device: &Device) -> Result<()> {
        let Some(d) = &self.dense else {
            return Ok(());
        };
        device.csr_scatter(&self.pattern, &self.weight.value, &d.weight.value)?;
        for (dense, csr) in d.weight.state.iter().zip(&self.weight.state) {
            device.csr_scatter(&self.pattern, csr, dense)?;
        }
        device.pattern_mask(&self.pattern, &d.mask)?;
        Ok(())
    }
}

/// PyTorch's `nn.Linear` default bound `1/sqrt(in)` (Kaiming-uniform with a = √5).
fn torch_bound(inp: usize) -> f32 {
    (1.0 / (inp.max(1) as f64).sqrt()) as f32
}

/// PyTorch's default bias of an `out × inp` layer.
fn torch_bias(out: usize, inp: usize, seed: u32, layer: u32) -> Vec<f32> {
    uniform(
        out,
        torch_bound(inp),
        RngKey::new(seed, Stream::WeightInit, 1, layer),
    )
}

impl DenseLinear {
    /// A dense `out × in` layer with Kaiming-uniform weights and zero bias.
    pub fn new(
        device: &Device,
        label: &str,
        out: usize,
        inp: usize,
        seed: u32,
        layer: u32,
    ) -> Result<Self> {
        Self::with_init(
            device,
            label,
            (out, inp),
            seed,
            layer,
            LinearInit::KaimingZeroBias,
        )
    }

    /// A dense `out × in` layer initialised as `init` says.
    pub fn with_init(
        device: &Device,
        label: &str,
        (out, inp): (usize, usize),
        seed: u32,
        layer: u32,
        init: LinearInit,
    ) -> Result<Self> {
        let key = RngKey::new(seed, Stream::WeightInit, 0, layer);
        let w = match init {
            LinearInit::KaimingZeroBias => uniform(out * inp, kaiming_bound(inp as f64), key),
            LinearInit::Torch => uniform(out * inp, torch_bound(inp), key),
            LinearInit::Normal { std } => {
                let mut rng = Counter::new(key);
                (0..out * inp).map(|_| std * rng.normal()).collect()
            }
        };
        let bias = match init {
            LinearInit::KaimingZeroBias | LinearInit::Normal { .. } => vec![0.0; out],
            LinearInit::Torch => torch_bias(out, inp, seed, layer),
        };
        Ok(DenseLinear {
            weight: Param::new(device, &format!("{label}.weight"), out, inp, &w)?,
            bias: Some(Param::new(device, &format!("{label}.bias"), out, 1, &bias)?),
        })
    }

    /// The same layer without a bias.
    pub fn without_bias(mut self) -> Self {
        self.bias = None;
        self
    }

    /// Draws the bias from PyTorch's default `U(±1/sqrt(in))`, keeping the weights.
    pub fn init_torch_bias(&self, device: &Device, seed: u32, layer: u32) -> Result<()> {
        if let Some(b) = &self.bias {
            let v = torch_bias(
                self.weight.value.rows(),
                self.weight.value.cols(),
                seed,
                layer,
            );
            device.write_f32(&b.value, &v)?;
        }
        Ok(())
    }
}

/// What [`Layer::forward_with`] does with its product.
#[derive(Clone, Copy, Debug, Default)]
pub struct LayerOutput {
    /// Fused activation (after the bias).
    pub act: Activation,
    /// Add the result into `y` instead of overwriting it (residual connections).
    pub accumulate: bool,
}

impl Layer {
    /// The sparse layer, if it is one.
    pub fn as_sparse(&self) -> Option<&SparseLinear> {
        match self {
            Layer::Sparse(s) => Some(s),
            Layer::Dense(_) => None,
        }
    }

    /// The sparse layer, mutable, if it is one.
    pub fn as_sparse_mut(&mut self) -> Option<&mut SparseLinear> {
        match self {
            Layer::Sparse(s) => Some(s),
            Layer::Dense(_) => None,
        }
    }

    /// Output neurons.
    pub fn out_features(&self) -> usize {
        match self {
            Layer::Sparse(s) => s.pattern.rows(),
            Layer::Dense(d) => d.weight.value.rows(),
        }
    }

    /// Input neurons.
    pub fn in_features(&self) -> usize {
        match self {
            Layer::Sparse(s) => s.pattern.cols(),
            Layer::Dense(d) => d.weight.value.cols(),
        }
    }

    /// The bias, if any.
    pub fn bias(&self) -> Option<&Param> {
        match self {
            Layer::Sparse(s) => s.bias.as_ref(),
            Layer::Dense(d) => d.bias.as_ref(),
        }
    }

    /// The weight the products use when it is a dense `[out, in]` matrix (dense layers and
    /// masked-dense sparse layers), with the mask of a masked-dense layer.
    pub fn dense_weight(&self) -> Option<(&Param, Option<&Tensor>)> {
        match self {
            Layer::Dense(d) => Some((&d.weight, None)),
            Layer::Sparse(s) => s.dense.as_ref().map(|d| (&d.weight, Some(&d.mask))),
        }
    }

    /// The parameters the optimizer updates, weight first.
    pub fn params(&self) -> Vec<&Param> {
        let (w, b) = match self {
            Layer::Sparse(s) => (s.trainable_weight(), s.bias.as_ref()),
            Layer::Dense(d) => (&d.weight, d.bias.as_ref()),
        };
        std::iter::once(w).chain(b).collect()
    }

    /// [`Layer::params`], mutable (for packing into an arena).
    pub fn params_mut(&mut self) -> Vec<&mut Param> {
        let (w, b) = match self {
            Layer::Sparse(s) => (
                match &mut s.dense {
                    Some(d) => &mut d.weight,
                    None => &mut s.weight,
                },
                s.bias.as_mut(),
            ),
            Layer::Dense(d) => (&mut d.weight, d.bias.as_mut()),
        };
        std::iter::once(w).chain(b).collect()
    }

    /// Records `y = act(W·x + b)`.
    pub fn forward(&self, device: &Device, x: &Tensor, act: Activation, y: &Tensor) -> Result<()> {
        let out = LayerOutput {
            act,
            accumulate: false,
        };
        self.forward_with(device, x, out, y)
    }

    /// Records `y (+)= act(W·x + b)`.
    pub fn forward_with(
        &self,
        device: &Device,
        x: &Tensor,
        out: LayerOutput,
        y: &Tensor,
    ) -> Result<()> {
        let bias = self.bias().map(|b| &b.value);
        match (self, self.dense_weight()) {
            (_, Some((w, _))) => {
                // Masked-dense weights are zero off the mask: the plain product is exact.
                let cfg = Gemm {
                    bias,
                    act: out.act,
                    accumulate: out.accumulate,
                    ..Gemm::new(Transpose::No, Transpose::No)
                };
                device.gemm(&cfg, &w.value, x, y)?;
            }
            (Layer::Sparse(s), None) => {
                let epilogue = Epilogue {
                    bias,
                    act: out.act,
                    accumulate: out.accumulate,
                };
                device.spmm_forward_with(&s.pattern, &s.weight.value, x, &epilogue, y)?;
            }
            (Layer::Dense(_), None) => unreachable!("dense layers always have a dense weight"),
        }
        Ok(())
    }

    /// Records the parameter gradients from `delta` (gradient of the pre-activation, `[out, batch]`)
    /// and the layer input `x`; when `dx` is given, also the input gradient `Wᵀ·delta`.
    pub fn backward(
        &self,
        device: &Device,
        x: &Tensor,
        delta: &Tensor,
        dx: Option<&Tensor>,
    ) -> Result<()> {
        self.backward_with(device, x, delta, dx.map(|t| (t, false)))
    }

    /// [`Layer::backward`] with `dx = Some((dx, accumulate))`: with `accumulate` the input gradient
    /// is added into `dx` (several layers reading one input).
    pub fn backward_with(
        &self,
        device: &Device,
        x: &Tensor,
        delta: &Tensor,
        dx: Option<(&Tensor, bool)>,
    ) -> Result<()> {
        match (self, self.dense_weight()) {
            (_, Some((w, mask))) => {
                let cfg = Gemm {
                    mask: mask.map_or(MaskOn::None, MaskOn::C),
                    ..Gemm::new(Transpose::No, Transpose::Yes)
                };
                device.gemm(&cfg, delta, x, &w.grad)?;
                if let Some((dx, accumulate)) = dx {
                    let cfg = Gemm {
                        accumulate,
                        ..Gemm::new(Transpose::Yes, Transpose::No)
                    };
                    device.gemm(&cfg, &w.value, delta, dx)?;
                }
            }
            (Layer::Sparse(s), None) => {
                let w = &s.weight;
                device.sparse_backward(&s.pattern, &w.value, delta, Some(&w.grad), Some(x), dx)?;
            }
            (Layer::Dense(_), None) => unreachable!("dense layers always have a dense weight"),
        }
        if let Some(b) = self.bias() {
            device.bias_grad(delta, &b.grad)?;
        }
        Ok(())
    }

    /// Links (sparse) or weights (dense).
    pub fn n_weights(&self) -> usize {
        match self {
            Layer::Sparse(s) => s.weight.value.len(),
            Layer::Dense(d) => d.weight.value.len(),
        }
    }
}

/// Packs `params` (in order) into one arena with `states` optimizer states each: every value is
/// copied into its arena view and every `Param` then points at its views (existing states are
/// copied too, missing ones start at zero). Masks of masked-dense layers are left where they are.
pub fn pack(
    device: &Device,
    label: &str,
    params: Vec<&mut Param>,
    states: usize,
) -> Result<cht_gpu::ParamArena> {
    let names: Vec<String> = params.iter().map(|p| p.value.label().to_owned()).collect();
    let shapes: Vec<(&str, usize, usize)> = params
        .iter()
        .zip(&names)
        .map(|(p, n)| (n.as_str(), p.value.rows(), p.value.cols()))
        .collect();
    let (arena, slots) = device.param_arena(label, &shapes, states)?;
    for (p, slot) in params.into_iter().zip(slots) {
        let ParamSlot { value, grad, state } = slot;
        device.copy(&p.value, &value)?;
        for (old, new) in p.state.iter().zip(&state) {
            device.copy(old, new)?;
        }
        *p = Param { value, grad, state };
    }
    Ok(arena)
}

/// Gives `p` storage of its own (a copy), with `states` optimizer states, so that it no longer
/// keeps an arena alive.
pub(crate) fn detach(device: &Device, p: &mut Param, states: usize) -> Result<()> {
    let (r, c) = (p.value.rows(), p.value.cols());
    let label = p.value.label().to_owned();
    let mut fresh = Param::zeros(device, &label, r, c).with_states(device, states);
    device.copy(&p.value, &fresh.value)?;
    device.copy(&p.grad, &fresh.grad)?;
    for (old, new) in p.state.iter().zip(&mut fresh.state) {
        device.copy(old, new)?;
    }
    *p = fresh;
    Ok(())
}

/// Moves the masks of masked-dense layers (in order) into one u32 storage, so that the masks of
/// projections that stack (q, k, v) are back to back like their weights.
pub(crate) fn pack_masks(device: &Device, label: &str, masks: Vec<&mut Tensor>) -> Result<()> {
    if masks.is_empty() {
        return Ok(());
    }
    let names: Vec<String> = masks.iter().map(|m| m.label().to_owned()).collect();
    let shapes: Vec<(&str, usize, usize)> = masks
        .iter()
        .zip(&names)
        .map(|(m, n)| (n.as_str(), m.rows(), m.cols()))
        .collect();
    let (_, views) = device.zeros_stacked(label, &shapes, DType::U32)?;
    for (m, v) in masks.into_iter().zip(views) {
        device.copy(m, &v)?;
        *m = v;
    }
    Ok(())
}

/// Adds `layer`'s trainable parameters (and, if masked-dense, its mask) to the lists a model packs;
/// a masked-dense layer's CSR side gets storage of its own (with `states` optimizer states) so
/// that the old arena can be freed.
pub(crate) fn collect_for_pack<'a>(
    device: &Device,
    layer: &'a mut Layer,
    states: usize,
    params: &mut Vec<&'a mut Param>,
    masks: &mut Vec<&'a mut Tensor>,
) -> Result<()> {
    match layer {
        Layer::Sparse(s) => {
            match &mut s.dense {
                Some(d) => {
                    detach(device, &mut s.weight, states)?;
                    masks.push(&mut d.mask);
                    params.push(&mut d.weight);
                }
                None => params.push(&mut s.weight),
            }
            params.extend(s.bias.as_mut());
        }
        Layer::Dense(d) => {
            params.push(&mut d.weight);
            params.extend(d.bias.as_mut());
        }
    }
    Ok(())
}

/// Adds `layer`'s gradients to `out` in the order [`collect_for_pack`] packs them, with their
/// live entries for a data-parallel exchange; `sparse` counts sparse layers (the scheduler's
/// index of the next one).
pub(crate) fn collect_gradients<'a>(
    layer: &'a Layer,
    sparse: &mut usize,
    out: &mut Vec<crate::data_parallel::Gradient<'a>>,
) {
    use crate::data_parallel::{Gradient, Live};
    let all = |p: &'a Param| Gradient {
        grad: &p.grad,
        live: Live::All,
    };
    match layer {
        Layer::Sparse(s) => {
            out.push(match &s.dense {
                Some(d) => Gradient {
                    grad: &d.weight.grad,
                    live: Live::Masked(*sparse),
                },
                None => Gradient {
                    grad: &s.weight.grad,
                    live: Live::Links(*sparse),
                },
            });
            *sparse += 1;
            out.extend(s.bias.as_ref().map(all));
        }
        Layer::Dense(d) => {
            out.push(all(&d.weight));
            out.extend(d.bias.as_ref().map(all));
        }
    }
}

/// Switches every sparse layer of `layers` to the execution `policy` gives its density
/// (`densities[i]` for the i-th sparse layer). Returns whether any layer switched (then the model
/// must re-pack its arena).
pub(crate) fn apply_policy<'a>(
    device: &Device,
    layers: impl Iterator<Item = &'a mut Layer>,
    policy: ExecutionPolicy,
    densities: &[f64],
) -> Result<bool> {
    let mut sparse: Vec<&mut SparseLinear> = layers
        .filter_map(|l| match l {
            Layer::Sparse(s) => Some(s),
            Layer::Dense(_) => None,
        })
        .collect();
    if densities.len() != sparse.len() {
        return Err(crate::Error::Config(format!(
            "{} densities given for {} sparse layers (one per sparse layer, in order)",
            densities.len(),
            sparse.len()
        )));
    }
    if let Some((i, d)) = densities
        .iter()
        .enumerate()
        .find(|(_, d)| !(0.0..=1.0).contains(*d))
    {
        return Err(crate::Error::Config(format!(
            "sparse layer {i}: density {d} is outside [0, 1] (live links over out × in)"
        )));
    }
    let mut switched = false;
    for (s, &density) in sparse.iter_mut().zip(densities) {
        let want = policy.for_density(density);
        if want != s.execution() {
            s.set_execution(device, want)?;
            switched = true;
        }
    }
    Ok(switched)
}

/// Records [`SparseLinear::sync_to_csr`] for every sparse layer.
pub(crate) fn sync_to_csr<'a>(
    device: &Device,
    layers: impl Iterator<Item = &'a Layer>,
) -> Result<()> {
    for l in layers {
        if let Layer::Sparse(s) = l {
            s.sync_to_csr(device)?;
        }
    }
    Ok(())
}

/// Records [`SparseLinear::sync_from_csr`] for every sparse layer.
pub(crate) fn sync_from_csr<'a>(
    device: &Device,
    layers: impl Iterator<Item = &'a Layer>,
) -> Result<()> {
    for l in layers {
        if let Layer::Sparse(s) = l {
            s.sync_from_csr(device)?;
        }
    }
    Ok(())
}
