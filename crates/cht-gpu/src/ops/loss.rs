//! Softmax cross-entropy (forward and gradient in one pass), its label-smoothed variant with a
//! padding class (translation), and on-device metric accumulation; shader `shaders/loss.wgsl`.

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
pub(crate) const SMOOTHED_XENT: Kernel = Kernel {
    family: "loss",
    source: SOURCE,
    entry: "smoothed_xent",
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

/// Label smoothing of [`Device::smoothed_xent`] (OpenNMT's `LabelSmoothingLoss`, spec §7.3).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LabelSmoothing {
    /// ε in `[0, 1)`: the target puts `1 − ε` on the label and spreads ε over the other classes
    /// but the padding class (the paper: 0.1).
    pub smoothing: f32,
    /// The padding class: samples labelled with it add nothing (no gradient, loss or count), and
    /// no probability goes to it.
    pub pad: Option<u32>,
    /// The tokens the loss is normalised by (OpenNMT's `-normalization tokens`): the samples not
    /// labelled `pad`. The gradient is that of the smoothed loss summed over samples divided by
    /// it, and `metrics[2]` grows by it.
    pub tokens: usize,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    classes: u32,
    batch: u32,
    /// What `accumulate_metrics` adds to `metrics[2]`.
    counted: u32,
    _pad: u32,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct SmoothParams {
    classes: u32,
    batch: u32,
    pad: u32,
    _pad0: u32,
    smoothing: f32,
    inv_norm: f32,
    _pad1: [u32; 2],
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
        let (classes, batch) = xent_operands(OP, [logits, labels, dlogits, sample, metrics])?;
        match &self.backend {
            Backend::Gpu(g) => {
                let params = Params {
                    classes: classes as u32,
                    batch: batch as u32,
                    counted: batch as u32,
                    _pad: 0,
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
                accumulate_metrics_cpu(batch, batch, as_f32(&s), as_f32_mut(&mut m));
                Ok(())
            }
        }
    }

    /// [`softmax_xent`](Device::softmax_xent) with label smoothing and a padding class (the
    /// translation loss): `dlogits` is the gradient of the smoothed cross-entropy summed over
    /// the samples and divided by `ls.tokens`; `sample` gets each token's negative
    /// log-likelihood `−log p(label)` (for perplexity; 0 for padding) and correctness, and
    /// `metrics` their sums and `ls.tokens`.
    pub fn smoothed_xent(
        &self,
        logits: &Tensor,
        labels: &Tensor,
        dlogits: &Tensor,
        sample: &Tensor,
        metrics: &Tensor,
        ls: &LabelSmoothing,
    ) -> Result<()> {
        const OP: &str = "smoothed_xent";
        let (classes, batch) = xent_operands(OP, [logits, labels, dlogits, sample, metrics])?;
        if !(0.0..1.0).contains(&ls.smoothing) {
            return Err(shape_err(
                OP,
                format!("smoothing {} is not in [0, 1)", ls.smoothing),
            ));
        }
        if ls.pad.is_some_and(|p| p as usize >= classes) {
            return Err(shape_err(
                OP,
                format!("padding class {:?} of {classes} classes", ls.pad),
            ));
        }
        if ls.tokens > batch {
            return Err(shape_err(
                OP,
                format!("{} tokens in a batch of {batch}", ls.tokens),
            ));
        }
        match &self.backend {
            Backend::Gpu(g) => {
                let params = SmoothParams {
                    classes: classes as u32,
                    batch: batch as u32,
                    pad: ls.pad.unwrap_or(u32::MAX),
                    _pad0: 0,
                    smoothing: ls.smoothing,
                    inv_norm: inv_norm(ls.tokens),
                    _pad1: [0; 2],
                };
                let groups = [batch.div_ceil(64) as u32, 1, 1];
                g.dispatch(
                    &SMOOTHED_XENT,
                    &[],
                    bytes(&params),
                    &[logits, labels, dlogits, sample],
                    groups,
                )?;
                let params = Params {
                    classes: classes as u32,
                    batch: batch as u32,
                    counted: ls.tokens as u32,
                    _pad: 0,
                };
                g.dispatch(&METRICS, &[], bytes(&params), &[sample, metrics], [1, 1, 1])
            }
            Backend::Cpu => {
                let _timer = self.op_timer(OP);
                let (z, y) = (logits.cpu_read(OP)?, labels.cpu_read(OP)?);
                let mut dz = dlogits.cpu_write(OP)?;
                let mut s = sample.cpu_write(OP)?;
                let mut m = metrics.cpu_write(OP)?;
                smoothed_xent_cpu(
                    classes,
                    batch,
                    as_f32(&z),
                    &y,
                    ls,
                    as_f32_mut(&mut dz),
                    as_f32_mut(&mut s),
                );
                accumulate_metrics_cpu(batch, ls.tokens, as_f32(&s), as_f32_mut(&mut m));
                Ok(())
            }
        }
    }
}

/// `(classes, batch)` of a cross-entropy call after checking its operands: `logits` f32
/// `[classes, batch]` with `classes > 0`, `labels` u32 `[batch, 1]`, `dlogits` like `logits`,
/// `sample` f32 `[2, batch]`, `metrics` f32 `[METRICS_LEN, 1]`.
fn xent_operands(
    op: &'static str,
    [logits, labels, dlogits, sample, metrics]: [&Tensor; 5],
) -> Result<(usize, usize)> {
    let (classes, batch) = (logits.rows(), logits.cols());
    if classes == 0 {
        return Err(shape_err(op, "no classes"));
    }
    logits.expect(op, DType::F32, classes, batch)?;
    labels.expect(op, DType::U32, batch, 1)?;
    dlogits.expect(op, DType::F32, classes, batch)?;
    sample.expect(op, DType::F32, 2, batch)?;
    metrics.expect(op, DType::F32, METRICS_LEN, 1)?;
    Ok((classes, batch))
}

/// `1 / tokens`, and 0 for no tokens (a batch of padding only has no gradient).
fn inv_norm(tokens: usize) -> f32 {
    if tokens == 0 {
        0.0
    } else {
        1.0 / tokens as f32
    }
}

/// CPU twin of `smoothed_xent`, one sample at a time in the shader's order with
/// `crate::cpu::exp` for `exp`, parallel over samples' columns in blocks.
pub fn smoothed_xent_cpu(
    classes: usize,
    batch: usize,
    z: &[f32],
    labels: &[u32],
    ls: &LabelSmoothing,
    dz: &mut [f32],
    sample: &mut [f32],
) {
    let pad = ls.pad.map_or(u32::MAX, |p| p);
    let others = classes - 1 - usize::from((pad as usize) < classes);
    let (off, on) = if others > 0 {
        (ls.smoothing / others as f32, 1.0 - ls.smoothing)
    } else {
        (0.0, 1.0)
    };
    let inv = inv_norm(ls.tokens);
    let blocks = crate::cpu::column_blocks(dz, batch, BLOCK);
    let sample_blocks = crate::cpu::column_blocks(&mut sample[..2 * batch], batch, BLOCK);
    let items: Vec<_> = blocks.into_iter().zip(sample_blocks).collect();
    crate::cpu::map_items(items, |blk, (mut dz, mut sample)| {
        let c0 = blk * BLOCK;
        let [loss, correct] = &mut sample[..] else {
            unreachable!("a sample block has two rows")
        };
        for t in 0..loss.len() {
            let b = c0 + t;
            let at = |c: usize| z[c * batch + b];
            let label = (labels[b] as usize).min(classes - 1);
            if label as u32 == pad {
                dz.iter_mut().for_each(|row| row[t] = 0.0);
                (loss[t], correct[t]) = (0.0, 0.0);
                continue;
            }
            let (mut best, mut arg) = (at(0), 0);
            for c in 1..classes {
                if at(c) > best {
                    (best, arg) = (at(c), c);
                }
            }
            let mut sum = 0.0f32;
            for c in 0..classes {
                sum += crate::cpu::exp(at(c) - best);
            }
            let lse = best + sum.ln();
            for (c, row) in dz.iter_mut().enumerate() {
                let prob = crate::cpu::exp(at(c) - lse);
                let want = if c == label {
                    on
                } else if c as u32 == pad {
                    0.0
                } else {
                    off
                };
                row[t] = (prob - want) * inv;
            }
            loss[t] = lse - at(label);
            correct[t] = if arg == label { 1.0 } else { 0.0 };
        }
    });
}

/// Samples per task of [`softmax_xent_cpu`].
const BLOCK: usize = 256;

/// CPU twin of `softmax_xent`, in the shader's order, with `crate::cpu::exp` for `exp`. Parallel
/// over blocks of `BLOCK` samples, each walking the class rows with its samples' running max,
/// argmax and sum in contiguous vectors (vectorised across samples).
pub fn softmax_xent_cpu(
    classes: usize,
    batch: usize,
    z: &[f32],
    labels: &[u32],
    dz: &mut [f32],
    sample: &mut [f32],
) {
    let blocks = crate::cpu::column_blocks(dz, batch, BLOCK);
    let sample_blocks = crate::cpu::column_blocks(&mut sample[..2 * batch], batch, BLOCK);
    let items: Vec<_> = blocks.into_iter().zip(sample_blocks).collect();
    crate::cpu::map_items(items, |b, (mut dz, mut sample)| {
        let c0 = b * BLOCK;
        let labels = &labels[c0..][..sample[0].len()];
        xent_block((classes, batch, c0), z, labels, &mut dz, &mut sample);
    });
}

crate::cpu::avx2_dispatch!(fn xent_block(
    shape: (usize, usize, usize),
    z: &[f32],
    labels: &[u32],
    dz: &mut [&mut [f32]],
    sample: &mut [&mut [f32]],
) => xent_block_body);

/// [`softmax_xent_cpu`] for samples `c0 ..` (`shape` = `(classes, batch, c0)`): `dz` and `sample`
/// hold their part of each row.
#[inline(always)]
fn xent_block_body(
    (classes, batch, c0): (usize, usize, usize),
    z: &[f32],
    labels: &[u32],
    dz: &mut [&mut [f32]],
    sample: &mut [&mut [f32]],
) {
    let w = labels.len();
    let row = |c: usize| &z[c * batch + c0..][..w];
    let mut best = [0.0f32; BLOCK];
    let best = &mut best[..w];
    best.copy_from_slice(row(0));
    let mut arg = [0u32; BLOCK];
    let arg = &mut arg[..w];
    for c in 1..classes {
        for ((b, a), &v) in best.iter_mut().zip(arg.iter_mut()).zip(row(c)) {
            let above = v > *b;
            *b = if above { v } else { *b };
            *a = if above { c as u32 } else { *a };
        }
    }
    let mut lse = [0.0f32; BLOCK];
    let lse = &mut lse[..w];
    for c in 0..classes {
        for ((s, &v), &m) in lse.iter_mut().zip(row(c)).zip(best.iter()) {
            *s += crate::cpu::exp(v - m);
        }
    }
    for (l, &m) in lse.iter_mut().zip(best.iter()) {
        *l = m + l.ln();
    }
    let mut label = [0u32; BLOCK];
    let label = &mut label[..w];
    for (o, &y) in label.iter_mut().zip(labels) {
        *o = (y as usize).min(classes - 1) as u32;
    }
    let inv_batch = 1.0 / batch as f32;
    for (c, out) in dz.iter_mut().enumerate() {
        let target = (out.iter_mut().zip(row(c))).zip(lse.iter().zip(label.iter()));
        for ((o, &v), (&l, &y)) in target {
            let prob = crate::cpu::exp(v - l);
            *o = (prob - if y == c as u32 { 1.0 } else { 0.0 }) * inv_batch;
        }
    }
    let [loss, correct] = sample else {
        unreachable!("a sample block has two rows")
    };
    for (t, (o, &y)) in loss.iter_mut().zip(label.iter()).enumerate() {
        *o = lse[t] - z[y as usize * batch + c0 + t];
    }
    for ((o, &y), &a) in correct.iter_mut().zip(label.iter()).zip(arg.iter()) {
        *o = if a == y { 1.0 } else { 0.0 };
    }
}

/// CPU twin of `accumulate_metrics`: the same 64-way strided partial sums and tree reduction;
/// `counted` (the batch, or its non-padding tokens) is added to `metrics[2]`.
pub fn accumulate_metrics_cpu(batch: usize, counted: usize, sample: &[f32], metrics: &mut [f32]) {
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
    metrics[2] += counted as f32;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The straightforward twin (one sample at a time, libm `exp`).
    fn reference(
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

    /// Within `1e-6 · (1 + |want|)` of the reference (per sample: `dz` scaled by the batch size)
    /// — the 2-ulp `exp` — and the same argmax (ties included), at odd sizes with labels out of
    /// range (clamped); outputs start as NaN.
    #[test]
    fn blocked_twin_matches_the_reference_at_odd_sizes() {
        for classes in [1, 5, 130] {
            for batch in [1, 7, 33, 513] {
                let n = classes * batch;
                let mut z: Vec<f32> = (0..n).map(|k| 6.0 * (k as f32 * 0.61).sin()).collect();
                z[0] = 90.0;
                if n > 2 * batch {
                    z[batch + 1] = 3.0; // a tie for sample 1: the first class wins
                    z[2 * batch + 1] = 3.0;
                }
                let labels: Vec<u32> = (0..batch as u32)
                    .map(|b| (b * 7 + 3) % (classes as u32 + 1))
                    .collect();
                let (mut dz, mut s) = (vec![f32::NAN; n], vec![f32::NAN; 2 * batch]);
                let (mut dz0, mut s0) = (vec![f32::NAN; n], vec![f32::NAN; 2 * batch]);
                softmax_xent_cpu(classes, batch, &z, &labels, &mut dz, &mut s);
                reference(classes, batch, &z, &labels, &mut dz0, &mut s0);
                let what = format!("{classes}x{batch}");
                for (k, (&g, &w)) in dz.iter().zip(&dz0).enumerate() {
                    let (g, w) = (g * batch as f32, w * batch as f32);
                    assert!(
                        (g - w).abs() <= 1e-6 * (1.0 + w.abs()),
                        "{what} dz[{k}]: {g} vs {w}"
                    );
                }
                for (k, (&g, &w)) in s.iter().zip(&s0).enumerate() {
                    assert!(
                        (g - w).abs() <= 1e-6 * (1.0 + w.abs()),
                        "{what} sample[{k}]: {g} vs {w}"
                    );
                }
                assert_eq!(s[batch..], s0[batch..], "{what}: correctness");
            }
        }
    }

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
        accumulate_metrics_cpu(batch, batch, &s, &mut m);
        assert!((m[0] - 2.0 * 3f32.ln()).abs() < 4e-4 && m[2] == 2.0);
    }

    /// The smoothed loss in f64: `Σ_b (valid) Σ_c target_c · (−log softmax_c) / tokens`.
    fn smoothed_loss(
        classes: usize,
        batch: usize,
        z: &[f64],
        labels: &[u32],
        ls: &LabelSmoothing,
    ) -> f64 {
        let pad = ls.pad.map_or(usize::MAX, |p| p as usize);
        let others = classes - 1 - usize::from(pad < classes);
        let eps = f64::from(ls.smoothing);
        let mut total = 0.0;
        for b in 0..batch {
            let y = labels[b] as usize;
            if y == pad {
                continue;
            }
            let col: Vec<f64> = (0..classes).map(|c| z[c * batch + b]).collect();
            let max = col.iter().cloned().fold(f64::MIN, f64::max);
            let lse = max + col.iter().map(|v| (v - max).exp()).sum::<f64>().ln();
            for (c, &v) in col.iter().enumerate() {
                let want = if c == y {
                    1.0 - eps
                } else if c == pad {
                    0.0
                } else {
                    eps / others as f64
                };
                total += want * (lse - v);
            }
        }
        total / ls.tokens as f64
    }

    /// The twin's gradient against central finite differences of the f64 smoothed loss, with a
    /// padding class, padded samples and ε in {0, 0.1, 0.5}; outputs start as NaN.
    #[test]
    fn smoothed_xent_gradient_matches_finite_differences() {
        let (classes, batch) = (7, 11);
        let z: Vec<f32> = (0..classes * batch)
            .map(|k| 2.0 * (k as f32 * 0.37).sin())
            .collect();
        // Class 0 pads; samples 3 and 8 are padding.
        let labels: Vec<u32> = (0..batch as u32)
            .map(|b| if b == 3 || b == 8 { 0 } else { 1 + b % 6 })
            .collect();
        for smoothing in [0.0, 0.1, 0.5] {
            let ls = LabelSmoothing {
                smoothing,
                pad: Some(0),
                tokens: batch - 2,
            };
            let (mut dz, mut s) = (vec![f32::NAN; z.len()], vec![f32::NAN; 2 * batch]);
            smoothed_xent_cpu(classes, batch, &z, &labels, &ls, &mut dz, &mut s);
            let z64: Vec<f64> = z.iter().map(|&v| f64::from(v)).collect();
            let h = 1e-5;
            for k in 0..z.len() {
                let (mut up, mut down) = (z64.clone(), z64.clone());
                up[k] += h;
                down[k] -= h;
                let fd = (smoothed_loss(classes, batch, &up, &labels, &ls)
                    - smoothed_loss(classes, batch, &down, &labels, &ls))
                    / (2.0 * h);
                assert!(
                    (f64::from(dz[k]) - fd).abs() < 1e-5,
                    "ε {smoothing} dz[{k}]: {} vs {fd}",
                    dz[k]
                );
            }
            for b in [3, 8] {
                assert_eq!((s[b], s[batch + b]), (0.0, 0.0));
                assert!((0..classes).all(|c| dz[c * batch + b] == 0.0));
            }
        }
    }

    /// With ε = 0, no padding and `tokens = batch`, the smoothed loss is `softmax_xent`.
    #[test]
    fn smoothed_xent_without_smoothing_is_softmax_xent() {
        let (classes, batch) = (5, 9);
        let z: Vec<f32> = (0..classes * batch)
            .map(|k| 3.0 * (k as f32 * 0.71).cos())
            .collect();
        let labels: Vec<u32> = (0..batch as u32).map(|b| b % 5).collect();
        let ls = LabelSmoothing {
            smoothing: 0.0,
            pad: None,
            tokens: batch,
        };
        let (mut dz, mut s) = (vec![f32::NAN; z.len()], vec![f32::NAN; 2 * batch]);
        let (mut dz0, mut s0) = (vec![f32::NAN; z.len()], vec![f32::NAN; 2 * batch]);
        smoothed_xent_cpu(classes, batch, &z, &labels, &ls, &mut dz, &mut s);
        softmax_xent_cpu(classes, batch, &z, &labels, &mut dz0, &mut s0);
        for (a, b) in dz.iter().zip(&dz0).chain(s.iter().zip(&s0)) {
            assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        }
    }
}
