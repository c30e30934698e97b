//! Rotary position embeddings (LLaMA's rotate-half form); shader `shaders/rope.wgsl`.
//!
//! The angles live in host-computed tables ([`RopeTables`]), uploaded once, so every backend
//! rotates by the same bits.

use crate::device::{Backend, Device};
use crate::error::{Result, shape_err};
use crate::gpu::{Access, Kernel};
use crate::ops::{bytes, grid_1d};
use crate::tensor::{DType, Tensor, as_f32, as_f32_mut};

pub(crate) const KERNEL: Kernel = Kernel {
    family: "rope",
    source: include_str!("../../shaders/rope.wgsl"),
    entry: "rope",
    access: &[Access::Read, Access::Read, Access::Read, Access::ReadWrite],
};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    head_dim: u32,
    tokens: u32,
    seq: u32,
    sign: f32,
    _pad: [u32; 3],
}

/// Rotate forward (the model) or by the transposed rotation (its gradient).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RopeDirection {
    /// `y = R(pos)·x`.
    Forward,
    /// `dx = R(pos)ᵀ·dy`.
    Backward,
}

/// `cos` and `sin` of every (position, frequency) pair: `[seq, head_dim/2]` row-major, with
/// frequency `i` at `base^(−2i/head_dim)` (base 10000 in LLaMA).
#[derive(Clone, Debug, PartialEq)]
pub struct RopeTables {
    /// Dimensions per head (even).
    pub head_dim: usize,
    /// Positions covered.
    pub seq: usize,
    /// `cos(pos·freq_i)` at `pos·head_dim/2 + i`.
    pub cos: Vec<f32>,
    /// `sin(pos·freq_i)` at `pos·head_dim/2 + i`.
    pub sin: Vec<f32>,
}

impl RopeTables {
    /// The tables for `seq` positions (angles computed in f64, then rounded once).
    pub fn new(head_dim: usize, seq: usize, base: f64) -> Result<RopeTables> {
        if head_dim == 0 || !head_dim.is_multiple_of(2) || seq == 0 || base.is_nan() || base <= 1.0
        {
            return Err(shape_err(
                "rope",
                format!(
                    "head_dim must be even and positive, seq positive and base > 1 (got {head_dim}, {seq}, {base})"
                ),
            ));
        }
        let half = head_dim / 2;
        let mut cos = Vec::with_capacity(seq * half);
        let mut sin = Vec::with_capacity(seq * half);
        for pos in 0..seq {
            for i in 0..half {
                let angle = pos as f64 * base.powf(-2.0 * i as f64 / head_dim as f64);
                cos.push(angle.cos() as f32);
                sin.push(angle.sin() as f32);
            }
        }
        Ok(RopeTables {
            head_dim,
            seq,
            cos,
            sin,
        })
    }
}

impl Device {
    /// Rotates `x: [heads·head_dim, tokens]` into `y` (same shape; token `t` at position
    /// `t mod seq`), with `cos`/`sin` tensors `[seq, head_dim/2]` uploaded from [`RopeTables`].
    pub fn rope(
        &self,
        x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        head_dim: usize,
        direction: RopeDirection,
        y: &Tensor,
    ) -> Result<()> {
        const OP: &str = "rope";
        let (rows, tokens) = (x.rows(), x.cols());
        if head_dim == 0 || !head_dim.is_multiple_of(2) || !rows.is_multiple_of(head_dim) {
            return Err(shape_err(
                OP,
                format!("{rows} rows are not whole heads of even size {head_dim}"),
            ));
        }
        let seq = cos.rows();
        x.expect(OP, DType::F32, rows, tokens)?;
        cos.expect(OP, DType::F32, seq, head_dim / 2)?;
        sin.expect(OP, DType::F32, seq, head_dim / 2)?;
        y.expect(OP, DType::F32, rows, tokens)?;
        let sign = match direction {
            RopeDirection::Forward => 1.0,
            RopeDirection::Backward => -1.0,
        };
        match &self.backend {
            Backend::Gpu(g) => {
                let params = Params {
                    rows: rows as u32,
                    head_dim: head_dim as u32,
                    tokens: tokens as u32,
                    seq: seq as u32,
                    sign,
                    _pad: [0; 3],
                };
                g.dispatch(
                    &KERNEL,
                    &[],
                    bytes(&params),
                    &[x, cos, sin, y],
                    grid_1d(rows / 2 * tokens),
                )
            }
            Backend::Cpu => {
                let _timer = self.op_timer(OP);
                let (xv, cv, sv) = (x.cpu_read(OP)?, cos.cpu_read(OP)?, sin.cpu_read(OP)?);
                let mut yv = y.cpu_write(OP)?;
                rope_cpu(
                    head_dim,
                    tokens,
                    sign,
                    as_f32(&xv),
                    as_f32(&cv),
                    as_f32(&sv),
                    as_f32_mut(&mut yv),
                );
                Ok(())
            }
        }
    }
}

/// CPU twin of `rope` (`sign` +1 forward, −1 backward; `x.len() / tokens` rows), bit-identical to
/// the shader. Parallel over the rotated pairs of rows; the tables are first transposed to
/// `[head_dim/2, seq]` (sin times `sign`, exact), so each pair's loop over tokens reads them
/// contiguously and vectorises.
pub fn rope_cpu(
    head_dim: usize,
    tokens: usize,
    sign: f32,
    x: &[f32],
    cos: &[f32],
    sin: &[f32],
    y: &mut [f32],
) {
    let half = head_dim / 2;
    if half == 0 || tokens == 0 {
        return;
    }
    let seq = cos.len() / half;
    assert!(seq > 0, "rope: empty tables");
    let (mut ct, mut st) = (vec![0.0f32; half * seq], vec![0.0f32; half * seq]);
    for (pos, (c, s)) in cos
        .chunks_exact(half)
        .zip(sin.chunks_exact(half))
        .enumerate()
    {
        for i in 0..half {
            ct[i * seq + pos] = c[i];
            st[i * seq + pos] = sign * s[i];
        }
    }
    let mut pairs = Vec::with_capacity(y.len() / tokens / 2);
    for (head, rows) in y.chunks_exact_mut(head_dim * tokens).enumerate() {
        let (first, second) = rows.split_at_mut(half * tokens);
        let rows = first
            .chunks_exact_mut(tokens)
            .zip(second.chunks_exact_mut(tokens));
        for (i, (y0, y1)) in rows.enumerate() {
            pairs.push((head * head_dim + i, i, y0, y1));
        }
    }
    crate::cpu::map_items(pairs, |_, (r0, i, y0, y1)| {
        let x0 = &x[r0 * tokens..][..tokens];
        let x1 = &x[(r0 + half) * tokens..][..tokens];
        let table = (&ct[i * seq..][..seq], &st[i * seq..][..seq]);
        rotate_pair(x0, x1, table, y0, y1);
    });
}

crate::cpu::avx2_dispatch!(fn rotate_pair(
    x0: &[f32],
    x1: &[f32],
    table: (&[f32], &[f32]),
    y0: &mut [f32],
    y1: &mut [f32],
) => rotate_pair_body);

/// Rotates one pair of rows, token `t` by the tables' entry `t mod seq` (`seq` = their length).
#[inline(always)]
fn rotate_pair_body(
    x0: &[f32],
    x1: &[f32],
    (cos, sin): (&[f32], &[f32]),
    y0: &mut [f32],
    y1: &mut [f32],
) {
    let seq = cos.len();
    let runs = y0.chunks_mut(seq).zip(y1.chunks_mut(seq));
    for ((y0, y1), (x0, x1)) in runs.zip(x0.chunks(seq).zip(x1.chunks(seq))) {
        let outs = y0.iter_mut().zip(y1.iter_mut());
        for (((o0, o1), (&a, &b)), (&c, &s)) in outs.zip(x0.iter().zip(x1)).zip(cos.iter().zip(sin))
        {
            *o0 = a * c - b * s;
            *o1 = b * c + a * s;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The straightforward twin (row pair by row pair, token by token).
    fn reference(
        head_dim: usize,
        tokens: usize,
        sign: f32,
        x: &[f32],
        cos: &[f32],
        sin: &[f32],
        y: &mut [f32],
    ) {
        let half = head_dim / 2;
        let seq = cos.len() / half;
        let heads = x.len() / tokens / head_dim;
        for head in 0..heads {
            for i in 0..half {
                let (r0, r1) = (head * head_dim + i, head * head_dim + i + half);
                for t in 0..tokens {
                    let a = (t % seq) * half + i;
                    let (c, s) = (cos[a], sign * sin[a]);
                    let (x0, x1) = (x[r0 * tokens + t], x[r1 * tokens + t]);
                    y[r0 * tokens + t] = x0 * c - x1 * s;
                    y[r1 * tokens + t] = x1 * c + x0 * s;
                }
            }
        }
    }

    /// Bit-identical to the reference, both directions, odd token counts (wrapping positions and a
    /// run shorter than `seq`), one to several heads; outputs start as NaN.
    #[test]
    fn pairwise_twin_matches_the_reference_at_odd_sizes() {
        for (heads, head_dim, seq) in [(1, 2, 1), (3, 6, 5), (2, 32, 128)] {
            let t = RopeTables::new(head_dim, seq, 10_000.0).unwrap();
            for tokens in [1, 7, 33, 300] {
                let n = heads * head_dim * tokens;
                let x: Vec<f32> = (0..n).map(|k| (k as f32 * 0.37).sin()).collect();
                for sign in [1.0, -1.0] {
                    let (mut y, mut y0) = (vec![f32::NAN; n], vec![f32::NAN; n]);
                    rope_cpu(head_dim, tokens, sign, &x, &t.cos, &t.sin, &mut y);
                    reference(head_dim, tokens, sign, &x, &t.cos, &t.sin, &mut y0);
                    let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                    assert_eq!(
                        bits(&y),
                        bits(&y0),
                        "{heads}x{head_dim}, seq {seq}, {tokens} tokens"
                    );
                }
            }
        }
    }

    #[test]
    fn position_zero_is_identity_and_backward_inverts_forward() {
        let t = RopeTables::new(4, 3, 10_000.0).unwrap();
        assert_eq!(&t.cos[..2], &[1.0, 1.0]);
        assert_eq!(&t.sin[..2], &[0.0, 0.0]);
        // 2 heads of 4 dims, 3 tokens at positions 0, 1, 2.
        let x: Vec<f32> = (0..8 * 3).map(|k| (k as f32 * 0.37).sin()).collect();
        let mut y = vec![0.0; x.len()];
        rope_cpu(4, 3, 1.0, &x, &t.cos, &t.sin, &mut y);
        for r in 0..8 {
            assert_eq!(y[r * 3], x[r * 3], "position 0 must not move");
        }
        let mut back = vec![0.0; x.len()];
        rope_cpu(4, 3, -1.0, &y, &t.cos, &t.sin, &mut back);
        for (a, b) in back.iter().zip(&x) {
            assert!((a - b).abs() < 1e-6);
        }
        // A rotation keeps each pair's length.
        let n = |v: &[f32], r0: usize, t: usize| v[r0 * 3 + t].hypot(v[(r0 + 2) * 3 + t]);
        assert!((n(&y, 1, 2) - n(&x, 1, 2)).abs() < 1e-6);
    }

    #[test]
    fn bad_shapes_are_errors() {
        assert!(RopeTables::new(3, 4, 10_000.0).is_err());
        assert!(RopeTables::new(4, 0, 10_000.0).is_err());
        let d = Device::cpu();
        let x = d.zeros("x", 6, 2, DType::F32);
        let t = RopeTables::new(4, 2, 10_000.0).unwrap();
        let c = d.tensor_f32("cos", 2, 2, &t.cos).unwrap();
        let s = d.tensor_f32("sin", 2, 2, &t.sin).unwrap();
        let y = d.zeros("y", 6, 2, DType::F32);
        assert!(d.rope(&x, &c, &s, 4, RopeDirection::Forward, &y).is_err());
    }
}
