//! `cht train` / `cht eval`: the MLP runner of the paper's image-classification experiments
//! (spec §7.2). Read [`Run::epoch`] top to bottom: shuffle, one submit per step (the topology
//! update every ΔT steps is the only other submit, and that step skips the optimizer), read the
//! loss every `log_every` steps, evaluate. The run loop around it (start or resume, metrics log,
//! plots, atomic checkpoints) is the one every runner shares: [`crate::run`](mod@crate::run).

pub(crate) mod checkpoint;
pub mod config;
mod data;
pub(crate) mod report;

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::footprint::Footprint;
use crate::logs::StepLine;
use crate::run::{self, Runner};
use crate::world::World;
use anyhow::{Context, Result, bail};
use cht_gpu::{Device, SgdStep, Tensor};
use cht_nn::{Layer, Mlp, MlpInit, SparseMlp, SparseMlpConfig, Workspace};
use cht_sparse::CsrPattern;
use cht_sparse::init::TopologyInit;

pub use checkpoint::Checkpoint;
use config::RunConfig;
use data::Data;
pub use data::{fetch, web_subset};
use report::EpochMetrics;

/// Command-line arguments of `cht train`.
#[derive(clap::Args, Debug)]
pub struct TrainArgs {
    /// Run configuration (TOML). Without it: the built-in default (MNIST, CHTs-n, 1 % density,
    /// 5 epochs); see `configs/` for the paper's recipes.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Override a configuration value, e.g. `--set train.epochs=100 --set dst.method=set`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
    /// Output directory (default: `runs/<dataset>-<method>-d<density>-s<seed>`).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Continue the run in this directory from its last checkpoint (with
    /// `--set train.epochs=N`: extend it to N epochs; the LR and DST schedules of the new length
    /// apply from the checkpoint on).
    #[arg(long, conflicts_with_all = ["config", "out", "force"])]
    resume: Option<PathBuf>,
    /// Replace the outputs of an earlier run in the output directory (without it, a directory
    /// that holds a run is refused).
    #[arg(long)]
    force: bool,
}

/// Command-line arguments of `cht eval`.
#[derive(clap::Args, Debug)]
pub struct EvalArgs {
    /// A run directory (or its checkpoint file).
    #[arg(long)]
    checkpoint: PathBuf,
    /// Where the data set is, if not where the run found it (a folder holding `<dataset>/`).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Override a value of the run's configuration, e.g. `--set train.eval_batch=500` (the
    /// model's shape must stay the checkpoint's).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
}

pub(crate) const DEFAULT_CONFIG: &str = include_str!("../../configs/default.toml");

/// `cht train` (data-parallel when started by an MPI launcher: see [`crate::world`]).
pub fn train(device: &Device, world: &World, args: &TrainArgs) -> Result<()> {
    let start = run::start(
        world,
        args.force,
        args.resume.as_deref(),
        checkpoint::FORMAT,
        |c| {
            run::check_resume_overrides(&args.overrides, "train.epochs")?;
            run::config_of_checkpoint_with(c, &args.overrides)
        },
        || {
            let mut config = match &args.config {
                Some(path) => RunConfig::load(path, &args.overrides)?,
                None => RunConfig::parse(
                    DEFAULT_CONFIG,
                    "the built-in default configuration (configs/default.toml)",
                    &args.overrides,
                )?,
            };
            // Stored absolute, so `cht eval --checkpoint DIR` works from any directory.
            config.data.data_dir = std::path::absolute(&config.data.data_dir)
                .with_context(|| format!("resolving {}", config.data.data_dir.display()))?;
            let out = args.out.clone().unwrap_or_else(|| {
                let dataset = serde_json::to_value(config.data.dataset)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default();
                let density = match config.dst.method {
                    config::MethodName::Fc => 1.0,
                    _ => config.dst.density,
                };
                PathBuf::from("runs").join(format!(
                    "{dataset}-{}-d{density}-s{}",
                    method_name(&config),
                    config.train.seed
                ))
            });
            Ok((config, out))
        },
    )?;
    // Only rank 0 may fetch (the others would race it for the same files): they wait for it.
    let data = if world.is_root() {
        let data = Data::load(&start.config, start.config.data.fetch_if_missing)?;
        world.comm().barrier()?;
        data
    } else {
        world.comm().barrier()?;
        Data::load(&start.config, false)?
    };
    let mut run = Run::new(device, world, start.config, data)?;
    run::run(&mut run, &start.out, start.resume.as_ref())
}

/// The MLP's memory (see [`crate::footprint`]): per sparse layer its links with their values,
/// momenta, gradients and index structures, its mask and ITOP record on the host, and a dense
/// matrix wherever it may run masked-dense; dense layers' weights, momenta and gradients; the
/// activations of the larger of the training and evaluation batches.
fn footprint(config: &RunConfig, sizes: &[usize]) -> Footprint {
    let mut f = Footprint::new();
    let dense = config.dst.method == config::MethodName::Fc;
    let may_run_dense = match config.model.masked_dense_above {
        crate::execution::MaskedDenseAbove::Never => false,
        crate::execution::MaskedDenseAbove::Density(x) => config.dst.density > x,
        crate::execution::MaskedDenseAbove::Auto => true,
    };
    let batch = config.train.batch_size.max(config.train.eval_batch);
    f.buffer(4, &[batch, sizes[0]]);
    let layers = sizes.len() - 1;
    for (l, w) in sizes.windows(2).enumerate() {
        let (cols, rows) = (w[0], w[1]);
        if !dense && l + 1 < layers {
            let nnz = (config.dst.density * rows as f64 * cols as f64).ceil() as usize;
            for _ in 0..6 {
                f.buffer(4, &[nnz]);
            }
            f.host(1, &[rows, cols]).host(1, &[rows, cols.div_ceil(8)]);
            if may_run_dense {
                f.buffer(4, &[rows, cols]).buffer(4, &[rows, cols]);
            }
        } else {
            for _ in 0..3 {
                f.buffer(4, &[rows, cols]);
            }
        }
        for _ in 0..3 {
            f.buffer(4, &[batch, rows]);
        }
    }
    f
}

fn method_name(config: &RunConfig) -> String {
    serde_json::to_value(config.dst.method)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// `cht eval`.
pub fn eval(device: &Device, args: &EvalArgs) -> Result<()> {
    let ckpt = Checkpoint::load(&run::checkpoint_path(&args.checkpoint))?;
    ckpt.expect_format(checkpoint::FORMAT)?;
    let mut overrides = args.overrides.clone();
    if let Some(dir) = &args.data_dir {
        let dir = std::path::absolute(dir)?;
        // A TOML string, whatever characters the path holds.
        overrides.push(format!(
            "data.data_dir={}",
            toml::Value::from(dir.display().to_string())
        ));
    }
    let config: RunConfig = run::config_of_checkpoint_with(&ckpt, &overrides)?;
    let data = Data::load(&config, false)?;
    let mut run = Run::new(device, &World::single(), config, data)?;
    run::Runner::check(&run)?;
    run::Runner::restore(&mut run, &ckpt)?;
    let start = Instant::now();
    let (loss, acc) = run.evaluate()?;
    outln!(
        "epoch {}: test loss {loss:.4}, test accuracy {:.2}% ({} samples, {:.1} s on {})",
        run.epoch,
        acc * 100.0,
        run.data.test_len(),
        start.elapsed().as_secs_f64(),
        device.name()
    );
    Ok(())
}

/// A training run: data, the model (network, scheduler and its device scratch) and buffers.
struct Run<'d> {
    device: &'d Device,
    world: World,
    config: RunConfig,
    data: Data,
    model: SparseMlp,
    ws: Workspace,
    eval_ws: Vec<Workspace>,
    /// Epochs completed.
    epoch: u32,
    best: Option<(f64, u32)>,
    /// This rank's share of every training batch: `(samples, first)`.
    shard: (usize, usize),
    /// This rank's share of the test set: `start .. end`.
    test_share: (usize, usize),
    /// Step lines since the run loop last took them.
    step_lines: Vec<StepLine>,
    /// When this process started training, and the epoch it started from.
    started: Instant,
    first_epoch: u32,
    /// The progress bars (stderr): the whole run's, from the first epoch on, and each epoch's.
    bars: indicatif::MultiProgress,
    run_bar: Option<indicatif::ProgressBar>,
}

impl<'d> Run<'d> {
    fn new(
        device: &'d Device,
        world: &World,
        mut config: RunConfig,
        data: Data,
    ) -> Result<Run<'d>> {
        let shard = world.shard(config.train.batch_size, "train.batch_size")?;
        let inputs = data.features();
        let hidden = (config.model.dim * inputs as f64).round() as usize;
        let classes = data.classes();
        let n_sparse = config.model.hidden_layers;
        let steps_per_epoch = (data.train_len() / config.train.batch_size) as u64;
        if steps_per_epoch == 0 {
            bail!(
                "train.batch_size {} is larger than the {} training samples",
                config.train.batch_size,
                data.train_len()
            );
        }
        let mut sizes = vec![inputs];
        sizes.extend(std::iter::repeat_n(hidden, n_sparse));
        sizes.push(classes);
        footprint(&config, &sizes).check(device, "the MLP")?;
        let mut mlp = SparseMlpConfig::new(sizes, config.dst_config(steps_per_epoch));
        mlp.seed = config.train.seed;
        if config.model.default_init == config::DefaultInit::Pytorch {
            // The official code keeps PyTorch's default biases and dense classifier.
            mlp.init = MlpInit::Pytorch;
        }
        if let TopologyInit::Csti { .. } = mlp.dst.topology_init
            && mlp.dst.method != cht_dst::Method::Fc
        {
            mlp.correlation = Some(data.correlation()?);
        }
        let mut model = SparseMlp::new(device, &mlp)?;
        if let Some(sched) = model.scheduler() {
            // Sparse layers run as CSR or masked-dense by density; "auto" is measured once (on
            // the largest sparse layer at the training batch) and recorded in the run's config.
            let largest = sched
                .shapes()
                .into_iter()
                .max_by_key(|(r, c)| r * c)
                .context("a sparse model has sparse layers")?;
            let policy = config
                .model
                .masked_dense_above
                .resolve_on(world, device, largest, shard.0)?;
            model.set_execution(device, policy)?;
        }
        if world.size() > 1 {
            model.set_collective(device, world.comm().clone())?;
        }
        let ws = model.network().workspace(device, shard.0);
        // Each rank evaluates its contiguous share of the test set; the sums are all-reduced.
        let test_share = world.share(data.test_len());
        let test_len = (test_share.1 - test_share.0).max(1);
        let eb = config.train.eval_batch.min(test_len).max(1);
        let mut eval_ws = vec![model.network().workspace(device, eb)];
        if !test_len.is_multiple_of(eb) {
            eval_ws.push(model.network().workspace(device, test_len % eb));
        }
        Ok(Run {
            device,
            world: world.clone(),
            shard,
            test_share,
            step_lines: Vec::new(),
            started: Instant::now(),
            first_epoch: 0,
            bars: indicatif::MultiProgress::new(),
            run_bar: None,
            config,
            data,
            model,
            ws,
            eval_ws,
            epoch: 0,
            best: None,
        })
    }

    /// Learning rate of `epoch` (0-based): linear from `lr` to `lr·end_factor` over the first
    /// `lr_decay_fraction` of the epochs, then constant (PyTorch `LinearLR`, stepped per epoch).
    fn lr(&self, epoch: u32) -> f32 {
        let t = &self.config.train;
        let total = ((f64::from(t.epochs) * t.lr_decay_fraction).floor() as u32).max(1);
        let progress = f64::from(epoch.min(total)) / f64::from(total);
        (f64::from(t.lr) * (1.0 - progress * (1.0 - f64::from(t.lr_end_factor)))) as f32
    }

    /// One epoch: shuffle, one submit per step (the loss read every `log_every` steps), then
    /// the test set and the topology metrics.
    fn epoch(&mut self) -> Result<EpochMetrics> {
        let t = self.config.train.clone();
        let steps = self.data.train_len() / t.batch_size;
        let (per_rank, first) = self.shard;
        let mut x = vec![0f32; self.data.features() * per_rank];
        let epoch = self.epoch;
        let lr = self.lr(epoch);
        let sgd = SgdStep::new(lr, t.momentum, t.weight_decay);
        let order = self.data.shuffled(t.seed, epoch);
        // Two bars: the whole run (steps over all epochs, with its ETA) and this epoch.
        let total = steps as u64 * u64::from(t.epochs);
        let run_bar = self
            .run_bar
            .get_or_insert_with(|| {
                let bar = self.bars.add(report::labelled_bar(total, "run"));
                bar.set_position(u64::from(epoch) * steps as u64);
                bar
            })
            .clone();
        let bar = self
            .bars
            .add(report::progress_bar(steps as u64, epoch + 1, t.epochs));
        let start = Instant::now();
        let (mut loss_sum, mut loss_n) = (0.0, 0u64);
        let mut correct = 0.0;
        for s in 0..steps {
            // This rank's share of the global batch (all of it on one rank).
            let at = s * t.batch_size + first;
            let idx = &order[at..at + per_rank];
            let labels = self.data.train_batch(idx, &mut x);
            self.model
                .network()
                .load_batch(self.device, &self.ws, &x, &labels)?;
            // Every ΔT steps a topology update replaces the optimizer step.
            self.model.train_step(self.device, &self.ws, sgd)?;
            crate::testing::maybe_abort(s as u64 + u64::from(epoch) * steps as u64 + 1);
            if (s + 1) % t.log_every as usize == 0 || s + 1 == steps {
                let m = self.model.network().take_metrics(self.device, &self.ws)?;
                let m = self.world.sum_metrics(m)?;
                let step = u64::from(epoch) * steps as u64 + s as u64 + 1;
                run::check_loss(
                    "training loss",
                    m.loss,
                    format_args!("step {step} (epoch {})", epoch + 1),
                )?;
                loss_sum += m.loss * m.samples as f64;
                correct += m.accuracy * m.samples as f64;
                loss_n += m.samples;
                let rate = (s + 1) as f64 * t.batch_size as f64 / start.elapsed().as_secs_f64();
                self.step_lines.push(StepLine {
                    step,
                    loss: m.loss,
                    accuracy: Some(m.accuracy),
                    lr: crate::logs::clean_f32(lr),
                    per_s: rate,
                    elapsed_s: self.started.elapsed().as_secs_f64(),
                });
                bar.set_position(s as u64 + 1);
                run_bar.set_position(step);
                bar.set_message(format!("loss {:.4}  {:.0} samples/s", m.loss, rate));
            }
        }
        bar.finish_and_clear();
        let train_s = start.elapsed().as_secs_f64();
        let eval_start = Instant::now();
        let (test_loss, test_acc) = self.evaluate()?;
        run::check_loss(
            "test loss",
            test_loss,
            format_args!("the end of epoch {}", epoch + 1),
        )?;
        let eval_s = eval_start.elapsed().as_secs_f64();
        self.epoch += 1;
        if self.best.is_none_or(|(b, _)| test_acc > b) {
            self.best = Some((test_acc, self.epoch));
        }
        let (density, anp, itop) = self.topology_metrics()?;
        Ok(EpochMetrics {
            epoch: self.epoch,
            train_loss: loss_sum / loss_n.max(1) as f64,
            train_acc: correct / loss_n.max(1) as f64,
            test_loss,
            test_acc,
            lr: crate::logs::clean_f32(lr),
            density,
            anp,
            itop,
            epoch_s: train_s + eval_s,
            train_s,
            eval_s,
        })
    }

    /// Test loss and top-1 accuracy over the whole test set (one submit per batch, one readback;
    /// data-parallel: each rank its share, the sums all-reduced).
    fn evaluate(&mut self) -> Result<(f64, f64)> {
        let (mut start, n) = self.test_share;
        let eb = self.eval_ws[0].batch();
        let mut x = vec![0f32; self.data.features() * eb];
        let (mut loss, mut correct, mut samples) = (0.0, 0.0, 0.0);
        while start < n {
            let ws = if n - start >= eb {
                &self.eval_ws[0]
            } else {
                &self.eval_ws[1]
            };
            let b = ws.batch();
            let idx: Vec<u32> = (start as u32..(start + b) as u32).collect();
            x.resize(self.data.features() * b, 0.0);
            let labels = self.data.test_batch(&idx, &mut x);
            self.model
                .network()
                .load_batch(self.device, ws, &x, &labels)?;
            self.model.network().eval_step(self.device, ws)?;
            start += b;
        }
        for ws in &self.eval_ws {
            let m = self.model.network().take_metrics(self.device, ws)?;
            loss += m.loss * m.samples as f64;
            correct += m.accuracy * m.samples as f64;
            samples += m.samples as f64;
        }
        let mut sums = [loss, correct, samples];
        self.world.comm().all_reduce_sum_f64(&mut sums)?;
        let n = sums[2].max(1.0);
        Ok((sums[0] / n, sums[1] / n))
    }

    /// Per-layer density, ANP and ITOP (one mask readback per epoch).
    fn topology_metrics(&mut self) -> Result<(Vec<f64>, Option<f64>, Option<f64>)> {
        if self.model.scheduler().is_none() {
            return Ok((vec![1.0; self.config.model.hidden_layers], None, None));
        }
        self.model.observe(self.device)?;
        Ok((self.model.densities(), self.model.anp(), self.model.itop()))
    }
}

impl Runner for Run<'_> {
    type Config = RunConfig;
    type Metrics = EpochMetrics;
    type Net = Mlp;
    const FORMAT: &'static str = checkpoint::FORMAT;
    const UNIT: &'static str = "epoch";

    fn config(&self) -> &RunConfig {
        &self.config
    }

    fn device(&self) -> &Device {
        self.device
    }

    fn world(&self) -> &World {
        &self.world
    }

    fn model(&self) -> &SparseMlp {
        &self.model
    }

    fn progress(&self) -> (u64, u64) {
        (u64::from(self.epoch), u64::from(self.config.train.epochs))
    }

    fn progress_of(m: &EpochMetrics) -> u64 {
        u64::from(m.epoch)
    }

    fn check(&self) -> Result<()> {
        let (train, test) = (self.data.train_len(), self.data.test_len());
        let batch = self.config.train.batch_size;
        if train < batch {
            bail!(
                "the training set has {train} samples, fewer than one batch (train.batch_size = {batch}); lower train.batch_size or raise data.train_limit"
            );
        }
        if test == 0 {
            bail!(
                "the test set is empty: there is nothing to evaluate (check the data files or data.test_limit)"
            );
        }
        Ok(())
    }

    fn round(&mut self) -> Result<Option<EpochMetrics>> {
        let m = self.epoch()?;
        self.bars
            .suspend(|| report::print_epoch(&m, self.best, self.device));
        // The whole run's remaining time, from this process's mean epoch.
        let (done, planned) = (self.epoch, self.config.train.epochs);
        if done == planned
            && let Some(bar) = self.run_bar.take()
        {
            bar.finish_and_clear();
        }
        if done < planned {
            let per_epoch =
                self.started.elapsed().as_secs_f64() / f64::from(done - self.first_epoch).max(1.0);
            let left = per_epoch * f64::from(planned - done);
            self.bars.suspend(|| {
                errln!(
                    "run: epoch {done}/{planned}, about {} left",
                    report::duration(left)
                )
            });
        }
        Ok(Some(m))
    }

    fn checkpoint_due(&self) -> bool {
        let t = &self.config.train;
        self.epoch.is_multiple_of(t.checkpoint_every) || self.epoch == t.epochs
    }

    fn best(&self) -> serde_json::Value {
        serde_json::json!(self.best)
    }

    fn save(&self, c: &mut Checkpoint) -> Result<()> {
        let mlp = self.model.network();
        mlp.sync_to_csr(self.device)?;
        for (l, layer) in mlp.layers.iter().enumerate() {
            let name = |what: &str| format!("layer{l}.{what}");
            let read = |t: &Tensor| self.device.read_f32(t);
            match layer {
                Layer::Sparse(s) => {
                    let p = self.device.download_pattern(&s.pattern)?;
                    let w = &s.weight;
                    c.put_u32(&name("row_ptr"), &[p.row_ptr().len()], p.row_ptr().to_vec());
                    c.put_u32(&name("col_idx"), &[p.nnz()], p.col_idx().to_vec());
                    c.put_f32(&name("values"), &[w.value.len()], read(&w.value)?);
                    c.put_f32(&name("momentum"), &[w.value.len()], read(&w.state[0])?);
                }
                Layer::Dense(d) => {
                    let (w, shape) = (&d.weight, [d.weight.value.rows(), d.weight.value.cols()]);
                    c.put_f32(&name("weight"), &shape, read(&w.value)?);
                    c.put_f32(&name("momentum"), &shape, read(&w.state[0])?);
                }
            }
            if let Some(b) = layer.bias() {
                c.put_f32(&name("bias"), &[b.value.len()], read(&b.value)?);
                c.put_f32(&name("bias_momentum"), &[b.value.len()], read(&b.state[0])?);
            }
        }
        Ok(())
    }

    fn restore(&mut self, c: &Checkpoint) -> Result<()> {
        let bad = |what: String| anyhow::anyhow!("checkpoint does not match the model: {what}");
        let mut patterns = Vec::new();
        // Weights and momenta first (CSR order of the saved patterns), then the patterns: the
        // model rebuilds masked-dense layers from both.
        for (l, layer) in self.model.network().layers.iter().enumerate() {
            let name = |what: &str| format!("layer{l}.{what}");
            let write = |t: &Tensor, v: &[f32], what: &str| -> Result<()> {
                if v.len() != t.len() {
                    return Err(bad(format!(
                        "{} has {} values, the model {}",
                        name(what),
                        v.len(),
                        t.len()
                    )));
                }
                self.device.write_f32(t, v)?;
                Ok(())
            };
            match layer {
                Layer::Sparse(s) => {
                    let row_ptr = c.u32(&name("row_ptr"))?.to_vec();
                    let col_idx = c.u32(&name("col_idx"))?.to_vec();
                    let p = CsrPattern::new(s.pattern.rows(), s.pattern.cols(), row_ptr, col_idx)
                        .map_err(|e| bad(format!("{}: {e}", name("pattern"))))?;
                    patterns.push(p);
                    write(&s.weight.value, c.f32(&name("values"))?, "values")?;
                    write(&s.weight.state[0], c.f32(&name("momentum"))?, "momentum")?;
                }
                Layer::Dense(d) => {
                    write(&d.weight.value, c.f32(&name("weight"))?, "weight")?;
                    write(&d.weight.state[0], c.f32(&name("momentum"))?, "momentum")?;
                }
            }
            if let Some(b) = layer.bias() {
                write(&b.value, c.f32(&name("bias"))?, "bias")?;
                write(&b.state[0], c.f32(&name("bias_momentum"))?, "bias_momentum")?;
            }
        }
        let (epoch, best) = run::restore_progress(c, Self::UNIT)?;
        let epoch = u32::try_from(epoch)
            .ok()
            .filter(|&e| e <= self.config.train.epochs)
            .with_context(|| {
                format!(
                    "checkpoint epoch {epoch} is beyond the run's {} epochs",
                    self.config.train.epochs
                )
            })?;
        let steps_per_epoch = (self.data.train_len() / self.config.train.batch_size) as u64;
        let steps = u64::from(epoch) * steps_per_epoch;
        let saved: RunConfig = run::config_of_checkpoint(c)?;
        let extending = saved.train.epochs != self.config.train.epochs;
        run::restore_model(c, self.device, &mut self.model, &patterns, steps, extending)?;
        self.epoch = epoch;
        self.first_epoch = epoch;
        self.best = best;
        Ok(())
    }

    fn take_step_lines(&mut self) -> Vec<StepLine> {
        std::mem::take(&mut self.step_lines)
    }

    fn steps_done(&self) -> u64 {
        u64::from(self.epoch) * (self.data.train_len() / self.config.train.batch_size) as u64
    }

    fn scalars(m: &EpochMetrics) -> Vec<(String, f64)> {
        let mut v = vec![
            ("epoch".to_owned(), f64::from(m.epoch)),
            ("train/epoch_loss".to_owned(), m.train_loss),
            ("train/epoch_accuracy".to_owned(), m.train_acc),
            ("test/loss".to_owned(), m.test_loss),
            ("test/accuracy".to_owned(), m.test_acc),
            ("lr".to_owned(), m.lr),
            ("time/epoch_s".to_owned(), m.epoch_s),
        ];
        for (l, d) in m.density.iter().enumerate() {
            v.push((format!("topology/density_layer{l}"), *d));
        }
        v.extend(m.anp.map(|a| ("topology/anp".to_owned(), a)));
        v.extend(m.itop.map(|i| ("topology/itop".to_owned(), i)));
        v
    }

    fn log_config(&self) -> &crate::logs::LogConfig {
        &self.config.log
    }

    fn plots(&self, out: &Path, history: &[EpochMetrics]) -> Result<()> {
        report::plots(out, history)
    }

    fn finish(&self, out: &Path, history: &[EpochMetrics]) -> Result<()> {
        report::finish(out, history, self.best, &self.config)
    }
}
