//! `cht train` end to end on a small generated IDX data set (no network): outputs, bit-for-bit
//! resume after a kill mid-epoch, and one clear error per kind of bad input.

use std::path::{Path, PathBuf};

mod common;

use common::{cht, data_dir, tensors, write_config};

fn dir(name: &str) -> PathBuf {
    common::dir("train-test", name)
}

#[test]
fn trains_writes_outputs_and_resumes_bit_for_bit_after_a_kill() {
    let root = dir("resume");
    let data = data_dir(&root);
    let config = write_config(&root, &data, "");
    let (a, b) = (root.join("a"), root.join("b"));

    let (code, log) = train(&config, &a, &[]);
    assert_eq!(code, 0, "{log}");
    for f in [
        "config.toml",
        "metrics.jsonl",
        "summary.json",
        "checkpoint.safetensors",
        "accuracy.png",
        "loss.png",
        "topology.png",
    ] {
        assert!(a.join(f).exists(), "missing {f}");
    }
    let metrics = std::fs::read_to_string(a.join("metrics.jsonl")).unwrap();
    assert_eq!(metrics.lines().count(), 3);
    let first: serde_json::Value = serde_json::from_str(metrics.lines().next().unwrap()).unwrap();
    for key in [
        "epoch",
        "train_loss",
        "test_loss",
        "test_acc",
        "lr",
        "density",
        "anp",
        "itop",
        "epoch_s",
    ] {
        assert!(first.get(key).is_some(), "metrics lack {key}");
    }
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(a.join("summary.json")).unwrap()).unwrap();
    let acc = summary["final_test_acc"].as_f64().unwrap();
    assert!(acc > 0.8, "the generated problem is easy, got {acc}");
    assert!(summary["best_test_acc"].as_f64().unwrap() >= acc);

    // Killed after step 85 of 180 (in epoch 2), then resumed: identical everything.
    kill_resume_and_compare(&config, &a, &b);

    // `cht eval` on the checkpoint reproduces the final accuracy.
    let (code, log) = cht(&["eval", "--checkpoint", a.to_str().unwrap()], &[]);
    assert_eq!(code, 0, "{log}");
    assert!(log.contains(&format!("{:.2}%", acc * 100.0)), "{log}");
}

#[test]
fn bad_inputs_give_one_clear_error_each() {
    let root = dir("errors");
    let data = data_dir(&root);
    let one_line = |code: i32, log: &str, needle: &str| {
        assert_eq!(code, 2, "{log}");
        let errors: Vec<&str> = log.lines().filter(|l| l.starts_with("error:")).collect();
        assert_eq!(errors.len(), 1, "{log}");
        assert!(errors[0].contains(needle), "expected {needle:?} in {log}");
    };
    // Missing data: names the fetch command.
    let config = write_config(&root, &root.join("nowhere"), "");
    let (code, log) = cht(
        &[
            "train",
            "--config",
            config.to_str().unwrap(),
            "--out",
            root.join("x").to_str().unwrap(),
        ],
        &[],
    );
    one_line(code, &log, "cht data fetch");
    // Malformed IDX: a truncated image file.
    let broken = root.join("broken");
    std::fs::create_dir_all(broken.join("mnist")).unwrap();
    for f in std::fs::read_dir(data.join("mnist")).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, broken.join("mnist").join(f.file_name().unwrap())).unwrap();
    }
    let images = broken.join("mnist/train-images-idx3-ubyte.gz");
    let bytes = std::fs::read(&images).unwrap();
    std::fs::write(&images, &bytes[..bytes.len() / 2]).unwrap();
    let config = write_config(&root, &broken, "");
    let (code, log) = cht(
        &[
            "train",
            "--config",
            config.to_str().unwrap(),
            "--out",
            root.join("y").to_str().unwrap(),
        ],
        &[],
    );
    one_line(code, &log, "train-images");
    // Bad config: unknown key and bad value name the field.
    let config = write_config(&root, &data, "");
    let (code, log) = cht(
        &[
            "train",
            "--config",
            config.to_str().unwrap(),
            "--set",
            "train.epochz=3",
        ],
        &[],
    );
    one_line(code, &log, "epochz");
    let (code, log) = cht(
        &[
            "train",
            "--config",
            config.to_str().unwrap(),
            "--set",
            "dst.density=1.5",
        ],
        &[],
    );
    one_line(code, &log, "dst.density");
    // Corrupt checkpoint.
    let run = root.join("corrupt");
    std::fs::create_dir_all(&run).unwrap();
    std::fs::write(
        run.join("checkpoint.safetensors"),
        b"\x10\x00\x00\x00\x00\x00\x00\x00{}",
    )
    .unwrap();
    let (code, log) = cht(&["train", "--resume", run.to_str().unwrap()], &[]);
    one_line(code, &log, "checkpoint");
    let (code, log) = cht(
        &["eval", "--checkpoint", root.join("none").to_str().unwrap()],
        &[],
    );
    one_line(code, &log, "checkpoint");
}

/// `cht train --config CONFIG --out OUT` with extra environment variables.
fn train(config: &Path, out: &Path, env: &[(&str, &str)]) -> (i32, String) {
    cht(
        &[
            "train",
            "--config",
            config.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
        env,
    )
}

/// Trains `config` into `b`, killed after step 85, resumes it, and asserts that every checkpoint
/// tensor and every epoch's accuracy equal those of the uninterrupted run in `a`.
fn kill_resume_and_compare(config: &Path, a: &Path, b: &Path) {
    let (code, _) = train(config, b, &[("CHT_ABORT_AFTER_STEPS", "85")]);
    assert_ne!(code, 0, "the abort hook did not fire");
    let (code, log) = cht(&["train", "--resume", b.to_str().unwrap()], &[]);
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("resuming"), "{log}");
    let (ta, tb) = (
        tensors(&a.join("checkpoint.safetensors")),
        tensors(&b.join("checkpoint.safetensors")),
    );
    assert_eq!(ta.len(), tb.len());
    for ((na, da), (nb, db)) in ta.iter().zip(&tb) {
        assert_eq!(na, nb);
        assert!(da == db, "tensor {na} differs after resuming");
    }
    let acc_of = |d: &Path| -> Vec<f64> {
        std::fs::read_to_string(d.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["test_acc"]
                    .as_f64()
                    .unwrap()
            })
            .collect()
    };
    assert_eq!(acc_of(a), acc_of(b));
}

#[test]
fn historical_weights_are_checkpointed_and_resume_bit_for_bit() {
    let root = dir("resume-history");
    let data = data_dir(&root);
    let config = write_config(&root, &data, "regrown_weights = \"History\"\n");
    let (a, b) = (root.join("a"), root.join("b"));
    let (code, log) = train(&config, &a, &[]);
    assert_eq!(code, 0, "{log}");
    let saved = tensors(&a.join("checkpoint.safetensors"));
    for l in 0..2 {
        let name = format!("dst.history{l}");
        assert!(
            saved
                .iter()
                .any(|(n, d)| *n == name && d.iter().any(|&x| x != 0)),
            "{name} missing or all zero"
        );
    }
    kill_resume_and_compare(&config, &a, &b);
}
