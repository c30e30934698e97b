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

/// Elements per task of the twins.
const CHUNK: usize = 1 << 13;

/// `1 / (1 + e^−z)` with the vectorisable `crate::cpu::exp`.
#[inline(always)]
fn sigmoid(z: f32) -> f32 {
    1.0 / (1.0 + crate::cpu::exp(-z))
}

/// CPU twin of `swiglu_forward`: parallel over chunks of `CHUNK` elements, vectorised (the
/// shader's arithmetic, with `crate::cpu::exp` for `exp`).
pub fn swiglu_forward_cpu(gate: &[f32], up: &[f32], h: &mut [f32]) {
    crate::cpu::for_each_chunk(h, CHUNK, |i, h| {
        let at = i * CHUNK..i * CHUNK + h.len();
        forward_chunk(&gate[at.clone()], &up[at], h);
    });
}

crate::cpu::avx2_dispatch!(fn forward_chunk(gate: &[f32], up: &[f32], h: &mut [f32]) => forward_body);

#[inline(always)]
fn forward_body(gate: &[f32], up: &[f32], h: &mut [f32]) {
    for ((o, &a), &b) in h.iter_mut().zip(gate).zip(up) {
        *o = a * sigmoid(a) * b;
    }
}

/// CPU twin of `swiglu_backward`, parallel and vectorised as [`swiglu_forward_cpu`].
pub fn swiglu_backward_cpu(
    gate: &[f32],
    up: &[f32],
    dh: &[f32],
    dgate: &mut [f32],
    dup: &mut [f32],
) {
    crate::cpu::for_each_chunk_pair(dgate, dup, CHUNK, |i, dgate, dup| {
        let at = i * CHUNK..i * CHUNK + dgate.len();
        let inputs = [&gate[at.clone()], &up[at.clone()], &dh[at]];
        backward_chunk(inputs, dgate, dup);
    });
}

crate::cpu::avx2_dispatch!(fn backward_chunk(
    inputs: [&[f32]; 3],
    dgate: &mut [f32],
    dup: &mut [f32],
) => backward_body);

#[inline(always)]
fn backward_body([gate, up, dh]: [&[f32]; 3], dgate: &mut [f32], dup: &mut [f32]) {
    let outs = dgate.iter_mut().zip(dup.iter_mut());
    for ((((og, ou), &a), &b), &d) in outs.zip(gate).zip(up).zip(dh) {
        let s = sigmoid(a);
        *og = d * b * s * (1.0 + a * (1.0 - s));
        *ou = d * a * s;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The straightforward twins (libm `exp`, serial) the fast ones are checked against.
    mod reference {
        fn sigmoid(z: f32) -> f32 {
            1.0 / (1.0 + (-z).exp())
        }

        pub fn forward(gate: &[f32], up: &[f32], h: &mut [f32]) {
            for ((o, &a), &b) in h.iter_mut().zip(gate).zip(up) {
                *o = a * sigmoid(a) * b;
            }
        }

        pub fn backward(gate: &[f32], up: &[f32], dh: &[f32], dgate: &mut [f32], dup: &mut [f32]) {
            for k in 0..gate.len() {
                let (a, s) = (gate[k], sigmoid(gate[k]));
                dgate[k] = dh[k] * up[k] * s * (1.0 + a * (1.0 - s));
                dup[k] = dh[k] * a * s;
            }
        }
    }

    /// Within `4e-7 · (1 + |want|)` of the reference (the 2-ulp `exp`, then a few roundings) at odd
    /// lengths spanning several chunks, gates over [−100, 100]; outputs start as NaN.
    #[test]
    fn vectorised_twins_match_the_reference_at_odd_sizes() {
        for n in [1, 5, 7, 33, 130, 2 * CHUNK + 7] {
            let wave = |k: usize, f: f32| ((k as f32 * f).sin() * 1.3).powi(3);
            let gate: Vec<f32> = (0..n)
                .map(|k| 45.0 * wave(k, 0.71) + wave(k, 3.1))
                .collect();
            let up: Vec<f32> = (0..n).map(|k| wave(k, 0.37)).collect();
            let dh: Vec<f32> = (0..n).map(|k| wave(k, 1.9)).collect();
            let close = |what: &str, got: &[f32], want: &[f32]| {
                for (k, (&g, &w)) in got.iter().zip(want).enumerate() {
                    assert!(
                        (g - w).abs() <= 4e-7 * (1.0 + w.abs()),
                        "{what}[{k}] of {n}: {g} vs {w} (gate {})",
                        gate[k]
                    );
                }
            };
            let (mut h, mut h0) = (vec![f32::NAN; n], vec![f32::NAN; n]);
            swiglu_forward_cpu(&gate, &up, &mut h);
            reference::forward(&gate, &up, &mut h0);
            close("h", &h, &h0);
            let (mut dg, mut du) = (vec![f32::NAN; n], vec![f32::NAN; n]);
            let (mut dg0, mut du0) = (vec![f32::NAN; n], vec![f32::NAN; n]);
            swiglu_backward_cpu(&gate, &up, &dh, &mut dg, &mut du);
            reference::backward(&gate, &up, &dh, &mut dg0, &mut du0);
            close("dgate", &dg, &dg0);
            close("dup", &du, &du0);
        }
    }

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
