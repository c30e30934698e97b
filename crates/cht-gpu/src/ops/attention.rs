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

/// Lanes of a micro-tile row (two 8-lane vectors): queries in the forward, keys or channels in the
/// backward.
const W: usize = 16;
/// Rows of a micro-tile (keys, queries or channels): the tile is eight 8-lane registers. (Six rows
/// stay in registers only with a bounds check per row, which costs what the larger tile gains.)
const R: usize = 4;
/// Queries per block of the backward, whose probabilities and score gradients are held at once
/// (a multiple of [`R`]).
const BQ: usize = 64;

/// Sizes of one (sequence, head) pair and of its padded scratch.
#[derive(Clone, Copy)]
struct Dims {
    /// Tokens per sequence.
    t: usize,
    /// Channels per head.
    hd: usize,
    /// Heads.
    heads: usize,
    /// Tokens over all sequences (the feature-major row length).
    tokens: usize,
    /// Padded token extent: `t + R − 1` rounded up to [`W`] (room for a last row tile and a last
    /// lane panel).
    tp: usize,
    /// `hd` rounded up to [`R`].
    hr: usize,
    /// `hd` rounded up to [`W`].
    hw: usize,
    /// `1/√hd`.
    scale: f32,
}

impl Dims {
    fn new(s: &AttentionShape) -> Dims {
        Dims {
            t: s.seq,
            hd: s.head_dim,
            heads: s.heads,
            tokens: s.tokens(),
            tp: (s.seq + R - 1).next_multiple_of(W),
            hr: s.head_dim.next_multiple_of(R),
            hw: s.head_dim.next_multiple_of(W),
            scale: (1.0 / (s.head_dim as f64).sqrt()) as f32,
        }
    }
}

/// Pair `bh = b·heads + h` of a feature-major tensor: channel `c` is `seq` contiguous tokens.
#[derive(Clone, Copy)]
struct Head<'a> {
    x: &'a [f32],
    base: usize,
    dm: Dims,
}

impl<'a> Head<'a> {
    fn new(dm: Dims, x: &'a [f32], bh: usize) -> Head<'a> {
        let (b, h) = (bh / dm.heads, bh % dm.heads);
        Head {
            x,
            base: h * dm.hd * dm.tokens + b * dm.t,
            dm,
        }
    }

    fn channel(&self, c: usize) -> &'a [f32] {
        &self.x[self.base + c * self.dm.tokens..][..self.dm.t]
    }
}

/// The rows of each (sequence, head) pair of the feature-major `x`, `[b·heads + h][c]`: disjoint
/// slices, so each pair's task writes its own outputs.
fn head_rows<'a>(x: &'a mut [f32], s: &AttentionShape) -> Vec<Vec<&'a mut [f32]>> {
    let mut out: Vec<Vec<&mut [f32]>> = (0..s.batch * s.heads)
        .map(|_| Vec::with_capacity(s.head_dim))
        .collect();
    for (row, xr) in x.chunks_exact_mut(s.tokens()).enumerate() {
        let h = row / s.head_dim;
        for (b, cols) in xr.chunks_exact_mut(s.seq).enumerate() {
            out[b * s.heads + h].push(cols);
        }
    }
    out
}

/// Channel-major `dst[c·tp + i] = x[c][i]` for `c < hr`, zero past the head and the sequence.
#[inline(always)]
fn pack_channel_major(dst: &mut [f32], x: Head<'_>) {
    let Dims { t, hd, tp, hr, .. } = x.dm;
    for (c, d) in dst.chunks_exact_mut(tp).take(hr).enumerate() {
        let (live, pad) = d.split_at_mut(if c < hd { t } else { 0 });
        if c < hd {
            live.copy_from_slice(x.channel(c));
        }
        pad.fill(0.0);
    }
}

/// Token panels `dst[(it·hd + c)·W + l] = x[c][it·W + l]`, zero past the sequence: `W` tokens as
/// lanes, channels as the reduction.
#[inline(always)]
fn pack_token_panels(dst: &mut [f32], x: Head<'_>) {
    let Dims { t, hd, tp, .. } = x.dm;
    let (rows, _) = dst.as_chunks_mut::<W>();
    for c in 0..hd {
        let src = x.channel(c);
        for it in 0..tp / W {
            let row = &mut rows[it * hd + c];
            let lo = (it * W).min(t);
            let n = (t - lo).min(W);
            row[..n].copy_from_slice(&src[lo..lo + n]);
            row[n..].fill(0.0);
        }
    }
}

/// Channel panels `dst[(ct·tp + i)·W + l] = x[ct·W + l][i]`, zero past the head and the sequence:
/// `W` channels as lanes, tokens as the reduction (a transpose, in `W × W` blocks).
#[inline(always)]
fn pack_channel_panels(dst: &mut [f32], x: Head<'_>) {
    let Dims { t, hd, tp, hw, .. } = x.dm;
    dst[..hw * tp].fill(0.0);
    let (rows, _) = dst.as_chunks_mut::<W>();
    for c0 in (0..hd).step_by(W) {
        for i0 in (0..t).step_by(W) {
            let n = W.min(t - i0);
            for c in c0..hd.min(c0 + W) {
                let src = &x.channel(c)[i0..i0 + n];
                for (row, &v) in rows[c0 / W * tp + i0..][..n].iter_mut().zip(src) {
                    row[c - c0] = v;
                }
            }
        }
    }
}

/// The operands of one micro-tile product: `c[r·ldc + l] = (c[r·ldc + l] if accumulate) +
/// Σ_{kk<k} A(r, kk) · b[kk·ldb + l]` for `r < R`, `l < W`, where `A(r, kk) = a[r·lda + kk]` if
/// `a_rows`, else `a[kk·lda + r]`.
struct Tile<'a> {
    a: (&'a [f32], usize),
    a_rows: bool,
    b: (&'a [f32], usize),
    k: usize,
    c: (&'a mut [f32], usize),
    accumulate: bool,
}

/// The micro-kernel of every product here, on [`Tile`] operands: the `R × W` tile stays in eight
/// 8-lane registers (AVX2); fused multiply-adds when `FUSED`, as the GEMM twin's AVX2 kernel.
#[inline(always)]
fn tile_body<const FUSED: bool>(
    Tile {
        a: (a, lda),
        a_rows,
        b: (b, ldb),
        k,
        c: (c, ldc),
        accumulate,
    }: Tile<'_>,
) {
    let mut acc = [[0f32; W]; R];
    if accumulate {
        for (r, acc_r) in acc.iter_mut().enumerate() {
            acc_r.copy_from_slice(&c[r * ldc..][..W]);
        }
    }
    let fma = |acc_r: &mut [f32; W], av: f32, b_k: &[f32; W]| {
        for (o, &bv) in acc_r.iter_mut().zip(b_k) {
            *o = if FUSED {
                av.mul_add(bv, *o)
            } else {
                *o + av * bv
            };
        }
    };
    let b_row = |kk: usize| -> &[f32; W] { b[kk * ldb..][..W].try_into().expect("W lanes") };
    if a_rows {
        let a_rows: [&[f32]; R] = std::array::from_fn(|r| &a[r * lda..][..k]);
        for kk in 0..k {
            let b_k = b_row(kk);
            for (acc_r, a_r) in acc.iter_mut().zip(&a_rows) {
                fma(acc_r, a_r[kk], b_k);
            }
        }
    } else {
        for kk in 0..k {
            let (a_k, b_k) = (&a[kk * lda..][..R], b_row(kk));
            for (acc_r, &av) in acc.iter_mut().zip(a_k) {
                fma(acc_r, av, b_k);
            }
        }
    }
    for (r, acc_r) in acc.iter().enumerate() {
        c[r * ldc..][..W].copy_from_slice(acc_r);
    }
}

/// [`tile_body`] in plain arithmetic. A function of its own (as is [`tile_avx2`]), so that the
/// tile's registers are allocated apart from the passes around it.
#[inline(never)]
fn tile_plain(t: Tile<'_>) {
    tile_body::<false>(t);
}

/// [`tile_body`] compiled for AVX2 + FMA; called from the `*_avx2` task functions' closures.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline(never)]
fn tile_avx2(t: Tile<'_>) {
    tile_body::<true>(t);
}

/// A forward task's buffers, carved from its thread's scratch (sizes from [`Dims`]).
struct ForwardScratch<'s> {
    /// Queries in token panels.
    q: &'s mut [f32],
    /// Keys and values channel-major, `[hr][tp]`.
    k: &'s mut [f32],
    v: &'s mut [f32],
    /// One block's transposed scores, then probabilities: `[tp][W]`, key-major.
    s: &'s mut [f32],
    /// One block's transposed unnormalised outputs, `[hr][W]`.
    o: &'s mut [f32],
}

impl<'s> ForwardScratch<'s> {
    fn lens(dm: &Dims) -> [usize; 5] {
        let Dims { hd, tp, hr, .. } = *dm;
        [tp * hd, hr * tp, hr * tp, tp * W, hr * W]
    }

    fn carve(buf: &'s mut [f32], dm: &Dims) -> ForwardScratch<'s> {
        let [q, k, v, s, o] = crate::cpu::carve(buf, Self::lens(dm));
        ForwardScratch { q, k, v, s, o }
    }
}

/// The forward of pair `bh`, into its output rows `out[c][i]` and `lse[i]`.
struct ForwardTask<'a> {
    bh: usize,
    out: Vec<&'a mut [f32]>,
    lse: &'a mut [f32],
}

fn forward_head(
    avx2: bool,
    dm: Dims,
    qkv: [&[f32]; 3],
    task: ForwardTask<'_>,
    sc: &mut ForwardScratch<'_>,
) {
    #[cfg(target_arch = "x86_64")]
    if avx2 {
        // SAFETY: `avx2` is true only when `crate::cpu::avx2_fma` detected AVX2 and FMA, all that
        // `forward_head_avx2` requires; it touches memory only through safe slices.
        #[allow(unsafe_code)]
        unsafe {
            forward_head_avx2(dm, qkv, task, sc)
        };
        return;
    }
    let _ = avx2;
    forward_head_body(dm, qkv, task, sc, tile_plain);
}

/// [`forward_head_body`] compiled for AVX2 + FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn forward_head_avx2(
    dm: Dims,
    qkv: [&[f32]; 3],
    task: ForwardTask<'_>,
    sc: &mut ForwardScratch<'_>,
) {
    forward_head_body(dm, qkv, task, sc, |t| tile_avx2(t));
}

/// One pair's forward, `W` queries at a time, with the queries as lanes: the transposed scores
/// `Sᵀ = K·Qᵀ` of the keys the block sees (`R` keys × `W` queries per tile, over channels); the
/// causal softmax down each lane; then `Oᵀ = V·Pᵀ` (`R` channels × `W` queries per tile, over
/// keys), divided by the lane sums and stored straight into the output rows.
#[inline(always)]
fn forward_head_body(
    dm: Dims,
    [q, k, v]: [&[f32]; 3],
    ForwardTask { bh, mut out, lse }: ForwardTask<'_>,
    sc: &mut ForwardScratch<'_>,
    tile: impl Fn(Tile<'_>),
) {
    let Dims {
        t, hd, tp, scale, ..
    } = dm;
    pack_token_panels(sc.q, Head::new(dm, q, bh));
    pack_channel_major(sc.k, Head::new(dm, k, bh));
    pack_channel_major(sc.v, Head::new(dm, v, bh));
    for i0 in (0..t).step_by(W) {
        let lanes = W.min(t - i0);
        // Keys `0..keys` are seen by some query of the block; query `i0 + l` sees `j ≤ i0 + l`.
        let keys = i0 + lanes;
        let q_panel = (&sc.q[i0 * hd..], W);
        for j0 in (0..keys).step_by(R) {
            tile(Tile {
                a: (&sc.k[j0..], tp),
                a_rows: false,
                b: q_panel,
                k: hd,
                c: (&mut sc.s[j0 * W..], W),
                accumulate: false,
            });
        }
        let (rows, _) = sc.s[..keys * W].as_chunks_mut::<W>();
        let mut max = [f32::NEG_INFINITY; W];
        for row in &mut rows[..i0] {
            for (x, m) in row.iter_mut().zip(&mut max) {
                *x *= scale;
                *m = m.max(*x);
            }
        }
        for (dj, row) in rows[i0..].iter_mut().enumerate() {
            for (l, (x, m)) in row.iter_mut().zip(&mut max).enumerate() {
                *x *= scale;
                *m = if dj <= l { m.max(*x) } else { *m };
            }
        }
        for row in rows.iter_mut() {
            for (x, m) in row.iter_mut().zip(&max) {
                *x -= m;
            }
        }
        // Masked entries too (finite scores: an exponent of −∞ would end subnormal, a slow path).
        for x in rows.as_flattened_mut() {
            *x = crate::cpu::exp(*x);
        }
        for (dj, row) in rows[i0..].iter_mut().enumerate() {
            for x in &mut row[..dj] {
                *x = 0.0;
            }
        }
        let mut sum = [0f32; W];
        for row in rows.iter() {
            for (acc, x) in sum.iter_mut().zip(row) {
                *acc += x;
            }
        }
        for c0 in (0..hd).step_by(R) {
            tile(Tile {
                a: (&sc.v[c0 * tp..], tp),
                a_rows: true,
                b: (sc.s, W),
                k: keys,
                c: (&mut sc.o[c0 * W..], W),
                accumulate: false,
            });
        }
        for (c, dst) in out.iter_mut().enumerate() {
            for ((x, &acc), &l) in dst[i0..keys].iter_mut().zip(&sc.o[c * W..]).zip(&sum) {
                *x = acc / l;
            }
        }
        for ((x, &m), &l) in lse[i0..keys].iter_mut().zip(&max).zip(&sum) {
            *x = m + l.ln();
        }
    }
}

/// Query `i`'s probabilities and score gradients in place, from its scores `p` and `dP` row `ds`:
/// `p[j] ← e^{p[j]·scale − lse}`, `ds[j] ← p[j]·(ds[j] − d)·scale` for `j ≤ i`, both 0 after.
#[inline(always)]
fn probs_and_grads(p: &mut [f32], ds: &mut [f32], i: usize, scale: f32, (lse, d): (f32, f32)) {
    let ((p_live, p_dead), (ds_live, ds_dead)) = (p.split_at_mut(i + 1), ds.split_at_mut(i + 1));
    for (pj, gj) in p_live.iter_mut().zip(ds_live.iter_mut()) {
        *pj = crate::cpu::exp(*pj * scale - lse);
        *gj = *pj * (*gj - d) * scale;
    }
    p_dead.fill(0.0);
    ds_dead.fill(0.0);
}

/// A backward task's buffers, carved from its thread's scratch (sizes from [`Dims`]).
struct BackwardScratch<'s> {
    /// Queries and output gradients channel-major, `[hr][tp]`.
    q: &'s mut [f32],
    dout: &'s mut [f32],
    /// Keys and values in token panels.
    k: &'s mut [f32],
    v: &'s mut [f32],
    /// Keys in channel panels.
    k_c: &'s mut [f32],
    /// One block's probabilities and score gradients, `[BQ][tp]`, query-major.
    p: &'s mut [f32],
    ds: &'s mut [f32],
    /// One tile's query gradients, `[R][hw]`.
    dq: &'s mut [f32],
    /// Key and value gradients channel-major, `[hr][tp]`, summed over the blocks.
    dk: &'s mut [f32],
    dv: &'s mut [f32],
}

impl<'s> BackwardScratch<'s> {
    fn lens(dm: &Dims) -> [usize; 10] {
        let Dims { hd, tp, hr, hw, .. } = *dm;
        let (cm, tok) = (hr * tp, tp * hd);
        [cm, cm, tok, tok, hw * tp, BQ * tp, BQ * tp, R * hw, cm, cm]
    }

    fn carve(buf: &'s mut [f32], dm: &Dims) -> BackwardScratch<'s> {
        let [q, dout, k, v, k_c, p, ds, dq, dk, dv] = crate::cpu::carve(buf, Self::lens(dm));
        BackwardScratch {
            q,
            dout,
            k,
            v,
            k_c,
            p,
            ds,
            dq,
            dk,
            dv,
        }
    }
}

/// The backward of pair `bh`, into `d[i]` and its gradient rows `dq[c][i]`, `dk[c][j]`,
/// `dv[c][j]`.
struct BackwardTask<'a> {
    bh: usize,
    d: &'a mut [f32],
    dq: Vec<&'a mut [f32]>,
    dk: Vec<&'a mut [f32]>,
    dv: Vec<&'a mut [f32]>,
}

/// The backward's inputs: `q`, `k`, `v`, `o`, `dout` (feature-major) and `lse`.
type BackwardInputs<'a> = ([&'a [f32]; 5], &'a [f32]);

fn backward_head(
    avx2: bool,
    dm: Dims,
    inputs: BackwardInputs<'_>,
    task: BackwardTask<'_>,
    sc: &mut BackwardScratch<'_>,
) {
    #[cfg(target_arch = "x86_64")]
    if avx2 {
        // SAFETY: `avx2` is true only when `crate::cpu::avx2_fma` detected AVX2 and FMA, all that
        // `backward_head_avx2` requires; it touches memory only through safe slices.
        #[allow(unsafe_code)]
        unsafe {
            backward_head_avx2(dm, inputs, task, sc)
        };
        return;
    }
    let _ = avx2;
    backward_head_body(dm, inputs, task, sc, tile_plain);
}

/// [`backward_head_body`] compiled for AVX2 + FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn backward_head_avx2(
    dm: Dims,
    inputs: BackwardInputs<'_>,
    task: BackwardTask<'_>,
    sc: &mut BackwardScratch<'_>,
) {
    backward_head_body(dm, inputs, task, sc, |t| tile_avx2(t));
}

/// One pair's backward, in blocks of [`BQ`] queries, keys as lanes. Per `R`-query tile of a
/// block: the score and `dP = dO·Vᵀ` strips over the keys the tile sees (`R` queries × `W` keys
/// per tile, over channels); `P` and `dS` row by row; `dQ = dS·K` (`R` queries × `W` channels,
/// over keys). After the block, per `W` keys: `dKᵀ += Qᵀ·dS` and `dVᵀ += dOᵀ·P` over the block's
/// queries that see them (`R` channels × `W` keys, over queries). `d = rowsum(dO∘O)` first.
#[inline(always)]
fn backward_head_body(
    dm: Dims,
    ([q, k, v, o, dout], lse): BackwardInputs<'_>,
    BackwardTask {
        bh,
        d,
        mut dq,
        mut dk,
        mut dv,
    }: BackwardTask<'_>,
    sc: &mut BackwardScratch<'_>,
    tile: impl Fn(Tile<'_>),
) {
    let Dims {
        t,
        hd,
        tp,
        hw,
        scale,
        ..
    } = dm;
    let head = |x| Head::new(dm, x, bh);
    let (o, dout_h) = (head(o), head(dout));
    d.fill(0.0);
    for c in 0..hd {
        for ((di, &x), &y) in d.iter_mut().zip(dout_h.channel(c)).zip(o.channel(c)) {
            *di += x * y;
        }
    }
    let lse = &lse[bh * t..][..t];
    pack_channel_major(sc.q, head(q));
    pack_channel_major(sc.dout, dout_h);
    pack_token_panels(sc.k, head(k));
    pack_token_panels(sc.v, head(v));
    pack_channel_panels(sc.k_c, head(k));
    sc.dk.fill(0.0);
    sc.dv.fill(0.0);
    for i0 in (0..t).step_by(BQ) {
        let iend = (i0 + BQ).min(t);
        for r0 in (0..iend - i0).step_by(R) {
            let ia = i0 + r0;
            let rows = R.min(iend - ia);
            // Keys `0..jext` are computed (padding scores 0); query `i` keeps `j ≤ i`.
            let jext = (ia + R).next_multiple_of(W);
            for jt in 0..jext / W {
                let at = r0 * tp + jt * W;
                tile(Tile {
                    a: (&sc.q[ia..], tp),
                    a_rows: false,
                    b: (&sc.k[jt * W * hd..], W),
                    k: hd,
                    c: (&mut sc.p[at..], tp),
                    accumulate: false,
                });
                tile(Tile {
                    a: (&sc.dout[ia..], tp),
                    a_rows: false,
                    b: (&sc.v[jt * W * hd..], W),
                    k: hd,
                    c: (&mut sc.ds[at..], tp),
                    accumulate: false,
                });
            }
            for r in 0..rows {
                let (i, at) = (ia + r, (r0 + r) * tp);
                let (p, ds) = (&mut sc.p[at..][..jext], &mut sc.ds[at..][..jext]);
                probs_and_grads(p, ds, i, scale, (lse[i], d[i]));
            }
            for ct in 0..hw / W {
                tile(Tile {
                    a: (&sc.ds[r0 * tp..], tp),
                    a_rows: true,
                    b: (&sc.k_c[ct * tp * W..], W),
                    k: ia + rows,
                    c: (&mut sc.dq[ct * W..], hw),
                    accumulate: false,
                });
            }
            for (c, dst) in dq.iter_mut().enumerate() {
                for (r, x) in dst[ia..ia + rows].iter_mut().enumerate() {
                    *x = sc.dq[r * hw + c];
                }
            }
        }
        // Keys `j0..j0 + W` are seen by the block's queries `i ≥ j0`; entries with `j > i` are 0
        // in `p` and `ds`.
        for j0 in (0..iend).step_by(W) {
            let first = j0.max(i0);
            let (n, at) = (iend - first, (first - i0) * tp + j0);
            for c0 in (0..hd).step_by(R) {
                let (a_at, c_at) = (c0 * tp + first, c0 * tp + j0);
                tile(Tile {
                    a: (&sc.q[a_at..], tp),
                    a_rows: true,
                    b: (&sc.ds[at..], tp),
                    k: n,
                    c: (&mut sc.dk[c_at..], tp),
                    accumulate: true,
                });
                tile(Tile {
                    a: (&sc.dout[a_at..], tp),
                    a_rows: true,
                    b: (&sc.p[at..], tp),
                    k: n,
                    c: (&mut sc.dv[c_at..], tp),
                    accumulate: true,
                });
            }
        }
    }
    for (c, (dk_c, dv_c)) in dk.iter_mut().zip(dv.iter_mut()).enumerate() {
        dk_c.copy_from_slice(&sc.dk[c * tp..][..t]);
        dv_c.copy_from_slice(&sc.dv[c * tp..][..t]);
    }
}

/// CPU twin of `attn_forward`.
///
/// One task per (sequence, head) pair, in parallel (rayon; serial in wasm), each with its
/// thread's reused scratch, writing its own rows of `o` and its own `lse` range directly. A task
/// packs its queries, keys and values, then takes its queries 16 at a time as vector lanes: the
/// transposed scores `Sᵀ = K·Qᵀ` of the keys they see, the causal softmax down each lane (the
/// log-sum-exp into `lse`), then `Oᵀ = V·Pᵀ` over those keys, divided by the lane sums. The
/// products run as 4 × 16 register tiles; on x86-64 with AVX2 + FMA (detected at run time) the
/// task is compiled for them and the tiles use fused multiply-adds, so results differ from other
/// CPUs' in the last bits.
pub fn attention_forward_cpu(
    s: AttentionShape,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    o: &mut [f32],
    lse: &mut [f32],
) {
    forward(crate::cpu::avx2_fma(), s, [q, k, v], o, lse);
}

/// [`attention_forward_cpu`], with the AVX2 + FMA tiles only if `avx2` (which requires the CPU
/// to have them).
fn forward(avx2: bool, s: AttentionShape, [q, k, v]: [&[f32]; 3], o: &mut [f32], lse: &mut [f32]) {
    if s.queries() == 0 || s.head_dim == 0 {
        return;
    }
    let dm = Dims::new(&s);
    let tasks: Vec<ForwardTask<'_>> = head_rows(o, &s)
        .into_iter()
        .zip(lse.chunks_exact_mut(s.seq))
        .enumerate()
        .map(|(bh, (out, lse))| ForwardTask { bh, out, lse })
        .collect();
    let len = ForwardScratch::lens(&dm).iter().sum();
    crate::cpu::for_each_item(tasks, |task| {
        crate::cpu::with_scratch(len, |buf| {
            let sc = &mut ForwardScratch::carve(buf, &dm);
            forward_head(avx2, dm, [q, k, v], task, sc);
        });
    });
}

/// CPU twin of `attn_backward_dq` then `attn_backward_dkv`: the same gradients, with the
/// probabilities and score gradients, which both shaders recompute, computed once.
///
/// One task per (sequence, head) pair, in parallel (rayon; serial in wasm), each with its
/// thread's reused scratch, writing its own rows of `dq`, `dk`, `dv` and its own `d` range
/// directly. A task computes `d = rowsum(dO∘O)`, packs its inputs, then walks its queries in
/// blocks of 64 with the keys as vector lanes: per 4 queries, `P = e^{Q·Kᵀ/√hd − lse}` and
/// `dS = P∘(dO·Vᵀ − d)/√hd` over the keys they see, then `dQ = dS·K`; per block, `dKᵀ += Qᵀ·dS`
/// and `dVᵀ += dOᵀ·P` over the block's queries. The products run as 4 × 16 register tiles, with
/// fused multiply-adds where AVX2 + FMA are detected, as in [`attention_forward_cpu`].
pub fn attention_backward_cpu(
    s: AttentionShape,
    (q, k, v): (&[f32], &[f32], &[f32]),
    (o, lse, dout): (&[f32], &[f32], &[f32]),
    d: &mut [f32],
    (dq, dk, dv): (&mut [f32], &mut [f32], &mut [f32]),
) {
    let inputs = ([q, k, v, o, dout], lse);
    backward(crate::cpu::avx2_fma(), s, inputs, d, [dq, dk, dv]);
}

/// [`attention_backward_cpu`], with the AVX2 + FMA tiles only if `avx2` (which requires the CPU
/// to have them).
fn backward(
    avx2: bool,
    s: AttentionShape,
    inputs: BackwardInputs<'_>,
    d: &mut [f32],
    [dq, dk, dv]: [&mut [f32]; 3],
) {
    if s.queries() == 0 || s.head_dim == 0 {
        return;
    }
    let dm = Dims::new(&s);
    let tasks: Vec<BackwardTask<'_>> = d
        .chunks_exact_mut(s.seq)
        .zip(head_rows(dq, &s))
        .zip(head_rows(dk, &s).into_iter().zip(head_rows(dv, &s)))
        .enumerate()
        .map(|(bh, ((d, dq), (dk, dv)))| BackwardTask { bh, d, dq, dk, dv })
        .collect();
    let len = BackwardScratch::lens(&dm).iter().sum();
    crate::cpu::for_each_item(tasks, |task| {
        crate::cpu::with_scratch(len, |buf| {
            let sc = &mut BackwardScratch::carve(buf, &dm);
            backward_head(avx2, dm, inputs, task, sc);
        });
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One (sequence, head) pair's vectors gathered token-major (`[seq][head_dim]`), as the former
    /// twins (the references below) walked them.
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

    /// The former forward twin: one (sequence, head) pair at a time, gathered token-major.
    fn reference_forward(
        s: AttentionShape,
        q: &[f32],
        k: &[f32],
        v: &[f32],
        o: &mut [f32],
        lse: &mut [f32],
    ) {
        let scale = (1.0 / (s.head_dim as f64).sqrt()) as f32;
        let view = HeadView::new(&s);
        let per_head = (0..s.batch * s.heads)
            .map(|bh| {
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
            })
            .collect::<Vec<_>>();
        for (bh, (oh, lse_h)) in per_head.into_iter().enumerate() {
            view.scatter(&s, &oh, bh / s.heads, bh % s.heads, o);
            lse[bh * s.seq..(bh + 1) * s.seq].copy_from_slice(&lse_h);
        }
    }

    /// The former backward twin: per pair, the full `P` and `dS`, then `dQ`, `dK`, `dV` entry by entry.
    fn reference_backward(
        s: AttentionShape,
        (q, k, v): (&[f32], &[f32], &[f32]),
        (o, lse, dout): (&[f32], &[f32], &[f32]),
        d: &mut [f32],
        (dq, dk, dv): (&mut [f32], &mut [f32], &mut [f32]),
    ) {
        let scale = (1.0 / (s.head_dim as f64).sqrt()) as f32;
        let view = HeadView::new(&s);
        let (t, hd) = (s.seq, s.head_dim);
        let per_head = (0..s.batch * s.heads)
            .map(|bh| {
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
            })
            .collect::<Vec<_>>();
        for (bh, (d_h, dqh, dkh, dvh)) in per_head.into_iter().enumerate() {
            let (b, h) = (bh / s.heads, bh % s.heads);
            d[bh * t..(bh + 1) * t].copy_from_slice(&d_h);
            view.scatter(&s, &dqh, b, h, dq);
            view.scatter(&s, &dkh, b, h, dk);
            view.scatter(&s, &dvh, b, h, dv);
        }
    }

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

    /// The twins against [`reference_forward`] and [`reference_backward`] on odd shapes (one-token
    /// and seven-token sequences, head sizes 1 and 5, three heads, two sequences), several query
    /// blocks and channel panels; every output starts NaN so an unwritten entry fails.
    #[test]
    fn twins_match_the_reference() {
        for (head_dim, heads, seq, batch) in [
            (1, 1, 1, 1),
            (5, 3, 7, 2),
            (1, 3, 7, 2),
            (5, 1, 1, 2),
            (17, 2, 130, 1),
            (32, 4, 128, 2),
        ] {
            let s = AttentionShape {
                head_dim,
                heads,
                seq,
                batch,
            };
            let what = format!("hd {head_dim} heads {heads} seq {seq} batch {batch}");
            let n = s.rows() * s.tokens();
            let [q, k, v, dout] = [21, 22, 23, 24].map(|seed| data(n, seed));
            let (mut o_ref, mut lse_ref) = (vec![0.0; n], vec![0.0; s.queries()]);
            reference_forward(s, &q, &k, &v, &mut o_ref, &mut lse_ref);
            let mut d_ref = vec![0.0; s.queries()];
            let [mut dq_ref, mut dk_ref, mut dv_ref] = [(); 3].map(|_| vec![0.0; n]);
            reference_backward(
                s,
                (&q, &k, &v),
                (&o_ref, &lse_ref, &dout),
                &mut d_ref,
                (&mut dq_ref, &mut dk_ref, &mut dv_ref),
            );
            // The plain tiles, and the AVX2 + FMA ones where this CPU has them.
            for avx2 in [false, crate::cpu::avx2_fma()] {
                let what = format!("{what}, avx2 {avx2}");
                let close = |name: &str, got: &[f32], want: &[f32], tol: f32| {
                    for (idx, (&g, &w)) in got.iter().zip(want).enumerate() {
                        assert!(
                            (g - w).abs() <= tol * (1.0 + w.abs()),
                            "{what}: {name}[{idx}] = {g}, reference {w}"
                        );
                    }
                };
                let (mut o, mut lse) = (vec![f32::NAN; n], vec![f32::NAN; s.queries()]);
                forward(avx2, s, [&q, &k, &v], &mut o, &mut lse);
                close("o", &o, &o_ref, 1e-6);
                close("lse", &lse, &lse_ref, 1e-6);
                let mut d = vec![f32::NAN; s.queries()];
                let [mut dq, mut dk, mut dv] = [(); 3].map(|_| vec![f32::NAN; n]);
                let inputs = ([&q[..], &k, &v, &o_ref, &dout], &lse_ref[..]);
                backward(avx2, s, inputs, &mut d, [&mut dq, &mut dk, &mut dv]);
                close("d", &d, &d_ref, 0.0);
                close("dq", &dq, &dq_ref, 2e-6);
                close("dk", &dk, &dk_ref, 2e-6);
                close("dv", &dv, &dv_ref, 2e-6);
            }
        }
    }
}
