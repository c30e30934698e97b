//! Trains a sparse MLP with CHTs (the paper's MLP recipe: CSTI topology, soft removal, CH2-L3n
//! regrowth, ζ and temperature annealed until ¾ of training) on generated data, then prints the
//! test accuracy and the topology summary (links, density, ANP, ITOP per layer).
//!
//! ```text
//! cargo run --release --example train_mlp            # the GPU if there is one, else the CPU
//! CHT_BACKEND=cpu cargo run --release --example train_mlp
//! ```

use cht_train::prelude::*;
use cht_train::sparse::init::{Correlation, SampleLayout};
use cht_train::sparse::rng::{Counter, RngKey, Stream};

const FEATURES: usize = 64;
const CLASSES: usize = 4;
const BATCH: usize = 32;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Any adapter wgpu finds (CHT_BACKEND=gpu|cpu|auto, CHT_ADAPTER=<name> choose).
    let device = Device::open_blocking(&DeviceOptions::from_env()?)?;
    println!("device: {}", device.name());

    // Noisy class prototypes, sample-major (`x[s * FEATURES + f]`).
    let (train_x, train_y) = generate(2048, 1);
    let (test_x, test_y) = generate(512, 2);
    let steps_per_epoch = (train_y.len() / BATCH) as u64;

    // The paper's recipe for CHTs-n at 5 % density, 4 epochs; CSTI reads the input correlation.
    let dst = MlpRecipe::new(Method::ChtsN, 0.05)
        .epochs(4)
        .steps_per_epoch(steps_per_epoch)
        .csti_dim(2)
        .build();
    let mut config = SparseMlpConfig::new(vec![FEATURES, 128, 128, CLASSES], dst);
    config.correlation = Some(Correlation::from_samples(
        &train_x,
        train_y.len(),
        FEATURES,
        SampleLayout::SampleMajor,
    )?);
    let mut model = SparseMlp::new(&device, &config)?;

    let ws = model.network().workspace(&device, BATCH);
    let mut x = vec![0f32; FEATURES * BATCH];
    for epoch in 0..4 {
        let lr = 0.05 * (1.0 - 0.2 * epoch as f32);
        for s in 0..steps_per_epoch as usize {
            let labels = batch(&train_x, &train_y, s * BATCH, &mut x);
            model.network().load_batch(&device, &ws, &x, &labels)?;
            // One submit; every ΔT steps the topology update replaces the SGD step.
            if let Some(report) = model.train_step(&device, &ws, SgdStep::new(lr, 0.9, 5e-4))? {
                let removed: usize = report.layers.iter().map(|l| l.removed).sum();
                println!("  step {}: {removed} links rewired", report.step);
            }
        }
        let m = model.network().take_metrics(&device, &ws)?;
        println!("epoch {}: train loss {:.4}", epoch + 1, m.loss);
    }

    // Evaluation: forward only, one submit per batch, one readback at the end.
    for start in (0..test_y.len()).step_by(BATCH) {
        let labels = batch(&test_x, &test_y, start, &mut x);
        model.network().load_batch(&device, &ws, &x, &labels)?;
        model.network().eval_step(&device, &ws)?;
    }
    let m = model.network().take_metrics(&device, &ws)?;
    println!("test accuracy {:.1} %", m.accuracy * 100.0);
    print!("{}", model.summary());
    if m.accuracy < 0.9 {
        return Err(format!("accuracy {:.3} is too low for this easy task", m.accuracy).into());
    }
    Ok(())
}

/// `n` samples of 4 classes: a class lights up its own quarter of the features, plus noise.
fn generate(n: usize, seed: u32) -> (Vec<f32>, Vec<u32>) {
    let mut rng = Counter::new(RngKey::new(seed, Stream::Synthetic, 0, 0));
    let mut x = vec![0f32; n * FEATURES];
    let mut y = vec![0u32; n];
    for s in 0..n {
        y[s] = rng.below(CLASSES as u32);
        for f in 0..FEATURES {
            let on = f * CLASSES / FEATURES == y[s] as usize;
            x[s * FEATURES + f] = f32::from(u8::from(on)) + 0.5 * rng.normal();
        }
    }
    (x, y)
}

/// Copies `BATCH` samples from `start` into the feature-major batch `out[f * BATCH + b]`.
fn batch(x: &[f32], y: &[u32], start: usize, out: &mut [f32]) -> Vec<u32> {
    let n = y.len();
    (0..BATCH)
        .map(|b| {
            let s = (start + b) % n;
            for f in 0..FEATURES {
                out[f * BATCH + b] = x[s * FEATURES + f];
            }
            y[s]
        })
        .collect()
}
