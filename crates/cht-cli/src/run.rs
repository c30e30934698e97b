//! The run loop every runner shares — `cht train` (MLP), `cht lm train` (language model), and the
//! next runner: start a run directory or resume one from its checkpoint, train in rounds, append
//! a `metrics.jsonl` line and redraw the plots after each round that reports, write an atomic
//! checkpoint when due (the loop writes the common part: format, config, progress, best, the
//! scheduler and its historical weights; the runner adds its tensors), and finish with
//! `summary.json` and the scheduler's summary.
//!
//! Read [`run`] top to bottom; a runner implements [`Runner`].

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use cht_gpu::Device;
use cht_nn::{DstModel, Network};
use cht_sparse::CsrPattern;
use cht_sparse::io::write_atomic;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::train::checkpoint::Checkpoint;
use crate::train::report::MetricsLog;

/// A run configuration: TOML, and checked the same way wherever it comes from (a file, `--set`,
/// the built-in default or a checkpoint).
pub(crate) trait RunConfigFile: Serialize + DeserializeOwned {
    /// Reads the configuration from TOML `text` with `key=value` overrides and validates it;
    /// `origin` names the text in errors.
    fn parse(text: &str, origin: &str, overrides: &[String]) -> Result<Self>;
}

impl RunConfigFile for crate::train::config::RunConfig {
    fn parse(text: &str, origin: &str, overrides: &[String]) -> Result<Self> {
        crate::train::config::RunConfig::parse(text, origin, overrides)
    }
}

impl RunConfigFile for crate::lm::config::LmRunConfig {
    fn parse(text: &str, origin: &str, overrides: &[String]) -> Result<Self> {
        crate::lm::config::LmRunConfig::parse(text, origin, overrides)
    }
}

/// The configuration saved in a checkpoint, validated as a new one would be: an edited
/// checkpoint (`batch_size = 0`, `lr = nan`, …) is refused before anything is built from it.
pub(crate) fn config_of_checkpoint<C: RunConfigFile>(ckpt: &Checkpoint) -> Result<C> {
    let origin = format!("the configuration saved in {}", ckpt.path());
    C::parse(ckpt.meta("config")?, &origin, &[])
}

/// What a runner plugs into [`run`].
pub(crate) trait Runner {
    /// The run's configuration (written to `config.toml` and into every checkpoint).
    type Config: RunConfigFile;
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

/// Where a run starts: its configuration, directory (locked for this process) and (when
/// resuming) the checkpoint.
#[derive(Debug)]
pub(crate) struct Start<C> {
    pub config: C,
    pub out: PathBuf,
    pub resume: Option<Checkpoint>,
    /// Held until the run ends: a second process on the same directory is refused.
    pub _lock: RunLock,
}

/// An exclusive lock on a run directory (`.lock` inside, an advisory `flock`-style lock that the
/// operating system releases when the process ends, even by `kill -9`), so that two processes
/// never interleave one `metrics.jsonl` or overwrite each other's checkpoints.
#[derive(Debug)]
pub(crate) struct RunLock {
    _file: std::fs::File,
}

impl RunLock {
    /// Locks `dir` (which exists), or says which process holds it.
    pub(crate) fn acquire(dir: &Path) -> Result<RunLock> {
        use std::io::{Read, Seek, Write};
        let path = dir.join(".lock");
        if let Ok(meta) = std::fs::symlink_metadata(&path)
            && !meta.is_file()
        {
            bail!(
                "{} exists and is not a regular file; remove it to use this run directory",
                path.display()
            );
        }
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("opening the run lock {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = Read::by_ref(&mut file).take(32).read_to_string(&mut holder);
                let holder = holder.trim();
                let by = if holder.is_empty() {
                    String::new()
                } else {
                    format!(" (pid {holder})")
                };
                bail!(
                    "{} is in use by another cht process{by}; wait for it to finish or pass another --out",
                    dir.display()
                );
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("locking {}", path.display()));
            }
        }
        // Who holds it, for the message above (best effort: the lock is what counts).
        let _ = file
            .set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| write!(file, "{}", std::process::id()));
        Ok(RunLock { _file: file })
    }
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
    let (config, out, resume) = match resume {
        Some(given) => {
            if !given.exists() {
                bail!(
                    "--resume {}: there is no run directory or checkpoint there",
                    given.display()
                );
            }
            let path = checkpoint_path(given);
            let dir = match path.parent() {
                Some(p) if !p.as_os_str().is_empty() => p,
                _ => Path::new("."),
            };
            // Locked before the checkpoint is read: another process may be writing it.
            let lock = RunLock::acquire(dir)?;
            let ckpt = Checkpoint::load(&path)?;
            ckpt.expect_format(format)?;
            let config = config_of(&ckpt)?;
            return Ok(Start {
                config,
                out: dir.to_owned(),
                resume: Some(ckpt),
                _lock: lock,
            });
        }
        None => {
            let (config, out) = fresh()?;
            (config, out, None)
        }
    };
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let lock = RunLock::acquire(&out)?;
    Ok(Start {
        config,
        out,
        resume,
        _lock: lock,
    })
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
            errln!("resuming {} at {} {done}", out.display(), R::UNIT);
        }
        None => write_atomic(
            &out.join("config.toml"),
            "config",
            toml::to_string_pretty(runner.config())?.as_bytes(),
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
    err!("{}", runner.model().summary());
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
    // A diverged model (ReLU can hide NaN weights behind a plausible loss) must not replace
    // the last good checkpoint.
    if let Some((name, value)) = c.first_non_finite() {
        let (done, _) = runner.progress();
        bail!(
            "training diverged: {name} holds {value} after {} {done}; the last good checkpoint in {} was kept (lower train.lr, or check the data)",
            R::UNIT,
            out.display()
        );
    }
    c.save(&out.join("checkpoint.safetensors"))
}

/// Stops a run whose loss is not finite, naming where: `at` is e.g. `step 1234 (epoch 2)`.
/// The run loop has written no checkpoint since the last good one, so that one is kept.
pub(crate) fn check_loss(what: &str, loss: f64, at: impl std::fmt::Display) -> Result<()> {
    if loss.is_finite() {
        return Ok(());
    }
    bail!(
        "training diverged: the {what} is {loss} at {at}; stopped without writing a checkpoint (the last good one is kept); lower train.lr or check the data"
    )
}

/// Restores a model's sparse `patterns` (the values and optimizer states were written before),
/// its scheduler state (which must have taken `steps` optimizer steps, and is checked with
/// [`cht_dst::DstScheduler::check_resumable`]) and historical weights from a checkpoint;
/// mismatches read as "checkpoint does not match the model".
pub(crate) fn restore_model<N: Network>(
    c: &Checkpoint,
    device: &Device,
    model: &mut DstModel<N>,
    patterns: &[CsrPattern],
    steps: u64,
) -> Result<()> {
    let scheduler = match model.scheduler() {
        Some(_) => {
            let s: cht_dst::DstScheduler =
                serde_json::from_str(c.meta("scheduler")?).context("checkpoint scheduler state")?;
            if s.step_count() != steps {
                bail!(
                    "checkpoint does not match the model: the scheduler has taken {} steps, the run {steps}",
                    s.step_count()
                );
            }
            Some(s)
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
