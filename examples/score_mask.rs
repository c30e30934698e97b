//! Scores every missing link of a sparse layer with Cannistraci-Hebb link prediction — on the CPU
//! reference and on the device — and prints the likeliest new links.
//!
//! ```text
//! cargo run --release --example score_mask                 # a random 300 × 200 layer at 5 %
//! cargo run --release --example score_mask -- mask.npy     # a mask of yours (.npy or text)
//! ```

use cht_train::gpu::DType;
use cht_train::prelude::*;
use cht_train::sparse::mask_io;
use cht_train::sparse::predict::{Predictor, scores};
use cht_train::sparse::rng::{RngKey, Stream};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mask = match std::env::args().nth(1) {
        // `.npy` or text (told apart by the NumPy magic), a regular file of at most 1 GiB.
        Some(path) => mask_io::read_mask(path.as_ref())?,
        None => {
            let key = RngKey::new(7, Stream::TopologyInit, 0, 0);
            CsrPattern::random(300, 200, 0.05, key)?.to_mask()
        }
    };
    let (rows, cols) = (mask.rows(), mask.cols());
    println!("{rows} × {cols} layer, {} links", mask.nnz());
    let pattern = CsrPattern::from_mask(&mask);

    // CPU reference: CH2-L3n, the node-based predictor of CHTs (existing links score 0).
    let reference = scores(&pattern, Predictor::Ch2L3n);

    // The same on the device: upload the pattern, score into a `[rows, cols]` tensor, read back.
    let device = Device::open_blocking(&DeviceOptions::from_env()?)?;
    let on_device = device.upload_pattern("example.pattern", &pattern, pattern.nnz())?;
    let scratch = device.link_scratch("example.predict", rows, cols);
    let out = device.zeros("example.scores", rows, cols, DType::F32);
    device.link_scores(&on_device, Predictor::Ch2L3n, &scratch, &out)?;
    device.submit()?;
    let device_scores = device.read_f32(&out)?;
    let max_diff = reference
        .iter()
        .zip(&device_scores)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    println!(
        "{}: largest difference to the CPU reference {max_diff:.2e}",
        device.name()
    );

    let mut order: Vec<usize> = (0..rows * cols).collect();
    order.sort_by(|&a, &b| reference[b].total_cmp(&reference[a]));
    println!("likeliest new links (out, in): score");
    for &p in order.iter().take(5) {
        println!("  ({}, {}): {:.4}", p / cols, p % cols, reference[p]);
    }
    if max_diff > 1e-4 * reference.iter().fold(1f32, |m, &s| m.max(s.abs())) {
        return Err("device and CPU scores differ".into());
    }
    Ok(())
}
