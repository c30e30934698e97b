//! Helpers shared by the end-to-end tests of the `cht` binary.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

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
