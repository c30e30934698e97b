//! One LLaMA-style decoder block — RMSNorm → causal multi-head attention with RoPE → residual,
//! RMSNorm → SwiGLU feed-forward → residual — with its seven projections (q, k, v, o, gate, up,
//! down) sparse or dense, forward and backward recorded on the device (spec §7.4).
//!
//! Activations are feature-major `[d_model, batch·seq]` like the rest of cht. The backward pass
//! walks the forward in reverse; residual branches meet through `add_assign`.

use cht_gpu::{Activation, AttentionShape, DType, Device, RopeDirection, RopeTables, Tensor};
use cht_sparse::CsrPattern;
use cht_sparse::rng::{RngKey, Stream};

use crate::layer::{DenseLinear, Layer, SparseLinear};
use crate::{Error, Result};

/// Shape and sparsity of a block.
#[derive(Clone, Debug, PartialEq)]
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
    /// Attention-norm gain `[d, 1]` and its gradient.
    pub norm1: (Tensor, Tensor),
    /// Feed-forward-norm gain `[d, 1]` and its gradient.
    pub norm2: (Tensor, Tensor),
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
    q: Tensor,
    k: Tensor,
    v: Tensor,
    qr: Tensor,
    kr: Tensor,
    att: Tensor,
    lse: Tensor,
    ao: Tensor,
    x1: Tensor,
    h2: Tensor,
    rstd2: Tensor,
    gate: Tensor,
    up: Tensor,
    act: Tensor,
    down: Tensor,
    // backward scratch
    d_att_scratch: Tensor,
    d_a: Tensor,
    d_gate: Tensor,
    d_up: Tensor,
    d_h2: Tensor,
    d_h2b: Tensor,
    d_x1: Tensor,
    d_x1n: Tensor,
    d_att: Tensor,
    d_qr: Tensor,
    d_kr: Tensor,
    d_q: Tensor,
    d_k: Tensor,
    d_v: Tensor,
    d_h1: Tensor,
    d_h1b: Tensor,
    d_xn: Tensor,
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
            layers.push(if c.density >= 1.0 {
                Layer::Dense(DenseLinear::new(device, &label, out, inp, c.seed, layer)?)
            } else {
                let key = RngKey::new(c.seed, Stream::TopologyInit, 0, layer);
                let pattern = CsrPattern::random(out, inp, c.density, key)?;
                Layer::Sparse(SparseLinear::new(device, &label, &pattern, c.seed, layer)?)
            });
        }
        Block::from_projections(device, config, layers)
    }

    /// A block over ready-made projections in the order q, k, v, o, gate, up, down (e.g. built
    /// from a DST scheduler's initial masks, with its capacities), with unit norm gains.
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
        let gain = |name: &str| -> Result<(Tensor, Tensor)> {
            Ok((
                device.tensor_f32(&format!("block{}.{name}", c.index), d, 1, &vec![1.0; d])?,
                device.zeros(&format!("block{}.{name}.grad", c.index), d, 1, DType::F32),
            ))
        };
        let mut it = projections.into_iter();
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

    /// Buffers for this block's batch shape.
    pub fn workspace(&self, device: &Device) -> BlockWorkspace {
        let d = self.shape.head_dim * self.shape.heads;
        let ffn = self.ffn[0].out_features();
        let tokens = self.shape.seq * self.shape.batch;
        let nq = self.shape.queries();
        let t = |label: &str, rows: usize| device.zeros(label, rows, tokens, DType::F32);
        let v = |label: &str, n: usize| device.zeros(label, n, 1, DType::F32);
        BlockWorkspace {
            x: t("block.x", d),
            y: t("block.y", d),
            dy: t("block.dy", d),
            dx: t("block.dx", d),
            h1: t("block.h1", d),
            rstd1: v("block.rstd1", tokens),
            q: t("block.q", d),
            k: t("block.k", d),
            v: t("block.v", d),
            qr: t("block.q_rope", d),
            kr: t("block.k_rope", d),
            att: t("block.attention", d),
            lse: v("block.lse", nq),
            ao: t("block.attn_out", d),
            x1: t("block.x1", d),
            h2: t("block.h2", d),
            rstd2: v("block.rstd2", tokens),
            gate: t("block.gate", ffn),
            up: t("block.up", ffn),
            act: t("block.swiglu", ffn),
            down: t("block.down", d),
            d_att_scratch: v("block.d_dot", nq),
            d_a: t("block.d_swiglu", ffn),
            d_gate: t("block.d_gate", ffn),
            d_up: t("block.d_up", ffn),
            d_h2: t("block.d_h2", d),
            d_h2b: t("block.d_h2b", d),
            d_x1: t("block.d_x1", d),
            d_x1n: t("block.d_x1_norm", d),
            d_att: t("block.d_attention", d),
            d_qr: t("block.d_q_rope", d),
            d_kr: t("block.d_k_rope", d),
            d_q: t("block.d_q", d),
            d_k: t("block.d_k", d),
            d_v: t("block.d_v", d),
            d_h1: t("block.d_h1", d),
            d_h1b: t("block.d_h1b", d),
            d_xn: t("block.d_x_norm", d),
        }
    }

    /// Records `ws.y = block(ws.x)`, keeping what the backward pass needs.
    pub fn forward(&self, device: &Device, ws: &BlockWorkspace) -> Result<()> {
        let [wq, wk, wv, wo] = &self.attn;
        let [wg, wu, wd] = &self.ffn;
        let none = Activation::None;
        device.rmsnorm_forward(&ws.x, &self.norm1.0, self.eps, &ws.h1, &ws.rstd1)?;
        wq.forward(device, &ws.h1, none, &ws.q)?;
        wk.forward(device, &ws.h1, none, &ws.k)?;
        wv.forward(device, &ws.h1, none, &ws.v)?;
        let hd = self.shape.head_dim;
        device.rope(
            &ws.q,
            &self.cos,
            &self.sin,
            hd,
            RopeDirection::Forward,
            &ws.qr,
        )?;
        device.rope(
            &ws.k,
            &self.cos,
            &self.sin,
            hd,
            RopeDirection::Forward,
            &ws.kr,
        )?;
        device.attention_forward(self.shape, &ws.qr, &ws.kr, &ws.v, &ws.att, &ws.lse)?;
        wo.forward(device, &ws.att, none, &ws.ao)?;
        device.copy(&ws.x, &ws.x1)?;
        device.add_assign(&ws.ao, &ws.x1)?;
        device.rmsnorm_forward(&ws.x1, &self.norm2.0, self.eps, &ws.h2, &ws.rstd2)?;
        wg.forward(device, &ws.h2, none, &ws.gate)?;
        wu.forward(device, &ws.h2, none, &ws.up)?;
        device.swiglu_forward(&ws.gate, &ws.up, &ws.act)?;
        wd.forward(device, &ws.act, none, &ws.down)?;
        device.copy(&ws.x1, &ws.y)?;
        device.add_assign(&ws.down, &ws.y)?;
        Ok(())
    }

    /// Records the parameter gradients and `ws.dx` from `ws.dy` (after [`Block::forward`]).
    pub fn backward(&self, device: &Device, ws: &BlockWorkspace) -> Result<()> {
        let [wq, wk, wv, wo] = &self.attn;
        let [wg, wu, wd] = &self.ffn;
        // Feed-forward branch.
        wd.backward(device, &ws.act, &ws.dy, Some(&ws.d_a))?;
        device.swiglu_backward(&ws.gate, &ws.up, &ws.d_a, &ws.d_gate, &ws.d_up)?;
        wg.backward(device, &ws.h2, &ws.d_gate, Some(&ws.d_h2))?;
        wu.backward(device, &ws.h2, &ws.d_up, Some(&ws.d_h2b))?;
        device.add_assign(&ws.d_h2b, &ws.d_h2)?;
        let (g2, dg2) = &self.norm2;
        device.rmsnorm_backward(&ws.x1, g2, &ws.rstd2, &ws.d_h2, &ws.d_x1n, dg2)?;
        device.copy(&ws.dy, &ws.d_x1)?;
        device.add_assign(&ws.d_x1n, &ws.d_x1)?;
        // Attention branch.
        wo.backward(device, &ws.att, &ws.d_x1, Some(&ws.d_att))?;
        device.attention_backward(
            self.shape,
            (&ws.qr, &ws.kr, &ws.v),
            (&ws.att, &ws.lse, &ws.d_att),
            &ws.d_att_scratch,
            &ws.d_qr,
            &ws.d_kr,
            &ws.d_v,
        )?;
        let hd = self.shape.head_dim;
        let back = RopeDirection::Backward;
        device.rope(&ws.d_qr, &self.cos, &self.sin, hd, back, &ws.d_q)?;
        device.rope(&ws.d_kr, &self.cos, &self.sin, hd, back, &ws.d_k)?;
        wq.backward(device, &ws.h1, &ws.d_q, Some(&ws.d_h1))?;
        wk.backward(device, &ws.h1, &ws.d_k, Some(&ws.d_h1b))?;
        device.add_assign(&ws.d_h1b, &ws.d_h1)?;
        wv.backward(device, &ws.h1, &ws.d_v, Some(&ws.d_h1b))?;
        device.add_assign(&ws.d_h1b, &ws.d_h1)?;
        let (g1, dg1) = &self.norm1;
        device.rmsnorm_backward(&ws.x, g1, &ws.rstd1, &ws.d_h1, &ws.d_xn, dg1)?;
        device.copy(&ws.d_x1, &ws.dx)?;
        device.add_assign(&ws.d_xn, &ws.dx)?;
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
            (&ws.h1, &ws.d_q),
            (&ws.h1, &ws.d_k),
            (&ws.h1, &ws.d_v),
            (&ws.att, &ws.d_x1),
            (&ws.h2, &ws.d_gate),
            (&ws.h2, &ws.d_up),
            (&ws.act, &ws.dy),
        ];
        let nt = cht_gpu::Gemm::new(cht_gpu::Transpose::No, cht_gpu::Transpose::Yes);
        for ((x, delta), out) in io.iter().zip(dense) {
            if let Some(out) = out {
                device.gemm(&nt, delta, x, out)?;
            }
        }
        Ok(())
    }
}
