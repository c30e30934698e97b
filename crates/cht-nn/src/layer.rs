//! Sparse and dense linear layers: parameters, gradients and optimizer state on the device.

use cht_gpu::{Activation, DType, Device, Gemm, SgdStep, SparsePattern, Tensor, Transpose};
use cht_sparse::CsrPattern;
use cht_sparse::rng::{Counter, RngKey, Stream};

use crate::Result;

/// `y = W·x + b` with `W` sparse: CSR values over a device-resident pattern; gradient and momentum
/// live beside the values in the same CSR order.
#[derive(Debug)]
pub struct SparseLinear {
    /// Links (CSR + CSC).
    pub pattern: SparsePattern,
    /// Weights in CSR order (`[capacity, 1]`).
    pub values: Tensor,
    /// Gradient of the weights, written by the backward pass.
    pub grad: Tensor,
    /// Momentum of the weights, in the same order.
    pub velocity: Tensor,
    /// Bias (`[out, 1]`).
    pub bias: Tensor,
    /// Gradient of the bias.
    pub bias_grad: Tensor,
    /// Momentum of the bias.
    pub bias_velocity: Tensor,
}

/// `y = W·x + b` with a dense `W` (`[out, in]`).
#[derive(Debug)]
pub struct DenseLinear {
    /// Weights, row-major `[out, in]`.
    pub weight: Tensor,
    /// Gradient of the weights, written by the backward pass.
    pub grad: Tensor,
    /// Momentum of the weights, in the same order.
    pub velocity: Tensor,
    /// Bias (`[out, 1]`).
    pub bias: Tensor,
    /// Gradient of the bias.
    pub bias_grad: Tensor,
    /// Momentum of the bias.
    pub bias_velocity: Tensor,
}

/// One linear layer of an MLP.
#[derive(Debug)]
pub enum Layer {
    /// CSR weights.
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

fn zeros(device: &Device, label: &str, rows: usize, cols: usize) -> Tensor {
    device.zeros(label, rows, cols, DType::F32)
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
        let dev_pattern = device.upload_pattern(label, pattern, nnz)?;
        Ok(SparseLinear {
            pattern: dev_pattern,
            values: device.tensor_f32(&format!("{label}.values"), nnz, 1, &w)?,
            grad: zeros(device, &format!("{label}.values.grad"), nnz, 1),
            velocity: zeros(device, &format!("{label}.values.momentum"), nnz, 1),
            bias: zeros(device, &format!("{label}.bias"), rows, 1),
            bias_grad: zeros(device, &format!("{label}.bias.grad"), rows, 1),
            bias_velocity: zeros(device, &format!("{label}.bias.momentum"), rows, 1),
        })
    }
}

impl SparseLinear {
    /// A layer over `pattern` with the given weights (CSR order), room for `capacity` links
    /// (at least the pattern's), and zero bias and optimizer state.
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
            values: device.tensor_f32(&format!("{label}.values"), capacity, 1, &w)?,
            grad: zeros(device, &format!("{label}.values.grad"), capacity, 1),
            velocity: zeros(device, &format!("{label}.values.momentum"), capacity, 1),
            bias: zeros(device, &format!("{label}.bias"), rows, 1),
            bias_grad: zeros(device, &format!("{label}.bias.grad"), rows, 1),
            bias_velocity: zeros(device, &format!("{label}.bias.momentum"), rows, 1),
        })
    }
}

impl SparseLinear {
    /// Draws the bias from PyTorch's default `U(±1/sqrt(in))` (the official code's biases).
    pub fn init_torch_bias(&self, device: &Device, seed: u32, layer: u32) -> Result<()> {
        let b = torch_bias(self.pattern.rows(), self.pattern.cols(), seed, layer);
        device.write_f32(&self.bias, &b)?;
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
                let mut rng = cht_sparse::rng::Counter::new(key);
                (0..out * inp).map(|_| std * rng.normal()).collect()
            }
        };
        let bias = match init {
            LinearInit::KaimingZeroBias | LinearInit::Normal { .. } => vec![0.0; out],
            LinearInit::Torch => torch_bias(out, inp, seed, layer),
        };
        Ok(DenseLinear {
            weight: device.tensor_f32(&format!("{label}.weight"), out, inp, &w)?,
            grad: zeros(device, &format!("{label}.weight.grad"), out, inp),
            velocity: zeros(device, &format!("{label}.weight.momentum"), out, inp),
            bias: device.tensor_f32(&format!("{label}.bias"), out, 1, &bias)?,
            bias_grad: zeros(device, &format!("{label}.bias.grad"), out, 1),
            bias_velocity: zeros(device, &format!("{label}.bias.momentum"), out, 1),
        })
    }
}

impl DenseLinear {
    /// Draws the bias from PyTorch's default `U(±1/sqrt(in))`, keeping the weights.
    pub fn init_torch_bias(&self, device: &Device, seed: u32, layer: u32) -> Result<()> {
        let b = torch_bias(self.weight.rows(), self.weight.cols(), seed, layer);
        device.write_f32(&self.bias, &b)?;
        Ok(())
    }
}

impl Layer {
    /// Output neurons.
    pub fn out_features(&self) -> usize {
        match self {
            Layer::Sparse(s) => s.pattern.rows(),
            Layer::Dense(d) => d.weight.rows(),
        }
    }

    /// Input neurons.
    pub fn in_features(&self) -> usize {
        match self {
            Layer::Sparse(s) => s.pattern.cols(),
            Layer::Dense(d) => d.weight.cols(),
        }
    }

    /// Records `y = act(W·x + b)`.
    pub fn forward(&self, device: &Device, x: &Tensor, act: Activation, y: &Tensor) -> Result<()> {
        match self {
            Layer::Sparse(s) => {
                device.spmm_forward(&s.pattern, &s.values, x, Some(&s.bias), act, y)?
            }
            Layer::Dense(d) => {
                let cfg = Gemm {
                    bias: Some(&d.bias),
                    act,
                    ..Gemm::new(Transpose::No, Transpose::No)
                };
                device.gemm(&cfg, &d.weight, x, y)?;
            }
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
        match self {
            Layer::Sparse(s) => {
                device.sddmm_weight_grad(&s.pattern, delta, x, &s.grad)?;
                device.bias_grad(delta, &s.bias_grad)?;
                if let Some(dx) = dx {
                    device.spmm_backward_input(&s.pattern, &s.values, delta, dx)?;
                }
            }
            Layer::Dense(d) => {
                device.gemm(&Gemm::new(Transpose::No, Transpose::Yes), delta, x, &d.grad)?;
                device.bias_grad(delta, &d.bias_grad)?;
                if let Some(dx) = dx {
                    device.gemm(
                        &Gemm::new(Transpose::Yes, Transpose::No),
                        &d.weight,
                        delta,
                        dx,
                    )?;
                }
            }
        }
        Ok(())
    }

    /// Records one SGD step on every parameter of the layer.
    pub fn sgd(&self, device: &Device, step: SgdStep) -> Result<()> {
        let (w, g, v, b, bg, bv) = match self {
            Layer::Sparse(s) => (
                &s.values,
                &s.grad,
                &s.velocity,
                &s.bias,
                &s.bias_grad,
                &s.bias_velocity,
            ),
            Layer::Dense(d) => (
                &d.weight,
                &d.grad,
                &d.velocity,
                &d.bias,
                &d.bias_grad,
                &d.bias_velocity,
            ),
        };
        device.sgd_momentum(step, g, w, v)?;
        device.sgd_momentum(step, bg, b, bv)?;
        Ok(())
    }

    /// Links (sparse) or weights (dense).
    pub fn n_weights(&self) -> usize {
        match self {
            Layer::Sparse(s) => s.values.len(),
            Layer::Dense(d) => d.weight.len(),
        }
    }
}
