//! cht in the browser. For now a smoke entry point that proves the device layer compiles to
//! wasm32 and runs a kernel on WebGPU or the CPU fallback; the training demo page comes with the
//! browser issue.

use cht_gpu::{BackendChoice, Device, DeviceOptions};
use wasm_bindgen::prelude::*;

/// Opens WebGPU (or falls back to the CPU twins), runs the RNG kernel and returns a one-line
/// report, e.g. `"gpu ok: 0.5,…"` or `"cpu ok: …"`.
#[wasm_bindgen]
pub async fn smoke() -> Result<String, JsValue> {
    let options = DeviceOptions {
        backend: BackendChoice::Auto,
        adapter: Default::default(),
    };
    let device = Device::open(&options)
        .await
        .map_err(|e| JsValue::from_str(&e.to_string()))?;
    let t = device.zeros("smoke", 4, 1, cht_gpu::DType::F32);
    let key = cht_sparse::rng::RngKey::new(1, cht_sparse::rng::Stream::Synthetic, 0, 0);
    device
        .fill_uniform(key, 0, 0.0, 1.0, &t)
        .map_err(|e| JsValue::from_str(&e.to_string()))?;
    let v = device
        .read_f32_async(&t)
        .await
        .map_err(|e| JsValue::from_str(&e.to_string()))?;
    let kind = if device.is_gpu() { "gpu" } else { "cpu" };
    Ok(format!("{kind} ok: {v:?}"))
}
