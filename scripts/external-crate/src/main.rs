//! A user's first program, written against the published API of `cht-train` only (see
//! Cargo.toml): a sparse MLP trained with CHTs (the paper's recipe: CSTI start from the inputs'
//! correlation, soft removal, CH2-L3n regrowth) on generated data with the CPU backend, through
//! several topology updates; it fails unless the loss falls and the links moved (ITOP grows).

use cht_train::nn::Workspace;
use cht_train::nn::synthetic::Blobs;
use cht_train::prelude::*;
use cht_train::sparse::init::{Correlation, SampleLayout};

const FEATURES: usize = 32;
const CLASSES: usize = 4;
const BATCH: usize = 64;
const STEPS: u64 = 40;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The CPU twins of the kernels: always available, natively and in the browser.
    let device = Device::cpu();
    let data = Blobs::new(FEATURES, CLASSES, 1.0, 1);

    // CSTI reads the correlation of the input features (sample-major samples here).
    let (x0, _) = data.batch(0, 256);
    let sample_major: Vec<f32> = (0..256 * FEATURES)
        .map(|i| x0[(i % FEATURES) * 256 + i / FEATURES])
        .collect();
    let correlation =
        Correlation::from_samples(&sample_major, 256, FEATURES, SampleLayout::SampleMajor)?;

    // 4 "epochs" of 10 steps, an update every epoch before ¾ of training (step 30): at 10 and 20.
    let dst = MlpRecipe::new(Method::ChtsN, 0.2)
        .epochs(4)
        .steps_per_epoch(STEPS / 4)
        .csti_dim(2) // hidden / inputs = 64 / 32
        .build();
    let mut config = SparseMlpConfig::new(vec![FEATURES, 64, 64, CLASSES], dst);
    config.correlation = Some(correlation);
    let mut model = SparseMlp::new(&device, &config)?;

    let ws = model.network().workspace(&device, BATCH);
    let sgd = SgdStep::new(0.05, 0.9, 0.0);
    let mut updates = 0;
    let mut losses = Vec::new();
    for step in 0..STEPS {
        let (x, y) = data.batch(step as u32 + 1, BATCH);
        model.network().load_batch(&device, &ws, &x, &y)?;
        if model.train_step(&device, &ws, sgd)?.is_some() {
            updates += 1;
        }
        if step % 10 == 9
            && let Some(loss) = read_loss(&model, &device, &ws)?
        {
            println!("steps {:>2}-{:>2}  loss {loss:.4}", step - 9, step);
            losses.push(loss);
        }
    }
    print!("{}", model.summary());
    if updates != 2 {
        return Err(format!("{updates} topology updates, expected 2").into());
    }
    if let (Some(&first), Some(&last)) = (losses.first(), losses.last()) {
        if last.is_nan() || last >= first {
            return Err(format!("the loss did not decrease: {first:.4} -> {last:.4}").into());
        }
        let itop = model.itop().unwrap_or(0.0);
        if itop <= 0.2 {
            return Err(format!("ITOP {itop:.3}: the links did not move").into());
        }
        println!("ok: CHTs from the packaged crates, loss {first:.4} -> {last:.4}, ITOP {itop:.3}");
    }
    Ok(())
}

/// The mean loss since the last read. Native only: reading back blocks; in the browser, await
/// `Mlp::take_metrics_async` (and `DstModel::observe_async` for ANP/ITOP) instead.
#[cfg(not(target_arch = "wasm32"))]
fn read_loss(model: &SparseMlp, device: &Device, ws: &Workspace) -> cht_train::Result<Option<f64>> {
    Ok(Some(model.network().take_metrics(device, ws)?.loss))
}

#[cfg(target_arch = "wasm32")]
fn read_loss(_: &SparseMlp, _: &Device, _: &Workspace) -> cht_train::Result<Option<f64>> {
    Ok(None)
}
