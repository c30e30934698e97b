//! The browser demo's trainer, natively: it learns, it rejects bad data files, and the same seed
//! gives the same masks on the CPU twins and the GPU (lavapipe in CI) — the fingerprint below is
//! also asserted by the wasm tests on WebGPU and on the wasm CPU backend (`tests/browser.rs`).
#![cfg(not(target_arch = "wasm32"))]

use cht_gpu::{BackendChoice, Device, DeviceOptions};
use cht_web::demo::{
    DemoConfig, DemoMethod, MnistSubset, Trainer, trained_fingerprint, update_only_fingerprints,
};

/// Masks after the 6 topology updates of [`update_only_fingerprints`], on every backend.
const FINGERPRINT: u64 = 0xa4f4_f7da_c9c8_066c;

fn gpu() -> Option<Device> {
    let options = DeviceOptions::default().with_backend(BackendChoice::Gpu);
    match Device::open_blocking(&options) {
        Ok(d) => {
            eprintln!("demo GPU tests run on {}", d.name());
            Some(d)
        }
        Err(e) => {
            let required = std::env::var("CHT_REQUIRE_GPU").is_ok_and(|v| v == "1");
            assert!(!required, "CHT_REQUIRE_GPU=1 but no GPU adapter: {e}");
            None
        }
    }
}

fn fingerprint_after_updates(device: Device) -> u64 {
    let (before, after) = pollster::block_on(update_only_fingerprints(device)).unwrap();
    assert_ne!(before, after, "no link moved");
    after
}

#[test]
fn same_seed_same_masks_on_cpu_and_gpu() {
    let cpu = fingerprint_after_updates(Device::cpu());
    eprintln!("fingerprint {cpu:#x}");
    assert_eq!(
        cpu, FINGERPRINT,
        "CPU masks changed: update FINGERPRINT here and in browser.rs"
    );
    if let Some(g) = gpu() {
        assert_eq!(
            fingerprint_after_updates(g),
            FINGERPRINT,
            "GPU masks differ from CPU"
        );
    }
}

#[test]
fn chts_learns_the_synthetic_task_and_reports_topology() {
    // 530 test images: a full evaluation batch of 500 and a remainder of 30.
    let data = MnistSubset::synthetic(2000, 530, 3);
    let config = DemoConfig {
        hidden: 64,
        density: 0.1,
        update_every: 20,
        epochs: 2,
        ..DemoConfig::default()
    };
    let mut t = Trainer::new(Device::cpu(), config, data).unwrap();
    let steps = 2 * (2000 / 32);
    let chunk = t.train(steps + 10).unwrap();
    assert!(chunk.finished);
    assert_eq!(t.step(), u64::from(steps));
    assert!(t.updates() >= 3, "updates {}", t.updates());
    let m = pollster::block_on(t.evaluate()).unwrap();
    assert!(m.accuracy > 0.9, "test accuracy {}", m.accuracy);
    assert_eq!(m.samples, 530);
    let (masks, rates) = pollster::block_on(t.observe()).unwrap();
    assert_eq!(masks.len(), 2, "two sparse hidden layers");
    let (anp, itop) = rates.unwrap();
    assert!(anp > 0.0 && anp <= 1.0 && itop > 0.0);
    let p = pollster::block_on(t.predict(&[0.5; 784])).unwrap();
    assert_eq!(p.len(), 10);
    assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-4);
}

#[test]
fn bad_subset_files_and_configs_are_errors() {
    assert!(MnistSubset::parse(b"").unwrap_err().contains("too short"));
    assert!(
        MnistSubset::parse(&[b'x'; 40])
            .unwrap_err()
            .contains("not a CHTMNIST file")
    );
    let mut bytes = b"CHTMNIST".to_vec();
    for v in [2u32, 1, 28, 28] {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    bytes.extend_from_slice(&[0; 10]);
    assert!(
        MnistSubset::parse(&bytes)
            .unwrap_err()
            .contains("truncated or corrupt")
    );
    bytes.truncate(24);
    bytes.extend_from_slice(&[3, 11, 4]);
    bytes.extend_from_slice(&[0; 3 * 784]);
    assert!(
        MnistSubset::parse(&bytes)
            .unwrap_err()
            .contains("is not a class 0..10")
    );
    let bad = DemoConfig {
        density: 0.0,
        ..DemoConfig::default()
    };
    let data = MnistSubset::synthetic(64, 10, 0);
    assert!(Trainer::new(Device::cpu(), bad, data.clone()).is_err());
    let huge_batch = DemoConfig {
        batch: 1000,
        ..DemoConfig::default()
    };
    assert!(
        Trainer::new(Device::cpu(), huge_batch, data)
            .unwrap_err()
            .contains("batch")
    );
    assert!(DemoMethod::parse("rigl").is_err());
}

/// The page's default configuration after 250 training steps and two topology updates.
const TRAINED_FINGERPRINT: u64 = 0xfd80_9e1f_6cec_5789;

#[test]
fn trained_run_gives_the_same_masks_on_cpu_and_gpu() {
    let cpu = pollster::block_on(trained_fingerprint(Device::cpu())).unwrap();
    assert_eq!(
        cpu, TRAINED_FINGERPRINT,
        "CPU masks changed: update here and in browser.rs"
    );
    if let Some(g) = gpu() {
        let gpu = pollster::block_on(trained_fingerprint(g)).unwrap();
        assert_eq!(
            gpu, TRAINED_FINGERPRINT,
            "GPU masks differ from CPU after training"
        );
    }
}
