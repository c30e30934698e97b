//! Hostile and careless input through the `cht` binary (issue #16): each test is one class of
//! failure that used to panic, abort, hang, allocate without bound or train NaN to exit 0. Every
//! case must end with exit code 2 and one clear line, or quietly on a closed pipe.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

mod common;

use common::{cht, data_dir, write_config};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};

fn dir(name: &str) -> PathBuf {
    common::dir("hardening-test", name)
}

/// Asserts a clean refusal: exit code 2, no panic, the message containing every `needle`.
fn refused(code: i32, text: &str, needles: &[&str]) {
    assert_eq!(code, 2, "{text}");
    assert!(!text.contains("panicked"), "{text}");
    for n in needles {
        assert!(text.contains(n), "expected {n:?} in:\n{text}");
    }
}

/// `cht train --config CONFIG --out OUT --set S…` with `env`.
fn train(config: &Path, out: &Path, sets: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let mut args = vec![
        "train",
        "--config",
        config.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    for s in sets {
        args.extend(["--set", s]);
    }
    cht(&args, env)
}

/// A trained 1-epoch MLP run directory (its checkpoint is at epoch 1).
fn trained(name: &str, extra_set: &[&str]) -> (PathBuf, PathBuf) {
    let d = dir(name);
    let config = write_config(&d, &data_dir(&d), "");
    let out = d.join("run");
    let mut sets = vec!["train.epochs=1"];
    sets.extend(extra_set);
    let (code, text) = train(&config, &out, &sets, &[]);
    assert_eq!(code, 0, "{text}");
    (d, out)
}

/// Rewrites a checkpoint with `edit` applied to its metadata and tensors (name → dtype, shape,
/// bytes).
#[allow(clippy::type_complexity)]
fn rewrite(
    path: &Path,
    edit: impl FnOnce(&mut HashMap<String, String>, &mut Vec<(String, Dtype, Vec<usize>, Vec<u8>)>),
) {
    let bytes = std::fs::read(path).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let (_, header) = SafeTensors::read_metadata(&bytes).unwrap();
    let mut meta = header.metadata().clone().unwrap();
    let mut tensors: Vec<_> = st
        .tensors()
        .into_iter()
        .map(|(n, v)| (n, v.dtype(), v.shape().to_vec(), v.data().to_vec()))
        .collect();
    edit(&mut meta, &mut tensors);
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    std::fs::write(path, safetensors::serialize(views, &Some(meta)).unwrap()).unwrap();
}

/// Replaces `key = …` in the `[section]` of a TOML text.
fn set_toml(text: &str, section: &str, key: &str, value: &str) -> String {
    let mut table: toml::Table = toml::from_str(text).unwrap();
    let s = table[section].as_table_mut().unwrap();
    s.insert(
        key.into(),
        toml::from_str::<toml::Table>(&format!("v = {value}")).unwrap()["v"].clone(),
    );
    toml::to_string(&table).unwrap()
}

#[test]
fn a_checkpoints_configuration_is_validated_again_on_eval_and_resume() {
    let (d, out) = trained("ckpt-config", &[]);
    let ckpt = out.join("checkpoint.safetensors");
    let good = std::fs::read(&ckpt).unwrap();
    for (section, key, value, needle) in [
        (
            "train",
            "batch_size",
            "0",
            "train.batch_size must be at least 1",
        ),
        ("train", "log_every", "0", "log_every"),
        ("model", "hidden_layers", "0", "model.hidden_layers"),
        ("train", "lr", "nan", "train.lr must be positive"),
        ("train", "weight_decay", "inf", "train.weight_decay"),
    ] {
        std::fs::write(&ckpt, &good).unwrap();
        rewrite(&ckpt, |meta, _| {
            let edited = set_toml(&meta["config"], section, key, value);
            meta.insert("config".into(), edited);
        });
        let (code, text) = cht(&["eval", "--checkpoint", out.to_str().unwrap()], &[]);
        refused(code, &text, &["invalid configuration", needle]);
        let (code, text) = cht(&["train", "--resume", out.to_str().unwrap()], &[]);
        refused(code, &text, &["the configuration saved in", needle]);
    }
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn an_edited_scheduler_state_is_refused_on_resume() {
    let (d, out) = trained("scheduler", &["train.epochs=2", "train.checkpoint_every=1"]);
    // The 2-epoch run finished; resuming it from an edited epoch-2 checkpoint must refuse the
    // edit before anything else (a clean checkpoint resumes to "nothing left to do").
    let ckpt = out.join("checkpoint.safetensors");
    let good = std::fs::read(&ckpt).unwrap();
    type Edit = fn(&mut serde_json::Value);
    let edits: [(&str, Edit); 6] = [
        ("capacity 0", |s| s["layers"][0]["capacity"] = 0.into()),
        ("rows", |s| {
            let r = s["layers"][0]["rows"].as_u64().unwrap();
            s["layers"][0]["rows"] = (r + 1).into();
        }),
        ("step", |s| {
            let t = s["step"].as_u64().unwrap();
            s["step"] = (t + 7).into();
        }),
        ("interval", |s| s["config"]["interval"] = 3.into()),
        ("density", |s| s["config"]["density"] = 0.5.into()),
        ("links", |s| {
            let c = s["layers"][1]["capacity"].as_u64().unwrap();
            s["layers"][1]["nnz"] = (c + 1).into();
        }),
    ];
    for (what, edit) in edits {
        std::fs::write(&ckpt, &good).unwrap();
        rewrite(&ckpt, |meta, _| {
            let mut s: serde_json::Value = serde_json::from_str(&meta["scheduler"]).unwrap();
            edit(&mut s);
            meta.insert("scheduler".into(), s.to_string());
        });
        let (code, text) = cht(&["train", "--resume", out.to_str().unwrap()], &[]);
        assert_eq!(code, 2, "{what}: {text}");
        refused(code, &text, &["checkpoint does not match the model"]);
    }
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn sizes_that_cannot_fit_are_refused_before_anything_is_allocated() {
    let d = dir("sizes");
    let config = write_config(&d, &data_dir(&d), "");
    for set in [
        "model.dim=1e6",
        "model.dim=1e300",
        "model.hidden_layers=1000000",
    ] {
        let out = d.join("run");
        let (code, text) = train(&config, &out, &[set], &[]);
        refused(code, &text, &["the MLP"]);
    }
    let (code, text) = train(
        &config,
        &d.join("run"),
        &["train.batch_size=1000000000"],
        &[],
    );
    refused(code, &text, &["train.batch_size"]);
    let corpus = d.join("corpus.txt");
    std::fs::write(
        &corpus,
        "to be or not to be, that is the question.\n".repeat(40),
    )
    .unwrap();
    let lm = d.join("lm.toml");
    std::fs::write(
        &lm,
        format!(
            "[data]\ncorpus = {corpus:?}\n[model]\nd_model = 16\nheads = 2\nffn = 32\nlayers = 2\nseq = 16\n\
             [train]\nsteps = 4\nbatch = 4\n[dst]\nmethod = \"set\"\ndensity = 0.3\nupdate_interval = 2\n"
        ),
    )
    .unwrap();
    for sets in [
        &["model.d_model=1048576", "model.heads=8192"][..],
        &["model.layers=9223372036854775807"],
        &["train.batch=1000000000"],
        &["model.ffn=1000000000000"],
    ] {
        let mut args = vec!["lm", "train", "--config", lm.to_str().unwrap()];
        let out = d.join("lm-run");
        args.extend(["--out", out.to_str().unwrap()]);
        for s in sets {
            args.extend(["--set", s]);
        }
        let (code, text) = cht(&args, &[]);
        refused(code, &text, &["the language model"]);
    }
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn a_diverging_run_stops_naming_the_step_and_keeps_the_last_good_checkpoint() {
    // From the start: no checkpoint is ever written.
    let d = dir("diverge");
    let config = write_config(&d, &data_dir(&d), "");
    let out = d.join("run");
    let (code, text) = train(&config, &out, &["train.lr=1e30"], &[]);
    refused(code, &text, &["training diverged", "at step"]);
    assert!(!out.join("checkpoint.safetensors").exists());
    // Mid-run: the epoch-1 checkpoint of a 2-epoch run stays byte for byte (in a new folder:
    // the first run's stays, and is not replaced without --force).
    let out = d.join("run2");
    let (code, text) = train(
        &config,
        &out,
        &["train.epochs=2"],
        &[("CHT_ABORT_AFTER_STEPS", "70")],
    );
    assert_ne!(code, 0, "{text}");
    let ckpt = out.join("checkpoint.safetensors");
    rewrite(&ckpt, |_, tensors| {
        for (name, _, _, bytes) in tensors.iter_mut() {
            if name.ends_with(".values") {
                for c in bytes.chunks_exact_mut(4) {
                    c.copy_from_slice(&1e30f32.to_le_bytes());
                }
            }
        }
    });
    let before = std::fs::read(&ckpt).unwrap();
    let (code, text) = cht(&["train", "--resume", out.to_str().unwrap()], &[]);
    refused(code, &text, &["training diverged", "(epoch 2)"]);
    assert_eq!(std::fs::read(&ckpt).unwrap(), before);
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn configurations_that_cannot_train_are_refused_before_training() {
    let d = dir("untrainable");
    let config = write_config(&d, &data_dir(&d), "");
    for (set, needle) in [
        ("train.weight_decay=nan", "train.weight_decay"),
        ("dst.temperature={ Constant = -1.0 }", "temperature"),
        ("model.dim=inf", "model.dim"),
    ] {
        let (code, text) = cht(
            &["train", "--config", config.to_str().unwrap(), "--set", set],
            &[],
        );
        refused(code, &text, &["invalid configuration", needle]);
        assert!(!text.contains("epoch   1"), "{set} trained: {text}");
    }
    // An empty test set: nothing to evaluate (it printed `test acc NaN%`).
    let empty = d.join("empty");
    cht_data::MnistLike::write_dir(
        &empty.join("mnist"),
        &common::synthetic(100, cht_data::Split::Train, 1),
        &common::synthetic(0, cht_data::Split::Test, 2),
        cht_data::mnist::Compression::None,
    )
    .unwrap();
    let config = write_config(&d, &empty, "");
    let (code, text) = train(&config, &d.join("run"), &[], &[]);
    refused(code, &text, &["test set is empty"]);
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn a_run_directory_held_by_another_process_is_refused() {
    let d = dir("lock");
    let config = write_config(&d, &data_dir(&d), "");
    let out = d.join("run");
    std::fs::create_dir_all(&out).unwrap();
    let lock = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(out.join(".lock"))
        .unwrap();
    lock.try_lock().unwrap();
    let args = [
        "train",
        "--config",
        config.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--set",
        "train.epochs=1",
    ];
    let (code, text) = cht(&args, &[]);
    refused(code, &text, &["is in use by another cht process"]);
    assert!(!out.join("metrics.jsonl").exists());
    drop(lock);
    let (code, text) = cht(&args, &[]);
    assert_eq!(code, 0, "{text}");
    // A mistyped --resume names the path and leaves no lock file anywhere.
    let missing = d.join("missing");
    let (code, text) = cht(&["train", "--resume", missing.to_str().unwrap()], &[]);
    refused(code, &text, &["no run directory or checkpoint there"]);
    assert!(!d.join(".lock").exists());
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn identical_runs_write_identical_checkpoints_and_never_follow_planted_links() {
    let d = dir("identical");
    let config = write_config(&d, &data_dir(&d), "");
    let victim = d.join("victim");
    std::fs::write(&victim, "precious").unwrap();
    let mut checkpoints = Vec::new();
    for run in ["a", "b"] {
        let out = d.join(run);
        std::fs::create_dir_all(&out).unwrap();
        // The temporary name the checkpoint writer used to write through.
        std::os::unix::fs::symlink(&victim, out.join("checkpoint.safetensors.tmp")).unwrap();
        let (code, text) = train(&config, &out, &["train.epochs=1"], &[]);
        assert_eq!(code, 0, "{text}");
        checkpoints.push(std::fs::read(out.join("checkpoint.safetensors")).unwrap());
    }
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
    assert!(checkpoints[0] == checkpoints[1], "checkpoint bytes differ");
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn closed_pipes_end_the_process_quietly() {
    let d = dir("pipe");
    let mask = d.join("mask.txt");
    let row = "1 0 1 1 0 1 0 1\n".repeat(64);
    std::fs::write(&mask, row).unwrap();
    // stdout closed before the scores are printed (`cht score … | head -0`).
    let mut child = Command::new(env!("CARGO_BIN_EXE_cht"))
        .args([
            "score",
            "--method",
            "ch2-l3n",
            "--mask",
            mask.to_str().unwrap(),
        ])
        .env("CHT_BACKEND", "cpu")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    // stderr closed under a training run (`cht train … 2>&1 | head -1`).
    let config = write_config(&d, &data_dir(&d), "");
    let mut child = Command::new(env!("CARGO_BIN_EXE_cht"))
        .args(["train", "--config", config.to_str().unwrap()])
        .args(["--out", d.join("run").to_str().unwrap()])
        .env("CHT_BACKEND", "cpu")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stderr.take());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn toml_errors_name_the_place_without_echoing_a_huge_line() {
    let d = dir("toml");
    let config = d.join("huge.toml");
    let mut text = "[data]\ndataset = \"mnist\"\nnote = \"".to_owned();
    text.push_str(&"x".repeat(900_000));
    text.push('\n');
    std::fs::write(&config, text).unwrap();
    let (code, text) = cht(&["train", "--config", config.to_str().unwrap()], &[]);
    refused(code, &text, &["not valid TOML", "line 3"]);
    assert!(text.len() < 2000, "{} bytes of error", text.len());
    // Special files: refused at once, not read forever or waited on.
    for special in ["/dev/zero", "/dev/urandom"] {
        let (code, text) = cht(&["train", "--config", special], &[]);
        refused(code, &text, &["not a regular file"]);
    }
    let fifo = d.join("fifo");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let (code, text) = cht(&["train", "--config", fifo.to_str().unwrap()], &[]);
    refused(code, &text, &["a FIFO"]);
    let (code, text) = cht(&["eval", "--checkpoint", "/dev/zero"], &[]);
    refused(code, &text, &["not a regular file"]);
    std::fs::remove_dir_all(&d).unwrap();
}
