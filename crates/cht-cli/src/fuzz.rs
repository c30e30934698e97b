//! Fuzz tests of the runner's readers (`cargo test --release`; longer runs: `scripts/fuzz.sh`):
//! MLP and language-model configurations (TOML, with what the runners build from an accepted one:
//! the scheduler's configuration and the scheduler itself), checkpoints (the safetensors bytes,
//! then the configuration inside), and scheduler states from checkpoints (checked against the
//! scheduler the run would build). Every mutated input gives `Ok` or `Err`, never a panic, a hang
//! or an allocation out of proportion to the input. The regression corpora under
//! `tests/fuzz-corpus/<reader>/` hold inputs that once failed.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use cht_dst::DstScheduler;
use cht_fuzz::{CountingAlloc, Fuzz};

use crate::lm::config::LmRunConfig;
use crate::run::config_of_checkpoint;
use crate::train::checkpoint::{Checkpoint, FORMAT};
use crate::train::config::RunConfig;

/// Counts the inputs a reader accepted, printed after the run: mutations that stay valid are what
/// reach the code past the parser.
#[derive(Default)]
struct Accepted(AtomicU64);

impl Accepted {
    fn count(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    fn report(&self, name: &str) {
        println!(
            "fuzz {name}: {} inputs accepted",
            self.0.load(Ordering::Relaxed)
        );
    }
}

fn corpus(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz-corpus")
        .join(name)
}

/// Every configuration shipped in `configs/` whose name matches `lm`.
fn configs(lm: bool) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
    let mut out: Vec<Vec<u8>> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("lm-") == lm)
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    out.sort();
    out
}

/// Allocations are bounded by the input: TOML and JSON trees, the scheduler's ITOP records of
/// the fixed shapes below (a few KiB).
fn bounded(input: &[u8]) {
    let bound = input.len() * 64 + (4 << 20);
    let largest = CountingAlloc::largest();
    assert!(
        largest <= bound,
        "largest allocation {largest} bytes for a {}-byte input",
        input.len()
    );
}

/// The MLP shapes the scheduler checks run against (a small paper-like chain).
const MLP_SHAPES: [(usize, usize); 3] = [(40, 30), (40, 40), (40, 40)];

/// What the MLP runner does with an accepted configuration before it touches data or device.
fn use_mlp_config(c: &RunConfig) {
    for steps_per_epoch in [1, 60, 1875] {
        let dst = c.dst_config(steps_per_epoch);
        dst.validate().expect("validate() accepted it");
        if c.dst.method != crate::train::config::MethodName::Fc {
            let _ = DstScheduler::new(dst, &MLP_SHAPES);
        }
    }
}

#[test]
fn mlp_configurations_never_panic() {
    let accepted = Accepted::default();
    let check = |bytes: &[u8]| {
        let text = String::from_utf8_lossy(bytes);
        if let Ok(c) = RunConfig::parse(&text, "fuzz", &[]) {
            use_mlp_config(&c);
            accepted.count();
        }
        bounded(bytes);
    };
    let fuzz = Fuzz::new("mlp-config").seeds(configs(false));
    fuzz.replay(&corpus("mlp-config"), check);
    fuzz.run(check);
    accepted.report("mlp-config");
}

#[test]
fn lm_configurations_never_panic() {
    let accepted = Accepted::default();
    let check = |bytes: &[u8]| {
        let text = String::from_utf8_lossy(bytes);
        if let Ok(c) = LmRunConfig::parse(&text, "fuzz", &[]) {
            let dst = c.dst_config();
            dst.validate().expect("validate() accepted it");
            let _ = c.lm_config(65);
            let _ = c.lr_schedule().lr(c.train.steps / 2);
            accepted.count();
        }
        bounded(bytes);
    };
    let fuzz = Fuzz::new("lm-config").seeds(configs(true));
    fuzz.replay(&corpus("lm-config"), check);
    fuzz.run(check);
    accepted.report("lm-config");
}

/// The default configuration's scheduler for [`MLP_SHAPES`], as a run at step 60 has it.
fn scheduler_seed() -> (RunConfig, DstScheduler) {
    let config = RunConfig::parse(crate::train::DEFAULT_CONFIG, "default", &[]).unwrap();
    let mut s = DstScheduler::new(config.dst_config(60), &MLP_SHAPES).unwrap();
    for _ in 0..60 {
        s.step();
    }
    (config, s)
}

/// A small but complete MLP checkpoint: configuration, scheduler, progress and tensors.
fn checkpoint_seed() -> Vec<u8> {
    let (config, s) = scheduler_seed();
    let mut c = Checkpoint::default();
    c.metadata.insert("format".into(), FORMAT.into());
    c.metadata
        .insert("config".into(), toml::to_string(&config).unwrap());
    c.metadata.insert("epoch".into(), "1".into());
    c.metadata.insert("best".into(), "[0.5,1]".into());
    c.metadata
        .insert("scheduler".into(), serde_json::to_string(&s).unwrap());
    c.put_u32("layer0.row_ptr", &[4], vec![0, 1, 2, 3]);
    c.put_u32("layer0.col_idx", &[3], vec![0, 2, 1]);
    c.put_f32("layer0.values", &[3], vec![0.5, -0.25, 1.0]);
    c.put_f32("layer1.weight", &[2, 2], vec![1.0, 2.0, 3.0, 4.0]);
    c.to_bytes().unwrap()
}

#[test]
fn checkpoints_never_panic() {
    let accepted = Accepted::default();
    let check = |bytes: &[u8]| {
        if let Ok(c) = Checkpoint::from_bytes(bytes) {
            accepted.count();
            let _ = c.first_non_finite();
            if let Ok(config) = config_of_checkpoint::<RunConfig>(&c) {
                use_mlp_config(&config);
            }
            let _ = config_of_checkpoint::<LmRunConfig>(&c);
            let _ = crate::run::restore_progress::<Option<(f64, u32)>>(&c, "epoch");
            if let Ok(s) = c
                .meta("scheduler")
                .and_then(|t| Ok(serde_json::from_str::<DstScheduler>(t)?))
            {
                let _ = s.check_resumable(&scheduler_seed().1);
            }
            let _ = c.to_bytes();
        }
        bounded(bytes);
    };
    let fuzz = Fuzz::new("checkpoint").seeds(vec![checkpoint_seed()]);
    fuzz.replay(&corpus("checkpoint"), check);
    fuzz.run(check);
    accepted.report("checkpoint");
}

#[test]
fn scheduler_states_never_panic_and_accepted_ones_are_usable() {
    let (_, fresh) = scheduler_seed();
    let accepted = Accepted::default();
    let check = |bytes: &[u8]| {
        if let Ok(mut s) = serde_json::from_slice::<DstScheduler>(bytes)
            && s.check_resumable(&fresh).is_ok()
        {
            accepted.count();
            // Everything a resumed run asks of its scheduler before the next update.
            let _ = s.summary();
            let _ = (s.itop(), s.anp(), s.next_step_is_update());
            for l in 0..MLP_SHAPES.len() {
                let _ = (s.links(l), s.capacity(l));
            }
            let _ = s.initial_masks(None);
            s.step();
        }
        bounded(bytes);
    };
    let fuzz = Fuzz::new("scheduler").seeds(vec![serde_json::to_vec(&fresh).unwrap()]);
    fuzz.replay(&corpus("scheduler"), check);
    fuzz.run(check);
    accepted.report("scheduler");
}
