//! `cht train` / `cht eval`: the MLP runner of the paper's image-classification experiments
//! (spec §7.2). Read [`Run::train`] top to bottom: per epoch, shuffle, one submit per step (the
//! topology update every ΔT steps is the only other submit, and that step skips the optimizer),
//! read the loss every `log_every` steps, evaluate, write metrics, plots and an atomic checkpoint.

pub(crate) mod checkpoint;
pub mod config;
mod data;
pub(crate) mod report;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use cht_dst::{DstScheduler, LayerRef, RegrowScores, Topology};
use cht_gpu::{DType, Device, SgdStep, Tensor};
use cht_nn::{DenseLinear, Layer, LinearInit, Mlp, SparseLinear, Workspace};
use cht_sparse::CsrPattern;

pub use checkpoint::Checkpoint;
use config::RunConfig;
use data::Data;
pub use data::{fetch, web_subset};
use report::{EpochMetrics, Reporter};

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
    /// Output directory (default: `runs/<dataset>-<method>-s<seed>`).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Continue the run in this directory from its last checkpoint.
    #[arg(long, conflicts_with_all = ["config", "overrides", "out"])]
    resume: Option<PathBuf>,
}

/// Command-line arguments of `cht eval`.
#[derive(clap::Args, Debug)]
pub struct EvalArgs {
    /// A run directory (or its checkpoint file).
    #[arg(long)]
    checkpoint: PathBuf,
}

const DEFAULT_CONFIG: &str = include_str!("../../../../configs/default.toml");

/// `cht train`.
pub fn train(device: &Device, args: &TrainArgs) -> Result<()> {
    let (config, out, resume) = match &args.resume {
        Some(dir) => {
            let ckpt = Checkpoint::load(&checkpoint_path(dir))?;
            ckpt.expect_format(checkpoint::FORMAT)?;
            let config: RunConfig =
                toml::from_str(ckpt.meta("config")?).context("checkpoint config")?;
            (config, dir.clone(), Some(ckpt))
        }
        None => {
            let config = match &args.config {
                Some(path) => RunConfig::load(path, &args.overrides)?,
                None => {
                    let tmp = std::env::temp_dir()
                        .join(format!("cht-default-{}.toml", std::process::id()));
                    std::fs::write(&tmp, DEFAULT_CONFIG)?;
                    let c = RunConfig::load(&tmp, &args.overrides);
                    let _ = std::fs::remove_file(&tmp);
                    c?
                }
            };
            let out = args.out.clone().unwrap_or_else(|| {
                let method = serde_json::to_value(config.dst.method)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default();
                let dataset = serde_json::to_value(config.data.dataset)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default();
                PathBuf::from("runs").join(format!("{dataset}-{method}-s{}", config.train.seed))
            });
            (config, out, None)
        }
    };
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let data = Data::load(&config, config.data.fetch_if_missing)?;
    let mut run = Run::new(device, config, data)?;
    let mut reporter = Reporter::new(&out, resume.is_some())?;
    if let Some(ckpt) = &resume {
        run.restore(ckpt)?;
        reporter.truncate_to(run.epoch)?;
        eprintln!("resuming {} at epoch {}", out.display(), run.epoch);
    } else {
        std::fs::write(
            out.join("config.toml"),
            toml::to_string_pretty(&run.config)?,
        )?;
    }
    run.train(&out, &mut reporter)
}

/// `cht eval`.
pub fn eval(device: &Device, args: &EvalArgs) -> Result<()> {
    let ckpt = Checkpoint::load(&checkpoint_path(&args.checkpoint))?;
    ckpt.expect_format(checkpoint::FORMAT)?;
    let config: RunConfig = toml::from_str(ckpt.meta("config")?).context("checkpoint config")?;
    let data = Data::load(&config, false)?;
    let mut run = Run::new(device, config, data)?;
    run.restore(&ckpt)?;
    let start = Instant::now();
    let (loss, acc) = run.evaluate()?;
    println!(
        "epoch {}: test loss {loss:.4}, test accuracy {:.2}% ({} samples, {:.1} s on {})",
        run.epoch,
        acc * 100.0,
        run.data.test_len(),
        start.elapsed().as_secs_f64(),
        device.name()
    );
    Ok(())
}

pub(crate) fn checkpoint_path(p: &Path) -> PathBuf {
    if p.is_dir() {
        p.join("checkpoint.safetensors")
    } else {
        p.to_owned()
    }
}

/// A training run: data, model, scheduler and device buffers.
struct Run<'d> {
    device: &'d Device,
    config: RunConfig,
    data: Data,
    mlp: Mlp,
    /// `None` for fully connected runs.
    sched: Option<DstScheduler>,
    topology: Option<Topology>,
    /// Dense gradients of the sparse layers, captured on update steps for gradient regrowth.
    dense_grads: Vec<Tensor>,
    ws: Workspace,
    eval_ws: Vec<Workspace>,
    /// Epochs completed.
    epoch: u32,
    best: Option<(f64, u32)>,
}

impl<'d> Run<'d> {
    fn new(device: &'d Device, mut config: RunConfig, data: Data) -> Result<Run<'d>> {
        let inputs = data.features();
        let hidden = (config.model.dim * inputs as f64).round() as usize;
        let classes = data.classes();
        let n_sparse = config.model.hidden_layers;
        let mut shapes = vec![(hidden, inputs)];
        shapes.extend(std::iter::repeat_n((hidden, hidden), n_sparse - 1));
        let steps_per_epoch = (data.train_len() / config.train.batch_size) as u64;
        if steps_per_epoch == 0 {
            bail!(
                "train.batch_size {} is larger than the {} training samples",
                config.train.batch_size,
                data.train_len()
            );
        }
        let dst = config.dst_config(steps_per_epoch);
        let seed = config.train.seed;
        let torch_init = config.model.default_init == config::DefaultInit::Pytorch;
        let mut layers = Vec::new();
        let mut sched = None;
        let mut densities = Vec::new();
        if dst.method == cht_dst::Method::Fc {
            for (l, &(out, inp)) in shapes.iter().enumerate() {
                // The official FC hidden layers use `init_mode` (Kaiming) weights and the
                // default bias.
                let layer =
                    DenseLinear::new(device, &format!("layer{l}"), out, inp, seed, l as u32)?;
                if torch_init {
                    layer.init_torch_bias(device, seed, l as u32)?;
                }
                layers.push(Layer::Dense(layer));
            }
        } else {
            let mut s = DstScheduler::new(dst, &shapes)?;
            let correlation = match s.config().topology_init {
                cht_sparse::init::TopologyInit::Csti { .. } => Some(data.correlation()?),
                _ => None,
            };
            let masks = s.initial_masks(correlation.as_ref())?;
            // ITOP counts every link that was ever active, the initial ones included.
            s.observe(&masks)?;
            densities = masks.iter().map(cht_sparse::Mask::density).collect();
            for (l, mask) in masks.iter().enumerate() {
                let weights = s.initial_weights(l, mask)?;
                let pattern = CsrPattern::from_mask(mask);
                let layer = SparseLinear::from_parts(
                    device,
                    &format!("layer{l}"),
                    &pattern,
                    s.capacity(l),
                    &weights,
                )?;
                if torch_init {
                    layer.init_torch_bias(device, seed, l as u32)?;
                }
                layers.push(Layer::Sparse(layer));
            }
            sched = Some(s);
        }
        let classifier_init = if torch_init {
            LinearInit::Torch
        } else {
            LinearInit::KaimingZeroBias
        };
        layers.push(Layer::Dense(DenseLinear::with_init(
            device,
            "classifier",
            (classes, hidden),
            seed,
            n_sparse as u32,
            classifier_init,
        )?));
        let mut mlp = Mlp::from_layers(device, layers)?;
        if sched.is_some() {
            // Sparse layers run as CSR or masked-dense by density; "auto" is measured once (on
            // the largest sparse layer at the training batch) and recorded in the run's config.
            let largest = *shapes
                .iter()
                .max_by_key(|(r, c)| r * c)
                .expect("sparse layers");
            let policy = config.model.masked_dense_above.resolve(
                device,
                largest,
                config.train.batch_size,
            )?;
            mlp.set_execution(device, policy, &densities)?;
        }
        let topology = sched.as_ref().map(|s| s.topology(device, 1));
        let needs_dense_grad = sched
            .as_ref()
            .and_then(|s| s.config().regrowth.as_ref())
            .is_some_and(|r| r.scores == RegrowScores::Gradient);
        let dense_grads = if needs_dense_grad {
            shapes
                .iter()
                .map(|&(r, c)| device.zeros("dense_grad", r, c, DType::F32))
                .collect()
        } else {
            Vec::new()
        };
        let ws = mlp.workspace(device, config.train.batch_size);
        let test_len = data.test_len();
        let eb = config.train.eval_batch.min(test_len).max(1);
        let mut eval_ws = vec![mlp.workspace(device, eb)];
        if !test_len.is_multiple_of(eb) {
            eval_ws.push(mlp.workspace(device, test_len % eb));
        }
        Ok(Run {
            device,
            config,
            data,
            mlp,
            sched,
            topology,
            dense_grads,
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

    fn train(&mut self, out: &Path, reporter: &mut Reporter) -> Result<()> {
        let t = self.config.train.clone();
        let steps = self.data.train_len() / t.batch_size;
        let features = self.data.features();
        let mut x = vec![0f32; features * t.batch_size];
        while self.epoch < t.epochs {
            let epoch = self.epoch;
            let lr = self.lr(epoch);
            let sgd = SgdStep::new(lr, t.momentum, t.weight_decay);
            let order = self.data.shuffled(t.seed, epoch);
            let bar = report::progress_bar(steps as u64, epoch + 1, t.epochs);
            let start = Instant::now();
            let (mut loss_sum, mut loss_n) = (0.0, 0u64);
            let mut correct = 0.0;
            for s in 0..steps {
                let idx = &order[s * t.batch_size..(s + 1) * t.batch_size];
                let labels = self.data.train_batch(idx, &mut x);
                self.mlp.load_batch(self.device, &self.ws, &x, &labels)?;
                let update = self.sched.as_mut().is_some_and(DstScheduler::step);
                if update {
                    self.topology_step()?;
                } else {
                    self.mlp.train_step(self.device, &self.ws, Some(sgd))?;
                }
                crate::testing::maybe_abort(s as u64 + u64::from(epoch) * steps as u64 + 1);
                if (s + 1) % t.log_every as usize == 0 || s + 1 == steps {
                    let m = self.mlp.take_metrics(self.device, &self.ws)?;
                    loss_sum += m.loss * m.samples as f64;
                    correct += m.accuracy * m.samples as f64;
                    loss_n += m.samples;
                    let rate = (s + 1) as f64 * t.batch_size as f64 / start.elapsed().as_secs_f64();
                    bar.set_position(s as u64 + 1);
                    bar.set_message(format!("loss {:.4}  {:.0} samples/s", m.loss, rate));
                }
            }
            bar.finish_and_clear();
            let train_s = start.elapsed().as_secs_f64();
            let eval_start = Instant::now();
            let (test_loss, test_acc) = self.evaluate()?;
            let eval_s = eval_start.elapsed().as_secs_f64();
            self.epoch += 1;
            if self.best.is_none_or(|(b, _)| test_acc > b) {
                self.best = Some((test_acc, self.epoch));
            }
            let (density, anp, itop) = self.topology_metrics()?;
            let metrics = EpochMetrics {
                epoch: self.epoch,
                train_loss: loss_sum / loss_n.max(1) as f64,
                train_acc: correct / loss_n.max(1) as f64,
                test_loss,
                test_acc,
                lr: f64::from(lr),
                density,
                anp,
                itop,
                epoch_s: train_s + eval_s,
                train_s,
                eval_s,
            };
            reporter.epoch(&metrics, self.best, self.device)?;
            if self.epoch.is_multiple_of(t.checkpoint_every) || self.epoch == t.epochs {
                self.save(out)?;
            }
        }
        reporter.finish(self.best, &self.config)?;
        if let Some(s) = &self.sched {
            eprint!("{}", s.summary());
        }
        Ok(())
    }

    /// An update step: forward/backward (capturing dense gradients if regrowth needs them), no
    /// optimizer step, then the topology update on the device.
    fn topology_step(&mut self) -> Result<()> {
        let capture: Vec<(usize, &Tensor)> = self.dense_grads.iter().enumerate().collect();
        self.mlp
            .train_step_capturing(self.device, &self.ws, None, &capture)?;
        let (Some(sched), Some(topology)) = (self.sched.as_mut(), self.topology.as_ref()) else {
            return Ok(());
        };
        let sparse: Vec<&SparseLinear> = self
            .mlp
            .layers
            .iter()
            .filter_map(|l| {
                if let Layer::Sparse(s) = l {
                    Some(s)
                } else {
                    None
                }
            })
            .collect();
        // Masked-dense layers hand their weights to the update in CSR order.
        self.mlp.sync_to_csr(self.device)?;
        let states: Vec<[&Tensor; 1]> = sparse.iter().map(|s| [&s.weight.state[0]]).collect();
        let refs: Vec<LayerRef<'_>> = sparse
            .iter()
            .enumerate()
            .map(|(l, s)| LayerRef {
                pattern: &s.pattern,
                values: &s.weight.value,
                state: &states[l],
                grad: Some(&s.weight.grad),
                dense_grad: self.dense_grads.get(l),
            })
            .collect();
        sched.update(self.device, topology, &refs)?;
        // Patterns change only here: observing each new one makes ITOP exact whatever the
        // evaluation interval.
        let masks = self.observe_topology()?;
        let densities: Vec<f64> = masks.iter().map(cht_sparse::Mask::density).collect();
        self.mlp.after_topology_update(self.device, &densities)?;
        Ok(())
    }

    /// Test loss and top-1 accuracy over the whole test set (one submit per batch, one readback).
    fn evaluate(&mut self) -> Result<(f64, f64)> {
        let n = self.data.test_len();
        let eb = self.eval_ws[0].batch();
        let mut x = vec![0f32; self.data.features() * eb];
        let (mut loss, mut correct) = (0.0, 0.0);
        let mut start = 0;
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
            self.mlp.load_batch(self.device, ws, &x, &labels)?;
            self.mlp.eval_step(self.device, ws)?;
            start += b;
        }
        for ws in &self.eval_ws {
            let m = self.mlp.take_metrics(self.device, ws)?;
            loss += m.loss * m.samples as f64;
            correct += m.accuracy * m.samples as f64;
        }
        Ok((loss / n as f64, correct / n as f64))
    }

    /// Reads the sparse patterns back and adds them to the scheduler's ITOP and ANP record.
    fn observe_topology(&mut self) -> Result<Vec<cht_sparse::Mask>> {
        let Some(sched) = self.sched.as_mut() else {
            return Ok(Vec::new());
        };
        let mut masks = Vec::new();
        for layer in &self.mlp.layers {
            if let Layer::Sparse(s) = layer {
                masks.push(self.device.download_pattern(&s.pattern)?.to_mask());
            }
        }
        sched.observe(&masks)?;
        Ok(masks)
    }

    /// Per-layer density, ANP and ITOP (one mask readback per epoch).
    fn topology_metrics(&mut self) -> Result<(Vec<f64>, Option<f64>, Option<f64>)> {
        if self.sched.is_none() {
            return Ok((vec![1.0; self.config.model.hidden_layers], None, None));
        }
        let masks = self.observe_topology()?;
        let density = masks.iter().map(cht_sparse::Mask::density).collect();
        let sched = self.sched.as_ref();
        Ok((
            density,
            sched.and_then(DstScheduler::anp),
            sched.map(DstScheduler::itop),
        ))
    }

    fn save(&self, out: &Path) -> Result<()> {
        let mut c = Checkpoint::default();
        self.mlp.sync_to_csr(self.device)?;
        for (l, layer) in self.mlp.layers.iter().enumerate() {
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
        c.metadata
            .insert("format".into(), checkpoint::FORMAT.into());
        c.metadata
            .insert("config".into(), toml::to_string(&self.config)?);
        c.metadata.insert("epoch".into(), self.epoch.to_string());
        c.metadata
            .insert("best".into(), serde_json::to_string(&self.best)?);
        if let Some(s) = &self.sched {
            c.metadata
                .insert("scheduler".into(), serde_json::to_string(s)?);
        }
        c.put_history(self.device, self.topology.as_ref())?;
        c.save(&out.join("checkpoint.safetensors"))
    }

    fn restore(&mut self, c: &Checkpoint) -> Result<()> {
        let bad = |what: String| anyhow::anyhow!("checkpoint does not match the model: {what}");
        let mut densities = Vec::new();
        for (l, layer) in self.mlp.layers.iter_mut().enumerate() {
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
                    if p.nnz() > s.pattern.capacity() {
                        return Err(bad(format!(
                            "{} links exceed the capacity {}",
                            p.nnz(),
                            s.pattern.capacity()
                        )));
                    }
                    s.pattern = self.device.upload_pattern(
                        &format!("layer{l}"),
                        &p,
                        s.pattern.capacity(),
                    )?;
                    densities.push(p.density());
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
        // Masked-dense layers rebuild from the restored CSR side; executions follow the restored
        // densities.
        self.mlp.after_topology_update(self.device, &densities)?;
        self.epoch = c.meta("epoch")?.parse().context("checkpoint epoch")?;
        self.best = serde_json::from_str(c.meta("best")?).context("checkpoint best accuracy")?;
        if let Some(s) = &mut self.sched {
            *s =
                serde_json::from_str(c.meta("scheduler")?).context("checkpoint scheduler state")?;
        }
        c.restore_history(self.device, self.topology.as_ref())
    }
}
