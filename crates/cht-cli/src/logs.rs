//! What a run records besides `metrics.jsonl`: `steps.jsonl` (the training loss every
//! `train.log_every` steps), TensorBoard event files (`log.tensorboard`, on by default: every step
//! line and every metrics line as scalars), optional CSV copies (`log.csv`), and the provenance
//! every `summary.json` and `config.toml` carry (cht version, git commit, command line, device).
//! The run loop ([`crate::run::run`]) owns it; runners hand it their lines.

use std::path::{Path, PathBuf};

use anyhow::Result;
use cht_gpu::{Device, DeviceInfo};
use cht_sparse::io::write_atomic;
use serde::{Deserialize, Serialize};

use crate::plot::{Chart, GREY, PALETTE, Series};
use crate::tensorboard::EventWriter;
use crate::train::report::MetricsLog;

/// `[log]` of a run configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// Write TensorBoard event files into the run folder (`tensorboard --logdir runs/`).
    pub tensorboard: bool,
    /// Also write `steps.csv` and `metrics.csv` (the JSONL logs' numbers as columns).
    pub csv: bool,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            tensorboard: true,
            csv: false,
        }
    }
}

/// One line of `steps.jsonl`: the training loss read back every `train.log_every` steps.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StepLine {
    /// Global training steps completed.
    pub step: u64,
    /// Mean training loss over the steps since the previous line.
    pub loss: f64,
    /// Training accuracy over the same steps (classifiers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accuracy: Option<f64>,
    /// Learning rate of the last step.
    pub lr: f64,
    /// Training throughput since the start of the round: samples/s (MLP) or tokens/s (LM).
    pub per_s: f64,
    /// Wall seconds since this process started training.
    pub elapsed_s: f64,
}

/// The step log, the event file and the CSV copies of one run folder (rank 0 only).
#[derive(Debug)]
pub(crate) struct Logs {
    out: PathBuf,
    steps: MetricsLog<StepLine>,
    events: Option<EventWriter>,
    csv: bool,
    /// The metrics lines' scalars so far (for `metrics.csv`).
    rounds: Vec<(u64, Vec<(String, f64)>)>,
    /// Steps of the topology updates so far (marks in `steps.png`).
    updates: Vec<u64>,
}

impl Logs {
    /// The logs of `out`; when `resuming`, `steps.jsonl` is loaded (and cut back with
    /// [`Logs::retain`]).
    pub(crate) fn open(out: &Path, resuming: bool, config: &LogConfig) -> Result<Logs> {
        let steps = MetricsLog::at(out.join("steps.jsonl"), resuming)?;
        let events = match config.tensorboard {
            true => Some(EventWriter::create(out)?),
            false => None,
        };
        Ok(Logs {
            out: out.to_owned(),
            steps,
            events,
            csv: config.csv,
            rounds: Vec::new(),
            updates: Vec::new(),
        })
    }

    /// Drops step lines past `step` (the checkpoint a run resumes from).
    pub(crate) fn retain(&mut self, step: u64) -> Result<()> {
        self.steps.retain(|l| l.step <= step)
    }

    /// Appends a step line (and its scalars to the event file).
    pub(crate) fn step(&mut self, line: StepLine) -> Result<()> {
        if let Some(e) = &mut self.events {
            let mut values = vec![
                ("train/loss".to_owned(), line.loss),
                ("train/lr".to_owned(), line.lr),
                ("train/per_s".to_owned(), line.per_s),
            ];
            if let Some(a) = line.accuracy {
                values.push(("train/accuracy".to_owned(), a));
            }
            e.scalars(line.step, &values)?;
        }
        self.steps.push(line)
    }

    /// A metrics line's scalars at global step `step`; then the files are flushed (and the CSV
    /// copies rewritten).
    pub(crate) fn round(&mut self, step: u64, scalars: Vec<(String, f64)>) -> Result<()> {
        if let Some(e) = &mut self.events {
            e.scalars(step, &scalars)?;
        }
        self.rounds.push((step, scalars));
        self.flush()
    }

    /// The steps of the topology updates so far (drawn as marks in `steps.png`).
    pub(crate) fn set_updates(&mut self, steps: Vec<u64>) {
        self.updates = steps;
    }

    /// Flushes the event file, redraws `steps.png` (the loss at every step line, a grey mark at
    /// each topology update) and rewrites the CSV copies.
    pub(crate) fn flush(&mut self) -> Result<()> {
        if let Some(e) = &mut self.events {
            e.flush()?;
        }
        let loss: Vec<(f64, f64)> = (self.steps.history.iter())
            .map(|l| (l.step as f64, l.loss))
            .collect();
        if loss.len() >= 2 {
            // Each update a vertical segment over the curve's range (NaN points break the line).
            let (lo, hi) = loss
                .iter()
                .filter(|p| p.1.is_finite())
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| {
                    (lo.min(p.1), hi.max(p.1))
                });
            let last = loss.last().map_or(0.0, |p| p.0);
            let marks: Vec<(f64, f64)> = (self.updates.iter())
                .map(|&u| u as f64)
                .filter(|&u| u <= last)
                .flat_map(|u| [(u, lo), (u, hi), (f64::NAN, f64::NAN)])
                .collect();
            let mut series = Vec::new();
            if !marks.is_empty() && lo < hi {
                series.push(Series::new("topology update", &marks, GREY));
            }
            series.push(Series::new("training loss", &loss, PALETTE[1]));
            Chart::run_plot("Training loss per logged step", "step", "loss", series)
                .save_png(&self.out.join("steps.png"))?;
        }
        if !self.csv {
            return Ok(());
        }
        let mut text = String::from("step,loss,accuracy,lr,per_s,elapsed_s\n");
        for l in &self.steps.history {
            let acc = l.accuracy.map_or(String::new(), |a| a.to_string());
            text.push_str(&format!(
                "{},{},{acc},{},{},{}\n",
                l.step, l.loss, l.lr, l.per_s, l.elapsed_s
            ));
        }
        write_atomic(&self.out.join("steps.csv"), "steps.csv", text.as_bytes())?;
        if let Some((_, first)) = self.rounds.first() {
            let mut text = String::from("step");
            for (name, _) in first {
                text.push(',');
                text.push_str(name);
            }
            text.push('\n');
            for (step, values) in &self.rounds {
                text.push_str(&step.to_string());
                for (_, v) in values {
                    text.push(',');
                    if v.is_finite() {
                        text.push_str(&v.to_string());
                    }
                }
                text.push('\n');
            }
            write_atomic(
                &self.out.join("metrics.csv"),
                "metrics.csv",
                text.as_bytes(),
            )?;
        }
        Ok(())
    }
}

/// What made a run: cht's version and git commit, the command line, the ranks and the device
/// (backend, adapter, driver). Stored in `summary.json` and at the top of `config.toml`.
pub(crate) fn provenance(device: &Device, ranks: usize) -> serde_json::Value {
    let (backend, adapter, driver) = match device.info() {
        DeviceInfo::Gpu(a) => (a.backend_in_words(), a.name.clone(), a.driver.clone()),
        DeviceInfo::Cpu { threads } => (
            format!(
                "CPU ({threads} thread{})",
                if threads == 1 { "" } else { "s" }
            ),
            "cpu".to_owned(),
            String::new(),
        ),
    };
    serde_json::json!({
        "cht_version": env!("CARGO_PKG_VERSION"),
        "git_commit": option_env!("CHT_GIT_COMMIT"),
        "command_line": std::env::args().collect::<Vec<_>>(),
        "ranks": ranks,
        "backend": backend,
        "adapter": adapter,
        "driver": driver,
        "host": host(),
        "date": utc_date(std::time::SystemTime::now()),
    })
}

/// The host's CPU model and logical core count (`Intel(R) Xeon(R) … (2 logical cores)`); the CPU
/// model where the OS says it (Linux's /proc/cpuinfo), else the architecture.
fn host() -> String {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.split_whitespace().collect::<Vec<_>>().join(" "))
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_owned());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    format!("{model} ({cores} logical cores)")
}

/// `t` as a UTC calendar date, `YYYY-MM-DD` (the proleptic Gregorian calendar from the day count
/// since 1970-01-01).
pub(crate) fn utc_date(t: std::time::SystemTime) -> String {
    let days = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 86_400) as i64;
    // Shift the epoch to 0000-03-01 so each 400-year era starts right after a leap day.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097; // day of era, 0..146096
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365; // year of era
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of the March-based year
    let mp = (5 * doy + 2) / 153; // month from March = 0
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

/// `provenance` as TOML comment lines (the head of `config.toml`, which stays a valid config).
pub(crate) fn provenance_comment(p: &serde_json::Value) -> String {
    let mut out = String::from("# Written by cht; the lines below record what made this run.\n");
    if let Some(map) = p.as_object() {
        for (k, v) in map {
            let v = match v {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Array(a) => a
                    .iter()
                    .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_owned))
                    .collect::<Vec<_>>()
                    .join(" "),
                other => other.to_string(),
            };
            out.push_str(&format!("# {k}: {}\n", v.replace('\n', " ")));
        }
    }
    out
}

/// An `f32` setting as the `f64` with the shortest decimal that reads back as it (`0.025`, not
/// `0.02500000037252903`), for everything a run writes.
pub(crate) fn clean_f32(x: f32) -> f64 {
    format!("{x}").parse().unwrap_or(f64::from(x))
}

/// The TOML of a configuration with every float that is exactly an `f32` written as that
/// `f32`'s shortest decimal (settings are `f32`s widened to `f64` on the way out).
pub(crate) fn clean_toml<T: Serialize>(config: &T) -> Result<String> {
    fn clean(v: &mut toml::Value) {
        match v {
            toml::Value::Float(f) => {
                let narrow = *f as f32;
                if f64::from(narrow) == *f && f.is_finite() {
                    *f = clean_f32(narrow);
                }
            }
            toml::Value::Table(t) => t.iter_mut().for_each(|(_, v)| clean(v)),
            toml::Value::Array(a) => a.iter_mut().for_each(clean),
            _ => {}
        }
    }
    let mut value = toml::Value::try_from(config)?;
    clean(&mut value);
    Ok(toml::to_string_pretty(&value)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates_follow_the_calendar() {
        let at = |secs: u64| utc_date(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs));
        assert_eq!(at(0), "1970-01-01");
        assert_eq!(at(951_782_400), "2000-02-29"); // a leap day of a century divisible by 400
        assert_eq!(at(951_868_800), "2000-03-01");
        assert_eq!(at(1_709_164_800), "2024-02-29");
        assert_eq!(at(1_796_083_200 + 86_399), "2026-12-01"); // the last second of a day
        assert_eq!(at(4_107_542_400), "2100-03-01"); // 2100 is not a leap year
    }

    #[test]
    fn settings_are_written_as_typed() {
        assert_eq!(clean_f32(0.025).to_string(), "0.025");
        assert_eq!(clean_f32(5e-4).to_string(), "0.0005");
        #[derive(Serialize)]
        struct C {
            lr: f32,
            density: f64,
        }
        let text = clean_toml(&C {
            lr: 0.025,
            density: 0.1,
        })
        .unwrap();
        assert!(text.contains("lr = 0.025\n"), "{text}");
        assert!(text.contains("density = 0.1\n"), "{text}");
    }
}
