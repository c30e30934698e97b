//! Run outputs: `metrics.jsonl` (one line per epoch), `summary.json`, PNG plots, the progress bar.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use cht_gpu::Device;
use cht_sparse::io::{read_text_bounded, write_atomic};
use serde::{Deserialize, Serialize};

use super::config::RunConfig;
use crate::plot::{Chart, GREY, PALETTE, Series};

/// One line of `metrics.jsonl`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EpochMetrics {
    /// Epochs completed.
    pub epoch: u32,
    /// Mean training loss over the epoch.
    pub train_loss: f64,
    /// Training accuracy over the epoch.
    pub train_acc: f64,
    /// Test loss.
    pub test_loss: f64,
    /// Test top-1 accuracy.
    pub test_acc: f64,
    /// Learning rate of the epoch.
    pub lr: f64,
    /// Density of each sparse layer at the end of the epoch.
    pub density: Vec<f64>,
    /// Active neurons after percolation (sparse runs).
    pub anp: Option<f64>,
    /// In-time over-parameterisation rate (sparse runs).
    pub itop: Option<f64>,
    /// Seconds for the epoch (training + evaluation).
    pub epoch_s: f64,
    /// Seconds of training.
    pub train_s: f64,
    /// Seconds of evaluation.
    pub eval_s: f64,
}

/// `metrics.jsonl` of a run directory: one JSON object per line, appended as the run goes, loaded
/// back and cut to the last checkpoint when a run resumes (shared by `cht train` and `cht lm`).
#[derive(Debug)]
pub struct MetricsLog<T> {
    path: PathBuf,
    /// The lines so far.
    pub history: Vec<T>,
}

impl<T: Serialize + serde::de::DeserializeOwned> MetricsLog<T> {
    /// The log of `out`; when `resuming`, the existing lines are loaded (a regular file of at
    /// most [`METRICS_LIMIT`] bytes), otherwise it starts empty.
    pub fn new(out: &Path, resuming: bool) -> Result<MetricsLog<T>> {
        MetricsLog::at(out.join("metrics.jsonl"), resuming)
    }

    /// A log of the same kind in the file `path` (e.g. `steps.jsonl`).
    pub fn at(path: PathBuf, resuming: bool) -> Result<MetricsLog<T>> {
        let mut history = Vec::new();
        if resuming && path.exists() {
            let text = read_text_bounded(&path, "metrics log", METRICS_LIMIT)?;
            for (n, line) in text.lines().enumerate() {
                if line.trim().is_empty() {
                    continue;
                }
                history.push(
                    serde_json::from_str(line)
                        .with_context(|| format!("{}: bad line {}", path.display(), n + 1))?,
                );
            }
        } else {
            write_atomic(&path, "metrics log", b"")?;
        }
        Ok(MetricsLog { path, history })
    }

    /// Keeps the lines for which `keep` holds (work lost by an interrupted run is redone after
    /// resuming) and rewrites the file.
    pub fn retain(&mut self, keep: impl Fn(&T) -> bool) -> Result<()> {
        self.history.retain(|m| keep(m));
        let mut text = String::new();
        for m in &self.history {
            text.push_str(&serde_json::to_string(m)?);
            text.push('\n');
        }
        write_atomic(&self.path, "metrics log", text.as_bytes())?;
        Ok(())
    }

    /// Appends a line (the run directory is locked: no other process writes it).
    pub fn push(&mut self, m: T) -> Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&self.path)
            .with_context(|| format!("opening {}", self.path.display()))?;
        writeln!(f, "{}", serde_json::to_string(&m)?)
            .with_context(|| format!("appending to {}", self.path.display()))?;
        self.history.push(m);
        Ok(())
    }
}

/// The largest `metrics.jsonl` read back on resume (256 MiB: a million lines).
pub const METRICS_LIMIT: u64 = 256 << 20;

/// Prints one epoch's line.
pub fn print_epoch(m: &EpochMetrics, best: Option<(f64, u32)>, device: &Device) {
    let density: Vec<String> = m
        .density
        .iter()
        .map(|d| format!("{:.2}%", d * 100.0))
        .collect();
    // Results go to standard output, diagnostics (device, progress, warnings) to standard error.
    outln!(
        "epoch {:>3}  train loss {:.4}  test loss {:.4}  test acc {:.2}% (best {:.2}%)  lr {:.5}  density [{}]{}{}  {:.1} s on {}",
        m.epoch,
        m.train_loss,
        m.test_loss,
        m.test_acc * 100.0,
        best.map_or(0.0, |b| b.0 * 100.0),
        m.lr,
        density.join(", "),
        m.anp
            .map_or(String::new(), |a| format!("  ANP {:.1}%", a * 100.0)),
        m.itop
            .map_or(String::new(), |a| format!("  ITOP {:.1}%", a * 100.0)),
        m.epoch_s,
        device.name(),
    );
}

/// Writes `summary.json`: final and best test accuracy (the official code reports the best over
/// epochs; both are given).
pub fn finish(
    out: &Path,
    history: &[EpochMetrics],
    best: Option<(f64, u32)>,
    config: &RunConfig,
) -> Result<()> {
    let last = history.last();
    let summary = serde_json::json!({
        "dataset": config.data.dataset,
        "method": config.dst.method,
        "density": config.dst.density,
        "seed": config.train.seed,
        "epochs": last.map(|m| m.epoch),
        "final_test_acc": last.map(|m| m.test_acc),
        "final_test_loss": last.map(|m| m.test_loss),
        "best_test_acc": best.map(|b| b.0),
        "best_epoch": best.map(|b| b.1),
        "final_anp": last.and_then(|m| m.anp),
        "final_itop": last.and_then(|m| m.itop),
        "mean_epoch_s": history.iter().map(|m| m.epoch_s).sum::<f64>() / history.len().max(1) as f64,
        "mean_train_s": history.iter().map(|m| m.train_s).sum::<f64>() / history.len().max(1) as f64,
    });
    write_atomic(
        &out.join("summary.json"),
        "summary",
        serde_json::to_string_pretty(&summary)?.as_bytes(),
    )?;
    if let (Some(m), Some(b)) = (last, best) {
        outln!(
            "done: final test accuracy {:.2}%, best {:.2}% (epoch {}); outputs in {}",
            m.test_acc * 100.0,
            b.0 * 100.0,
            b.1,
            out.display()
        );
    }
    Ok(())
}

/// `seconds` as `1 h 05 min`, `3 min 20 s` or `12 s`.
pub fn duration(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min {:02} s", s / 60, s % 60),
        _ => format!("{} h {:02} min", s / 3600, s / 60 % 60),
    }
}

/// Redraws the accuracy, loss and topology plots from the whole history.
pub fn plots(out: &Path, history: &[EpochMetrics]) -> Result<()> {
    let pts = |f: &dyn Fn(&EpochMetrics) -> f64| -> Vec<(f64, f64)> {
        history.iter().map(|m| (f64::from(m.epoch), f(m))).collect()
    };
    let test_acc = pts(&|m| m.test_acc * 100.0);
    let train_acc = pts(&|m| m.train_acc * 100.0);
    Chart::run_plot(
        "Accuracy",
        "epoch",
        "accuracy (%)",
        vec![
            Series::new("test", &test_acc, PALETTE[0]),
            Series::new("train", &train_acc, PALETTE[1]),
        ],
    )
    .save_png(&out.join("accuracy.png"))?;
    let test_loss = pts(&|m| m.test_loss);
    let train_loss = pts(&|m| m.train_loss);
    Chart::run_plot(
        "Loss",
        "epoch",
        "cross-entropy",
        vec![
            Series::new("test", &test_loss, PALETTE[0]),
            Series::new("train", &train_loss, PALETTE[1]),
        ],
    )
    .save_png(&out.join("loss.png"))?;
    let layers = history.first().map_or(0, |m| m.density.len());
    let density: Vec<Vec<(f64, f64)>> = (0..layers)
        .map(|l| pts(&|m| m.density.get(l).copied().unwrap_or(0.0) * 100.0))
        .collect();
    // Densities on their own axis (1 % lines would merge at 0 beside an 80 % ANP).
    // ITOP (the share of links ever active) is on the densities' scale: it starts at the density.
    let labels: Vec<String> = (0..layers).map(|l| format!("layer {l} density")).collect();
    let mut series: Vec<Series<'_>> = density
        .iter()
        .enumerate()
        .map(|(l, p)| Series::new(&labels[l], p, PALETTE[l % PALETTE.len()]))
        .collect();
    let itop = pts(&|m| m.itop.unwrap_or(1.0) * 100.0);
    series.push(Series::new("ITOP (links ever active)", &itop, GREY));
    Chart::run_plot("Density and ITOP", "epoch", "percent of all links", series)
        .save_png(&out.join("density.png"))?;
    let anp = pts(&|m| m.anp.unwrap_or(1.0) * 100.0);
    let series = vec![Series::new("ANP (active neurons)", &anp, GREY)];
    Chart::run_plot(
        "Active-neuron percolation",
        "epoch",
        "percent of neurons",
        series,
    )
    .save_png(&out.join("topology.png"))?;
    Ok(())
}

/// A per-epoch progress bar (hidden when standard error is not a terminal).
pub fn progress_bar(steps: u64, epoch: u32, epochs: u32) -> indicatif::ProgressBar {
    labelled_bar(steps, &format!("epoch {epoch}/{epochs}"))
}

/// A progress bar over `steps` steps with a fixed label in front (hidden when standard error is
/// not a terminal); the message after it is the caller's (loss, rate).
pub fn labelled_bar(steps: u64, label: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(steps);
    if crate::output::is_quiet() {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let label = label.replace('{', "{{").replace('}', "}}");
    bar.set_style(
        indicatif::ProgressStyle::with_template(&format!(
            "{label} [{{bar:30}}] {{pos}}/{{len}} steps  {{elapsed_precise}} (ETA {{eta}})  {{msg}}"
        ))
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar
}
