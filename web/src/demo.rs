//! The browser demo's trainer: a small MLP on an MNIST subset with CHTs, SET or dense training.
//!
//! Platform independent (every readback is `async`), so the same code runs natively — where a
//! test pins its masks against the wasm build — and in the browser. The training step is the
//! native runner's: one submit per step, the optimizer skipped on topology-update steps, losses
//! read back only when asked.

use cht_dst::{DstConfig, Method, Updates};
use cht_gpu::{Device, SgdStep};
use cht_nn::{Metrics, SparseMlp, SparseMlpConfig, Workspace};
use cht_sparse::Mask;
use cht_sparse::rng::{Counter, RngKey, Stream};
use cht_sparse::schedule::TemperatureSchedule;

/// Side length of an MNIST image.
pub const SIDE: usize = 28;
/// Pixels per image.
pub const PIXELS: usize = SIDE * SIDE;
const MEAN: f32 = 0.1307;
const STD: f32 = 0.3081;

/// Training method of the demo.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DemoMethod {
    /// CHTs: soft removal, CH2-L3n link prediction with soft regrowth, chain removal.
    Chts,
    /// SET: magnitude removal, random regrowth.
    Set,
    /// Fully connected.
    Dense,
}

impl DemoMethod {
    /// Parses `chts`, `set` or `dense`.
    pub fn parse(s: &str) -> Result<DemoMethod, String> {
        match s {
            "chts" => Ok(DemoMethod::Chts),
            "set" => Ok(DemoMethod::Set),
            "dense" => Ok(DemoMethod::Dense),
            _ => Err(format!("unknown method {s:?} (chts, set or dense)")),
        }
    }
}

/// Soft-removal temperature schedules offered by the page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DemoTemperature {
    /// The paper: δ 0.5 → 0.9, T = 1/(1−δ) (T 2 → 10).
    Paper,
    /// The official MLP code: T 1 → 3.
    Old,
    /// The official LLM README: T 1 → 9.
    New,
}

impl DemoTemperature {
    /// Parses `paper`, `old` or `new`.
    pub fn parse(s: &str) -> Result<DemoTemperature, String> {
        match s {
            "paper" => Ok(DemoTemperature::Paper),
            "old" => Ok(DemoTemperature::Old),
            "new" => Ok(DemoTemperature::New),
            _ => Err(format!(
                "unknown temperature schedule {s:?} (paper, old or new)"
            )),
        }
    }

    fn schedule(self) -> TemperatureSchedule {
        match self {
            DemoTemperature::Paper => TemperatureSchedule::Paper,
            DemoTemperature::Old => TemperatureSchedule::OldLinear,
            DemoTemperature::New => TemperatureSchedule::NewLinear {
                start_t: 1.0,
                end_t: 9.0,
            },
        }
    }
}

/// Everything the page lets a user choose.
#[derive(Clone, Debug, PartialEq)]
pub struct DemoConfig {
    /// CHTs, SET or dense.
    pub method: DemoMethod,
    /// Neurons per hidden layer.
    pub hidden: usize,
    /// Hidden layers (all sparse; the classifier is dense).
    pub hidden_layers: usize,
    /// Density of the sparse layers.
    pub density: f64,
    /// Removal fraction ζ (cosine-annealed for CHTs, fixed for SET).
    pub zeta: f64,
    /// Optimizer steps between topology updates.
    pub update_every: u64,
    /// Soft-removal temperature schedule (CHTs).
    pub temperature: DemoTemperature,
    /// Planned epochs: sets `T_end` of the ζ and temperature schedules and the LR decay.
    pub epochs: u32,
    /// Samples per step.
    pub batch: usize,
    /// Initial learning rate (decays linearly to 1 % over 90 % of the epochs).
    pub lr: f32,
    /// Seed of every random draw.
    pub seed: u32,
}

impl Default for DemoConfig {
    fn default() -> DemoConfig {
        DemoConfig {
            method: DemoMethod::Chts,
            hidden: 256,
            hidden_layers: 2,
            density: 0.02,
            zeta: 0.3,
            update_every: 100,
            temperature: DemoTemperature::Paper,
            epochs: 20,
            batch: 32,
            lr: 0.025,
            seed: 0,
        }
    }
}

impl DemoConfig {
    /// Checks the user's values.
    pub fn validate(&self) -> Result<(), String> {
        let checks = [
            (
                self.hidden >= 1 && self.hidden <= 4096,
                "hidden must be 1..4096",
            ),
            (
                self.hidden_layers >= 1 && self.hidden_layers <= 4,
                "hidden layers must be 1..4",
            ),
            (
                self.density > 0.0 && self.density <= 1.0,
                "density must be in (0, 1]",
            ),
            ((0.0..=1.0).contains(&self.zeta), "ζ must be in [0, 1]"),
            (self.update_every >= 1, "update interval must be ≥ 1 step"),
            (self.epochs >= 1, "epochs must be ≥ 1"),
            (
                self.batch >= 1 && self.batch <= 1024,
                "batch must be 1..1024",
            ),
            (
                self.lr > 0.0 && self.lr < 10.0,
                "learning rate must be in (0, 10)",
            ),
        ];
        match checks.iter().find(|(ok, _)| !ok) {
            Some((_, msg)) => Err((*msg).to_owned()),
            None => Ok(()),
        }
    }

    /// The scheduler configuration of this demo run (`None` for dense training), for a run of
    /// `steps_per_epoch` steps per epoch.
    pub fn dst_config(&self, steps_per_epoch: u64) -> Option<DstConfig> {
        let method = match self.method {
            DemoMethod::Chts => Method::ChtsN,
            DemoMethod::Set => Method::Set,
            DemoMethod::Dense => return None,
        };
        let total = steps_per_epoch * u64::from(self.epochs);
        let updates = Updates {
            every: self.update_every,
            until: total,
        };
        let mut c = DstConfig::preset(method, self.density, updates, self.seed);
        if let cht_sparse::schedule::ZetaSchedule::Cosine { zeta, t_end } = &mut c.removal.zeta {
            // Adaptive ζ stops updating after 75 % of training, as the paper's MLP runs.
            *zeta = self.zeta;
            *t_end = total * 3 / 4;
            c.t_end = total * 3 / 4;
        } else if let cht_sparse::schedule::ZetaSchedule::Fixed { zeta } = &mut c.removal.zeta {
            *zeta = self.zeta;
        }
        c.removal.temperature = self.temperature.schedule();
        Some(c)
    }
}

/// An MNIST subset as written by `cht data web-subset`: raw uint8 pixels and labels.
#[derive(Clone, Debug)]
pub struct MnistSubset {
    train_x: Vec<u8>,
    train_y: Vec<u8>,
    test_x: Vec<u8>,
    test_y: Vec<u8>,
}

impl MnistSubset {
    /// Parses the file written by `cht data web-subset` with the one decoder of that format,
    /// [`cht_data::web_subset::decode`] (sizes in u64, so a crafted header cannot wrap 32-bit
    /// offsets here; every failure is an error, never a trap).
    pub fn parse(bytes: &[u8]) -> Result<MnistSubset, String> {
        let (train, test) = cht_data::web_subset::decode(bytes).map_err(|e| e.to_string())?;
        Ok(MnistSubset {
            train_x: train.images,
            train_y: train.labels,
            test_x: test.images,
            test_y: test.labels,
        })
    }

    /// A small synthetic stand-in (for tests): `n_train`/`n_test` images of noisy class stripes.
    pub fn synthetic(n_train: usize, n_test: usize, seed: u32) -> MnistSubset {
        let mut rng = Counter::new(RngKey::new(seed, Stream::Synthetic, 0, 0));
        let mut make = |n: usize| {
            let mut x = vec![0u8; n * PIXELS];
            let mut y = vec![0u8; n];
            for i in 0..n {
                let class = rng.below(10) as usize;
                y[i] = class as u8;
                for (p, v) in x[i * PIXELS..(i + 1) * PIXELS].iter_mut().enumerate() {
                    let stripe = (p / SIDE) * 10 / SIDE == class;
                    let noise = rng.below(96) as u8;
                    *v = if stripe { 160 + noise } else { noise };
                }
            }
            (x, y)
        };
        let (train_x, train_y) = make(n_train);
        let (test_x, test_y) = make(n_test);
        MnistSubset {
            train_x,
            train_y,
            test_x,
            test_y,
        }
    }

    /// Training images.
    pub fn train_len(&self) -> usize {
        self.train_y.len()
    }

    /// Test images.
    pub fn test_len(&self) -> usize {
        self.test_y.len()
    }
}

/// Normalises uint8 pixels into a feature-major batch (`out[p * batch + b]`).
fn fill_batch(images: &[u8], labels: &[u8], idx: &[u32], x: &mut [f32], y: &mut Vec<u32>) {
    let batch = idx.len();
    y.clear();
    for (b, &i) in idx.iter().enumerate() {
        let img = &images[i as usize * PIXELS..(i as usize + 1) * PIXELS];
        for (p, &v) in img.iter().enumerate() {
            x[p * batch + b] = (f32::from(v) / 255.0 - MEAN) / STD;
        }
        y.push(u32::from(labels[i as usize]));
    }
}

/// What a call to [`Trainer::train`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct TrainChunk {
    /// Topology updates among the steps.
    pub updates: u32,
    /// The run has reached its planned epochs.
    pub finished: bool,
}

/// A live demo run on one device.
#[derive(Debug)]
pub struct Trainer {
    device: Device,
    config: DemoConfig,
    data: MnistSubset,
    model: SparseMlp,
    ws: Workspace,
    /// Evaluation buffers: full batches, then the remainder of the test set if any.
    eval_ws: Vec<Workspace>,
    predict_ws: Workspace,
    steps_per_epoch: usize,
    /// Optimizer steps taken (update steps included).
    step: u64,
    order: Vec<u32>,
    x: Vec<f32>,
    y: Vec<u32>,
    /// Topology updates so far.
    updates: u32,
}

/// Test-set batch of the evaluation workspace.
const EVAL_BATCH: usize = 500;

impl Trainer {
    /// Builds the model and scheduler on `device`.
    pub fn new(device: Device, config: DemoConfig, data: MnistSubset) -> Result<Trainer, String> {
        config.validate()?;
        let steps_per_epoch = data.train_len() / config.batch;
        if steps_per_epoch == 0 {
            return Err(format!(
                "batch {} is larger than the {} training images",
                config.batch,
                data.train_len()
            ));
        }
        let e = |e: &dyn std::fmt::Display| e.to_string();
        let mut sizes = vec![PIXELS];
        sizes.extend(std::iter::repeat_n(config.hidden, config.hidden_layers));
        sizes.push(10);
        let dst = config
            .dst_config(steps_per_epoch as u64)
            .unwrap_or_else(|| {
                let updates = Updates { every: 1, until: 0 };
                DstConfig::preset(Method::Fc, 1.0, updates, config.seed)
            });
        let mut mlp = SparseMlpConfig::new(sizes, dst);
        mlp.seed = config.seed;
        let model = SparseMlp::new(&device, &mlp).map_err(|x| e(&x))?;
        let net = model.network();
        let ws = net.workspace(&device, config.batch);
        let eb = EVAL_BATCH.min(data.test_len());
        let mut eval_ws = vec![net.workspace(&device, eb)];
        if !data.test_len().is_multiple_of(eb) {
            eval_ws.push(net.workspace(&device, data.test_len() % eb));
        }
        let predict_ws = net.workspace(&device, 1);
        let mut t = Trainer {
            device,
            x: vec![0.0; PIXELS * config.batch],
            y: Vec::with_capacity(config.batch),
            config,
            data,
            model,
            ws,
            eval_ws,
            predict_ws,
            steps_per_epoch,
            step: 0,
            order: Vec::new(),
            updates: 0,
        };
        t.reshuffle();
        Ok(t)
    }

    /// The device in use.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The configuration.
    pub fn config(&self) -> &DemoConfig {
        &self.config
    }

    /// Optimizer steps so far.
    pub fn step(&self) -> u64 {
        self.step
    }

    /// Epochs completed (fractional).
    pub fn epoch(&self) -> f64 {
        self.step as f64 / self.steps_per_epoch as f64
    }

    /// Topology updates so far.
    pub fn updates(&self) -> u32 {
        self.updates
    }

    /// Whether the planned epochs are done.
    pub fn finished(&self) -> bool {
        self.step >= self.steps_per_epoch as u64 * u64::from(self.config.epochs)
    }

    fn reshuffle(&mut self) {
        let epoch = (self.step / self.steps_per_epoch as u64) as u32;
        let mut rng = Counter::new(RngKey::new(self.config.seed, Stream::Shuffle, epoch, 0));
        self.order = (0..self.data.train_len() as u32).collect();
        for i in (1..self.order.len()).rev() {
            let j = rng.below(i as u32 + 1) as usize;
            self.order.swap(i, j);
        }
    }

    fn lr(&self) -> f32 {
        let epoch = (self.step / self.steps_per_epoch as u64) as f64;
        let total = (f64::from(self.config.epochs) * 0.9).floor().max(1.0);
        let progress = (epoch / total).min(1.0);
        (f64::from(self.config.lr) * (1.0 - 0.99 * progress)) as f32
    }

    /// Records `steps` training steps (one submit each, no readback); stops early at the end of
    /// the run.
    pub fn train(&mut self, steps: u32) -> Result<TrainChunk, String> {
        let e = |e: &dyn std::fmt::Display| e.to_string();
        let mut chunk = TrainChunk::default();
        for _ in 0..steps {
            if self.finished() {
                break;
            }
            let b = self.config.batch;
            let s = (self.step % self.steps_per_epoch as u64) as usize;
            if s == 0 && self.step > 0 {
                self.reshuffle();
            }
            let idx = &self.order[s * b..(s + 1) * b];
            fill_batch(
                &self.data.train_x,
                &self.data.train_y,
                idx,
                &mut self.x,
                &mut self.y,
            );
            self.model
                .network()
                .load_batch(&self.device, &self.ws, &self.x, &self.y)
                .map_err(|x| e(&x))?;
            // Every ΔT steps a topology update replaces the optimizer step.
            let sgd = SgdStep::new(self.lr(), 0.9, 5e-4);
            let report = self
                .model
                .train_step(&self.device, &self.ws, sgd)
                .map_err(|x| e(&x))?;
            if report.is_some() {
                chunk.updates += 1;
                self.updates += 1;
            }
            self.step += 1;
        }
        chunk.finished = self.finished();
        Ok(chunk)
    }

    /// Training loss and accuracy accumulated since the last call (one readback).
    pub async fn take_metrics(&self) -> Result<Metrics, String> {
        self.model
            .network()
            .take_metrics_async(&self.device, &self.ws)
            .await
            .map_err(|e| e.to_string())
    }

    /// Test loss and accuracy over the whole test set (one submit per batch, one readback per
    /// workspace).
    pub async fn evaluate(&mut self) -> Result<Metrics, String> {
        let e = |e: &dyn std::fmt::Display| e.to_string();
        let n = self.data.test_len();
        let mut x = Vec::new();
        let mut y = Vec::new();
        let mut start = 0;
        while start < n {
            let ws = if n - start >= self.eval_ws[0].batch() {
                &self.eval_ws[0]
            } else {
                &self.eval_ws[1]
            };
            let b = ws.batch();
            let idx: Vec<u32> = (start as u32..(start + b) as u32).collect();
            x.resize(PIXELS * b, 0.0);
            fill_batch(&self.data.test_x, &self.data.test_y, &idx, &mut x, &mut y);
            let net = self.model.network();
            net.load_batch(&self.device, ws, &x, &y)
                .map_err(|x| e(&x))?;
            net.eval_step(&self.device, ws).map_err(|x| e(&x))?;
            start += b;
        }
        let (mut loss, mut correct) = (0.0, 0.0);
        for ws in &self.eval_ws {
            let m = self
                .model
                .network()
                .take_metrics_async(&self.device, ws)
                .await
                .map_err(|x| e(&x))?;
            loss += m.loss * m.samples as f64;
            correct += m.accuracy * m.samples as f64;
        }
        Ok(Metrics {
            loss: loss / n as f64,
            accuracy: correct / n as f64,
            samples: n as u64,
        })
    }

    /// The current masks of the sparse layers (empty for dense training; one readback per layer).
    pub async fn masks(&self) -> Result<Vec<Mask>, String> {
        self.model
            .masks_async(&self.device)
            .await
            .map_err(|e| e.to_string())
    }

    /// Reads the masks back, records them for ANP and ITOP, and returns them with
    /// `(anp, itop)` (`None` for dense training).
    pub async fn observe(&mut self) -> Result<(Vec<Mask>, Option<(f64, f64)>), String> {
        let masks = self
            .model
            .observe_async(&self.device)
            .await
            .map_err(|e| e.to_string())?;
        let rates = self
            .model
            .itop()
            .map(|itop| (self.model.anp().unwrap_or(1.0), itop));
        Ok((masks, rates))
    }

    /// Class probabilities of one image given as 784 intensities in `[0, 1]`.
    pub async fn predict(&mut self, pixels: &[f32]) -> Result<Vec<f32>, String> {
        if pixels.len() != PIXELS {
            return Err(format!(
                "an image has {PIXELS} pixels, got {}",
                pixels.len()
            ));
        }
        let e = |e: &dyn std::fmt::Display| e.to_string();
        let x: Vec<f32> = pixels
            .iter()
            .map(|&v| (v.clamp(0.0, 1.0) - MEAN) / STD)
            .collect();
        let net = self.model.network();
        net.load_batch(&self.device, &self.predict_ws, &x, &[0])
            .map_err(|x| e(&x))?;
        net.eval_step(&self.device, &self.predict_ws)
            .map_err(|x| e(&x))?;
        let logits = self
            .device
            .read_f32_async(self.predict_ws.logits())
            .await
            .map_err(|x| e(&x))?;
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let exp: Vec<f32> = logits.iter().map(|&z| (z - max).exp()).collect();
        let sum: f32 = exp.iter().sum();
        Ok(exp.iter().map(|v| v / sum).collect())
    }
}

/// The cross-platform determinism check of the tests: CHTs on a 784-48-48-10 MLP (seed 7) where
/// every step is a topology update — so no optimizer step runs and the masks depend only on the
/// seed — for 6 steps on synthetic data. Returns the fingerprints of the masks before and after.
/// The native tests (CPU twins, lavapipe) and the browser tests (WebGPU, wasm CPU) pin the same
/// "after" value.
pub async fn update_only_fingerprints(device: Device) -> Result<(u64, u64), String> {
    let config = DemoConfig {
        method: DemoMethod::Chts,
        hidden: 48,
        density: 0.1,
        update_every: 1,
        epochs: 1,
        batch: 16,
        seed: 7,
        ..DemoConfig::default()
    };
    let mut t = Trainer::new(device, config, MnistSubset::synthetic(320, 50, 1))?;
    let before = t.masks().await?;
    let chunk = t.train(6)?;
    if chunk.updates != 6 {
        return Err(format!(
            "expected 6 topology updates, got {}",
            chunk.updates
        ));
    }
    let after = t.masks().await?;
    if after.iter().zip(&before).any(|(a, b)| a.nnz() != b.nnz()) {
        return Err("CHTs must regrow exactly what it removes".into());
    }
    Ok((masks_fingerprint(&before), masks_fingerprint(&after)))
}

/// A trained run's fingerprint: the page's default CHTs configuration (784-256-256-10, 2 %
/// density, an update every 100 steps) trained for 250 steps on synthetic data, so two topology
/// updates act on trained weights. The CPU twins give the same bits natively and in wasm.
pub async fn trained_fingerprint(device: Device) -> Result<u64, String> {
    let mut t = Trainer::new(
        device,
        DemoConfig::default(),
        MnistSubset::synthetic(3200, 50, 4),
    )?;
    let chunk = t.train(250)?;
    if chunk.updates != 2 {
        return Err(format!(
            "expected 2 topology updates, got {}",
            chunk.updates
        ));
    }
    Ok(masks_fingerprint(&t.masks().await?))
}

/// FNV-1a over the masks' bits: a short fingerprint to compare runs across platforms.
pub fn masks_fingerprint(masks: &[Mask]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for m in masks {
        for r in 0..m.rows() {
            for c in 0..m.cols() {
                h ^= u64::from(m.get(r, c));
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
        }
    }
    h
}
