//! Fuzz tests of the data readers (`cargo test --release`; longer runs: `scripts/fuzz.sh`): IDX
//! files (plain and gzip), text corpora (character level and BPE), tokenizers from JSON (then
//! encoding and decoding with them) and the web subset. Every mutated input gives `Ok` or `Err`,
//! never a panic, a hang or an allocation sized by a header claim. The regression corpora under
//! `tests/fuzz-corpus/<reader>/` hold one malformed input per failure class found so far; each must
//! be rejected.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use cht_data::idx::{self, IdxKind};
use cht_data::web_subset;
use cht_data::{Corpus, CorpusOptions, Dataset, DatasetKind, Split, Tokenizer, TokenizerKind};
use cht_fuzz::{CountingAlloc, Fuzz, replay};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

fn corpus(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz-corpus")
        .join(name)
}

/// The largest single allocation of this case is at most `factor` bytes per input byte plus
/// `extra`: readers allocate from the bytes present, never from a size a header claims.
fn assert_alloc_within(input_len: usize, factor: usize, extra: usize) {
    let bound = input_len.saturating_mul(factor).saturating_add(extra);
    let largest = CountingAlloc::largest();
    assert!(
        largest <= bound,
        "largest allocation {largest} bytes for a {input_len}-byte input (bound {bound})"
    );
}

const TEXT: &str = "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\n\
                    Speak, speak.\n\nFirst Citizen:\nYou are all resolved rather to die than to \
                    famish?\n\nAll:\nResolved. resolved.\n";

/// The limit given to the IDX parser: 1 MiB, file and decompressed content.
const IDX_LIMIT: u64 = 1 << 20;

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

#[test]
fn idx_files_never_panic() {
    let images: Vec<u8> = (0..2 * 4 * 3).map(|i| (i * 37 % 256) as u8).collect();
    let images = idx::encode(&[2, 4, 3], &images).unwrap();
    let labels = idx::encode(&[5], &[3, 1, 4, 1, 5]).unwrap();
    let seeds = vec![
        gzip(&images),
        gzip(&labels),
        images,
        labels,
        idx::encode(&[0, 28, 28], &[]).unwrap(),
    ];
    Fuzz::new("idx")
        .seeds(seeds)
        .max_alloc(8 << 20)
        .run(|bytes| {
            for kind in [IdxKind::Images, IdxKind::Labels] {
                if let Ok(a) = idx::parse(Path::new("fuzz"), bytes.to_vec(), kind, IDX_LIMIT) {
                    let n: u128 = a.dims.iter().map(|&d| u128::from(d)).product();
                    assert_eq!(a.data.len() as u128, n);
                }
            }
            // The input is copied; gzip output grows up to twice the limit while decompressing.
            assert_alloc_within(bytes.len(), 2, 2 * IDX_LIMIT as usize + (64 << 10));
        });
}

#[test]
fn idx_regressions_are_rejected() {
    replay(&corpus("idx"), |bytes| {
        for kind in [IdxKind::Images, IdxKind::Labels] {
            assert!(idx::parse(Path::new("fuzz"), bytes.to_vec(), kind, IDX_LIMIT).is_err());
        }
    });
}

fn options(tokenizer: TokenizerKind) -> CorpusOptions {
    CorpusOptions {
        tokenizer,
        bpe_vocab: 300,
        tokenizer_file: None,
        cache_dir: None,
        val_fraction: 0.2,
        seq: 4,
    }
}

#[test]
fn char_corpora_never_panic() {
    let seeds = vec![
        TEXT.as_bytes().to_vec(),
        "naïve café ünïcode — ∑ 😀\n".repeat(3).into_bytes(),
    ];
    Fuzz::new("corpus-char")
        .seeds(seeds)
        .max_alloc(64 << 20)
        .run(|bytes| {
            if let Ok(c) =
                Corpus::from_bytes(Path::new("fuzz"), bytes, &options(TokenizerKind::Char))
            {
                let mut all = c.train.clone();
                all.extend(&c.val);
                assert_eq!(c.tokenizer.decode(&all).unwrap().as_bytes(), bytes);
            }
            // Characters and token ids take 4 bytes each, vectors grow by doubling.
            assert_alloc_within(bytes.len(), 32, 64 << 10);
        });
}

/// BPE training is quadratic in the word length, so inputs are cut to 2 KiB.
const BPE_INPUT: usize = 2 << 10;

#[test]
fn bpe_corpora_never_panic() {
    let seeds = vec![
        TEXT.as_bytes().to_vec(),
        b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa bbbb abab abab\xff\xfe".to_vec(),
    ];
    Fuzz::new("corpus-bpe")
        .seeds(seeds)
        .max_alloc(64 << 20)
        .run(|bytes| {
            let bytes = bytes.get(..BPE_INPUT).unwrap_or(bytes);
            if let Ok(c) =
                Corpus::from_bytes(Path::new("fuzz"), bytes, &options(TokenizerKind::Bpe))
            {
                assert!(c.tokenizer.validate().is_ok());
                let mut all = c.train.clone();
                all.extend(&c.val);
                let text = c.tokenizer.decode(&all).unwrap();
                assert_eq!(text, String::from_utf8_lossy(bytes));
            }
            // The tokenizers library's fixed structures (the pre-tokenizer's compiled regex, the
            // trainer's tables) take up to about 1 MiB whatever the input.
            assert_alloc_within(bytes.len(), 64, 4 << 20);
        });
}

fn tokenizer_seeds() -> Vec<Vec<u8>> {
    let char_level = Tokenizer::char_level(TEXT).unwrap();
    let bpe = Tokenizer::train_bpe(TEXT.repeat(4).as_bytes(), 300).unwrap();
    assert!(bpe.vocab_size() > 256);
    vec![
        serde_json::to_vec(&char_level).unwrap(),
        serde_json::to_vec(&bpe).unwrap(),
        br#"{"Bpe":{"merges":[[104,105],[256,33],[257,257]]}}"#.to_vec(),
    ]
}

/// Decoding a few ids of a valid tokenizer yields at most `MAX_TOKEN_BYTES` per id.
const DECODED_IDS: usize = 4;

fn check_tokenizer(bytes: &[u8]) {
    let Ok(tok) = serde_json::from_slice::<Tokenizer>(bytes) else {
        return;
    };
    tok.validate().unwrap();
    let vocab = tok.vocab_size();
    for text in [TEXT, "Zebra! 12 µs", ""] {
        if let Ok(ids) = tok.encode(text) {
            assert!(ids.iter().all(|&t| (t as usize) < vocab));
            assert_eq!(tok.decode(&ids).unwrap(), text);
        }
    }
    let last = vocab as u32;
    let ids: Vec<u32> = [0, last / 2, last.saturating_sub(1), last]
        .into_iter()
        .take(DECODED_IDS)
        .collect();
    for &t in &ids {
        assert_eq!(tok.decode(&[t]).is_ok(), (t as usize) < vocab, "token {t}");
    }
}

#[test]
fn tokenizers_never_panic() {
    Fuzz::new("tokenizer-json")
        .seeds(tokenizer_seeds())
        .max_alloc(64 << 20)
        .run(|bytes| {
            check_tokenizer(bytes);
            // Most mutations break the JSON; the same bytes read as a merge table (pairs of u16)
            // and as a character list reach the validation and the decoder far more often.
            let merges: Vec<(u32, u32)> = bytes
                .chunks_exact(4)
                .map(|c| {
                    let id = |i: usize| u32::from(u16::from_le_bytes([c[i], c[i + 1]]) % 512);
                    (id(0), id(2))
                })
                .collect();
            check_tokenizer(&serde_json::to_vec(&Tokenizer::Bpe { merges }).unwrap());
            let chars: Vec<char> = String::from_utf8_lossy(bytes).chars().collect();
            check_tokenizer(&serde_json::to_vec(&Tokenizer::Char { chars }).unwrap());
            // JSON lists take at least 2 bytes per char or merge (the lists built here up to 16
            // bytes per input byte); each decoded id at most MAX_TOKEN_BYTES (twice for the
            // lossy string).
            assert_alloc_within(
                bytes.len(),
                64,
                2 * cht_data::text::MAX_TOKEN_BYTES + (64 << 10),
            );
        });
}

#[test]
fn tokenizer_regressions_are_rejected() {
    replay(&corpus("tokenizer"), |bytes| {
        assert!(
            serde_json::from_slice::<Tokenizer>(bytes).is_err(),
            "accepted"
        );
    });
}

fn tiny(split: Split, n: usize) -> Dataset {
    Dataset {
        name: format!("mnist-{}", split.name()),
        kind: DatasetKind::Mnist,
        split,
        images: (0..n * 784).map(|k| (k * 13 % 256) as u8).collect(),
        labels: (0..n).map(|i| (i % 10) as u8).collect(),
        n,
        rows: 28,
        cols: 28,
        classes: 10,
    }
}

#[test]
fn web_subsets_never_panic() {
    let seeds = vec![
        web_subset::encode(&tiny(Split::Train, 2), &tiny(Split::Test, 1)).unwrap(),
        web_subset::encode(&tiny(Split::Train, 1), &tiny(Split::Test, 1)).unwrap(),
    ];
    Fuzz::new("web-subset")
        .seeds(seeds)
        .max_alloc(8 << 20)
        .run(|bytes| {
            if let Ok((train, test)) = web_subset::decode(bytes) {
                assert_eq!(web_subset::encode(&train, &test).unwrap(), bytes);
            }
            // The decoded splits copy the input once; encoding it again once more.
            assert_alloc_within(bytes.len(), 2, 64 << 10);
        });
}

#[test]
fn web_subset_regressions_are_rejected() {
    replay(&corpus("web-subset"), |bytes| {
        assert!(web_subset::decode(bytes).is_err(), "accepted");
    });
}

/// A chain of 65 280 merges, each adding one byte to the previous token, is valid and decodes
/// without recursion (a recursive decoder overflows the stack here).
#[test]
fn a_deep_valid_merge_chain_decodes() {
    let mut merges = vec![(97u32, 97u32)];
    merges.extend((0..65_279u32).map(|i| (256 + i, 98)));
    let json = serde_json::to_string(&Tokenizer::Bpe { merges }).unwrap();
    let tok: Tokenizer = serde_json::from_str(&json).unwrap();
    assert_eq!(tok.vocab_size(), 65_536);
    let text = tok.decode(&[65_535]).unwrap();
    assert_eq!(text.len(), 65_281);
    assert!(text.starts_with("aab") && text.ends_with("bbb"));
    // One merge more is over the vocabulary limit.
    let mut merges = vec![(97u32, 97u32)];
    merges.extend((0..65_280u32).map(|i| (256 + i, 98)));
    let json = serde_json::to_string(&Tokenizer::Bpe { merges }).unwrap();
    assert!(serde_json::from_str::<Tokenizer>(&json).is_err());
}
