//! `cht lm train` / `cht sample`: the language-model runner (spec §7.4) — a LLaMA-style decoder
//! whose q, k, v, o, gate, up, down projections train under a DST method on a text corpus.
//! Read [`LmRun::train`] top to bottom: per step, a keyed random batch, one submit (the topology
//! update every ΔT steps replaces that step's Adam update, as the paper's loop), the loss read
//! every `log_every` steps, validation perplexity every `eval_every` steps, atomic checkpoints.
//! It shares the MLP runner's config loader, metrics log, plots, progress bar and checkpoint file.

pub mod config;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use cht_data::text::{self, Corpus, CorpusOptions, Tokenizer};
use cht_dst::{DstScheduler, LayerRef, RegrowScores, Topology};
use cht_gpu::{AdamWStep, DType, Device, Tensor};
use cht_nn::{DenseLinear, Layer, LinearInit, Lm, LmWorkspace, SparseLinear};
use cht_sparse::CsrPattern;
use cht_sparse::rng::{Counter, RngKey, Stream};
use serde::{Deserialize, Serialize};

use crate::plot::{Chart, Series};
use crate::train::checkpoint::{Checkpoint, LM_FORMAT};
use crate::train::report::{MetricsLog, labelled_bar};
use config::LmRunConfig;

/// Command-line arguments of `cht lm train`.
#[derive(clap::Args, Debug)]
pub struct LmTrainArgs {
    /// Run configuration (TOML; see `configs/lm-*.toml`).
    #[arg(long, required_unless_present = "resume")]
    config: Option<PathBuf>,
    /// Override a configuration value, e.g. `--set dst.method=set --set train.steps=500`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
    /// Output directory (default: `runs/lm-<method>-d<density>-s<seed>`).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Continue the run in this directory from its last checkpoint.
    #[arg(long, conflicts_with_all = ["config", "overrides", "out"])]
    resume: Option<PathBuf>,
}

/// Command-line arguments of `cht sample`.
#[derive(clap::Args, Debug)]
pub struct SampleArgs {
    /// A language-model run directory (or its checkpoint file).
    #[arg(long)]
    checkpoint: PathBuf,
    /// Text to continue.
    #[arg(long, default_value = "ROMEO:\n")]
    prompt: String,
    /// Tokens to generate.
    #[arg(long, default_value_t = 400)]
    tokens: usize,
    /// Softmax temperature (0 = greedy).
    #[arg(long, default_value_t = 0.8)]
    temperature: f32,
    /// Sample only among the k likeliest tokens (0 = all).
    #[arg(long, default_value_t = 0)]
    top_k: usize,
    /// Seed of the sampling.
    #[arg(long, default_value_t = 0)]
    seed: u32,
}

/// One line of a language-model run's `metrics.jsonl` (written at every validation).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StepMetrics {
    /// Steps completed.
    pub step: u64,
    /// Mean training cross-entropy (nats per token) since the previous line.
    pub train_loss: f64,
    /// Validation cross-entropy over the whole validation part.
    pub val_loss: f64,
    /// `exp(val_loss)`.
    pub val_ppl: f64,
    /// Next-token accuracy on the validation part.
    pub val_acc: f64,
    /// Learning rate of the last step.
    pub lr: f64,
    /// Density of the sparse projections (mean over them).
    pub density: f64,
    /// In-time over-parameterisation rate (sparse runs).
    pub itop: Option<f64>,
    /// Sparse projections running masked-dense (above `model.masked_dense_above`), the rest CSR.
    #[serde(default)]
    pub masked_dense: usize,
    /// Training tokens per second since the previous line (validation excluded).
    pub tokens_per_s: f64,
    /// Wall seconds since the start of the run (this process).
    pub elapsed_s: f64,
}

/// `cht lm train`.
pub fn train(device: &Device, args: &LmTrainArgs) -> Result<()> {
    let (config, out, resume) = match &args.resume {
        Some(dir) => {
            let ckpt = Checkpoint::load(&crate::train::checkpoint_path(dir))?;
            ckpt.expect_format(LM_FORMAT)?;
            let config = checkpoint_config(&ckpt)?;
            (config, dir.clone(), Some(ckpt))
        }
        None => {
            let path = args.config.as_ref().context("--config is required")?;
            let config = LmRunConfig::load(path, &args.overrides)?;
            let out = args.out.clone().unwrap_or_else(|| {
                let method = serde_json::to_value(config.dst.method)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default();
                PathBuf::from("runs").join(format!(
                    "lm-{method}-d{}-s{}",
                    config.dst.density, config.train.seed
                ))
            });
            (config, out, None)
        }
    };
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let corpus = load_corpus(&config, resume.as_ref())?;
    eprintln!(
        "corpus {}: {} training and {} validation tokens, vocabulary {}",
        config.data.corpus.display(),
        corpus.train.len(),
        corpus.val.len(),
        corpus.tokenizer.vocab_size()
    );
    let mut run = LmRun::new(device, config, corpus)?;
    let mut log = MetricsLog::<StepMetrics>::new(&out, resume.is_some())?;
    if let Some(ckpt) = &resume {
        run.restore(ckpt)?;
        let step = run.step;
        log.retain(|m| m.step <= step)?;
        eprintln!("resuming {} at step {}", out.display(), run.step);
    } else {
        std::fs::write(
            out.join("config.toml"),
            toml::to_string_pretty(&run.config)?,
        )?;
    }
    run.train(&out, &mut log)
}

/// `cht sample`: continues a prompt with a trained model.
pub fn sample(device: &Device, args: &SampleArgs) -> Result<()> {
    let ckpt = Checkpoint::load(&crate::train::checkpoint_path(&args.checkpoint))?;
    ckpt.expect_format(LM_FORMAT)?;
    let mut config = checkpoint_config(&ckpt)?;
    let tokenizer: Tokenizer =
        serde_json::from_str(ckpt.meta("tokenizer")?).context("checkpoint tokenizer")?;
    // One sequence at a time.
    config.train.batch = 1;
    let corpus = Corpus {
        tokenizer,
        train: Vec::new(),
        val: Vec::new(),
    };
    let mut run = LmRun::new(device, config, corpus)?;
    run.restore(&ckpt)?;
    let text = run.generate(args)?;
    println!("{text}");
    Ok(())
}

/// The configuration a checkpoint was trained with. Checkpoints written before `model.bias`
/// existed have projection biases: their config reads as `bias = true`.
fn checkpoint_config(ckpt: &Checkpoint) -> Result<LmRunConfig> {
    let mut config: LmRunConfig =
        toml::from_str(ckpt.meta("config")?).context("checkpoint config")?;
    if !config.model.bias && ckpt.has_f32("block0.q.bias") {
        config.model.bias = true;
    }
    Ok(config)
}

fn load_corpus(config: &LmRunConfig, resume: Option<&Checkpoint>) -> Result<Corpus> {
    let options = CorpusOptions {
        tokenizer: config.data.tokenizer,
        bpe_vocab: config.data.bpe_vocab,
        val_fraction: config.data.val_fraction,
        seq: config.model.seq,
    };
    let corpus = Corpus::load(&config.data.corpus, &options)?;
    if let Some(ckpt) = resume {
        let saved: Tokenizer =
            serde_json::from_str(ckpt.meta("tokenizer")?).context("checkpoint tokenizer")?;
        if saved != corpus.tokenizer {
            bail!(
                "{} no longer gives the tokenizer this run was trained with (the corpus changed)",
                config.data.corpus.display()
            );
        }
    }
    Ok(corpus)
}

/// A language-model training run: corpus, model, scheduler and device buffers.
struct LmRun<'d> {
    device: &'d Device,
    config: LmRunConfig,
    corpus: Corpus,
    lm: Lm,
    /// `None` for fully connected runs.
    sched: Option<DstScheduler>,
    topology: Option<Topology>,
    /// Dense gradients of the projections (gradient regrowth only), by projection index.
    dense_grads: Vec<(usize, Tensor)>,
    ws: LmWorkspace,
    /// Steps completed.
    step: u64,
    /// Adam updates taken (update steps skip the optimizer), for the bias corrections.
    adam_t: u32,
    /// Best validation perplexity and its step.
    best: Option<(f64, u64)>,
}

impl<'d> LmRun<'d> {
    fn new(device: &'d Device, mut config: LmRunConfig, corpus: Corpus) -> Result<LmRun<'d>> {
        let lm_config = config.lm_config(corpus.tokenizer.vocab_size());
        let mut densities = Vec::new();
        let (mut lm, sched) = if config.dense() {
            let init = LinearInit::Normal {
                std: config::LLAMA_INIT_STD as f32,
            };
            let projections = lm_config
                .projection_shapes()
                .iter()
                .enumerate()
                .map(|(l, &shape)| {
                    let label = format!("block{}.{}", l / 7, PROJECTIONS[l % 7]);
                    let layer = (l / 7 * 8 + l % 7) as u32;
                    DenseLinear::with_init(device, &label, shape, config.train.seed, layer, init)
                        .map(Layer::Dense)
                })
                .collect::<cht_nn::Result<Vec<_>>>()?;
            (Lm::with_projections(device, &lm_config, projections)?, None)
        } else {
            let mut sched = DstScheduler::new(config.dst_config(), &lm_config.projection_shapes())?
                .side_by_side();
            let masks = sched.initial_masks(None)?;
            // ITOP counts every link that was ever active, the initial ones included.
            sched.observe(&masks)?;
            densities = masks.iter().map(cht_sparse::Mask::density).collect();
            let mut projections = Vec::with_capacity(masks.len());
            for (l, mask) in masks.iter().enumerate() {
                let weights = sched.initial_weights(l, mask)?;
                let layer = SparseLinear::from_parts(
                    device,
                    &format!("block{}.{}", l / 7, PROJECTIONS[l % 7]),
                    &CsrPattern::from_mask(mask),
                    sched.capacity(l),
                    &weights,
                )?;
                projections.push(Layer::Sparse(layer));
            }
            (
                Lm::with_projections(device, &lm_config, projections)?,
                Some(sched),
            )
        };
        if sched.is_some() {
            // Projections run as CSR or masked-dense by density; "auto" is measured once (on the
            // largest projection at the step's tokens) and recorded in the run's config.
            let largest = *lm_config
                .projection_shapes()
                .iter()
                .max_by_key(|(r, c)| r * c)
                .expect("a model has projections");
            let tokens = lm_config.batch * lm_config.seq;
            let policy = config
                .model
                .masked_dense_above
                .resolve(device, largest, tokens)?;
            lm.set_execution(device, policy, &densities)?;
        }
        // Adam's moments ride along with the values through every rewiring.
        let topology = sched.as_ref().map(|s| s.topology(device, 2));
        let gradient_regrowth = sched
            .as_ref()
            .and_then(|s| s.config().regrowth.as_ref())
            .is_some_and(|r| r.scores == RegrowScores::Gradient);
        let dense_grads = if gradient_regrowth {
            lm_config
                .projection_shapes()
                .iter()
                .enumerate()
                .map(|(j, &(r, c))| (j, device.zeros("dense_grad", r, c, DType::F32)))
                .collect()
        } else {
            Vec::new()
        };
        let ws = lm.workspace(device);
        Ok(LmRun {
            device,
            config,
            corpus,
            lm,
            sched,
            topology,
            dense_grads,
            ws,
            step: 0,
            adam_t: 0,
            best: None,
        })
    }

    fn train(&mut self, out: &Path, log: &mut MetricsLog<StepMetrics>) -> Result<()> {
        let t = self.config.train.clone();
        let seq = self.config.model.seq;
        // Fail before training, not at the first validation.
        if text::val_windows(&self.corpus.val, seq, t.batch).is_empty() {
            bail!(
                "the validation part ({} tokens) holds fewer than train.batch = {} windows of model.seq = {seq} tokens; raise data.val_fraction or lower train.batch",
                self.corpus.val.len(),
                t.batch
            );
        }
        let schedule = self.config.lr_schedule();
        let tokens_per_step = (t.batch * seq) as f64;
        let (mut ids, mut targets) = (Vec::new(), Vec::new());
        let bar = labelled_bar(t.steps, &format!("lm {}", method_name(&self.config)));
        bar.set_position(self.step);
        let run_start = Instant::now();
        let mut window_train_s = 0.0;
        let mut window_steps = 0u64;
        let (mut loss_sum, mut loss_n) = (0.0, 0u64);
        let mut lr = 0.0;
        while self.step < t.steps {
            let step_start = Instant::now();
            text::train_batch(
                &self.corpus.train,
                seq,
                t.batch,
                t.seed,
                self.step,
                &mut ids,
                &mut targets,
            );
            self.lm.load(self.device, &self.ws, &ids, &targets)?;
            let update = self.sched.as_mut().is_some_and(DstScheduler::step);
            if update {
                self.topology_step()?;
            } else {
                lr = schedule.lr(self.step);
                self.adam_t += 1;
                let adam = AdamWStep {
                    lr: lr as f32,
                    beta1: t.beta1,
                    beta2: t.beta2,
                    eps: t.eps,
                    weight_decay: t.weight_decay,
                    t: self.adam_t,
                };
                let clip = (t.clip > 0.0).then_some(t.clip);
                self.lm
                    .train_step(self.device, &self.ws, Some(adam), clip)?;
            }
            self.step += 1;
            window_steps += 1;
            crate::testing::maybe_abort(self.step);
            let log_now = self.step.is_multiple_of(t.log_every);
            let eval_now = self.step.is_multiple_of(t.eval_every) || self.step == t.steps;
            if log_now || eval_now {
                let m = self.lm.take_metrics(self.device, &self.ws)?;
                window_train_s += step_start.elapsed().as_secs_f64();
                loss_sum += m.loss * m.samples as f64;
                loss_n += m.samples;
                let rate = window_steps as f64 * tokens_per_step / window_train_s.max(1e-9);
                bar.set_position(self.step);
                bar.set_message(format!("loss {:.4}  {:.0} tokens/s", m.loss, rate));
            } else {
                window_train_s += step_start.elapsed().as_secs_f64();
            }
            if eval_now {
                let (val_loss, val_acc) = self.evaluate()?;
                let val_ppl = val_loss.exp();
                if self.best.is_none_or(|(b, _)| val_ppl < b) {
                    self.best = Some((val_ppl, self.step));
                }
                let (density, itop) = self.topology_metrics()?;
                let m = StepMetrics {
                    step: self.step,
                    train_loss: loss_sum / loss_n.max(1) as f64,
                    val_loss,
                    val_ppl,
                    val_acc,
                    lr,
                    density,
                    itop,
                    masked_dense: self.lm.masked_dense_count(),
                    tokens_per_s: window_steps as f64 * tokens_per_step / window_train_s.max(1e-9),
                    elapsed_s: run_start.elapsed().as_secs_f64(),
                };
                bar.suspend(|| {
                    eprintln!(
                        "step {:>6}  train loss {:.4}  val loss {:.4}  val ppl {:.3} (best {:.3})  lr {:.2e}  density {:.2}%{}  {:.0} tokens/s  {:.0} s since start",
                        m.step,
                        m.train_loss,
                        m.val_loss,
                        m.val_ppl,
                        self.best.map_or(f64::NAN, |b| b.0),
                        m.lr,
                        m.density * 100.0,
                        m.itop.map_or(String::new(), |i| format!("  ITOP {:.1}%", i * 100.0)),
                        m.tokens_per_s,
                        m.elapsed_s,
                    );
                });
                log.push(m)?;
                plots(out, &log.history)?;
                (loss_sum, loss_n, window_steps, window_train_s) = (0.0, 0, 0, 0.0);
            }
            if self.step.is_multiple_of(t.checkpoint_every) || self.step == t.steps {
                self.save(out)?;
            }
        }
        bar.finish_and_clear();
        self.summary(out, &log.history)?;
        if let Some(s) = &self.sched {
            eprint!("{}", s.summary());
        }
        Ok(())
    }

    /// An update step: forward/backward (capturing dense gradients if regrowth needs them), no
    /// optimizer step, then the topology update on the device.
    fn topology_step(&mut self) -> Result<()> {
        let capture: Vec<(usize, &Tensor)> =
            self.dense_grads.iter().map(|(j, t)| (*j, t)).collect();
        self.lm
            .train_step_capturing(self.device, &self.ws, None, None, &capture)?;
        let (Some(sched), Some(topology)) = (self.sched.as_mut(), self.topology.as_ref()) else {
            return Ok(());
        };
        // Masked-dense projections hand their weights to the update in CSR order.
        self.lm.sync_to_csr(self.device)?;
        let sparse = self.lm.sparse_projections();
        let refs: Vec<LayerRef<'_>> = sparse
            .iter()
            .enumerate()
            .map(|(j, p)| LayerRef {
                pattern: &p.layer.pattern,
                values: &p.layer.weight.value,
                state: &p.moments,
                grad: Some(&p.layer.weight.grad),
                dense_grad: self.dense_grads.get(j).map(|(_, t)| t),
            })
            .collect();
        sched.update(self.device, topology, &refs)?;
        // Patterns change only here: observing each new one (a readback every ΔT steps) makes
        // ITOP exact whatever the validation interval.
        let densities = self.observe_topology()?;
        self.lm.after_topology_update(self.device, &densities)?;
        Ok(())
    }

    /// Cross-entropy and next-token accuracy over every whole batch of validation windows.
    fn evaluate(&mut self) -> Result<(f64, f64)> {
        let seq = self.config.model.seq;
        let batch = self.config.train.batch;
        let starts = text::val_windows(&self.corpus.val, seq, batch);
        // The training loss accumulated since the last readback was taken by the caller.
        let (mut ids, mut targets) = (Vec::new(), Vec::new());
        for group in starts.chunks(batch) {
            text::windows(&self.corpus.val, seq, group, &mut ids, &mut targets);
            self.lm.load(self.device, &self.ws, &ids, &targets)?;
            self.lm.eval_step(self.device, &self.ws)?;
        }
        let m = self.lm.take_metrics(self.device, &self.ws)?;
        Ok((m.loss, m.accuracy))
    }

    /// Reads the sparse patterns back and adds them to the scheduler's ITOP record; returns
    /// each projection's density.
    fn observe_topology(&mut self) -> Result<Vec<f64>> {
        let Some(sched) = self.sched.as_mut() else {
            return Ok(Vec::new());
        };
        let mut masks = Vec::new();
        for p in self.lm.sparse_projections() {
            masks.push(self.device.download_pattern(&p.layer.pattern)?.to_mask());
        }
        sched.observe(&masks)?;
        Ok(masks.iter().map(cht_sparse::Mask::density).collect())
    }

    /// Mean density of the sparse projections (over all their possible links) and ITOP (one
    /// pattern readback per validation).
    fn topology_metrics(&mut self) -> Result<(f64, Option<f64>)> {
        if self.sched.is_none() {
            return Ok((1.0, None));
        }
        let densities = self.observe_topology()?;
        let sizes: Vec<f64> = self
            .lm
            .sparse_projections()
            .iter()
            .map(|p| (p.layer.pattern.rows() * p.layer.pattern.cols()) as f64)
            .collect();
        let links: f64 = densities.iter().zip(&sizes).map(|(d, n)| d * n).sum();
        let itop = self.sched.as_ref().map(DstScheduler::itop);
        Ok((links / sizes.iter().sum::<f64>().max(1.0), itop))
    }

    fn summary(&self, out: &Path, history: &[StepMetrics]) -> Result<()> {
        let last = history.last();
        let summary = serde_json::json!({
            "corpus": self.config.data.corpus,
            "method": self.config.dst.method,
            "density": if self.config.dense() { 1.0 } else { self.config.dst.density },
            "seed": self.config.train.seed,
            "steps": self.step,
            "final_val_loss": last.map(|m| m.val_loss),
            "final_val_ppl": last.map(|m| m.val_ppl),
            "best_val_ppl": self.best.map(|b| b.0),
            "best_step": self.best.map(|b| b.1),
            "final_itop": last.and_then(|m| m.itop),
            "mean_tokens_per_s": history.iter().map(|m| m.tokens_per_s).sum::<f64>() / history.len().max(1) as f64,
            "device": self.device.name(),
        });
        std::fs::write(
            out.join("summary.json"),
            serde_json::to_string_pretty(&summary)?,
        )?;
        if let Some(m) = last {
            eprintln!(
                "done: validation perplexity {:.3} (best {:.3}); outputs in {}",
                m.val_ppl,
                self.best.map_or(f64::NAN, |b| b.0),
                out.display()
            );
        }
        Ok(())
    }

    /// Continues `args.prompt` token by token: the last `seq` tokens go through the model, the
    /// logits of the last position are sampled (temperature, top-k) with the counter RNG.
    fn generate(&mut self, args: &SampleArgs) -> Result<String> {
        let seq = self.config.model.seq;
        let tokenizer = &self.corpus.tokenizer;
        let mut tokens = tokenizer.encode(&args.prompt)?;
        if tokens.is_empty() {
            tokens.push(0);
        }
        let prompt_len = tokens.len();
        let vocab = tokenizer.vocab_size();
        let mut ids = vec![0u32; seq];
        let zeros = vec![0u32; seq];
        for i in 0..args.tokens {
            let context = &tokens[tokens.len().saturating_sub(seq)..];
            ids[..context.len()].copy_from_slice(context);
            ids[context.len()..].fill(0);
            self.lm.load(self.device, &self.ws, &ids, &zeros)?;
            self.lm.eval_step(self.device, &self.ws)?;
            // One readback per token: the logits. The loss sums the eval step accumulates are
            // never read here, so they are not reset either.
            let logits = self.lm.read_logits(self.device, &self.ws)?;
            let pos = context.len() - 1;
            let column: Vec<f32> = (0..vocab).map(|v| logits[v * seq + pos]).collect();
            let mut rng = Counter::new(RngKey::new(args.seed, Stream::Synthetic, i as u32, 0));
            tokens.push(pick(&column, args.temperature, args.top_k, &mut rng));
        }
        let prompt = tokenizer.decode(&tokens[..prompt_len])?;
        let generated = tokenizer.decode(&tokens[prompt_len..])?;
        Ok(format!("{prompt}{generated}"))
    }

    fn save(&self, out: &Path) -> Result<()> {
        let mut c = Checkpoint::default();
        self.lm.sync_to_csr(self.device)?;
        let read = |t: &Tensor| self.device.read_f32(t);
        for (name, [value, m, v]) in self.lm.state() {
            c.put_f32(&name, &[value.len()], read(value)?);
            c.put_f32(&format!("{name}.adam_m"), &[m.len()], read(m)?);
            c.put_f32(&format!("{name}.adam_v"), &[v.len()], read(v)?);
        }
        for (j, p) in self.lm.sparse_projections().iter().enumerate() {
            let pattern = self.device.download_pattern(&p.layer.pattern)?;
            c.put_u32(
                &format!("projection{j}.row_ptr"),
                &[pattern.row_ptr().len()],
                pattern.row_ptr().to_vec(),
            );
            c.put_u32(
                &format!("projection{j}.col_idx"),
                &[pattern.nnz()],
                pattern.col_idx().to_vec(),
            );
        }
        c.metadata.insert("format".into(), LM_FORMAT.into());
        c.metadata
            .insert("config".into(), toml::to_string(&self.config)?);
        c.metadata.insert(
            "tokenizer".into(),
            serde_json::to_string(&self.corpus.tokenizer)?,
        );
        c.metadata.insert("step".into(), self.step.to_string());
        c.metadata.insert("adam_t".into(), self.adam_t.to_string());
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
        // Patterns first: the values of a sparse projection follow its pattern's CSR order.
        let device = self.device;
        let mut j = 0;
        let mut densities = Vec::new();
        for layer in self.lm.projections_mut() {
            let Layer::Sparse(s) = layer else { continue };
            let name = |what: &str| format!("projection{j}.{what}");
            let row_ptr = c.u32(&name("row_ptr"))?.to_vec();
            let col_idx = c.u32(&name("col_idx"))?.to_vec();
            let p = CsrPattern::new(s.pattern.rows(), s.pattern.cols(), row_ptr, col_idx)
                .map_err(|e| bad(format!("{}: {e}", name("pattern"))))?;
            if p.nnz() > s.pattern.capacity() {
                return Err(bad(format!(
                    "{} links in projection {j} exceed its capacity {}",
                    p.nnz(),
                    s.pattern.capacity()
                )));
            }
            s.pattern =
                device.upload_pattern(&format!("projection{j}"), &p, s.pattern.capacity())?;
            densities.push(p.density());
            j += 1;
        }
        for (name, tensors) in self.lm.state() {
            for (t, suffix) in tensors.iter().zip(["", ".adam_m", ".adam_v"]) {
                let key = format!("{name}{suffix}");
                let v = c.f32(&key)?;
                if v.len() != t.len() {
                    return Err(bad(format!(
                        "{key} has {} values, the model {}",
                        v.len(),
                        t.len()
                    )));
                }
                device.write_f32(t, v)?;
            }
        }
        // Masked-dense projections rebuild from the restored CSR side; executions follow the
        // restored densities.
        self.lm.after_topology_update(device, &densities)?;
        self.step = c.meta("step")?.parse().context("checkpoint step")?;
        self.adam_t = c.meta("adam_t")?.parse().context("checkpoint adam_t")?;
        self.best = serde_json::from_str(c.meta("best")?).context("checkpoint best")?;
        if let Some(s) = &mut self.sched {
            *s = serde_json::from_str(c.meta("scheduler")?).context("checkpoint scheduler")?;
        }
        c.restore_history(self.device, self.topology.as_ref())
    }
}

/// Names of a block's projections, in order.
const PROJECTIONS: [&str; 7] = ["q", "k", "v", "o", "gate", "up", "down"];

fn method_name(c: &LmRunConfig) -> String {
    serde_json::to_value(c.dst.method)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// Draws a token from `logits`: greedy at temperature 0, else softmax(logits / T) over the
/// `top_k` likeliest (all when 0).
fn pick(logits: &[f32], temperature: f32, top_k: usize, rng: &mut Counter) -> u32 {
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
    if temperature <= 0.0 {
        return order[0] as u32;
    }
    if top_k > 0 {
        order.truncate(top_k);
    }
    let max = logits[order[0]];
    let weights: Vec<f64> = order
        .iter()
        .map(|&i| f64::from((logits[i] - max) / temperature).exp())
        .collect();
    let total: f64 = weights.iter().sum();
    let mut u = f64::from(rng.next_uniform()) * total;
    for (&i, w) in order.iter().zip(&weights) {
        if u < *w {
            return i as u32;
        }
        u -= w;
    }
    order[order.len() - 1] as u32
}

/// Validation perplexity, losses and density against steps.
fn plots(out: &Path, history: &[StepMetrics]) -> Result<()> {
    let pts = |f: &dyn Fn(&StepMetrics) -> f64| -> Vec<(f64, f64)> {
        history.iter().map(|m| (m.step as f64, f(m))).collect()
    };
    let ppl = pts(&|m| m.val_ppl);
    Chart {
        title: "Validation perplexity",
        x_label: "step",
        y_label: "perplexity",
        series: vec![Series {
            label: "validation",
            points: &ppl,
            color: [31, 119, 180],
        }],
        width: 800,
        height: 500,
    }
    .save_png(&out.join("perplexity.png"))?;
    let val = pts(&|m| m.val_loss);
    let train = pts(&|m| m.train_loss);
    Chart {
        title: "Loss",
        x_label: "step",
        y_label: "cross-entropy (nats/token)",
        series: vec![
            Series {
                label: "validation",
                points: &val,
                color: [31, 119, 180],
            },
            Series {
                label: "train",
                points: &train,
                color: [255, 127, 14],
            },
        ],
        width: 800,
        height: 500,
    }
    .save_png(&out.join("loss.png"))?;
    let density = pts(&|m| m.density * 100.0);
    let itop = pts(&|m| m.itop.unwrap_or(0.0) * 100.0);
    Chart {
        title: "Topology",
        x_label: "step",
        y_label: "percent",
        series: vec![
            Series {
                label: "density",
                points: &density,
                color: [44, 160, 44],
            },
            Series {
                label: "ITOP",
                points: &itop,
                color: [127, 127, 127],
            },
        ],
        width: 800,
        height: 500,
    }
    .save_png(&out.join("topology.png"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pick_is_greedy_at_zero_temperature_and_respects_top_k() {
        let logits = [0.1f32, 3.0, -1.0, 2.9];
        let mut rng = Counter::new(RngKey::new(1, Stream::Synthetic, 0, 0));
        assert_eq!(pick(&logits, 0.0, 0, &mut rng), 1);
        for _ in 0..100 {
            let t = pick(&logits, 1.0, 2, &mut rng);
            assert!(t == 1 || t == 3, "{t}");
        }
        let draws: Vec<u32> = (0..400).map(|_| pick(&logits, 5.0, 0, &mut rng)).collect();
        assert!(
            draws.contains(&2),
            "a hot temperature reaches unlikely tokens"
        );
    }
}
