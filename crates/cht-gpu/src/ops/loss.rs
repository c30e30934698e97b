//! Softmax cross-entropy (forward and gradient in one pass) and on-device metric accumulation;
//! shader `shaders/loss.wgsl`.

use crate::device::{Backend, Device};
use crate::error::{Result, shape_err};
use crate::gpu::{Access, Kernel};
use crate::ops::bytes;
use crate::tensor::{DType, Tensor, as_f32, as_f32_mut};

const SOURCE: &str = include_str!("../../shaders/loss.wgsl");
pub(crate) const XENT: Kernel = Kernel {
    family: "loss",
    source: SOURCE,
    entry: "softmax_xent",
    access: &[
        Access::Read,
        Access::Read,
        Access::ReadWrite,
        Access::ReadWrite,
    ],
};
pub(crate) const METRICS: Kernel = Kernel {
    family: "loss",
    source: SOURCE,
    entry: "accumulate_metrics",
    access: &[Access::Read, Access::ReadWrite],
};

/// Length of a metrics accumulator: `[Σ loss, Σ correct, Σ samples, unused]`.
pub const METRICS_LEN: usize = 4;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    classes: u32,
    batch: u32,
    _pad: [u32; 2],
}

impl Device {
    /// Mean softmax cross-entropy of `logits` (`[classes, batch]`) against `labels` (`[batch, 1]`,
    /// u32): writes `dlogits` (gradient of the batch mean), per-sample loss and correctness into
    /// `sample` (`[2, batch]`), and adds the batch's sums to `metrics` (`[4, 1]`), all on the device.
    pub fn softmax_xent(
        &self,
        logits: &Tensor,
        labels: &Tensor,
        dlogits: &Tensor,
        sample: &Tensor,
        metrics: &Tensor,
    ) -> Result<()> {
        const OP: &str = "softmax_xent";
        let (classes, batch) = (logits.rows(), logits.cols());
        if classes == 0 {
            return Err(shape_err(OP, "no classes"));
        }
        logits.expect(OP, DType::F32, classes, batch)?;
        labels.expect(OP, DType::U32, batch, 1)?;
        dlogits.expect(OP, DType::F32, classes, batch)?;
        sample.expect(OP, DType::F32, 2, batch)?;
        metrics.expect(OP, DType::F32, METRICS_LEN, 1)?;
        match &self.backend {
            Backend::Gpu(g) => {
                let params = Params {
                    classes: classes as u32,
                    batch: batch as u32,
                    _pad: [0; 2],
                };
                let groups = [batch.div_ceil(64) as u32, 1, 1];
                g.dispatch(
                    &XENT,
                    &[],
                    bytes(&params),
                    &[logits, labels, dlogits, sample],
                    groups,
                )?;
                g.dispatch(&METRICS, &[], bytes(&params), &[sample, metrics], [1, 1, 1])
            }
            Backend::Cpu => {
                let _timer = self.op_timer(OP);
                let (z, y) = (logits.cpu_read(OP)?, labels.cpu_read(OP)?);
                let mut dz = dlogits.cpu_write(OP)?;
                let mut s = sample.cpu_write(OP)?;
                let mut m = metrics.cpu_write(OP)?;
                softmax_xent_cpu(
                    classes,
                    batch,
                    as_f32(&z),
                    &y,
                    as_f32_mut(&mut dz),
                    as_f32_mut(&mut s),
                );
                accumulate_metrics_cpu(batch, as_f32(&s), as_f32_mut(&mut m));
                Ok(())
            }
        }
    }
}

/// CPU twin of `softmax_xent`.
pub fn softmax_xent_cpu(
    classes: usize,
    batch: usize,
    z: &[f32],
    labels: &[u32],
    dz: &mut [f32],
    sample: &mut [f32],
) {
    for b in 0..batch {
        let at = |c: usize| z[c * batch + b];
        let (mut best, mut arg) = (at(0), 0);
        for c in 1..classes {
            if at(c) > best {
                best = at(c);
                arg = c;
            }
        }
        let sum = (0..classes).fold(0.0f32, |s, c| s + (at(c) - best).exp());
        let label = (labels[b] as usize).min(classes - 1);
        let lse = best + sum.ln();
        let inv_batch = 1.0 / batch as f32;
        for c in 0..classes {
            let prob = (at(c) - lse).exp();
            dz[c * batch + b] = (prob - if c == label { 1.0 } else { 0.0 }) * inv_batch;
        }
        sample[b] = lse - at(label);
        sample[batch + b] = if arg == label { 1.0 } else { 0.0 };
    }
}

/// CPU twin of `accumulate_metrics`: the same 64-way strided partial sums and tree reduction.
pub fn accumulate_metrics_cpu(batch: usize, sample: &[f32], metrics: &mut [f32]) {
    const WG: usize = 64;
    let mut loss = [0f32; WG];
    let mut correct = [0f32; WG];
    for t in 0..WG {
        for b in (t..batch).step_by(WG) {
            loss[t] += sample[b];
            correct[t] += sample[batch + b];
        }
    }
    let mut stride = WG / 2;
    while stride > 0 {
        for t in 0..stride {
            loss[t] += loss[t + stride];
            correct[t] += correct[t + stride];
        }
        stride /= 2;
    }
    metrics[0] += loss[0];
    metrics[1] += correct[0];
    metrics[2] += batch as f32;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xent_of_uniform_logits_is_log_classes_and_gradient_sums_to_zero() {
        let (classes, batch) = (3, 2);
        let z = [0.0, 1000.0, 0.0, 1000.0, 0.0, 1000.0]; // huge but equal: must stay finite
        let mut dz = [0.0; 6];
        let mut s = [0.0; 4];
        softmax_xent_cpu(classes, batch, &z, &[1, 2], &mut dz, &mut s);
        for b in 0..batch {
            // lse ≈ 1001.1 carries f32 rounding of ~6e-5 for the large-logit sample.
            assert!((s[b] - 3f32.ln()).abs() < 2e-4, "{s:?}");
            let col: f32 = (0..classes).map(|c| dz[c * batch + b]).sum();
            assert!(col.abs() < 1e-4, "{col}");
        }
        let mut m = [0.0; 4];
        accumulate_metrics_cpu(batch, &s, &mut m);
        assert!((m[0] - 2.0 * 3f32.ln()).abs() < 4e-4 && m[2] == 2.0);
    }
}
