//! The topology update on the device: per-layer scratch created once, and the recorded sequence
//! score → sample → percolate → regrow → rebuild → re-gather. No step reads anything back.

use cht_gpu::ops::predict::{LinkScratch, ProductScratch};
use cht_gpu::ops::sample::{Eligible, KeyMode, Selector};
use cht_gpu::ops::topology::{Axis, LinkScore};
use cht_gpu::{CsrBuilder, DType, Device, SparsePattern, Tensor};
use cht_sparse::predict::L3nPath;
use cht_sparse::rng::{RngKey, Stream};

use crate::config::{
    ChainRemoval, PairChains, RegrowScores, RegrownWeights, RemovalScoreKind, Selection,
};
use crate::{Error, Result};

/// The parameters and optimizer state of one sparse layer, as the update rewires them in place.
#[derive(Clone, Copy, Debug)]
pub struct LayerRef<'a> {
    /// The layer's CSR/CSC pattern (rebuilt in place).
    pub pattern: &'a SparsePattern,
    /// Weights in CSR order.
    pub values: &'a Tensor,
    /// Optimizer state in CSR order (e.g. momentum), re-gathered with the weights.
    pub state: &'a [&'a Tensor],
    /// The links' gradient (CSR order): needed by MEST removal.
    pub grad: Option<&'a Tensor>,
    /// The dense gradient `[rows, cols]`: needed by gradient regrowth (RigL, GraNet).
    pub dense_grad: Option<&'a Tensor>,
}

impl<'a> LayerRef<'a> {
    /// A layer given by its pattern, weights and every optimizer-state tensor (CSR order), with
    /// no gradients (enough for weight-magnitude removal and link-prediction or random
    /// regrowth). `cht_nn::DstModel` builds these for its networks; this is for custom ones.
    pub fn new(pattern: &'a SparsePattern, values: &'a Tensor, state: &'a [&'a Tensor]) -> Self {
        LayerRef {
            pattern,
            values,
            state,
            grad: None,
            dense_grad: None,
        }
    }

    /// The same layer with its links' gradient (CSR order; MEST removal reads it, and the update
    /// clears it).
    pub fn with_grad(mut self, grad: &'a Tensor) -> Self {
        self.grad = Some(grad);
        self
    }

    /// The same layer with its dense `[out, in]` gradient (gradient regrowth: RigL, GraNet).
    pub fn with_dense_grad(mut self, dense_grad: Option<&'a Tensor>) -> Self {
        self.dense_grad = dense_grad;
        self
    }
}

/// Device scratch of the topology update for a chain of sparse layers.
#[derive(Debug)]
pub struct Topology {
    layers: Vec<LayerScratch>,
}

#[derive(Debug)]
struct LayerScratch {
    rows: usize,
    cols: usize,
    mask: Tensor,
    selected: Tensor,
    dense_scores: Tensor,
    dense_keys: Tensor,
    dense_sel: Selector,
    dense_w: Tensor,
    dense_state: Vec<Tensor>,
    link_scores: Tensor,
    link_keys: Tensor,
    link_live: Tensor,
    link_keep: Tensor,
    link_sel: Selector,
    prune_sel: Selector,
    row_sums: Tensor,
    col_sums: Tensor,
    post: SparsePattern,
    builder: CsrBuilder,
    predict: LinkScratch,
    row_flags: Tensor,
    col_flags: Tensor,
    /// Each position's last live weight ([`RegrownWeights::History`] only).
    history: Option<Tensor>,
}

/// What one layer does at one update (decided by the scheduler on the host).
#[derive(Clone, Copy, Debug)]
pub(crate) struct LayerPlan {
    /// Live links before the update.
    pub n_before: usize,
    /// Links kept by the decay's pruning step (`n_before` when there is none).
    pub n_pruned: usize,
    pub prune_score: RemovalScoreKind,
    /// Links kept by removal.
    pub n_keep: usize,
    pub removal_score: RemovalScoreKind,
    pub removal: Selection,
    pub temperature: f32,
    pub regrow: Option<(RegrowScores, Selection, RegrowTarget)>,
    /// Density above which node-based link prediction takes the product path.
    pub l3n_dense_above: f64,
    pub regrown_weights: RegrownWeights,
    pub seed: u32,
    pub update: u32,
    pub layer: u32,
}

/// How many links regrowth adds.
#[derive(Clone, Copy, Debug)]
pub(crate) enum RegrowTarget {
    /// Refill up to this many links (counting what survived removal and percolation).
    UpTo(u32),
    /// Exactly this many (EM_S).
    Exactly(u32),
}

impl Topology {
    /// Scratch for layers of the given `(rows, cols, capacity)` shapes with `state_tensors`
    /// optimizer-state tensors each.
    pub fn new(
        device: &Device,
        shapes: &[(usize, usize, usize)],
        state_tensors: usize,
    ) -> Topology {
        let layers = shapes
            .iter()
            .enumerate()
            .map(|(l, &(rows, cols, capacity))| {
                let label = format!("dst.layer{l}");
                let t = |name: &str, r: usize, c: usize, d: DType| {
                    device.zeros(&format!("{label}.{name}"), r, c, d)
                };
                LayerScratch {
                    rows,
                    cols,
                    mask: t("mask", rows, cols, DType::U32),
                    selected: t("selected", rows, cols, DType::U32),
                    dense_scores: t("regrow_scores", rows, cols, DType::F32),
                    dense_keys: t("regrow_keys", rows, cols, DType::U32),
                    dense_sel: device.selector(&format!("{label}.regrow"), rows * cols),
                    dense_w: t("dense_w", rows, cols, DType::F32),
                    dense_state: (0..state_tensors)
                        .map(|i| t(&format!("dense_state{i}"), rows, cols, DType::F32))
                        .collect(),
                    link_scores: t("removal_scores", capacity, 1, DType::F32),
                    link_keys: t("removal_keys", capacity, 1, DType::U32),
                    link_live: t("live", capacity, 1, DType::U32),
                    link_keep: t("keep", capacity, 1, DType::U32),
                    link_sel: device.selector(&format!("{label}.removal"), capacity),
                    prune_sel: device.selector(&format!("{label}.prune"), capacity),
                    row_sums: t("row_sums", rows, 1, DType::F32),
                    col_sums: t("col_sums", cols, 1, DType::F32),
                    post: device.sparse_pattern(
                        &format!("{label}.post_removal"),
                        rows,
                        cols,
                        capacity,
                    ),
                    builder: device.csr_builder(&format!("{label}.builder"), rows, cols),
                    predict: device.link_scratch(&format!("{label}.predict"), rows, cols),
                    row_flags: t("row_flags", rows, 1, DType::U32),
                    col_flags: t("col_flags", cols, 1, DType::U32),
                    history: None,
                }
            })
            .collect();
        Topology { layers }
    }

    /// Adds the scratch of the node-based product path (spec §1.2) to every layer that can be
    /// denser than `dense_above` (its link capacity over its size) and whose products fit; layers
    /// of one shape share it, since a device runs the recorded updates in order. The CPU backend
    /// needs none.
    pub fn with_l3n_products(mut self, device: &Device, dense_above: f64) -> Topology {
        let mut shared: Vec<((usize, usize), Option<ProductScratch>)> = Vec::new();
        for (l, s) in self.layers.iter_mut().enumerate() {
            let (rows, cols) = (s.rows, s.cols);
            let max_links = s.link_live.len(); // the layer's link capacity
            if !device.is_gpu()
                || L3nPath::choose(rows, cols, max_links, dense_above) == L3nPath::Walk
            {
                continue;
            }
            let products = match shared.iter().find(|(shape, _)| *shape == (rows, cols)) {
                Some((_, p)) => p.clone(),
                None => {
                    let p = device.l3n_product_scratch(&format!("dst.l3n{l}"), rows, cols);
                    shared.push(((rows, cols), p.clone()));
                    p
                }
            };
            if let Some(p) = products {
                s.predict = s
                    .predict
                    .clone()
                    .with_products(p)
                    .expect("product scratch made for this layer's shape");
            }
        }
        self
    }

    /// Adds the dense historical-weight memory of every layer ([`RegrownWeights::History`]),
    /// starting at 0 (or from a checkpoint, see [`Topology::history`]).
    pub fn with_history(mut self, device: &Device) -> Topology {
        for (l, s) in self.layers.iter_mut().enumerate() {
            s.history =
                Some(device.zeros(&format!("dst.layer{l}.history"), s.rows, s.cols, DType::F32));
        }
        self
    }

    /// The per-layer historical-weight memories (`[rows, cols]` each), empty unless created
    /// [`Topology::with_history`]: a checkpoint must save and restore them for an exact resume.
    pub fn history(&self) -> Vec<&Tensor> {
        self.layers
            .iter()
            .filter_map(|s| s.history.as_ref())
            .collect()
    }

    /// Checks that `layers` are the ones this scratch was made for, in the user's terms: their
    /// count, each one's `out × in` shape, link capacity (the density it was built at), weight and
    /// optimizer-state lengths, and the number of optimizer-state tensors (state that is not
    /// handed over would silently stay in the old link order).
    pub fn check_layers(&self, layers: &[LayerRef<'_>]) -> Result<()> {
        if layers.len() != self.layers.len() {
            return Err(Error::Config(format!(
                "{} sparse layers given, the scheduler manages {}",
                layers.len(),
                self.layers.len()
            )));
        }
        for (l, (s, layer)) in self.layers.iter().zip(layers).enumerate() {
            let bad = |reason: String| Error::Layer { layer: l, reason };
            let (rows, cols) = (layer.pattern.rows(), layer.pattern.cols());
            if (rows, cols) != (s.rows, s.cols) {
                let hint = if (rows, cols) == (s.cols, s.rows) {
                    " (swapped? shapes are `out × in`)"
                } else {
                    ""
                };
                return Err(bad(format!(
                    "it is {rows} × {cols} (out × in), the scheduler manages {} × {}{hint}",
                    s.rows, s.cols
                )));
            }
            let capacity = s.link_live.len();
            if layer.pattern.capacity() != capacity {
                let total = (rows * cols) as f64;
                return Err(bad(format!(
                    "it was built for {} links (density {:.4}), the scheduler plans {capacity} \
                     (density {:.4}); build it with `DstScheduler::capacity({l})` link slots",
                    layer.pattern.capacity(),
                    layer.pattern.capacity() as f64 / total,
                    capacity as f64 / total
                )));
            }
            if layer.values.len() != capacity {
                return Err(bad(format!(
                    "its weights hold {} values for {capacity} link slots",
                    layer.values.len()
                )));
            }
            if layer.state.len() != s.dense_state.len() {
                return Err(bad(format!(
                    "{} optimizer-state tensors given, the topology update was made for {} \
                     (e.g. 1 for SGD momentum, 2 for Adam's moments): state left out would not \
                     move with the rewired links",
                    layer.state.len(),
                    s.dense_state.len()
                )));
            }
            for (i, state) in layer.state.iter().enumerate() {
                if state.len() != capacity {
                    return Err(bad(format!(
                        "optimizer state {i} holds {} values for {capacity} link slots",
                        state.len()
                    )));
                }
            }
            if let Some(g) = layer.grad
                && g.len() != capacity
            {
                return Err(bad(format!(
                    "its link gradient holds {} values for {capacity} link slots",
                    g.len()
                )));
            }
            if let Some(g) = layer.dense_grad
                && (g.rows(), g.cols()) != (rows, cols)
            {
                return Err(bad(format!(
                    "its dense gradient is {} × {}, the layer {rows} × {cols}",
                    g.rows(),
                    g.cols()
                )));
            }
        }
        Ok(())
    }

    /// Layers this scratch was made for.
    pub fn layer_count(&self) -> usize {
        self.layers.len()
    }

    /// Optimizer-state tensors per layer this scratch re-gathers with the weights.
    pub fn state_tensors(&self) -> usize {
        self.layers.first().map_or(0, |s| s.dense_state.len())
    }

    /// Records the whole update of every layer (removal → chain removal → regrowth → rebuild),
    /// then submits once.
    pub(crate) fn record(
        &self,
        device: &Device,
        layers: &[LayerRef<'_>],
        plans: &[LayerPlan],
        chain: &ChainRemoval,
    ) -> Result<()> {
        if plans.len() != self.layers.len() {
            return Err(Error::Config(format!(
                "{} layer plans for {} layers",
                plans.len(),
                self.layers.len()
            )));
        }
        self.check_layers(layers)?;
        for ((s, layer), plan) in self.layers.iter().zip(layers).zip(plans) {
            s.remove(device, layer, plan)?;
        }
        match chain {
            ChainRemoval::Off => {}
            ChainRemoval::Sequential => self.chain_removal(device)?,
            ChainRemoval::Pairs(pairs) => {
                let masks: Vec<&Tensor> = self.layers.iter().map(|s| &s.mask).collect();
                let flags: Vec<(&Tensor, &Tensor)> = self
                    .layers
                    .iter()
                    .map(|s| (&s.row_flags, &s.col_flags))
                    .collect();
                pair_chains_with(device, &masks, &flags, pairs)?;
            }
        }
        for ((s, layer), plan) in self.layers.iter().zip(layers).zip(plans) {
            s.regrow_and_rebuild(device, layer, plan)?;
            // The gradient was in the old CSR order, and slots past the new link count are
            // never written again by the backward pass: zero it, so that nothing stale (e.g. in
            // a global gradient norm) outlives the update, and a resumed run matches bit for bit.
            if let Some(g) = layer.grad {
                device.clear(g)?;
            }
        }
        device.submit()?;
        Ok(())
    }

    /// Sequential percolation over the post-removal masks (spec §4.1).
    fn chain_removal(&self, device: &Device) -> Result<()> {
        let masks: Vec<&Tensor> = self.layers.iter().map(|s| &s.mask).collect();
        let flags: Vec<(&Tensor, &Tensor)> = self
            .layers
            .iter()
            .map(|s| (&s.row_flags, &s.col_flags))
            .collect();
        chain_removal_with(device, &masks, &flags)
    }
}

/// Sequential chain removal (spec §4.1) on dense `[out, in]` u32 masks of consecutive layers, on the
/// device: a backward sweep clears the inputs of neurons without outgoing links, then a forward
/// sweep clears the outputs of neurons without incoming links. Allocates its flag buffers; the
/// topology update reuses its own.
pub fn chain_removal(device: &Device, masks: &[&Tensor]) -> Result<()> {
    let flags: Vec<(Tensor, Tensor)> = masks
        .iter()
        .map(|m| {
            (
                device.zeros("chain.rows", m.rows(), 1, DType::U32),
                device.zeros("chain.cols", m.cols(), 1, DType::U32),
            )
        })
        .collect();
    let refs: Vec<(&Tensor, &Tensor)> = flags.iter().map(|(r, c)| (r, c)).collect();
    chain_removal_with(device, masks, &refs)
}

fn chain_removal_with(
    device: &Device,
    masks: &[&Tensor],
    flags: &[(&Tensor, &Tensor)],
) -> Result<()> {
    let n = masks.len();
    for w in masks.windows(2) {
        if w[0].rows() != w[1].cols() {
            return Err(Error::Config(format!(
                "chain removal: a layer with {} outputs feeds one with {} inputs",
                w[0].rows(),
                w[1].cols()
            )));
        }
    }
    for l in (0..n.saturating_sub(1)).rev() {
        device.mask_any(masks[l + 1], Axis::Cols, flags[l + 1].1)?;
        device.mask_clear_unflagged(masks[l], Axis::Rows, flags[l + 1].1)?;
    }
    for l in 1..n {
        device.mask_any(masks[l - 1], Axis::Rows, flags[l - 1].0)?;
        device.mask_clear_unflagged(masks[l], Axis::Cols, flags[l - 1].0)?;
    }
    Ok(())
}

/// Pairwise chain removal (spec §4.2) on dense `[out, in]` u32 masks, on the device: every qk
/// pair, then every producer → consumer pair, in the given order (the twins are
/// [`cht_sparse::chain::qk_chain`] and [`cht_sparse::chain::chain`]). Allocates its flag buffers.
pub fn pair_chain_removal(device: &Device, masks: &[&Tensor], pairs: &PairChains) -> Result<()> {
    let flags: Vec<(Tensor, Tensor)> = masks
        .iter()
        .map(|m| {
            (
                device.zeros("chain.rows", m.rows(), 1, DType::U32),
                device.zeros("chain.cols", m.cols(), 1, DType::U32),
            )
        })
        .collect();
    let refs: Vec<(&Tensor, &Tensor)> = flags.iter().map(|(r, c)| (r, c)).collect();
    pair_chains_with(device, masks, &refs, pairs)
}

fn pair_chains_with(
    device: &Device,
    masks: &[&Tensor],
    flags: &[(&Tensor, &Tensor)],
    pairs: &PairChains,
) -> Result<()> {
    let shapes: Vec<(usize, usize)> = masks.iter().map(|m| (m.rows(), m.cols())).collect();
    pairs.check(&shapes)?;
    // qk: output i survives only where both produce it; b's row flags first, then a's.
    for &(a, b) in &pairs.qk {
        device.mask_any(masks[b], Axis::Rows, flags[b].0)?;
        device.mask_clear_unflagged(masks[a], Axis::Rows, flags[b].0)?;
        device.mask_any(masks[a], Axis::Rows, flags[a].0)?;
        device.mask_clear_unflagged(masks[b], Axis::Rows, flags[a].0)?;
    }
    // chain: producer rows nobody consumes, then consumer columns nobody produces.
    for &(p, c) in &pairs.chain {
        device.mask_any(masks[c], Axis::Cols, flags[c].1)?;
        device.mask_clear_unflagged(masks[p], Axis::Rows, flags[c].1)?;
        device.mask_any(masks[p], Axis::Rows, flags[p].0)?;
        device.mask_clear_unflagged(masks[c], Axis::Cols, flags[p].0)?;
    }
    Ok(())
}

fn key_mode(selection: Selection, temperature: f32) -> KeyMode {
    match selection {
        Selection::Hard => KeyMode::Hard,
        Selection::Soft => KeyMode::Soft { temperature },
    }
}

impl LayerScratch {
    fn link_score<'a>(
        &self,
        kind: RemovalScoreKind,
        layer: &LayerRef<'a>,
    ) -> Result<LinkScore<'a>> {
        Ok(match kind {
            RemovalScoreKind::WeightMagnitude => LinkScore::WeightMagnitude,
            RemovalScoreKind::RelativeImportance => LinkScore::RelativeImportance { epsilon: 1e-5 },
            RemovalScoreKind::Mest { factor } => LinkScore::Mest {
                factor,
                grad: layer.grad.ok_or_else(|| {
                    Error::Config("MEST removal needs the links' gradient".into())
                })?,
            },
        })
    }

    /// Keeps the old weights and state in dense scratch, then chooses the links that stay and
    /// writes them into `mask`.
    fn remove(&self, device: &Device, layer: &LayerRef<'_>, plan: &LayerPlan) -> Result<()> {
        let p = layer.pattern;
        device.csr_scatter(p, layer.values, &self.dense_w)?;
        if plan.regrown_weights == RegrownWeights::History {
            let history = self.history.as_ref().ok_or_else(|| {
                Error::Config("historical weights need Topology::with_history".into())
            })?;
            device.csr_overlay(p, layer.values, history)?;
        }
        for (state, dense) in layer.state.iter().zip(&self.dense_state) {
            device.csr_scatter(p, state, dense)?;
        }
        device.live_link_flags(p, &self.link_live)?;
        let rng =
            |stream, salt: u32| RngKey::new(plan.seed, stream, plan.update, plan.layer * 4 + salt);
        if plan.n_pruned < plan.n_before {
            // Density decay: hard-prune to the scheduled density first; survivors become "live".
            let score = self.link_score(plan.prune_score, layer)?;
            device.removal_scores(
                p,
                layer.values,
                score,
                &self.row_sums,
                &self.col_sums,
                &self.link_scores,
            )?;
            device.sample_keys(
                &self.link_scores,
                Some(&self.link_live),
                Eligible::MaskSet,
                KeyMode::Hard,
                rng(Stream::Removal, 1),
                &self.link_keys,
            )?;
            // Each selector's count is written once per submit: host writes land before any command.
            device.set_select_count(&self.prune_sel, plan.n_pruned as u32)?;
            device.select_top_k(&self.prune_sel, &self.link_keys, &self.link_keep)?;
            device.copy(&self.link_keep, &self.link_live)?;
        }
        let score = self.link_score(plan.removal_score, layer)?;
        device.removal_scores(
            p,
            layer.values,
            score,
            &self.row_sums,
            &self.col_sums,
            &self.link_scores,
        )?;
        let mode = key_mode(plan.removal, plan.temperature);
        device.sample_keys(
            &self.link_scores,
            Some(&self.link_live),
            Eligible::MaskSet,
            mode,
            rng(Stream::Removal, 0),
            &self.link_keys,
        )?;
        device.set_select_count(&self.link_sel, plan.n_keep as u32)?;
        device.select_top_k(&self.link_sel, &self.link_keys, &self.link_keep)?;
        device.clear(&self.mask)?;
        device.mask_set_links(p, &self.link_keep, &self.mask)?;
        Ok(())
    }

    /// Regrows links on the post-removal mask, rebuilds the layer's pattern in place and gathers
    /// its weights and optimizer state back (kept and removed-then-regrown links keep their values,
    /// new links start at 0).
    fn regrow_and_rebuild(
        &self,
        device: &Device,
        layer: &LayerRef<'_>,
        plan: &LayerPlan,
    ) -> Result<()> {
        if let Some((scores, selection, target)) = plan.regrow {
            device.build_pattern(&self.builder, &self.mask, &self.post)?;
            if plan.regrown_weights == RegrownWeights::Zero {
                // Keep only the survivors' values in the dense scratch (round trip through the
                // post-removal pattern), so every regrown link gathers 0.
                for dense in std::iter::once(&self.dense_w).chain(&self.dense_state) {
                    device.csr_gather(&self.post, dense, &self.link_scores)?;
                    device.csr_scatter(&self.post, &self.link_scores, dense)?;
                }
            }
            let rng = RngKey::new(plan.seed, Stream::Regrowth, plan.update, plan.layer * 4);
            match scores {
                RegrowScores::LinkPrediction(predictor) => {
                    // The survivors of removal bound the post-removal links (chain removal only
                    // removes more); both paths give the same bits, so this only picks the faster.
                    let path = self.predict.path_for(plan.n_keep, plan.l3n_dense_above);
                    device.link_scores_via(
                        &self.post,
                        predictor,
                        path,
                        &self.predict,
                        &self.dense_scores,
                    )?;
                }
                RegrowScores::Random => {
                    let key =
                        RngKey::new(plan.seed, Stream::Regrowth, plan.update, plan.layer * 4 + 1);
                    device.fill_uniform(key, 0, 0.0, 1.0, &self.dense_scores)?;
                }
                RegrowScores::Gradient => {
                    let g = layer.dense_grad.ok_or_else(|| {
                        Error::Config("gradient regrowth needs the dense gradient".into())
                    })?;
                    device.copy(g, &self.dense_scores)?;
                }
            }
            match target {
                RegrowTarget::UpTo(n) => {
                    device.set_select_deficit(&self.dense_sel, n, &self.builder.status)?
                }
                RegrowTarget::Exactly(n) => device.set_select_count(&self.dense_sel, n)?,
            }
            // Regrowth samples p ∝ score (no temperature, spec §3.3).
            let mode = key_mode(selection, 1.0);
            device.sample_keys(
                &self.dense_scores,
                Some(&self.mask),
                Eligible::MaskClear,
                mode,
                rng,
                &self.dense_keys,
            )?;
            device.select_top_k(&self.dense_sel, &self.dense_keys, &self.selected)?;
            device.mask_or(&self.mask, &self.selected)?;
        }
        device.build_pattern(&self.builder, &self.mask, layer.pattern)?;
        // Live links before the update hold the same value in both; only new links differ.
        let weights = match (&self.history, plan.regrown_weights) {
            (Some(h), RegrownWeights::History) => h,
            _ => &self.dense_w,
        };
        device.csr_gather(layer.pattern, weights, layer.values)?;
        for (state, dense) in layer.state.iter().zip(&self.dense_state) {
            device.csr_gather(layer.pattern, dense, state)?;
        }
        Ok(())
    }
}

impl Topology {
    /// Reads every layer's live link count back (one readback per layer; for reports, not for the
    /// update itself). Native only.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn live_links(&self, device: &Device) -> Result<Vec<usize>> {
        // The builder's status holds the count of the last pattern it built: the final one.
        self.layers
            .iter()
            .map(|s| Ok(device.read_u32(&s.builder.status)?[0] as usize))
            .collect()
    }

    /// [`Topology::live_links`] without blocking (the browser).
    pub async fn live_links_async(&self, device: &Device) -> Result<Vec<usize>> {
        let mut out = Vec::with_capacity(self.layers.len());
        for s in &self.layers {
            out.push(device.read_u32_async(&s.builder.status).await?[0] as usize);
        }
        Ok(out)
    }
}

impl Topology {
    /// Reads the masks the last update produced (one readback per layer; for ANP/ITOP reports
    /// every few updates). Native only.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn read_masks(&self, device: &Device) -> Result<Vec<cht_sparse::Mask>> {
        self.layers
            .iter()
            .map(|s| {
                let words = device.read_u32(&s.mask)?;
                let bits = words.iter().map(|&w| w != 0).collect();
                cht_sparse::Mask::from_bools(s.rows, s.cols, bits)
                    .map_err(|e| Error::Config(e.to_string()))
            })
            .collect()
    }

    /// [`Topology::read_masks`] without blocking (the browser).
    pub async fn read_masks_async(&self, device: &Device) -> Result<Vec<cht_sparse::Mask>> {
        let mut out = Vec::with_capacity(self.layers.len());
        for s in &self.layers {
            let words = device.read_u32_async(&s.mask).await?;
            let bits = words.iter().map(|&w| w != 0).collect();
            out.push(
                cht_sparse::Mask::from_bools(s.rows, s.cols, bits)
                    .map_err(|e| Error::Config(e.to_string()))?,
            );
        }
        Ok(out)
    }
}
