//! `cht lm train` / `cht sample` end to end on a small generated corpus (no network): outputs,
//! learning, bit-for-bit resume after a kill between checkpoints, sampling, and one clear error
//! per kind of bad input.

use std::path::{Path, PathBuf};

mod common;

use common::cht;

fn dir(name: &str) -> PathBuf {
    common::dir("lm-test", name)
}

/// A corpus with structure a tiny model learns in a few dozen steps.
fn corpus(dir: &Path) -> PathBuf {
    let lines = [
        "to be or not to be, that is the question.\n",
        "the rose by any other name would smell as sweet.\n",
        "all the world's a stage, and all the men and women merely players.\n",
    ];
    let text: String = (0..60).map(|i| lines[i % 3]).collect();
    let path = dir.join("corpus.txt");
    std::fs::write(&path, text).unwrap();
    path
}

fn config(dir: &Path, corpus: &Path, method: &str, extra: &str) -> PathBuf {
    let path = dir.join(format!("{method}.toml"));
    std::fs::write(
        &path,
        format!(
            "[data]\ncorpus = {corpus:?}\n[model]\nd_model = 16\nheads = 2\nffn = 32\nlayers = 2\nseq = 16\n\
             [train]\nsteps = 40\nbatch = 4\nlr = 1e-2\nwarmup = 5\niterative_warmup = 2\neval_every = 10\n\
             log_every = 5\ncheckpoint_every = 10\n[dst]\nmethod = \"{method}\"\ndensity = 0.3\nupdate_interval = 5\n{extra}"
        ),
    )
    .unwrap();
    path
}

/// Every tensor of a checkpoint with its bytes, then its metadata except the config (TOML text,
/// whose key order is not fixed).
fn state(path: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = common::tensors(path);
    out.extend(
        common::metadata(path)
            .into_iter()
            .filter(|(k, _)| k != "config")
            .map(|(k, v)| (k, v.into_bytes())),
    );
    out
}

fn metrics(out: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn trains_resumes_bit_for_bit_and_samples() {
    let d = dir("resume");
    let text = corpus(&d);
    // CHTss with pairwise chain removal: decay, soft removal, CH regrowth, qk/chain pairs. The
    // projections run masked-dense while the density is above 0.31 (0.5 at the start, 0.32 at
    // step 10) and switch to CSR as it decays to 0.3: the resumed run below restarts from the
    // masked-dense checkpoint of step 10 and must switch exactly as the uninterrupted one.
    let cfg = config(&d, &text, "chtss", "chain_removal = true\n");
    let full = d.join("full");
    let crossover = "model.masked_dense_above=0.31";
    let (code, log) = cht(
        &[
            "lm",
            "train",
            "--config",
            cfg.to_str().unwrap(),
            "--set",
            crossover,
            "--out",
            full.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(code, 0, "{log}");
    for f in [
        "config.toml",
        "metrics.jsonl",
        "summary.json",
        "checkpoint.safetensors",
        "perplexity.png",
        "loss.png",
        "topology.png",
    ] {
        assert!(full.join(f).exists(), "{f} missing");
    }
    let m = metrics(&full);
    assert_eq!(m.len(), 4, "validation at steps 10, 20, 30, 40");
    let ppl: Vec<f64> = m.iter().map(|l| l["val_ppl"].as_f64().unwrap()).collect();
    assert!(ppl[3] < ppl[0] * 0.7, "the model learns: {ppl:?}");
    let density = m[3]["density"].as_f64().unwrap();
    assert!(
        (density - 0.3).abs() < 0.01,
        "decayed to the target: {density}"
    );
    let masked: Vec<u64> = m
        .iter()
        .map(|l| l["masked_dense"].as_u64().unwrap())
        .collect();
    assert!(
        masked[0] > 0 && masked[3] == 0,
        "masked-dense while dense enough, CSR at the end: {masked:?}"
    );

    // Killed after step 17 (last checkpoint at 10), resumed: the same final state, bit for bit.
    let part = d.join("part");
    let (code, _) = cht(
        &[
            "lm",
            "train",
            "--config",
            cfg.to_str().unwrap(),
            "--set",
            crossover,
            "--out",
            part.to_str().unwrap(),
        ],
        &[("CHT_ABORT_AFTER_STEPS", "17")],
    );
    assert_ne!(code, 0, "the abort hook kills the run");
    let (code, log) = cht(&["lm", "train", "--resume", part.to_str().unwrap()], &[]);
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("resuming"), "{log}");
    let (a, b) = (
        state(&full.join("checkpoint.safetensors")),
        state(&part.join("checkpoint.safetensors")),
    );
    assert!(a.len() > 80, "{} entries", a.len());
    let differ: Vec<&String> = a
        .iter()
        .zip(&b)
        .filter(|(x, y)| x != y)
        .map(|(x, _)| &x.0)
        .collect();
    assert!(
        a.len() == b.len() && differ.is_empty(),
        "resumed checkpoint differs from the uninterrupted run in {differ:?}"
    );
    let strip = |v: &serde_json::Value| {
        let mut v = v.clone();
        for k in ["tokens_per_s", "elapsed_s"] {
            v.as_object_mut().unwrap().remove(k);
        }
        v
    };
    let (mf, mp) = (metrics(&full), metrics(&part));
    assert_eq!(mf.len(), mp.len());
    for (x, y) in mf.iter().zip(&mp) {
        assert_eq!(strip(x), strip(y));
    }

    // Sampling: deterministic for a seed, starts with the prompt, only corpus characters.
    let sample = |seed: &str| {
        let (code, out) = cht(
            &[
                "sample",
                "--checkpoint",
                full.to_str().unwrap(),
                "--prompt",
                "the ",
                "--tokens",
                "30",
                "--seed",
                seed,
            ],
            &[],
        );
        assert_eq!(code, 0, "{out}");
        out.lines()
            .filter(|l| !l.starts_with("device:"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let s1 = sample("1");
    assert!(s1.starts_with("the "), "{s1}");
    assert_eq!(s1, sample("1"));
    let (code, out) = cht(
        &[
            "sample",
            "--checkpoint",
            full.to_str().unwrap(),
            "--prompt",
            "@#",
        ],
        &[],
    );
    assert_ne!(code, 0);
    assert!(out.contains("not in the vocabulary"), "{out}");
}

#[test]
fn every_method_runs_a_few_steps() {
    let d = dir("methods");
    let text = corpus(&d);
    for method in ["fc", "set", "rigl", "mest", "gmp", "granet", "chts"] {
        let cfg = config(&d, &text, method, "");
        let out = d.join(method);
        let (code, log) = cht(
            &[
                "lm",
                "train",
                "--config",
                cfg.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
                "--set",
                "train.steps=12",
                "--set",
                "train.eval_every=12",
            ],
            &[],
        );
        assert_eq!(code, 0, "{method}: {log}");
        let m = metrics(&out);
        let ppl = m[0]["val_ppl"].as_f64().unwrap();
        assert!(ppl.is_finite() && ppl < 40.0, "{method}: {ppl}");
        if ["set", "rigl", "mest", "chts"].contains(&method) {
            // One validation at step 12, after the update at step 5 (T_end = 9): ITOP must count
            // the initial links and every regrown one, not only the pattern validation saw.
            let (itop, density) = (
                m[0]["itop"].as_f64().unwrap(),
                m[0]["density"].as_f64().unwrap(),
            );
            assert!(
                itop > density + 0.01,
                "{method}: ITOP {itop} at density {density}"
            );
        }
    }
}

#[test]
fn bad_inputs_give_one_clear_error_each() {
    let d = dir("bad");
    let text = corpus(&d);
    let run = |cfg: &Path, extra: &[&str]| {
        let mut args = vec!["lm", "train", "--config", cfg.to_str().unwrap()];
        let out = d.join("out");
        args.extend(["--out", out.to_str().unwrap()]);
        args.extend(extra);
        let (code, log) = cht(&args, &[]);
        assert_ne!(code, 0, "{log}");
        assert!(!log.contains("panicked"), "{log}");
        log
    };
    let cfg = config(&d, &text, "chts", "");
    let log = run(&cfg, &["--set", "data.corpus=/nonexistent/input.txt"]);
    assert!(
        log.contains("cannot read the corpus") && log.contains("data.corpus"),
        "{log}"
    );
    let empty = d.join("empty.txt");
    std::fs::write(&empty, "").unwrap();
    let log = run(
        &cfg,
        &["--set", &format!("data.corpus={}", empty.display())],
    );
    assert!(log.contains("tokens"), "{log}");
    let binary = d.join("binary.txt");
    std::fs::write(&binary, [0xffu8, 0xfe, 0x00, 0x41].repeat(100)).unwrap();
    let log = run(
        &cfg,
        &["--set", &format!("data.corpus={}", binary.display())],
    );
    assert!(log.contains("not UTF-8") && log.contains("bpe"), "{log}");
    let log = run(&cfg, &["--set", "model.seq=100000"]);
    assert!(log.contains("model.seq"), "{log}");
    let log = run(&cfg, &["--set", "train.batch=64"]);
    assert!(
        log.contains("validation part") && log.contains("train.batch"),
        "{log}"
    );
    let log = run(&cfg, &["--set", "model.heads=3"]);
    assert!(log.contains("model.d_model"), "{log}");
    let log = run(&cfg, &["--set", "dst.method=magic"]);
    assert!(log.contains("method"), "{log}");
    // A corrupt checkpoint, and an MLP checkpoint given to the language-model commands.
    let bad = d.join("badrun");
    std::fs::create_dir_all(&bad).unwrap();
    std::fs::write(bad.join("checkpoint.safetensors"), b"not a checkpoint").unwrap();
    let (code, log) = cht(&["lm", "train", "--resume", bad.to_str().unwrap()], &[]);
    assert_ne!(code, 0);
    assert!(log.contains("not a valid checkpoint"), "{log}");
    let (code, log) = cht(&["sample", "--checkpoint", bad.to_str().unwrap()], &[]);
    assert_ne!(code, 0);
    assert!(log.contains("not a valid checkpoint"), "{log}");
}

/// Byte-level BPE through the tokenizers library: trained once and cached next to the corpus,
/// embedded in the checkpoint (sampling needs no cache), resumed only with the same tokenizer,
/// and a user's `tokenizer.json` through `data.tokenizer = "file"`.
#[test]
fn bpe_is_cached_embedded_and_checked_on_resume() {
    let d = dir("bpe");
    let text = corpus(&d);
    let cfg = config(&d, &text, "set", "");
    let train = |out: &Path, extra: &[&str], env: &[(&str, &str)]| {
        let mut args = vec![
            "lm",
            "train",
            "--config",
            cfg.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--set",
            "data.tokenizer=bpe",
            "--set",
            "data.bpe_vocab=300",
            "--set",
            "train.steps=20",
        ];
        args.extend(extra);
        cht(&args, env)
    };
    let caches = || -> Vec<PathBuf> {
        std::fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.to_string_lossy().contains("corpus.txt.cht-tokenizer-"))
            .collect()
    };
    let first = d.join("first");
    let (code, log) = train(&first, &[], &[]);
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("tokenizer cached in"), "{log}");
    let cache = caches();
    assert_eq!(cache.len(), 1, "{cache:?}");
    let (code, log) = train(&d.join("second"), &[], &[]);
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("tokenizer from the cache"), "{log}");

    // Sampling reads the tokenizer from the checkpoint, not the cache.
    let user_json = d.join("tokenizer.json");
    std::fs::rename(&cache[0], &user_json).unwrap();
    let (code, out) = cht(
        &[
            "sample",
            "--checkpoint",
            first.to_str().unwrap(),
            "--prompt",
            "the rose",
            "--tokens",
            "10",
        ],
        &[],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("the rose"), "{out}");

    // A killed run resumes with the same tokenizer; a changed corpus is refused.
    let part = d.join("part");
    let (code, _) = train(&part, &[], &[("CHT_ABORT_AFTER_STEPS", "13")]);
    assert_ne!(code, 0);
    let (code, log) = cht(&["lm", "train", "--resume", part.to_str().unwrap()], &[]);
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("resuming"), "{log}");
    let (code, _) = train(&part, &[], &[("CHT_ABORT_AFTER_STEPS", "13")]);
    assert_ne!(code, 0);
    let original = std::fs::read_to_string(&text).unwrap();
    std::fs::write(&text, original.replace("rose", "lily")).unwrap();
    let (code, log) = cht(&["lm", "train", "--resume", part.to_str().unwrap()], &[]);
    assert_ne!(code, 0, "{log}");
    assert!(
        log.contains("no longer gives the tokenizer") && !log.contains("panicked"),
        "{log}"
    );
    std::fs::write(&text, &original).unwrap();

    // The cached tokenizer.json as a user's file: the same tokenizer; a corrupt one is an error.
    let file_args = [
        "--set",
        "data.tokenizer=file",
        "--set",
        &format!("data.tokenizer_file={}", user_json.display()),
    ];
    let (code, log) = train(&d.join("file"), &file_args, &[]);
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("vocabulary 300 (tokenizer "), "{log}");
    std::fs::write(&user_json, "{ not json").unwrap();
    let (code, log) = train(&d.join("corrupt"), &file_args, &[]);
    assert_ne!(code, 0, "{log}");
    assert!(
        log.contains("cannot use the tokenizer file") && !log.contains("panicked"),
        "{log}"
    );
    let (code, log) = train(&d.join("nofile"), &["--set", "data.tokenizer=file"], &[]);
    assert_ne!(code, 0, "{log}");
    assert!(log.contains("data.tokenizer_file"), "{log}");
}
