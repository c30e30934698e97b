//! SGD with momentum and weight decay, and AdamW; shader `shaders/optim.wgsl`.

use crate::device::{Backend, Device};
use crate::error::Result;
use crate::gpu::{Access, Kernel};
use crate::ops::{bytes, grid_1d};
use crate::tensor::{DType, Tensor, as_f32, as_f32_mut};

const SOURCE: &str = include_str!("../../shaders/optim.wgsl");
pub(crate) const KERNEL: Kernel = Kernel {
    family: "optim",
    source: SOURCE,
    entry: "sgd_momentum",
    access: &[Access::Read, Access::ReadWrite, Access::ReadWrite],
};
/// AdamW over one tensor or a parameter-arena chunk, clipping folded in (`adamw_arena`).
pub(crate) const ADAMW: Kernel = Kernel {
    family: "optim",
    source: SOURCE,
    entry: "adamw_arena",
    access: &[
        Access::Read,
        Access::Read,
        Access::ReadWrite,
        Access::ReadWrite,
        Access::ReadWrite,
        Access::ReadWrite,
    ],
};
/// Lanes of `adamw_arena` and elements each lane updates (`ZWG`, `ZITEMS` in the shader).
const ZWG: usize = 256;
const ZITEMS: usize = 8;

/// Hyper-parameters of one AdamW step (PyTorch's `AdamW`: decoupled weight decay, bias-corrected
/// moments).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamWStep {
    /// Learning rate of this step.
    pub lr: f32,
    /// First-moment decay β1.
    pub beta1: f32,
    /// Second-moment decay β2.
    pub beta2: f32,
    /// Added to the denominator.
    pub eps: f32,
    /// Decoupled weight decay.
    pub weight_decay: f32,
    /// The 1-based step count `t` (for the bias corrections).
    pub t: u32,
}

/// The parameter block of `adamw_arena`.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct AdamParams {
    len: u32,
    lr: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    weight_decay: f32,
    c1: f32,
    c2: f32,
    /// Clipping threshold (when `parts` > 0).
    max_norm: f32,
    /// Squared-norm partials to reduce into the clip factor; 0: no clipping.
    parts: u32,
    /// 1: this dispatch writes `[factor, norm]`.
    report: u32,
    _pad: u32,
}

/// How an AdamW dispatch clips: the partial sums to reduce and whether it reports the factor.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct ClipBy {
    pub(crate) max_norm: f32,
    pub(crate) parts: usize,
    pub(crate) report: bool,
}

impl AdamWStep {
    pub(crate) fn params(&self, len: usize, clip: ClipBy) -> AdamParams {
        let t = self.t.max(1) as i32;
        AdamParams {
            len: len as u32,
            lr: self.lr,
            beta1: self.beta1,
            beta2: self.beta2,
            eps: self.eps,
            weight_decay: self.weight_decay,
            c1: (1.0 / (1.0 - f64::from(self.beta1).powi(t))) as f32,
            c2: (1.0 / (1.0 - f64::from(self.beta2).powi(t))) as f32,
            max_norm: clip.max_norm,
            parts: clip.parts as u32,
            report: u32::from(clip.report),
            _pad: 0,
        }
    }
}

/// Records `adamw_arena` over `w` (`partials` and `clip_out` are bound even when unused).
pub(crate) fn adamw_dispatch(
    g: &crate::gpu::Gpu,
    step: AdamWStep,
    clip: ClipBy,
    [partials, grad, w, m, v, clip_out]: [&Tensor; 6],
) -> Result<()> {
    let len = w.len();
    g.dispatch(
        &ADAMW,
        &[],
        bytes(&step.params(len, clip)),
        &[partials, grad, w, m, v, clip_out],
        crate::ops::grid_1d_wg(len.div_ceil(ZITEMS), ZWG),
    )
}

/// Hyper-parameters of one SGD step.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct SgdStep {
    len: u32,
    /// Learning rate of this step.
    pub lr: f32,
    /// Momentum factor (0.9 in the paper).
    pub momentum: f32,
    /// L2 weight decay added to the gradient (5e-4 in the paper).
    pub weight_decay: f32,
}

impl SgdStep {
    /// A step with the given learning rate, momentum and weight decay.
    pub fn new(lr: f32, momentum: f32, weight_decay: f32) -> SgdStep {
        SgdStep {
            len: 0,
            lr,
            momentum,
            weight_decay,
        }
    }
}

impl Device {
    /// Updates `w` and its `velocity` from `grad` (all the same shape). For sparse layers pass the CSR
    /// values: links past the live count receive zero gradients and stay zero.
    pub fn sgd_momentum(
        &self,
        step: SgdStep,
        grad: &Tensor,
        w: &Tensor,
        velocity: &Tensor,
    ) -> Result<()> {
        const OP: &str = "sgd_momentum";
        grad.expect(OP, DType::F32, w.rows(), w.cols())?;
        velocity.expect(OP, DType::F32, w.rows(), w.cols())?;
        w.expect(OP, DType::F32, w.rows(), w.cols())?;
        match &self.backend {
            Backend::Gpu(g) => {
                let params = SgdStep {
                    len: w.len() as u32,
                    ..step
                };
                g.dispatch(
                    &KERNEL,
                    &[],
                    bytes(&params),
                    &[grad, w, velocity],
                    grid_1d(w.len()),
                )
            }
            Backend::Cpu => {
                let _timer = self.op_timer(OP);
                let gv = grad.cpu_read(OP)?;
                let mut wv = w.cpu_write(OP)?;
                let mut vv = velocity.cpu_write(OP)?;
                sgd_momentum_cpu(step, as_f32(&gv), as_f32_mut(&mut wv), as_f32_mut(&mut vv));
                Ok(())
            }
        }
    }
}

impl Device {
    /// One AdamW step on `w` with moments `m`, `v` (all the shape of `grad`).
    pub fn adamw(
        &self,
        step: AdamWStep,
        grad: &Tensor,
        w: &Tensor,
        m: &Tensor,
        v: &Tensor,
    ) -> Result<()> {
        const OP: &str = "adamw";
        for t in [grad, m, v] {
            t.expect(OP, DType::F32, w.rows(), w.cols())?;
        }
        w.expect(OP, DType::F32, w.rows(), w.cols())?;
        match &self.backend {
            Backend::Gpu(g) => adamw_dispatch(
                g,
                step,
                ClipBy::default(),
                [&g.dummy, grad, w, m, v, &g.dummy_out],
            ),
            Backend::Cpu => {
                let _timer = self.op_timer(OP);
                let gv = grad.cpu_read(OP)?;
                let (mut wv, mut mv, mut vv) =
                    (w.cpu_write(OP)?, m.cpu_write(OP)?, v.cpu_write(OP)?);
                adamw_cpu(
                    step,
                    1.0,
                    as_f32(&gv),
                    as_f32_mut(&mut wv),
                    as_f32_mut(&mut mv),
                    as_f32_mut(&mut vv),
                );
                Ok(())
            }
        }
    }
}

/// CPU twin of `adamw_arena`'s element update: AdamW with the gradient scaled by the clip
/// `factor` (1 without clipping). Element-wise: parallel over chunks, vectorised, the shader's
/// arithmetic.
pub fn adamw_cpu(
    step: AdamWStep,
    factor: f32,
    grad: &[f32],
    w: &mut [f32],
    m: &mut [f32],
    v: &mut [f32],
) {
    const CHUNK: usize = 1 << 14;
    let p = step.params(w.len(), ClipBy::default());
    crate::cpu::for_each_chunk_triple(w, m, v, CHUNK, |i, w, m, v| {
        let g = &grad[i * CHUNK..][..w.len()];
        adamw_chunk(&p, factor, g, w, m, v);
    });
}

crate::cpu::avx2_dispatch!(fn adamw_chunk(
    p: &AdamParams,
    factor: f32,
    grad: &[f32],
    w: &mut [f32],
    m: &mut [f32],
    v: &mut [f32],
) => adamw_body);

#[inline(always)]
fn adamw_body(
    p: &AdamParams,
    factor: f32,
    grad: &[f32],
    w: &mut [f32],
    m: &mut [f32],
    v: &mut [f32],
) {
    let decay = 1.0 - p.lr * p.weight_decay;
    for (((w, m), v), &g) in w.iter_mut().zip(m.iter_mut()).zip(v.iter_mut()).zip(grad) {
        let g = g * factor;
        let mj = p.beta1 * *m + (1.0 - p.beta1) * g;
        let vj = p.beta2 * *v + (1.0 - p.beta2) * g * g;
        *m = mj;
        *v = vj;
        *w = *w * decay - p.lr * (p.c1 * mj) / ((p.c2 * vj).sqrt() + p.eps);
    }
}

/// CPU twin of `sgd_momentum` (element-wise, so the chunks run in parallel with the same result).
pub fn sgd_momentum_cpu(step: SgdStep, grad: &[f32], w: &mut [f32], velocity: &mut [f32]) {
    const CHUNK: usize = 1 << 16;
    crate::cpu::for_each_chunk_pair(w, velocity, CHUNK, |i, w, velocity| {
        let grad = &grad[i * CHUNK..][..w.len()];
        for ((wi, vi), &gi) in w.iter_mut().zip(velocity.iter_mut()).zip(grad) {
            let g = gi + step.weight_decay * *wi;
            let v = step.momentum * *vi + g;
            *vi = v;
            *wi -= step.lr * v;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bit-identical to the straightforward element loop over lengths spanning several chunks, with
    /// and without a clip factor.
    #[test]
    fn vectorised_adamw_matches_the_reference() {
        let reference = |step: AdamWStep,
                         factor: f32,
                         grad: &[f32],
                         w: &mut [f32],
                         m: &mut [f32],
                         v: &mut [f32]| {
            let p = step.params(w.len(), ClipBy::default());
            for j in 0..w.len() {
                let g = grad[j] * factor;
                let mj = p.beta1 * m[j] + (1.0 - p.beta1) * g;
                let vj = p.beta2 * v[j] + (1.0 - p.beta2) * g * g;
                m[j] = mj;
                v[j] = vj;
                w[j] = w[j] * (1.0 - p.lr * p.weight_decay)
                    - p.lr * (p.c1 * mj) / ((p.c2 * vj).sqrt() + p.eps);
            }
        };
        for n in [1, 7, 33, 130, (1 << 14) * 2 + 5] {
            let wave = |f: f32| (0..n).map(|k| (k as f32 * f).sin()).collect::<Vec<f32>>();
            let grad = wave(0.3);
            let (mut w, mut m, mut v) = (
                wave(0.7),
                wave(1.1),
                wave(0.2).iter().map(|x| x * x).collect::<Vec<_>>(),
            );
            let (mut w0, mut m0, mut v0) = (w.clone(), m.clone(), v.clone());
            for (t, factor) in [(1, 1.0), (2, 0.37)] {
                let step = AdamWStep {
                    lr: 1e-2,
                    beta1: 0.9,
                    beta2: 0.95,
                    eps: 1e-8,
                    weight_decay: 0.1,
                    t,
                };
                adamw_cpu(step, factor, &grad, &mut w, &mut m, &mut v);
                reference(step, factor, &grad, &mut w0, &mut m0, &mut v0);
                let bits = |x: &[f32]| x.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&w), bits(&w0), "w, {n} elements, t {t}");
                assert_eq!(bits(&m), bits(&m0), "m, {n} elements, t {t}");
                assert_eq!(bits(&v), bits(&v0), "v, {n} elements, t {t}");
            }
        }
    }

    #[test]
    fn adamw_first_steps_by_hand() {
        // t = 1: m = 0.1·g, v = 0.001·g², so c1·m = g and c2·v = g²: the step is lr·g/(|g| + eps),
        // after the decoupled decay w·(1 − lr·wd).
        let step = AdamWStep {
            lr: 0.1,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
            t: 1,
        };
        let (mut w, mut m, mut v) = ([1.0f32, -2.0], [0.0f32; 2], [0.0f32; 2]);
        adamw_cpu(step, 1.0, &[0.5, -4.0], &mut w, &mut m, &mut v);
        assert!((w[0] - (1.0 * 0.999 - 0.1)).abs() < 1e-6, "{}", w[0]);
        assert!((w[1] - (-2.0 * 0.999 + 0.1)).abs() < 1e-6, "{}", w[1]);
        // t = 2 with the same gradient: the moments are bias-corrected back to g and g².
        adamw_cpu(
            AdamWStep { t: 2, ..step },
            1.0,
            &[0.5, -4.0],
            &mut w,
            &mut m,
            &mut v,
        );
        assert!(
            (w[0] - ((0.999 - 0.1) * 0.999 - 0.1)).abs() < 1e-5,
            "{}",
            w[0]
        );
    }

    #[test]
    fn matches_pytorch_sgd_by_hand() {
        // PyTorch: v1 = g + wd·w = 1 + 0.1·2 = 1.2, w1 = 2 − 0.5·1.2 = 1.4;
        // v2 = 0.9·1.2 + (1 + 0.1·1.4) = 2.22, w2 = 1.4 − 0.5·2.22 = 0.29.
        let step = SgdStep::new(0.5, 0.9, 0.1);
        let (mut w, mut v) = ([2.0f32], [0.0f32]);
        sgd_momentum_cpu(step, &[1.0], &mut w, &mut v);
        assert!((w[0] - 1.4).abs() < 1e-6 && (v[0] - 1.2).abs() < 1e-6);
        sgd_momentum_cpu(step, &[1.0], &mut w, &mut v);
        assert!((w[0] - 0.29).abs() < 1e-6 && (v[0] - 2.22).abs() < 1e-6);
    }
}
