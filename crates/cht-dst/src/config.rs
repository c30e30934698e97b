//! The policies of a DST run and the paper's presets.

use cht_sparse::init::{TopologyInit, WeightInit};
use cht_sparse::predict::Predictor;
use cht_sparse::schedule::{DensityDecay, TemperatureSchedule, UpdateBoundary, ZetaSchedule};
use serde::{Deserialize, Serialize};

/// The method a configuration implements (for reports; the fields below decide behaviour).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Method {
    /// Fully connected: no sparsity, no updates.
    Fc,
    /// SET: magnitude removal, random regrowth.
    Set,
    /// RigL: magnitude removal, gradient regrowth, cosine ζ.
    RigL,
    /// MEST (EM&S): |W| + 0.01·|G| removal, random regrowth, elastic density.
    Mest,
    /// GMP: gradual magnitude pruning only (cubic).
    Gmp,
    /// GraNet: cubic pruning, magnitude removal, gradient regrowth.
    GraNet,
    /// CHT (ICLR'24): hard removal, CH3-L3p top-k regrowth, chain removal.
    Cht,
    /// CHTs with the exact path-based predictor (CH3-L3p).
    ChtsP,
    /// CHTs with the node-based predictor (CH2-L3n).
    ChtsN,
    /// CHTss: CHTs-n plus sigmoid density decay.
    Chtss,
}

/// Hard top-k or soft sampling.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Selection {
    /// Deterministic top-k (zero-score ties in random order).
    Hard,
    /// Sampling without replacement (removal: `p ∝ score^T` with the temperature schedule;
    /// regrowth: `p ∝ score`, with the ε fallback of spec §3.4).
    Soft,
}

/// Link removal (spec §2). Built by [`Removal::new`] or taken from a [`DstConfig`] preset and
/// edited field by field (`#[non_exhaustive]`: fields may be added).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Removal {
    /// Score of a link.
    pub score: RemovalScoreKind,
    /// Keep the top-scored links, or sample them.
    pub selection: Selection,
    /// Temperature of soft removal.
    pub temperature: TemperatureSchedule,
    /// Removal fraction ζ per update.
    pub zeta: ZetaSchedule,
}

impl Removal {
    /// Removal by `score` with `selection`, removing the fraction `zeta` per update; soft
    /// removal uses the paper's temperature schedule ([`TemperatureSchedule::Paper`]).
    pub fn new(score: RemovalScoreKind, selection: Selection, zeta: ZetaSchedule) -> Removal {
        Removal {
            score,
            selection,
            temperature: TemperatureSchedule::Paper,
            zeta,
        }
    }
}

/// Removal scores available on the device.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum RemovalScoreKind {
    /// `|W|`.
    WeightMagnitude,
    /// Relative importance with ε = 1e-5 added once.
    RelativeImportance,
    /// `|W| + factor·|G|`.
    Mest {
        /// 0.01 in the official code.
        factor: f32,
    },
}

/// Candidate scores for regrowth (spec §3.2).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum RegrowScores {
    /// Uniform random (SET, MEST).
    Random,
    /// Magnitude of the dense gradient (RigL, GraNet); the caller passes it at update steps.
    Gradient,
    /// Cannistraci-Hebb link prediction on the post-removal mask.
    LinkPrediction(Predictor),
}

/// Link regrowth (spec §3). Built by [`Regrowth::new`], then edited field by field
/// (`#[non_exhaustive]`: fields may be added).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Regrowth {
    /// Candidate scores.
    pub scores: RegrowScores,
    /// Sampled or top-k.
    pub selection: Selection,
    /// Node-based predictors (L3n): density above which the scores are computed through dense
    /// products instead of the sparse walk ([`cht_sparse::predict::L3nPath`]). Both give the same
    /// bits, so this only changes speed; the default is the crossover measured on a 2-core CPU
    /// ([`cht_sparse::predict::L3N_DENSE_ABOVE`]). 1 keeps the walk, 0 takes the products
    /// whenever they fit. Configs saved without it load with the default.
    #[serde(default = "default_l3n_dense_above")]
    pub l3n_dense_above: f64,
}

impl Regrowth {
    /// Regrowth by `scores` with `selection` and the default L3n crossover.
    pub fn new(scores: RegrowScores, selection: Selection) -> Regrowth {
        Regrowth {
            scores,
            selection,
            l3n_dense_above: default_l3n_dense_above(),
        }
    }
}

fn default_l3n_dense_above() -> f64 {
    cht_sparse::predict::L3N_DENSE_ABOVE
}

/// Initial value of regrown links (spec §3.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum RegrownWeights {
    /// New links start at 0; a link removed and regrown in the same update keeps its old weight and
    /// optimizer state (both official codes).
    #[default]
    KeepIfRemoved,
    /// Every regrown link starts at 0, including removed-and-regrown ones.
    Zero,
    /// Historical weights (paper App. J, [OLD-MLP] `--history_weights`): a regrown link starts
    /// from the value it had when it was last live (0 if it never was), its optimizer state as
    /// `KeepIfRemoved`. Costs one dense `[rows, cols]` buffer per layer, saved in checkpoints.
    History,
}

/// How the global density is spread over the sparse layers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum DensityDistribution {
    /// Every layer at the same density (the paper).
    #[default]
    Uniform,
    /// Erdős–Rényi-Kernel (RigL): density ∝ (in + out)/(in·out), the same total number of links.
    Erk,
}

/// Chain removal / network percolation (spec §4).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChainRemoval {
    /// No percolation.
    Off,
    /// The sparse layers form one sequential chain (MLP, §4.1).
    Sequential,
    /// Pairwise chains between named layers (Transformer / LLaMA, §4.2): all qk pairs first, then
    /// all producer → consumer pairs.
    Pairs(PairChains),
}

/// The layer pairs of pairwise chain removal (spec §4.2), as indices into the scheduler's layers.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairChains {
    /// `(a, b)` whose outputs are combined (dot product or elementwise): output `i` survives only
    /// if both produce it.
    pub qk: Vec<(usize, usize)>,
    /// `(producer, consumer)`: the producer's outputs are the consumer's inputs.
    pub chain: Vec<(usize, usize)>,
}

impl PairChains {
    /// The LLaMA pairs for `blocks` decoder blocks whose 7 projections are laid out block by
    /// block as q, k, v, o, gate, up, down: qk pairs `(k, q)`, `(gate, up)`; chain pairs
    /// `(v, o)`, `(gate, down)`, `(up, down)`.
    pub fn llama(blocks: usize) -> PairChains {
        let (mut qk, mut chain) = (Vec::new(), Vec::new());
        for b in 0..blocks {
            let at = |j: usize| 7 * b + j;
            qk.extend([(at(1), at(0)), (at(4), at(5))]);
            chain.extend([(at(2), at(3)), (at(4), at(6)), (at(5), at(6))]);
        }
        PairChains { qk, chain }
    }

    /// Checks that every pair names two different layers of these `(rows, cols)` shapes that
    /// fit: qk pairs have equal rows, a producer's rows are its consumer's columns.
    pub fn check(&self, shapes: &[(usize, usize)]) -> crate::Result<()> {
        let n = shapes.len();
        let pairs = self
            .qk
            .iter()
            .map(|p| (p, "qk"))
            .chain(self.chain.iter().map(|p| (p, "chain")));
        for (&(a, b), what) in pairs {
            if a >= n || b >= n || a == b {
                return Err(crate::Error::Config(format!(
                    "chain_removal: {what} pair ({a}, {b}) does not name two of the {n} layers"
                )));
            }
            let fits = if what == "qk" {
                shapes[a].0 == shapes[b].0
            } else {
                shapes[a].0 == shapes[b].1
            };
            if !fits {
                return Err(crate::Error::Config(format!(
                    "chain_removal: {what} pair ({a}, {b}) joins layers of shapes {:?} and {:?}",
                    shapes[a], shapes[b]
                )));
            }
        }
        Ok(())
    }
}

/// Everything that decides how a run's topology evolves.
///
/// Start from a method's [`DstConfig::preset`] (or an [`MlpRecipe`](crate::MlpRecipe) /
/// [`LlmRecipe`](crate::LlmRecipe)) and assign the fields to change; the struct is
/// `#[non_exhaustive]`, so fields can be added without breaking callers.
///
/// ```rust
/// use cht_dst::{DstConfig, Method, Updates};
///
/// let mut config = DstConfig::preset(Method::ChtsN, 0.1, Updates::every(100).until(7500), 0);
/// config.seed = 7;
/// config.validate()?;
/// # Ok::<(), cht_dst::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct DstConfig {
    /// Which method this is.
    pub method: Method,
    /// Target density of the sparse layers (1 = fully connected).
    pub density: f64,
    /// How that density is spread over the layers.
    pub distribution: DensityDistribution,
    /// Removal rule.
    pub removal: Removal,
    /// Regrowth rule (`None`: prune only, as GMP).
    pub regrowth: Option<Regrowth>,
    /// Percolation after removal.
    pub chain_removal: ChainRemoval,
    /// Initial value of regrown links.
    pub regrown_weights: RegrownWeights,
    /// Gradual density decay (CHTss, GMP, GraNet), or constant density.
    pub density_decay: Option<DensityDecay>,
    /// Score of the decay's pruning step (relative importance for CHTss, magnitude otherwise).
    pub prune_score: RemovalScoreKind,
    /// ΔT: optimizer steps between topology updates.
    pub interval: u64,
    /// Last step at which updates happen (`T_end`).
    pub t_end: u64,
    /// Whether `T_end` itself may be an update step.
    pub boundary: UpdateBoundary,
    /// Sparse topology initialisation.
    pub topology_init: TopologyInit,
    /// Weight initialisation.
    pub weight_init: WeightInit,
    /// Seed of every random draw of the run.
    pub seed: u32,
}

/// When topology updates happen: every `every` optimizer steps (ΔT), until step `until`
/// (`T_end`). Named fields, so that the two step counts cannot be swapped by accident.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Updates {
    /// ΔT: optimizer steps between topology updates (at least 1).
    pub every: u64,
    /// `T_end`: the last step at which updates may happen; also the end of the adaptive ζ cosine
    /// and of a density decay.
    pub until: u64,
}

impl Updates {
    /// Updates every `steps` optimizer steps, with no end (`until` = `u64::MAX`); chain
    /// [`Updates::until`] to set `T_end`: `Updates::every(100).until(7500)`.
    pub const fn every(steps: u64) -> Updates {
        Updates {
            every: steps,
            until: u64::MAX,
        }
    }

    /// These updates, ending at step `step` (`T_end`).
    pub const fn until(self, step: u64) -> Updates {
        Updates {
            until: step,
            ..self
        }
    }
}

impl DstConfig {
    /// The method's preset at `density`, with updates every `updates.every` steps until
    /// `updates.until` (spec §3.2 baselines): ζ 0.3, Erdős–Rényi topology and Kaiming weights
    /// for the baselines; CHT adds hard CH3-L3p regrowth, chain removal, CSTI (`dim` 2) and SWI;
    /// CHTs uses soft WM removal with the paper's temperature schedule δ 0.5→0.9, soft CH
    /// regrowth, chain removal, Erdős–Rényi topology and SWI; CHTss adds sigmoid decay from 50 %
    /// sparsity with the half-step rule. Adaptive ζ and decays run to `updates.until` as given.
    ///
    /// The paper's per-task recipes on top of this — T_end at ¾ of training for adaptive ζ,
    /// CSTI for the MLP's CH methods, ζ 0.1 and BRF topology for LLaMA — are
    /// [`MlpRecipe`](crate::MlpRecipe) and [`LlmRecipe`](crate::LlmRecipe).
    pub fn preset(method: Method, density: f64, updates: Updates, seed: u32) -> DstConfig {
        let Updates {
            every: interval,
            until: t_end,
        } = updates;
        let zeta = 0.3;
        let hard_wm = Removal::new(
            RemovalScoreKind::WeightMagnitude,
            Selection::Hard,
            ZetaSchedule::Fixed { zeta },
        );
        let cosine = ZetaSchedule::Cosine { zeta, t_end };
        let soft_wm = Removal {
            selection: Selection::Soft,
            zeta: cosine.clone(),
            ..hard_wm.clone()
        };
        let regrow = |scores, selection| Some(Regrowth::new(scores, selection));
        let base = DstConfig {
            method,
            density,
            distribution: DensityDistribution::Uniform,
            removal: hard_wm.clone(),
            regrowth: regrow(RegrowScores::Random, Selection::Hard),
            chain_removal: ChainRemoval::Off,
            regrown_weights: RegrownWeights::KeepIfRemoved,
            density_decay: None,
            prune_score: RemovalScoreKind::WeightMagnitude,
            interval,
            t_end,
            boundary: UpdateBoundary::BeforeEnd,
            topology_init: TopologyInit::ErdosRenyi,
            weight_init: WeightInit::Kaiming,
            seed,
        };
        let cubic = |from: f64| DensityDecay {
            schedule: cht_sparse::schedule::DensitySchedule::Cubic,
            initial_sparsity: from,
            final_sparsity: 1.0 - density,
            interval,
            pruning_t_end: t_end,
            init_step: 0,
        };
        let ch = |predictor| RegrowScores::LinkPrediction(predictor);
        match method {
            Method::Fc => DstConfig {
                density: 1.0,
                regrowth: None,
                ..base
            },
            Method::Set => base,
            Method::RigL => DstConfig {
                removal: Removal {
                    zeta: cosine,
                    ..hard_wm
                },
                regrowth: regrow(RegrowScores::Gradient, Selection::Hard),
                ..base
            },
            Method::Mest => DstConfig {
                removal: Removal {
                    score: RemovalScoreKind::Mest { factor: 0.01 },
                    zeta: ZetaSchedule::EmS {
                        target_density: density,
                    },
                    ..hard_wm
                },
                ..base
            },
            Method::Gmp => DstConfig {
                regrowth: None,
                density_decay: Some(cubic(0.0)),
                ..base
            },
            Method::GraNet => DstConfig {
                regrowth: regrow(RegrowScores::Gradient, Selection::Hard),
                density_decay: Some(cubic(0.5)),
                ..base
            },
            Method::Cht => DstConfig {
                removal: Removal {
                    zeta: cosine,
                    ..hard_wm
                },
                regrowth: regrow(ch(Predictor::Ch3L3p), Selection::Hard),
                chain_removal: ChainRemoval::Sequential,
                topology_init: TopologyInit::Csti { dim: 2 },
                weight_init: WeightInit::Swi {
                    variant: Default::default(),
                },
                ..base
            },
            Method::ChtsP | Method::ChtsN | Method::Chtss => {
                let predictor = if method == Method::ChtsP {
                    Predictor::Ch3L3p
                } else {
                    Predictor::Ch2L3n
                };
                DstConfig {
                    removal: soft_wm,
                    regrowth: regrow(ch(predictor), Selection::Soft),
                    chain_removal: ChainRemoval::Sequential,
                    density_decay: (method == Method::Chtss).then(|| DensityDecay {
                        schedule: cht_sparse::schedule::DensitySchedule::chtss(),
                        ..cubic(0.5)
                    }),
                    prune_score: if method == Method::Chtss {
                        RemovalScoreKind::RelativeImportance
                    } else {
                        RemovalScoreKind::WeightMagnitude
                    },
                    weight_init: WeightInit::Swi {
                        variant: Default::default(),
                    },
                    ..base
                }
            }
        }
    }

    /// Density of the sparse layers at step `t` (the decay schedule, or the constant target).
    pub fn density_at(&self, t: u64) -> crate::Result<f64> {
        match &self.density_decay {
            Some(d) => Ok(d.density(t)?),
            None => Ok(self.density),
        }
    }

    /// Checks the values a user may have edited.
    pub fn validate(&self) -> crate::Result<()> {
        let bad = |m: String| Err(crate::Error::Config(m));
        if !(self.density > 0.0 && self.density <= 1.0) {
            return bad(format!("density must be in (0, 1], got {}", self.density));
        }
        if self.interval == 0 {
            return bad("interval (ΔT) must be at least 1".into());
        }
        if let Some(d) = &self.density_decay {
            d.validate()?;
        }
        let crossover = self.regrowth.as_ref().map_or(0.0, |r| r.l3n_dense_above);
        if crossover.is_nan() || crossover < 0.0 {
            return bad(format!(
                "regrowth.l3n_dense_above must be a density ≥ 0, got {crossover}"
            ));
        }
        // The schedules are evaluated at the start, the middle and the end of the updates, so
        // that a bad removal temperature or ζ is reported now rather than at the first update.
        let sparsity = 1.0 - self.density;
        for t in [0, self.interval, self.t_end / 2, self.t_end] {
            let temperature = self.removal.temperature.temperature(t, self.t_end)?;
            if !(temperature.is_finite() && temperature > 0.0) {
                return bad(format!(
                    "the removal temperature must be positive and finite, it is {temperature} at step {t}"
                ));
            }
            self.removal.zeta.zeta(t, sparsity)?;
        }
        Ok(())
    }
}
