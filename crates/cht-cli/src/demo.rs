//! `cht demo`: the main job until the MNIST runner exists — a sparse MLP learning a generated
//! problem, with one submit per step and the loss read back every `--log-every` steps.

use std::time::Instant;

use anyhow::{Result, ensure};
use cht_gpu::{Device, SgdStep};
use cht_nn::synthetic::Blobs;
use cht_nn::{Mlp, MlpConfig};

#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// Training steps.
    #[arg(long, default_value_t = 600)]
    steps: u32,
    /// Samples per step.
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// Hidden neurons (two sparse hidden layers).
    #[arg(long, default_value_t = 1024)]
    hidden: usize,
    /// Density of the sparse layers.
    #[arg(long, default_value_t = 0.05)]
    density: f64,
    /// Learning rate.
    #[arg(long, default_value_t = 0.01)]
    lr: f32,
    /// Read the loss back every this many steps.
    #[arg(long, default_value_t = 100)]
    log_every: u32,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    seed: u32,
}

/// Trains the demo MLP on `device` for `a.steps` steps, printing the loss every `a.log_every`
/// steps. Errors on non-positive step counts or batch size, and on device errors.
pub fn run(device: &Device, a: &DemoArgs) -> Result<()> {
    ensure!(
        a.steps > 0 && a.batch > 0 && a.log_every > 0,
        "--steps, --batch and --log-every must be positive"
    );
    let (features, classes) = (64, 10);
    let mut config = MlpConfig::new(vec![features, a.hidden, a.hidden, classes], a.density);
    config.seed = a.seed;
    let mlp = Mlp::new(device, &config)?;
    let links: usize = mlp.layers.iter().map(|l| l.n_weights()).sum();
    outln!(
        "demo: MLP {:?}, hidden layers at {:.1}% density ({links} weights), batch {}, {} steps",
        config.sizes,
        a.density * 100.0,
        a.batch,
        a.steps
    );
    let data = Blobs::new(features, classes, 1.5, a.seed);
    let ws = mlp.workspace(device, a.batch);
    let sgd = SgdStep::new(a.lr, 0.9, 5e-4);
    let start = Instant::now();
    let mut first = None;
    let mut last = None;
    for step in 0..a.steps {
        let (x, y) = data.batch(step, a.batch);
        mlp.load_batch(device, &ws, &x, &y)?;
        mlp.train_step(device, &ws, Some(sgd))?;
        if (step + 1) % a.log_every == 0 || step + 1 == a.steps {
            let m = mlp.take_metrics(device, &ws)?;
            let rate = f64::from(step + 1) * a.batch as f64 / start.elapsed().as_secs_f64();
            outln!(
                "step {:>6}  loss {:.4}  train acc {:5.1}%  {:>8.0} samples/s",
                step + 1,
                m.loss,
                m.accuracy * 100.0,
                rate
            );
            first.get_or_insert(m.loss);
            last = Some(m.loss);
        }
    }
    if let (Some(f), Some(l)) = (first, last) {
        outln!(
            "loss {f:.4} → {l:.4} in {:.1} s on {}",
            start.elapsed().as_secs_f64(),
            device.name()
        );
    }
    Ok(())
}
