//! ReLU backward and bias gradient; shader `shaders/elementwise.wgsl`.

use crate::device::{Backend, Device};
use crate::error::Result;
use crate::gpu::{Access, Kernel};
use crate::ops::{bytes, grid_1d};
use crate::tensor::{DType, Tensor, as_f32, as_f32_mut};

const SOURCE: &str = include_str!("../../shaders/elementwise.wgsl");
pub(crate) const RELU_BACKWARD: Kernel = Kernel {
    family: "elementwise",
    source: SOURCE,
    entry: "relu_backward",
    access: &[Access::Read, Access::ReadWrite],
};
pub(crate) const BIAS_GRAD: Kernel = Kernel {
    family: "elementwise",
    source: SOURCE,
    entry: "bias_grad",
    access: &[Access::Read, Access::ReadWrite],
};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    len: u32,
    batch: u32,
    _pad: [u32; 2],
}

impl Device {
    /// `dy ⊙= (y > 0)` in place, where `y` is the output of a ReLU.
    pub fn relu_backward(&self, y: &Tensor, dy: &Tensor) -> Result<()> {
        const OP: &str = "relu_backward";
        dy.expect(OP, DType::F32, y.rows(), y.cols())?;
        y.expect(OP, DType::F32, y.rows(), y.cols())?;
        match &self.backend {
            Backend::Gpu(g) => {
                let params = Params {
                    len: y.len() as u32,
                    batch: 0,
                    _pad: [0; 2],
                };
                g.dispatch(
                    &RELU_BACKWARD,
                    &[],
                    bytes(&params),
                    &[y, dy],
                    grid_1d(y.len()),
                )
            }
            Backend::Cpu => {
                let _timer = self.op_timer(OP);
                let yv = y.cpu_read(OP)?;
                let mut dv = dy.cpu_write(OP)?;
                relu_backward_cpu(as_f32(&yv), as_f32_mut(&mut dv));
                Ok(())
            }
        }
    }

    /// `db[o] = Σ_b dy[o, b]` for `dy` of shape `[rows, batch]`.
    pub fn bias_grad(&self, dy: &Tensor, db: &Tensor) -> Result<()> {
        const OP: &str = "bias_grad";
        dy.expect(OP, DType::F32, dy.rows(), dy.cols())?;
        db.expect(OP, DType::F32, dy.rows(), 1)?;
        match &self.backend {
            Backend::Gpu(g) => {
                let params = Params {
                    len: dy.rows() as u32,
                    batch: dy.cols() as u32,
                    _pad: [0; 2],
                };
                g.dispatch(
                    &BIAS_GRAD,
                    &[],
                    bytes(&params),
                    &[dy, db],
                    grid_1d(dy.rows()),
                )
            }
            Backend::Cpu => {
                let _timer = self.op_timer(OP);
                let dv = dy.cpu_read(OP)?;
                let mut bv = db.cpu_write(OP)?;
                bias_grad_cpu(dy.cols(), as_f32(&dv), as_f32_mut(&mut bv));
                Ok(())
            }
        }
    }
}

/// CPU twin of `relu_backward`.
pub fn relu_backward_cpu(y: &[f32], dy: &mut [f32]) {
    for (d, &v) in dy.iter_mut().zip(y) {
        if v <= 0.0 {
            *d = 0.0;
        }
    }
}

/// CPU twin of `bias_grad` (sequential sum per row, as the shader).
pub fn bias_grad_cpu(batch: usize, dy: &[f32], db: &mut [f32]) {
    for (r, o) in db.iter_mut().enumerate() {
        *o = dy[r * batch..(r + 1) * batch]
            .iter()
            .fold(0.0, |acc, &v| acc + v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twins() {
        let mut dy = [1.0, 2.0, 3.0, 4.0];
        relu_backward_cpu(&[0.5, 0.0, -1.0, 2.0], &mut dy);
        assert_eq!(dy, [1.0, 0.0, 0.0, 4.0]);
        let mut db = [0.0; 2];
        bias_grad_cpu(2, &dy, &mut db);
        assert_eq!(db, [1.0, 4.0]);
    }
}
