//! The run loop every runner shares — `cht train` (MLP), `cht lm train` (language model), and the
//! next runner: start a run directory or resume one from its checkpoint, train in rounds, append
//! a `metrics.jsonl` line and redraw the plots after each round that reports, write an atomic
//! checkpoint when due (the loop writes the common part: format, config, progress, best, the
//! scheduler and its historical weights; the runner adds its tensors), and finish with
//! `summary.json` and the scheduler's summary.
//!
//! Read [`run`] top to bottom; a runner implements [`Runner`].

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use cht_gpu::Device;
use cht_nn::{DstModel, Network};
use cht_sparse::CsrPattern;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::train::checkpoint::Checkpoint;
use crate::train::report::MetricsLog;

/// What a runner plugs into [`run`].
pub(crate) trait Runner {
    /// The run's configuration (written to `config.toml` and into every checkpoint).
    type Config: Serialize + DeserializeOwned;
    /// One line of `metrics.jsonl`.
    type Metrics: Serialize + DeserializeOwned;
    /// The network its [`DstModel`] trains.
    type Net: Network;
    /// Checkpoint format tag (checked on resume).
    const FORMAT: &'static str;
    /// Name of the progress counter in checkpoints and messages (`epoch`, `step`).
    const UNIT: &'static str;

    /// The configuration.
    fn config(&self) -> &Self::Config;
    /// The device.
    fn device(&self) -> &Device;
    /// The model (its scheduler and history go into checkpoints).
    fn model(&self) -> &DstModel<Self::Net>;
    /// Units (epochs or steps) completed, and planned.
    fn progress(&self) -> (u64, u64);
    /// The progress of a metrics line (a resumed log drops lines past the checkpoint).
    fn progress_of(m: &Self::Metrics) -> u64;
    /// Fails before training when the run cannot work (e.g. too little validation data).
    fn check(&self) -> Result<()> {
        Ok(())
    }
    /// Trains up to the next point where a metrics line or a checkpoint is due; returns the line
    /// (after printing it) when one is.
    fn round(&mut self) -> Result<Option<Self::Metrics>>;
    /// Whether a checkpoint is due now.
    fn checkpoint_due(&self) -> bool;
    /// The best result so far (serialised into checkpoints as `best`).
    fn best(&self) -> serde_json::Value;
    /// Adds the runner's tensors and own metadata to a checkpoint.
    fn save(&self, c: &mut Checkpoint) -> Result<()>;
    /// Restores the runner from a checkpoint: its tensors and patterns (through
    /// [`restore_model`]), progress and best result.
    fn restore(&mut self, c: &Checkpoint) -> Result<()>;
    /// Redraws the plots from the whole metrics history.
    fn plots(&self, out: &Path, history: &[Self::Metrics]) -> Result<()>;
    /// Writes `summary.json` and prints the final line.
    fn finish(&self, out: &Path, history: &[Self::Metrics]) -> Result<()>;
}

/// Where a run starts: its configuration, directory and (when resuming) the checkpoint.
#[derive(Debug)]
pub(crate) struct Start<C> {
    pub config: C,
    pub out: PathBuf,
    pub resume: Option<Checkpoint>,
}

/// Resolves a run's start: `resume` names a run directory (or its checkpoint file) whose
/// checkpoint must have `format` and holds the configuration (`config_of` reads it); otherwise
/// `fresh` loads the configuration and names the output directory. The directory is created.
pub(crate) fn start<C>(
    resume: Option<&Path>,
    format: &str,
    config_of: impl FnOnce(&Checkpoint) -> Result<C>,
    fresh: impl FnOnce() -> Result<(C, PathBuf)>,
) -> Result<Start<C>> {
    let start = match resume {
        Some(dir) => {
            let ckpt = Checkpoint::load(&checkpoint_path(dir))?;
            ckpt.expect_format(format)?;
            Start {
                config: config_of(&ckpt)?,
                out: dir.to_owned(),
                resume: Some(ckpt),
            }
        }
        None => {
            let (config, out) = fresh()?;
            Start {
                config,
                out,
                resume: None,
            }
        }
    };
    std::fs::create_dir_all(&start.out)
        .with_context(|| format!("creating {}", start.out.display()))?;
    Ok(start)
}

/// The checkpoint file of a run directory (or the file itself).
pub(crate) fn checkpoint_path(p: &Path) -> PathBuf {
    if p.is_dir() {
        p.join("checkpoint.safetensors")
    } else {
        p.to_owned()
    }
}

/// Trains `runner` in `out` to its planned end: restores from `resume` (cutting the metrics log
/// back to the checkpoint) or writes `config.toml`, then rounds, metrics lines, plots and
/// checkpoints, and the summary.
pub(crate) fn run<R: Runner>(
    runner: &mut R,
    out: &Path,
    resume: Option<&Checkpoint>,
) -> Result<()> {
    let mut log = MetricsLog::<R::Metrics>::new(out, resume.is_some())?;
    match resume {
        Some(c) => {
            runner.restore(c)?;
            let done = runner.progress().0;
            log.retain(|m| R::progress_of(m) <= done)?;
            eprintln!("resuming {} at {} {done}", out.display(), R::UNIT);
        }
        None => std::fs::write(
            out.join("config.toml"),
            toml::to_string_pretty(runner.config())?,
        )?,
    }
    runner.check()?;
    loop {
        let (done, planned) = runner.progress();
        if done >= planned {
            break;
        }
        if let Some(m) = runner.round()? {
            log.push(m)?;
            runner.plots(out, &log.history)?;
        }
        if runner.checkpoint_due() {
            save(runner, out)?;
        }
    }
    runner.finish(out, &log.history)?;
    eprint!("{}", runner.model().summary());
    Ok(())
}

/// Writes the checkpoint: the common metadata, the scheduler and its historical weights, and the
/// runner's part; atomically (see [`Checkpoint::save`]).
fn save<R: Runner>(runner: &R, out: &Path) -> Result<()> {
    let mut c = Checkpoint::default();
    runner.save(&mut c)?;
    let meta = &mut c.metadata;
    meta.insert("format".into(), R::FORMAT.into());
    meta.insert("config".into(), toml::to_string(runner.config())?);
    meta.insert(R::UNIT.into(), runner.progress().0.to_string());
    meta.insert("best".into(), runner.best().to_string());
    let model = runner.model();
    if let Some(s) = model.scheduler() {
        meta.insert("scheduler".into(), serde_json::to_string(s)?);
    }
    c.put_history(runner.device(), model.topology())?;
    c.save(&out.join("checkpoint.safetensors"))
}

/// Restores a model's sparse `patterns` (the values and optimizer states were written before),
/// its scheduler state and historical weights from a checkpoint; mismatches read as "checkpoint
/// does not match the model".
pub(crate) fn restore_model<N: Network>(
    c: &Checkpoint,
    device: &Device,
    model: &mut DstModel<N>,
    patterns: &[CsrPattern],
) -> Result<()> {
    let scheduler = match model.scheduler() {
        Some(_) => {
            Some(serde_json::from_str(c.meta("scheduler")?).context("checkpoint scheduler state")?)
        }
        None => None,
    };
    model
        .restore(device, patterns, scheduler)
        .map_err(|e| anyhow::anyhow!("checkpoint does not match the model: {e}"))?;
    c.restore_history(device, model.topology())
}

/// The progress counter `unit` and the `best` result of a checkpoint.
pub(crate) fn restore_progress<B: DeserializeOwned>(
    c: &Checkpoint,
    unit: &str,
) -> Result<(u64, B)> {
    let done = c
        .meta(unit)?
        .parse()
        .with_context(|| format!("checkpoint {unit}"))?;
    let best = serde_json::from_str(c.meta("best")?).context("checkpoint best result")?;
    Ok((done, best))
}
