//! cht in the browser: the native runner's kernels, scheduler and MLP compiled to wasm32, driving
//! WebGPU when the browser offers an adapter and the CPU twins otherwise.
//!
//! The page (`web/www/`) creates a [`Demo`], calls [`Demo::train`] for a chunk of steps (recorded
//! on the device, nothing read back), then awaits [`Demo::metrics`] — the one readback of a chunk,
//! which also hands control back to the event loop — and every topology update asks
//! [`Demo::topology`] for fresh pictures. Every method that reads the device returns a `Promise`.

pub mod demo;
pub mod render;

use std::cell::RefCell;
use std::rc::Rc;

use cht_gpu::{BackendChoice, Device, DeviceOptions};
use demo::{DemoConfig, DemoMethod, DemoTemperature, MnistSubset, Trainer};
use js_sys::{Array, Object, Promise, Reflect, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

/// A training run in the page.
#[wasm_bindgen]
#[derive(Debug)]
pub struct Demo {
    state: Rc<RefCell<State>>,
    backend: String,
}

#[derive(Debug)]
struct State {
    /// Taken out while a call awaits the device, so overlapping calls get a clear error instead of
    /// a borrow held across an `await`.
    trainer: Option<Trainer>,
    /// The masks of the last pictures, to colour what the next update changed.
    shown: Option<Vec<cht_sparse::Mask>>,
}

fn take(state: &RefCell<State>) -> Result<Trainer, JsValue> {
    state
        .borrow_mut()
        .trainer
        .take()
        .ok_or_else(|| err("the demo is busy: await the previous call"))
}

fn put(state: &RefCell<State>, trainer: Trainer) {
    state.borrow_mut().trainer = Some(trainer);
}

fn err(msg: impl std::fmt::Display) -> JsValue {
    JsValue::from(js_sys::Error::new(&msg.to_string()))
}

fn set(obj: &Object, key: &str, value: impl Into<JsValue>) {
    // Setting a plain property on a fresh object cannot fail.
    let _ = Reflect::set(obj, &JsValue::from_str(key), &value.into());
}

/// Reads option `key` of a JS object: a number or `None` when absent.
fn num(options: &JsValue, key: &str) -> Result<Option<f64>, JsValue> {
    let v = Reflect::get(options, &JsValue::from_str(key)).unwrap_or(JsValue::UNDEFINED);
    if v.is_undefined() || v.is_null() {
        return Ok(None);
    }
    v.as_f64()
        .filter(|x| x.is_finite())
        .map(Some)
        .ok_or_else(|| err(format!("option {key} must be a number")))
}

fn text(options: &JsValue, key: &str) -> Result<Option<String>, JsValue> {
    let v = Reflect::get(options, &JsValue::from_str(key)).unwrap_or(JsValue::UNDEFINED);
    if v.is_undefined() || v.is_null() {
        return Ok(None);
    }
    v.as_string()
        .map(Some)
        .ok_or_else(|| err(format!("option {key} must be a string")))
}

/// The demo configuration from the page's options object (absent keys keep their defaults).
fn parse_config(options: &JsValue) -> Result<DemoConfig, JsValue> {
    let mut c = DemoConfig::default();
    if let Some(m) = text(options, "method")? {
        c.method = DemoMethod::parse(&m).map_err(err)?;
    }
    if let Some(t) = text(options, "temperature")? {
        c.temperature = DemoTemperature::parse(&t).map_err(err)?;
    }
    let whole = |x: f64, key: &str| -> Result<u64, JsValue> {
        if x >= 0.0 && x.fract() == 0.0 && x < 1e9 {
            Ok(x as u64)
        } else {
            Err(err(format!("option {key} must be a whole number, got {x}")))
        }
    };
    if let Some(x) = num(options, "hidden")? {
        c.hidden = whole(x, "hidden")? as usize;
    }
    if let Some(x) = num(options, "hiddenLayers")? {
        c.hidden_layers = whole(x, "hiddenLayers")? as usize;
    }
    if let Some(x) = num(options, "density")? {
        c.density = x;
    }
    if let Some(x) = num(options, "zeta")? {
        c.zeta = x;
    }
    if let Some(x) = num(options, "updateEvery")? {
        c.update_every = whole(x, "updateEvery")?;
    }
    if let Some(x) = num(options, "epochs")? {
        c.epochs = whole(x, "epochs")? as u32;
    }
    if let Some(x) = num(options, "batch")? {
        c.batch = whole(x, "batch")? as usize;
    }
    if let Some(x) = num(options, "lr")? {
        c.lr = x as f32;
    }
    if let Some(x) = num(options, "seed")? {
        c.seed = whole(x, "seed")? as u32;
    }
    c.validate().map_err(err)?;
    Ok(c)
}

/// Opens WebGPU when `want_gpu` and an adapter exists (the software SwiftShader adapter
/// included: in a browser it is the WebGPU there is), else the CPU twins.
async fn open_device(want_gpu: bool) -> (Device, String) {
    if want_gpu {
        let options = DeviceOptions::default().with_backend(BackendChoice::Gpu);
        match Device::open(&options).await {
            Ok(device) => {
                // Browsers often hide the adapter's name; say what is known.
                let label = match device.info() {
                    cht_gpu::DeviceInfo::Gpu(a) if !a.name.is_empty() => {
                        format!("WebGPU: {}", a.name)
                    }
                    cht_gpu::DeviceInfo::Gpu(a) if a.device_type == "Cpu" => {
                        "WebGPU: software adapter (e.g. SwiftShader)".to_owned()
                    }
                    _ => "WebGPU".to_owned(),
                };
                return (device, label);
            }
            Err(e) => web_sys::console::warn_1(&format!("no WebGPU adapter ({e}); CPU").into()),
        }
    }
    (Device::cpu(), "CPU (wasm)".to_owned())
}

#[wasm_bindgen]
impl Demo {
    /// Creates a run. `options`: `{ method: "chts"|"set"|"dense", hidden, hiddenLayers, density,
    /// zeta, updateEvery, temperature: "paper"|"old"|"new", epochs, batch, lr, seed,
    /// backend: "auto"|"cpu" }`; `data`: the bytes of `mnist-subset.bin`.
    /// Resolves to a `Demo`.
    pub fn create(options: JsValue, data: Uint8Array) -> Promise {
        install_panic_hook();
        future_to_promise(async move {
            let config = parse_config(&options)?;
            let subset = MnistSubset::parse(&data.to_vec()).map_err(err)?;
            let want_gpu = text(&options, "backend")?.as_deref() != Some("cpu");
            let (device, backend) = open_device(want_gpu).await;
            let trainer = Trainer::new(device, config, subset).map_err(err)?;
            let demo = Demo {
                state: Rc::new(RefCell::new(State {
                    trainer: Some(trainer),
                    shown: None,
                })),
                backend,
            };
            Ok(JsValue::from(demo))
        })
    }

    /// `"WebGPU: <adapter>"` or `"CPU (wasm)"`.
    pub fn backend(&self) -> String {
        self.backend.clone()
    }

    /// Records up to `steps` training steps (no readback) and returns
    /// `{ step, epoch, updates, newUpdates, finished }`.
    pub fn train(&self, steps: u32) -> Result<JsValue, JsValue> {
        let mut t = take(&self.state)?;
        let chunk = t.train(steps);
        let (step, epoch, updates) = (t.step(), t.epoch(), t.updates());
        put(&self.state, t);
        let chunk = chunk.map_err(err)?;
        let out = Object::new();
        set(&out, "step", step as f64);
        set(&out, "epoch", epoch);
        set(&out, "updates", updates);
        set(&out, "newUpdates", chunk.updates);
        set(&out, "finished", chunk.finished);
        Ok(out.into())
    }

    /// Resolves to the training `{ loss, acc, samples }` accumulated since the last call.
    pub fn metrics(&self) -> Promise {
        let state = self.state.clone();
        future_to_promise(async move {
            let t = take(&state)?;
            let m = t.take_metrics().await;
            put(&state, t);
            let m = m.map_err(err)?;
            let out = Object::new();
            set(&out, "loss", m.loss);
            set(&out, "acc", m.accuracy);
            set(&out, "samples", m.samples as f64);
            Ok(out.into())
        })
    }

    /// Resolves to the test-set `{ loss, acc }`.
    pub fn evaluate(&self) -> Promise {
        let state = self.state.clone();
        future_to_promise(async move {
            let mut t = take(&state)?;
            let m = t.evaluate().await;
            put(&state, t);
            let m = m.map_err(err)?;
            let out = Object::new();
            set(&out, "loss", m.loss);
            set(&out, "acc", m.accuracy);
            Ok(out.into())
        })
    }

    /// Resolves to `{ layers: [{ rows, cols, nnz, density, image }], alive: [Uint8Array],
    /// inputs: Uint8Array | null, anp, itop, scores: { rows, cols, image } | null }`. Images are
    /// RGBA, `cols` wide; the adjacency images colour the links regrown (green) and removed (red)
    /// since the previous call; `inputs` grades the first layer's inputs by links left; `scores`
    /// is the CH2-L3n heat-map of the last sparse layer.
    pub fn topology(&self) -> Promise {
        let state = self.state.clone();
        future_to_promise(async move {
            let mut t = take(&state)?;
            let result = t.observe().await;
            put(&state, t);
            let (masks, observed) = result.map_err(err)?;
            let shown = state.borrow_mut().shown.take();
            let out = Object::new();
            let layers = Array::new();
            for (l, m) in masks.iter().enumerate() {
                let prev = shown.as_ref().and_then(|p| p.get(l));
                let layer = Object::new();
                set(&layer, "rows", m.rows() as u32);
                set(&layer, "cols", m.cols() as u32);
                set(&layer, "nnz", m.nnz() as u32);
                set(&layer, "density", m.density());
                let image = render::adjacency_rgba(prev, m);
                set(&layer, "image", Uint8Array::from(image.as_slice()));
                layers.push(&layer);
            }
            set(&out, "layers", layers);
            let alive = Array::new();
            for a in render::alive_neurons(&masks) {
                alive.push(&Uint8Array::from(a.as_slice()));
            }
            set(&out, "alive", alive);
            match masks.first() {
                Some(m) => set(
                    &out,
                    "inputs",
                    Uint8Array::from(render::input_degrees(m).as_slice()),
                ),
                None => set(&out, "inputs", JsValue::NULL),
            }
            match observed {
                Some((anp, itop)) => {
                    set(&out, "anp", anp);
                    set(&out, "itop", itop);
                }
                None => {
                    set(&out, "anp", JsValue::NULL);
                    set(&out, "itop", JsValue::NULL);
                }
            }
            match masks.last() {
                Some(m) => {
                    let heat = Object::new();
                    set(&heat, "rows", m.rows() as u32);
                    set(&heat, "cols", m.cols() as u32);
                    let image = render::scores_rgba(m);
                    set(&heat, "image", Uint8Array::from(image.as_slice()));
                    set(&out, "scores", heat);
                }
                None => set(&out, "scores", JsValue::NULL),
            }
            state.borrow_mut().shown = Some(masks);
            Ok(out.into())
        })
    }

    /// Resolves to the 10 class probabilities (`Float32Array`) of a drawn digit given as 784
    /// intensities in `[0, 1]`, row-major 28×28.
    pub fn predict(&self, pixels: Vec<f32>) -> Promise {
        let state = self.state.clone();
        future_to_promise(async move {
            let mut t = take(&state)?;
            let p = t.predict(&pixels).await;
            put(&state, t);
            let p = p.map_err(err)?;
            Ok(js_sys::Float32Array::from(p.as_slice()).into())
        })
    }
}

/// Sends Rust panics to the browser console (once).
fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            web_sys::console::error_1(&format!("cht panicked: {info}").into());
        }));
    });
}
