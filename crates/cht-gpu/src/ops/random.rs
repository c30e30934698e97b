//! Counter-based random fill on the device; shader `shaders/random.wgsl`, twin in `cht_sparse::rng`.

use cht_sparse::rng::{RngKey, draw_u32, to_unit};

use crate::device::{Backend, Device};
use crate::error::Result;
use crate::gpu::{Access, Kernel};
use crate::ops::{bytes, grid_1d};
use crate::tensor::{DType, Tensor, as_f32_mut};

pub(crate) const KERNEL: Kernel = Kernel {
    family: "random",
    source: include_str!("../../shaders/random.wgsl"),
    entry: "fill_uniform",
    access: &[Access::ReadWrite],
};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    len: u32,
    key: u32,
    offset: u32,
    _pad: u32,
    lo: f32,
    hi: f32,
    _pad1: [u32; 2],
}

impl Device {
    /// `out[i] = lo + (hi − lo) · U(key, offset + i)`: the same numbers on every backend.
    pub fn fill_uniform(
        &self,
        key: RngKey,
        offset: u32,
        lo: f32,
        hi: f32,
        out: &Tensor,
    ) -> Result<()> {
        const OP: &str = "fill_uniform";
        out.expect(OP, DType::F32, out.rows(), out.cols())?;
        match &self.backend {
            Backend::Gpu(g) => {
                let params = Params {
                    len: out.len() as u32,
                    key: key.folded(),
                    offset,
                    _pad: 0,
                    lo,
                    hi,
                    _pad1: [0; 2],
                };
                g.dispatch(&KERNEL, &[], bytes(&params), &[out], grid_1d(out.len()))
            }
            Backend::Cpu => {
                let _timer = self.op_timer(OP);
                let mut o = out.cpu_write(OP)?;
                fill_uniform_cpu(key, offset, lo, hi, as_f32_mut(&mut o));
                Ok(())
            }
        }
    }
}

/// CPU twin of `fill_uniform`.
pub fn fill_uniform_cpu(key: RngKey, offset: u32, lo: f32, hi: f32, out: &mut [f32]) {
    let folded = key.folded();
    for (i, o) in out.iter_mut().enumerate() {
        *o = lo + (hi - lo) * to_unit(draw_u32(folded, offset.wrapping_add(i as u32)));
    }
}
