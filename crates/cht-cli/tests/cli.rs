//! The `cht` binary end to end: `score` output and its one-line errors (exit code 2), and the
//! browser demo's data file from `data web-subset`.

use std::path::PathBuf;
use std::process::Command;

use cht_data::mnist::Compression;
use cht_data::{Dataset, DatasetKind, MnistLike, Split};

fn cht(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_cht"))
        .args(args)
        .env("CHT_BACKEND", "cpu")
        .output()
        .expect("run cht");
    let text = |b: Vec<u8>| String::from_utf8(b).unwrap();
    (
        out.status.code().unwrap_or(-1),
        text(out.stdout),
        text(out.stderr),
    )
}

fn temp(name: &str, contents: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cht-cli-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

#[test]
fn score_prints_the_spec_vector_for_mask_b() {
    let mask = temp("b.txt", b"1 1 0 0\n1 0 1 0\n0 1 1 1\n");
    let (code, out, _) = cht(&[
        "score",
        "--method",
        "ch2-l3n",
        "--mask",
        mask.to_str().unwrap(),
    ]);
    assert_eq!(code, 0);
    assert_eq!(out, "0 0 7 3\n0 7 0 3\n8 0 0 0\n");
    // .npy in, .npy out, round trip through the parser.
    let npy = temp("out.npy", b"");
    let (code, _, _) = cht(&[
        "score",
        "--method",
        "ch3-l3n",
        "--mask",
        mask.to_str().unwrap(),
        "--output",
        npy.to_str().unwrap(),
    ]);
    assert_eq!(code, 0);
    let bytes = std::fs::read(&npy).unwrap();
    assert!(bytes.starts_with(b"\x93NUMPY"));
    let floats: Vec<f32> = bytes[bytes.len() - 48..]
        .chunks(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(floats, [0., 0., 3.5, 1.5, 0., 3.5, 0., 1.5, 4., 0., 0., 0.]);
}

#[test]
fn bad_mask_files_give_one_line_errors_and_exit_code_2() {
    let cases: [(&str, &[u8], &str); 5] = [
        ("ragged.txt", b"1 0\n1\n", "ragged"),
        ("values.txt", b"1 2\n", "not 0 or 1"),
        ("empty.txt", b"", "empty"),
        ("bad.npy", b"\x93NUMPY garbage", ".npy"),
        ("scores.npy", b"", "not 0 or 1"),
    ];
    for (name, contents, needle) in cases {
        let contents = if name == "scores.npy" {
            // A float .npy whose values are not 0/1.
            let mut f = b"\x93NUMPY\x01\x00".to_vec();
            let header = "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2), }";
            f.extend((header.len() as u16).to_le_bytes());
            f.extend(header.as_bytes());
            f.extend(0.5f32.to_le_bytes());
            f.extend(1.0f32.to_le_bytes());
            f
        } else {
            contents.to_vec()
        };
        let path = temp(name, &contents);
        let (code, out, err) = cht(&[
            "score",
            "--method",
            "ch3-l3p",
            "--mask",
            path.to_str().unwrap(),
        ]);
        assert_eq!(code, 2, "{name}: {err}");
        assert!(out.is_empty(), "{name}: printed scores for a bad file");
        assert_eq!(err.trim_end().lines().count(), 1, "{name}: {err}");
        assert!(err.contains(needle), "{name}: {err}");
    }
    let (code, _, err) = cht(&[
        "score",
        "--method",
        "ch3-l3p",
        "--mask",
        "/nonexistent/mask.txt",
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("reading mask"), "{err}");
}

/// A small MNIST stand-in whose pixels and labels depend on the sample index and the split.
fn tiny_mnist(split: Split, n: usize) -> Dataset {
    let salt = if split == Split::Train { 0 } else { 5 };
    Dataset {
        name: format!("mnist-{}", split.name()),
        kind: DatasetKind::Mnist,
        split,
        images: (0..n * 784)
            .map(|k| ((k / 784 * 7 + k % 784 + salt) % 256) as u8)
            .collect(),
        labels: (0..n).map(|i| ((i * 3 + salt) % 10) as u8).collect(),
        n,
        rows: 28,
        cols: 28,
        classes: 10,
    }
}

#[test]
fn web_subset_writes_the_first_images_and_refuses_more_than_there_are() {
    let root = std::env::temp_dir().join(format!("cht-cli-web-subset-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let data = root.join("data");
    let (train, test) = (tiny_mnist(Split::Train, 40), tiny_mnist(Split::Test, 12));
    MnistLike::write_dir(&data.join("mnist"), &train, &test, Compression::Gzip).unwrap();
    let out = root.join("www/data/subset.bin");
    let args = |n_train: &str, n_test: &str| {
        [
            "data",
            "web-subset",
            "--data-dir",
            data.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--train",
            n_train,
            "--test",
            n_test,
        ]
        .map(str::to_owned)
    };
    let run = |a: [String; 10]| cht(&a.iter().map(String::as_str).collect::<Vec<_>>());
    let (code, stdout, stderr) = run(args("25", "7"));
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(
        stdout.contains("subset.bin") && stdout.contains("25 train + 7 test"),
        "{stdout}"
    );
    let size = 24 + 32 * (1 + 784);
    assert!(stdout.contains(&format!("{size} bytes")), "{stdout}");
    let (got_train, got_test) = cht_data::web_subset::read(&out).unwrap();
    assert_eq!((got_train, got_test), (train.subset(25), test.subset(7)));
    // More images than the data set holds: one error line, exit code 2, the file is kept.
    let (code, _, stderr) = run(args("41", "7"));
    assert_eq!(code, 2);
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("only 40"), "{stderr}");
    assert_eq!(std::fs::metadata(&out).unwrap().len(), size as u64);
    let _ = std::fs::remove_dir_all(&root);
}
