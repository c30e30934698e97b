//! SGD with momentum and weight decay; shader `shaders/optim.wgsl`.

use crate::device::{Backend, Device};
use crate::error::Result;
use crate::gpu::{Access, Kernel};
use crate::ops::{bytes, grid_1d};
use crate::tensor::{DType, Tensor, as_f32, as_f32_mut};

const KERNEL: Kernel = Kernel {
    family: "optim",
    source: include_str!("../../../../shaders/optim.wgsl"),
    entry: "sgd_momentum",
    access: &[Access::Read, Access::ReadWrite, Access::ReadWrite],
};

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
                let gv = grad.cpu_read(OP)?;
                let mut wv = w.cpu_write(OP)?;
                let mut vv = velocity.cpu_write(OP)?;
                sgd_momentum_cpu(step, as_f32(&gv), as_f32_mut(&mut wv), as_f32_mut(&mut vv));
                Ok(())
            }
        }
    }
}

/// CPU twin of `sgd_momentum`.
pub fn sgd_momentum_cpu(step: SgdStep, grad: &[f32], w: &mut [f32], velocity: &mut [f32]) {
    for ((wi, vi), &gi) in w.iter_mut().zip(velocity.iter_mut()).zip(grad) {
        let g = gi + step.weight_decay * *wi;
        let v = step.momentum * *vi + g;
        *vi = v;
        *wi -= step.lr * v;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
