//! [`DstScheduler`]: the per-run state (step counter, per-layer link counts, last report) and the
//! decisions of each update; serde-serialisable for checkpoints.

use cht_gpu::Device;
use cht_sparse::Mask;
use cht_sparse::chain::{ItopTracker, anp, itop_rate};
use cht_sparse::init::Correlation;
use cht_sparse::removal::{guarded_floor, removal_counts};
use cht_sparse::rng::{RngKey, Stream};
use cht_sparse::schedule::{
    UpdateSchedule, ZetaSchedule, ems_initial_density, ems_regrow_fraction,
};
use serde::{Deserialize, Serialize};

use crate::config::DstConfig;
use crate::update::{LayerPlan, LayerRef, RegrowTarget, Topology};
use crate::{Error, Result};

/// Decides when and how the topology of a chain of sparse layers changes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DstScheduler {
    config: DstConfig,
    /// Optimizer steps taken (`t`).
    step: u64,
    /// Topology updates done.
    updates: u32,
    layers: Vec<LayerState>,
    last: Option<UpdateReport>,
    /// In-time over-parameterisation: every link that has ever been active, per layer.
    itop: Vec<ItopTracker>,
    /// Active-neuron rate of the last observed masks.
    anp: Option<f64>,
    /// The layers are side by side (a Transformer's projections), not a chain: no ANP.
    #[serde(default)]
    side_by_side: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct LayerState {
    rows: usize,
    cols: usize,
    /// This layer's density relative to the global one (1 for uniform, ERK's ratio otherwise).
    scale: f64,
    /// Links the layer holds (as planned; percolation may leave fewer, see
    /// [`Topology::live_links`]).
    nnz: usize,
    capacity: usize,
}

/// What one update did to one layer (planned counts).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerReport {
    /// Links before the update.
    pub before: usize,
    /// Links removed (pruning and removal, before percolation).
    pub removed: usize,
    /// Links the layer is refilled to (or given, for EM_S).
    pub after: usize,
    /// ζ used.
    pub zeta: f64,
    /// Removal temperature used.
    pub temperature: f64,
}

/// What one update did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UpdateReport {
    /// Optimizer step of the update.
    pub step: u64,
    /// Per layer.
    pub layers: Vec<LayerReport>,
}

impl DstScheduler {
    /// A scheduler for sparse layers of the given `(rows, cols)` shapes, in forward order.
    pub fn new(config: DstConfig, shapes: &[(usize, usize)]) -> Result<DstScheduler> {
        config.validate()?;
        if let crate::ChainRemoval::Pairs(pairs) = &config.chain_removal {
            pairs.check(shapes)?;
        }
        let density = initial_density(&config)?;
        let scales: Vec<f64> = match config.distribution {
            crate::config::DensityDistribution::Uniform => vec![1.0; shapes.len()],
            crate::config::DensityDistribution::Erk => {
                cht_sparse::init::erk_densities(shapes, config.density)
                    .map_err(|e| Error::Config(format!("ERK allocation: {e}")))?
                    .into_iter()
                    .map(|d| d / config.density)
                    .collect()
            }
        };
        let layers = shapes
            .iter()
            .zip(scales)
            .map(|(&(rows, cols), scale)| {
                let nnz = guarded_floor((density * scale).min(1.0) * (rows * cols) as f64)
                    .max(1)
                    .min(rows * cols);
                LayerState {
                    rows,
                    cols,
                    scale,
                    nnz,
                    capacity: nnz,
                }
            })
            .collect();
        let itop = shapes
            .iter()
            .map(|&(rows, cols)| ItopTracker::new(rows, cols))
            .collect();
        Ok(DstScheduler {
            config,
            step: 0,
            updates: 0,
            layers,
            last: None,
            itop,
            anp: None,
            side_by_side: false,
        })
    }

    /// This (saved) scheduler continuing under `config`: a run extended to more steps, whose
    /// schedules (ζ, temperature, `t_end`, density decay) are recomputed for the new length and
    /// apply from the current step on. The method, density, seed and update interval must stay
    /// (anything else is another run, refused).
    pub fn with_config(mut self, config: DstConfig) -> Result<DstScheduler> {
        let c = &self.config;
        if (c.method, c.density.to_bits(), c.seed, c.interval)
            != (
                config.method,
                config.density.to_bits(),
                config.seed,
                config.interval,
            )
        {
            return Err(Error::Config(format!(
                "a run continues with its method, density, seed and update interval \
                 ({:?}, {}, seed {}, every {} steps); asked for {:?}, {}, seed {}, every {} steps",
                c.method,
                c.density,
                c.seed,
                c.interval,
                config.method,
                config.density,
                config.seed,
                config.interval
            )));
        }
        self.config = config;
        Ok(self)
    }

    /// Checks that `self`, a scheduler read back from a checkpoint (or anywhere untrusted), can
    /// continue the run that `fresh` — the scheduler built from the run's validated configuration
    /// for the same model — starts: the same configuration, layers, shapes and link capacities,
    /// link counts within capacity, ITOP records of the right size and consistent counters.
    /// An edited or corrupted state is refused here instead of failing (or silently training
    /// something else) later.
    pub fn check_resumable(&self, fresh: &DstScheduler) -> Result<()> {
        let bad = |m: String| Err(Error::Config(format!("the saved scheduler state {m}")));
        if self.config != fresh.config {
            return bad("was made for another DST configuration than the run's".into());
        }
        if self.side_by_side != fresh.side_by_side {
            return bad("describes another kind of model (chain vs side-by-side layers)".into());
        }
        if self.shapes() != fresh.shapes() {
            return bad(format!(
                "manages layers {:?}, the model has {:?}",
                self.shapes(),
                fresh.shapes()
            ));
        }
        for (l, (s, f)) in self.layers.iter().zip(&fresh.layers).enumerate() {
            if s.capacity != f.capacity || s.scale.to_bits() != f.scale.to_bits() {
                return bad(format!(
                    "gives layer {l} {} link slots (scale {}), the run's configuration {} (scale {})",
                    s.capacity, s.scale, f.capacity, f.scale
                ));
            }
            if s.nnz == 0 || s.nnz > s.capacity {
                return bad(format!(
                    "gives layer {l} {} links, outside 1..={}",
                    s.nnz, s.capacity
                ));
            }
        }
        let trackers_fit = self.itop.len() == self.layers.len()
            && self
                .itop
                .iter()
                .zip(&self.layers)
                .all(|(t, s)| t.is_consistent() && t.entries() == s.rows * s.cols);
        if !trackers_fit {
            return bad("has ITOP records that do not fit the layers".into());
        }
        if let Some(last) = &self.last
            && (last.layers.len() != self.layers.len() || last.step > self.step)
        {
            return bad("has a last-update report that does not fit the layers or step".into());
        }
        if u64::from(self.updates) > self.step {
            return bad(format!(
                "counts {} updates in {} steps",
                self.updates, self.step
            ));
        }
        if self.anp.is_some_and(|a| !(0.0..=1.0).contains(&a))
            || (self.side_by_side && self.anp.is_some())
        {
            return bad("has an active-neuron rate outside [0, 1]".into());
        }
        Ok(())
    }

    /// Marks the layers as side by side (e.g. a Transformer's projections) rather than a chain in
    /// which each layer feeds the next: ANP (spec §4.3) is then not defined and stays `None`.
    pub fn side_by_side(mut self) -> DstScheduler {
        self.side_by_side = true;
        self.anp = None;
        self
    }

    /// The configuration.
    pub fn config(&self) -> &DstConfig {
        &self.config
    }

    /// Link slots of layer `l` (its initial link count): the capacity its device pattern and the
    /// update's scratch are made for.
    pub fn capacity(&self, l: usize) -> usize {
        self.layers[l].capacity
    }

    /// `(out, in)` of every managed layer, in forward order.
    pub fn shapes(&self) -> Vec<(usize, usize)> {
        self.layers.iter().map(|s| (s.rows, s.cols)).collect()
    }

    /// Whether the layers were marked [`DstScheduler::side_by_side`] (no ANP).
    pub fn is_side_by_side(&self) -> bool {
        self.side_by_side
    }

    /// Links layer `l` holds as planned by the last update (percolation may leave fewer).
    pub fn links(&self, l: usize) -> usize {
        self.layers[l].nnz
    }

    /// Optimizer steps so far.
    pub fn step_count(&self) -> u64 {
        self.step
    }

    /// The initial masks (spec §6): `correlation` is needed by CSTI only.
    pub fn initial_masks(&self, correlation: Option<&Correlation>) -> Result<Vec<Mask>> {
        let density = initial_density(&self.config)?;
        self.layers
            .iter()
            .enumerate()
            .map(|(l, s)| {
                let key = RngKey::new(self.config.seed, Stream::TopologyInit, 0, l as u32);
                let layer_density = (density * s.scale).min(1.0);
                let mut mask = self
                    .config
                    .topology_init
                    .mask(s.rows, s.cols, layer_density, key, correlation)
                    .map_err(|e| Error::Config(format!("layer {l} initial topology: {e}")))?;
                trim_to(&mut mask, s.nnz);
                Ok(mask)
            })
            .collect()
    }

    /// The initial weights of layer `l` for `mask` (CSR order), by the configured initialiser.
    pub fn initial_weights(&self, l: usize, mask: &Mask) -> Result<Vec<f32>> {
        let density = (initial_density(&self.config)? * self.layers[l].scale).min(1.0);
        let key = RngKey::new(self.config.seed, Stream::WeightInit, 0, l as u32);
        cht_sparse::init::mask_weights(mask, &self.config.weight_init, density, key)
            .map_err(|e| Error::Config(format!("layer {l} weight init: {e}")))
    }

    /// Device scratch for the update of these layers, with `state_tensors` optimizer-state tensors
    /// per layer (create once, reuse at every update).
    pub fn topology(&self, device: &Device, state_tensors: usize) -> Topology {
        let shapes: Vec<_> = self
            .layers
            .iter()
            .map(|s| (s.rows, s.cols, s.capacity))
            .collect();
        let mut topology = Topology::new(device, &shapes, state_tensors);
        let l3n = self.config.regrowth.as_ref().and_then(|r| match r.scores {
            crate::RegrowScores::LinkPrediction(p) if !p.is_path_based() => Some(r.l3n_dense_above),
            _ => None,
        });
        if let Some(dense_above) = l3n {
            topology = topology.with_l3n_products(device, dense_above);
        }
        if self.config.regrown_weights == crate::RegrownWeights::History {
            topology.with_history(device)
        } else {
            topology
        }
    }

    /// Counts one optimizer step and says whether it is a topology update (then call
    /// [`DstScheduler::update`] and, as the paper's MLP and LLaMA loops do, skip that step's
    /// optimizer update).
    pub fn step(&mut self) -> bool {
        self.step += 1;
        self.is_update_step()
    }

    /// Whether the next [`DstScheduler::step`] will be a topology update (e.g. to skip preparing
    /// that step's optimizer parameters).
    pub fn next_step_is_update(&self) -> bool {
        self.is_update_at(self.step + 1)
    }

    fn is_update_step(&self) -> bool {
        self.is_update_at(self.step)
    }

    /// Whether step `t` (1-based) is a topology update under the current configuration.
    pub fn is_update_at(&self, t: u64) -> bool {
        if self.config.method == crate::Method::Fc {
            return false;
        }
        let schedule = UpdateSchedule {
            interval: self.config.interval,
            t_end: self.config.t_end,
            boundary: self.config.boundary,
        };
        schedule.is_update_step(t)
    }

    /// Rewires every layer on the device (one submit, no readback) and returns the planned counts.
    pub fn update(
        &mut self,
        device: &Device,
        topology: &Topology,
        layers: &[LayerRef<'_>],
    ) -> Result<UpdateReport> {
        // Before anything changes: a mismatch leaves the scheduler as it was.
        topology.check_layers(layers)?;
        if topology.layer_count() != self.layers.len() {
            return Err(Error::Config(format!(
                "the topology scratch has {} layers, the scheduler {}",
                topology.layer_count(),
                self.layers.len()
            )));
        }
        let t = self.step;
        let c = &self.config;
        let temperature = c.removal.temperature.temperature(t, c.t_end)?;
        let density_t = c.density_at(t)?;
        let mut plans = Vec::with_capacity(layers.len());
        let mut reports = Vec::with_capacity(layers.len());
        for (l, s) in self.layers.iter_mut().enumerate() {
            let total = s.rows * s.cols;
            let target =
                guarded_floor((density_t * s.scale).min(1.0) * total as f64).clamp(1, s.capacity);
            let n_before = s.nnz;
            let n_pruned = if c.density_decay.is_some() {
                n_before.min(target)
            } else {
                n_before
            };
            let sparsity = 1.0 - n_pruned as f64 / total as f64;
            let zeta = c.removal.zeta.zeta(t, sparsity)?;
            let counts =
                removal_counts(n_pruned, zeta).map_err(|e| Error::Config(e.to_string()))?;
            let regrow = c.regrowth.as_ref().map(|r| {
                let target = if c.density_decay.is_some() {
                    RegrowTarget::UpTo(target as u32)
                } else if matches!(c.removal.zeta, ZetaSchedule::EmS { .. }) {
                    let n =
                        guarded_floor(ems_regrow_fraction(t, c.t_end, c.interval) * total as f64);
                    RegrowTarget::Exactly(n.min(s.capacity - counts.n_keep) as u32)
                } else {
                    RegrowTarget::UpTo(n_before as u32)
                };
                (r.scores, r.selection, target)
            });
            let after = match regrow {
                None => counts.n_keep,
                Some((_, _, RegrowTarget::UpTo(n))) => n as usize,
                Some((_, _, RegrowTarget::Exactly(n))) => counts.n_keep + n as usize,
            };
            plans.push(LayerPlan {
                n_before,
                n_pruned,
                prune_score: c.prune_score,
                n_keep: counts.n_keep,
                removal_score: c.removal.score,
                removal: c.removal.selection,
                temperature: temperature as f32,
                regrow,
                l3n_dense_above: c.regrowth.as_ref().map_or(1.0, |r| r.l3n_dense_above),
                regrown_weights: c.regrown_weights,
                seed: c.seed,
                update: self.updates,
                layer: l as u32,
            });
            reports.push(LayerReport {
                before: n_before,
                removed: n_before - counts.n_keep,
                after,
                zeta,
                temperature,
            });
            s.nnz = after;
        }
        topology.record(device, layers, &plans, &c.chain_removal)?;
        self.updates += 1;
        let report = UpdateReport {
            step: t,
            layers: reports,
        };
        self.last = Some(report.clone());
        Ok(report)
    }

    /// Records the current masks (read with [`Topology::read_masks`] or the initial masks) for the
    /// ANP and ITOP metrics.
    pub fn observe(&mut self, masks: &[Mask]) -> Result<()> {
        for (tracker, mask) in self.itop.iter_mut().zip(masks) {
            tracker
                .observe(mask)
                .map_err(|e| Error::Config(e.to_string()))?;
        }
        // ANP counts each hidden neuron once, as the input of the next layer: only meaningful
        // when the layers form a chain (an MLP).
        self.anp = (!self.side_by_side).then(|| anp(masks).rate());
        Ok(())
    }

    /// Active neurons after percolation over all neurons of the chain (spec §4.3), as of the last
    /// [`DstScheduler::observe`]; `None` before any observation and for layers marked
    /// [`DstScheduler::side_by_side`].
    pub fn anp(&self) -> Option<f64> {
        self.anp
    }

    /// Fraction of all possible links that have been active at some observed point.
    pub fn itop(&self) -> f64 {
        itop_rate(&self.itop)
    }

    /// A readable per-layer summary: shape, planned links and density, last update's counts.
    pub fn summary(&self) -> String {
        let mut out = format!(
            "{:?}: step {}, {} topology updates (every {} steps until {}), ANP {}, ITOP {:.3}\n",
            self.config.method,
            self.step,
            self.updates,
            self.config.interval,
            self.config.t_end,
            self.anp.map_or("-".into(), |a| format!("{:.3}", a)),
            self.itop()
        );
        for (l, s) in self.layers.iter().enumerate() {
            let density = s.nnz as f64 / (s.rows * s.cols) as f64;
            out.push_str(&format!(
                "  layer {l}: {}x{}, {} links ({:.2}%)",
                s.rows,
                s.cols,
                s.nnz,
                density * 100.0
            ));
            if let Some(r) = self.last.as_ref().and_then(|r| r.layers.get(l)) {
                out.push_str(&format!(
                    ", last update: -{} links, ζ {:.3}, T {:.2}",
                    r.removed, r.zeta, r.temperature
                ));
            }
            out.push('\n');
        }
        out
    }
}

/// Density the layers start at: the decay's initial density, EM_S's d + 5 %, or the target.
fn initial_density(c: &DstConfig) -> Result<f64> {
    if let Some(d) = &c.density_decay {
        return Ok(d.density(0)?);
    }
    if matches!(c.removal.zeta, ZetaSchedule::EmS { .. }) {
        return Ok(ems_initial_density(c.density)?);
    }
    Ok(c.density)
}

/// Drops links beyond `nnz` (last in row-major order) so every initialiser gives exactly the
/// scheduler's count (CSTI may add tied links).
fn trim_to(mask: &mut Mask, nnz: usize) {
    let mut extra = mask.nnz().saturating_sub(nnz);
    let (rows, cols) = (mask.rows(), mask.cols());
    for p in (0..rows * cols).rev() {
        if extra == 0 {
            break;
        }
        if mask.get(p / cols, p % cols) {
            mask.set(p / cols, p % cols, false);
            extra -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anp_is_reported_for_a_chain_only() {
        let anp_of = |side_by_side: bool| {
            let config = DstConfig::preset(
                crate::Method::Set,
                0.5,
                crate::Updates::every(1).until(10),
                0,
            );
            let mut s = DstScheduler::new(config, &[(4, 4), (6, 4)]).unwrap();
            if side_by_side {
                s = s.side_by_side();
            }
            s.observe(&s.initial_masks(None).unwrap()).unwrap();
            let json = serde_json::to_string(&s).unwrap();
            let back: DstScheduler = serde_json::from_str(&json).unwrap();
            assert_eq!(back, s, "round trip through a checkpoint");
            (s.anp(), s.summary())
        };
        let (chain, _) = anp_of(false);
        assert!(chain.is_some_and(|a| a > 0.0 && a <= 1.0));
        // q (4×4) and gate (6×4) of one block: shapes that happen to chain, yet side by side.
        let (side, summary) = anp_of(true);
        assert_eq!(side, None);
        assert!(summary.contains("ANP -"), "{summary}");
    }
}
