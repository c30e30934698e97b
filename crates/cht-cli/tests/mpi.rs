//! `cht train` / `cht lm train` under `mpirun` (issue #17), built with `--features mpi`: 2 ranks ×
//! half the batch train what 1 process × the whole batch trains (masks bit-identical through
//! topology updates, weights and losses within float-summation tolerance), a 2-rank run killed
//! mid-way resumes bit for bit on 2 ranks and is refused on 1, and a rank that dies ends the job
//! with an error within seconds. `scripts/test-mpi.sh` runs these (CI installs Open MPI).
#![cfg(feature = "mpi")]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

mod common;

use common::{cht, data_dir, tensors, write_config};

fn dir(name: &str) -> PathBuf {
    common::dir("mpi-test", name)
}

/// `mpirun -n N cht ARGS` on the CPU backend, one thread per rank, CSR always (plus `env`);
/// returns the exit code and the output.
fn mpirun(n: usize, args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let mut cmd = Command::new("mpirun");
    cmd.args([
        "-n",
        &n.to_string(),
        "--oversubscribe",
        "--allow-run-as-root",
    ]);
    let mut vars = vec![
        ("CHT_BACKEND", "cpu"),
        ("RAYON_NUM_THREADS", "1"),
        ("CHT_MASKED_DENSE_ABOVE", "never"),
    ];
    vars.extend_from_slice(env);
    for (k, v) in &vars {
        cmd.env(k, v);
        cmd.args(["-x", k]);
    }
    cmd.arg(env!("CARGO_BIN_EXE_cht")).args(args);
    let out = cmd
        .output()
        .expect("mpirun (install Open MPI: scripts/install-deps.sh)");
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    (out.status.code().unwrap_or(-1), text)
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// Patterns (`row_ptr`, `col_idx`) bit-identical, every float tensor within `tol` (relative to
/// 1 + |value|).
fn same_model(a: &Path, b: &Path, tol: f32) {
    let (ta, tb) = (
        tensors(&a.join("checkpoint.safetensors")),
        tensors(&b.join("checkpoint.safetensors")),
    );
    assert_eq!(ta.len(), tb.len());
    let mut worst = 0.0f32;
    for ((na, da), (nb, db)) in ta.iter().zip(&tb) {
        assert_eq!(na, nb);
        if na.ends_with("row_ptr") || na.ends_with("col_idx") {
            assert!(da == db, "{na}: the masks differ");
            continue;
        }
        for (x, y) in f32s(da).iter().zip(f32s(db)) {
            worst = worst.max((x - y).abs() / (1.0 + x.abs().max(y.abs())));
        }
    }
    eprintln!(
        "{} vs {}: worst relative difference {worst:e}",
        a.display(),
        b.display()
    );
    assert!(worst <= tol, "weights differ by {worst:e} > {tol:e}");
}

fn identical(a: &Path, b: &Path) {
    let (ta, tb) = (
        tensors(&a.join("checkpoint.safetensors")),
        tensors(&b.join("checkpoint.safetensors")),
    );
    assert_eq!(ta.len(), tb.len());
    for ((na, da), (_, db)) in ta.iter().zip(&tb) {
        assert!(da == db, "tensor {na} differs after resuming");
    }
}

fn metric(out: &Path, key: &str) -> Vec<f64> {
    std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()[key]
                .as_f64()
                .unwrap()
        })
        .collect()
}

fn close(what: &str, a: &[f64], b: &[f64], tol: f64) {
    assert_eq!(a.len(), b.len(), "{what}");
    for (x, y) in a.iter().zip(b) {
        assert!((x - y).abs() <= tol * (1.0 + x.abs()), "{what}: {x} vs {y}");
    }
}

#[test]
fn mlp_chts_n_on_two_ranks_matches_one_process_and_resumes_bit_for_bit() {
    let root = dir("mlp");
    let data = data_dir(&root);
    // 3 epochs of 60 steps, a topology update after each of the first two.
    let config = write_config(&root, &data, "");
    let c = config.to_str().unwrap();
    let (one, two, killed) = (root.join("one"), root.join("two"), root.join("killed"));

    let (code, log) = cht(
        &["train", "--config", c, "--out", one.to_str().unwrap()],
        &[],
    );
    assert_eq!(code, 0, "{log}");
    let (code, log) = mpirun(
        2,
        &["train", "--config", c, "--out", two.to_str().unwrap()],
        &[],
    );
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("data-parallel over 2 ranks"), "{log}");
    same_model(&one, &two, 1e-4);
    close(
        "train loss",
        &metric(&one, "train_loss"),
        &metric(&two, "train_loss"),
        1e-4,
    );
    close(
        "test accuracy",
        &metric(&one, "test_acc"),
        &metric(&two, "test_acc"),
        1e-2,
    );
    assert_eq!(
        metric(&one, "itop"),
        metric(&two, "itop"),
        "ITOP follows the masks"
    );

    // Killed after step 85 (epoch 2, after the first topology update), resumed on 2 ranks.
    let (code, _) = mpirun(
        2,
        &["train", "--config", c, "--out", killed.to_str().unwrap()],
        &[("CHT_ABORT_AFTER_STEPS", "85")],
    );
    assert_ne!(code, 0, "the abort hook did not fire");
    let k = killed.to_str().unwrap();
    let (code, log) = cht(&["train", "--resume", k], &[]);
    assert_eq!(code, 2, "{log}");
    assert!(log.contains("trained on 2 ranks (mpirun -n 2)"), "{log}");
    let (code, log) = mpirun(2, &["train", "--resume", k], &[]);
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("resuming"), "{log}");
    identical(&two, &killed);
    assert_eq!(metric(&two, "test_acc"), metric(&killed, "test_acc"));
}

#[test]
fn lm_chtss_on_two_ranks_matches_one_process_and_resumes_bit_for_bit() {
    let root = dir("lm");
    let lines = [
        "to be or not to be, that is the question.\n",
        "the rose by any other name would smell as sweet.\n",
    ];
    let text: String = (0..80).map(|i| lines[i % 2]).collect();
    let corpus = root.join("corpus.txt");
    std::fs::write(&corpus, text).unwrap();
    let config = root.join("lm.toml");
    std::fs::write(
        &config,
        format!(
            "[data]\ncorpus = {corpus:?}\n[model]\nd_model = 16\nheads = 2\nffn = 32\nlayers = 2\nseq = 16\n\
             [train]\nsteps = 30\nbatch = 4\nlr = 1e-2\nwarmup = 5\niterative_warmup = 2\neval_every = 10\n\
             log_every = 5\ncheckpoint_every = 10\n[dst]\nmethod = \"chtss\"\ndensity = 0.3\nupdate_interval = 5\n"
        ),
    )
    .unwrap();
    let c = config.to_str().unwrap();
    let (one, two, killed) = (root.join("one"), root.join("two"), root.join("killed"));
    let train = |out: &Path| {
        ["lm", "train", "--config", c, "--out", out.to_str().unwrap()].map(str::to_owned)
    };
    let (one_args, two_args, killed_args) = (train(&one), train(&two), train(&killed));
    fn args(a: &[String; 6]) -> Vec<&str> {
        a.iter().map(String::as_str).collect()
    }

    let (code, log) = cht(&args(&one_args), &[]);
    assert_eq!(code, 0, "{log}");
    let (code, log) = mpirun(2, &args(&two_args), &[]);
    assert_eq!(code, 0, "{log}");
    same_model(&one, &two, 1e-3);
    close(
        "validation loss",
        &metric(&one, "val_loss"),
        &metric(&two, "val_loss"),
        1e-4,
    );

    let (code, _) = mpirun(2, &args(&killed_args), &[("CHT_ABORT_AFTER_STEPS", "17")]);
    assert_ne!(code, 0, "the abort hook did not fire");
    let (code, log) = mpirun(
        2,
        &["lm", "train", "--resume", killed.to_str().unwrap()],
        &[],
    );
    assert_eq!(code, 0, "{log}");
    identical(&two, &killed);
    assert_eq!(metric(&two, "val_loss"), metric(&killed, "val_loss"));
}

#[test]
fn a_rank_that_dies_ends_the_job_with_an_error() {
    let root = dir("dies");
    let data = data_dir(&root);
    let config = write_config(&root, &data, "");
    let start = Instant::now();
    let (code, log) = mpirun(
        2,
        &[
            "train",
            "--config",
            config.to_str().unwrap(),
            "--out",
            root.join("run").to_str().unwrap(),
        ],
        &[
            ("CHT_ABORT_AFTER_STEPS", "30"),
            ("CHT_ABORT_RANK", "1"),
            ("CHT_COLLECTIVE_TIMEOUT", "20"),
        ],
    );
    let took = start.elapsed();
    assert_ne!(code, 0, "{log}");
    assert!(log.contains("aborting (rank 1)"), "{log}");
    assert!(took < Duration::from_secs(60), "took {took:?}: {log}");
    eprintln!(
        "the job ended {:.1} s after start with exit code {code}",
        took.as_secs_f64()
    );
}

#[test]
fn a_batch_that_does_not_split_and_commands_that_do_not_scale_are_refused() {
    let root = dir("refused");
    let data = data_dir(&root);
    let config = write_config(&root, &data, "");
    let c = config.to_str().unwrap();
    let out = root.join("run");
    let (code, log) = mpirun(
        3,
        &["train", "--config", c, "--out", out.to_str().unwrap()],
        &[],
    );
    assert_ne!(code, 0, "{log}");
    assert!(log.contains("does not split evenly over 3 ranks"), "{log}");
    let (code, log) = mpirun(2, &["eval", "--checkpoint", out.to_str().unwrap()], &[]);
    assert_ne!(code, 0, "{log}");
    assert!(log.contains("runs in one process"), "{log}");
}
