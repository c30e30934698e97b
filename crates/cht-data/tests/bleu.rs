//! cht's BLEU against sacreBLEU's own numbers on the fixtures of `tests/bleu/` (written by
//! `scripts/bleu_fixtures.py` with PyPI's sacreBLEU): every tokenised line equal, every score,
//! precision and brevity penalty within 0.01 (in fact to rounding), the lengths exact.

use std::path::PathBuf;

use cht_data::bleu::{Bleu, BleuOptions, Smoothing, tokenize_13a};

fn fixture(name: &str) -> Vec<String> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/bleu")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    // Lines as the script wrote them: each ends with "\n", nothing else separates them.
    let mut lines: Vec<String> = text.split('\n').map(str::to_owned).collect();
    assert_eq!(
        lines.pop().as_deref(),
        Some(""),
        "{name} must end with a newline"
    );
    lines
}

fn expected() -> serde_json::Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/bleu/expected.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn tokenisation_equals_sacrebleu_13a_line_for_line() {
    let e = expected();
    let files = e["tokenized"].as_object().unwrap();
    assert_eq!(files.len(), 3);
    for (file, want) in files {
        let want = want.as_array().unwrap();
        let lines = fixture(file);
        assert_eq!(lines.len(), want.len(), "{file}");
        for (i, (line, w)) in lines.iter().zip(want).enumerate() {
            let w = w.as_str().unwrap();
            // sacreBLEU strips trailing whitespace before tokenising.
            let got = tokenize_13a(line.trim_end());
            assert_eq!(got, w, "{file} line {}: {line:?}", i + 1);
        }
    }
}

#[test]
fn corpus_bleu_equals_sacrebleu() {
    let e = expected();
    let cases = e["cases"].as_array().unwrap();
    assert!(cases.len() >= 9);
    for c in cases {
        let name = c["name"].as_str().unwrap();
        let hyps = fixture(c["hyp"].as_str().unwrap());
        let ref_files: Vec<Vec<String>> = c["refs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| fixture(r.as_str().unwrap()))
            .collect();
        // One list of references per hypothesis.
        let refs: Vec<Vec<&str>> = (0..hyps.len())
            .map(|i| ref_files.iter().map(|f| f[i].as_str()).collect())
            .collect();
        let value = c["smooth_value"].as_f64();
        let smoothing = match c["smooth_method"].as_str().unwrap_or("exp") {
            "exp" => Smoothing::Exp,
            "none" => Smoothing::None,
            "floor" => Smoothing::Floor(value.unwrap()),
            "add-k" => Smoothing::AddK(value.unwrap()),
            other => panic!("{other}"),
        };
        let options = BleuOptions {
            lowercase: c["lowercase"].as_bool().unwrap_or(false),
            smoothing,
        };
        let b = Bleu::corpus(&hyps, &refs, &options).unwrap();
        let close = |got: f64, want: &serde_json::Value, what: &str| {
            let want = want.as_f64().unwrap();
            assert!(
                (got - want).abs() < 1e-9 * want.abs().max(1.0),
                "{name}: {what} {got} against sacreBLEU's {want}"
            );
        };
        close(b.score, &c["score"], "score");
        close(b.bp, &c["bp"], "brevity penalty");
        for (n, p) in b.precisions.iter().enumerate() {
            close(
                *p,
                &c["precisions"][n],
                &format!("{}-gram precision", n + 1),
            );
        }
        assert_eq!(b.stats.sys_len, c["sys_len"].as_u64().unwrap(), "{name}");
        assert_eq!(b.stats.ref_len, c["ref_len"].as_u64().unwrap(), "{name}");
        assert_eq!(b.to_string(), c["line"].as_str().unwrap(), "{name}");
    }
}
