//! A generated, learnable classification problem for demos and end-to-end tests: each class is a
//! random centre in `features` dimensions; samples are the centre plus Gaussian noise.

use cht_sparse::rng::{Counter, RngKey, Stream};

/// Gaussian blobs.
#[derive(Clone, Debug)]
pub struct Blobs {
    features: usize,
    classes: usize,
    noise: f32,
    centres: Vec<f32>,
    seed: u32,
}

impl Blobs {
    /// `classes` centres drawn from N(0, 1) in `features` dimensions; `noise` is the per-feature
    /// standard deviation of samples around their centre.
    pub fn new(features: usize, classes: usize, noise: f32, seed: u32) -> Blobs {
        let mut rng = Counter::new(RngKey::new(seed, Stream::Synthetic, 0, 0));
        let centres = (0..features * classes).map(|_| rng.normal()).collect();
        Blobs {
            features,
            classes,
            noise,
            centres,
            seed,
        }
    }

    /// Batch number `index`: feature-major inputs `[features, batch]` and labels.
    pub fn batch(&self, index: u32, batch: usize) -> (Vec<f32>, Vec<u32>) {
        let mut rng = Counter::new(RngKey::new(self.seed, Stream::Synthetic, index + 1, 1));
        let labels: Vec<u32> = (0..batch).map(|_| rng.below(self.classes as u32)).collect();
        let mut x = vec![0.0; self.features * batch];
        for (b, &y) in labels.iter().enumerate() {
            for f in 0..self.features {
                x[f * batch + b] =
                    self.centres[y as usize * self.features + f] + self.noise * rng.normal();
            }
        }
        (x, labels)
    }
}
