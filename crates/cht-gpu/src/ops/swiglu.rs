//! SwiGLU gating of the LLaMA feed-forward block; shader `shaders/swiglu.wgsl`.

use crate::device::{Backend, Device};
use crate::error::Result;
use crate::gpu::{Access, Kernel};
use crate::ops::{bytes, grid_1d};
use crate::tensor::{DType, Tensor, as_f32, as_f32_mut};

const SOURCE: &str = include_str!("../../shaders/swiglu.wgsl");
pub(crate) const FORWARD: Kernel = Kernel {
    family: "swiglu",
    source: SOURCE,
    entry: "swiglu_forward",
    access: &[Access::Read, Access::Read, Access::ReadWrite],
};
pub(crate) const BACKWARD: Kernel = Kernel {
    family: "swiglu",
    source: SOURCE,
    entry: "swiglu_backward",
    access: &[
        Access::Read,
        Access::Read,
        Access::Read,
        Access::ReadWrite,
        Access::ReadWrite,
    ],
};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    len: u32,
    _pad: [u32; 3],
}

impl Device {
    /// `h = silu(gate) ⊙ up` (all the same shape).
    pub fn swiglu_forward(&self, gate: &Tensor, up: &Tensor, h: &Tensor) -> Result<()> {
        const OP: &str = "swiglu_forward";
        let (r, c) = (gate.rows(), gate.cols());
        for t in [gate, up, h] {
            t.expect(OP, DType::F32, r, c)?;
        }
        match &self.backend {
            Backend::Gpu(g) => g.dispatch(
                &FORWARD,
                &[],
                bytes(&params(gate.len())),
                &[gate, up, h],
                grid_1d(gate.len()),
            ),
            Backend::Cpu => {
                let _timer = self.op_timer(OP);
                let (a, b) = (gate.cpu_read(OP)?, up.cpu_read(OP)?);
                let mut hv = h.cpu_write(OP)?;
                swiglu_forward_cpu(as_f32(&a), as_f32(&b), as_f32_mut(&mut hv));
                Ok(())
            }
        }
    }

    /// Gradients of [`Device::swiglu_forward`]: `dgate` and `dup` from `dh`.
    pub fn swiglu_backward(
        &self,
        gate: &Tensor,
        up: &Tensor,
        dh: &Tensor,
        dgate: &Tensor,
        dup: &Tensor,
    ) -> Result<()> {
        const OP: &str = "swiglu_backward";
        let (r, c) = (gate.rows(), gate.cols());
        for t in [gate, up, dh, dgate, dup] {
            t.expect(OP, DType::F32, r, c)?;
        }
        match &self.backend {
            Backend::Gpu(g) => g.dispatch(
                &BACKWARD,
                &[],
                bytes(&params(gate.len())),
                &[gate, up, dh, dgate, dup],
                grid_1d(gate.len()),
            ),
            Backend::Cpu => {
                let _timer = self.op_timer(OP);
                let (a, b, d) = (gate.cpu_read(OP)?, up.cpu_read(OP)?, dh.cpu_read(OP)?);
                // dgate and dup may be disjoint views of one storage (stacked gradients).
                Tensor::cpu_write_disjoint(&[dgate, dup], OP, |s| {
                    let [da, db] = s else {
                        unreachable!("two tensors were locked")
                    };
                    swiglu_backward_cpu(
                        as_f32(&a),
                        as_f32(&b),
                        as_f32(&d),
                        as_f32_mut(da),
                        as_f32_mut(db),
                    );
                })
            }
        }
    }
}

fn params(len: usize) -> Params {
    Params {
        len: len as u32,
        _pad: [0; 3],
    }
}

fn sigmoid(z: f32) -> f32 {
    1.0 / (1.0 + (-z).exp())
}

/// CPU twin of `swiglu_forward`.
pub fn swiglu_forward_cpu(gate: &[f32], up: &[f32], h: &mut [f32]) {
    for ((o, &a), &b) in h.iter_mut().zip(gate).zip(up) {
        *o = a * sigmoid(a) * b;
    }
}

/// CPU twin of `swiglu_backward`.
pub fn swiglu_backward_cpu(
    gate: &[f32],
    up: &[f32],
    dh: &[f32],
    dgate: &mut [f32],
    dup: &mut [f32],
) {
    for k in 0..gate.len() {
        let (a, s) = (gate[k], sigmoid(gate[k]));
        dgate[k] = dh[k] * up[k] * s * (1.0 + a * (1.0 - s));
        dup[k] = dh[k] * a * s;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backward_matches_finite_differences() {
        let gate = [-3.0f32, -0.5, 0.0, 0.7, 2.5];
        let up = [0.3f32, -1.2, 2.0, 0.9, -0.4];
        let dh = [1.0f32, -0.5, 0.25, 2.0, 1.5];
        let (mut dg, mut du) = ([0.0; 5], [0.0; 5]);
        swiglu_backward_cpu(&gate, &up, &dh, &mut dg, &mut du);
        let f = |a: f32, b: f32| f64::from(a) / (1.0 + (-f64::from(a)).exp()) * f64::from(b);
        let h = 1e-3;
        for k in 0..5 {
            let fd_a = (f(gate[k] + h, up[k]) - f(gate[k] - h, up[k])) / (2.0 * f64::from(h));
            let fd_b = (f(gate[k], up[k] + h) - f(gate[k], up[k] - h)) / (2.0 * f64::from(h));
            assert!(
                (fd_a * f64::from(dh[k]) - f64::from(dg[k])).abs() < 1e-4,
                "dgate[{k}]"
            );
            assert!(
                (fd_b * f64::from(dh[k]) - f64::from(du[k])).abs() < 1e-4,
                "dup[{k}]"
            );
        }
        let mut out = [0.0; 5];
        swiglu_forward_cpu(&gate, &up, &mut out);
        assert_eq!(out[2], 0.0);
        assert!((f64::from(out[3]) - f(0.7, 0.9)).abs() < 1e-6);
    }
}
