//! `cht results`: the paper-comparison table of the MLP runs (the paper's Table 7), built from run
//! folders so that no number in docs/RESULTS.md is typed by hand.
//!
//! Each finished run folder holds `summary.json` (written by `cht train`). Runs are grouped into
//! rows by their folder name, `<dataset>-<label>[-d<density>]-s<seed>` as `cht train` and
//! `scripts/repro_mlp.sh` name them: the label is the method (`chts-n`) or a named variant of it
//! (`chtss-n-ris`), compared with the paper's row of the longest method name it starts with. A
//! row gives the mean ± standard error over its seeds (sample standard deviation / √n, as the
//! paper), the paper's value, the difference of our best-over-epochs mean from it (the official
//! code reports the best test accuracy over epochs), ANP, wall time per epoch and the machine.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use cht_sparse::io::{read_text_bounded, write_atomic};
use serde::Deserialize;

/// Arguments of `cht results`.
#[derive(clap::Args, Debug)]
pub struct ResultsArgs {
    /// Run folders, or folders holding run folders (one level down), e.g. `results/mlp`.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Replace the text between the lines `<!-- cht results: begin -->` and
    /// `<!-- cht results: end -->` of this Markdown file with the table, instead of printing it.
    #[arg(long, value_name = "FILE")]
    into: Option<PathBuf>,
}

/// The marker lines `--into` writes between.
pub const BEGIN: &str = "<!-- cht results: begin -->";
/// See [`BEGIN`].
pub const END: &str = "<!-- cht results: end -->";

/// Runs `cht results`.
pub fn run(args: &ResultsArgs) -> Result<()> {
    let runs = collect(&args.paths)?;
    if runs.is_empty() {
        bail!(
            "no finished run (a folder with summary.json) in {}",
            args.paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let table = table(&runs)?;
    match &args.into {
        None => outln!("{}", table.trim_end()),
        Some(file) => {
            let text = read_text_bounded(file, "Markdown file", 16 << 20)?;
            let updated =
                splice(&text, &table).with_context(|| format!("updating {}", file.display()))?;
            write_atomic(file, "Markdown file", updated.as_bytes())?;
            outln!(
                "{}: table of {} runs in {} rows",
                file.display(),
                runs.len(),
                table.lines().count().saturating_sub(2)
            );
        }
    }
    Ok(())
}

/// What the table reads of a `summary.json`.
#[derive(Debug, Deserialize)]
struct Summary {
    dataset: String,
    method: String,
    density: f64,
    seed: u64,
    epochs: Option<u32>,
    final_test_acc: Option<f64>,
    best_test_acc: Option<f64>,
    final_anp: Option<f64>,
    mean_epoch_s: f64,
    #[serde(default)]
    provenance: Option<Provenance>,
}

#[derive(Debug, Default, Deserialize)]
struct Provenance {
    #[serde(default)]
    backend: Option<String>,
    #[serde(default)]
    host: Option<String>,
    #[serde(default)]
    date: Option<String>,
}

/// One finished run.
#[derive(Debug)]
struct Run {
    dir: PathBuf,
    label: String,
    s: Summary,
}

/// The finished runs under `paths`, in folder-name order.
fn collect(paths: &[PathBuf]) -> Result<Vec<Run>> {
    let mut dirs = BTreeSet::new();
    for p in paths {
        if !p.is_dir() {
            bail!("{}: not a folder", p.display());
        }
        if p.join("summary.json").exists() {
            dirs.insert(p.clone());
            continue;
        }
        let entries = std::fs::read_dir(p).with_context(|| format!("listing {}", p.display()))?;
        for e in entries {
            let e = e.with_context(|| format!("listing {}", p.display()))?;
            let d = e.path();
            if d.is_dir() {
                if d.join("summary.json").exists() {
                    dirs.insert(d);
                } else {
                    errln!("skipping {}: no summary.json (unfinished)", d.display());
                }
            }
        }
    }
    dirs.into_iter().map(|d| read_run(&d)).collect()
}

fn read_run(dir: &Path) -> Result<Run> {
    let path = dir.join("summary.json");
    let text = read_text_bounded(&path, "summary", 1 << 20)?;
    let s: Summary =
        serde_json::from_str(&text).with_context(|| format!("reading {}", path.display()))?;
    if s.final_test_acc.is_none() || s.best_test_acc.is_none() || s.epochs.is_none() {
        bail!("{}: a run without any finished epoch", path.display());
    }
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let label = label_of(&name, &s);
    Ok(Run {
        dir: dir.to_owned(),
        label,
        s,
    })
}

/// The row label of the run folder `name`: the name without `-s<seed>`, `-d<density>` and the
/// data set's prefix; the method when the name follows no such pattern.
fn label_of(name: &str, s: &Summary) -> String {
    let strip_suffix = |n: &str, tag: char| -> Option<String> {
        let (head, tail) = n.rsplit_once('-')?;
        let rest = tail.strip_prefix(tag)?;
        (!rest.is_empty() && rest.chars().all(|c| c.is_ascii_digit() || c == '.'))
            .then(|| head.to_owned())
    };
    let mut n = strip_suffix(name, 's').unwrap_or_else(|| name.to_owned());
    if let Some(h) = strip_suffix(&n, 'd') {
        n = h;
    }
    match n.strip_prefix(&format!("{}-", s.dataset)) {
        Some(l) if !l.is_empty() => l.to_owned(),
        _ => s.method.clone(),
    }
}

/// The paper's Table 7 (spec §8.1): accuracy % mean, standard error, ANP %.
const PAPER: [(&str, &str, f64, f64, Option<u32>); 18] = [
    ("mnist", "fc", 98.78, 0.02, None),
    ("mnist", "chts-p", 98.81, 0.04, Some(20)),
    ("mnist", "chts-n", 98.76, 0.05, Some(27)),
    ("mnist", "cht", 98.48, 0.04, Some(29)),
    ("mnist", "rigl", 98.61, 0.01, Some(29)),
    ("mnist", "set", 98.14, 0.02, Some(100)),
    ("mnist", "chtss-n", 98.83, 0.02, Some(32)),
    ("mnist", "granet", 98.81, 0.00, Some(35)),
    ("mnist", "gmp", 98.62, 0.03, Some(58)),
    ("fashion-mnist", "fc", 90.88, 0.02, None),
    ("fashion-mnist", "chts-p", 90.93, 0.03, Some(89)),
    ("fashion-mnist", "chts-n", 90.67, 0.05, Some(73)),
    ("fashion-mnist", "cht", 88.70, 0.07, Some(30)),
    ("fashion-mnist", "rigl", 89.91, 0.07, Some(55)),
    ("fashion-mnist", "set", 89.00, 0.09, Some(100)),
    ("fashion-mnist", "chtss-n", 90.81, 0.11, Some(40)),
    ("fashion-mnist", "granet", 89.98, 0.06, Some(53)),
    ("fashion-mnist", "gmp", 90.29, 0.19, Some(69)),
];

/// The paper's row for `label` on `dataset`: the method name `label` is or starts with (`-` next).
fn paper(dataset: &str, label: &str) -> Option<(f64, f64, Option<u32>)> {
    let matches = |m: &str| label == m || label.starts_with(&format!("{m}-"));
    PAPER
        .iter()
        .copied()
        .filter(|&(d, m, ..)| d == dataset && matches(m))
        .max_by_key(|&(_, m, ..)| m.len())
        .map(|(_, _, a, e, anp)| (a, e, anp))
}

/// Row order: the paper's, then other labels alphabetically.
const ORDER: [&str; 10] = [
    "fc", "chts-p", "chts-n", "cht", "rigl", "set", "chtss-n", "granet", "gmp", "mest",
];

fn rank(label: &str) -> usize {
    ORDER
        .iter()
        .position(|m| label == *m || label.starts_with(&format!("{m}-")))
        .unwrap_or(ORDER.len())
}

/// Mean and standard error (sample standard deviation / √n; 0 for one value).
fn mean_se(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    if v.len() < 2 {
        return (mean, 0.0);
    }
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, (var / n).sqrt())
}

/// `98.63` for one value, `98.63±0.04` for several (percent, two decimals).
fn pct(v: &[f64]) -> String {
    let (m, e) = mean_se(v);
    if v.len() < 2 {
        format!("{:.2}", m * 100.0)
    } else {
        format!("{:.2}±{:.2}", m * 100.0, e * 100.0)
    }
}

/// The Markdown table of `runs`.
fn table(runs: &[Run]) -> Result<String> {
    // Rows keyed by (data set order, label order, label, density bits).
    let mut rows: BTreeMap<(usize, usize, String, u64), Vec<&Run>> = BTreeMap::new();
    for r in runs {
        let d = match r.s.dataset.as_str() {
            "mnist" => 0,
            "fashion-mnist" => 1,
            _ => 2,
        };
        let key = (d, rank(&r.label), r.label.clone(), r.s.density.to_bits());
        let row = rows.entry(key).or_default();
        if let Some(twin) = row.iter().find(|o| o.s.seed == r.s.seed) {
            bail!(
                "two runs of {} {} with seed {}: {} and {} — keep one",
                r.s.dataset,
                r.label,
                r.s.seed,
                twin.dir.display(),
                r.dir.display()
            );
        }
        row.push(r);
    }
    let mut out = String::new();
    out.push_str(
        "| data set | method | density | epochs | seeds | final acc % | best acc % | paper acc % [ANP] \
         | best − paper | ANP (final) | s / epoch | machine, date |\n",
    );
    out.push_str("|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for ((_, _, label, _), row) in &rows {
        let first = &row[0].s;
        let epochs: BTreeSet<u32> = row.iter().filter_map(|r| r.s.epochs).collect();
        let seeds: Vec<String> = row.iter().map(|r| r.s.seed.to_string()).collect();
        let finals: Vec<f64> = row.iter().filter_map(|r| r.s.final_test_acc).collect();
        let bests: Vec<f64> = row.iter().filter_map(|r| r.s.best_test_acc).collect();
        let anps: Vec<f64> = row.iter().filter_map(|r| r.s.final_anp).collect();
        let paper = paper(&first.dataset, label);
        let paper_text = match paper {
            None => "–".to_owned(),
            Some((a, e, anp)) => {
                format!("{a:.2}±{e:.2}") + &anp.map(|p| format!(" [{p}%]")).unwrap_or_default()
            }
        };
        let diff = match paper {
            None => "–".to_owned(),
            Some((a, ..)) => format!("{:+.2}", mean_se(&bests).0 * 100.0 - a),
        };
        let anp = if anps.is_empty() {
            "100%".to_owned()
        } else {
            format!("{:.0}%", mean_se(&anps).0 * 100.0)
        };
        let secs = row.iter().map(|r| r.s.mean_epoch_s).sum::<f64>() / row.len() as f64;
        let machine: BTreeSet<String> = row.iter().map(|r| machine_of(&r.s)).collect();
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.1} | {} |",
            first.dataset,
            label,
            // A dense run's configured density is not used.
            if first.method == "fc" {
                1.0
            } else {
                first.density
            },
            epochs
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join("/"),
            seeds.join(","),
            pct(&finals),
            pct(&bests),
            paper_text,
            diff,
            anp,
            secs,
            machine.into_iter().collect::<Vec<_>>().join("; "),
        );
    }
    Ok(out)
}

/// `backend on host, date` from a run's provenance, as far as it says.
fn machine_of(s: &Summary) -> String {
    let p = s.provenance.as_ref();
    let backend = p.and_then(|p| p.backend.clone());
    let host = p.and_then(|p| p.host.clone());
    let date = p.and_then(|p| p.date.clone());
    let mut out = match (backend, host) {
        (Some(b), Some(h)) => format!("{b} on {h}"),
        (Some(b), None) => b,
        (None, Some(h)) => h,
        (None, None) => "not recorded".to_owned(),
    };
    if let Some(d) = date {
        out.push_str(&format!(", {d}"));
    }
    out.replace('|', "/")
}

/// `text` with the lines between [`BEGIN`] and [`END`] replaced by `table`.
fn splice(text: &str, table: &str) -> Result<String> {
    let Some(b) = text.find(BEGIN) else {
        bail!("no line {BEGIN} (the table goes between it and {END})");
    };
    let after = b + BEGIN.len();
    let Some(e) = text[after..].find(END).map(|e| after + e) else {
        bail!("no line {END} after {BEGIN}");
    };
    Ok(format!("{}\n{}{}", &text[..after], table, &text[e..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(dataset: &str, method: &str) -> Summary {
        serde_json::from_value(serde_json::json!({
            "dataset": dataset, "method": method, "density": 0.01, "seed": 0, "epochs": 1,
            "final_test_acc": 0.9, "best_test_acc": 0.9, "mean_epoch_s": 1.0,
        }))
        .unwrap()
    }

    #[test]
    fn labels_come_from_folder_names() {
        let s = summary("fashion-mnist", "chtss");
        assert_eq!(label_of("fashion-mnist-chtss-n-d0.01-s2", &s), "chtss-n");
        assert_eq!(
            label_of("fashion-mnist-chtss-n-ris-d0.01-s0", &s),
            "chtss-n-ris"
        );
        assert_eq!(label_of("fashion-mnist-chtss-n-s0", &s), "chtss-n");
        assert_eq!(label_of("my-run", &s), "chtss");
        assert_eq!(label_of("fashion-mnist-s1", &s), "chtss");
    }

    #[test]
    fn variants_compare_with_their_method_row() {
        assert_eq!(paper("mnist", "chts-n"), Some((98.76, 0.05, Some(27))));
        assert_eq!(
            paper("fashion-mnist", "chtss-n-ris"),
            Some((90.81, 0.11, Some(40)))
        );
        assert_eq!(paper("mnist", "cht"), Some((98.48, 0.04, Some(29))));
        assert_eq!(paper("mnist", "gmp"), Some((98.62, 0.03, Some(58))));
        assert_eq!(paper("mnist", "mest"), None);
        assert_eq!(paper("mnist", "chtsx"), None);
    }

    #[test]
    fn standard_error_is_the_papers() {
        let (m, e) = mean_se(&[0.9810, 0.9820, 0.9830]);
        assert!((m - 0.982).abs() < 1e-12);
        // Sample sd 0.001, over √3.
        assert!((e - 0.001 / 3f64.sqrt()).abs() < 1e-12);
        assert_eq!(pct(&[0.9810, 0.9820, 0.9830]), "98.20±0.06");
        assert_eq!(pct(&[0.98765]), "98.77");
    }

    #[test]
    fn splice_replaces_only_between_the_markers() {
        let text = format!("intro\n{BEGIN}\nold\n{END}\noutro\n");
        let got = splice(&text, "| new |\n").unwrap();
        assert_eq!(got, format!("intro\n{BEGIN}\n| new |\n{END}\noutro\n"));
        assert!(splice("no markers", "x").is_err());
        assert!(splice(&format!("{END}\n{BEGIN}\n"), "x").is_err());
    }
}
