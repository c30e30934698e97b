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

/// CPU twin of `sddmm_weight_grad`, with the shader's summation order (four strided partial sums,
/// combined pairwise).
pub fn sddmm_cpu(
    batch: usize,
    row_of: &[u32],
    col_idx: &[u32],
    dy: &[f32],
    x: &[f32],
    dw: &mut [f32],
) {
    const CHUNK: usize = 1024;
    crate::cpu::for_each_chunk(dw, CHUNK, |chunk, out| {
        for (i, o) in out.iter_mut().enumerate() {
            let k = chunk * CHUNK + i;
            let a = &dy[row_of[k] as usize * batch..][..batch];
            let b = &x[col_idx[k] as usize * batch..][..batch];
            let mut acc = [0f32; 4];
            let full = batch & !3;
            for j in (0..full).step_by(4) {
                for l in 0..4 {
                    acc[l] += a[j + l] * b[j + l];
                }
            }
            for j in full..batch {
                acc[j - full] += a[j] * b[j];
            }
            *o = (acc[0] + acc[1]) + (acc[2] + acc[3]);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

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
