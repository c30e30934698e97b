//! The CSR / masked-dense crossover of an adapter, measured: the density above which a sparse
//! layer's forward, input gradient and weight gradient cost less as masked-dense GEMMs than as
//! CSR products ([`crate::ExecutionPolicy`]). Runners measure it once per adapter and layer shape
//! and cache it.

#[cfg(not(target_arch = "wasm32"))]
use cht_gpu::{Activation, Device};
#[cfg(not(target_arch = "wasm32"))]
use cht_sparse::CsrPattern;
#[cfg(not(target_arch = "wasm32"))]
use cht_sparse::rng::{RngKey, Stream};

#[cfg(not(target_arch = "wasm32"))]
use crate::layer::{Execution, Layer, SparseLinear};
#[cfg(not(target_arch = "wasm32"))]
use crate::{Error, Result};

/// Densities at which the CSR products are timed.
pub const CALIBRATION_DENSITIES: [f64; 5] = [0.05, 0.1, 0.2, 0.3, 0.5];

/// What [`calibrate_crossover`] measured.
#[derive(Clone, Debug, PartialEq)]
pub struct Calibration {
    /// Density where CSR and masked-dense cost the same (the fitted CSR line meets the
    /// masked-dense time), clamped to `[0, 1]`.
    pub crossover: f64,
    /// `(density, CSR milliseconds)` for forward + input gradient + weight gradient.
    pub csr_ms: Vec<(f64, f64)>,
    /// Masked-dense milliseconds for the same work (independent of density).
    pub masked_ms: f64,
}

/// Times one `out × inp` layer at `batch` columns as CSR at [`CALIBRATION_DENSITIES`] and as
/// masked-dense (median of `runs` after a warm-up each) and fits where they meet. Native only.
#[cfg(not(target_arch = "wasm32"))]
pub fn calibrate_crossover(
    device: &Device,
    (out, inp): (usize, usize),
    batch: usize,
    runs: usize,
) -> Result<Calibration> {
    if out == 0 || inp == 0 || batch == 0 {
        return Err(Error::Config(format!(
            "calibration needs a non-empty layer and batch, got {out}x{inp} at batch {batch}"
        )));
    }
    let x = device.zeros("calibrate.x", inp, batch, cht_gpu::DType::F32);
    let y = device.zeros("calibrate.y", out, batch, cht_gpu::DType::F32);
    let dx = device.zeros("calibrate.dx", inp, batch, cht_gpu::DType::F32);
    let time = |layer: &Layer| -> Result<f64> {
        let once = |d: &Device| -> cht_gpu::Result<()> {
            layer
                .forward(d, &x, Activation::None, &y)
                .and_then(|()| layer.backward(d, &x, &y, Some(&dx)))
                .map_err(|e| match e {
                    Error::Device(e) => e,
                    other => cht_gpu::Error::Unsupported(other.to_string()),
                })
        };
        device.time_ms(once)?; // warm-up: pipelines, caches
        let mut ms: Vec<f64> = (0..runs.max(1))
            .map(|_| device.time_ms(once).map(|(t, _)| t))
            .collect::<cht_gpu::Result<_>>()?;
        ms.sort_by(f64::total_cmp);
        Ok(ms[ms.len() / 2])
    };
    let layer_at = |density: f64| -> Result<SparseLinear> {
        let key = RngKey::new(0, Stream::Synthetic, 7, (density * 1000.0) as u32);
        let p = CsrPattern::random(out, inp, density, key)?;
        Ok(SparseLinear::new(device, "calibrate", &p, 0, 0)?.without_bias())
    };
    let mut csr_ms = Vec::with_capacity(CALIBRATION_DENSITIES.len());
    for &d in &CALIBRATION_DENSITIES {
        csr_ms.push((d, time(&Layer::Sparse(layer_at(d)?))?));
    }
    let mut masked = layer_at(0.3)?;
    masked.set_execution(device, Execution::MaskedDense)?;
    let masked_ms = time(&Layer::Sparse(masked))?;
    Ok(Calibration {
        crossover: meet(&csr_ms, masked_ms),
        csr_ms,
        masked_ms,
    })
}

/// Where the least-squares line through `points` (density, ms) reaches `level`, in `[0, 1]`.
#[cfg_attr(target_arch = "wasm32", allow(dead_code))]
fn meet(points: &[(f64, f64)], level: f64) -> f64 {
    let n = points.len() as f64;
    let (sx, sy) = points
        .iter()
        .fold((0.0, 0.0), |(a, b), &(x, y)| (a + x, b + y));
    let (mx, my) = (sx / n, sy / n);
    let (sxy, sxx) = points.iter().fold((0.0, 0.0), |(a, b), &(x, y)| {
        (a + (x - mx) * (y - my), b + (x - mx) * (x - mx))
    });
    let slope = if sxx > 0.0 { sxy / sxx } else { 0.0 };
    if slope <= 0.0 {
        // CSR does not get dearer with density here: keep it everywhere.
        return 1.0;
    }
    ((level - (my - slope * mx)) / slope).clamp(0.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fitted_line_meets_the_masked_time() {
        // CSR costs 1 + 10·density ms, masked-dense 4 ms: they meet at 0.3.
        let pts: Vec<(f64, f64)> = CALIBRATION_DENSITIES
            .iter()
            .map(|&d| (d, 1.0 + 10.0 * d))
            .collect();
        assert!((meet(&pts, 4.0) - 0.3).abs() < 1e-12);
        assert_eq!(meet(&pts, 0.5), 0.0, "masked-dense always cheaper");
        assert_eq!(meet(&pts, 100.0), 1.0, "CSR always cheaper");
        assert_eq!(meet(&[(0.1, 2.0), (0.5, 2.0)], 1.0), 1.0, "flat CSR");
    }

    #[test]
    fn calibration_runs_on_the_cpu_backend() {
        let d = Device::cpu();
        let c = calibrate_crossover(&d, (64, 48), 16, 1).unwrap();
        assert_eq!(c.csr_ms.len(), CALIBRATION_DENSITIES.len());
        assert!((0.0..=1.0).contains(&c.crossover));
        assert!(calibrate_crossover(&d, (0, 48), 16, 1).is_err());
    }
}
