//! Helpers shared by the end-to-end tests of the `cht` binary.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use cht_data::mnist::Compression;
use cht_data::{Dataset, DatasetKind, MnistLike, Split};

/// Runs `cht` on the CPU backend with one thread, sparse layers always CSR (plus `env`, which may
/// override that); returns the exit code and standard error followed by standard output.
pub fn cht(args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cht"));
    cmd.args(args)
        .env("CHT_BACKEND", "cpu")
        .env("RAYON_NUM_THREADS", "1")
        // Runs compared bit for bit must execute alike: no timing-dependent calibration.
        .env("CHT_MASKED_DENSE_ABOVE", "never");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run cht");
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    (out.status.code().unwrap_or(-1), text)
}

/// A fresh, empty temporary directory `cht-<suite>-<pid>-<name>`.
pub fn dir(suite: &str, name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("cht-{suite}-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Every tensor of a checkpoint with its bytes, sorted by name.
pub fn tensors(path: &Path) -> Vec<(String, Vec<u8>)> {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut out: Vec<(String, Vec<u8>)> = st
        .tensors()
        .into_iter()
        .map(|(n, v)| (n, v.data().to_vec()))
        .collect();
    out.sort();
    out
}

/// A checkpoint's metadata, sorted by key.
pub fn metadata(path: &Path) -> Vec<(String, String)> {
    let bytes = std::fs::read(path).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let mut out: Vec<(String, String)> = header.metadata().clone().unwrap().into_iter().collect();
    out.sort();
    out
}

/// Ten classes of 28×28 images: a bright 6×6 square at a class-specific place, plus noise.
pub fn synthetic(n: usize, split: Split, seed: u64) -> Dataset {
    let mut state = seed;
    let mut rand = || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) as u32
    };
    let mut images = vec![0u8; n * 784];
    let mut labels = vec![0u8; n];
    for i in 0..n {
        let c = (rand() % 10) as usize;
        labels[i] = c as u8;
        let (r0, c0) = (2 + (c / 5) * 12, 2 + (c % 5) * 5);
        for p in 0..784 {
            images[i * 784 + p] = (rand() % 60) as u8;
        }
        for r in r0..r0 + 6 {
            for col in c0..c0 + 6 {
                images[i * 784 + r * 28 + col] = 200 + (rand() % 55) as u8;
            }
        }
    }
    Dataset {
        name: format!("synthetic-{split:?}"),
        kind: DatasetKind::Mnist,
        split,
        images,
        labels,
        n,
        rows: 28,
        cols: 28,
        classes: 10,
    }
}

/// A 3-epoch CHTs-n run of a small MLP on the data of [`data_dir`] (`extra` is appended, in the
/// `[dst]` section).
pub fn write_config(dir: &Path, data_dir: &Path, extra: &str) -> PathBuf {
    let path = dir.join("run.toml");
    std::fs::write(
        &path,
        format!(
            "[data]\ndataset = \"mnist\"\ndata_dir = {data_dir:?}\nfetch_if_missing = false\n\
             [model]\ndim = 0.25\nhidden_layers = 2\n\
             [train]\nepochs = 3\nbatch_size = 20\nlr = 0.02\nlr_end_factor = 0.1\nlr_decay_fraction = 0.9\n\
             momentum = 0.9\nweight_decay = 5e-4\nseed = 1\nlog_every = 10\neval_batch = 100\ncheckpoint_every = 1\n\
             [dst]\nmethod = \"chts-n\"\ndensity = 0.05\nupdate_every_epochs = 1\n{extra}"
        ),
    )
    .unwrap();
    path
}

/// A data folder with 1 200 training and 300 test images of [`synthetic`], gzipped IDX.
pub fn data_dir(root: &Path) -> PathBuf {
    let d = root.join("data");
    MnistLike::write_dir(
        &d.join("mnist"),
        &synthetic(1200, Split::Train, 1),
        &synthetic(300, Split::Test, 2),
        Compression::Gzip,
    )
    .unwrap();
    d
}
