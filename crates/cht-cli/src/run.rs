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

use crate::logs::{LogConfig, Logs, StepLine};
use crate::train::checkpoint::Checkpoint;
use crate::train::report::MetricsLog;
use crate::world::World;

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
    config_of_checkpoint_with(ckpt, &[])
}

/// [`config_of_checkpoint`] with `key=value` overrides (e.g. `cht eval --set`), validated the same.
pub(crate) fn config_of_checkpoint_with<C: RunConfigFile>(
    ckpt: &Checkpoint,
    overrides: &[String],
) -> Result<C> {
    let origin = format!("the configuration saved in {}", ckpt.path());
    C::parse(ckpt.meta("config")?, &origin, overrides)
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
    /// The ranks (rank 0 alone writes the run directory).
    fn world(&self) -> &World;
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
    /// The step lines (training loss every `log_every` steps) recorded since the last call.
    fn take_step_lines(&mut self) -> Vec<StepLine>;
    /// Global training steps completed (the x axis of `steps.jsonl` and TensorBoard).
    fn steps_done(&self) -> u64;
    /// A metrics line's numbers for TensorBoard and `metrics.csv`, e.g. `("test/accuracy", 0.97)`.
    fn scalars(m: &Self::Metrics) -> Vec<(String, f64)>;
    /// The run's `[log]` settings.
    fn log_config(&self) -> &LogConfig;
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
    /// Held until the run ends: a second process on the same directory is refused (rank 0's;
    /// the other ranks never touch the directory).
    pub _lock: Option<RunLock>,
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
/// A directory that already holds a run is refused unless `force` (then its outputs are removed).
/// On several ranks, rank 0 alone locks and creates the directory and reads the checkpoint; the
/// others get its bytes (no shared file system needed) and check the same things.
pub(crate) fn start<C>(
    world: &World,
    force: bool,
    resume: Option<&Path>,
    format: &str,
    config_of: impl FnOnce(&Checkpoint) -> Result<C>,
    fresh: impl FnOnce() -> Result<(C, PathBuf)>,
) -> Result<Start<C>> {
    if !world.is_root() {
        let (config, out) = match resume {
            Some(given) => {
                let mut bytes = Vec::new();
                world.broadcast(&mut bytes)?;
                let ckpt = Checkpoint::from_bytes(&bytes)
                    .context("the checkpoint rank 0 sent")?
                    .with_path(&checkpoint_path(given));
                ckpt.expect_format(format)?;
                let config = config_of(&ckpt)?;
                return Ok(Start {
                    config,
                    out: run_dir(given),
                    resume: Some(ckpt),
                    _lock: None,
                });
            }
            None => fresh()?,
        };
        return Ok(Start {
            config,
            out,
            resume: None,
            _lock: None,
        });
    }
    let (config, out, resume) = match resume {
        Some(given) => {
            if !given.exists() {
                bail!(
                    "--resume {}: there is no run directory or checkpoint there",
                    given.display()
                );
            }
            let path = checkpoint_path(given);
            let dir = &run_dir(given);
            // Locked before the checkpoint is read: another process may be writing it.
            let lock = RunLock::acquire(dir)?;
            let ckpt = Checkpoint::load(&path)?;
            if world.size() > 1 {
                world.broadcast(&mut ckpt.to_bytes()?)?;
            }
            ckpt.expect_format(format)?;
            let config = config_of(&ckpt)?;
            return Ok(Start {
                config,
                out: dir.to_owned(),
                resume: Some(ckpt),
                _lock: Some(lock),
            });
        }
        None => {
            let (config, out) = fresh()?;
            (config, out, None)
        }
    };
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let lock = RunLock::acquire(&out)?;
    // Never overwrite a run silently: an earlier run's outputs are replaced only with --force.
    let earlier: Vec<PathBuf> = std::fs::read_dir(&out)
        .with_context(|| format!("reading {}", out.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| is_run_output(p))
        .collect();
    if !earlier.is_empty() {
        if !force {
            bail!(
                "{} already holds a run; pass --resume {} to continue it, --out to train \
                 elsewhere, or --force to replace it",
                out.display(),
                out.display()
            );
        }
        for p in &earlier {
            std::fs::remove_file(p).with_context(|| format!("removing {}", p.display()))?;
        }
    }
    Ok(Start {
        config,
        out,
        resume,
        _lock: Some(lock),
    })
}

/// Whether `path` is something a run writes into its folder (`--force` removes these only).
fn is_run_output(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    const FILES: [&str; 7] = [
        "config.toml",
        "metrics.jsonl",
        "steps.jsonl",
        "metrics.csv",
        "steps.csv",
        "summary.json",
        "checkpoint.safetensors",
    ];
    path.is_file()
        && (FILES.contains(&name)
            || name.starts_with("events.out.tfevents.")
            || name.ends_with(".png"))
}

/// The run directory of `--resume`'s argument (a run directory or its checkpoint file).
fn run_dir(given: &Path) -> PathBuf {
    match checkpoint_path(given).parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    }
}

/// `--set` overrides given with `--resume`: only `allowed` (the run's length) may change — a
/// run extended to more epochs or steps; anything else would be another run.
pub(crate) fn check_resume_overrides(overrides: &[String], allowed: &str) -> Result<()> {
    for o in overrides {
        let key = o.split('=').next().unwrap_or("").trim();
        if key != allowed {
            bail!(
                "--set {o}: when resuming, only {allowed} can change (to extend the run); start \
                 a new run (--config, --out) to change anything else"
            );
        }
    }
    Ok(())
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
    let root = runner.world().is_root();
    let (mut log, mut logs) = match root {
        true => (
            Some(MetricsLog::<R::Metrics>::new(out, resume.is_some())?),
            Some(Logs::open(out, resume.is_some(), runner.log_config())?),
        ),
        false => (None, None),
    };
    match resume {
        Some(c) => {
            check_ranks(c, runner.world())?;
            runner.restore(c)?;
            let done = runner.progress().0;
            if let Some(log) = &mut log {
                log.retain(|m| R::progress_of(m) <= done)?;
            }
            if let Some(logs) = &mut logs {
                logs.retain(runner.steps_done())?;
            }
            errln!("resuming {} at {} {done}", out.display(), R::UNIT);
        }
        None if root => {
            let head = crate::logs::provenance_comment(&crate::logs::provenance(
                runner.device(),
                runner.world().size(),
            ));
            let text = head + &crate::logs::clean_toml(runner.config())?;
            write_atomic(&out.join("config.toml"), "config", text.as_bytes())?
        }
        None => {}
    }
    runner.check()?;
    if let Some(s) = runner.model().scheduler() {
        let c = s.config();
        if c.interval == 0 || c.interval >= c.t_end {
            errln!(
                "warning: this run is too short for any topology update (updates every {} steps \
                 until step {}): the masks stay as initialised; train longer to see DST",
                c.interval,
                c.t_end
            );
        }
    }
    if runner.world().size() > 1 {
        errln!(
            "data-parallel over {} ranks ({}); rank 0 reports and writes {}",
            runner.world().size(),
            runner.world().comm().transport(),
            out.display()
        );
    }
    loop {
        let (done, planned) = runner.progress();
        if done >= planned {
            break;
        }
        let line = runner.round()?;
        let steps = runner.take_step_lines();
        let (Some(log), Some(logs)) = (&mut log, &mut logs) else {
            continue;
        };
        for s in steps {
            logs.step(s)?;
        }
        if let Some(s) = runner.model().scheduler() {
            logs.set_updates(
                (1..=runner.steps_done())
                    .filter(|&t| s.is_update_at(t))
                    .collect(),
            );
        }
        match line {
            Some(m) => {
                logs.round(runner.steps_done(), R::scalars(&m))?;
                log.push(m)?;
                runner.plots(out, &log.history)?;
            }
            None => logs.flush()?,
        }
        if runner.checkpoint_due() {
            save(runner, out)?;
        }
    }
    if let Some(log) = &log {
        runner.finish(out, &log.history)?;
        add_provenance(out, runner)?;
        err!("{}", runner.model().summary());
    }
    Ok(())
}

/// Adds what made the run (version, commit, command line, device; [`crate::logs::provenance`])
/// to the `summary.json` the runner wrote.
fn add_provenance<R: Runner>(out: &Path, runner: &R) -> Result<()> {
    let path = out.join("summary.json");
    let text = cht_sparse::io::read_text_bounded(&path, "summary", 1 << 20)?;
    let mut summary: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("reading {}", path.display()))?;
    if let Some(map) = summary.as_object_mut() {
        map.insert(
            "provenance".into(),
            crate::logs::provenance(runner.device(), runner.world().size()),
        );
    }
    write_atomic(
        &path,
        "summary",
        serde_json::to_string_pretty(&summary)?.as_bytes(),
    )?;
    Ok(())
}

/// A checkpoint written by N ranks resumes on N ranks only: the gradient sums run in another
/// order on another count, so the run would not continue bit for bit.
fn check_ranks(c: &Checkpoint, world: &World) -> Result<()> {
    let saved: usize = match c.meta("ranks") {
        Ok(v) => v.parse().context("checkpoint ranks")?,
        Err(_) => 1,
    };
    if saved != world.size() {
        let how = |n: usize| match n {
            1 => "1 process (without mpirun)".to_owned(),
            n => format!("{n} ranks (mpirun -n {n})"),
        };
        bail!(
            "this run was trained on {} and is resumed on {}: resume it on {} — on another rank \
             count the gradients would be summed in another order and the run would not continue \
             bit for bit",
            how(saved),
            how(world.size()),
            how(saved)
        );
    }
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
    meta.insert("ranks".into(), runner.world().size().to_string());
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
/// its scheduler state (adopting the run's schedules when `extending` a run to more steps) (which must have taken `steps` optimizer steps, and is checked with
/// [`cht_dst::DstScheduler::check_resumable`]) and historical weights from a checkpoint;
/// mismatches read as "checkpoint does not match the model".
pub(crate) fn restore_model<N: Network>(
    c: &Checkpoint,
    device: &Device,
    model: &mut DstModel<N>,
    patterns: &[CsrPattern],
    steps: u64,
    extending: bool,
) -> Result<()> {
    let scheduler = match model.scheduler() {
        Some(fresh) => {
            let mut s: cht_dst::DstScheduler =
                serde_json::from_str(c.meta("scheduler")?).context("checkpoint scheduler state")?;
            if extending {
                // A longer run: the schedules of the new length apply from here on.
                s = s
                    .with_config(fresh.config().clone())
                    .map_err(|e| anyhow::anyhow!("extending the run: {e}"))?;
            }
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
