//! A decoder-only language model — token embedding, [`Block`]s, final RMSNorm, dense LM head —
//! and its training step: forward, vocabulary cross-entropy, backward, global-norm clipping and
//! AdamW, recorded on the device and sent with one submit (spec §7.4).

use cht_gpu::{AdamWStep, DType, Device, METRICS_LEN, ParamArena, Tensor, TokenIndex};

use crate::layer::{
    DenseLinear, ExecutionPolicy, Layer, LinearInit, Param, SparseLinear, apply_policy,
    collect_for_pack, pack, pack_masks,
};
use crate::transformer::{Block, BlockConfig, BlockWorkspace};
use crate::{Error, Result};

/// Shape and sparsity of a language model.
///
/// [`LmConfig::default`] is the small LLaMA-style model of `configs/lm-*.toml` on a byte
/// vocabulary; change the fields you need (`#[non_exhaustive]`: fields can be added without
/// breaking callers).
///
/// ```rust
/// use cht_nn::LmConfig;
///
/// let mut config = LmConfig::default();
/// config.vocab = 65;
/// config.density = 0.3;
/// assert_eq!(config.block(1).d_model, config.d_model);
/// ```
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
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
    /// Biases on the projections and the LM head (LLaMA has none; older cht runs had them).
    pub bias: bool,
}

impl Default for LmConfig {
    /// The small model of `configs/lm-*.toml` that trains on a CPU, on bytes: vocabulary 256,
    /// width 128, 4 heads, SwiGLU width 352, 4 blocks, 16 sequences of 128 tokens, dense
    /// (density 1), seed 0, no biases (as LLaMA).
    fn default() -> Self {
        LmConfig {
            vocab: 256,
            d_model: 128,
            heads: 4,
            ffn: 352,
            layers: 4,
            seq: 128,
            batch: 16,
            density: 1.0,
            seed: 0,
            bias: false,
        }
    }
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
            bias: self.bias,
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

/// The model's parameters and optimizer state on a device.
///
/// Every trainable tensor (with its gradient and AdamW moments) lives in one [`ParamArena`], so
/// the optimizer step with global-norm clipping is two dispatches. Sparse projections execute as
/// CSR or masked-dense by their density ([`ExecutionPolicy`]); topology updates and checkpoints
/// see CSR either way ([`Lm::sync_to_csr`], [`Lm::sync_from_csr`]).
#[derive(Debug)]
pub struct Lm {
    /// Token embedding `[vocab, d]`.
    pub embedding: Param,
    /// Decoder blocks.
    pub blocks: Vec<Block>,
    /// Final norm gain `[d, 1]`.
    pub norm: Param,
    /// LM head `[vocab, d]` (dense).
    pub head: Layer,
    arena: ParamArena,
    policy: ExecutionPolicy,
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
        let mut head = DenseLinear::with_init(
            device,
            "lm_head",
            (c.vocab, d),
            c.seed,
            head_layer,
            LinearInit::Torch,
        )?;
        if !c.bias {
            head = head.without_bias();
        }
        let mut lm = Lm {
            embedding: Param::new(device, "embedding", c.vocab, d, &table)?,
            blocks,
            norm: Param::new(device, "final_norm", d, 1, &vec![1.0; d])?,
            head: Layer::Dense(head),
            arena: device.param_arena("lm.params", &[], 2)?.0,
            policy: ExecutionPolicy::csr(),
            config: c.clone(),
        };
        lm.repack(device)?;
        Ok(lm)
    }

    /// Moves every trainable tensor into a fresh arena (after construction and whenever a
    /// projection switches between CSR and masked-dense execution).
    fn repack(&mut self, device: &Device) -> Result<()> {
        let mut params: Vec<&mut Param> = vec![&mut self.embedding];
        let mut masks: Vec<&mut Tensor> = Vec::new();
        for b in &mut self.blocks {
            params.push(&mut b.norm1);
            params.push(&mut b.norm2);
            for l in b.attn.iter_mut().chain(b.ffn.iter_mut()) {
                collect_for_pack(device, l, 2, &mut params, &mut masks)?;
            }
        }
        params.push(&mut self.norm);
        collect_for_pack(device, &mut self.head, 2, &mut params, &mut masks)?;
        self.arena = pack(device, "lm.params", params, 2)?;
        pack_masks(device, "lm.masks", masks)?;
        Ok(())
    }

    /// The configuration.
    pub fn config(&self) -> &LmConfig {
        &self.config
    }

    /// The parameter arena (for its `clip` tensor: `[factor, norm]` of the last clipped step).
    pub fn arena(&self) -> &ParamArena {
        &self.arena
    }

    /// Every parameter's gradient (arena order) with its live entries, for a data-parallel
    /// exchange.
    pub fn gradients(&self) -> Vec<crate::Gradient<'_>> {
        fn all(p: &Param) -> crate::Gradient<'_> {
            crate::Gradient {
                grad: &p.grad,
                live: crate::Live::All,
            }
        }
        let mut out = vec![all(&self.embedding)];
        let mut sparse = 0;
        for b in &self.blocks {
            out.push(all(&b.norm1));
            out.push(all(&b.norm2));
            for l in b.attn.iter().chain(b.ffn.iter()) {
                crate::layer::collect_gradients(l, &mut sparse, &mut out);
            }
        }
        out.push(all(&self.norm));
        crate::layer::collect_gradients(&self.head, &mut sparse, &mut out);
        out
    }

    /// Clipping and AdamW on the gradients as they are (after a data-parallel exchange), one
    /// submit.
    pub fn optimizer_step(
        &self,
        device: &Device,
        adam: AdamWStep,
        clip: Option<f32>,
    ) -> Result<()> {
        device.adamw_arena(&self.arena, adam, clip)?;
        device.submit()?;
        Ok(())
    }

    /// The sparse projections in [`LmConfig::projection_shapes`] order (dense ones skipped).
    /// Masked-dense ones must be synced ([`Lm::sync_to_csr`]) before their CSR side is read.
    pub fn sparse_projections(&self) -> Vec<SparseProjection<'_>> {
        self.projections()
            .filter_map(|l| match l {
                Layer::Sparse(s) => Some(SparseProjection {
                    layer: s,
                    moments: [&s.weight.state[0], &s.weight.state[1]],
                }),
                Layer::Dense(_) => None,
            })
            .collect()
    }

    /// The projections in [`LmConfig::projection_shapes`] order.
    pub fn projections(&self) -> impl Iterator<Item = &Layer> {
        self.blocks.iter().flat_map(Block::projections)
    }

    /// The projections in [`LmConfig::projection_shapes`] order, mutable (to restore a sparse
    /// layer's pattern from a checkpoint).
    pub fn projections_mut(&mut self) -> impl Iterator<Item = &mut Layer> {
        self.blocks
            .iter_mut()
            .flat_map(|b| b.attn.iter_mut().chain(b.ffn.iter_mut()))
    }

    /// Records the copy of every masked-dense projection's weights, moments and gradient into CSR
    /// order: before a topology update or reading [`Lm::state`].
    pub fn sync_to_csr(&self, device: &Device) -> Result<()> {
        crate::layer::sync_to_csr(device, self.projections())
    }

    /// Records the rebuild of every masked-dense projection from its CSR side (after a topology
    /// update or writing [`Lm::state`]).
    pub fn sync_from_csr(&self, device: &Device) -> Result<()> {
        crate::layer::sync_from_csr(device, self.projections())
    }

    /// Sets how sparse projections execute and switches each to CSR or masked-dense by its
    /// density (`densities[i]` for the i-th sparse projection: live links / (out · in)), moving
    /// weights and moments; re-packs the arena when anything switched. Call it once the patterns
    /// are final and synced (construction, restore, after a topology update and
    /// [`Lm::sync_from_csr`]).
    pub fn set_execution(
        &mut self,
        device: &Device,
        policy: ExecutionPolicy,
        densities: &[f64],
    ) -> Result<()> {
        self.policy = policy;
        if apply_policy(device, self.projections_mut(), policy, densities)? {
            self.repack(device)?;
        }
        Ok(())
    }

    /// After a topology update (recorded on the device) with the new density of every sparse
    /// projection: rebuilds masked-dense projections from their CSR side and switches executions where the
    /// density crossed the policy's crossover.
    pub fn after_topology_update(&mut self, device: &Device, densities: &[f64]) -> Result<()> {
        self.sync_from_csr(device)?;
        let policy = self.policy;
        self.set_execution(device, policy, densities)
    }

    /// Sparse projections currently running masked-dense.
    pub fn masked_dense_count(&self) -> usize {
        self.projections()
            .filter(|l| matches!(l, Layer::Sparse(s) if s.dense.is_some()))
            .count()
    }

    /// The execution policy in force.
    pub fn execution_policy(&self) -> ExecutionPolicy {
        self.policy
    }

    /// Every trainable tensor with its AdamW moments `[value, m, v]`, named (`embedding`,
    /// `block0.norm1`, `block0.q.weight`, `block0.q.bias` (with biases), …, `final_norm`,
    /// `lm_head.weight`, `lm_head.bias`), for checkpoints. A sparse projection's `weight` is its
    /// CSR values (sync masked-dense ones first: [`Lm::sync_to_csr`]).
    pub fn state(&self) -> Vec<(String, [&Tensor; 3])> {
        fn entry(name: String, p: &Param) -> (String, [&Tensor; 3]) {
            (name, [&p.value, &p.state[0], &p.state[1]])
        }
        let mut out = vec![entry("embedding".into(), &self.embedding)];
        let names = ["q", "k", "v", "o", "gate", "up", "down"];
        for (i, b) in self.blocks.iter().enumerate() {
            out.push(entry(format!("block{i}.norm1"), &b.norm1));
            out.push(entry(format!("block{i}.norm2"), &b.norm2));
            for (l, n) in b.projections().zip(names) {
                let w = match l {
                    Layer::Sparse(s) => &s.weight,
                    Layer::Dense(d) => &d.weight,
                };
                out.push(entry(format!("block{i}.{n}.weight"), w));
                if let Some(bias) = l.bias() {
                    out.push(entry(format!("block{i}.{n}.bias"), bias));
                }
            }
        }
        out.push(entry("final_norm".into(), &self.norm));
        out.push(entry("lm_head.weight".into(), self.head.params()[0]));
        if let Some(bias) = self.head.bias() {
            out.push(entry("lm_head.bias".into(), bias));
        }
        out
    }

    /// Buffers for one step of `batch · seq` tokens.
    pub fn workspace(&self, device: &Device) -> LmWorkspace {
        let c = &self.config;
        let tokens = c.batch * c.seq;
        let f = |label: &str, rows: usize, cols: usize| device.zeros(label, rows, cols, DType::F32);
        let u = |label: &str, rows: usize| device.zeros(label, rows, 1, DType::U32);
        LmWorkspace {
            blocks: self.blocks.iter().fold(Vec::new(), |mut chain, b| {
                let ws = b.workspace_after(device, chain.last());
                chain.push(ws);
                chain
            }),
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
        device.embedding_gather(&self.embedding.value, &ws.ids, &ws.blocks[0].x)?;
        // Block i's input is block i−1's output tensor (see `Block::workspace_after`).
        for (b, bws) in self.blocks.iter().zip(&ws.blocks) {
            b.forward(device, bws)?;
        }
        let last = &ws.blocks[ws.blocks.len() - 1];
        device.rmsnorm_forward(&last.y, &self.norm.value, 1e-5, &ws.final_h, &ws.final_rstd)?;
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
    /// clipping to `clip` (if any) and AdamW, fused over every parameter.
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
            &self.norm.value,
            &ws.final_rstd,
            &ws.d_final_h,
            &last.dy,
            &self.norm.grad,
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
        }
        device.embedding_grad(
            &ws.blocks[0].dx,
            &ws.offsets,
            &ws.positions,
            &self.embedding.grad,
        )?;
        if let Some(adam) = adam {
            device.adamw_arena(&self.arena, adam, clip)?;
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
