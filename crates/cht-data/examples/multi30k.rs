//! Multi30k as a translation run sees it: the three splits, a byte-level BPE per language learnt
//! on the training part, sentence lengths in subword ids, and the padded batches of the paper's
//! 1 024-token budget.
//!
//! `cargo run --release -p cht-data --example multi30k -- DIR [VOCAB]` with DIR holding the
//! release tarballs (training.tar.gz, validation.tar.gz, mmt16_task1_test.tar.gz).

use std::time::Instant;

use cht_data::HfTokenizer;
use cht_data::Multi30k;
use cht_data::bleu::{Bleu, BleuOptions};
use cht_data::translation::{BatchOptions, EncodedPairs, Specials, batches};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = args.next().ok_or("usage: multi30k DIR [VOCAB]")?;
    let vocab: usize = args.next().map_or(Ok(8000), |v| v.parse())?;
    let m = Multi30k::load(dir.as_ref(), "en", "de")?;
    println!(
        "pairs: train {}, valid {}, test {}",
        m.train.len(),
        m.valid.len(),
        m.test.len()
    );
    let t = Instant::now();
    let text = |lines: &[String]| lines.join("\n").into_bytes();
    let en = HfTokenizer::train_byte_level_bpe(&text(&m.train.source), vocab)?;
    let de = HfTokenizer::train_byte_level_bpe(&text(&m.train.target), vocab)?;
    println!(
        "byte-level BPE, vocabulary {vocab} requested: en {} ids, de {} ids ({:.1} s)",
        en.vocab_size(),
        de.vocab_size(),
        t.elapsed().as_secs_f64()
    );
    let enc = |s: &str| en.encode(s);
    let dec = |s: &str| de.encode(s);
    let train = EncodedPairs::encode(&m.train, enc, dec, 256)?;
    let lens = |v: &[Vec<u32>]| {
        let total: usize = v.iter().map(Vec::len).sum();
        let max = v.iter().map(Vec::len).max().unwrap_or(0);
        (total, max)
    };
    let (src_total, src_max) = lens(&train.source);
    let (tgt_total, tgt_max) = lens(&train.target);
    println!(
        "train: {} pairs kept; en {src_total} ids (longest {src_max}), de {tgt_total} ids \
         (longest {tgt_max})",
        train.len()
    );
    let specials = Specials::after(de.vocab_size().max(en.vocab_size()));
    let b = batches(&train, specials, &BatchOptions::default(), 0);
    let padded: usize = b
        .iter()
        .map(|b| b.rows * b.source_len.max(b.target_len))
        .sum();
    let targets: usize = b.iter().map(|b| b.target_tokens()).sum();
    println!(
        "1024-token batches: {} per epoch ({:.1} sentences each; padded, they fill {:.1} % of the budget); \
         5000 steps = {:.1} epochs",
        b.len(),
        train.len() as f64 / b.len() as f64,
        100.0 * padded as f64 / (b.len() * 1024) as f64,
        5000.0 / b.len() as f64
    );
    println!(
        "target tokens per batch: {:.0}",
        targets as f64 / b.len() as f64
    );
    // Decoding the encoded references gives the text back, so BLEU against itself is 100.
    let refs: Vec<Vec<String>> = m.test.target.iter().map(|t| vec![t.clone()]).collect();
    let round: Vec<String> = m
        .test
        .target
        .iter()
        .map(|t| de.decode(&de.encode(t)?))
        .collect::<Result<_, _>>()?;
    let bleu = Bleu::corpus(&round, &refs, &BleuOptions::default())?;
    println!("test references through the de tokenizer and back: {bleu}");
    Ok(())
}
