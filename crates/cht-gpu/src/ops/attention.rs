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

const SOURCE: &str = include_str!("../../shaders/attention.wgsl");
pub(crate) const FORWARD: Kernel = Kernel {
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
pub(crate) const BACKWARD_DQ: Kernel = Kernel {
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
pub(crate) const BACKWARD_DKV: Kernel = Kernel {
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
                let _timer = self.op_timer(OP);
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
                let _timer = self.op_timer(OP);
                let (qv, kv, vv) = (q.cpu_read(OP)?, k.cpu_read(OP)?, v.cpu_read(OP)?);
                let (ov, lv, dov) = (o.cpu_read(OP)?, lse.cpu_read(OP)?, dout.cpu_read(OP)?);
                // dq, dk and dv may be disjoint views of one storage (stacked q/k/v gradients).
                Tensor::cpu_write_disjoint(&[d, dq, dk, dv], OP, |s| {
                    let [dd, dqv, dkv, dvv] = s else {
                        unreachable!("four tensors were locked")
                    };
                    attention_backward_cpu(
                        shape,
                        (as_f32(&qv), as_f32(&kv), as_f32(&vv)),
                        (as_f32(&ov), as_f32(&lv), as_f32(&dov)),
                        as_f32_mut(dd),
                        (as_f32_mut(dqv), as_f32_mut(dkv), as_f32_mut(dvv)),
                    );
                })
            }
        }
    }
}

/// One (sequence, head) pair's vectors gathered token-major (`[seq][head_dim]`), so that the CPU
/// twins walk contiguous memory; the feature-major tensors stride by the token count.
struct HeadView {
    seq: usize,
    head_dim: usize,
}

impl HeadView {
    fn new(s: &AttentionShape) -> HeadView {
        HeadView {
            seq: s.seq,
            head_dim: s.head_dim,
        }
    }

    /// Head `h` of sequence `b` of the feature-major `x`, as `[seq][head_dim]`.
    fn gather(&self, s: &AttentionShape, x: &[f32], b: usize, h: usize) -> Vec<f32> {
        let mut out = vec![0f32; self.seq * self.head_dim];
        for c in 0..self.head_dim {
            let src = &x[(h * s.head_dim + c) * s.tokens() + b * s.seq..][..s.seq];
            for (i, &v) in src.iter().enumerate() {
                out[i * self.head_dim + c] = v;
            }
        }
        out
    }

    /// Writes the token-major `local` back into head `h` of sequence `b` of `x`.
    fn scatter(&self, s: &AttentionShape, local: &[f32], b: usize, h: usize, x: &mut [f32]) {
        for c in 0..self.head_dim {
            let dst = &mut x[(h * s.head_dim + c) * s.tokens() + b * s.seq..][..s.seq];
            for (i, v) in dst.iter_mut().enumerate() {
                *v = local[i * self.head_dim + c];
            }
        }
    }

    fn row<'a>(&self, x: &'a [f32], i: usize) -> &'a [f32] {
        &x[i * self.head_dim..(i + 1) * self.head_dim]
    }
}

/// `Σ_c a[c]·b[c]` in channel order (the shader's order).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).fold(0.0f32, |acc, (x, y)| acc + x * y)
}

/// CPU twin of `attn_forward` (the shader's loop order), one (sequence, head) pair per task.
pub fn attention_forward_cpu(
    s: AttentionShape,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    o: &mut [f32],
    lse: &mut [f32],
) {
    let scale = (1.0 / (s.head_dim as f64).sqrt()) as f32;
    let view = HeadView::new(&s);
    let per_head = crate::cpu::map_range(s.batch * s.heads, |bh| {
        let (b, h) = (bh / s.heads, bh % s.heads);
        let (qh, kh, vh) = (
            view.gather(&s, q, b, h),
            view.gather(&s, k, b, h),
            view.gather(&s, v, b, h),
        );
        let mut oh = vec![0f32; s.seq * s.head_dim];
        let mut lse_h = vec![0f32; s.seq];
        let mut scores = vec![0f32; s.seq];
        for i in 0..s.seq {
            let qi = view.row(&qh, i);
            for (j, sc) in scores.iter_mut().enumerate().take(i + 1) {
                *sc = dot(qi, view.row(&kh, j)) * scale;
            }
            let m = scores[..=i].iter().fold(-3.4e38f32, |m, &x| m.max(x));
            let acc = &mut oh[i * s.head_dim..(i + 1) * s.head_dim];
            let mut l = 0.0f32;
            for (j, &sc) in scores[..=i].iter().enumerate() {
                let e = (sc - m).exp();
                l += e;
                for (a, &vc) in acc.iter_mut().zip(view.row(&vh, j)) {
                    *a += e * vc;
                }
            }
            acc.iter_mut().for_each(|a| *a /= l);
            lse_h[i] = m + l.ln();
        }
        (oh, lse_h)
    });
    for (bh, (oh, lse_h)) in per_head.into_iter().enumerate() {
        view.scatter(&s, &oh, bh / s.heads, bh % s.heads, o);
        lse[bh * s.seq..(bh + 1) * s.seq].copy_from_slice(&lse_h);
    }
}

/// CPU twin of `attn_backward_dq` then `attn_backward_dkv` (the shaders' per-entry arithmetic;
/// the probabilities and score gradients, which both shaders recompute, are computed once here).
pub fn attention_backward_cpu(
    s: AttentionShape,
    (q, k, v): (&[f32], &[f32], &[f32]),
    (o, lse, dout): (&[f32], &[f32], &[f32]),
    d: &mut [f32],
    (dq, dk, dv): (&mut [f32], &mut [f32], &mut [f32]),
) {
    let scale = (1.0 / (s.head_dim as f64).sqrt()) as f32;
    let view = HeadView::new(&s);
    let (t, hd) = (s.seq, s.head_dim);
    let per_head = crate::cpu::map_range(s.batch * s.heads, |bh| {
        let (b, h) = (bh / s.heads, bh % s.heads);
        let [qh, kh, vh, oh, doh] = [q, k, v, o, dout].map(|x| view.gather(&s, x, b, h));
        let lse_h = &lse[bh * t..(bh + 1) * t];
        let d_h: Vec<f32> = (0..t)
            .map(|i| dot(view.row(&doh, i), view.row(&oh, i)))
            .collect();
        // P and dS, lower triangle row-major (`[i][j]`, j ≤ i).
        let (mut p, mut ds) = (vec![0f32; t * t], vec![0f32; t * t]);
        for i in 0..t {
            for j in 0..=i {
                let sc = dot(view.row(&qh, i), view.row(&kh, j));
                let dp = dot(view.row(&doh, i), view.row(&vh, j));
                let pij = (sc * scale - lse_h[i]).exp();
                p[i * t + j] = pij;
                ds[i * t + j] = pij * (dp - d_h[i]) * scale;
            }
        }
        let (mut dqh, mut dkh, mut dvh) =
            (vec![0f32; t * hd], vec![0f32; t * hd], vec![0f32; t * hd]);
        for i in 0..t {
            let acc = &mut dqh[i * hd..(i + 1) * hd];
            for j in 0..=i {
                let g = ds[i * t + j];
                for (a, &kc) in acc.iter_mut().zip(view.row(&kh, j)) {
                    *a += g * kc;
                }
            }
        }
        for j in 0..t {
            let (ak, av) = (
                &mut dkh[j * hd..(j + 1) * hd],
                &mut dvh[j * hd..(j + 1) * hd],
            );
            for i in j..t {
                let (pij, g) = (p[i * t + j], ds[i * t + j]);
                for ((a_k, a_v), (&qc, &dc)) in ak
                    .iter_mut()
                    .zip(av.iter_mut())
                    .zip(view.row(&qh, i).iter().zip(view.row(&doh, i)))
                {
                    *a_v += pij * dc;
                    *a_k += g * qc;
                }
            }
        }
        (d_h, dqh, dkh, dvh)
    });
    for (bh, (d_h, dqh, dkh, dvh)) in per_head.into_iter().enumerate() {
        let (b, h) = (bh / s.heads, bh % s.heads);
        d[bh * t..(bh + 1) * t].copy_from_slice(&d_h);
        view.scatter(&s, &dqh, b, h, dq);
        view.scatter(&s, &dkh, b, h, dk);
        view.scatter(&s, &dvh, b, h, dv);
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
