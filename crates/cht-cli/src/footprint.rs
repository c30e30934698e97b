//! Up-front size checks: a configuration whose tensors cannot exist on this machine
//! (`model.dim = 1e6`, `layers = 2^63 − 1`, `batch = 1e9`) is refused with one message before
//! anything is allocated, instead of aborting on a failed allocation or a wgpu validation error.
//!
//! The figures are estimates that err on the large side (masks, optimizer state, activations of
//! one step, the largest single buffer), not an exact account: they exist to catch sizes that
//! are off by orders of magnitude, and a configuration that passes may still be slow.

use anyhow::{Result, bail};
use cht_gpu::{Device, DeviceInfo};

/// Bytes of a run: the sum over its buffers and the largest one.
#[derive(Debug, Default)]
pub(crate) struct Footprint {
    total: Option<u128>,
    largest: u128,
}

impl Footprint {
    /// An empty footprint.
    pub(crate) fn new() -> Footprint {
        Footprint {
            total: Some(0),
            largest: 0,
        }
    }

    /// Adds a buffer of `count` elements of `bytes` each (`count` as factors, multiplied with
    /// overflow checks): `buffer(4, &[rows, cols])`.
    pub(crate) fn buffer(&mut self, bytes: u128, factors: &[usize]) -> &mut Footprint {
        let size = factors
            .iter()
            .try_fold(bytes, |n, &f| n.checked_mul(f as u128));
        match size {
            Some(size) => {
                self.largest = self.largest.max(size);
                self.total = self.total.and_then(|t| t.checked_add(size));
            }
            None => self.total = None,
        }
        self
    }

    /// Adds host memory that is not one device buffer (masks, bookkeeping).
    pub(crate) fn host(&mut self, bytes: u128, factors: &[usize]) -> &mut Footprint {
        let largest = self.largest;
        self.buffer(bytes, factors);
        self.largest = largest;
        self
    }

    /// Errors when the estimate overflows, a buffer is larger than the device allows, or the
    /// total is more than the memory available (Linux `MemAvailable`; not checked where it
    /// cannot be read). `what` names the configuration (`the MLP`, `the language model`).
    pub(crate) fn check(&self, device: &Device, what: &str) -> Result<()> {
        let Some(total) = self.total else {
            bail!(
                "{what} is too large: its sizes overflow 128-bit arithmetic; check the model and batch sizes in the configuration"
            );
        };
        let (limit, per_buffer) = match device.info() {
            DeviceInfo::Gpu(a) => (
                u128::from(a.limits.max_storage_buffer_binding_size),
                "the adapter's largest storage buffer",
            ),
            DeviceInfo::Cpu { .. } => (isize::MAX as u128, "the largest allocation possible"),
        };
        if self.largest > limit {
            bail!(
                "{what} needs a buffer of {}, more than {per_buffer} ({}); use smaller layers or batches",
                gib(self.largest),
                gib(limit)
            );
        }
        if let Some(available) = available_memory()
            && total > available
        {
            bail!(
                "{what} needs about {} of memory, more than the {} available; use smaller layers or batches, or a larger machine",
                gib(total),
                gib(available)
            );
        }
        Ok(())
    }
}

/// `MemAvailable` of `/proc/meminfo`, in bytes (Linux only).
fn available_memory() -> Option<u128> {
    let text =
        cht_sparse::io::read_text_bounded("/proc/meminfo".as_ref(), "memory information", 1 << 20)
            .ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u128 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

fn gib(bytes: u128) -> String {
    let g = bytes as f64 / f64::from(1u32 << 30);
    if g >= 1e6 {
        format!("{g:.1e} GiB")
    } else {
        format!("{g:.2} GiB")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overflow_and_huge_buffers_are_refused_small_ones_pass() {
        let device = Device::cpu();
        let mut f = Footprint::new();
        f.buffer(4, &[1000, 1000]).host(1, &[1000, 1000]);
        f.check(&device, "a small model").unwrap();
        let mut f = Footprint::new();
        f.buffer(4, &[usize::MAX, usize::MAX, 4]);
        let err = f.check(&device, "the MLP").unwrap_err().to_string();
        assert!(err.contains("overflow"), "{err}");
        let mut f = Footprint::new();
        f.buffer(4, &[usize::MAX / 2]);
        let err = f.check(&device, "the MLP").unwrap_err().to_string();
        assert!(err.contains("needs a buffer of"), "{err}");
        if available_memory().is_some() {
            let mut f = Footprint::new();
            for _ in 0..1024 {
                f.host(1, &[1 << 40]);
            }
            let err = f.check(&device, "the MLP").unwrap_err().to_string();
            assert!(err.contains("of memory, more than"), "{err}");
        }
    }
}
