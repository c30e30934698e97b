//! In headless Chromium (wasm-bindgen-test, `--enable-unsafe-webgpu`: SwiftShader's WebGPU): the
//! sparse kernels and a whole training run on WebGPU against the CPU twins compiled to wasm, and
//! the topology updates giving exactly the masks of the native CPU and GPU runs (`tests/demo.rs`).
#![cfg(target_arch = "wasm32")]

use cht_gpu::{Activation, BackendChoice, Device, DeviceOptions};
use cht_sparse::CsrPattern;
use cht_sparse::rng::{Counter, RngKey, Stream};
use cht_web::demo::{
    DemoConfig, MnistSubset, Trainer, trained_fingerprint, update_only_fingerprints,
};
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_browser);

/// The fingerprints `tests/demo.rs` pins natively (CPU twins and lavapipe).
const FINGERPRINT: u64 = 0xa4f4_f7da_c9c8_066c;
const TRAINED_FINGERPRINT: u64 = 0xfd80_9e1f_6cec_5789;
/// f32 sums in a different order on the GPU.
const TOL: f32 = 1e-4;

async fn webgpu() -> Device {
    let options = DeviceOptions::default().with_backend(BackendChoice::Gpu);
    Device::open(&options)
        .await
        .expect("no WebGPU adapter: run Chromium with --enable-unsafe-webgpu (web/webdriver.json)")
}

fn randn(n: usize, seed: u32) -> Vec<f32> {
    let mut r = Counter::new(RngKey::new(seed, Stream::Synthetic, 1, 0));
    (0..n).map(|_| r.normal()).collect()
}

fn assert_close(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= TOL * (1.0 + w.abs()),
            "{what}[{i}]: WebGPU {g}, CPU twin {w}"
        );
    }
}

/// Forward, input gradient and weight gradient of a sparse layer with odd sizes, an empty row,
/// and nnz = 0, on WebGPU and on the wasm CPU twins.
#[wasm_bindgen_test]
async fn sparse_kernels_on_webgpu_match_the_cpu_twins() {
    let gpu = webgpu().await;
    let cpu = Device::cpu();
    for (rows, cols, batch, density) in [(67, 131, 7, 0.1), (7, 67, 32, 0.5), (31, 5, 3, 0.0)] {
        let key = RngKey::new(3, Stream::Synthetic, 0, 0);
        let mut mask = CsrPattern::random(rows, cols, density, key)
            .unwrap()
            .to_mask();
        for c in 0..cols {
            mask.set(1, c, false);
        }
        let p = CsrPattern::from_mask(&mask);
        let nnz = p.nnz().max(1);
        let values = randn(nnz, 1);
        let x = randn(cols * batch, 2);
        let dy = randn(rows * batch, 3);
        let mut outs = Vec::new();
        for d in [&gpu, &cpu] {
            let w = d.upload_pattern("w", &p, nnz).unwrap();
            let v = d.tensor_f32("values", nnz, 1, &values).unwrap();
            let xt = d.tensor_f32("x", cols, batch, &x).unwrap();
            let dyt = d.tensor_f32("dy", rows, batch, &dy).unwrap();
            let nan = |n| vec![f32::NAN; n];
            let y = d.tensor_f32("y", rows, batch, &nan(rows * batch)).unwrap();
            let dx = d.tensor_f32("dx", cols, batch, &nan(cols * batch)).unwrap();
            let dw = d.tensor_f32("dw", nnz, 1, &nan(nnz)).unwrap();
            d.spmm_forward(&w, &v, &xt, None, Activation::Relu, &y)
                .unwrap();
            d.spmm_backward_input(&w, &v, &dyt, &dx).unwrap();
            d.sddmm_weight_grad(&w, &dyt, &xt, &dw).unwrap();
            let mut dw = d.read_f32_async(&dw).await.unwrap();
            dw.truncate(p.nnz());
            outs.push([
                d.read_f32_async(&y).await.unwrap(),
                d.read_f32_async(&dx).await.unwrap(),
                dw,
            ]);
        }
        for (k, op) in ["forward", "dX", "dW"].iter().enumerate() {
            let what = format!("{op} {rows}x{cols} batch {batch} density {density}");
            assert!(
                outs[1][k].iter().all(|v| v.is_finite()),
                "{what}: CPU twin wrote NaN"
            );
            assert_close(&what, &outs[0][k], &outs[1][k]);
        }
    }
}

async fn fingerprint_after_updates(device: Device) -> u64 {
    update_only_fingerprints(device).await.unwrap().1
}

/// Six CHTs topology updates (removal, chain removal, CH2-L3n, soft regrowth, CSR/CSC rebuild)
/// give the native masks on WebGPU and on the wasm CPU twins.
#[wasm_bindgen_test]
async fn topology_updates_give_the_native_masks() {
    assert_eq!(
        fingerprint_after_updates(webgpu().await).await,
        FINGERPRINT,
        "WebGPU"
    );
    assert_eq!(
        fingerprint_after_updates(Device::cpu()).await,
        FINGERPRINT,
        "wasm CPU"
    );
}

/// A short CHTs run with two topology updates: the same training losses and predictions on WebGPU
/// and on the CPU twins.
#[wasm_bindgen_test]
async fn training_on_webgpu_matches_the_cpu_twins() {
    let config = DemoConfig {
        hidden: 40,
        density: 0.1,
        update_every: 10,
        epochs: 2,
        ..DemoConfig::default()
    };
    let mut results = Vec::new();
    for device in [webgpu().await, Device::cpu()] {
        let data = MnistSubset::synthetic(800, 100, 2);
        let mut t = Trainer::new(device, config.clone(), data).unwrap();
        let mut losses = Vec::new();
        for _ in 0..3 {
            let chunk = t.train(8).unwrap();
            assert!(!chunk.finished);
            losses.push(t.take_metrics().await.unwrap().loss as f32);
        }
        assert_eq!(t.updates(), 2);
        let test = t.evaluate().await.unwrap();
        let p = t.predict(&[0.3; 784]).await.unwrap();
        losses.push(test.loss as f32);
        results.push((losses, p));
    }
    assert_close("training losses", &results[0].0, &results[1].0);
    assert_close("class probabilities", &results[0].1, &results[1].1);
}

/// The page's default CHTs configuration trained for 250 steps with two topology updates: the
/// native masks on WebGPU and on the wasm CPU twins.
#[wasm_bindgen_test]
async fn trained_run_gives_the_native_masks() {
    let gpu = trained_fingerprint(webgpu().await).await.unwrap();
    assert_eq!(gpu, TRAINED_FINGERPRINT, "WebGPU");
    let cpu = trained_fingerprint(Device::cpu()).await.unwrap();
    assert_eq!(cpu, TRAINED_FINGERPRINT, "wasm CPU");
}

/// A crafted 809-byte subset claiming 2^32 − 1 training and 2 test images: in 32-bit arithmetic
/// `24 + (n_train + n_test) · 785` wraps to exactly 809, and the offsets then ran out of bounds
/// (a trap in the browser). It must be an error, as it is natively
/// (`crates/cht-data/tests/fuzz-corpus/web-subset/offsets-wrap-in-32-bits.bin`).
#[wasm_bindgen_test]
fn a_subset_whose_offsets_wrap_in_32_bits_is_an_error() {
    let mut bytes = b"CHTMNIST".to_vec();
    for v in [u32::MAX, 2, 28, 28] {
        bytes.extend(v.to_le_bytes());
    }
    bytes.resize(809, 0);
    let err = MnistSubset::parse(&bytes).unwrap_err();
    assert!(err.contains("truncated or corrupt"), "{err}");
}

/// The subset decoder fuzzed in its wasm32 build (32-bit `usize`), where a wrapped offset traps
/// instead of failing: 10 000 mutations of a valid file (cht-fuzz's deterministic mutator; the
/// harness itself needs threads and clocks, which wasm32 lacks, so the cases run here directly
/// and any trap fails the test).
#[wasm_bindgen_test]
fn the_subset_decoder_never_traps_on_mutated_files() {
    let tiny = |split, n: usize| cht_data::Dataset {
        name: "tiny".into(),
        kind: cht_data::DatasetKind::Mnist,
        split,
        images: (0..n * 784).map(|i| (i * 7 % 256) as u8).collect(),
        labels: (0..n).map(|i| (i % 10) as u8).collect(),
        n,
        rows: 28,
        cols: 28,
        classes: 10,
    };
    let seed = cht_data::web_subset::encode(
        &tiny(cht_data::Split::Train, 3),
        &tiny(cht_data::Split::Test, 2),
    )
    .unwrap();
    let fuzz = cht_fuzz::Fuzz::new("web-subset-wasm32").seeds(vec![seed]);
    let mut accepted = 0;
    for case in 0..10_000 {
        if MnistSubset::parse(&fuzz.input(case)).is_ok() {
            accepted += 1;
        }
    }
    // Most mutations break the exact length; a few (label or pixel bytes) keep a valid file.
    assert!(accepted < 10_000, "{accepted}");
}
