//! A decoder-only language model — token embedding, [`Block`]s, final RMSNorm, dense LM head —
//! and its training step: forward, vocabulary cross-entropy, backward, global-norm clipping and
//! AdamW, recorded on the device and sent with one submit (spec §7.4).

use cht_gpu::{AdamWStep, DType, Device, METRICS_LEN, Tensor, TokenIndex};

use crate::layer::{DenseLinear, Layer, LinearInit, SparseLinear};
use crate::transformer::{Block, BlockConfig, BlockWorkspace};
use crate::{Error, Result};

/// Shape and sparsity of a language model.
#[derive(Clone, Debug, PartialEq)]
pub struct LmConfig {
    /// Vocabulary size.
    pub vocab: usize,
    /// Model width.
    pub d_model: usize,
    /// Attention heads.
    pub heads: usize,
    /// Feed-forward width.
    pub ffn: usize,
    /// Decoder blocks.
    pub layers: usize,
    /// Context length (tokens per sequence).
    pub seq: usize,
    /// Sequences per step.
    pub batch: usize,
    /// Density of the blocks' projections (1 = dense).
    pub density: f64,
    /// Seed of the initialisation.
    pub seed: u32,
}

impl LmConfig {
    /// The configuration of block `i`.
    pub fn block(&self, i: usize) -> BlockConfig {
        BlockConfig {
            d_model: self.d_model,
            heads: self.heads,
            ffn: self.ffn,
            seq: self.seq,
            batch: self.batch,
            density: self.density,
            eps: 1e-5,
            seed: self.seed,
            index: i as u32,
        }
    }

    /// `(out, in)` of every projection, block by block (q, k, v, o, gate, up, down): the layer
    /// shapes a DST scheduler manages.
    pub fn projection_shapes(&self) -> Vec<(usize, usize)> {
        (0..self.layers)
            .flat_map(|i| self.block(i).projection_shapes())
            .collect()
    }
}

/// A sparse projection with its AdamW moments `[m, v]` (CSR order, like its values), for the
/// DST scheduler's topology update.
#[derive(Debug)]
pub struct SparseProjection<'a> {
    /// The layer.
    pub layer: &'a SparseLinear,
    /// AdamW first and second moments of its values.
    pub moments: [&'a Tensor; 2],
}

/// One trainable tensor with its gradient and AdamW moments.
#[derive(Debug)]
struct Param<'a> {
    value: &'a Tensor,
    grad: &'a Tensor,
    m: &'a Tensor,
    v: &'a Tensor,
}

/// The model's parameters and optimizer state on a device.
#[derive(Debug)]
pub struct Lm {
    /// Token embedding `[vocab, d]` and its gradient.
    pub embedding: (Tensor, Tensor),
    /// Decoder blocks.
    pub blocks: Vec<Block>,
    /// Final norm gain `[d, 1]` and its gradient.
    pub norm: (Tensor, Tensor),
    /// LM head `[vocab, d]` (dense).
    pub head: Layer,
    /// AdamW moments `(m, v)`, one pair per parameter tensor in [`Lm::params`] order.
    moments: Vec<(Tensor, Tensor)>,
    config: LmConfig,
}

/// Per-step buffers (allocate once).
#[derive(Debug)]
pub struct LmWorkspace {
    blocks: Vec<BlockWorkspace>,
    ids: Tensor,
    offsets: Tensor,
    positions: Tensor,
    targets: Tensor,
    final_h: Tensor,
    final_rstd: Tensor,
    logits: Tensor,
    dlogits: Tensor,
    d_final_h: Tensor,
    sample: Tensor,
    metrics: Tensor,
    slots: Tensor,
    /// `[clip factor, gradient norm before clipping]` of the last step.
    pub clip: Tensor,
}

impl Lm {
    /// Builds the model: N(0, 0.02) embedding (as LLaMA's `initializer_range`), blocks as
    /// [`Block::new`], unit final gain, a head with `nn.Linear`'s default `U(±1/√d)` (so the
    /// first loss is close to `ln vocab`).
    pub fn new(device: &Device, config: &LmConfig) -> Result<Lm> {
        let blocks = (0..config.layers)
            .map(|i| Block::new(device, &config.block(i)))
            .collect::<Result<Vec<_>>>()?;
        Lm::assemble(device, config, blocks)
    }

    /// Builds the model over ready-made projections: 7 per block in the order of
    /// [`LmConfig::projection_shapes`] (e.g. from a DST scheduler's initial masks).
    pub fn with_projections(
        device: &Device,
        config: &LmConfig,
        projections: Vec<Layer>,
    ) -> Result<Lm> {
        if projections.len() != 7 * config.layers {
            return Err(Error::Config(format!(
                "{} projections given, the model has {}",
                projections.len(),
                7 * config.layers
            )));
        }
        let mut it = projections.into_iter();
        let blocks = (0..config.layers)
            .map(|i| {
                Block::from_projections(device, &config.block(i), it.by_ref().take(7).collect())
            })
            .collect::<Result<Vec<_>>>()?;
        Lm::assemble(device, config, blocks)
    }

    fn assemble(device: &Device, config: &LmConfig, blocks: Vec<Block>) -> Result<Lm> {
        let c = config;
        if c.vocab == 0 || c.layers == 0 {
            return Err(Error::Config(format!(
                "a language model needs a vocabulary and layers: {c:?}"
            )));
        }
        let mut rng = cht_sparse::rng::Counter::new(cht_sparse::rng::RngKey::new(
            c.seed,
            cht_sparse::rng::Stream::WeightInit,
            2,
            0,
        ));
        let table: Vec<f32> = (0..c.vocab * c.d_model)
            .map(|_| 0.02 * rng.normal())
            .collect();
        let d = c.d_model;
        let head_layer = (c.layers * 8) as u32;
        let mut lm = Lm {
            embedding: (
                device.tensor_f32("embedding", c.vocab, d, &table)?,
                device.zeros("embedding.grad", c.vocab, d, DType::F32),
            ),
            blocks,
            norm: (
                device.tensor_f32("final_norm", d, 1, &vec![1.0; d])?,
                device.zeros("final_norm.grad", d, 1, DType::F32),
            ),
            head: Layer::Dense(DenseLinear::with_init(
                device,
                "lm_head",
                (c.vocab, d),
                c.seed,
                head_layer,
                LinearInit::Torch,
            )?),
            moments: Vec::new(),
            config: c.clone(),
        };
        let shapes: Vec<(usize, usize)> = lm
            .tensors()
            .iter()
            .map(|(value, _)| (value.rows(), value.cols()))
            .collect();
        lm.moments = shapes
            .iter()
            .map(|&(r, k)| {
                (
                    device.zeros("adam.m", r, k, DType::F32),
                    device.zeros("adam.v", r, k, DType::F32),
                )
            })
            .collect();
        Ok(lm)
    }

    /// The configuration.
    pub fn config(&self) -> &LmConfig {
        &self.config
    }

    /// Every trainable tensor with its gradient and AdamW moments.
    fn params(&self) -> Vec<Param<'_>> {
        self.tensors()
            .into_iter()
            .zip(&self.moments)
            .map(|((value, grad), (m, v))| Param { value, grad, m, v })
            .collect()
    }

    /// The sparse projections in [`LmConfig::projection_shapes`] order (dense ones skipped).
    pub fn sparse_projections(&self) -> Vec<SparseProjection<'_>> {
        // `tensors()` order: embedding, then per block norm1, norm2 and (weights, bias) of each
        // of the 7 projections.
        let mut out = Vec::new();
        for (i, b) in self.blocks.iter().enumerate() {
            for (j, l) in b.attn.iter().chain(&b.ffn).enumerate() {
                if let Layer::Sparse(s) = l {
                    let (m, v) = &self.moments[1 + i * 16 + 2 + 2 * j];
                    out.push(SparseProjection {
                        layer: s,
                        moments: [m, v],
                    });
                }
            }
        }
        out
    }

    /// Every trainable tensor with its AdamW moments `[value, m, v]`, named (`embedding`,
    /// `block0.norm1`, `block0.q.weight`, `block0.q.bias`, …, `final_norm`, `lm_head.weight`,
    /// `lm_head.bias`), for checkpoints. A sparse projection's `weight` is its CSR values.
    pub fn state(&self) -> Vec<(String, [&Tensor; 3])> {
        let mut names = vec!["embedding".to_owned()];
        for i in 0..self.blocks.len() {
            names.push(format!("block{i}.norm1"));
            names.push(format!("block{i}.norm2"));
            for p in ["q", "k", "v", "o", "gate", "up", "down"] {
                names.push(format!("block{i}.{p}.weight"));
                names.push(format!("block{i}.{p}.bias"));
            }
        }
        names.extend(["final_norm", "lm_head.weight", "lm_head.bias"].map(str::to_owned));
        names
            .into_iter()
            .zip(self.params())
            .map(|(n, p)| (n, [p.value, p.m, p.v]))
            .collect()
    }

    /// The projections in [`LmConfig::projection_shapes`] order, mutable (to restore a sparse
    /// layer's pattern from a checkpoint).
    pub fn projections_mut(&mut self) -> impl Iterator<Item = &mut Layer> {
        self.blocks
            .iter_mut()
            .flat_map(|b| b.attn.iter_mut().chain(b.ffn.iter_mut()))
    }

    /// Every trainable tensor with its gradient, in a fixed order.
    fn tensors(&self) -> Vec<(&Tensor, &Tensor)> {
        let mut out: Vec<(&Tensor, &Tensor)> = vec![(&self.embedding.0, &self.embedding.1)];
        fn layer(l: &Layer) -> [(&Tensor, &Tensor); 2] {
            match l {
                Layer::Dense(d) => [(&d.weight, &d.grad), (&d.bias, &d.bias_grad)],
                Layer::Sparse(s) => [(&s.values, &s.grad), (&s.bias, &s.bias_grad)],
            }
        }
        for b in &self.blocks {
            out.push((&b.norm1.0, &b.norm1.1));
            out.push((&b.norm2.0, &b.norm2.1));
            for l in b.attn.iter().chain(&b.ffn) {
                out.extend(layer(l));
            }
        }
        out.push((&self.norm.0, &self.norm.1));
        out.extend(layer(&self.head));
        out
    }

    /// Buffers for one step of `batch · seq` tokens.
    pub fn workspace(&self, device: &Device) -> LmWorkspace {
        let c = &self.config;
        let tokens = c.batch * c.seq;
        let f = |label: &str, rows: usize, cols: usize| device.zeros(label, rows, cols, DType::F32);
        let u = |label: &str, rows: usize| device.zeros(label, rows, 1, DType::U32);
        LmWorkspace {
            blocks: self.blocks.iter().map(|b| b.workspace(device)).collect(),
            ids: u("lm.ids", tokens),
            offsets: u("lm.offsets", c.vocab + 1),
            positions: u("lm.positions", tokens),
            targets: u("lm.targets", tokens),
            final_h: f("lm.final_h", c.d_model, tokens),
            final_rstd: f("lm.final_rstd", tokens, 1),
            logits: f("lm.logits", c.vocab, tokens),
            dlogits: f("lm.dlogits", c.vocab, tokens),
            d_final_h: f("lm.d_final_h", c.d_model, tokens),
            sample: f("lm.sample_loss", 2, tokens),
            metrics: f("lm.metrics", METRICS_LEN, 1),
            slots: f("lm.clip_slots", self.moments.len(), 1),
            clip: f("lm.clip", 2, 1),
        }
    }

    /// Queues the upload of a step's inputs: `ids` and next-token `targets`, `batch · seq` each,
    /// sequence-major (`b·seq + i`). Out-of-vocabulary ids are errors.
    pub fn load(
        &self,
        device: &Device,
        ws: &LmWorkspace,
        ids: &[u32],
        targets: &[u32],
    ) -> Result<()> {
        let vocab = self.config.vocab;
        if ids.len() != self.config.batch * self.config.seq || targets.len() != ids.len() {
            return Err(Error::Config(format!(
                "a step takes {} ids and targets, got {} and {}",
                self.config.batch * self.config.seq,
                ids.len(),
                targets.len()
            )));
        }
        if let Some(&t) = targets.iter().find(|&&t| t as usize >= vocab) {
            return Err(Error::Config(format!(
                "target token {t} is outside the vocabulary of {vocab}"
            )));
        }
        let ix = TokenIndex::new(ids, vocab)?;
        device.write_u32(&ws.ids, &ix.ids)?;
        device.write_u32(&ws.offsets, &ix.offsets)?;
        device.write_u32(&ws.positions, &ix.positions)?;
        device.write_u32(&ws.targets, targets)?;
        Ok(())
    }

    fn record_forward_loss(&self, device: &Device, ws: &LmWorkspace) -> Result<()> {
        device.embedding_gather(&self.embedding.0, &ws.ids, &ws.blocks[0].x)?;
        for (i, (b, bws)) in self.blocks.iter().zip(&ws.blocks).enumerate() {
            if i > 0 {
                device.copy(&ws.blocks[i - 1].y, &bws.x)?;
            }
            b.forward(device, bws)?;
        }
        let last = &ws.blocks[ws.blocks.len() - 1];
        device.rmsnorm_forward(&last.y, &self.norm.0, 1e-5, &ws.final_h, &ws.final_rstd)?;
        self.head
            .forward(device, &ws.final_h, cht_gpu::Activation::None, &ws.logits)?;
        device.softmax_xent(
            &ws.logits,
            &ws.targets,
            &ws.dlogits,
            &ws.sample,
            &ws.metrics,
        )?;
        Ok(())
    }

    /// One training step on the loaded tokens, one submit: forward, cross-entropy (accumulated on
    /// the device), backward, then — unless `adam` is `None`, as on topology-update steps —
    /// clipping to `clip` (if any) and AdamW.
    pub fn train_step(
        &self,
        device: &Device,
        ws: &LmWorkspace,
        adam: Option<AdamWStep>,
        clip: Option<f32>,
    ) -> Result<()> {
        self.train_step_capturing(device, ws, adam, clip, &[])
    }

    /// [`Lm::train_step`] that also writes the dense weight gradients of the listed projections
    /// (index in [`LmConfig::projection_shapes`] order, `[out, in]` tensor) for gradient regrowth.
    pub fn train_step_capturing(
        &self,
        device: &Device,
        ws: &LmWorkspace,
        adam: Option<AdamWStep>,
        clip: Option<f32>,
        capture: &[(usize, &Tensor)],
    ) -> Result<()> {
        self.record_forward_loss(device, ws)?;
        let last = &ws.blocks[ws.blocks.len() - 1];
        self.head
            .backward(device, &ws.final_h, &ws.dlogits, Some(&ws.d_final_h))?;
        device.rmsnorm_backward(
            &last.y,
            &self.norm.0,
            &ws.final_rstd,
            &ws.d_final_h,
            &last.dy,
            &self.norm.1,
        )?;
        for (i, (b, bws)) in self.blocks.iter().zip(&ws.blocks).enumerate().rev() {
            b.backward(device, bws)?;
            let mut dense: [Option<&Tensor>; 7] = [None; 7];
            for &(j, t) in capture.iter().filter(|(j, _)| j / 7 == i) {
                dense[j % 7] = Some(t);
            }
            if dense.iter().any(Option::is_some) {
                b.capture_dense_grads(device, bws, &dense)?;
            }
            if i > 0 {
                device.copy(&bws.dx, &ws.blocks[i - 1].dy)?;
            }
        }
        device.embedding_grad(
            &ws.blocks[0].dx,
            &ws.offsets,
            &ws.positions,
            &self.embedding.1,
        )?;
        if let Some(adam) = adam {
            let params = self.params();
            if let Some(max_norm) = clip {
                let grads: Vec<&Tensor> = params.iter().map(|p| p.grad).collect();
                device.clip_grad_norm(&grads, max_norm, &ws.slots, &ws.clip)?;
            }
            for p in &params {
                device.adamw(adam, p.grad, p.value, p.m, p.v)?;
            }
        }
        device.submit()?;
        Ok(())
    }

    /// Reads the logits of the last forward, `[vocab, batch·seq]` vocabulary-major (token `t`'s
    /// logits are column `t`): for sampling text (native only).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn read_logits(&self, device: &Device, ws: &LmWorkspace) -> Result<Vec<f32>> {
        Ok(device.read_f32(&ws.logits)?)
    }

    /// Forward and loss only (validation), one submit.
    pub fn eval_step(&self, device: &Device, ws: &LmWorkspace) -> Result<()> {
        self.record_forward_loss(device, ws)?;
        device.submit()?;
        Ok(())
    }

    /// Reads and resets the mean cross-entropy and next-token accuracy accumulated since the last
    /// call (native only; the loop's only readback).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn take_metrics(&self, device: &Device, ws: &LmWorkspace) -> Result<crate::Metrics> {
        let m = device.read_f32(&ws.metrics)?;
        device.clear(&ws.metrics)?;
        Ok(crate::Metrics::from_sums(&m))
    }
}

/// The LLM learning-rate schedule of the paper's code (spec §7.4, "inoam" / `cosine_restarts`):
/// linear warm-up, cosine decay to 10 % of the base rate, and the *iterative warm-up* that
/// restarts the rate from 0 after every topology update.
///
/// `lr(t) = base · g(t) · ℓ(t)` with `g(t) = t/warmup` for `t < warmup`, else
/// `0.1 + 0.9·½(1 + cos(π(t − warmup)/(total − warmup)))`; `ℓ(t) = (t mod ΔT)/iw` while
/// `t mod ΔT < iw`, else 1 (no restart when `iw = 0`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LrSchedule {
    /// Peak learning rate.
    pub base: f64,
    /// Warm-up steps.
    pub warmup: u64,
    /// Total training steps.
    pub total: u64,
    /// Steps between topology updates (ΔT).
    pub update_interval: u64,
    /// Iterative warm-up steps after each update (`iw`; 0 disables it).
    pub iterative_warmup: u64,
}

impl LrSchedule {
    /// The learning rate of step `t` (0-based).
    pub fn lr(&self, t: u64) -> f64 {
        let g = if t < self.warmup {
            t as f64 / self.warmup as f64
        } else {
            let span = self.total.saturating_sub(self.warmup).max(1) as f64;
            let progress = ((t - self.warmup) as f64 / span).min(1.0);
            0.1 + 0.9 * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
        };
        let local = if self.iterative_warmup > 0 && self.update_interval > 0 {
            let since = t % self.update_interval;
            if since < self.iterative_warmup {
                since as f64 / self.iterative_warmup as f64
            } else {
                1.0
            }
        } else {
            1.0
        };
        self.base * g * local
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lr_schedule_warms_up_decays_and_restarts_after_updates() {
        let s = LrSchedule {
            base: 1e-3,
            warmup: 100,
            total: 1100,
            update_interval: 100,
            iterative_warmup: 20,
        };
        let plain = LrSchedule {
            iterative_warmup: 0,
            ..s
        };
        assert_eq!(plain.lr(0), 0.0);
        assert!((plain.lr(50) - 5e-4).abs() < 1e-12);
        assert!((plain.lr(100) - 1e-3).abs() < 1e-12, "peak after warm-up");
        assert!(
            (plain.lr(600) - 1e-3 * 0.55).abs() < 1e-12,
            "half-way down the cosine"
        );
        assert!((plain.lr(1100) - 1e-4).abs() < 1e-12, "floor at 10 %");
        assert!((plain.lr(5000) - 1e-4).abs() < 1e-12);
        // The step after an update (t mod ΔT = 0) starts from 0 and rewarms over 20 steps.
        assert_eq!(s.lr(600), 0.0);
        assert!((s.lr(610) - plain.lr(610) * 0.5).abs() < 1e-12);
        assert_eq!(s.lr(625), plain.lr(625));
    }
}
