//! Sampling keys and exact top-k selection on the device; shader `shaders/sample.wgsl`, key
//! arithmetic in `cht_sparse::sample` (shared by the twins here).
//!
//! A topology update draws links in two steps that never leave the device:
//! [`Device::sample_keys`] turns scores into `u32` keys (Gumbel keys for soft sampling with
//! `p ∝ |score|^T`, the score's bits for hard top-k; zero scores in a lower, randomly ordered tier;
//! ineligible candidates 0), then [`Device::select_top_k`] marks the `k` largest keys (ties: lower
//! index) with a radix select. Both are integer-exact, so the CPU twins select the same links.

use cht_sparse::rng::{RngKey, draw_u32};
use cht_sparse::sample::{key as gumbel_key, temperature_fixed, top_k_by_key};

use crate::device::{Backend, Device};
use crate::error::Result;
use crate::gpu::{Access, Kernel};
use crate::ops::csr_build::exclusive_scan_gpu;
use crate::ops::{bytes, grid_1d_wg};
use crate::tensor::{DType, Tensor, as_f32};

const SOURCE: &str = include_str!("../../shaders/sample.wgsl");
const fn kernel(entry: &'static str, access: &'static [Access]) -> Kernel {
    Kernel {
        family: "sample",
        source: SOURCE,
        entry,
        access,
    }
}
const R: Access = Access::Read;
const W: Access = Access::ReadWrite;
pub(crate) const KEYS: Kernel = kernel("sample_keys", &[R, R, W]);
pub(crate) const HISTOGRAM: Kernel = kernel("select_histogram", &[R, W, W]);
pub(crate) const CHOOSE: Kernel = kernel("select_choose", &[W, W]);
pub(crate) const TIE_COUNTS: Kernel = kernel("select_tie_counts", &[R, R, W]);
pub(crate) const MARK: Kernel = kernel("select_mark", &[R, R, R, W]);
const WG: usize = 256;

/// How scores become keys.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum KeyMode {
    /// Sampling without replacement with `p ∝ score^temperature` (temperature ≤ 15).
    Soft {
        /// Exponent of the scores.
        temperature: f32,
    },
    /// Deterministic top-k by score (zero-score ties in random order).
    Hard,
}

/// Which entries may be chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Eligible {
    /// Every entry.
    All,
    /// Entries where the mask is set (e.g. existing links, for removal).
    MaskSet,
    /// Entries where the mask is clear (non-links, for regrowth).
    MaskClear,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    mode: u32,
    t_fixed: u32,
    key: u32,
    shift: u32,
    first: u32,
    _pad: [u32; 2],
}

fn mode_bits(mode: KeyMode, eligible: Eligible) -> (u32, u32) {
    let (hard, t) = match mode {
        KeyMode::Soft { temperature } => (0, temperature_fixed(temperature)),
        KeyMode::Hard => (1, 0),
    };
    let e = match eligible {
        Eligible::All => 0,
        Eligible::MaskSet => 1,
        Eligible::MaskClear => 2,
    };
    (hard | (e << 1), t)
}

/// Scratch of a selection over `n` keys, created once per size and reused.
#[derive(Clone, Debug)]
pub struct Selector {
    n: usize,
    hist: Tensor,
    /// `[k, threshold, ties to take, eligible keys]` after a selection; write `k` into word 0
    /// (host: [`Device::set_select_count`]) or from a kernel before selecting.
    pub state: Tensor,
    block_counts: Tensor,
    block_prefix: Tensor,
    scan_status: Tensor,
}

impl Device {
    /// Keys for `weights` (`n` entries): see [`KeyMode`] and [`Eligible`]; `mask` (same size)
    /// is required unless `eligible` is `All`. `rng` decides the random part.
    pub fn sample_keys(
        &self,
        weights: &Tensor,
        mask: Option<&Tensor>,
        eligible: Eligible,
        mode: KeyMode,
        rng: RngKey,
        keys: &Tensor,
    ) -> Result<()> {
        const OP: &str = "sample_keys";
        let n = weights.len();
        weights.expect(OP, DType::F32, weights.rows(), weights.cols())?;
        keys.expect(OP, DType::U32, weights.rows(), weights.cols())?;
        if let Some(m) = mask {
            m.expect(OP, DType::U32, weights.rows(), weights.cols())?;
        } else if eligible != Eligible::All {
            return Err(crate::error::shape_err(
                OP,
                "eligibility by mask needs a mask",
            ));
        }
        let (mode_word, t_fixed) = mode_bits(mode, eligible);
        match &self.backend {
            Backend::Gpu(g) => {
                let params = Params {
                    n: n as u32,
                    mode: mode_word,
                    t_fixed,
                    key: rng.folded(),
                    shift: 0,
                    first: 0,
                    _pad: [0; 2],
                };
                let mask = mask.unwrap_or(&g.dummy);
                g.dispatch(
                    &KEYS,
                    &[],
                    bytes(&params),
                    &[weights, mask, keys],
                    grid_1d_wg(n, WG),
                )
            }
            Backend::Cpu => {
                let _timer = self.op_timer(OP);
                let w = weights.cpu_read(OP)?;
                let m = mask.map(|m| m.cpu_read(OP)).transpose()?;
                let mut k = keys.cpu_write(OP)?;
                sample_keys_cpu(as_f32(&w), m.as_deref(), eligible, mode, rng, &mut k);
                Ok(())
            }
        }
    }

    /// Scratch for selecting among `n` keys.
    pub fn selector(&self, label: &str, n: usize) -> Selector {
        let blocks = n.div_ceil(WG).max(1);
        let u32s =
            |name: &str, len: usize| self.zeros(&format!("{label}.{name}"), len, 1, DType::U32);
        Selector {
            n,
            hist: u32s("hist", 256),
            state: u32s("state", 4),
            block_counts: u32s("block_counts", blocks),
            block_prefix: u32s("block_prefix", blocks + 1),
            scan_status: u32s("scan_status", 2),
        }
    }

    /// Queues `k` as the number of keys the next [`Device::select_top_k`] on `sel` takes.
    pub fn set_select_count(&self, sel: &Selector, k: u32) -> Result<()> {
        self.write_u32(&sel.state, &[k, 0, 0, 0])
    }

    /// `selected[i] = 1` for the `k` largest non-zero keys (`k` from `sel.state[0]`, capped at the
    /// number of non-zero keys; ties: lower index), else 0.
    pub fn select_top_k(&self, sel: &Selector, keys: &Tensor, selected: &Tensor) -> Result<()> {
        const OP: &str = "select_top_k";
        keys.expect(OP, DType::U32, keys.rows(), keys.cols())?;
        selected.expect(OP, DType::U32, keys.rows(), keys.cols())?;
        if keys.len() != sel.n {
            return Err(crate::error::shape_err(
                OP,
                format!("selector is for {} keys, got {}", sel.n, keys.len()),
            ));
        }
        match &self.backend {
            Backend::Gpu(g) => {
                let n = sel.n;
                for (pass, shift) in [24u32, 16, 8, 0].into_iter().enumerate() {
                    let params = Params {
                        n: n as u32,
                        mode: 0,
                        t_fixed: 0,
                        key: 0,
                        shift,
                        first: u32::from(pass == 0),
                        _pad: [0; 2],
                    };
                    g.clear(sel.hist.gpu_slice(OP)?, sel.hist.len());
                    g.dispatch(
                        &HISTOGRAM,
                        &[],
                        bytes(&params),
                        &[keys, &sel.hist, &sel.state],
                        grid_1d_wg(n, WG),
                    )?;
                    g.dispatch(
                        &CHOOSE,
                        &[],
                        bytes(&params),
                        &[&sel.hist, &sel.state],
                        [1, 1, 1],
                    )?;
                }
                let params = Params {
                    n: n as u32,
                    mode: 0,
                    t_fixed: 0,
                    key: 0,
                    shift: 0,
                    first: 0,
                    _pad: [0; 2],
                };
                let grid = grid_1d_wg(n, WG);
                g.dispatch(
                    &TIE_COUNTS,
                    &[],
                    bytes(&params),
                    &[keys, &sel.state, &sel.block_counts],
                    grid,
                )?;
                let blocks = (grid[0] * grid[1]) as usize;
                exclusive_scan_gpu(
                    g,
                    &sel.block_counts,
                    &sel.block_prefix,
                    &sel.scan_status,
                    blocks,
                )?;
                g.dispatch(
                    &MARK,
                    &[],
                    bytes(&params),
                    &[keys, &sel.state, &sel.block_prefix, selected],
                    grid,
                )
            }
            Backend::Cpu => {
                let _timer = self.op_timer(OP);
                let k = keys.cpu_read(OP)?;
                let mut state = sel.state.cpu_write(OP)?;
                let mut out = selected.cpu_write(OP)?;
                let chosen = select_top_k_cpu(&k, state[0] as usize);
                out.fill(0);
                for &i in &chosen {
                    out[i as usize] = 1;
                }
                state[3] = k.iter().filter(|&&v| v > 0).count() as u32;
                Ok(())
            }
        }
    }
}

/// CPU twin of `sample_keys`.
pub fn sample_keys_cpu(
    weights: &[f32],
    mask: Option<&[u32]>,
    eligible: Eligible,
    mode: KeyMode,
    rng: RngKey,
    keys: &mut [u32],
) {
    let folded = rng.folded();
    let t_fixed = match mode {
        KeyMode::Soft { temperature } => temperature_fixed(temperature),
        KeyMode::Hard => 0,
    };
    for (i, (k, &w)) in keys.iter_mut().zip(weights).enumerate() {
        let w = w.abs();
        let ok = match (eligible, mask) {
            (Eligible::All, _) => true,
            (Eligible::MaskSet, Some(m)) => m[i] != 0,
            (Eligible::MaskClear, Some(m)) => m[i] == 0,
            (_, None) => false,
        };
        *k = if ok && w > 0.0 {
            0x8000_0000
                | match mode {
                    KeyMode::Hard => w.to_bits(),
                    KeyMode::Soft { .. } => gumbel_key(w, t_fixed, folded, i as u32) >> 1,
                }
        } else if ok && w == 0.0 {
            1 + (draw_u32(folded, i as u32) >> 1)
        } else {
            0
        };
    }
}

/// CPU twin of `select_top_k`: indices of the `k` largest non-zero keys, ascending.
pub fn select_top_k_cpu(keys: &[u32], k: usize) -> Vec<u32> {
    let eligible = keys.iter().filter(|&&v| v > 0).count();
    top_k_by_key(keys, k.min(eligible))
}
