//! A training loop of your own around the scheduler: a hand-tuned DST configuration (RigL-style
//! gradient regrowth with a custom ζ), a cosine learning rate, the topology observed every epoch
//! (ANP, ITOP, per-layer density), masked-dense execution above 20 % density, and the final
//! masks written as `.npy` files.
//!
//! ```text
//! cargo run --release --example custom_loop -- [output-dir]
//! ```

use cht_train::dst::ChainRemoval;
use cht_train::prelude::*;
use cht_train::sparse::mask_io;
use cht_train::sparse::rng::{Counter, RngKey, Stream};
use cht_train::sparse::schedule::ZetaSchedule;

const FEATURES: usize = 32;
const CLASSES: usize = 3;
const BATCH: usize = 16;
const STEPS: u64 = 300;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out_dir = std::env::args().nth(1).map(std::path::PathBuf::from);
    let device = Device::open_blocking(&DeviceOptions::from_env()?)?;

    // A preset is the starting point; every field is plain data to adjust.
    let updates = Updates {
        every: 25,
        until: STEPS * 3 / 4,
    };
    let mut dst = DstConfig::preset(Method::RigL, 0.1, updates, 3);
    dst.removal.zeta = ZetaSchedule::Cosine {
        zeta: 0.5,
        t_end: updates.until,
    };
    dst.chain_removal = ChainRemoval::Sequential; // percolate dead neurons, as CHT does
    let mut model = SparseMlp::new(
        &device,
        &SparseMlpConfig::new(vec![FEATURES, 64, CLASSES], dst),
    )?;
    // Layers denser than 20 % run as masked dense GEMMs, the rest as CSR (the update decides).
    model.set_execution(&device, ExecutionPolicy::with_crossover(0.2))?;

    let ws = model.network().workspace(&device, BATCH);
    let mut rng = Counter::new(RngKey::new(5, Stream::Synthetic, 0, 0));
    let mut x = vec![0f32; FEATURES * BATCH];
    for step in 0..STEPS {
        let labels = sample(&mut rng, &mut x);
        model.network().load_batch(&device, &ws, &x, &labels)?;
        if model.next_step_is_update() {
            println!("step {}: topology update", step + 1);
        }
        let progress = step as f32 / STEPS as f32;
        let lr = 0.002 + 0.048 * 0.5 * (1.0 + (std::f32::consts::PI * progress).cos());
        model.train_step(&device, &ws, SgdStep::new(lr, 0.9, 1e-4))?;
        if (step + 1) % 100 == 0 {
            let m = model.network().take_metrics(&device, &ws)?;
            model.observe(&device)?; // reads the masks back once: ANP, ITOP, densities
            println!(
                "step {}: loss {:.4}, accuracy {:.2}, densities {:?}, ANP {:?}, ITOP {:.3}",
                step + 1,
                m.loss,
                m.accuracy,
                model.densities(),
                model.anp(),
                model.itop().unwrap_or(1.0),
            );
        }
    }
    if let Some(dir) = out_dir {
        std::fs::create_dir_all(&dir)?;
        for (l, mask) in model.masks(&device)?.iter().enumerate() {
            let values: Vec<f32> = (0..mask.rows() * mask.cols())
                .map(|p| f32::from(u8::from(mask.get(p / mask.cols(), p % mask.cols()))))
                .collect();
            let path = dir.join(format!("layer{l}.npy"));
            std::fs::write(
                &path,
                mask_io::format_npy(mask.rows(), mask.cols(), &values),
            )?;
            println!("wrote {}", path.display());
        }
    }
    Ok(())
}

/// A batch of a 3-class problem: the class sets the sign pattern of the features.
fn sample(rng: &mut Counter, x: &mut [f32]) -> Vec<u32> {
    (0..BATCH)
        .map(|b| {
            let class = rng.below(CLASSES as u32);
            for f in 0..FEATURES {
                let sign = if (f + class as usize).is_multiple_of(CLASSES) {
                    1.0
                } else {
                    -0.5
                };
                x[f * BATCH + b] = sign + 0.3 * rng.normal();
            }
            class
        })
        .collect()
}
