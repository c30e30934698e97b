//! One LLaMA-style decoder block — RMSNorm → causal multi-head attention with RoPE → residual,
//! RMSNorm → SwiGLU feed-forward → residual — with its seven projections (q, k, v, o, gate, up,
//! down) sparse or dense, forward and backward recorded on the device (spec §7.4).
//!
//! Activations are feature-major `[d_model, batch·seq]` like the rest of cht. The backward pass
//! walks the forward in reverse; residual branches meet by accumulating into the residual stream
//! (`y = x + W·a` is a copy and one accumulating product), never by a separate add pass.
//!
//! Projections that read the same input run as one product where they can: q, k and v (and gate
//! and up) when all of them execute as dense matrices (dense, or sparse above the masked-dense
//! crossover), have no bias, and sit back to back in the model's parameter arena — then the
//! forward, the weight gradient and the input gradient (which sums the branches itself) are one
//! GEMM each. Otherwise each projection runs alone and the input gradients accumulate.

use cht_gpu::{
    Activation, AttentionShape, DType, Device, Gemm, MaskOn, RopeDirection, RopeTables, Tensor,
    Transpose,
};
use cht_sparse::CsrPattern;
use cht_sparse::rng::{RngKey, Stream};

use crate::layer::{DenseLinear, Layer, LayerOutput, Param, SparseLinear};
use crate::{Error, Result};

/// Shape and sparsity of a block.
///
/// [`BlockConfig::default`] is block 0 of [`LmConfig::default`](crate::LmConfig); usually a
/// block's configuration comes from [`LmConfig::block`](crate::LmConfig::block).
/// `#[non_exhaustive]`: fields can be added without breaking callers.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct BlockConfig {
    /// Model width.
    pub d_model: usize,
    /// Attention heads (`d_model` must be a multiple).
    pub heads: usize,
    /// Feed-forward width (gate/up outputs).
    pub ffn: usize,
    /// Tokens per sequence.
    pub seq: usize,
    /// Sequences per batch.
    pub batch: usize,
    /// Density of the seven projections (Erdős–Rényi); 1 makes them dense.
    pub density: f64,
    /// RMSNorm ε.
    pub eps: f32,
    /// Seed of the initialisation.
    pub seed: u32,
    /// Index of this block (keys its random streams).
    pub index: u32,
    /// Whether the seven projections have biases (LLaMA's have none).
    pub bias: bool,
}

impl Default for BlockConfig {
    /// Block 0 of the default language model ([`LmConfig::default`](crate::LmConfig)): width
    /// 128, 4 heads, SwiGLU width 352, 16 sequences of 128 tokens, dense, RMSNorm ε 1e-5, seed 0,
    /// no biases.
    fn default() -> Self {
        crate::LmConfig::default().block(0)
    }
}

impl BlockConfig {
    /// `(out, in)` of the projections q, k, v, o, gate, up, down.
    pub fn projection_shapes(&self) -> [(usize, usize); 7] {
        let (d, f) = (self.d_model, self.ffn);
        [(d, d), (d, d), (d, d), (d, d), (f, d), (f, d), (d, f)]
    }

    fn validate(&self) -> Result<()> {
        let c = self;
        let bad = c.heads == 0 || !c.d_model.is_multiple_of(c.heads) || c.ffn == 0;
        if bad || c.seq == 0 || c.batch == 0 {
            return Err(Error::Config(format!(
                "a block needs d_model divisible by heads and positive sizes, got {c:?}"
            )));
        }
        Ok(())
    }
}

/// A block's parameters on a device.
#[derive(Debug)]
pub struct Block {
    /// Attention-norm gain `[d, 1]`.
    pub norm1: Param,
    /// Feed-forward-norm gain `[d, 1]`.
    pub norm2: Param,
    /// q, k, v, o projections.
    pub attn: [Layer; 4],
    /// gate, up, down projections.
    pub ffn: [Layer; 3],
    cos: Tensor,
    sin: Tensor,
    shape: AttentionShape,
    eps: f32,
}

/// Saved activations and gradient buffers of a block for one batch shape (allocate once).
///
/// q, k, v (and their rotated forms and gradients) are views of one storage each, as are gate
/// and up, so that stacked projections and a single RoPE pass can treat them as one tensor.
#[derive(Debug)]
pub struct BlockWorkspace {
    /// Block input `[d, tokens]`.
    pub x: Tensor,
    /// Block output.
    pub y: Tensor,
    /// Gradient w.r.t. the output (set by the caller before [`Block::backward`]).
    pub dy: Tensor,
    /// Gradient w.r.t. the input (written by [`Block::backward`]).
    pub dx: Tensor,
    // forward intermediates
    h1: Tensor,
    rstd1: Tensor,
    qkv: Stacked,
    qk_rope: Stacked,
    att: Tensor,
    lse: Tensor,
    x1: Tensor,
    h2: Tensor,
    rstd2: Tensor,
    gate_up: Stacked,
    act: Tensor,
    // backward scratch
    d_att_scratch: Tensor,
    d_a: Tensor,
    d_gate_up: Stacked,
    d_h2: Tensor,
    d_x1: Tensor,
    d_att: Tensor,
    d_qk_rope: Stacked,
    d_qkv: Stacked,
    d_h1: Tensor,
}

/// Equally shaped activations in one storage: the parts, and all of them as one tensor when the
/// parts are back to back.
#[derive(Debug)]
struct Stacked {
    parts: Vec<Tensor>,
    whole: Option<Tensor>,
}

impl Stacked {
    fn new(device: &Device, label: &str, names: &[&str], rows: usize, tokens: usize) -> Stacked {
        let labels: Vec<String> = names.iter().map(|n| format!("{label}.{n}")).collect();
        let shapes: Vec<(&str, usize, usize)> =
            labels.iter().map(|l| (l.as_str(), rows, tokens)).collect();
        let (_, parts) = device
            .zeros_stacked(label, &shapes, DType::F32)
            .expect("aligned parts always fit their storage");
        let refs: Vec<&Tensor> = parts.iter().collect();
        let whole = device.stacked_rows(label, &refs);
        Stacked { parts, whole }
    }
}

/// The stacked weights of projections that read one input, when they can run as one GEMM.
struct StackedWeights {
    value: Tensor,
    grad: Tensor,
    mask: Option<Tensor>,
}

/// q, k, v or gate, up as one `[Σ out, in]` product: all dense-executing, no bias, weights,
/// gradients (and masks, if masked-dense) back to back.
fn stacked_weights(device: &Device, layers: &[Layer]) -> Option<StackedWeights> {
    let mut ws = Vec::with_capacity(layers.len());
    let mut masks = Vec::with_capacity(layers.len());
    for l in layers {
        let (w, mask) = l.dense_weight()?;
        if l.bias().is_some() {
            return None;
        }
        ws.push(w);
        masks.push(mask);
    }
    let values: Vec<&Tensor> = ws.iter().map(|w| &w.value).collect();
    let grads: Vec<&Tensor> = ws.iter().map(|w| &w.grad).collect();
    let mask = match masks.iter().flatten().count() {
        0 => None,
        n if n == masks.len() => {
            let m: Vec<&Tensor> = masks.iter().flatten().copied().collect();
            Some(device.stacked_rows("stacked.mask", &m)?)
        }
        _ => return None,
    };
    Some(StackedWeights {
        value: device.stacked_rows("stacked.weight", &values)?,
        grad: device.stacked_rows("stacked.grad", &grads)?,
        mask,
    })
}

impl Block {
    /// Builds the block: unit norm gains, projections Kaiming-initialised (sparse at
    /// `config.density`), RoPE tables for `config.seq` positions (base 10000).
    pub fn new(device: &Device, config: &BlockConfig) -> Result<Block> {
        let c = config;
        c.validate()?;
        let names = ["q", "k", "v", "o", "gate", "up", "down"];
        let mut layers = Vec::with_capacity(7);
        for (k, (&(out, inp), name)) in c.projection_shapes().iter().zip(names).enumerate() {
            let label = format!("block{}.{name}", c.index);
            let layer = c.index * 8 + k as u32;
            let mut l = if c.density >= 1.0 {
                Layer::Dense(DenseLinear::new(device, &label, out, inp, c.seed, layer)?)
            } else {
                let key = RngKey::new(c.seed, Stream::TopologyInit, 0, layer);
                let pattern = CsrPattern::random(out, inp, c.density, key)?;
                Layer::Sparse(SparseLinear::new(device, &label, &pattern, c.seed, layer)?)
            };
            if !c.bias {
                l = without_bias(l);
            }
            layers.push(l);
        }
        Block::from_projections(device, config, layers)
    }

    /// A block over ready-made projections in the order q, k, v, o, gate, up, down (e.g. built
    /// from a DST scheduler's initial masks, with its capacities), with unit norm gains. Their
    /// biases are dropped when `config.bias` is false.
    pub fn from_projections(
        device: &Device,
        config: &BlockConfig,
        projections: Vec<Layer>,
    ) -> Result<Block> {
        let c = config;
        c.validate()?;
        let shapes = c.projection_shapes();
        if projections.len() != 7
            || projections
                .iter()
                .zip(&shapes)
                .any(|(l, &(out, inp))| l.out_features() != out || l.in_features() != inp)
        {
            return Err(Error::Config(format!(
                "a block needs 7 projections shaped {shapes:?} (out, in)"
            )));
        }
        let head_dim = c.d_model / c.heads;
        let tables = RopeTables::new(head_dim, c.seq, 10_000.0)?;
        let d = c.d_model;
        let gain = |name: &str| -> Result<Param> {
            Param::new(
                device,
                &format!("block{}.{name}", c.index),
                d,
                1,
                &vec![1.0; d],
            )
        };
        let mut it = projections
            .into_iter()
            .map(|l| if c.bias { l } else { without_bias(l) });
        let mut next = || it.next().expect("seven projections, checked above");
        Ok(Block {
            norm1: gain("norm1")?,
            norm2: gain("norm2")?,
            attn: [next(), next(), next(), next()],
            ffn: [next(), next(), next()],
            cos: device.tensor_f32("rope.cos", c.seq, head_dim / 2, &tables.cos)?,
            sin: device.tensor_f32("rope.sin", c.seq, head_dim / 2, &tables.sin)?,
            shape: AttentionShape {
                head_dim,
                heads: c.heads,
                seq: c.seq,
                batch: c.batch,
            },
            eps: c.eps,
        })
    }

    /// The projections q, k, v, o, gate, up, down.
    pub fn projections(&self) -> impl Iterator<Item = &Layer> {
        self.attn.iter().chain(&self.ffn)
    }

    /// Buffers for this block's batch shape.
    pub fn workspace(&self, device: &Device) -> BlockWorkspace {
        self.workspace_after(device, None)
    }

    /// Buffers for this block's batch shape when it follows the block owning `previous`: its
    /// input is that block's output and its input gradient that block's output gradient (the
    /// same tensors, so the residual stream passes between blocks without copies).
    pub fn workspace_after(
        &self,
        device: &Device,
        previous: Option<&BlockWorkspace>,
    ) -> BlockWorkspace {
        let d = self.shape.head_dim * self.shape.heads;
        let ffn = self.ffn[0].out_features();
        let tokens = self.shape.seq * self.shape.batch;
        let nq = self.shape.queries();
        let t = |label: &str, rows: usize| device.zeros(label, rows, tokens, DType::F32);
        let v = |label: &str, n: usize| device.zeros(label, n, 1, DType::F32);
        let stack = |label: &str, names: &[&str], rows: usize| {
            Stacked::new(device, label, names, rows, tokens)
        };
        BlockWorkspace {
            x: previous.map_or_else(|| t("block.x", d), |p| p.y.clone()),
            y: t("block.y", d),
            dy: t("block.dy", d),
            dx: previous.map_or_else(|| t("block.dx", d), |p| p.dy.clone()),
            h1: t("block.h1", d),
            rstd1: v("block.rstd1", tokens),
            qkv: stack("block.qkv", &["q", "k", "v"], d),
            qk_rope: stack("block.qk_rope", &["q", "k"], d),
            att: t("block.attention", d),
            lse: v("block.lse", nq),
            x1: t("block.x1", d),
            h2: t("block.h2", d),
            rstd2: v("block.rstd2", tokens),
            gate_up: stack("block.gate_up", &["gate", "up"], ffn),
            act: t("block.swiglu", ffn),
            d_att_scratch: v("block.d_dot", nq),
            d_a: t("block.d_swiglu", ffn),
            d_gate_up: stack("block.d_gate_up", &["gate", "up"], ffn),
            d_h2: t("block.d_h2", d),
            d_x1: t("block.d_x1", d),
            d_att: t("block.d_attention", d),
            d_qk_rope: stack("block.d_qk_rope", &["q", "k"], d),
            d_qkv: stack("block.d_qkv", &["q", "k", "v"], d),
            d_h1: t("block.d_h1", d),
        }
    }

    /// Records `ws.y = block(ws.x)`, keeping what the backward pass needs.
    pub fn forward(&self, device: &Device, ws: &BlockWorkspace) -> Result<()> {
        let [.., wo] = &self.attn;
        let [.., wd] = &self.ffn;
        let hd = self.shape.head_dim;
        // Attention branch: x1 = x + Wo·attention(rope(Wq·h1), rope(Wk·h1), Wv·h1).
        device.rmsnorm_forward(&ws.x, &self.norm1.value, self.eps, &ws.h1, &ws.rstd1)?;
        project(device, &self.attn[..3], &ws.h1, &ws.qkv)?;
        let (q, k, v) = (&ws.qkv.parts[0], &ws.qkv.parts[1], &ws.qkv.parts[2]);
        let (qr, kr) = (&ws.qk_rope.parts[0], &ws.qk_rope.parts[1]);
        let fwd = RopeDirection::Forward;
        match (qk_of(&ws.qkv), &ws.qk_rope.whole) {
            (Some(qk), Some(qkr)) => device.rope(&qk, &self.cos, &self.sin, hd, fwd, qkr)?,
            _ => {
                device.rope(q, &self.cos, &self.sin, hd, fwd, qr)?;
                device.rope(k, &self.cos, &self.sin, hd, fwd, kr)?;
            }
        }
        device.attention_forward(self.shape, qr, kr, v, &ws.att, &ws.lse)?;
        device.copy(&ws.x, &ws.x1)?;
        wo.forward_with(device, &ws.att, ADD, &ws.x1)?;
        // Feed-forward branch: y = x1 + Wd·swiglu(Wg·h2, Wu·h2).
        device.rmsnorm_forward(&ws.x1, &self.norm2.value, self.eps, &ws.h2, &ws.rstd2)?;
        project(device, &self.ffn[..2], &ws.h2, &ws.gate_up)?;
        let (gate, up) = (&ws.gate_up.parts[0], &ws.gate_up.parts[1]);
        device.swiglu_forward(gate, up, &ws.act)?;
        device.copy(&ws.x1, &ws.y)?;
        wd.forward_with(device, &ws.act, ADD, &ws.y)?;
        Ok(())
    }

    /// Records the parameter gradients and `ws.dx` from `ws.dy` (after [`Block::forward`]).
    pub fn backward(&self, device: &Device, ws: &BlockWorkspace) -> Result<()> {
        let [.., wo] = &self.attn;
        let [.., wd] = &self.ffn;
        // Feed-forward branch.
        wd.backward_with(device, &ws.act, &ws.dy, Some((&ws.d_a, false)))?;
        let (gate, up) = (&ws.gate_up.parts[0], &ws.gate_up.parts[1]);
        let (d_gate, d_up) = (&ws.d_gate_up.parts[0], &ws.d_gate_up.parts[1]);
        device.swiglu_backward(gate, up, &ws.d_a, d_gate, d_up)?;
        project_backward(device, &self.ffn[..2], &ws.h2, &ws.d_gate_up, &ws.d_h2)?;
        // d_x1 = dy + the norm's input gradient.
        device.copy(&ws.dy, &ws.d_x1)?;
        let n2 = &self.norm2;
        device.rmsnorm_backward_accumulate(
            &ws.x1, &n2.value, &ws.rstd2, &ws.d_h2, &ws.d_x1, &n2.grad,
        )?;
        // Attention branch.
        wo.backward_with(device, &ws.att, &ws.d_x1, Some((&ws.d_att, false)))?;
        let (qr, kr) = (&ws.qk_rope.parts[0], &ws.qk_rope.parts[1]);
        let v = &ws.qkv.parts[2];
        let (d_qr, d_kr) = (&ws.d_qk_rope.parts[0], &ws.d_qk_rope.parts[1]);
        let [d_q, d_k, d_v] = [0, 1, 2].map(|i| &ws.d_qkv.parts[i]);
        device.attention_backward(
            self.shape,
            (qr, kr, v),
            (&ws.att, &ws.lse, &ws.d_att),
            &ws.d_att_scratch,
            d_qr,
            d_kr,
            d_v,
        )?;
        let hd = self.shape.head_dim;
        let back = RopeDirection::Backward;
        match (&ws.d_qk_rope.whole, qk_of(&ws.d_qkv)) {
            (Some(dqkr), Some(dqk)) => device.rope(dqkr, &self.cos, &self.sin, hd, back, &dqk)?,
            _ => {
                device.rope(d_qr, &self.cos, &self.sin, hd, back, d_q)?;
                device.rope(d_kr, &self.cos, &self.sin, hd, back, d_k)?;
            }
        }
        project_backward(device, &self.attn[..3], &ws.h1, &ws.d_qkv, &ws.d_h1)?;
        // dx = d_x1 + the norm's input gradient.
        device.copy(&ws.d_x1, &ws.dx)?;
        let n1 = &self.norm1;
        device
            .rmsnorm_backward_accumulate(&ws.x, &n1.value, &ws.rstd1, &ws.d_h1, &ws.dx, &n1.grad)?;
        Ok(())
    }

    /// After [`Block::backward`]: writes the *dense* weight gradient `δ·xᵀ` of projection `j`
    /// (q, k, v, o, gate, up, down) into `dense[j]` where given (`[out, in]`; RigL/GraNet regrowth
    /// scores on update steps — a dense product, so only then).
    pub fn capture_dense_grads(
        &self,
        device: &Device,
        ws: &BlockWorkspace,
        dense: &[Option<&Tensor>; 7],
    ) -> Result<()> {
        let io: [(&Tensor, &Tensor); 7] = [
            (&ws.h1, &ws.d_qkv.parts[0]),
            (&ws.h1, &ws.d_qkv.parts[1]),
            (&ws.h1, &ws.d_qkv.parts[2]),
            (&ws.att, &ws.d_x1),
            (&ws.h2, &ws.d_gate_up.parts[0]),
            (&ws.h2, &ws.d_gate_up.parts[1]),
            (&ws.act, &ws.dy),
        ];
        let nt = Gemm::new(Transpose::No, Transpose::Yes);
        for ((x, delta), out) in io.iter().zip(dense) {
            if let Some(out) = out {
                device.gemm(&nt, delta, x, out)?;
            }
        }
        Ok(())
    }
}

/// Add the product into the output (the residual stream).
const ADD: LayerOutput = LayerOutput {
    act: Activation::None,
    accumulate: true,
};

fn without_bias(l: Layer) -> Layer {
    match l {
        Layer::Sparse(s) => Layer::Sparse(s.without_bias()),
        Layer::Dense(d) => Layer::Dense(d.without_bias()),
    }
}

/// The q and k parts of a stacked q, k, v as one tensor.
fn qk_of(qkv: &Stacked) -> Option<Tensor> {
    let whole = qkv.whole.as_ref()?;
    let rows = qkv.parts[0].rows() + qkv.parts[1].rows();
    whole.rows_view("block.qk", 0, rows).ok()
}

/// `outs[i] = layers[i]·x`: one GEMM when the layers stack, else one product each.
fn project(device: &Device, layers: &[Layer], x: &Tensor, outs: &Stacked) -> Result<()> {
    if let (Some(w), Some(out)) = (stacked_weights(device, layers), &outs.whole) {
        device.gemm(&Gemm::new(Transpose::No, Transpose::No), &w.value, x, out)?;
        return Ok(());
    }
    for (l, y) in layers.iter().zip(&outs.parts) {
        l.forward(device, x, Activation::None, y)?;
    }
    Ok(())
}

/// Weight gradients of `layers` from their output gradients `deltas`, and `dx = Σ_i Wᵢᵀ·δᵢ`:
/// two GEMMs when the layers stack (the input-gradient GEMM sums the branches over its inner
/// dimension), else each layer's backward accumulating into `dx`.
fn project_backward(
    device: &Device,
    layers: &[Layer],
    x: &Tensor,
    deltas: &Stacked,
    dx: &Tensor,
) -> Result<()> {
    if let (Some(w), Some(delta)) = (stacked_weights(device, layers), &deltas.whole) {
        let dw = Gemm {
            mask: w.mask.as_ref().map_or(MaskOn::None, MaskOn::C),
            ..Gemm::new(Transpose::No, Transpose::Yes)
        };
        device.gemm(&dw, delta, x, &w.grad)?;
        device.gemm(
            &Gemm::new(Transpose::Yes, Transpose::No),
            &w.value,
            delta,
            dx,
        )?;
        return Ok(());
    }
    for (i, (l, delta)) in layers.iter().zip(&deltas.parts).enumerate() {
        l.backward_with(device, x, delta, Some((dx, i > 0)))?;
    }
    Ok(())
}
