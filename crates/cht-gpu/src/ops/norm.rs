//! RMSNorm forward and backward (the Transformer's norms); shader `shaders/norm.wgsl`.
//!
//! Activations are feature-major, `[d, tokens]`, like every other activation in cht.

use crate::device::{Backend, Device};
use crate::error::Result;
use crate::gpu::{Access, Kernel};
use crate::ops::{WG, bytes, grid_1d};
use crate::tensor::{DType, Tensor, as_f32, as_f32_mut};

const SOURCE: &str = include_str!("../../shaders/norm.wgsl");
pub(crate) const FORWARD: Kernel = Kernel {
    family: "norm",
    source: SOURCE,
    entry: "rmsnorm_forward",
    access: &[
        Access::Read,
        Access::Read,
        Access::ReadWrite,
        Access::ReadWrite,
    ],
};
pub(crate) const BACKWARD: Kernel = Kernel {
    family: "norm",
    source: SOURCE,
    entry: "rmsnorm_backward",
    access: &[
        Access::Read,
        Access::Read,
        Access::Read,
        Access::Read,
        Access::ReadWrite,
        Access::ReadWrite,
    ],
};

#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    d: u32,
    tokens: u32,
    eps: f32,
    flags: u32,
    input_groups: u32,
    _pad: [u32; 3],
}

impl Device {
    /// `y = g ⊙ x / rms(x)` per token (column) of `x: [d, tokens]`; also stores each token's
    /// `1/rms` in `rstd: [tokens, 1]` for the backward pass.
    pub fn rmsnorm_forward(
        &self,
        x: &Tensor,
        gain: &Tensor,
        eps: f32,
        y: &Tensor,
        rstd: &Tensor,
    ) -> Result<()> {
        const OP: &str = "rmsnorm_forward";
        let (d, tokens) = (x.rows(), x.cols());
        x.expect(OP, DType::F32, d, tokens)?;
        gain.expect(OP, DType::F32, d, 1)?;
        y.expect(OP, DType::F32, d, tokens)?;
        rstd.expect(OP, DType::F32, tokens, 1)?;
        match &self.backend {
            Backend::Gpu(g) => g.dispatch(
                &FORWARD,
                &[],
                bytes(&params(d, tokens, eps)),
                &[x, gain, y, rstd],
                grid_1d(tokens),
            ),
            Backend::Cpu => {
                let _timer = self.op_timer(OP);
                let (xv, gv) = (x.cpu_read(OP)?, gain.cpu_read(OP)?);
                let (mut yv, mut rv) = (y.cpu_write(OP)?, rstd.cpu_write(OP)?);
                rmsnorm_forward_cpu(
                    tokens,
                    eps,
                    as_f32(&xv),
                    as_f32(&gv),
                    as_f32_mut(&mut yv),
                    as_f32_mut(&mut rv),
                );
                Ok(())
            }
        }
    }

    /// Gradients of [`Device::rmsnorm_forward`]: `dx: [d, tokens]` and `dgain: [d, 1]` from `dy`,
    /// the forward's input `x` and its `rstd` (one dispatch).
    pub fn rmsnorm_backward(
        &self,
        x: &Tensor,
        gain: &Tensor,
        rstd: &Tensor,
        dy: &Tensor,
        dx: &Tensor,
        dgain: &Tensor,
    ) -> Result<()> {
        self.rmsnorm_backward_impl([x, gain, rstd, dy], dx, dgain, false)
    }

    /// [`Device::rmsnorm_backward`] adding the input gradient into `dx` (a residual stream's
    /// gradient) instead of overwriting it.
    pub fn rmsnorm_backward_accumulate(
        &self,
        x: &Tensor,
        gain: &Tensor,
        rstd: &Tensor,
        dy: &Tensor,
        dx: &Tensor,
        dgain: &Tensor,
    ) -> Result<()> {
        self.rmsnorm_backward_impl([x, gain, rstd, dy], dx, dgain, true)
    }

    fn rmsnorm_backward_impl(
        &self,
        [x, gain, rstd, dy]: [&Tensor; 4],
        dx: &Tensor,
        dgain: &Tensor,
        accumulate: bool,
    ) -> Result<()> {
        const OP: &str = "rmsnorm_backward";
        let (d, tokens) = (x.rows(), x.cols());
        x.expect(OP, DType::F32, d, tokens)?;
        gain.expect(OP, DType::F32, d, 1)?;
        rstd.expect(OP, DType::F32, tokens, 1)?;
        dy.expect(OP, DType::F32, d, tokens)?;
        dx.expect(OP, DType::F32, d, tokens)?;
        dgain.expect(OP, DType::F32, d, 1)?;
        match &self.backend {
            Backend::Gpu(g) => {
                let input_groups = tokens.div_ceil(WG);
                let p = Params {
                    flags: u32::from(accumulate),
                    input_groups: input_groups as u32,
                    ..params(d, tokens, 0.0)
                };
                let groups = input_groups + d.div_ceil(WG);
                g.dispatch(
                    &BACKWARD,
                    &[],
                    bytes(&p),
                    &[x, gain, rstd, dy, dx, dgain],
                    crate::ops::grid_1d_wg(groups * WG, WG),
                )
            }
            Backend::Cpu => {
                let _timer = self.op_timer(OP);
                let (xv, gv, rv, dyv) = (
                    x.cpu_read(OP)?,
                    gain.cpu_read(OP)?,
                    rstd.cpu_read(OP)?,
                    dy.cpu_read(OP)?,
                );
                let (mut dxv, mut dgv) = (dx.cpu_write(OP)?, dgain.cpu_write(OP)?);
                rmsnorm_backward_cpu(
                    tokens,
                    accumulate,
                    as_f32(&xv),
                    as_f32(&gv),
                    as_f32(&rv),
                    as_f32(&dyv),
                    as_f32_mut(&mut dxv),
                    as_f32_mut(&mut dgv),
                );
                Ok(())
            }
        }
    }
}

fn params(d: usize, tokens: usize, eps: f32) -> Params {
    Params {
        d: d as u32,
        tokens: tokens as u32,
        eps,
        ..Params::default()
    }
}

/// CPU twin of `rmsnorm_forward` (same summation order as the shader).
pub fn rmsnorm_forward_cpu(
    tokens: usize,
    eps: f32,
    x: &[f32],
    gain: &[f32],
    y: &mut [f32],
    rstd: &mut [f32],
) {
    let d = gain.len();
    for t in 0..tokens {
        let ss = (0..d).fold(0.0f32, |acc, i| {
            let v = x[i * tokens + t];
            acc + v * v
        });
        let r = 1.0 / (ss / d as f32 + eps).sqrt();
        rstd[t] = r;
        for (i, &g) in gain.iter().enumerate() {
            let k = i * tokens + t;
            y[k] = g * x[k] * r;
        }
    }
}

/// CPU twin of `rmsnorm_backward` (both roles); with `accumulate` the input gradient is added to
/// `dx`.
#[allow(clippy::too_many_arguments)]
pub fn rmsnorm_backward_cpu(
    tokens: usize,
    accumulate: bool,
    x: &[f32],
    gain: &[f32],
    rstd: &[f32],
    dy: &[f32],
    dx: &mut [f32],
    dgain: &mut [f32],
) {
    let d = gain.len();
    for (t, &r) in rstd.iter().enumerate().take(tokens) {
        let s = (0..d).fold(0.0f32, |acc, j| {
            let k = j * tokens + t;
            acc + gain[j] * dy[k] * x[k]
        });
        let c = r * r * s / d as f32;
        for (i, &g) in gain.iter().enumerate() {
            let k = i * tokens + t;
            let v = r * (g * dy[k] - x[k] * c);
            dx[k] = if accumulate { dx[k] + v } else { v };
        }
    }
    for (i, o) in dgain.iter_mut().enumerate() {
        let base = i * tokens;
        *o = (0..tokens).fold(0.0f32, |acc, t| acc + dy[base + t] * x[base + t] * rstd[t]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `L = Σ w ⊙ y` for fixed weights `w`, so `dL/dy = w`.
    fn loss(x: &[f32], gain: &[f32], w: &[f32], tokens: usize) -> f64 {
        let mut y = vec![0.0; x.len()];
        let mut r = vec![0.0; tokens];
        rmsnorm_forward_cpu(tokens, 1e-5, x, gain, &mut y, &mut r);
        y.iter().zip(w).map(|(a, b)| f64::from(a * b)).sum()
    }

    #[test]
    fn unit_gain_normalises_each_token() {
        let x = [3.0, 1.0, 4.0, -1.0]; // d = 2, tokens = 2: columns (3, 4) and (1, -1)
        let mut y = [0.0; 4];
        let mut r = [0.0; 2];
        rmsnorm_forward_cpu(2, 0.0, &x, &[1.0, 1.0], &mut y, &mut r);
        let rms0 = (12.5f32).sqrt();
        assert!((y[0] - 3.0 / rms0).abs() < 1e-6 && (y[2] - 4.0 / rms0).abs() < 1e-6);
        assert!((y[1] - 1.0).abs() < 1e-6 && (y[3] + 1.0).abs() < 1e-6);
    }

    #[test]
    fn backward_matches_finite_differences() {
        let (d, tokens) = (5, 3);
        let x: Vec<f32> = (0..d * tokens)
            .map(|k| ((k * 7 % 11) as f32 - 5.0) / 3.0)
            .collect();
        let gain: Vec<f32> = (0..d).map(|i| 0.5 + i as f32 * 0.3).collect();
        let w: Vec<f32> = (0..d * tokens)
            .map(|k| ((k * 5 % 7) as f32 - 3.0) / 2.0)
            .collect();
        let mut y = vec![0.0; d * tokens];
        let mut r = vec![0.0; tokens];
        rmsnorm_forward_cpu(tokens, 1e-5, &x, &gain, &mut y, &mut r);
        let mut dx = vec![0.0; d * tokens];
        let mut dg = vec![0.0; d];
        rmsnorm_backward_cpu(tokens, false, &x, &gain, &r, &w, &mut dx, &mut dg);
        let h = 1e-3;
        for k in 0..x.len() {
            let (mut xp, mut xm) = (x.clone(), x.clone());
            xp[k] += h;
            xm[k] -= h;
            let fd = (loss(&xp, &gain, &w, tokens) - loss(&xm, &gain, &w, tokens))
                / (2.0 * f64::from(h));
            assert!(
                (fd - f64::from(dx[k])).abs() < 2e-3,
                "dx[{k}]: fd {fd}, analytic {}",
                dx[k]
            );
        }
        for i in 0..d {
            let (mut gp, mut gm) = (gain.clone(), gain.clone());
            gp[i] += h;
            gm[i] -= h;
            let fd = (loss(&x, &gp, &w, tokens) - loss(&x, &gm, &w, tokens)) / (2.0 * f64::from(h));
            assert!(
                (fd - f64::from(dg[i])).abs() < 2e-3,
                "dgain[{i}]: fd {fd}, analytic {}",
                dg[i]
            );
        }
    }
}
