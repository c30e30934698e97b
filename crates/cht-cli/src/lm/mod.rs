//! `cht lm train` / `cht sample`: the language-model runner (spec §7.4) — a LLaMA-style decoder
//! whose q, k, v, o, gate, up, down projections train under a DST method on a text corpus.
//! Read [`LmRun::steps`] top to bottom: per step, a keyed random batch, one submit (the topology
//! update every ΔT steps replaces that step's Adam update, as the paper's loop), the loss read
//! every `log_every` steps, validation perplexity every `eval_every` steps. The run loop around it
//! (start or resume, metrics log, plots, atomic checkpoints) is the one every runner shares:
//! [`crate::run`](mod@crate::run).

pub mod config;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use cht_data::text::{self, Corpus, CorpusOptions, Tokenizer, TokenizerKind, TokenizerSource};
use cht_gpu::{AdamWStep, Device, Tensor};
use cht_nn::{LinearInit, Lm, LmOptimizer, LmWorkspace, SparseLm};
use cht_sparse::CsrPattern;
use cht_sparse::rng::{Counter, RngKey, Stream};
use serde::{Deserialize, Serialize};

use crate::footprint::Footprint;
use crate::logs::StepLine;
use crate::plot::{Chart, GREY, PALETTE, Series};
use crate::run::{self, Runner};
use crate::train::checkpoint::{Checkpoint, LM_FORMAT};
use crate::train::report::labelled_bar;
use crate::world::World;
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
    /// Continue the run in this directory from its last checkpoint (with
    /// `--set train.steps=N`: extend it to N steps; the schedules of the new length apply from
    /// the checkpoint on).
    #[arg(long, conflicts_with_all = ["config", "out", "force"])]
    resume: Option<PathBuf>,
    /// Replace the outputs of an earlier run in the output directory (without it, a directory
    /// that holds a run is refused).
    #[arg(long)]
    force: bool,
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

/// `cht lm train` (data-parallel when started by an MPI launcher: see [`crate::world`]).
pub fn train(device: &Device, world: &World, args: &LmTrainArgs) -> Result<()> {
    let start = run::start(
        world,
        args.force,
        args.resume.as_deref(),
        LM_FORMAT,
        |c| {
            run::check_resume_overrides(&args.overrides, "train.steps")?;
            let mut config: LmRunConfig = run::config_of_checkpoint_with(c, &args.overrides)?;
            if !config.model.bias && c.has_f32("block0.q.bias") {
                config.model.bias = true;
            }
            Ok(config)
        },
        || {
            let path = args.config.as_ref().context("--config is required")?;
            let mut config = LmRunConfig::load(path, &args.overrides)?;
            // Stored absolute: the run folder's config works from any directory.
            config.data.corpus = std::path::absolute(&config.data.corpus)
                .with_context(|| format!("resolving {}", config.data.corpus.display()))?;
            let out = args.out.clone().unwrap_or_else(|| {
                PathBuf::from("runs").join(format!(
                    "lm-{}-d{}-s{}",
                    method_name(&config),
                    config.dst.density,
                    config.train.seed
                ))
            });
            Ok((config, out))
        },
    )?;
    let corpus = load_corpus(&start.config, start.resume.as_ref())?;
    let source = match &corpus.tokenizer_source {
        TokenizerSource::Built => String::new(),
        TokenizerSource::Trained { cache: Some(p) } => {
            format!(" (tokenizer cached in {})", p.display())
        }
        TokenizerSource::Trained { cache: None } => {
            " (tokenizer trained; no writable cache folder)".into()
        }
        TokenizerSource::Cached(p) => format!(" (tokenizer from the cache {})", p.display()),
        TokenizerSource::File(p) => format!(" (tokenizer {})", p.display()),
    };
    errln!(
        "corpus {}: {} training and {} validation tokens, vocabulary {}{source}",
        start.config.data.corpus.display(),
        corpus.train.len(),
        corpus.val.len(),
        corpus.tokenizer.vocab_size()
    );
    let mut run = LmRun::new(device, world, start.config, corpus)?;
    run::run(&mut run, &start.out, start.resume.as_ref())
}

/// `cht sample`: continues a prompt with a trained model.
pub fn sample(device: &Device, args: &SampleArgs) -> Result<()> {
    let ckpt = Checkpoint::load(&run::checkpoint_path(&args.checkpoint))?;
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
        tokenizer_source: TokenizerSource::Built,
    };
    let mut run = LmRun::new(device, &World::single(), config, corpus)?;
    Runner::restore(&mut run, &ckpt)?;
    let text = run.generate(args)?;
    outln!("{text}");
    Ok(())
}

/// The configuration a checkpoint was trained with. Checkpoints written before `model.bias`
/// existed have projection biases: their config reads as `bias = true`.
fn checkpoint_config(ckpt: &Checkpoint) -> Result<LmRunConfig> {
    let mut config: LmRunConfig = run::config_of_checkpoint(ckpt)?;
    if !config.model.bias && ckpt.has_f32("block0.q.bias") {
        config.model.bias = true;
    }
    Ok(config)
}

/// The run's corpus. On resume the tokenizer must be the one the checkpoint embeds: the corpus
/// (or the tokenizer file) must not have changed. Runs from before the tokenizers library
/// (their checkpoints embed the hand-written BPE's merges) retrain that BPE the way they did, so
/// they resume as before.
fn load_corpus(config: &LmRunConfig, resume: Option<&Checkpoint>) -> Result<Corpus> {
    let options = CorpusOptions {
        tokenizer: config.data.tokenizer,
        bpe_vocab: config.data.bpe_vocab,
        tokenizer_file: config.data.tokenizer_file.clone(),
        cache_dir: None,
        val_fraction: config.data.val_fraction,
        seq: config.model.seq,
    };
    let saved = match resume {
        Some(ckpt) => Some(
            serde_json::from_str::<Tokenizer>(ckpt.meta("tokenizer")?)
                .context("checkpoint tokenizer")?,
        ),
        None => None,
    };
    let corpus = match &saved {
        Some(Tokenizer::Bpe { .. }) if config.data.tokenizer == TokenizerKind::Bpe => {
            Corpus::load_with(&config.data.corpus, &options, |train, _| {
                Tokenizer::train_bpe(train, config.data.bpe_vocab)
            })?
        }
        _ => Corpus::load(&config.data.corpus, &options)?,
    };
    if let Some(saved) = saved
        && saved != corpus.tokenizer
    {
        let what = match config.data.tokenizer {
            TokenizerKind::File => format!(
                "the tokenizer file {}",
                config
                    .data
                    .tokenizer_file
                    .as_deref()
                    .unwrap_or(Path::new(""))
                    .display()
            ),
            _ => format!("{} (the corpus changed)", config.data.corpus.display()),
        };
        bail!("{what} no longer gives the tokenizer this run was trained with");
    }
    Ok(corpus)
}

/// A language-model training run: corpus, the model (network, scheduler and its device
/// scratch) and buffers.
struct LmRun<'d> {
    device: &'d Device,
    world: World,
    /// This rank's share of every batch of sequences: `(sequences, first)`.
    shard: (usize, usize),
    config: LmRunConfig,
    corpus: Corpus,
    model: SparseLm,
    ws: LmWorkspace,
    /// Steps completed.
    step: u64,
    /// Adam updates taken (update steps skip the optimizer), for the bias corrections.
    adam_t: u32,
    /// Best validation perplexity and its step.
    best: Option<(f64, u64)>,
    /// The progress bar (from the first round on).
    bar: Option<indicatif::ProgressBar>,
    /// Since the last metrics line: training seconds, steps, summed loss and its samples.
    window: Window,
    /// Learning rate of the last optimizer step.
    lr: f64,
    started: Instant,
    /// Step lines since the run loop last took them.
    step_lines: Vec<StepLine>,
}

/// Training-loss and speed sums between two metrics lines.
#[derive(Debug, Default)]
struct Window {
    train_s: f64,
    steps: u64,
    loss_sum: f64,
    loss_n: u64,
}

impl<'d> LmRun<'d> {
    fn new(
        device: &'d Device,
        world: &World,
        mut config: LmRunConfig,
        corpus: Corpus,
    ) -> Result<LmRun<'d>> {
        let shard = world.shard(config.train.batch, "train.batch")?;
        let mut lm_config = config.lm_config(corpus.tokenizer.vocab_size());
        // Each rank's workspace holds its share of the batch; the parameters do not depend on it.
        lm_config.batch = shard.0;
        // FC's dense projections get LLaMA's N(0, 0.02), as the sparse ones' initialiser.
        let dense_init = LinearInit::Normal {
            std: config::LLAMA_INIT_STD as f32,
        };
        footprint(&lm_config, config.dense()).check(device, "the language model")?;
        let mut model = SparseLm::new(device, &lm_config, &config.dst_config(), dense_init)?;
        if let Some(sched) = model.scheduler() {
            // Projections run as CSR or masked-dense by density; "auto" is measured once (on the
            // largest projection at the step's tokens) and recorded in the run's config.
            let largest = sched
                .shapes()
                .into_iter()
                .max_by_key(|(r, c)| r * c)
                .context("a sparse model has projections")?;
            let tokens = lm_config.batch * lm_config.seq;
            let policy = config
                .model
                .masked_dense_above
                .resolve_on(world, device, largest, tokens)?;
            model.set_execution(device, policy)?;
        }
        if world.size() > 1 {
            model.set_collective(device, world.comm().clone())?;
        }
        let ws = model.network().workspace(device);
        Ok(LmRun {
            device,
            world: world.clone(),
            shard,
            config,
            corpus,
            model,
            ws,
            step: 0,
            adam_t: 0,
            best: None,
            bar: None,
            window: Window::default(),
            lr: 0.0,
            started: Instant::now(),
            step_lines: Vec::new(),
        })
    }

    /// Trains until the next validation or checkpoint: per step a keyed random batch and one
    /// submit, the loss read every `log_every` steps; at a validation, the metrics line.
    fn steps(&mut self) -> Result<Option<StepMetrics>> {
        let t = self.config.train.clone();
        let seq = self.config.model.seq;
        let schedule = self.config.lr_schedule();
        let tokens_per_step = (t.batch * seq) as f64;
        let (mut ids, mut targets) = (Vec::new(), Vec::new());
        if self.bar.is_none() {
            // The first round of this process: the clock of `elapsed_s` starts here.
            let bar = labelled_bar(t.steps, &format!("lm {}", method_name(&self.config)));
            bar.set_position(self.step);
            self.bar = Some(bar);
            self.started = Instant::now();
        }
        let bar = self.bar.clone().context("the progress bar")?;
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
            // This rank's sequences of the global batch (all of them on one rank).
            let (per_rank, first) = self.shard;
            let mine = first * seq..(first + per_rank) * seq;
            self.model
                .network()
                .load(self.device, &self.ws, &ids[mine.clone()], &targets[mine])?;
            // Every ΔT steps a topology update replaces the Adam step (its t does not advance).
            if !self.model.next_step_is_update() {
                self.lr = schedule.lr(self.step);
                self.adam_t += 1;
            }
            let optimizer = LmOptimizer {
                adam: AdamWStep {
                    lr: self.lr as f32,
                    beta1: t.beta1,
                    beta2: t.beta2,
                    eps: t.eps,
                    weight_decay: t.weight_decay,
                    t: self.adam_t,
                },
                clip: (t.clip > 0.0).then_some(t.clip),
            };
            self.model.train_step(self.device, &self.ws, optimizer)?;
            self.step += 1;
            self.window.steps += 1;
            crate::testing::maybe_abort(self.step);
            let log_now = self.step.is_multiple_of(t.log_every);
            let eval_now = self.step.is_multiple_of(t.eval_every) || self.step == t.steps;
            let w = &mut self.window;
            if log_now || eval_now {
                let m = self.model.network().take_metrics(self.device, &self.ws)?;
                let m = self.world.sum_metrics(m)?;
                run::check_loss("training loss", m.loss, format_args!("step {}", self.step))?;
                w.train_s += step_start.elapsed().as_secs_f64();
                w.loss_sum += m.loss * m.samples as f64;
                w.loss_n += m.samples;
                let rate = w.steps as f64 * tokens_per_step / w.train_s.max(1e-9);
                self.step_lines.push(StepLine {
                    step: self.step,
                    loss: m.loss,
                    accuracy: Some(m.accuracy),
                    lr: self.lr,
                    per_s: rate,
                    elapsed_s: self.started.elapsed().as_secs_f64(),
                });
                bar.set_position(self.step);
                bar.set_message(format!("loss {:.4}  {:.0} tokens/s", m.loss, rate));
            } else {
                w.train_s += step_start.elapsed().as_secs_f64();
            }
            if eval_now {
                return self.validate().map(Some);
            }
            if self.checkpoint_due() {
                return Ok(None);
            }
        }
        Ok(None)
    }

    /// Validation perplexity and the metrics line of the window that ends here (printed).
    fn validate(&mut self) -> Result<StepMetrics> {
        let tokens_per_step = (self.config.train.batch * self.config.model.seq) as f64;
        let (val_loss, val_acc) = self.evaluate()?;
        run::check_loss(
            "validation loss",
            val_loss,
            format_args!("step {}", self.step),
        )?;
        let val_ppl = val_loss.exp();
        if self.best.is_none_or(|(b, _)| val_ppl < b) {
            self.best = Some((val_ppl, self.step));
        }
        let (density, itop) = self.topology_metrics()?;
        let w = std::mem::take(&mut self.window);
        let m = StepMetrics {
            step: self.step,
            train_loss: w.loss_sum / w.loss_n.max(1) as f64,
            val_loss,
            val_ppl,
            val_acc,
            lr: self.lr,
            density,
            itop,
            masked_dense: self.model.network().masked_dense_count(),
            tokens_per_s: w.steps as f64 * tokens_per_step / w.train_s.max(1e-9),
            elapsed_s: self.started.elapsed().as_secs_f64(),
        };
        let line = format!(
            "step {:>6}  train loss {:.4}  val loss {:.4}  val ppl {:.3} (best {:.3})  lr {:.2e}  density {:.2}%{}  {:.0} tokens/s  {:.0} s since start",
            m.step,
            m.train_loss,
            m.val_loss,
            m.val_ppl,
            self.best.map_or(f64::NAN, |b| b.0),
            m.lr,
            m.density * 100.0,
            m.itop
                .map_or(String::new(), |i| format!("  ITOP {:.1}%", i * 100.0)),
            m.tokens_per_s,
            m.elapsed_s,
        );
        match &self.bar {
            Some(bar) => bar.suspend(|| outln!("{line}")),
            None => outln!("{line}"),
        }
        Ok(m)
    }

    /// Cross-entropy and next-token accuracy over every whole batch of validation windows.
    fn evaluate(&mut self) -> Result<(f64, f64)> {
        let seq = self.config.model.seq;
        let batch = self.config.train.batch;
        let starts = text::val_windows(&self.corpus.val, seq, batch);
        // The training loss accumulated since the last readback was taken by the caller.
        let (mut ids, mut targets) = (Vec::new(), Vec::new());
        let (per_rank, first) = self.shard;
        for group in starts.chunks(batch) {
            // Data-parallel: this rank's windows of each batch; the sums are all-reduced below.
            let group = &group[first..first + per_rank];
            text::windows(&self.corpus.val, seq, group, &mut ids, &mut targets);
            let lm = self.model.network();
            lm.load(self.device, &self.ws, &ids, &targets)?;
            lm.eval_step(self.device, &self.ws)?;
        }
        let m = self.model.network().take_metrics(self.device, &self.ws)?;
        let m = self.world.sum_metrics(m)?;
        Ok((m.loss, m.accuracy))
    }

    /// Mean density of the sparse projections (over all their possible links) and ITOP (one
    /// pattern readback per validation).
    fn topology_metrics(&mut self) -> Result<(f64, Option<f64>)> {
        let Some(sched) = self.model.scheduler() else {
            return Ok((1.0, None));
        };
        let sizes: Vec<f64> = sched
            .shapes()
            .iter()
            .map(|&(r, c)| (r * c) as f64)
            .collect();
        self.model.observe(self.device)?;
        let densities = self.model.densities();
        let links: f64 = densities.iter().zip(&sizes).map(|(d, n)| d * n).sum();
        Ok((
            links / sizes.iter().sum::<f64>().max(1.0),
            self.model.itop(),
        ))
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
        cht_sparse::io::write_atomic(
            &out.join("summary.json"),
            "summary",
            serde_json::to_string_pretty(&summary)?.as_bytes(),
        )?;
        if let Some(m) = last {
            outln!(
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
            let lm = self.model.network();
            lm.load(self.device, &self.ws, &ids, &zeros)?;
            lm.eval_step(self.device, &self.ws)?;
            // One readback per token: the logits. The loss sums the eval step accumulates are
            // never read here, so they are not reset either.
            let logits = lm.read_logits(self.device, &self.ws)?;
            let pos = context.len() - 1;
            let column: Vec<f32> = (0..vocab).map(|v| logits[v * seq + pos]).collect();
            let mut rng = Counter::new(RngKey::new(args.seed, Stream::Synthetic, i as u32, 0));
            tokens.push(pick(&column, args.temperature, args.top_k, &mut rng));
        }
        let prompt = tokenizer.decode(&tokens[..prompt_len])?;
        let generated = tokenizer.decode(&tokens[prompt_len..])?;
        Ok(format!("{prompt}{generated}"))
    }
}

impl Runner for LmRun<'_> {
    type Config = LmRunConfig;
    type Metrics = StepMetrics;
    type Net = Lm;
    const FORMAT: &'static str = LM_FORMAT;
    const UNIT: &'static str = "step";

    fn config(&self) -> &LmRunConfig {
        &self.config
    }

    fn device(&self) -> &Device {
        self.device
    }

    fn world(&self) -> &World {
        &self.world
    }

    fn model(&self) -> &SparseLm {
        &self.model
    }

    fn progress(&self) -> (u64, u64) {
        (self.step, self.config.train.steps)
    }

    fn progress_of(m: &StepMetrics) -> u64 {
        m.step
    }

    fn check(&self) -> Result<()> {
        let (seq, batch) = (self.config.model.seq, self.config.train.batch);
        // Fail before training, not at the first validation.
        if text::val_windows(&self.corpus.val, seq, batch).is_empty() {
            bail!(
                "the validation part ({} tokens) holds fewer than train.batch = {batch} windows of model.seq = {seq} tokens; raise data.val_fraction or lower train.batch",
                self.corpus.val.len(),
            );
        }
        Ok(())
    }

    fn round(&mut self) -> Result<Option<StepMetrics>> {
        self.steps()
    }

    fn checkpoint_due(&self) -> bool {
        let t = &self.config.train;
        self.step.is_multiple_of(t.checkpoint_every) || self.step == t.steps
    }

    fn best(&self) -> serde_json::Value {
        serde_json::json!(self.best)
    }

    fn save(&self, c: &mut Checkpoint) -> Result<()> {
        let lm = self.model.network();
        lm.sync_to_csr(self.device)?;
        let read = |t: &Tensor| self.device.read_f32(t);
        for (name, [value, m, v]) in lm.state() {
            c.put_f32(&name, &[value.len()], read(value)?);
            c.put_f32(&format!("{name}.adam_m"), &[m.len()], read(m)?);
            c.put_f32(&format!("{name}.adam_v"), &[v.len()], read(v)?);
        }
        for (j, p) in lm.sparse_projections().iter().enumerate() {
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
        c.metadata.insert(
            "tokenizer".into(),
            serde_json::to_string(&self.corpus.tokenizer)?,
        );
        c.metadata.insert("adam_t".into(), self.adam_t.to_string());
        Ok(())
    }

    fn restore(&mut self, c: &Checkpoint) -> Result<()> {
        let bad = |what: String| anyhow::anyhow!("checkpoint does not match the model: {what}");
        let device = self.device;
        // Values and moments first (CSR order of the saved patterns), then the patterns: the
        // model rebuilds masked-dense projections from both.
        for (name, tensors) in self.model.network().state() {
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
        let mut patterns = Vec::new();
        if let Some(s) = self.model.scheduler() {
            for (j, &(rows, cols)) in s.shapes().iter().enumerate() {
                let name = |what: &str| format!("projection{j}.{what}");
                let row_ptr = c.u32(&name("row_ptr"))?.to_vec();
                let col_idx = c.u32(&name("col_idx"))?.to_vec();
                let p = CsrPattern::new(rows, cols, row_ptr, col_idx)
                    .map_err(|e| bad(format!("{}: {e}", name("pattern"))))?;
                patterns.push(p);
            }
        }
        let (step, best) = run::restore_progress(c, Self::UNIT)?;
        if step > self.config.train.steps {
            bail!(
                "checkpoint step {step} is beyond the run's {} steps",
                self.config.train.steps
            );
        }
        let saved = checkpoint_config(c)?;
        let extending = saved.train.steps != self.config.train.steps;
        run::restore_model(c, device, &mut self.model, &patterns, step, extending)?;
        let adam_t: u32 = c.meta("adam_t")?.parse().context("checkpoint adam_t")?;
        if u64::from(adam_t) > step {
            bail!(
                "checkpoint adam_t {adam_t} counts more optimizer steps than the {step} steps taken"
            );
        }
        (self.step, self.best, self.adam_t) = (step, best, adam_t);
        Ok(())
    }

    fn take_step_lines(&mut self) -> Vec<StepLine> {
        std::mem::take(&mut self.step_lines)
    }

    fn steps_done(&self) -> u64 {
        self.step
    }

    fn scalars(m: &StepMetrics) -> Vec<(String, f64)> {
        let mut v = vec![
            ("train/window_loss".to_owned(), m.train_loss),
            ("val/loss".to_owned(), m.val_loss),
            ("val/perplexity".to_owned(), m.val_ppl),
            ("val/accuracy".to_owned(), m.val_acc),
            ("lr".to_owned(), m.lr),
            ("topology/density".to_owned(), m.density),
            ("topology/masked_dense".to_owned(), m.masked_dense as f64),
            ("time/tokens_per_s".to_owned(), m.tokens_per_s),
        ];
        v.extend(m.itop.map(|i| ("topology/itop".to_owned(), i)));
        v
    }

    fn log_config(&self) -> &crate::logs::LogConfig {
        &self.config.log
    }

    fn plots(&self, out: &Path, history: &[StepMetrics]) -> Result<()> {
        plots(out, history)
    }

    fn finish(&self, out: &Path, history: &[StepMetrics]) -> Result<()> {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        self.summary(out, history)
    }
}

/// The language model's memory (see [`crate::footprint`]): embeddings and head with gradients
/// and AdamW moments; per projection its values, gradients, moments and index structures (dense
/// wherever it may run masked-dense), mask and ITOP record; the activations of one step
/// (per block, the attention matrices included) and the logits.
fn footprint(c: &cht_nn::LmConfig, dense: bool) -> Footprint {
    let mut f = Footprint::new();
    let (v, d, ff, t) = (c.vocab, c.d_model, c.ffn, c.batch.saturating_mul(c.seq));
    for _ in 0..8 {
        f.buffer(4, &[v, d]);
    }
    let projections = [(d, d), (d, d), (d, d), (d, d), (ff, d), (ff, d), (d, ff)];
    for _ in 0..c.layers.min(1 << 20) {
        for &(rows, cols) in &projections {
            let nnz = if dense {
                rows.saturating_mul(cols)
            } else {
                (c.density * rows as f64 * cols as f64).ceil() as usize
            };
            for _ in 0..7 {
                f.buffer(4, &[nnz]);
            }
            if !dense {
                f.buffer(4, &[rows, cols]);
                f.host(1, &[rows, cols]).host(1, &[rows, cols.div_ceil(8)]);
            }
        }
        for _ in 0..10 {
            f.buffer(4, &[t, d]);
        }
        for _ in 0..4 {
            f.buffer(4, &[t, ff]);
        }
        f.buffer(4, &[c.batch, c.heads, c.seq, c.seq])
            .buffer(4, &[c.batch, c.heads, c.seq, c.seq]);
    }
    if c.layers > 1 << 20 {
        // More blocks than any machine holds: scale instead of looping.
        f.host(1, &[c.layers, 1 << 30]);
    }
    f.buffer(4, &[t, v]).buffer(4, &[t, v]);
    f
}

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
    Chart::run_plot(
        "Validation perplexity",
        "step",
        "perplexity",
        vec![Series::new("validation", &ppl, PALETTE[0])],
    )
    .save_png(&out.join("perplexity.png"))?;
    let val = pts(&|m| m.val_loss);
    let train = pts(&|m| m.train_loss);
    Chart::run_plot(
        "Loss",
        "step",
        "cross-entropy (nats/token)",
        vec![
            Series::new("validation", &val, PALETTE[0]),
            Series::new("train", &train, PALETTE[1]),
        ],
    )
    .save_png(&out.join("loss.png"))?;
    let density = pts(&|m| m.density * 100.0);
    let itop = pts(&|m| m.itop.unwrap_or(0.0) * 100.0);
    Chart::run_plot(
        "Topology",
        "step",
        "percent",
        vec![
            Series::new("density", &density, PALETTE[2]),
            Series::new("ITOP", &itop, GREY),
        ],
    )
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
