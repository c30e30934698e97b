//! Multi30k from release-shaped tarballs made here (AppleDouble members, `./` prefixes, the blank
//! last line of train and val), from extracted files, and every way it can be wrong; plus the real
//! release where it is on this machine (`CHT_MULTI30K_DIR`, or the team's shared data folder).

use std::path::{Path, PathBuf};

use cht_data::{Multi30k, TranslationError};

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("cht-multi30k-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A gzipped tarball at `path` holding `members` (name, bytes).
fn tarball(path: &Path, members: &[(&str, &[u8])]) {
    let gz = flate2::write::GzEncoder::new(
        std::fs::File::create(path).unwrap(),
        flate2::Compression::fast(),
    );
    let mut b = tar::Builder::new(gz);
    for (name, bytes) in members {
        let mut h = tar::Header::new_gnu();
        h.set_size(bytes.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, name, *bytes).unwrap();
    }
    b.into_inner().unwrap().finish().unwrap();
}

/// The three release tarballs with `n` made-up pairs per split.
fn release(d: &Path, n: usize) {
    let side = |split: &str, lang: &str, blank: bool| {
        let mut t: String = (0..n).map(|i| format!("{split} {lang} {i}\n")).collect();
        if blank {
            t.push('\n');
        }
        t.into_bytes()
    };
    tarball(
        &d.join("training.tar.gz"),
        &[
            ("train.de", &side("train", "de", true)),
            ("train.en", &side("train", "en", true)),
        ],
    );
    tarball(
        &d.join("validation.tar.gz"),
        &[
            ("val.de", &side("val", "de", true)),
            ("val.en", &side("val", "en", true)),
        ],
    );
    tarball(
        &d.join("mmt16_task1_test.tar.gz"),
        &[
            ("./._test.de", b"\x00\x05\x16\x07 resource fork"),
            ("./test.de", &side("test", "de", false)),
            ("./._test.en", b"\x00\x05\x16\x07"),
            ("./test.en", &side("test", "en", false)),
        ],
    );
}

#[test]
fn release_tarballs_load_in_either_direction() {
    let d = dir("release");
    release(&d, 7);
    let m = Multi30k::load(&d, "en", "de").unwrap();
    for (split, p) in [("train", &m.train), ("val", &m.valid), ("test", &m.test)] {
        assert_eq!(p.len(), 7, "{split}");
        assert_eq!(p.source[3], format!("{split} en 3"));
        assert_eq!(p.target[6], format!("{split} de 6"));
    }
    let back = Multi30k::load(&d, "de", "en").unwrap();
    assert_eq!(back.test.source, m.test.target);
}

#[test]
fn extracted_files_come_before_the_tarball() {
    let d = dir("extracted");
    release(&d, 3);
    std::fs::write(d.join("test2016.en"), "one\r\ntwo\n").unwrap();
    std::fs::write(d.join("test2016.de"), "eins\r\nzwei\n").unwrap();
    let m = Multi30k::load(&d, "en", "de").unwrap();
    assert_eq!(m.test.source, ["one", "two"]);
    assert_eq!(m.test.target, ["eins", "zwei"]);
    assert_eq!(m.train.len(), 3);
}

#[test]
fn bad_data_is_one_clear_error() {
    let missing = Multi30k::load(Path::new("/nonexistent/multi30k"), "en", "de").unwrap_err();
    assert!(
        matches!(missing, TranslationError::MissingDir { .. }),
        "{missing}"
    );

    let d = dir("bad");
    let e = Multi30k::load(&d, "en", "de").unwrap_err();
    assert!(
        e.to_string()
            .contains("train.en and training.tar.gz holding it"),
        "{e}"
    );

    release(&d, 4);
    let e = Multi30k::load(&d, "en", "xx").unwrap_err();
    assert!(
        matches!(e, TranslationError::MissingFile { ref lang, .. } if lang == "xx"),
        "{e}"
    );

    // Sides of different lengths.
    std::fs::write(d.join("val.en"), "a\nb\nc\n").unwrap();
    std::fs::write(d.join("val.de"), "a\nb\n").unwrap();
    let e = Multi30k::load(&d, "en", "de").unwrap_err();
    assert_eq!(
        e.to_string(),
        "valid: 3 lines in the en file but 2 in the de file; a parallel corpus has one line per \
         sentence on both sides"
    );

    // Not UTF-8, named with its line.
    std::fs::write(d.join("val.de"), b"a\nb\xfe\nc\n").unwrap();
    let e = Multi30k::load(&d, "en", "de").unwrap_err();
    assert!(
        e.to_string().ends_with("val.de: line 2 is not UTF-8 text"),
        "{e}"
    );

    // Empty split.
    std::fs::write(d.join("val.en"), "\n").unwrap();
    std::fs::write(d.join("val.de"), "").unwrap();
    let e = Multi30k::load(&d, "en", "de").unwrap_err();
    assert!(e.to_string().starts_with("valid: no sentences in"), "{e}");

    // A corrupt tarball.
    std::fs::remove_file(d.join("val.en")).unwrap();
    std::fs::remove_file(d.join("val.de")).unwrap();
    std::fs::write(
        d.join("validation.tar.gz"),
        b"\x1f\x8b\x08\x00 not really gzip",
    )
    .unwrap();
    let e = Multi30k::load(&d, "en", "de").unwrap_err();
    assert!(e.to_string().contains("validation.tar.gz"), "{e}");

    // A folder where a file should be.
    std::fs::remove_file(d.join("validation.tar.gz")).unwrap();
    std::fs::create_dir(d.join("val.en")).unwrap();
    let e = Multi30k::load(&d, "en", "de").unwrap_err();
    assert!(matches!(e, TranslationError::MissingFile { .. }), "{e}");
}

/// The real release: 29 000 / 1 014 / 1 000 pairs (spec datasets.md), where it is on this machine.
#[test]
fn the_real_release_has_the_published_sizes() {
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/multi30k");
    let d = std::env::var_os("CHT_MULTI30K_DIR").map_or(shared, PathBuf::from);
    if !d.join("training.tar.gz").is_file() {
        eprintln!(
            "skipped: no Multi30k release at {} (set CHT_MULTI30K_DIR)",
            d.display()
        );
        return;
    }
    let m = Multi30k::load(&d, "en", "de").unwrap();
    assert_eq!(
        (m.train.len(), m.valid.len(), m.test.len()),
        (29_000, 1_014, 1_000)
    );
    assert!(
        m.train.source[0].starts_with("Two young, White males"),
        "{}",
        m.train.source[0]
    );
    assert!(m.test.target.iter().all(|s| !s.is_empty()));
}
