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

/// Tokens per task of the twins: one task owns a block of columns across every feature row.
const BLOCK: usize = 256;
/// Interleaved partial sums of the twin's `dgain` reduction over a block.
const LANES: usize = 8;

/// CPU twin of `rmsnorm_forward`, bit-identical to the shader's order (each token's squares summed
/// over features in order). Parallel over blocks of `BLOCK` tokens, each walking the feature rows
/// with its tokens' sums in one contiguous vector (vectorised across tokens).
pub fn rmsnorm_forward_cpu(
    tokens: usize,
    eps: f32,
    x: &[f32],
    gain: &[f32],
    y: &mut [f32],
    rstd: &mut [f32],
) {
    let blocks = crate::cpu::column_blocks(y, tokens, BLOCK);
    let items: Vec<_> = blocks.into_iter().zip(rstd.chunks_mut(BLOCK)).collect();
    crate::cpu::map_items(items, |b, (mut y, rstd)| {
        forward_block(b * BLOCK, tokens, eps, x, gain, &mut y, rstd);
    });
}

crate::cpu::avx2_dispatch!(fn forward_block(
    c0: usize,
    tokens: usize,
    eps: f32,
    x: &[f32],
    gain: &[f32],
    y: &mut [&mut [f32]],
    rstd: &mut [f32],
) => forward_block_body);

/// [`rmsnorm_forward_cpu`] for tokens `c0 .. c0 + rstd.len()`: `y` holds their part of each row.
#[inline(always)]
fn forward_block_body(
    c0: usize,
    tokens: usize,
    eps: f32,
    x: &[f32],
    gain: &[f32],
    y: &mut [&mut [f32]],
    rstd: &mut [f32],
) {
    let (w, d) = (rstd.len(), gain.len());
    let row = |i: usize| &x[i * tokens + c0..][..w];
    let mut ss = [0.0f32; BLOCK];
    let ss = &mut ss[..w];
    for i in 0..d {
        for (s, &v) in ss.iter_mut().zip(row(i)) {
            *s += v * v;
        }
    }
    for (r, &s) in rstd.iter_mut().zip(ss.iter()) {
        *r = 1.0 / (s / d as f32 + eps).sqrt();
    }
    for (i, (out, &g)) in y.iter_mut().zip(gain).enumerate() {
        for ((o, &v), &r) in out.iter_mut().zip(row(i)).zip(rstd.iter()) {
            *o = g * v * r;
        }
    }
}

/// CPU twin of `rmsnorm_backward` (both roles); with `accumulate` the input gradient is added to
/// `dx`. Parallel over blocks of `BLOCK` tokens as [`rmsnorm_forward_cpu`]; `dx` is
/// bit-identical to the shader's order. `dgain` sums in another order than the shader's (which
/// goes through the tokens in order): per block, token `t` into partial sum `t mod 8`, the 8 added
/// in order; then the blocks' sums in block order — fixed, whatever the thread count.
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
    if d == 0 {
        return;
    }
    let blocks = crate::cpu::column_blocks(dx, tokens, BLOCK);
    let mut partials = vec![0.0f32; blocks.len() * d];
    let items: Vec<_> = blocks.into_iter().zip(partials.chunks_mut(d)).collect();
    crate::cpu::map_items(items, |b, (mut dx, part)| {
        let inputs = BackwardInputs {
            c0: b * BLOCK,
            tokens,
            accumulate,
            x,
            gain,
            rstd,
            dy,
        };
        backward_block(inputs, &mut dx, part);
    });
    for (i, o) in dgain.iter_mut().enumerate() {
        *o = partials.iter().skip(i).step_by(d).fold(0.0, |a, &p| a + p);
    }
}

/// What one block of [`rmsnorm_backward_cpu`] reads.
#[derive(Clone, Copy)]
struct BackwardInputs<'a> {
    /// First token of the block.
    c0: usize,
    tokens: usize,
    accumulate: bool,
    x: &'a [f32],
    gain: &'a [f32],
    rstd: &'a [f32],
    dy: &'a [f32],
}

crate::cpu::avx2_dispatch!(fn backward_block(
    inputs: BackwardInputs<'_>,
    dx: &mut [&mut [f32]],
    dgain_part: &mut [f32],
) => backward_block_body);

/// [`rmsnorm_backward_cpu`] for one block: `dx` holds its part of each row, `dgain_part[i]` gets
/// row `i`'s sum over the block.
#[inline(always)]
fn backward_block_body<'a>(p: BackwardInputs<'a>, dx: &mut [&mut [f32]], dgain_part: &mut [f32]) {
    let d = p.gain.len();
    let w = dx.first().map_or(0, |r| r.len());
    let row = |v: &'a [f32], i: usize| -> &'a [f32] { &v[i * p.tokens + p.c0..][..w] };
    let r = &p.rstd[p.c0..][..w];
    let mut s = [0.0f32; BLOCK];
    let s = &mut s[..w];
    for (j, &g) in p.gain.iter().enumerate() {
        for ((a, &u), &v) in s.iter_mut().zip(row(p.dy, j)).zip(row(p.x, j)) {
            *a += g * u * v;
        }
    }
    let mut c = [0.0f32; BLOCK];
    let c = &mut c[..w];
    for ((c, &s), &r) in c.iter_mut().zip(s.iter()).zip(r) {
        *c = r * r * s / d as f32;
    }
    for (i, (out, &g)) in dx.iter_mut().zip(p.gain).enumerate() {
        let (dy, x) = (row(p.dy, i), row(p.x, i));
        let terms = out.iter_mut().zip(dy).zip(x).zip(r.iter().zip(c.iter()));
        if p.accumulate {
            for (((o, &u), &v), (&r, &c)) in terms {
                *o += r * (g * u - v * c);
            }
        } else {
            for (((o, &u), &v), (&r, &c)) in terms {
                *o = r * (g * u - v * c);
            }
        }
        let mut lanes = [0.0f32; LANES];
        let (dyc, xc, rc) = (
            dy.chunks_exact(LANES),
            x.chunks_exact(LANES),
            r.chunks_exact(LANES),
        );
        let tail = dyc
            .remainder()
            .iter()
            .zip(xc.remainder())
            .zip(rc.remainder());
        for ((u, v), r) in dyc.zip(xc).zip(rc) {
            for (((a, &u), &v), &r) in lanes.iter_mut().zip(u).zip(v).zip(r) {
                *a += u * v * r;
            }
        }
        for (l, ((&u, &v), &r)) in tail.enumerate() {
            lanes[l] += u * v * r;
        }
        dgain_part[i] = lanes.iter().fold(0.0, |a, &v| a + v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The straightforward twins (one token at a time, the shader's order) the fast ones are
    /// checked against.
    mod reference {
        pub fn forward(
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

        #[allow(clippy::too_many_arguments)]
        pub fn backward(
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
    }

    fn data(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|k| {
                ((k as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) >> 8) as f32
                    / (1u32 << 23) as f32
                    - 1.0
            })
            .collect()
    }

    /// Forward and `dx` bit-identical to the reference; `dgain` (another summation order) within
    /// `1e-6 · Σ_t |term|` — a few ulp of the terms' magnitude. Outputs start as NaN.
    #[test]
    fn blocked_twins_match_the_reference_at_odd_sizes() {
        for d in [1, 5, 130] {
            for tokens in [1, 7, 33, 513] {
                let n = d * tokens;
                let (x, dy, old) = (data(n, 1), data(n, 2), data(n, 3));
                let gain: Vec<f32> = data(d, 4).iter().map(|g| 1.0 + g).collect();
                let (mut y, mut r) = (vec![f32::NAN; n], vec![f32::NAN; tokens]);
                let (mut y0, mut r0) = (vec![f32::NAN; n], vec![f32::NAN; tokens]);
                rmsnorm_forward_cpu(tokens, 1e-5, &x, &gain, &mut y, &mut r);
                reference::forward(tokens, 1e-5, &x, &gain, &mut y0, &mut r0);
                let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&y), bits(&y0), "y {d}x{tokens}");
                assert_eq!(bits(&r), bits(&r0), "rstd {d}x{tokens}");
                for accumulate in [false, true] {
                    let start = if accumulate {
                        old.clone()
                    } else {
                        vec![f32::NAN; n]
                    };
                    let (mut dx, mut dg) = (start.clone(), vec![f32::NAN; d]);
                    let (mut dx0, mut dg0) = (start, vec![f32::NAN; d]);
                    rmsnorm_backward_cpu(tokens, accumulate, &x, &gain, &r, &dy, &mut dx, &mut dg);
                    reference::backward(tokens, accumulate, &x, &gain, &r, &dy, &mut dx0, &mut dg0);
                    assert_eq!(bits(&dx), bits(&dx0), "dx {d}x{tokens} {accumulate}");
                    for i in 0..d {
                        let scale: f32 = (0..tokens)
                            .map(|t| (dy[i * tokens + t] * x[i * tokens + t] * r[t]).abs())
                            .sum();
                        assert!(
                            (dg[i] - dg0[i]).abs() <= 1e-6 * scale,
                            "dgain[{i}] {d}x{tokens}: {} vs {}",
                            dg[i],
                            dg0[i]
                        );
                    }
                }
            }
        }
    }

    /// The same bits on one thread as on the default pool (`dgain` sums across blocks).
    #[cfg(not(target_arch = "wasm32"))]
    #[test]
    fn results_do_not_depend_on_the_thread_count() {
        let (d, tokens) = (5, 1031);
        let n = d * tokens;
        let (x, dy) = (data(n, 5), data(n, 6));
        let gain = data(d, 7);
        let run = || {
            let (mut y, mut r) = (vec![0.0; n], vec![0.0; tokens]);
            rmsnorm_forward_cpu(tokens, 1e-5, &x, &gain, &mut y, &mut r);
            let (mut dx, mut dg) = (vec![0.0; n], vec![0.0; d]);
            rmsnorm_backward_cpu(tokens, false, &x, &gain, &r, &dy, &mut dx, &mut dg);
            [y, r, dx, dg]
                .concat()
                .iter()
                .map(|v| v.to_bits())
                .collect::<Vec<_>>()
        };
        let one = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap()
            .install(run);
        let three = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap()
            .install(run);
        assert_eq!(one, three);
    }

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
