//! Causal multi-head attention, forward and backward; shader `shaders/attention.wgsl`.
//!
//! Activations are feature-major `[heads·head_dim, batch·seq]`. The forward keeps one
//! log-sum-exp per (sequence, head, query) instead of the T×T probabilities; the backward
//! recomputes them, computes `dq` per query and `dk`, `dv` per key, so nothing is scattered.

use crate::device::{Backend, Device};
use crate::error::{Result, shape_err};
use crate::gpu::{Access, Kernel};
use crate::ops::{bytes, grid_1d};
use crate::tensor::{DType, Tensor, as_f32, as_f32_mut};

/// Largest head dimension the kernels accept (`MAX_HD` in the shader).
pub const MAX_HEAD_DIM: usize = 128;

const SOURCE: &str = include_str!("../../../../shaders/attention.wgsl");
const FORWARD: Kernel = Kernel {
    family: "attention",
    source: SOURCE,
    entry: "attn_forward",
    access: &[
        Access::Read,
        Access::Read,
        Access::Read,
        Access::ReadWrite,
        Access::ReadWrite,
    ],
};
const BACKWARD_DQ: Kernel = Kernel {
    family: "attention",
    source: SOURCE,
    entry: "attn_backward_dq",
    access: &[
        Access::Read,
        Access::Read,
        Access::Read,
        Access::Read,
        Access::Read,
        Access::Read,
        Access::ReadWrite,
        Access::ReadWrite,
    ],
};
const BACKWARD_DKV: Kernel = Kernel {
    family: "attention",
    source: SOURCE,
    entry: "attn_backward_dkv",
    access: &[
        Access::Read,
        Access::Read,
        Access::Read,
        Access::Read,
        Access::Read,
        Access::Read,
        Access::ReadWrite,
        Access::ReadWrite,
    ],
};

/// The shape of an attention call: `heads` heads of `head_dim` channels over `batch` sequences of
/// `seq` tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttentionShape {
    /// Channels per head (at most [`MAX_HEAD_DIM`]).
    pub head_dim: usize,
    /// Heads.
    pub heads: usize,
    /// Tokens per sequence.
    pub seq: usize,
    /// Sequences.
    pub batch: usize,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    head_dim: u32,
    heads: u32,
    seq: u32,
    batch: u32,
    scale: f32,
    _pad: [u32; 3],
}

impl AttentionShape {
    fn rows(&self) -> usize {
        self.heads * self.head_dim
    }

    fn tokens(&self) -> usize {
        self.batch * self.seq
    }

    /// Queries over all sequences and heads (the length of the `lse` and `d` vectors).
    pub fn queries(&self) -> usize {
        self.batch * self.heads * self.seq
    }

    fn check(&self, op: &'static str) -> Result<Params> {
        if self.head_dim == 0 || self.head_dim > MAX_HEAD_DIM || self.heads == 0 {
            return Err(shape_err(
                op,
                format!(
                    "head_dim must be 1..={MAX_HEAD_DIM} and heads ≥ 1 (got {} and {})",
                    self.head_dim, self.heads
                ),
            ));
        }
        Ok(Params {
            head_dim: self.head_dim as u32,
            heads: self.heads as u32,
            seq: self.seq as u32,
            batch: self.batch as u32,
            scale: (1.0 / (self.head_dim as f64).sqrt()) as f32,
            _pad: [0; 3],
        })
    }
}

impl Device {
    /// `o = softmax_causal(q·kᵀ/√hd)·v` per sequence and head; stores each query's log-sum-exp in
    /// `lse: [queries, 1]` for the backward pass.
    pub fn attention_forward(
        &self,
        shape: AttentionShape,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        o: &Tensor,
        lse: &Tensor,
    ) -> Result<()> {
        const OP: &str = "attention_forward";
        let params = shape.check(OP)?;
        for t in [q, k, v, o] {
            t.expect(OP, DType::F32, shape.rows(), shape.tokens())?;
        }
        lse.expect(OP, DType::F32, shape.queries(), 1)?;
        match &self.backend {
            Backend::Gpu(g) => g.dispatch(
                &FORWARD,
                &[],
                bytes(&params),
                &[q, k, v, o, lse],
                grid_1d(shape.queries()),
            ),
            Backend::Cpu => {
                let (qv, kv, vv) = (q.cpu_read(OP)?, k.cpu_read(OP)?, v.cpu_read(OP)?);
                let (mut ov, mut lv) = (o.cpu_write(OP)?, lse.cpu_write(OP)?);
                attention_forward_cpu(
                    shape,
                    as_f32(&qv),
                    as_f32(&kv),
                    as_f32(&vv),
                    as_f32_mut(&mut ov),
                    as_f32_mut(&mut lv),
                );
                Ok(())
            }
        }
    }

    /// Gradients `dq`, `dk`, `dv` of [`Device::attention_forward`] from `dout`, its output `o` and
    /// `lse`; `d: [queries, 1]` is scratch (each query's `dO·o`).
    #[allow(clippy::too_many_arguments)]
    pub fn attention_backward(
        &self,
        shape: AttentionShape,
        (q, k, v): (&Tensor, &Tensor, &Tensor),
        (o, lse, dout): (&Tensor, &Tensor, &Tensor),
        d: &Tensor,
        dq: &Tensor,
        dk: &Tensor,
        dv: &Tensor,
    ) -> Result<()> {
        const OP: &str = "attention_backward";
        let params = shape.check(OP)?;
        for t in [q, k, v, o, dout, dq, dk, dv] {
            t.expect(OP, DType::F32, shape.rows(), shape.tokens())?;
        }
        lse.expect(OP, DType::F32, shape.queries(), 1)?;
        d.expect(OP, DType::F32, shape.queries(), 1)?;
        match &self.backend {
            Backend::Gpu(g) => {
                g.dispatch(
                    &BACKWARD_DQ,
                    &[],
                    bytes(&params),
                    &[q, k, v, o, lse, dout, dq, d],
                    grid_1d(shape.queries()),
                )?;
                g.dispatch(
                    &BACKWARD_DKV,
                    &[],
                    bytes(&params),
                    &[q, k, v, d, lse, dout, dk, dv],
                    grid_1d(shape.queries()),
                )
            }
            Backend::Cpu => {
                let (qv, kv, vv) = (q.cpu_read(OP)?, k.cpu_read(OP)?, v.cpu_read(OP)?);
                let (ov, lv, dov) = (o.cpu_read(OP)?, lse.cpu_read(OP)?, dout.cpu_read(OP)?);
                let mut dd = d.cpu_write(OP)?;
                let (mut dqv, mut dkv, mut dvv) =
                    (dq.cpu_write(OP)?, dk.cpu_write(OP)?, dv.cpu_write(OP)?);
                attention_backward_cpu(
                    shape,
                    (as_f32(&qv), as_f32(&kv), as_f32(&vv)),
                    (as_f32(&ov), as_f32(&lv), as_f32(&dov)),
                    as_f32_mut(&mut dd),
                    (
                        as_f32_mut(&mut dqv),
                        as_f32_mut(&mut dkv),
                        as_f32_mut(&mut dvv),
                    ),
                );
                Ok(())
            }
        }
    }
}

/// Index helper: channel `c` of head `h` at token `t`.
fn at(s: &AttentionShape, h: usize, c: usize, t: usize) -> usize {
    (h * s.head_dim + c) * s.tokens() + t
}

fn score(s: &AttentionShape, q: &[f32], k: &[f32], h: usize, ti: usize, tj: usize) -> f32 {
    (0..s.head_dim).fold(0.0f32, |acc, c| {
        acc + q[at(s, h, c, ti)] * k[at(s, h, c, tj)]
    })
}

/// CPU twin of `attn_forward` (the shader's loop order).
pub fn attention_forward_cpu(
    s: AttentionShape,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    o: &mut [f32],
    lse: &mut [f32],
) {
    let scale = (1.0 / (s.head_dim as f64).sqrt()) as f32;
    for (n, lse_n) in lse.iter_mut().enumerate().take(s.queries()) {
        let (i, bh) = (n % s.seq, n / s.seq);
        let (b, h) = (bh / s.heads, bh % s.heads);
        let ti = b * s.seq + i;
        let m = (0..=i).fold(-3.4e38f32, |m, j| {
            m.max(score(&s, q, k, h, ti, b * s.seq + j) * scale)
        });
        let mut acc = vec![0.0f32; s.head_dim];
        let mut l = 0.0f32;
        for j in 0..=i {
            let tj = b * s.seq + j;
            let e = (score(&s, q, k, h, ti, tj) * scale - m).exp();
            l += e;
            for (c, a) in acc.iter_mut().enumerate() {
                *a += e * v[at(&s, h, c, tj)];
            }
        }
        for (c, a) in acc.iter().enumerate() {
            o[at(&s, h, c, ti)] = a / l;
        }
        *lse_n = m + l.ln();
    }
}

/// CPU twin of `attn_backward_dq` then `attn_backward_dkv`.
pub fn attention_backward_cpu(
    s: AttentionShape,
    (q, k, v): (&[f32], &[f32], &[f32]),
    (o, lse, dout): (&[f32], &[f32], &[f32]),
    d: &mut [f32],
    (dq, dk, dv): (&mut [f32], &mut [f32], &mut [f32]),
) {
    let scale = (1.0 / (s.head_dim as f64).sqrt()) as f32;
    let dot_do_v = |h: usize, ti: usize, tj: usize| {
        (0..s.head_dim).fold(0.0f32, |acc, c| {
            acc + dout[at(&s, h, c, ti)] * v[at(&s, h, c, tj)]
        })
    };
    for n in 0..s.queries() {
        let (i, bh) = (n % s.seq, n / s.seq);
        let (b, h) = (bh / s.heads, bh % s.heads);
        let ti = b * s.seq + i;
        let dn = (0..s.head_dim).fold(0.0f32, |acc, c| {
            acc + dout[at(&s, h, c, ti)] * o[at(&s, h, c, ti)]
        });
        d[n] = dn;
        let mut acc = vec![0.0f32; s.head_dim];
        for j in 0..=i {
            let tj = b * s.seq + j;
            let (dot, dp) = (score(&s, q, k, h, ti, tj), dot_do_v(h, ti, tj));
            let ds = (dot * scale - lse[n]).exp() * (dp - dn) * scale;
            for (c, a) in acc.iter_mut().enumerate() {
                *a += ds * k[at(&s, h, c, tj)];
            }
        }
        for (c, a) in acc.iter().enumerate() {
            dq[at(&s, h, c, ti)] = *a;
        }
    }
    for n in 0..s.queries() {
        let (j, bh) = (n % s.seq, n / s.seq);
        let (b, h) = (bh / s.heads, bh % s.heads);
        let tj = b * s.seq + j;
        let row = n - j;
        let (mut ak, mut av) = (vec![0.0f32; s.head_dim], vec![0.0f32; s.head_dim]);
        for i in j..s.seq {
            let ti = b * s.seq + i;
            let (dot, dp) = (score(&s, q, k, h, ti, tj), dot_do_v(h, ti, tj));
            let p = (dot * scale - lse[row + i]).exp();
            let ds = p * (dp - d[row + i]) * scale;
            for c in 0..s.head_dim {
                av[c] += p * dout[at(&s, h, c, ti)];
                ak[c] += ds * q[at(&s, h, c, ti)];
            }
        }
        for c in 0..s.head_dim {
            dk[at(&s, h, c, tj)] = ak[c];
            dv[at(&s, h, c, tj)] = av[c];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|k| (((k as u32).wrapping_mul(2_654_435_761) ^ seed) % 1000) as f32 / 500.0 - 1.0)
            .collect()
    }

    /// `L = Σ w ⊙ attention(q, k, v)`.
    fn loss(s: AttentionShape, q: &[f32], k: &[f32], v: &[f32], w: &[f32]) -> f64 {
        let mut o = vec![0.0; q.len()];
        let mut lse = vec![0.0; s.queries()];
        attention_forward_cpu(s, q, k, v, &mut o, &mut lse);
        o.iter()
            .zip(w)
            .map(|(a, b)| f64::from(*a) * f64::from(*b))
            .sum()
    }

    #[test]
    fn first_query_copies_its_value_and_future_tokens_do_not_leak() {
        let s = AttentionShape {
            head_dim: 2,
            heads: 1,
            seq: 3,
            batch: 1,
        };
        let (q, k, mut v) = (data(6, 1), data(6, 2), data(6, 3));
        let mut o = vec![0.0; 6];
        let mut lse = vec![0.0; 3];
        attention_forward_cpu(s, &q, &k, &v, &mut o, &mut lse);
        assert_eq!(
            (o[0], o[3]),
            (v[0], v[3]),
            "position 0 attends only to itself"
        );
        let before = o.clone();
        v[2] += 5.0; // the last token's value must not change earlier outputs
        attention_forward_cpu(s, &q, &k, &v, &mut o, &mut lse);
        assert_eq!(&o[..2], &before[..2]);
        assert_ne!(o[2], before[2]);
    }

    #[test]
    fn backward_matches_finite_differences() {
        let s = AttentionShape {
            head_dim: 3,
            heads: 2,
            seq: 4,
            batch: 2,
        };
        let n = s.rows() * s.tokens();
        let (q, k, v, w) = (data(n, 11), data(n, 12), data(n, 13), data(n, 14));
        let mut o = vec![0.0; n];
        let mut lse = vec![0.0; s.queries()];
        attention_forward_cpu(s, &q, &k, &v, &mut o, &mut lse);
        let mut d = vec![0.0; s.queries()];
        let (mut dq, mut dk, mut dv) = (vec![0.0; n], vec![0.0; n], vec![0.0; n]);
        attention_backward_cpu(
            s,
            (&q, &k, &v),
            (&o, &lse, &w),
            &mut d,
            (&mut dq, &mut dk, &mut dv),
        );
        let h = 1e-2f32;
        for idx in 0..n {
            for (which, grad) in [(0, &dq), (1, &dk), (2, &dv)] {
                let mut plus = [q.clone(), k.clone(), v.clone()];
                let mut minus = plus.clone();
                plus[which][idx] += h;
                minus[which][idx] -= h;
                let fd = (loss(s, &plus[0], &plus[1], &plus[2], &w)
                    - loss(s, &minus[0], &minus[1], &minus[2], &w))
                    / (2.0 * f64::from(h));
                assert!(
                    (fd - f64::from(grad[idx])).abs() < 2e-3,
                    "input {which}, element {idx}: fd {fd}, analytic {}",
                    grad[idx]
                );
            }
        }
    }
}
