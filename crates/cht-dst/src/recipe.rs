//! The paper's training recipes (spec §7.2 MLP, §7.4 LLaMA) as builders over
//! [`DstConfig::preset`]: named setters instead of adjacent step counts, and the per-task rules
//! (`T_end` at ¾ of training, CSTI or BRF topology, the LLM's ζ and weight init) in one place.

use cht_sparse::init::{BrfDegrees, TopologyInit, WeightInit};
use cht_sparse::schedule::ZetaSchedule;

use crate::{ChainRemoval, DstConfig, Method, PairChains, Updates};

/// `⌊¾·total⌋`, computed without overflow: the `T_end` of the paper's runs with adaptive ζ or
/// EM_S (spec §7.1), where topology updates and adaptive schedules stop.
pub fn three_quarters(total: u64) -> u64 {
    total / 4 * 3 + total % 4 * 3 / 4
}

/// The Cannistraci-Hebb methods, which the recipes start from a structured topology.
fn is_ch(method: Method) -> bool {
    matches!(
        method,
        Method::Cht | Method::ChtsP | Method::ChtsN | Method::Chtss
    )
}

/// The paper's MLP image-classification recipe (spec §7.2, Table 4): the method's
/// [`DstConfig::preset`], then
///
/// - ΔT = `steps_per_epoch · update_every_epochs` (one update per epoch by default);
/// - `T_end` = the whole run (`steps_per_epoch · epochs`), or [`three_quarters`] of it when ζ is
///   adaptive (cosine: RigL, CHT, CHTs, CHTss) or EM_S (MEST); the cosine ζ ends there too;
/// - a density decay (GMP, GraNet, CHTss) updates every ΔT and ends at `T_end`;
/// - the CH methods (CHT, CHTs-p, CHTs-n, CHTss) start from CSTI with the hidden/input ratio
///   `csti_dim` (the official README's `--self_correlated_sparse --dim 2`), which needs the
///   input correlation in [`DstScheduler::initial_masks`](crate::DstScheduler::initial_masks);
///   the others keep the preset's Erdős–Rényi topology.
///
/// ζ 0.3, removal, regrowth, chain removal and SWI/Kaiming weights are the preset's. The SGD
/// learning-rate schedule is the trainer's business, not the scheduler's.
///
/// ```
/// use cht_dst::{Method, MlpRecipe};
/// use cht_sparse::init::TopologyInit;
///
/// // CHTs-n at 1 % density, 100 epochs of 1875 steps (MNIST, batch 32), an update per epoch.
/// let config = MlpRecipe::new(Method::ChtsN, 0.01)
///     .epochs(100)
///     .steps_per_epoch(1875)
///     .csti_dim(2)
///     .seed(0)
///     .build();
/// assert_eq!(config.interval, 1875);
/// assert_eq!(config.t_end, 140_625, "¾ of the 187 500 steps: adaptive ζ");
/// assert_eq!(config.topology_init, TopologyInit::Csti { dim: 2 });
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct MlpRecipe {
    method: Method,
    density: f64,
    epochs: u32,
    steps_per_epoch: u64,
    update_every_epochs: u32,
    csti_dim: usize,
    seed: u32,
}

impl MlpRecipe {
    /// The recipe of `method` at `density`, with Table 4's defaults: 100 epochs of 1875 steps
    /// (60 000 MNIST images in batches of 32), an update every epoch, CSTI `dim` 2, seed 0.
    pub fn new(method: Method, density: f64) -> MlpRecipe {
        MlpRecipe {
            method,
            density,
            epochs: 100,
            steps_per_epoch: 1875,
            update_every_epochs: 1,
            csti_dim: 2,
            seed: 0,
        }
    }

    /// Training epochs.
    pub fn epochs(mut self, epochs: u32) -> MlpRecipe {
        self.epochs = epochs;
        self
    }

    /// Optimizer steps per epoch (batches per epoch).
    pub fn steps_per_epoch(mut self, steps: u64) -> MlpRecipe {
        self.steps_per_epoch = steps;
        self
    }

    /// A topology update every this many epochs (1 in the paper).
    pub fn update_every_epochs(mut self, epochs: u32) -> MlpRecipe {
        self.update_every_epochs = epochs;
        self
    }

    /// CSTI's hidden/input width ratio for the CH methods (the MLP's `dim`, at least 1: 2 for
    /// MNIST-like data, 1 for CIFAR10).
    pub fn csti_dim(mut self, dim: usize) -> MlpRecipe {
        self.csti_dim = dim;
        self
    }

    /// Seed of every random draw of the run.
    pub fn seed(mut self, seed: u32) -> MlpRecipe {
        self.seed = seed;
        self
    }

    /// Optimizer steps of the whole run: `steps_per_epoch · epochs`.
    pub fn total_steps(&self) -> u64 {
        self.steps_per_epoch * u64::from(self.epochs)
    }

    /// The scheduler configuration.
    pub fn build(&self) -> DstConfig {
        let total = self.total_steps();
        let interval = self.steps_per_epoch * u64::from(self.update_every_epochs);
        let updates = Updates {
            every: interval,
            until: total,
        };
        let mut c = DstConfig::preset(self.method, self.density, updates, self.seed);
        if matches!(
            c.removal.zeta,
            ZetaSchedule::Cosine { .. } | ZetaSchedule::EmS { .. }
        ) {
            c.t_end = three_quarters(total);
        }
        if let ZetaSchedule::Cosine { t_end, .. } = &mut c.removal.zeta {
            *t_end = c.t_end;
        }
        if let Some(decay) = &mut c.density_decay {
            decay.interval = interval;
            decay.pruning_t_end = c.t_end;
        }
        if is_ch(self.method) {
            c.topology_init = TopologyInit::Csti { dim: self.csti_dim };
        }
        c
    }
}

/// The paper's LLaMA language-modelling recipe (spec §7.4, Table 6, the released LLM scripts):
/// the method's [`DstConfig::preset`], then
///
/// - ΔT = `update_interval` steps (100) and `T_end` = [`three_quarters`] of the run's `steps`
///   (at least 1) for every method; the cosine ζ and any density decay end there too;
/// - ζ = `zeta` (0.1) in the preset's ζ schedule (fixed or cosine; MEST's EM_S has none);
/// - a density decay (CHTss, GMP, GraNet) starts at sparsity `initial_sparsity` (0.5, Table 3);
/// - the CH methods start from BRF with `r` = [`LlmRecipe::BRF_R`] and uniform degrees (the
///   released README); the others keep Erdős–Rényi;
/// - every method's sparse weights are drawn from N(0, [`LlmRecipe::LLAMA_INIT_STD`]), the
///   model's own init that the LLM code keeps (`init_mode xavier`, spec §6.6);
/// - chain removal is off, as the released scripts; [`LlmRecipe::chain_removal`] turns on the
///   pairwise chains of App. F ([`PairChains::llama`] over `blocks` decoder blocks).
///
/// Soft removal keeps the preset's temperature schedule (the scripts' `start_T 1 end_T 9` is
/// [`cht_sparse::schedule::TemperatureSchedule::NewLinear`], set on the result if wanted). The
/// learning rate — warm-up, cosine to 10 % and the iterative warm-up of `iw` steps after each
/// topology update — is not part of the DST configuration: it is `cht_nn::LrSchedule`, with its
/// `update_interval` equal to this ΔT.
///
/// ```
/// use cht_dst::{ChainRemoval, LlmRecipe, Method};
/// use cht_sparse::schedule::ZetaSchedule;
///
/// // LLaMA-60M's CHTss at 90 % sparsity: 10 000 steps, an update every 100.
/// let config = LlmRecipe::new(Method::Chtss, 0.1)
///     .steps(10_000)
///     .update_interval(100)
///     .blocks(8)
///     .seed(0)
///     .build();
/// assert_eq!(config.t_end, 7500);
/// assert_eq!(config.removal.zeta, ZetaSchedule::Cosine { zeta: 0.1, t_end: 7500 });
/// assert_eq!(config.density_decay.unwrap().initial_sparsity, 0.5);
/// assert_eq!(config.chain_removal, ChainRemoval::Off);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct LlmRecipe {
    method: Method,
    density: f64,
    steps: u64,
    update_interval: u64,
    blocks: usize,
    chain_removal: bool,
    zeta: f64,
    initial_sparsity: f64,
    seed: u32,
}

impl LlmRecipe {
    /// HF LLaMA's `initializer_range`: the standard deviation of every projection's initial
    /// weights in the LLM recipe.
    pub const LLAMA_INIT_STD: f64 = 0.02;

    /// BRF's randomness `r` for the CH methods (the released LLM README's `--brf_r 0.3`).
    pub const BRF_R: f64 = 0.3;

    /// The removal fraction ζ of the paper's LLM runs (Table 6).
    pub const ZETA: f64 = 0.1;

    /// Initial sparsity `s_i` of every density decay (Table 3).
    pub const INITIAL_SPARSITY: f64 = 0.5;

    /// The recipe of `method` at `density`, with LLaMA-60M's defaults (Table 6): 10 000 steps,
    /// an update every 100, 8 decoder blocks, chain removal off, ζ [`LlmRecipe::ZETA`], decay from
    /// [`LlmRecipe::INITIAL_SPARSITY`], seed 0.
    pub fn new(method: Method, density: f64) -> LlmRecipe {
        LlmRecipe {
            method,
            density,
            steps: 10_000,
            update_interval: 100,
            blocks: 8,
            chain_removal: false,
            zeta: Self::ZETA,
            initial_sparsity: Self::INITIAL_SPARSITY,
            seed: 0,
        }
    }

    /// Training steps of the whole run; `T_end` is ¾ of them.
    pub fn steps(mut self, steps: u64) -> LlmRecipe {
        self.steps = steps;
        self
    }

    /// ΔT: steps between topology updates (100 in the paper).
    pub fn update_interval(mut self, steps: u64) -> LlmRecipe {
        self.update_interval = steps;
        self
    }

    /// Decoder blocks of the model, whose projections are laid out as [`PairChains::llama`]
    /// expects (only read when chain removal is on).
    pub fn blocks(mut self, blocks: usize) -> LlmRecipe {
        self.blocks = blocks;
        self
    }

    /// Pairwise chain removal (spec §4.2) on or off (off by default, as the released scripts).
    pub fn chain_removal(mut self, on: bool) -> LlmRecipe {
        self.chain_removal = on;
        self
    }

    /// Removal fraction ζ.
    pub fn zeta(mut self, zeta: f64) -> LlmRecipe {
        self.zeta = zeta;
        self
    }

    /// Initial sparsity `s_i` of the density decay of CHTss, GMP and GraNet.
    pub fn initial_sparsity(mut self, sparsity: f64) -> LlmRecipe {
        self.initial_sparsity = sparsity;
        self
    }

    /// Seed of every random draw of the run.
    pub fn seed(mut self, seed: u32) -> LlmRecipe {
        self.seed = seed;
        self
    }

    /// The scheduler configuration.
    pub fn build(&self) -> DstConfig {
        let t_end = three_quarters(self.steps).max(1);
        let updates = Updates {
            every: self.update_interval,
            until: t_end,
        };
        let mut c = DstConfig::preset(self.method, self.density, updates, self.seed);
        let zeta = self.zeta;
        c.removal.zeta = match c.removal.zeta {
            ZetaSchedule::Fixed { .. } => ZetaSchedule::Fixed { zeta },
            ZetaSchedule::Cosine { .. } => ZetaSchedule::Cosine { zeta, t_end },
            em_s @ ZetaSchedule::EmS { .. } => em_s,
        };
        if let Some(decay) = &mut c.density_decay {
            decay.interval = self.update_interval;
            decay.pruning_t_end = t_end;
            decay.initial_sparsity = self.initial_sparsity;
        }
        if is_ch(self.method) {
            c.topology_init = TopologyInit::Brf {
                r: Self::BRF_R,
                degrees: BrfDegrees::Uniform,
            };
        }
        c.weight_init = WeightInit::Normal {
            std: Self::LLAMA_INIT_STD,
        };
        c.chain_removal = if self.chain_removal {
            ChainRemoval::Pairs(PairChains::llama(self.blocks))
        } else {
            ChainRemoval::Off
        };
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `RunConfig::dst_config` of cht-cli before the recipe, up to its per-field overrides.
    fn old_mlp(
        method: Method,
        density: f64,
        epochs: u32,
        steps_per_epoch: u64,
        every: u32,
        dim: usize,
        seed: u32,
    ) -> DstConfig {
        let total = steps_per_epoch * u64::from(epochs);
        let interval = steps_per_epoch * u64::from(every);
        let updates = Updates {
            every: interval,
            until: total,
        };
        let mut c = DstConfig::preset(method, density, updates, seed);
        let adaptive = matches!(
            c.removal.zeta,
            ZetaSchedule::Cosine { .. } | ZetaSchedule::EmS { .. }
        );
        if adaptive {
            c.t_end = total / 4 * 3 + total % 4 * 3 / 4;
        }
        if let ZetaSchedule::Cosine { t_end, .. } = &mut c.removal.zeta {
            *t_end = c.t_end;
        }
        if let Some(decay) = &mut c.density_decay {
            decay.interval = interval;
            decay.pruning_t_end = c.t_end;
        }
        if is_ch(method) {
            c.topology_init = TopologyInit::Csti { dim };
        }
        c
    }

    /// `LmRunConfig::dst_config` of cht-cli before the recipe, with no knob set.
    fn old_llm(
        method: Method,
        density: f64,
        steps: u64,
        interval: u64,
        layers: usize,
        chain: bool,
        seed: u32,
    ) -> DstConfig {
        let t_end = (steps * 3 / 4).max(1);
        let updates = Updates {
            every: interval,
            until: t_end,
        };
        let mut c = DstConfig::preset(method, density, updates, seed);
        let zeta = 0.1;
        c.removal.zeta = match &c.removal.zeta {
            ZetaSchedule::Cosine { .. } => ZetaSchedule::Cosine { zeta, t_end },
            ZetaSchedule::EmS { target_density } => ZetaSchedule::EmS {
                target_density: *target_density,
            },
            ZetaSchedule::Fixed { .. } => ZetaSchedule::Fixed { zeta },
        };
        if let Some(decay) = &mut c.density_decay {
            decay.interval = interval;
            decay.pruning_t_end = t_end;
            decay.initial_sparsity = 0.5;
        }
        if is_ch(method) {
            c.topology_init = TopologyInit::Brf {
                r: 0.3,
                degrees: BrfDegrees::Uniform,
            };
        }
        c.weight_init = WeightInit::Normal { std: 0.02 };
        c.chain_removal = if chain {
            ChainRemoval::Pairs(PairChains::llama(layers))
        } else {
            ChainRemoval::Off
        };
        c
    }

    #[test]
    fn three_quarters_is_the_floor() {
        for total in [0, 1, 2, 3, 4, 5, 7, 1000, 1001, 1003, 187_500] {
            assert_eq!(three_quarters(total), total * 3 / 4, "{total}");
        }
        assert_eq!(
            three_quarters(u64::MAX),
            (u128::from(u64::MAX) * 3 / 4) as u64
        );
    }

    #[test]
    fn mlp_recipe_reproduces_the_cli() {
        let methods = [
            Method::ChtsN,
            Method::Set,
            Method::RigL,
            Method::Chtss,
            Method::Mest,
            Method::Cht,
            Method::Gmp,
        ];
        // (epochs, steps per epoch, update every, dim): 7·3 = 21 steps is not a multiple of 4.
        let sizes = [
            (100, 1875, 1, 2),
            (7, 3, 1, 1),
            (10, 101, 3, 3),
            (1, 1, 1, 2),
        ];
        for method in methods {
            for (epochs, steps, every, dim) in sizes {
                let recipe = MlpRecipe::new(method, 0.05)
                    .epochs(epochs)
                    .steps_per_epoch(steps)
                    .update_every_epochs(every)
                    .csti_dim(dim)
                    .seed(11);
                let old = old_mlp(method, 0.05, epochs, steps, every, dim, 11);
                assert_eq!(recipe.build(), old, "{method:?} {epochs}×{steps}/{every}");
                assert_eq!(recipe.total_steps(), steps * u64::from(epochs));
            }
        }
        let c = MlpRecipe::new(Method::RigL, 0.1)
            .epochs(7)
            .steps_per_epoch(3)
            .build();
        assert_eq!((c.interval, c.t_end), (3, 15), "⌊¾·21⌋");
        assert_eq!(
            c.removal.zeta,
            ZetaSchedule::Cosine {
                zeta: 0.3,
                t_end: 15
            }
        );
        let set = MlpRecipe::new(Method::Set, 0.1)
            .epochs(7)
            .steps_per_epoch(3)
            .build();
        assert_eq!(set.t_end, 21, "fixed ζ updates to the end");
        assert_eq!(set.topology_init, TopologyInit::ErdosRenyi);
        let chtss = MlpRecipe::new(Method::Chtss, 0.1).csti_dim(1).build();
        let decay = chtss.density_decay.unwrap();
        assert_eq!((decay.interval, decay.pruning_t_end), (1875, 140_625));
        assert_eq!(chtss.topology_init, TopologyInit::Csti { dim: 1 });
    }

    #[test]
    fn llm_recipe_reproduces_the_cli() {
        for method in [
            Method::ChtsN,
            Method::Chtss,
            Method::Set,
            Method::Mest,
            Method::GraNet,
        ] {
            for (steps, interval, layers, chain) in [
                (1000, 100, 4, false),
                (1500, 100, 4, true),
                (1003, 7, 2, true),
                (1, 1, 1, false),
            ] {
                let recipe = LlmRecipe::new(method, 0.1)
                    .steps(steps)
                    .update_interval(interval)
                    .blocks(layers)
                    .chain_removal(chain)
                    .seed(3);
                let old = old_llm(method, 0.1, steps, interval, layers, chain, 3);
                assert_eq!(recipe.build(), old, "{method:?} {steps}/{interval}");
            }
        }
        let c = LlmRecipe::new(Method::ChtsN, 0.1).steps(1000).build();
        assert_eq!((c.interval, c.t_end), (100, 750));
        assert_eq!(
            c.removal.zeta,
            ZetaSchedule::Cosine {
                zeta: 0.1,
                t_end: 750
            }
        );
        assert_eq!(c.weight_init, WeightInit::Normal { std: 0.02 });
        assert!(matches!(c.topology_init, TopologyInit::Brf { r: 0.3, .. }));
        let c = LlmRecipe::new(Method::Chtss, 0.1)
            .zeta(0.2)
            .initial_sparsity(0.6)
            .build();
        assert_eq!(
            c.removal.zeta,
            ZetaSchedule::Cosine {
                zeta: 0.2,
                t_end: 7500
            }
        );
        assert_eq!(c.density_decay.unwrap().initial_sparsity, 0.6);
        let set = LlmRecipe::new(Method::Set, 0.1).chain_removal(true).build();
        assert_eq!(set.removal.zeta, ZetaSchedule::Fixed { zeta: 0.1 });
        assert_eq!(set.chain_removal, ChainRemoval::Pairs(PairChains::llama(8)));
        assert_eq!(set.topology_init, TopologyInit::ErdosRenyi);
    }
}
