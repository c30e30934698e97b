//! End-to-end checks of the training step: gradients against finite differences and against a
//! dense masked reference, and a small sparse MLP that learns, on GPU (lavapipe in CI) and CPU.

mod common;

use cht_train::gpu::{Device, SgdStep};
use cht_train::nn::synthetic::Blobs;
use cht_train::nn::{Layer, Mlp, MlpConfig};
use common::{cpu, gpu};

fn devices() -> Vec<(&'static str, Device)> {
    let mut out = vec![("cpu", cpu())];
    if let Some(g) = gpu() {
        // A second device on the same adapter: tests stay independent of each other.
        let _ = g;
        let options = cht_train::gpu::DeviceOptions::from_env()
            .unwrap()
            .with_backend(cht_train::gpu::BackendChoice::Gpu);
        out.push(("gpu", Device::open_blocking(&options).unwrap()));
    }
    out
}

fn loss(mlp: &Mlp, d: &Device, ws: &cht_train::nn::Workspace) -> f64 {
    mlp.eval_step(d, ws).unwrap();
    mlp.take_metrics(d, ws).unwrap().loss
}

/// Weight tensors of a layer (values for sparse, weight for dense) and their gradients.
/// An MLP of `sizes` at `density`, its classifier dense or not, initialised from `seed`.
fn mlp_config(sizes: Vec<usize>, density: f64, dense_last: bool, seed: u32) -> MlpConfig {
    let mut config = MlpConfig::new(sizes, density);
    config.dense_last = dense_last;
    config.seed = seed;
    config
}

fn params(layer: &Layer) -> (&cht_train::gpu::Tensor, &cht_train::gpu::Tensor) {
    match layer {
        Layer::Sparse(s) => (&s.weight.value, &s.weight.grad),
        Layer::Dense(d) => (&d.weight.value, &d.weight.grad),
    }
}

#[test]
fn sparse_gradients_match_finite_differences_and_dense_masked_reference() {
    for (name, d) in devices() {
        let config = mlp_config(vec![9, 13, 5], 0.4, false, 3);
        let mlp = Mlp::new(&d, &config).unwrap();
        let batch = 6;
        let ws = mlp.workspace(&d, batch);
        let data = Blobs::new(9, 5, 0.5, 1);
        let (x, y) = data.batch(0, batch);
        mlp.load_batch(&d, &ws, &x, &y).unwrap();
        mlp.train_step(&d, &ws, None).unwrap();
        let base = mlp.take_metrics(&d, &ws).unwrap().loss;

        // Finite differences on every weight of both sparse layers (f64 accumulation of f32 sums).
        let eps = 1e-2f32;
        let mut checked = 0;
        for layer in &mlp.layers {
            let (w, g) = params(layer);
            let w0 = d.read_f32(w).unwrap();
            let grad = d.read_f32(g).unwrap();
            for i in 0..w0.len() {
                let mut wp = w0.clone();
                wp[i] += eps;
                d.write_f32(w, &wp).unwrap();
                let lp = loss(&mlp, &d, &ws);
                wp[i] -= 2.0 * eps;
                d.write_f32(w, &wp).unwrap();
                let lm = loss(&mlp, &d, &ws);
                d.write_f32(w, &w0).unwrap();
                let fd = (lp - lm) / (2.0 * f64::from(eps));
                let an = f64::from(grad[i]);
                assert!(
                    (fd - an).abs() < 2e-3 + 0.05 * fd.abs(),
                    "{name}: weight {i}: fd {fd} vs analytic {an}"
                );
                checked += 1;
            }
        }
        assert!(checked > 40, "{name}: only {checked} weights checked");
        assert!((loss(&mlp, &d, &ws) - base).abs() < 1e-6);

        // Dense masked reference: the same weights stored densely give the same loss, and the
        // dense weight gradient restricted to the links equals the sparse one.
        let mut dense_cfg = config.clone();
        dense_cfg.density = 1.0;
        let dense = Mlp::new(&d, &dense_cfg).unwrap();
        for (s, t) in mlp.layers.iter().zip(&dense.layers) {
            let (Layer::Sparse(s), Layer::Dense(t)) = (s, t) else {
                panic!("layer kinds")
            };
            let p = d.download_pattern(&s.pattern).unwrap();
            d.write_f32(
                &t.weight.value,
                &p.scatter_dense(&d.read_f32(&s.weight.value).unwrap()),
            )
            .unwrap();
        }
        let dws = dense.workspace(&d, batch);
        dense.load_batch(&d, &dws, &x, &y).unwrap();
        dense.train_step(&d, &dws, None).unwrap();
        let dense_loss = dense.take_metrics(&d, &dws).unwrap().loss;
        assert!(
            (dense_loss - base).abs() < 1e-5,
            "{name}: dense {dense_loss} vs sparse {base}"
        );
        for (s, t) in mlp.layers.iter().zip(&dense.layers) {
            let (Layer::Sparse(s), Layer::Dense(t)) = (s, t) else {
                panic!("layer kinds")
            };
            let p = d.download_pattern(&s.pattern).unwrap();
            let want = p
                .gather_dense(&d.read_f32(&t.weight.grad).unwrap())
                .unwrap();
            common::assert_close(
                &format!("{name}: masked dense dW"),
                &d.read_f32(&s.weight.grad).unwrap(),
                &want,
                1e-4,
            );
            common::assert_close(
                &format!("{name}: bias grad"),
                &d.read_f32(&s.bias.as_ref().unwrap().grad).unwrap(),
                &d.read_f32(&t.bias.as_ref().unwrap().grad).unwrap(),
                1e-4,
            );
        }
    }
}

#[test]
fn two_layer_sparse_mlp_learns_a_generated_problem() {
    for (name, d) in devices() {
        let config = mlp_config(vec![32, 128, 4], 0.2, false, 7);
        let mlp = Mlp::new(&d, &config).unwrap();
        let batch = 32;
        let ws = mlp.workspace(&d, batch);
        let data = Blobs::new(32, 4, 1.0, 11);
        let sgd = SgdStep::new(0.02, 0.9, 5e-4);
        let mut curve = Vec::new();
        for step in 0..300u32 {
            let (x, y) = data.batch(step, batch);
            mlp.load_batch(&d, &ws, &x, &y).unwrap();
            mlp.train_step(&d, &ws, Some(sgd)).unwrap();
            if step % 50 == 49 {
                curve.push(mlp.take_metrics(&d, &ws).unwrap());
            }
        }
        let (first, last) = (curve[0].loss, curve[curve.len() - 1].loss);
        eprintln!(
            "{name}: loss every 50 steps: {:?}",
            curve.iter().map(|m| m.loss).collect::<Vec<_>>()
        );
        assert!(
            last < 0.2 * first && last < 0.2,
            "{name}: loss went {first} → {last}"
        );
        assert!(
            curve[curve.len() - 1].accuracy > 0.9,
            "{name}: accuracy {:?}",
            curve.last()
        );
    }
}

#[test]
fn bad_model_configs_are_errors() {
    let d = cpu();
    let bad = |sizes: Vec<usize>, density| Mlp::new(&d, &MlpConfig::new(sizes, density));
    assert!(bad(vec![4], 0.5).is_err());
    assert!(bad(vec![4, 0, 2], 0.5).is_err());
    assert!(bad(vec![4, 3, 2], 0.0).is_err());
    assert!(bad(vec![4, 3, 2], 1.5).is_err());
    let mlp = bad(vec![4, 3, 2], 0.5).unwrap();
    let ws = mlp.workspace(&d, 2);
    assert!(
        mlp.load_batch(&d, &ws, &[0.0; 8], &[0, 2]).is_err(),
        "label 2 of 2 classes accepted"
    );
    assert!(
        mlp.load_batch(&d, &ws, &[0.0; 7], &[0, 1]).is_err(),
        "short batch accepted"
    );
}

/// An MLP whose sparse layers execute masked-dense trains like the same MLP executed as CSR
/// (SGD with momentum and weight decay over the fused parameter arena), and its CSR side after a
/// sync holds the same weights and momentum; on the CPU and the GPU.
#[test]
fn masked_dense_mlp_trains_like_the_csr_one() {
    use cht_train::nn::ExecutionPolicy;
    for (name, d) in devices() {
        let config = mlp_config(vec![9, 13, 13, 5], 0.35, true, 4);
        let data = Blobs::new(9, 5, 0.5, 2);
        let mut results = Vec::new();
        for crossover in [1.0, 0.2] {
            let mut mlp = Mlp::new(&d, &config).unwrap();
            mlp.set_execution(
                &d,
                ExecutionPolicy::with_crossover(crossover),
                &[0.35, 0.35],
            )
            .unwrap();
            let ws = mlp.workspace(&d, 8);
            let mut losses = Vec::new();
            for step in 0..5 {
                let (x, y) = data.batch(step, 8);
                mlp.load_batch(&d, &ws, &x, &y).unwrap();
                mlp.train_step(&d, &ws, Some(SgdStep::new(0.1, 0.9, 5e-4)))
                    .unwrap();
                losses.push(mlp.take_metrics(&d, &ws).unwrap().loss as f32);
            }
            mlp.sync_to_csr(&d).unwrap();
            let mut state = Vec::new();
            for l in &mlp.layers {
                if let Layer::Sparse(s) = l {
                    state.extend(d.read_f32(&s.weight.value).unwrap());
                    state.extend(d.read_f32(&s.weight.state[0]).unwrap());
                }
            }
            results.push((losses, state));
        }
        common::assert_close(
            &format!("{name}: masked-dense vs CSR losses"),
            &results[1].0,
            &results[0].0,
            1e-4,
        );
        common::assert_close(
            &format!("{name}: masked-dense vs CSR weights and momentum"),
            &results[1].1,
            &results[0].1,
            1e-4,
        );
    }
}
