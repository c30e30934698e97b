//! Token embedding gather and its gradient without float atomics; shader
//! `shaders/embedding.wgsl`.
//!
//! The gradient needs, per token id, the batch positions holding it. Token ids come from the host,
//! so the host builds that inverted index ([`TokenIndex`], a counting sort) and uploads it with the
//! ids; each table entry is then summed by one invocation in a fixed order (deterministic).

use crate::device::{Backend, Device};
use crate::error::{Result, shape_err};
use crate::gpu::{Access, Kernel};
use crate::ops::{bytes, grid_1d};
use crate::tensor::{DType, Tensor, as_f32, as_f32_mut};

const SOURCE: &str = include_str!("../../shaders/embedding.wgsl");
pub(crate) const GATHER: Kernel = Kernel {
    family: "embedding",
    source: SOURCE,
    entry: "embedding_gather",
    access: &[Access::Read, Access::Read, Access::ReadWrite],
};
pub(crate) const GRAD: Kernel = Kernel {
    family: "embedding",
    source: SOURCE,
    entry: "embedding_grad",
    access: &[Access::Read, Access::Read, Access::Read, Access::ReadWrite],
};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    d: u32,
    tokens: u32,
    vocab: u32,
    _pad: u32,
}

/// A batch's token ids, checked against the vocabulary, with the positions of each id grouped
/// (`positions[offsets[v]..offsets[v+1]]` hold id `v`, in increasing order).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenIndex {
    /// The ids, one per position.
    pub ids: Vec<u32>,
    /// `vocab + 1` offsets into `positions`.
    pub offsets: Vec<u32>,
    /// Positions grouped by id.
    pub positions: Vec<u32>,
}

impl TokenIndex {
    /// Validates `ids` (each `< vocab`) and groups their positions.
    pub fn new(ids: &[u32], vocab: usize) -> Result<TokenIndex> {
        if let Some((t, &id)) = ids
            .iter()
            .enumerate()
            .find(|&(_, &id)| id as usize >= vocab)
        {
            return Err(shape_err(
                "embedding",
                format!("token {id} at position {t} is outside the vocabulary of {vocab}"),
            ));
        }
        let mut offsets = vec![0u32; vocab + 1];
        for &id in ids {
            offsets[id as usize + 1] += 1;
        }
        for v in 0..vocab {
            offsets[v + 1] += offsets[v];
        }
        let mut next = offsets.clone();
        let mut positions = vec![0u32; ids.len()];
        for (t, &id) in ids.iter().enumerate() {
            positions[next[id as usize] as usize] = t as u32;
            next[id as usize] += 1;
        }
        Ok(TokenIndex {
            ids: ids.to_vec(),
            offsets,
            positions,
        })
    }
}

impl Device {
    /// `x[:, t] = table[ids[t], :]` for `table: [vocab, d]` (rows contiguous) and `x: [d, tokens]`;
    /// `ids: [tokens, 1]` (u32) uploaded from a [`TokenIndex`], which validated them.
    pub fn embedding_gather(&self, table: &Tensor, ids: &Tensor, x: &Tensor) -> Result<()> {
        const OP: &str = "embedding_gather";
        let (vocab, d, tokens) = (table.rows(), table.cols(), ids.rows());
        table.expect(OP, DType::F32, vocab, d)?;
        ids.expect(OP, DType::U32, tokens, 1)?;
        x.expect(OP, DType::F32, d, tokens)?;
        match &self.backend {
            Backend::Gpu(g) => g.dispatch(
                &GATHER,
                &[],
                bytes(&params(d, tokens, vocab)),
                &[table, ids, x],
                grid_1d(d * tokens),
            ),
            Backend::Cpu => {
                let _timer = self.op_timer(OP);
                let (tv, iv) = (table.cpu_read(OP)?, ids.cpu_read(OP)?);
                if let Some(&id) = iv.iter().find(|&&id| id as usize >= vocab) {
                    return Err(shape_err(OP, format!("token {id} ≥ vocabulary {vocab}")));
                }
                let mut xv = x.cpu_write(OP)?;
                embedding_gather_cpu(d, as_f32(&tv), &iv, as_f32_mut(&mut xv));
                Ok(())
            }
        }
    }

    /// `dtable[v, :] = Σ_{t: ids[t] = v} dx[:, t]` (overwrites `dtable: [vocab, d]`), with the
    /// grouping `offsets: [vocab + 1, 1]` and `positions: [tokens, 1]` of a [`TokenIndex`].
    pub fn embedding_grad(
        &self,
        dx: &Tensor,
        offsets: &Tensor,
        positions: &Tensor,
        dtable: &Tensor,
    ) -> Result<()> {
        const OP: &str = "embedding_grad";
        let (vocab, d, tokens) = (dtable.rows(), dtable.cols(), dx.cols());
        dx.expect(OP, DType::F32, d, tokens)?;
        offsets.expect(OP, DType::U32, vocab + 1, 1)?;
        positions.expect(OP, DType::U32, tokens, 1)?;
        dtable.expect(OP, DType::F32, vocab, d)?;
        match &self.backend {
            Backend::Gpu(g) => g.dispatch(
                &GRAD,
                &[],
                bytes(&params(d, tokens, vocab)),
                &[dx, offsets, positions, dtable],
                grid_1d(vocab * d),
            ),
            Backend::Cpu => {
                let _timer = self.op_timer(OP);
                let (dv, ov, pv) = (
                    dx.cpu_read(OP)?,
                    offsets.cpu_read(OP)?,
                    positions.cpu_read(OP)?,
                );
                let mut tv = dtable.cpu_write(OP)?;
                embedding_grad_cpu(d, tokens, as_f32(&dv), &ov, &pv, as_f32_mut(&mut tv));
                Ok(())
            }
        }
    }
}

fn params(d: usize, tokens: usize, vocab: usize) -> Params {
    Params {
        d: d as u32,
        tokens: tokens as u32,
        vocab: vocab as u32,
        _pad: 0,
    }
}

/// Tokens per task of [`embedding_gather_cpu`].
const BLOCK: usize = 256;

/// CPU twin of `embedding_gather`: parallel over blocks of `BLOCK` tokens, each filling its part
/// of every feature row.
pub fn embedding_gather_cpu(d: usize, table: &[f32], ids: &[u32], x: &mut [f32]) {
    let tokens = ids.len();
    let blocks = crate::cpu::column_blocks(&mut x[..d * tokens], tokens, BLOCK);
    crate::cpu::map_items(blocks, |b, rows| {
        for (i, row) in rows.into_iter().enumerate() {
            for (o, &id) in row.iter_mut().zip(&ids[b * BLOCK..]) {
                *o = table[id as usize * d + i];
            }
        }
    });
}

/// CPU twin of `embedding_grad` (the shader's order): parallel over table rows.
pub fn embedding_grad_cpu(
    d: usize,
    tokens: usize,
    dx: &[f32],
    offsets: &[u32],
    positions: &[u32],
    dtable: &mut [f32],
) {
    let vocab = offsets.len() - 1;
    crate::cpu::for_each_chunk(&mut dtable[..vocab * d], d, |v, out| {
        let group = &positions[offsets[v] as usize..offsets[v + 1] as usize];
        for (i, o) in out.iter_mut().enumerate() {
            *o = group
                .iter()
                .fold(0.0f32, |acc, &t| acc + dx[i * tokens + t as usize]);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bit-identical to the straightforward twins (token by token; table entry by entry) at odd
    /// sizes, outputs starting as NaN.
    #[test]
    fn parallel_twins_match_the_reference_at_odd_sizes() {
        let vocab = 67;
        for d in [1, 5, 130] {
            for tokens in [1, 7, 33, 513] {
                let ids: Vec<u32> = (0..tokens as u32).map(|t| (t * 37 + 5) % 61).collect();
                let table: Vec<f32> = (0..vocab * d).map(|k| (k as f32 * 0.7).sin()).collect();
                let dx: Vec<f32> = (0..d * tokens).map(|k| (k as f32 * 1.3).cos()).collect();
                let mut x = vec![f32::NAN; d * tokens];
                embedding_gather_cpu(d, &table, &ids, &mut x);
                for (t, &id) in ids.iter().enumerate() {
                    for i in 0..d {
                        assert_eq!(x[i * tokens + t], table[id as usize * d + i]);
                    }
                }
                let ix = TokenIndex::new(&ids, vocab).unwrap();
                let mut dt = vec![f32::NAN; vocab * d];
                embedding_grad_cpu(d, tokens, &dx, &ix.offsets, &ix.positions, &mut dt);
                for v in 0..vocab {
                    let group = &ix.positions[ix.offsets[v] as usize..ix.offsets[v + 1] as usize];
                    for i in 0..d {
                        let want = group
                            .iter()
                            .fold(0.0f32, |acc, &t| acc + dx[i * tokens + t as usize]);
                        assert_eq!(dt[v * d + i].to_bits(), want.to_bits(), "dtable[{v}, {i}]");
                    }
                }
            }
        }
    }

    #[test]
    fn index_groups_positions_and_rejects_unknown_tokens() {
        let ix = TokenIndex::new(&[2, 0, 2, 1, 2], 4).unwrap();
        assert_eq!(ix.offsets, vec![0, 1, 2, 5, 5]);
        assert_eq!(ix.positions, vec![1, 3, 0, 2, 4]);
        assert!(TokenIndex::new(&[0, 4], 4).is_err());
    }

    #[test]
    fn gradient_is_the_transpose_of_the_gather() {
        // <gather(table), dx> = <table, grad(dx)> for any table and dx.
        let (vocab, d) = (4, 3);
        let ids = [2u32, 0, 2, 1, 2];
        let tokens = ids.len();
        let table: Vec<f32> = (0..vocab * d).map(|k| (k as f32 * 0.7).sin()).collect();
        let dx: Vec<f32> = (0..d * tokens).map(|k| (k as f32 * 1.3).cos()).collect();
        let mut x = vec![0.0; d * tokens];
        embedding_gather_cpu(d, &table, &ids, &mut x);
        let ix = TokenIndex::new(&ids, vocab).unwrap();
        let mut dt = vec![f32::NAN; vocab * d];
        embedding_grad_cpu(d, tokens, &dx, &ix.offsets, &ix.positions, &mut dt);
        let lhs: f32 = x.iter().zip(&dx).map(|(a, b)| a * b).sum();
        let rhs: f32 = table.iter().zip(&dt).map(|(a, b)| a * b).sum();
        assert!((lhs - rhs).abs() < 1e-5, "{lhs} vs {rhs}");
        assert!(
            dt[3 * d..].iter().all(|&v| v == 0.0),
            "an unused id gets a zero gradient"
        );
    }
}
