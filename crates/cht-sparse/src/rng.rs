//! Counter-based random numbers: every draw is a pure function of
//! `(seed, stream, step, layer, index)`, so GPU, CPU and browser produce the same bits in any order.
//!
//! The mixer is a 32-bit integer hash (xor-shift / multiply, "lowbias32" constants) applied once per key
//! field. Only 32-bit integer operations are used, so `shaders/rng.wgsl` implements it identically
//! without 64-bit or float tricks. Uniform floats take the top 24 bits, which f32 represents exactly.

/// Distinct random streams, so that e.g. initialisation and regrowth never share draws.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum Stream {
    /// Sparse topology initialisation.
    TopologyInit = 1,
    /// Weight initialisation.
    WeightInit = 2,
    /// Removal sampling.
    Removal = 3,
    /// Regrowth sampling.
    Regrowth = 4,
    /// Data shuffling.
    Shuffle = 5,
    /// Dropout.
    Dropout = 6,
    /// Generated data sets and benchmarks.
    Synthetic = 7,
}

/// The part of a counter that is fixed for a batch of draws; `index` varies per draw.
///
/// Draws are random access: the `i`-th draw does not depend on earlier ones, so any number of
/// threads (or GPU invocations) can each take their own indices.
///
/// ```rust
/// use cht_sparse::rng::{RngKey, Stream};
///
/// let key = RngKey::new(42, Stream::Regrowth, 7, 0);
/// // Same key and index, same bits; any other key field gives other bits.
/// assert_eq!(key.u32(3), RngKey::new(42, Stream::Regrowth, 7, 0).u32(3));
/// assert_ne!(key.u32(3), RngKey::new(42, Stream::Regrowth, 7, 1).u32(3));
/// let u = key.uniform(3);
/// assert!(u > 0.0 && u < 1.0);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RngKey {
    /// User seed.
    pub seed: u32,
    /// Which stream.
    pub stream: Stream,
    /// Training step or topology-update count.
    pub step: u32,
    /// Layer index.
    pub layer: u32,
}

impl RngKey {
    /// A key for `(seed, stream, step, layer)`.
    pub fn new(seed: u32, stream: Stream, step: u32, layer: u32) -> RngKey {
        RngKey {
            seed,
            stream,
            step,
            layer,
        }
    }

    /// The folded 32-bit key; `shaders/rng.wgsl` receives this value.
    pub fn folded(&self) -> u32 {
        let mut h = mix(self.seed.wrapping_add(0x9e37_79b9));
        h = mix(h ^ self.stream as u32);
        h = mix(h ^ self.step);
        mix(h ^ self.layer)
    }

    /// The `index`-th 32-bit draw.
    pub fn u32(&self, index: u32) -> u32 {
        draw_u32(self.folded(), index)
    }

    /// The `index`-th uniform draw in the open interval (0, 1).
    pub fn uniform(&self, index: u32) -> f32 {
        to_unit(self.u32(index))
    }
}

/// The `index`-th draw under a folded key; mirrors `rng_u32` in `shaders/rng.wgsl`.
pub fn draw_u32(folded_key: u32, index: u32) -> u32 {
    mix(folded_key ^ mix(index.wrapping_add(0x632b_e5ab)))
}

/// Maps 32 random bits to (0, 1): the top 24 bits plus one half, times 2^-24. Exact in f32.
pub fn to_unit(bits: u32) -> f32 {
    ((bits >> 8) as f32 + 0.5) * (1.0 / 16_777_216.0)
}

/// One round of the integer mixer.
pub fn mix(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x7feb_352d);
    h ^= h >> 15;
    h = h.wrapping_mul(0x846c_a68b);
    h ^= h >> 16;
    h
}

/// A sequential generator over one key, for CPU-only code that just needs "the next number".
///
/// The `i`-th call to [`Counter::next_u32`] returns `key.u32(i)`.
///
/// ```rust
/// use cht_sparse::rng::{Counter, RngKey, Stream};
///
/// let key = RngKey::new(1, Stream::Shuffle, 0, 0);
/// let mut rng = Counter::new(key);
/// assert_eq!(rng.next_u32(), key.u32(0));
/// assert_eq!(rng.next_u32(), key.u32(1));
/// let die = rng.below(6); // uniform in 0..6
/// assert!(die < 6);
/// assert!(rng.normal().is_finite());
/// ```
#[derive(Clone, Debug)]
pub struct Counter {
    key: u32,
    next: u32,
}

impl Counter {
    /// Starts at index 0 of `key`.
    pub fn new(key: RngKey) -> Counter {
        Counter {
            key: key.folded(),
            next: 0,
        }
    }

    /// Next 32 random bits.
    pub fn next_u32(&mut self) -> u32 {
        let v = draw_u32(self.key, self.next);
        self.next = self.next.wrapping_add(1);
        v
    }

    /// Next uniform in (0, 1).
    pub fn next_uniform(&mut self) -> f32 {
        to_unit(self.next_u32())
    }

    /// Uniform integer in `0..n` (n > 0) by Lemire's multiply-shift; the bias is below 2^-32 · n.
    pub fn below(&mut self, n: u32) -> u32 {
        ((u64::from(self.next_u32()) * u64::from(n)) >> 32) as u32
    }

    /// Standard normal by Box–Muller (two uniforms per draw).
    pub fn normal(&mut self) -> f32 {
        let u1 = self.next_uniform();
        let u2 = self.next_uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Computed independently (Python, same definition).
    const PINNED: [u32; 2] = [3_618_593_020, 255_320_170];

    #[test]
    fn draws_depend_on_every_key_field() {
        let base = RngKey::new(1, Stream::Regrowth, 2, 3);
        let variants = [
            RngKey { seed: 9, ..base },
            RngKey {
                stream: Stream::Removal,
                ..base
            },
            RngKey { step: 7, ..base },
            RngKey { layer: 0, ..base },
        ];
        for v in variants {
            assert_ne!(v.u32(0), base.u32(0), "{v:?}");
        }
        assert_ne!(base.u32(0), base.u32(1));
        assert_eq!(base.u32(5), base.u32(5));
    }

    #[test]
    fn uniform_is_in_open_interval_and_roughly_flat() {
        let key = RngKey::new(0, Stream::Synthetic, 0, 0);
        let mut buckets = [0u32; 10];
        for i in 0..100_000 {
            let u = key.uniform(i);
            assert!(u > 0.0 && u < 1.0);
            buckets[(u * 10.0) as usize] += 1;
        }
        for b in buckets {
            assert!((9_500..10_500).contains(&b), "{buckets:?}");
        }
    }

    #[test]
    fn known_value_pins_the_generator() {
        // Pinned so that a change to the mixer (which would desynchronise WGSL and Rust) is noticed.
        assert_eq!(mix(0), 0);
        let key = RngKey::new(42, Stream::Synthetic, 0, 0);
        assert_eq!([key.u32(0), key.u32(1)], PINNED);
    }
}
