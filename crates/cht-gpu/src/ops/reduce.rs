//! Global-norm gradient clipping and residual adds; shader `shaders/reduce.wgsl`.
//!
//! Clipping stays on the device: each gradient's sum of squares goes to a slot, one invocation
//! turns the slots into the clip factor, and every gradient is scaled by it — no readback, no
//! float atomics, the same summation order at every step.

use crate::device::{Backend, Device};
use crate::error::{Result, shape_err};
use crate::gpu::{Access, Kernel};
use crate::ops::{bytes, grid_1d};
use crate::tensor::{DType, Tensor, as_f32, as_f32_mut};

const SOURCE: &str = include_str!("../../shaders/reduce.wgsl");
const RW: &[Access] = &[Access::Read, Access::ReadWrite];
pub(crate) const SUM_SQUARES: Kernel = Kernel {
    family: "reduce",
    source: SOURCE,
    entry: "sum_squares",
    access: RW,
};
pub(crate) const CLIP_FACTOR: Kernel = Kernel {
    family: "reduce",
    source: SOURCE,
    entry: "clip_factor",
    access: RW,
};
pub(crate) const SCALE_BY: Kernel = Kernel {
    family: "reduce",
    source: SOURCE,
    entry: "scale_by",
    access: RW,
};
pub(crate) const SUM_SQUARES_PARTIALS: Kernel = Kernel {
    family: "reduce",
    source: SOURCE,
    entry: "sum_squares_partials",
    access: RW,
};
pub(crate) const ADD_ASSIGN: Kernel = Kernel {
    family: "reduce",
    source: SOURCE,
    entry: "add_assign",
    access: RW,
};
/// Lanes of the `sum_squares` workgroup (`RWG` in the shader).
const RWG: usize = 256;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct Params {
    len: u32,
    slot: u32,
    max_norm: f32,
    seg: u32,
}

/// Parameters of `sum_squares_partials` over `len` elements, writing partials `slot..slot + PARTS`.
pub(crate) fn partials_params(len: usize, slot: usize) -> Params {
    Params {
        len: len as u32,
        slot: slot as u32,
        max_norm: 0.0,
        seg: len.div_ceil(crate::ops::arena::PARTS) as u32,
    }
}

fn params(len: usize, slot: usize, max_norm: f32) -> Params {
    Params {
        len: len as u32,
        slot: slot as u32,
        max_norm,
        seg: 0,
    }
}

impl Device {
    /// Scales every tensor of `grads` so that their global L2 norm is at most `max_norm`
    /// (PyTorch's `clip_grad_norm_`), on the device. `slots: [grads.len(), 1]` is scratch;
    /// `factor: [2, 1]` receives the applied factor and the norm before clipping.
    pub fn clip_grad_norm(
        &self,
        grads: &[&Tensor],
        max_norm: f32,
        slots: &Tensor,
        factor: &Tensor,
    ) -> Result<()> {
        const OP: &str = "clip_grad_norm";
        if !(max_norm > 0.0 && max_norm.is_finite()) {
            return Err(shape_err(
                OP,
                format!("max_norm must be positive, got {max_norm}"),
            ));
        }
        slots.expect(OP, DType::F32, grads.len(), 1)?;
        factor.expect(OP, DType::F32, 2, 1)?;
        for g in grads {
            g.expect(OP, DType::F32, g.rows(), g.cols())?;
        }
        match &self.backend {
            Backend::Gpu(g) => {
                for (slot, t) in grads.iter().enumerate() {
                    g.dispatch(
                        &SUM_SQUARES,
                        &[],
                        bytes(&params(t.len(), slot, 0.0)),
                        &[t, slots],
                        [1, 1, 1],
                    )?;
                }
                g.dispatch(
                    &CLIP_FACTOR,
                    &[],
                    bytes(&params(grads.len(), 0, max_norm)),
                    &[slots, factor],
                    [1, 1, 1],
                )?;
                for t in grads {
                    g.dispatch(
                        &SCALE_BY,
                        &[],
                        bytes(&params(t.len(), 0, 0.0)),
                        &[factor, t],
                        grid_1d(t.len()),
                    )?;
                }
                Ok(())
            }
            Backend::Cpu => {
                let _timer = self.op_timer(OP);
                let mut sv = slots.cpu_write(OP)?;
                for (slot, t) in grads.iter().enumerate() {
                    as_f32_mut(&mut sv)[slot] = sum_squares_cpu(as_f32(&t.cpu_read(OP)?));
                }
                let (f, norm) = clip_factor_cpu(as_f32(&sv), max_norm);
                as_f32_mut(&mut factor.cpu_write(OP)?).copy_from_slice(&[f, norm]);
                for t in grads {
                    as_f32_mut(&mut t.cpu_write(OP)?)
                        .iter_mut()
                        .for_each(|v| *v *= f);
                }
                Ok(())
            }
        }
    }

    /// `y += x` (same shape): residual connections.
    pub fn add_assign(&self, x: &Tensor, y: &Tensor) -> Result<()> {
        const OP: &str = "add_assign";
        x.expect(OP, DType::F32, y.rows(), y.cols())?;
        y.expect(OP, DType::F32, y.rows(), y.cols())?;
        match &self.backend {
            Backend::Gpu(g) => g.dispatch(
                &ADD_ASSIGN,
                &[],
                bytes(&params(y.len(), 0, 0.0)),
                &[x, y],
                grid_1d(y.len()),
            ),
            Backend::Cpu => {
                let _timer = self.op_timer(OP);
                let xv = x.cpu_read(OP)?;
                let mut yv = y.cpu_write(OP)?;
                for (a, &b) in as_f32_mut(&mut yv).iter_mut().zip(as_f32(&xv)) {
                    *a += b;
                }
                Ok(())
            }
        }
    }
}

/// CPU twin of `sum_squares`: the shader's 256 stride partials, then its tree.
pub fn sum_squares_cpu(x: &[f32]) -> f32 {
    let mut partial = [0.0f32; RWG];
    // Lane `l` sums `x[l], x[l + RWG], …` in order, as the shader's lanes do; a run of RWG
    // elements at a time, so the lanes' adds vectorise.
    for run in x.chunks(RWG) {
        for (p, &v) in partial.iter_mut().zip(run) {
            *p += v * v;
        }
    }
    let mut width = RWG / 2;
    while width > 0 {
        for lane in 0..width {
            partial[lane] += partial[lane + width];
        }
        width /= 2;
    }
    partial[0]
}

/// CPU twin of `clip_factor`: `(factor, norm)`.
pub fn clip_factor_cpu(slots: &[f32], max_norm: f32) -> (f32, f32) {
    let norm = slots.iter().fold(0.0f32, |acc, v| acc + v).sqrt();
    ((max_norm / (norm + 1e-6)).min(1.0), norm)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bit-identical to the lane-by-lane strided sums (the shader's order) at odd lengths.
    #[test]
    fn sum_squares_matches_the_strided_reference() {
        for n in [0, 1, 7, 33, 255, 256, 257, 5000] {
            let x: Vec<f32> = (0..n).map(|k| (k as f32 * 0.77).sin() * 3.0).collect();
            let mut partial = [0.0f32; RWG];
            for (lane, p) in partial.iter_mut().enumerate() {
                *p = x
                    .iter()
                    .skip(lane)
                    .step_by(RWG)
                    .fold(0.0, |acc, v| acc + v * v);
            }
            let mut width = RWG / 2;
            while width > 0 {
                for lane in 0..width {
                    partial[lane] += partial[lane + width];
                }
                width /= 2;
            }
            assert_eq!(
                sum_squares_cpu(&x).to_bits(),
                partial[0].to_bits(),
                "{n} elements"
            );
        }
    }

    #[test]
    fn clipping_scales_to_the_max_norm_and_leaves_small_gradients() {
        let d = Device::cpu();
        let a = d.tensor_f32("a", 3, 1, &[3.0, 0.0, 0.0]).unwrap();
        let b = d.tensor_f32("b", 1, 1, &[4.0]).unwrap();
        let slots = d.zeros("slots", 2, 1, DType::F32);
        let factor = d.zeros("factor", 2, 1, DType::F32);
        d.clip_grad_norm(&[&a, &b], 1.0, &slots, &factor).unwrap();
        let f = d.read_f32(&factor).unwrap();
        assert!((f[1] - 5.0).abs() < 1e-6 && (f[0] - 0.2).abs() < 1e-6);
        assert!((d.read_f32(&b).unwrap()[0] - 0.8).abs() < 1e-6);
        d.clip_grad_norm(&[&a, &b], 10.0, &slots, &factor).unwrap();
        assert_eq!(d.read_f32(&factor).unwrap()[0], 1.0);
        assert!(
            d.clip_grad_norm(&[&a], 0.0, &d.zeros("s", 1, 1, DType::F32), &factor)
                .is_err()
        );
    }

    #[test]
    fn sum_squares_twin_matches_a_plain_sum() {
        let x: Vec<f32> = (0..1000).map(|k| (k as f32 * 0.01).sin()).collect();
        let plain: f64 = x.iter().map(|v| f64::from(*v) * f64::from(*v)).sum();
        assert!((f64::from(sum_squares_cpu(&x)) - plain).abs() < 1e-3);
        assert_eq!(sum_squares_cpu(&[]), 0.0);
    }
}
