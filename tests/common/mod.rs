//! Shared helpers of the integration tests: the GPU device (lavapipe in CI), seeded data, and
//! tolerance checks.
#![allow(dead_code)]

pub mod shaders;

use std::sync::OnceLock;

use cht_train::gpu::{BackendChoice, Device, DeviceInfo, DeviceOptions};
use cht_train::sparse::rng::{Counter, RngKey, Stream};

/// The GPU device shared by all tests of one binary, or `None` when there is no adapter.
///
/// With `CHT_REQUIRE_GPU=1` (set by `.ci/run`) a missing adapter fails the tests instead, so CI can
/// never pass by silently skipping the GPU.
pub fn gpu() -> Option<&'static Device> {
    static GPU: OnceLock<Option<Device>> = OnceLock::new();
    GPU.get_or_init(|| {
        let options = DeviceOptions::from_env()
            .unwrap()
            .with_backend(BackendChoice::Gpu);
        match Device::open_blocking(&options) {
            Ok(d) => {
                if let DeviceInfo::Gpu(a) = d.info() {
                    eprintln!(
                        "GPU tests run on adapter: {} ({}, {})",
                        a.name,
                        a.backend_in_words(),
                        a.driver
                    );
                    // `WGPU_BACKEND=gl` (scripts/test.sh's second driver) must give a GL adapter.
                    if let Ok(wanted) = std::env::var("WGPU_BACKEND") {
                        // wgpu's names for each backend (wgpu-types `Backends::from_comma_list`).
                        let backend = |w: &str| match w.trim() {
                            "vulkan" | "vk" => Some("Vulkan"),
                            "dx12" | "d3d12" => Some("Dx12"),
                            "metal" | "mtl" => Some("Metal"),
                            "opengl" | "gles" | "gl" => Some("Gl"),
                            "webgpu" => Some("BrowserWebGpu"),
                            _ => None,
                        };
                        let named: Vec<_> = wanted.to_lowercase().split(',').map(backend).collect();
                        if named.iter().all(Option::is_some) {
                            assert!(
                                named.contains(&Some(a.backend.as_str())),
                                "WGPU_BACKEND={wanted} but the adapter's backend is {}",
                                a.backend
                            );
                        }
                    }
                }
                Some(d)
            }
            Err(e) => {
                let required = std::env::var("CHT_REQUIRE_GPU").is_ok_and(|v| v == "1");
                assert!(!required, "CHT_REQUIRE_GPU=1 but no GPU adapter: {e}");
                eprintln!("no GPU adapter ({e}); GPU comparisons are skipped");
                None
            }
        }
    })
    .as_ref()
}

/// The CPU backend.
pub fn cpu() -> Device {
    Device::cpu()
}

/// Standard normal values from a seed.
pub fn randn(n: usize, seed: u32) -> Vec<f32> {
    let mut r = Counter::new(RngKey::new(seed, Stream::Synthetic, 1, 0));
    (0..n).map(|_| r.normal()).collect()
}

/// A key for generated patterns.
pub fn key(seed: u32) -> RngKey {
    RngKey::new(seed, Stream::Synthetic, 0, 0)
}

/// Asserts `|got − want| ≤ tol · (1 + |want|)` elementwise, with a message naming the case.
pub fn assert_close(what: &str, got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(got.len(), want.len(), "{what}: lengths differ");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol * (1.0 + w.abs()),
            "{what}: element {i}: got {g}, want {w} (tol {tol})"
        );
    }
}

/// NaN-filled data: outputs start as NaN so a kernel that skips an element cannot pass.
pub fn poison(n: usize) -> Vec<f32> {
    vec![f32::NAN; n]
}
