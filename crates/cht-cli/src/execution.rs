//! `model.masked_dense_above`: the density above which sparse layers run as masked-dense GEMMs
//! instead of CSR products, and its per-adapter calibration, cached under the user's cache
//! directory (`$CHT_CACHE_DIR`, else `$XDG_CACHE_HOME/cht`, else `~/.cache/cht`).
//! `CHT_MASKED_DENSE_ABOVE` (`never` or a density) replaces `"auto"` without measuring.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Result;
use cht_gpu::{Device, DeviceInfo};
use cht_nn::ExecutionPolicy;
use serde::{Deserialize, Serialize};

/// The crossover setting of a run.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum MaskedDenseAbove {
    /// Measured once per adapter and layer shape, then cached; the run directory records the
    /// measured value, so a resumed run executes the same way.
    #[default]
    Auto,
    /// Always CSR.
    Never,
    /// Masked-dense above this density.
    Density(f64),
}

impl Serialize for MaskedDenseAbove {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            MaskedDenseAbove::Auto => s.serialize_str("auto"),
            MaskedDenseAbove::Never => s.serialize_str("never"),
            MaskedDenseAbove::Density(d) => s.serialize_f64(*d),
        }
    }
}

impl<'de> Deserialize<'de> for MaskedDenseAbove {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(f64),
            Word(String),
        }
        match Raw::deserialize(d)? {
            Raw::Number(x) if (0.0..=1.0).contains(&x) => Ok(MaskedDenseAbove::Density(x)),
            Raw::Number(x) => Err(serde::de::Error::custom(format!(
                "a density in [0, 1], \"auto\" or \"never\" expected, got {x}"
            ))),
            Raw::Word(w) if w == "auto" => Ok(MaskedDenseAbove::Auto),
            Raw::Word(w) if w == "never" => Ok(MaskedDenseAbove::Never),
            Raw::Word(w) => Err(serde::de::Error::custom(format!(
                "a density in [0, 1], \"auto\" or \"never\" expected, got {w:?}"
            ))),
        }
    }
}

impl std::str::FromStr for MaskedDenseAbove {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(MaskedDenseAbove::Auto),
            "never" => Ok(MaskedDenseAbove::Never),
            _ => match s.parse::<f64>() {
                Ok(x) if (0.0..=1.0).contains(&x) => Ok(MaskedDenseAbove::Density(x)),
                _ => Err(format!(
                    "a density in [0, 1], \"auto\" or \"never\" expected, got {s:?}"
                )),
            },
        }
    }
}

impl MaskedDenseAbove {
    /// The policy of a run whose largest sparse layer is `shape` (`(out, in)`) at `batch`
    /// columns: `Auto` is measured (or read from the cache) and replaced by the value, so that the
    /// caller can record it.
    pub fn resolve(
        &mut self,
        device: &Device,
        shape: (usize, usize),
        batch: usize,
    ) -> Result<ExecutionPolicy> {
        if *self == MaskedDenseAbove::Auto
            && let Ok(v) = std::env::var("CHT_MASKED_DENSE_ABOVE")
        {
            // A fixed value for "auto" (reproducible CI, or a crossover measured elsewhere).
            *self = v
                .parse()
                .map_err(|e| anyhow::anyhow!("CHT_MASKED_DENSE_ABOVE: {e}"))?;
        }
        let crossover = match *self {
            MaskedDenseAbove::Never => 1.0,
            MaskedDenseAbove::Density(d) => d,
            MaskedDenseAbove::Auto => {
                let c = calibrated(device, shape, batch)?;
                *self = MaskedDenseAbove::Density(c);
                c
            }
        };
        Ok(ExecutionPolicy::with_crossover(crossover))
    }
}

impl MaskedDenseAbove {
    /// [`MaskedDenseAbove::resolve`] on every rank of `world` alike: rank 0 measures (or reads
    /// its cache) and the others take its value, so every rank runs the same executions and no
    /// two measure side by side.
    pub fn resolve_on(
        &mut self,
        world: &crate::world::World,
        device: &Device,
        shape: (usize, usize),
        batch: usize,
    ) -> Result<ExecutionPolicy> {
        if world.size() == 1 {
            return self.resolve(device, shape, batch);
        }
        let mut bytes = Vec::new();
        if world.is_root() {
            self.resolve(device, shape, batch)?;
            bytes = serde_json::to_vec(self)?;
        }
        world.broadcast(&mut bytes)?;
        *self = serde_json::from_slice(&bytes)?;
        self.resolve(device, shape, batch)
    }
}

/// One cached measurement.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Entry {
    crossover: f64,
    csr_ms: Vec<(f64, f64)>,
    masked_ms: f64,
}

fn cache_file() -> Option<PathBuf> {
    let dir = std::env::var_os("CHT_CACHE_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("cht")))
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/cht")))?;
    Some(dir.join("crossover.json"))
}

/// What identifies a measurement: the adapter (or CPU threads), the layer, the batch and the
/// kernels' revision.
fn key(device: &Device, (out, inp): (usize, usize), batch: usize) -> String {
    let who = match device.info() {
        DeviceInfo::Gpu(a) => format!("{} ({}, {})", a.name, a.backend, a.driver),
        DeviceInfo::Cpu { threads } => format!("cpu ({threads} threads)"),
    };
    format!(
        "{who} | {out}x{inp} at {batch} | cht {} | kernels {KERNELS_REVISION}",
        env!("CARGO_PKG_VERSION")
    )
}

/// Bumped whenever a change of the CSR or dense kernels moves their relative speed, so that
/// crossovers measured with older kernels are not reused (2: AVX-512 GEMM, register-blocked CPU
/// SpMM and SDDMM).
const KERNELS_REVISION: u32 = 2;

/// The cached crossover, or a fresh measurement (stored in the cache when it can be written).
fn calibrated(device: &Device, shape: (usize, usize), batch: usize) -> Result<f64> {
    let k = key(device, shape, batch);
    let file = cache_file();
    let mut cache: BTreeMap<String, Entry> = file
        .as_ref()
        .and_then(|f| cht_sparse::io::read_text_bounded(f, "crossover cache", 16 << 20).ok())
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    if let Some(e) = cache.get(&k) {
        log::info!("masked-dense crossover {:.3} (cached: {k})", e.crossover);
        return Ok(e.crossover);
    }
    errln!(
        "measuring the CSR / masked-dense crossover of a {}x{} layer at batch {batch} on {} (once; cached)",
        shape.0,
        shape.1,
        device.name()
    );
    let c = cht_nn::calibrate::calibrate_crossover(device, shape, batch, 3)?;
    errln!(
        "  CSR {} ms at densities {}; masked-dense {:.3} ms → masked-dense above {:.1} % density",
        c.csr_ms
            .iter()
            .map(|(_, ms)| format!("{ms:.3}"))
            .collect::<Vec<_>>()
            .join(" / "),
        c.csr_ms
            .iter()
            .map(|(d, _)| format!("{:.0} %", d * 100.0))
            .collect::<Vec<_>>()
            .join(" / "),
        c.masked_ms,
        c.crossover * 100.0
    );
    cache.insert(
        k,
        Entry {
            crossover: c.crossover,
            csr_ms: c.csr_ms,
            masked_ms: c.masked_ms,
        },
    );
    if let Some(f) = file {
        let written = f
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .map_err(anyhow::Error::from)
            .and_then(|()| {
                let text = serde_json::to_string_pretty(&cache)?;
                Ok(cht_sparse::io::write_atomic(
                    &f,
                    "crossover cache",
                    text.as_bytes(),
                )?)
            });
        if let Err(e) = written {
            log::warn!("could not cache the crossover in {}: {e}", f.display());
        }
    }
    Ok(c.crossover)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    struct Wrap {
        m: MaskedDenseAbove,
    }

    #[test]
    fn setting_reads_auto_never_and_densities() {
        let read = |t: &str| toml::from_str::<Wrap>(t).map(|w| w.m);
        assert_eq!(read("m = \"auto\"").unwrap(), MaskedDenseAbove::Auto);
        assert_eq!(read("m = \"never\"").unwrap(), MaskedDenseAbove::Never);
        assert_eq!(read("m = 0.25").unwrap(), MaskedDenseAbove::Density(0.25));
        assert!(read("m = 1.5").is_err());
        assert!(read("m = \"sometimes\"").is_err());
        let back = toml::to_string(&Wrap {
            m: MaskedDenseAbove::Density(0.25),
        })
        .unwrap();
        assert_eq!(read(&back).unwrap(), MaskedDenseAbove::Density(0.25));
    }
}
