//! Fuzz tests of the mask readers (`cargo test --release`; longer runs: `scripts/fuzz.sh`): every
//! mutated input gives `Ok` or `Err`, never a panic, a hang or an allocation sized by a header
//! claim. The regression corpora under `tests/fuzz-corpus/` hold one malformed input per failure
//! class found so far; each must be rejected.

use std::path::{Path, PathBuf};

use cht_fuzz::{CountingAlloc, Fuzz, replay};
use cht_sparse::mask_io::{format_npy, format_text, parse_npy, parse_text};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

fn corpus(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz-corpus")
        .join(name)
}

/// A reader may allocate a small multiple of its input (the mask takes one byte per element of at
/// least one byte; text masks one byte per entry of at least two bytes; growth doubling) plus a
/// constant for error messages, never anything a header claims.
fn assert_alloc_within(input_len: usize, factor: usize) {
    let bound = input_len.saturating_mul(factor).saturating_add(64 << 10);
    let largest = CountingAlloc::largest();
    assert!(
        largest <= bound,
        "largest allocation {largest} bytes for a {input_len}-byte input (bound {bound})"
    );
}

fn npy_seeds() -> Vec<Vec<u8>> {
    let mut seeds = vec![
        format_npy(2, 3, &[1.0, 0.0, 1.0, 0.0, 0.0, 1.0]),
        format_npy(1, 1, &[0.0]),
        format_npy(3, 2, &[1.0; 6]),
    ];
    for (version, descr, fortran, data) in [
        (1u8, "|b1", "True", vec![1u8, 0, 1, 1]),
        (
            2,
            "<i8",
            "False",
            [1u64, 0, 0, 1]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect(),
        ),
        (
            3,
            ">u2",
            "True",
            [1u16, 1, 0, 1]
                .iter()
                .flat_map(|v| v.to_be_bytes())
                .collect(),
        ),
        (
            1,
            "<f8",
            "False",
            [0f64, 1.0, 1.0, 0.0]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect(),
        ),
    ] {
        let header =
            format!("{{'descr': '{descr}', 'fortran_order': {fortran}, 'shape': (2, 2), }}\n");
        let mut f = b"\x93NUMPY".to_vec();
        f.extend([version, 0]);
        if version == 1 {
            f.extend((header.len() as u16).to_le_bytes());
        } else {
            f.extend((header.len() as u32).to_le_bytes());
        }
        f.extend(header.as_bytes());
        f.extend(data);
        seeds.push(f);
    }
    seeds
}

#[test]
fn npy_masks_never_panic() {
    for seed in npy_seeds() {
        parse_npy(&seed).unwrap();
    }
    Fuzz::new("npy-mask")
        .seeds(npy_seeds())
        .max_alloc(4 << 20)
        .run(|bytes| {
            let _ = parse_npy(bytes);
            assert_alloc_within(bytes.len(), 4);
        });
}

#[test]
fn text_masks_never_panic() {
    let seeds = vec![
        b"1 0 1\n0 1 1\n\n".to_vec(),
        b"1.0 0.0\n0 1".to_vec(),
        format_text(
            3,
            4,
            &[1.0, 0.0, 0.0, 1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0],
        )
        .into_bytes(),
        b"0\t1\r\n1\t0\r\n".to_vec(),
    ];
    Fuzz::new("text-mask")
        .seeds(seeds)
        .max_alloc(4 << 20)
        .run(|bytes| {
            if let Ok(text) = std::str::from_utf8(bytes) {
                let _ = parse_text(text);
            }
            assert_alloc_within(bytes.len(), 4);
        });
}

#[test]
fn npy_regressions_are_rejected() {
    replay(&corpus("npy"), |bytes| {
        assert!(parse_npy(bytes).is_err(), "accepted");
        assert_alloc_within(bytes.len(), 4);
    });
}

#[test]
fn text_regressions_are_rejected() {
    replay(&corpus("text"), |bytes| {
        let text = String::from_utf8_lossy(bytes);
        assert!(parse_text(&text).is_err(), "accepted");
        assert_alloc_within(bytes.len(), 4);
    });
}
