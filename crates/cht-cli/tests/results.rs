//! `cht results` on two tiny real runs (issue #21): the table is built from what `cht train`
//! writes — the mean ± standard error over the seeds, the paper's row beside it, the machine —
//! and `--into` rewrites only the marked part of a Markdown file.

use std::path::Path;

mod common;

use common::{cht, data_dir, write_config};

fn summary(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap()
}

#[test]
fn the_table_is_built_from_run_folders() {
    let root = common::dir("results-test", "table");
    let config = write_config(&root, &data_dir(&root), "");
    let runs = root.join("runs");
    // Two seeds of one method, named as scripts/repro_mlp.sh names them.
    let mut accs = Vec::new();
    for seed in [0, 1] {
        let out = runs.join(format!("mnist-chts-n-d0.05-s{seed}"));
        let seed_set = format!("train.seed={seed}");
        let (code, log) = cht(
            &[
                "train",
                "--config",
                config.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
                "--set",
                "train.epochs=1",
                "--set",
                &seed_set,
            ],
            &[],
        );
        assert_eq!(code, 0, "{log}");
        let s = summary(&out);
        assert_eq!(s["provenance"]["date"].as_str().unwrap().len(), 10, "{s}");
        assert!(s["provenance"]["host"].is_string(), "{s}");
        accs.push((
            s["final_test_acc"].as_f64().unwrap() * 100.0,
            s["best_test_acc"].as_f64().unwrap() * 100.0,
        ));
    }
    // An unfinished run beside them is skipped, not an error.
    std::fs::create_dir_all(runs.join("mnist-set-d0.05-s0")).unwrap();

    let (code, out) = cht(&["results", runs.to_str().unwrap()], &[]);
    assert_eq!(code, 0, "{out}");
    let row = out
        .lines()
        .find(|l| l.starts_with("| mnist | chts-n |"))
        .unwrap_or_else(|| panic!("no chts-n row in\n{out}"));
    let cells: Vec<&str> = row.split('|').map(str::trim).collect();
    // | mnist | chts-n | 0.05 | 1 | 0,1 | final | best | paper | diff | ANP | s | machine |
    assert_eq!(
        &cells[1..6],
        ["mnist", "chts-n", "0.05", "1", "0,1"],
        "{row}"
    );
    let mean_se = |a: f64, b: f64| {
        let m = (a + b) / 2.0;
        // Sample sd of two values is |a − b|/√2; over √2 that is |a − b|/2.
        format!("{m:.2}±{:.2}", (a - b).abs() / 2.0)
    };
    assert_eq!(cells[6], mean_se(accs[0].0, accs[1].0), "{row}");
    assert_eq!(cells[7], mean_se(accs[0].1, accs[1].1), "{row}");
    assert_eq!(cells[8], "98.76±0.05 [27%]", "{row}");
    assert_eq!(
        cells[9],
        format!("{:+.2}", (accs[0].1 + accs[1].1) / 2.0 - 98.76),
        "{row}"
    );
    assert!(cells[12].starts_with("CPU (1 thread) on "), "{row}");
    assert!(out.contains("skipping"), "{out}");

    // --into replaces the marked block and nothing else.
    let md = root.join("RESULTS.md");
    std::fs::write(
        &md,
        "# Results\n<!-- cht results: begin -->\nold table\n<!-- cht results: end -->\ntext\n",
    )
    .unwrap();
    let (code, log) = cht(
        &[
            "results",
            runs.to_str().unwrap(),
            "--into",
            md.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(code, 0, "{log}");
    let text = std::fs::read_to_string(&md).unwrap();
    assert!(
        text.starts_with("# Results\n<!-- cht results: begin -->\n| data set |"),
        "{text}"
    );
    assert!(text.contains(row), "{text}");
    assert!(
        text.ends_with("\n<!-- cht results: end -->\ntext\n"),
        "{text}"
    );
    assert!(!text.contains("old table"), "{text}");

    // A second copy of a seed is refused, naming both folders.
    let copy = root.join("copy");
    std::fs::create_dir_all(copy.join("mnist-chts-n-d0.05-s0")).unwrap();
    std::fs::copy(
        runs.join("mnist-chts-n-d0.05-s0/summary.json"),
        copy.join("mnist-chts-n-d0.05-s0/summary.json"),
    )
    .unwrap();
    let (code, log) = cht(
        &["results", runs.to_str().unwrap(), copy.to_str().unwrap()],
        &[],
    );
    assert_eq!(code, 2, "{log}");
    assert!(
        log.contains("two runs of mnist chts-n with seed 0"),
        "{log}"
    );
}
