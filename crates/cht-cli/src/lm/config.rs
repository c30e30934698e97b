//! The run configuration of `cht lm train`: a TOML file (see `configs/lm-*.toml`), `--set
//! key=value` overrides and strict validation, sharing the loader of `cht train`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use cht_data::TokenizerKind;
use cht_dst::{DstConfig, LlmRecipe, RegrownWeights, Regrowth, Selection};
use cht_nn::{LmConfig, LrSchedule};
use cht_sparse::init::{TopologyInit, WeightInit};
use cht_sparse::schedule::{TemperatureSchedule, ZetaSchedule};
use serde::{Deserialize, Serialize};

use crate::train::config::{MethodName, RemovalScoreName, ZetaKind, load_toml, parse_toml};

/// Everything a language-model run needs. Unknown keys are errors.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LmRunConfig {
    /// The corpus.
    pub data: LmData,
    /// The model.
    #[serde(default)]
    pub model: LmModel,
    /// Optimisation and bookkeeping.
    #[serde(default)]
    pub train: LmTrain,
    /// Dynamic sparse training.
    pub dst: LmDst,
    /// What the run records besides `metrics.jsonl` (TensorBoard, CSV).
    #[serde(default)]
    pub log: crate::logs::LogConfig,
}

/// Which text.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LmData {
    /// A text file, e.g. `../shared/data/tinyshakespeare/input.txt`.
    pub corpus: PathBuf,
    /// `"char"` (one token per character), `"bpe"` (byte-level BPE learnt on the training part
    /// with the Hugging Face tokenizers library, trained once and cached next to the corpus as
    /// `<corpus>.cht-tokenizer-<hash>.json`) or `"file"` (the `tokenizer.json` at
    /// `tokenizer_file`).
    #[serde(default = "char_level")]
    pub tokenizer: TokenizerKind,
    /// BPE vocabulary size (256 bytes plus merges).
    #[serde(default = "bpe_vocab")]
    pub bpe_vocab: usize,
    /// A `tokenizer.json` written by the Hugging Face tokenizers library (with `tokenizer =
    /// "file"` only), relative to the working directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokenizer_file: Option<PathBuf>,
    /// The last fraction of the text held out for validation (0.1: a 90/10 split).
    #[serde(default = "val_fraction")]
    pub val_fraction: f64,
}

/// LLaMA-style decoder shape (spec §7.4).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LmModel {
    /// Width.
    pub d_model: usize,
    /// Attention heads.
    pub heads: usize,
    /// SwiGLU width.
    pub ffn: usize,
    /// Decoder blocks.
    pub layers: usize,
    /// Context length.
    pub seq: usize,
    /// Biases on the seven projections and the LM head. LLaMA (and the paper's models) have none;
    /// cht runs before 2026-11-30 had them, and their checkpoints still resume with them.
    pub bias: bool,
    /// Density above which sparse projections run as masked-dense GEMMs instead of CSR: `"auto"`
    /// (measured once per adapter and shape, cached; the run records the value), `"never"`, or a
    /// density.
    pub masked_dense_above: crate::execution::MaskedDenseAbove,
}

impl Default for LmModel {
    fn default() -> Self {
        LmModel {
            d_model: 128,
            heads: 4,
            ffn: 352,
            layers: 4,
            seq: 128,
            bias: false,
            masked_dense_above: crate::execution::MaskedDenseAbove::default(),
        }
    }
}

/// Adam, the LLM learning-rate schedule, evaluation and logging.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LmTrain {
    /// Training steps.
    pub steps: u64,
    /// Sequences per step.
    pub batch: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Linear warm-up steps.
    pub warmup: u64,
    /// Iterative warm-up after each topology update (spec §7.4; 0 disables it).
    pub iterative_warmup: u64,
    /// Adam β1.
    pub beta1: f32,
    /// Adam β2.
    pub beta2: f32,
    /// Adam ε.
    pub eps: f32,
    /// Decoupled weight decay (0 in the paper's LLM recipe).
    pub weight_decay: f32,
    /// Global gradient-norm clipping (0 disables it).
    pub clip: f32,
    /// Seed of initialisation, batches and every topology draw.
    pub seed: u32,
    /// Steps between loss readbacks (progress bar and the training loss in metrics).
    pub log_every: u64,
    /// Steps between validation passes (over the whole validation part).
    pub eval_every: u64,
    /// Steps between checkpoints (and always at the end).
    pub checkpoint_every: u64,
}

impl Default for LmTrain {
    fn default() -> Self {
        LmTrain {
            steps: 1500,
            batch: 16,
            lr: 3e-3,
            warmup: 150,
            iterative_warmup: 20,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            clip: 1.0,
            seed: 0,
            log_every: 50,
            eval_every: 250,
            checkpoint_every: 500,
        }
    }
}

/// The method and its knobs; unset knobs come from the method's LLM recipe (spec §7.4).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LmDst {
    /// fc, set, rigl, mest, gmp, granet, cht, chts (= chts-n), chtss (= chtss-n), chts-p.
    pub method: MethodName,
    /// Density of the q, k, v, o, gate, up, down projections (0.1 = 90 % sparsity).
    pub density: f64,
    /// ΔT: steps between topology updates (100 in the paper).
    #[serde(default = "update_interval")]
    pub update_interval: u64,
    /// Removal fraction ζ (0.1 in the paper's LLM runs).
    pub zeta: Option<f64>,
    /// `"fixed"`, `"cosine"` (adaptive ζ, the CH methods' default) or `"em-s"`.
    pub zeta_schedule: Option<ZetaKind>,
    /// Removal selection: `"Soft"` or `"Hard"`.
    pub removal: Option<Selection>,
    /// Soft-removal temperature schedule (default `"Paper"`: δ 0.5 → 0.9; the released LLM
    /// scripts use `{ NewLinear = { start_t = 1.0, end_t = 9.0 } }`).
    pub temperature: Option<TemperatureSchedule>,
    /// Pairwise chain removal (spec §4.2: qk pairs (k, q), (gate, up); chain pairs (v, o),
    /// (gate, down), (up, down)). Off by default, as the released LLM scripts; the paper's App. F
    /// describes it on.
    pub chain_removal: Option<bool>,
    /// Initial topology (default: BRF `r = 0.3`, uniform degrees for the CH methods, as the
    /// released LLM README; Erdős–Rényi for the others). App. H's `r = 0.1` was worse at the small
    /// model's scale (docs/RESULTS.md).
    pub topology_init: Option<TopologyInit>,
    /// Weight initialisation of the sparse projections (default `{ Normal = { std = 0.02 } }`, HF
    /// LLaMA's own init, which the LLM code keeps for every method; e.g. `{ Swi = { variant =
    /// "FanIn" } }` for the MLP recipe's SWI).
    pub weight_init: Option<WeightInit>,
    /// Initial value of regrown links: `"KeepIfRemoved"` (default), `"Zero"` or `"History"`.
    pub regrown_weights: Option<RegrownWeights>,
    /// Removal score: `"WeightMagnitude"` (default) or `"RelativeImportance"`.
    pub removal_score: Option<RemovalScoreName>,
    /// Regrowth rule, e.g. `{ scores = "Random", selection = "Hard" }` or
    /// `{ scores = { LinkPrediction = "Ch3L3n" }, selection = "Soft" }` (ablations).
    pub regrowth: Option<Regrowth>,
    /// Initial sparsity `s_i` of the density decay of CHTss, GMP and GraNet (default 0.5, as the
    /// paper's Table 3 for all three).
    pub initial_sparsity: Option<f64>,
}

/// HF LLaMA's `initializer_range`, the recipe's ([`LlmRecipe::LLAMA_INIT_STD`]).
pub const LLAMA_INIT_STD: f64 = LlmRecipe::LLAMA_INIT_STD;

fn char_level() -> TokenizerKind {
    TokenizerKind::Char
}

fn bpe_vocab() -> usize {
    1024
}

fn val_fraction() -> f64 {
    0.1
}

fn update_interval() -> u64 {
    100
}

impl LmRunConfig {
    /// Reads a TOML file with `key=value` overrides and validates it.
    pub fn load(path: &Path, overrides: &[String]) -> Result<LmRunConfig> {
        let config: LmRunConfig = load_toml(path, overrides)?;
        config
            .validate()
            .with_context(|| path.display().to_string())?;
        Ok(config)
    }

    /// [`LmRunConfig::load`] on text (a checkpoint's copy); `origin` names it in errors.
    pub fn parse(text: &str, origin: &str, overrides: &[String]) -> Result<LmRunConfig> {
        let config: LmRunConfig = parse_toml(text, origin, overrides)?;
        config.validate().with_context(|| origin.to_owned())?;
        Ok(config)
    }

    /// Checks values serde cannot.
    pub fn validate(&self) -> Result<()> {
        let (m, t, d) = (&self.model, &self.train, &self.dst);
        let checks: [(bool, &str); 10] = [
            (
                m.d_model > 0 && m.heads > 0 && m.d_model.is_multiple_of(m.heads),
                "model.d_model must be a positive multiple of model.heads",
            ),
            (
                m.d_model / m.heads.max(1) <= 128 && m.d_model / m.heads.max(1) >= 1,
                "model.d_model / model.heads (the head width) must be at most 128",
            ),
            (
                m.ffn > 0 && m.layers > 0 && m.seq > 0,
                "model.ffn, model.layers and model.seq must be positive",
            ),
            (
                t.steps >= 1 && t.batch >= 1,
                "train.steps and train.batch must be at least 1",
            ),
            (t.lr.is_finite() && t.lr > 0.0, "train.lr must be positive"),
            (
                (0.0..1.0).contains(&t.beta1)
                    && (0.0..1.0).contains(&t.beta2)
                    && t.eps.is_finite()
                    && t.eps > 0.0,
                "train.beta1 and train.beta2 must be in [0, 1) and train.eps positive",
            ),
            (
                t.weight_decay.is_finite()
                    && t.weight_decay >= 0.0
                    && t.clip.is_finite()
                    && t.clip >= 0.0,
                "train.weight_decay and train.clip must be finite and not negative",
            ),
            (
                t.log_every >= 1 && t.eval_every >= 1 && t.checkpoint_every >= 1,
                "train.log_every, eval_every and checkpoint_every must be at least 1",
            ),
            (
                d.density > 0.0 && d.density <= 1.0,
                "dst.density must be in (0, 1]",
            ),
            (
                d.update_interval >= 1,
                "dst.update_interval must be at least 1",
            ),
        ];
        for (ok, msg) in checks {
            if !ok {
                bail!("invalid configuration: {msg}");
            }
        }
        if let Some(z) = d.zeta
            && !(0.0..=1.0).contains(&z)
        {
            bail!("invalid configuration: dst.zeta must be in [0, 1], got {z}");
        }
        if let Some(s) = d.initial_sparsity
            && (!(0.0..1.0).contains(&s) || s > 1.0 - d.density)
        {
            bail!(
                "invalid configuration: dst.initial_sparsity must be in [0, 1 − density], got {s}"
            );
        }
        if self.data.tokenizer == TokenizerKind::Bpe
            && !(257..=65_536).contains(&self.data.bpe_vocab)
        {
            bail!("invalid configuration: data.bpe_vocab must be in 257..=65536");
        }
        match (self.data.tokenizer, &self.data.tokenizer_file) {
            (TokenizerKind::File, None) => bail!(
                "invalid configuration: data.tokenizer = \"file\" needs data.tokenizer_file, the \
                 path of a tokenizer.json"
            ),
            (TokenizerKind::Char | TokenizerKind::Bpe, Some(_)) => bail!(
                "invalid configuration: data.tokenizer_file is only read with data.tokenizer = \
                 \"file\""
            ),
            _ => {}
        }
        if !(self.data.val_fraction > 0.0 && self.data.val_fraction < 1.0) {
            bail!("invalid configuration: data.val_fraction must be in (0, 1)");
        }
        self.dst_config()
            .validate()
            .map_err(|e| anyhow::anyhow!("invalid configuration: dst: {e}"))?;
        Ok(())
    }

    /// Whether the run is fully connected.
    pub fn dense(&self) -> bool {
        self.dst.method == MethodName::Fc
    }

    /// The model for a vocabulary of `vocab` tokens.
    pub fn lm_config(&self, vocab: usize) -> LmConfig {
        let m = &self.model;
        let mut config = LmConfig::default();
        config.vocab = vocab;
        config.d_model = m.d_model;
        config.heads = m.heads;
        config.ffn = m.ffn;
        config.layers = m.layers;
        config.seq = m.seq;
        config.batch = self.train.batch;
        config.density = if self.dense() { 1.0 } else { self.dst.density };
        config.seed = self.train.seed;
        config.bias = m.bias;
        config
    }

    /// The learning-rate schedule: warm-up, cosine to 10 %, and the iterative warm-up after each
    /// topology update (sparse runs only).
    pub fn lr_schedule(&self) -> LrSchedule {
        let t = &self.train;
        LrSchedule {
            base: t.lr,
            warmup: t.warmup,
            total: t.steps,
            update_interval: self.dst.update_interval,
            iterative_warmup: if self.dense() { 0 } else { t.iterative_warmup },
        }
    }

    /// The scheduler configuration: the paper's LLM recipe ([`LlmRecipe`], spec §7.4: ζ 0.1, ΔT,
    /// `T_end` at 75 %, BRF for the CH methods, N(0, 0.02) weights, no chain removal), then the
    /// knobs.
    pub fn dst_config(&self) -> DstConfig {
        let d = &self.dst;
        let zeta = d.zeta.unwrap_or(LlmRecipe::ZETA);
        let mut c = LlmRecipe::new(d.method.method(), d.density)
            .steps(self.train.steps)
            .update_interval(d.update_interval)
            .blocks(self.model.layers)
            .chain_removal(d.chain_removal == Some(true))
            .zeta(zeta)
            .initial_sparsity(d.initial_sparsity.unwrap_or(LlmRecipe::INITIAL_SPARSITY))
            .seed(self.train.seed)
            .build();
        if let Some(kind) = d.zeta_schedule {
            c.removal.zeta = match kind {
                ZetaKind::Fixed => ZetaSchedule::Fixed { zeta },
                ZetaKind::Cosine => ZetaSchedule::Cosine {
                    zeta,
                    t_end: c.t_end,
                },
                ZetaKind::EmS => ZetaSchedule::EmS {
                    target_density: d.density,
                },
            };
        }
        if let Some(s) = d.removal {
            c.removal.selection = s;
        }
        if let Some(t) = &d.temperature {
            c.removal.temperature = t.clone();
        }
        if let Some(t) = &d.topology_init {
            c.topology_init = t.clone();
        }
        if let Some(w) = &d.weight_init {
            c.weight_init = w.clone();
        }
        if let Some(r) = d.regrown_weights {
            c.regrown_weights = r;
        }
        if let Some(r) = d.removal_score {
            c.removal.score = r.kind();
        }
        if let Some(r) = &d.regrowth {
            c.regrowth = Some(r.clone());
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cht_dst::{ChainRemoval, Method};

    fn write(text: &str, n: usize) -> PathBuf {
        let path =
            std::env::temp_dir().join(format!("cht-lm-config-{}-{n}.toml", std::process::id()));
        std::fs::write(&path, text).unwrap();
        path
    }

    const GOOD: &str = "[data]\ncorpus = \"input.txt\"\n[dst]\nmethod = \"chtss\"\ndensity = 0.1\n";

    #[test]
    fn presets_follow_the_llm_recipe() {
        let p = write(GOOD, 0);
        let c = LmRunConfig::load(&p, &["train.steps=1000".into()]).unwrap();
        let d = c.dst_config();
        assert_eq!(d.method, Method::Chtss);
        assert_eq!(d.interval, 100);
        assert_eq!(d.t_end, 750);
        assert_eq!(
            d.removal.zeta,
            ZetaSchedule::Cosine {
                zeta: 0.1,
                t_end: 750
            }
        );
        assert!(matches!(d.topology_init, TopologyInit::Brf { .. }));
        assert_eq!(d.chain_removal, ChainRemoval::Off);
        let decay = d.density_decay.unwrap();
        assert_eq!((decay.initial_sparsity, decay.pruning_t_end), (0.5, 750));
        let c = LmRunConfig::load(
            &p,
            &["dst.method=set".into(), "dst.chain_removal=true".into()],
        )
        .unwrap();
        let d = c.dst_config();
        assert_eq!(d.removal.zeta, ZetaSchedule::Fixed { zeta: 0.1 });
        assert_eq!(d.weight_init, WeightInit::Normal { std: 0.02 });
        let ChainRemoval::Pairs(pairs) = d.chain_removal else {
            panic!("pairs")
        };
        assert_eq!(pairs.qk.len(), 2 * 4);
        assert_eq!(c.lr_schedule().iterative_warmup, 20);
        let fc = LmRunConfig::load(&p, &["dst.method=fc".into()]).unwrap();
        assert_eq!(fc.lr_schedule().iterative_warmup, 0);
        assert_eq!(fc.lm_config(65).density, 1.0);
    }

    #[test]
    fn errors_name_the_field() {
        let p = write(GOOD, 1);
        let err = |o: &str| format!("{:#}", LmRunConfig::load(&p, &[o.to_owned()]).unwrap_err());
        assert!(err("model.heads=3").contains("model.d_model"));
        assert!(err("train.stepz=3").contains("stepz"));
        assert!(err("dst.density=0").contains("dst.density"));
        assert!(err("data.tokenizer=words").contains("tokenizer"));
        assert!(err("dst.initial_sparsity=0.95").contains("initial_sparsity"));
        assert!(err("train.lr=-1").contains("train.lr"));
    }
}
