//! Data-parallel training of a [`crate::DstModel`]: every rank holds the whole model, trains on
//! its share of each global batch, and the ranks average their gradients once per step before the
//! same optimizer step everywhere (PyTorch DDP's scheme, on the host, since wgpu has no
//! collectives).
//!
//! Read [`DataParallel::exchange`]: one readback of each arena chunk's gradients, the *live*
//! entries gathered into one flat buffer — a sparse layer's links only (every rank holds the same
//! masks), dense parameters whole — one [`Collective::all_reduce_sum`] of that buffer, the
//! average scattered back and written once. The optimizer then runs as its own submit. Topology
//! updates need no communication beyond that (and the dense gradients of gradient regrowth):
//! every rank computes them from the same weights and the counter-based RNG, and afterwards
//! [`DataParallel::check_masks`] compares a fingerprint of the new masks so a divergence fails
//! loudly on every rank.

use std::sync::Arc;
use std::time::Instant;

use cht_dist::Collective;
use cht_gpu::{Device, ParamArena, Tensor};
use cht_sparse::Mask;

use crate::{Error, Result};

/// Which entries of a gradient are live, i.e. exchanged between ranks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Live {
    /// Every entry (dense parameters, biases, norms, embeddings).
    All,
    /// The links of sparse layer `i` (scheduler order), in CSR order: the first `nnz` entries.
    Links(usize),
    /// The links of sparse layer `i` executing masked-dense: the mask's entries of the dense
    /// `[out, in]` gradient.
    Masked(usize),
}

/// One trainable parameter's gradient, as a view of its arena chunk, and which entries are live.
#[derive(Clone, Copy, Debug)]
pub struct Gradient<'a> {
    /// The gradient view.
    pub grad: &'a Tensor,
    /// Its live entries.
    pub live: Live,
}

/// Communication of data-parallel steps.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CommStats {
    /// Values all-reduced (`f32`; each rank sends and receives about `2·(N−1)/N` times this).
    pub values: u64,
    /// Seconds in the all-reduce calls (waiting for the slowest rank included).
    pub all_reduce_s: f64,
    /// Seconds moving gradients between the device and the host around them.
    pub transfer_s: f64,
    /// Steps counted.
    pub steps: u64,
}

impl CommStats {
    /// Bytes all-reduced.
    pub fn bytes(&self) -> u64 {
        self.values * 4
    }
}

/// The data-parallel side of a [`crate::DstModel`] (see the module docs): the collective, the
/// plan of live gradient entries, and communication counters.
#[derive(Debug)]
pub struct DataParallel {
    comm: Arc<dyn Collective>,
    /// The sparse layers' masks as last observed (what `Live::Links`/`Live::Masked` refer to).
    masks: Vec<Mask>,
    /// Per arena chunk, the live entries' offsets in order; rebuilt when `None`.
    plan: Option<Vec<Vec<u32>>>,
    flat: Vec<f32>,
    host: Vec<Vec<f32>>,
    last: CommStats,
    total: CommStats,
}

impl DataParallel {
    /// Data-parallel training over `comm`.
    pub fn new(comm: Arc<dyn Collective>) -> DataParallel {
        DataParallel {
            comm,
            masks: Vec::new(),
            plan: None,
            flat: Vec::new(),
            host: Vec::new(),
            last: CommStats::default(),
            total: CommStats::default(),
        }
    }

    /// The collective.
    pub fn collective(&self) -> &Arc<dyn Collective> {
        &self.comm
    }

    /// Whether there is anyone to talk to (more than one rank).
    pub fn is_distributed(&self) -> bool {
        self.comm.size() > 1
    }

    /// Communication of the last step.
    pub fn last_step(&self) -> CommStats {
        self.last
    }

    /// Communication of all steps so far.
    pub fn total(&self) -> CommStats {
        self.total
    }

    /// The sparse layers' masks changed (observed after an update, restored): the plan is
    /// rebuilt at the next exchange.
    pub(crate) fn set_masks(&mut self, masks: &[Mask]) {
        self.masks = masks.to_vec();
        self.plan = None;
    }

    /// The arena was re-packed (an execution switched): the plan is rebuilt at the next exchange.
    pub(crate) fn invalidate(&mut self) {
        self.plan = None;
    }

    /// Values one exchange of `gradients` all-reduces: every live entry.
    pub fn live_values(&self, gradients: &[Gradient<'_>]) -> Result<u64> {
        let mut n = 0u64;
        for g in gradients {
            n += match g.live {
                Live::All => g.grad.len(),
                Live::Links(i) | Live::Masked(i) => self.mask(i)?.nnz(),
            } as u64;
        }
        Ok(n)
    }

    fn mask(&self, i: usize) -> Result<&Mask> {
        self.masks.get(i).ok_or_else(|| {
            Error::Config(format!(
                "data-parallel exchange: sparse layer {i} has no observed mask ({} known)",
                self.masks.len()
            ))
        })
    }

    /// Averages the live gradients of `arena` over the ranks (see the module docs); `gradients`
    /// lists every parameter of the arena. Call it after the backward pass, before the optimizer.
    pub fn exchange(
        &mut self,
        device: &Device,
        arena: &ParamArena,
        gradients: &[Gradient<'_>],
    ) -> Result<()> {
        let chunks = arena.chunks();
        if self.plan.is_none() {
            self.plan = Some(self.plan_of(chunks, gradients)?);
        }
        let plan = self.plan.as_ref().expect("built above");
        let t0 = Instant::now();
        self.host.resize_with(chunks.len(), Vec::new);
        self.flat.clear();
        for ((chunk, host), offsets) in chunks.iter().zip(&mut self.host).zip(plan) {
            *host = read(device, &chunk.grads)?;
            self.flat.extend(offsets.iter().map(|&o| host[o as usize]));
        }
        let t1 = Instant::now();
        self.comm.all_reduce_sum(&mut self.flat)?;
        let t2 = Instant::now();
        let n = self.comm.size() as f32;
        let mut next = self.flat.iter();
        for ((chunk, host), offsets) in chunks.iter().zip(&mut self.host).zip(plan) {
            for (&o, &sum) in offsets.iter().zip(&mut next) {
                host[o as usize] = sum / n;
            }
            device.write_f32(&chunk.grads, host)?;
        }
        self.count(
            self.flat.len() as u64,
            (t2 - t1).as_secs_f64(),
            (t1 - t0 + t2.elapsed()).as_secs_f64(),
            true,
        );
        Ok(())
    }

    /// Averages whole tensors over the ranks (the dense gradients of gradient regrowth on
    /// topology-update steps), one all-reduce for all of them; counted in the current step.
    pub fn average_dense(&mut self, device: &Device, tensors: &[Tensor]) -> Result<()> {
        if tensors.is_empty() {
            return Ok(());
        }
        let t0 = Instant::now();
        self.flat.clear();
        for t in tensors {
            self.flat.extend(read(device, t)?);
        }
        let t1 = Instant::now();
        self.comm.all_reduce_sum(&mut self.flat)?;
        let t2 = Instant::now();
        let n = self.comm.size() as f32;
        let mut at = 0;
        for t in tensors {
            let part: Vec<f32> = self.flat[at..at + t.len()].iter().map(|s| s / n).collect();
            device.write_f32(t, &part)?;
            at += t.len();
        }
        self.count(
            self.flat.len() as u64,
            (t2 - t1).as_secs_f64(),
            (t1 - t0 + t2.elapsed()).as_secs_f64(),
            false,
        );
        Ok(())
    }

    /// Adds one all-reduce to the counters: the first of a step (`new_step`) starts `last`.
    fn count(&mut self, values: u64, reduce: f64, transfer: f64, new_step: bool) {
        let add = CommStats {
            values,
            all_reduce_s: reduce,
            transfer_s: transfer,
            steps: u64::from(new_step),
        };
        if new_step {
            self.last = CommStats::default();
        }
        for c in [&mut self.last, &mut self.total] {
            c.values += add.values;
            c.all_reduce_s += add.all_reduce_s;
            c.transfer_s += add.transfer_s;
            c.steps += add.steps;
        }
    }

    /// Per arena chunk, the offsets of the live entries of `gradients`, in order.
    fn plan_of(
        &self,
        chunks: &[cht_gpu::ArenaChunk],
        gradients: &[Gradient<'_>],
    ) -> Result<Vec<Vec<u32>>> {
        let mut plan = vec![Vec::new(); chunks.len()];
        for g in gradients {
            let c = chunks
                .iter()
                .position(|c| c.grads.shares_storage(g.grad))
                .ok_or_else(|| {
                    Error::Config(format!(
                        "data-parallel exchange: gradient {:?} is not in the parameter arena",
                        g.grad.label()
                    ))
                })?;
            let base = g.grad.storage_offset() - chunks[c].grads.storage_offset();
            let offset = |i: usize| -> Result<u32> {
                u32::try_from(base + i).map_err(|_| {
                    Error::Config(
                        "data-parallel exchange: an arena chunk above 2³² values".to_owned(),
                    )
                })
            };
            let out = &mut plan[c];
            match g.live {
                Live::All => {
                    for i in 0..g.grad.len() {
                        out.push(offset(i)?);
                    }
                }
                Live::Links(l) => {
                    let nnz = self.mask(l)?.nnz();
                    if nnz > g.grad.len() {
                        return Err(Error::Config(format!(
                            "data-parallel exchange: sparse layer {l} has {nnz} links, its \
                             gradient room for {}",
                            g.grad.len()
                        )));
                    }
                    for i in 0..nnz {
                        out.push(offset(i)?);
                    }
                }
                Live::Masked(l) => {
                    let mask = self.mask(l)?;
                    if mask.rows() * mask.cols() != g.grad.len() {
                        return Err(Error::Config(format!(
                            "data-parallel exchange: sparse layer {l}'s mask is {} × {}, its \
                             dense gradient has {} values",
                            mask.rows(),
                            mask.cols(),
                            g.grad.len()
                        )));
                    }
                    for (i, &on) in mask.as_bools().iter().enumerate() {
                        if on {
                            out.push(offset(i)?);
                        }
                    }
                }
            }
        }
        Ok(plan)
    }

    /// Checks that every rank holds the same `masks` (after a topology update, at `step`): rank
    /// 0's fingerprint is broadcast, every rank compares, and the verdicts are all-reduced so that
    /// all ranks fail together, naming the ranks that differ.
    pub fn check_masks(&self, masks: &[Mask], step: u64) -> Result<()> {
        if !self.is_distributed() {
            return Ok(());
        }
        let mine = fingerprint(masks);
        let mut bytes = mine.to_le_bytes().to_vec();
        self.comm.broadcast(&mut bytes, 0)?;
        let mut verdicts = vec![0.0f32; self.comm.size()];
        verdicts[self.comm.rank()] = f32::from(u8::from(bytes != mine.to_le_bytes()));
        self.comm.all_reduce_sum(&mut verdicts)?;
        let differ: Vec<String> = verdicts
            .iter()
            .enumerate()
            .filter(|(_, v)| **v != 0.0)
            .map(|(r, _)| r.to_string())
            .collect();
        if differ.is_empty() {
            return Ok(());
        }
        Err(Error::Diverged(format!(
            "after the topology update of step {step}, the masks of rank(s) {} differ from rank \
             0's (this rank's fingerprint {mine:016x}); the ranks must run the same binary, \
             configuration and seed",
            differ.join(", ")
        )))
    }
}

/// Reads a tensor back (blocking: native only; the browser has no data-parallel training).
fn read(device: &Device, t: &Tensor) -> Result<Vec<f32>> {
    #[cfg(not(target_arch = "wasm32"))]
    {
        Ok(device.read_f32(t)?)
    }
    #[cfg(target_arch = "wasm32")]
    {
        let _ = (device, t);
        Err(Error::Config(
            "data-parallel training runs natively only (blocking readbacks)".into(),
        ))
    }
}

/// A 64-bit FNV-1a fingerprint of masks (shapes and every bit).
pub fn fingerprint(masks: &[Mask]) -> u64 {
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |b: u8| {
        h ^= u64::from(b);
        h = h.wrapping_mul(PRIME);
    };
    for m in masks {
        for b in (m.rows() as u64)
            .to_le_bytes()
            .into_iter()
            .chain((m.cols() as u64).to_le_bytes())
        {
            eat(b);
        }
        for &on in m.as_bools() {
            eat(u8::from(on));
        }
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_tell_masks_apart() {
        let mut a = Mask::zeros(3, 4);
        a.set(1, 2, true);
        let mut b = a.clone();
        assert_eq!(fingerprint(&[a.clone()]), fingerprint(&[b.clone()]));
        b.set(0, 0, true);
        assert_ne!(fingerprint(&[a.clone()]), fingerprint(&[b]));
        // The shape counts: the same bits as 4 × 3 differ.
        let c = Mask::from_bools(4, 3, a.as_bools().to_vec()).unwrap();
        assert_ne!(fingerprint(&[a]), fingerprint(&[c]));
    }
}
