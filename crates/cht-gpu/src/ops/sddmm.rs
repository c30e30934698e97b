//! Sparse weight gradient `dW = (dY·Xᵀ) ⊙ pattern`, computed only on the links: the weight-gradient
//! role of the fused `sparse_backward` kernel in `shaders/spmm.wgsl` (see
//! [`Device::sparse_backward`]), and its CPU twin.

use crate::device::Device;
use crate::error::Result;
use crate::sparse::SparsePattern;
use crate::tensor::Tensor;

impl Device {
    /// `dw[k] = Σ_b dy[row(k), b] · x[col(k), b]` for every live link `k`; `dy` is `[rows, batch]`,
    /// `x` is `[cols, batch]`, `dw` has the pattern's capacity (slots past the live count are left
    /// untouched).
    pub fn sddmm_weight_grad(
        &self,
        w: &SparsePattern,
        dy: &Tensor,
        x: &Tensor,
        dw: &Tensor,
    ) -> Result<()> {
        self.sparse_backward(w, dw, dy, Some(dw), Some(x), None)
    }
}

/// CPU twin of `sddmm_weight_grad`: `dw[k] = Σ_b dy[row_of[k], b] · x[col_idx[k], b]`.
///
/// Each link's sum is split into [`SDDMM_LANES`] strided partial sums (element `b` into partial
/// `b mod 64`), combined by halving (`p[l] + p[l + 32]`, then 16, …, 1) — an order chosen so
/// the partials fill AVX-512 / AVX2 registers (the shader uses four; the sums agree within
/// rounding). Links are split into chunks of 1024 across threads; no fused multiply-adds, so
/// the bits do not depend on the CPU.
pub fn sddmm_cpu(
    batch: usize,
    row_of: &[u32],
    col_idx: &[u32],
    dy: &[f32],
    x: &[f32],
    dw: &mut [f32],
) {
    const CHUNK: usize = 1024;
    let simd = crate::cpu::Simd::detect();
    crate::cpu::for_each_chunk(dw, CHUNK, |chunk, out| {
        let links = Links {
            batch,
            row_of: &row_of[chunk * CHUNK..],
            col_idx: &col_idx[chunk * CHUNK..],
            dy,
            x,
        };
        match simd {
            // SAFETY (both): `Simd::detect` found the features these copies are compiled for.
            #[cfg(target_arch = "x86_64")]
            #[allow(unsafe_code)]
            crate::cpu::Simd::Avx512 => unsafe { sddmm_chunk_avx512(&links, out) },
            #[cfg(target_arch = "x86_64")]
            #[allow(unsafe_code)]
            crate::cpu::Simd::Avx2 => unsafe { sddmm_chunk_avx2(&links, out) },
            _ => sddmm_chunk(&links, out),
        }
    });
}

/// Strided partial sums per link in [`sddmm_cpu`].
pub const SDDMM_LANES: usize = 64;

/// A run of links of [`sddmm_cpu`] and the operands.
struct Links<'a> {
    batch: usize,
    row_of: &'a [u32],
    col_idx: &'a [u32],
    dy: &'a [f32],
    x: &'a [f32],
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
fn sddmm_chunk_avx512(links: &Links<'_>, out: &mut [f32]) {
    sddmm_chunk(links, out);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn sddmm_chunk_avx2(links: &Links<'_>, out: &mut [f32]) {
    sddmm_chunk(links, out);
}

#[inline(always)]
fn sddmm_chunk(l: &Links<'_>, out: &mut [f32]) {
    let batch = l.batch;
    for (i, o) in out.iter_mut().enumerate() {
        let a = &l.dy[l.row_of[i] as usize * batch..][..batch];
        let b = &l.x[l.col_idx[i] as usize * batch..][..batch];
        let mut acc = [0f32; SDDMM_LANES];
        let mut blocks_a = a.chunks_exact(SDDMM_LANES);
        let mut blocks_b = b.chunks_exact(SDDMM_LANES);
        for (ca, cb) in (&mut blocks_a).zip(&mut blocks_b) {
            for ((p, &u), &v) in acc.iter_mut().zip(ca).zip(cb) {
                *p += u * v;
            }
        }
        for ((p, &u), &v) in acc
            .iter_mut()
            .zip(blocks_a.remainder())
            .zip(blocks_b.remainder())
        {
            *p += u * v;
        }
        let mut width = SDDMM_LANES / 2;
        while width > 0 {
            for l in 0..width {
                acc[l] += acc[l + width];
            }
            width /= 2;
        }
        *o = acc[0];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Batches below, at and above the 64 partial sums: within rounding of an f64 reference, and
    /// every output written.
    #[test]
    fn twin_matches_an_f64_reference_at_every_batch() {
        for batch in [1, 5, 63, 64, 65, 200, 2048] {
            let val = |i: usize, salt: usize| ((i * 7919 + salt) % 1000) as f32 / 500.0 - 1.0;
            let dy: Vec<f32> = (0..3 * batch).map(|i| val(i, 1)).collect();
            let x: Vec<f32> = (0..4 * batch).map(|i| val(i, 2)).collect();
            let (row_of, col_idx) = ([0u32, 2, 1, 2, 0], [3u32, 0, 1, 2, 0]);
            let mut dw = [f32::NAN; 5];
            sddmm_cpu(batch, &row_of, &col_idx, &dy, &x, &mut dw);
            for k in 0..5 {
                let (r, c) = (row_of[k] as usize, col_idx[k] as usize);
                let want: f64 = (0..batch)
                    .map(|b| f64::from(dy[r * batch + b]) * f64::from(x[c * batch + b]))
                    .sum();
                let tol = 1e-5 * (batch as f64).sqrt();
                assert!(
                    (f64::from(dw[k]) - want).abs() < tol,
                    "batch {batch} link {k}"
                );
            }
        }
    }

    #[test]
    fn twin_is_the_dot_product_of_batch_vectors() {
        let batch = 7;
        let dy: Vec<f32> = (0..2 * batch).map(|i| i as f32 * 0.5).collect();
        let x: Vec<f32> = (0..3 * batch).map(|i| 1.0 - i as f32 * 0.25).collect();
        let (row_of, col_idx) = ([0u32, 1, 1], [2u32, 0, 2]);
        let mut dw = [0.0; 3];
        sddmm_cpu(batch, &row_of, &col_idx, &dy, &x, &mut dw);
        for k in 0..3 {
            let want: f32 = (0..batch)
                .map(|b| dy[row_of[k] as usize * batch + b] * x[col_idx[k] as usize * batch + b])
                .sum();
            assert!((dw[k] - want).abs() < 1e-4, "{k}: {} vs {want}", dw[k]);
        }
    }
}
