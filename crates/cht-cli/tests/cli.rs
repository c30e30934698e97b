//! The `cht` binary end to end: `score` output and its one-line errors (exit code 2), the
//! browser demo's data file from `data web-subset`, and `data fetch` from a local mirror.

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

/// Started by an MPI launcher as one of several ranks, a `cht` built without the `mpi` feature
/// refuses (N copies would train N identical models into one folder) and says how to rebuild;
/// one rank (`mpirun -n 1`) is just a process.
#[cfg(not(feature = "mpi"))]
#[test]
fn several_ranks_without_the_mpi_feature_are_refused() {
    let run = |size: &str, rank: &str| {
        Command::new(env!("CARGO_BIN_EXE_cht"))
            .args(["info"])
            .env("CHT_BACKEND", "cpu")
            .env("OMPI_COMM_WORLD_SIZE", size)
            .env("OMPI_COMM_WORLD_RANK", rank)
            .output()
            .expect("run cht")
    };
    let out = run("2", "1");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("built without the `mpi` feature"), "{err}");
    assert!(err.contains("--features mpi"), "{err}");
    assert_eq!(run("1", "0").status.code(), Some(0));
}

/// A Fashion-MNIST stand-in with the published per-class counts and first labels (all-zero
/// images), so that it passes the fetch's verification.
fn fashion_stand_in(split: Split) -> Dataset {
    let kind = DatasetKind::FashionMnist;
    let mut labels: Vec<u8> = kind.first_labels(split).map_or(Vec::new(), |f| f.to_vec());
    for (class, &count) in kind.class_counts(split).iter().enumerate() {
        let have = labels.iter().filter(|&&l| usize::from(l) == class).count();
        labels.extend(std::iter::repeat_n(class as u8, count - have));
    }
    let n = labels.len();
    Dataset {
        name: format!("fashion-mnist-{}", split.name()),
        kind,
        split,
        images: vec![0; n * 784],
        labels,
        n,
        rows: 28,
        cols: 28,
        classes: 10,
    }
}

/// Serves the files of `dir` over HTTP on 127.0.0.1 (GET, whole files, one request per
/// connection) until the process ends; returns the base URL and the log of requested paths.
fn serve_dir(dir: PathBuf) -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}/", listener.local_addr().unwrap());
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log2 = log.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            let _ = reader.read_line(&mut line);
            let path = line.split_whitespace().nth(1).unwrap_or("/").to_owned();
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).unwrap_or(0) == 0 || header == "\r\n" {
                    break;
                }
            }
            log2.lock().unwrap().push(path.clone());
            let response = match std::fs::read(dir.join(path.trim_start_matches('/'))) {
                Ok(body) => {
                    let mut r = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    )
                    .into_bytes();
                    r.extend(body);
                    r
                }
                Err(_) => {
                    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                        .to_vec()
                }
            };
            let _ = stream.write_all(&response);
        }
    });
    (base, log)
}

#[test]
fn data_fetch_downloads_from_a_local_mirror_and_verifies() {
    let root = std::env::temp_dir().join(format!("cht-cli-fetch-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let served = root.join("served");
    let (train, test) = (
        fashion_stand_in(Split::Train),
        fashion_stand_in(Split::Test),
    );
    MnistLike::write_dir(&served, &train, &test, Compression::Gzip).unwrap();
    let names = [
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    ];
    let md5s: Vec<String> = names
        .iter()
        .map(|n| {
            let digest = md5::compute(std::fs::read(served.join(n)).unwrap());
            format!("{n}={digest:x}")
        })
        .collect();
    let (base, log) = serve_dir(served.clone());
    let data = root.join("data");
    let fetch = |md5: Option<&str>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_cht"));
        cmd.args([
            "data",
            "fetch",
            "fashion-mnist",
            "--mirrors-only",
            "--data-dir",
        ])
        .arg(&data)
        .args([
            "--mirror",
            "http://127.0.0.1:1/nothing-here/",
            "--mirror",
            &base,
        ])
        .env_remove("CHT_DATA_MIRRORS")
        .env_remove("CHT_DATA_MD5");
        if let Some(md5) = md5 {
            cmd.env("CHT_DATA_MD5", md5);
        }
        let out = cmd.output().expect("run cht");
        let text = |b: Vec<u8>| String::from_utf8(b).unwrap();
        (out.status.code(), text(out.stdout), text(out.stderr))
    };
    // With the published md5s, the stand-in files are refused as corrupted: nothing is kept.
    let (code, _, stderr) = fetch(None);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("no mirror delivered train-images-idx3-ubyte.gz"),
        "{stderr}"
    );
    assert!(
        stderr.contains("expected 8d4fb7e6c68d591d4c3dfef9ec88bf0d (corrupted download)"),
        "{stderr}"
    );
    assert!(
        !data
            .join("fashion-mnist/train-images-idx3-ubyte.gz")
            .exists()
    );
    // With their own md5s they are taken, verified and loadable.
    let (code, stdout, stderr) = fetch(Some(&md5s.join(",")));
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(
        stdout.trim(),
        data.join("fashion-mnist").display().to_string()
    );
    assert!(
        stderr.contains("fashion-mnist: verified (train 60000 samples"),
        "{stderr}"
    );
    for n in names {
        assert_eq!(
            std::fs::read(data.join("fashion-mnist").join(n)).unwrap(),
            std::fs::read(served.join(n)).unwrap()
        );
    }
    let (got_train, got_test) = MnistLike::load(&data, DatasetKind::FashionMnist).unwrap();
    assert_eq!((got_train.n, got_test.n), (60_000, 10_000));
    // Again: already there, no request.
    let requests = log.lock().unwrap().len();
    let (code, _, stderr) = fetch(Some(&md5s.join(",")));
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("already holds the verified files"),
        "{stderr}"
    );
    assert_eq!(log.lock().unwrap().len(), requests);
    let _ = std::fs::remove_dir_all(&root);
}
