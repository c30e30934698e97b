//! Checkpoints: named f32/u32 tensors plus string metadata in one safetensors file, written
//! atomically and deterministically (identical runs give identical bytes), read back through the
//! bounded reader with validation (and the configuration and scheduler state inside are validated
//! again by the runner before use: see `run::config_of_checkpoint`).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use cht_dst::Topology;
use cht_gpu::Device;
use cht_sparse::io::{read_bounded, write_atomic};
use safetensors::tensor::{Dtype, SafeTensors};

/// An in-memory checkpoint.
#[derive(Debug, Default)]
pub struct Checkpoint {
    f32s: BTreeMap<String, (Vec<usize>, Vec<f32>)>,
    u32s: BTreeMap<String, (Vec<usize>, Vec<u32>)>,
    /// Free-form metadata (JSON or TOML strings).
    pub metadata: BTreeMap<String, String>,
    /// Where it was read from (for messages).
    path: String,
}

impl Checkpoint {
    /// Adds a float tensor.
    pub fn put_f32(&mut self, name: &str, shape: &[usize], data: Vec<f32>) {
        self.f32s.insert(name.to_owned(), (shape.to_vec(), data));
    }

    /// Adds a u32 tensor.
    pub fn put_u32(&mut self, name: &str, shape: &[usize], data: Vec<u32>) {
        self.u32s.insert(name.to_owned(), (shape.to_vec(), data));
    }

    /// A float tensor, or an error naming it.
    pub fn f32(&self, name: &str) -> Result<&[f32]> {
        self.f32s
            .get(name)
            .map(|(_, d)| &d[..])
            .with_context(|| format!("checkpoint has no tensor {name:?}"))
    }

    /// Whether a float tensor of that name is present.
    pub fn has_f32(&self, name: &str) -> bool {
        self.f32s.contains_key(name)
    }

    /// A u32 tensor, or an error naming it.
    pub fn u32(&self, name: &str) -> Result<&[u32]> {
        self.u32s
            .get(name)
            .map(|(_, d)| &d[..])
            .with_context(|| format!("checkpoint has no tensor {name:?}"))
    }

    /// A metadata entry, or an error naming it.
    pub fn meta(&self, key: &str) -> Result<&str> {
        self.metadata
            .get(key)
            .map(String::as_str)
            .with_context(|| format!("checkpoint has no metadata {key:?}"))
    }

    /// Adds the topology update's historical-weight memories (none unless the run uses
    /// `dst.regrown_weights = "History"`) as `dst.history{l}`.
    pub fn put_history(&mut self, device: &Device, topology: Option<&Topology>) -> Result<()> {
        for (l, h) in topology
            .map(Topology::history)
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            self.put_f32(
                &format!("dst.history{l}"),
                &[h.rows(), h.cols()],
                device.read_f32(h)?,
            );
        }
        Ok(())
    }

    /// Writes the saved historical-weight memories back (see [`Checkpoint::put_history`]).
    pub fn restore_history(&self, device: &Device, topology: Option<&Topology>) -> Result<()> {
        for (l, h) in topology
            .map(Topology::history)
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            let name = format!("dst.history{l}");
            let v = self.f32(&name)?;
            if v.len() != h.len() {
                bail!(
                    "checkpoint does not match the model: {name} has {} values, the layer {}",
                    v.len(),
                    h.len()
                );
            }
            device.write_f32(h, v)?;
        }
        Ok(())
    }

    /// Writes the checkpoint to `path` atomically (see [`cht_sparse::io::write_atomic`]): a crash
    /// leaves either the old or the new file. Identical checkpoints give identical bytes.
    pub fn save(&self, path: &Path) -> Result<()> {
        write_atomic(path, "checkpoint", &self.to_bytes()?)?;
        Ok(())
    }

    /// The safetensors encoding, deterministic: the header lists `__metadata__` and the tensors
    /// in name order (the `safetensors` crate serialises its metadata from a `HashMap`, whose
    /// order changes from run to run, which defeats checksums), and the data follows in the
    /// same order. Layout: header length (u64, little endian), the JSON header padded with
    /// spaces to a multiple of 8 bytes, then the tensors' little-endian bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let mut tensors: BTreeMap<&str, (&'static str, &[usize], &[u8])> = BTreeMap::new();
        for (name, (shape, data)) in &self.f32s {
            tensors.insert(name, ("F32", shape, bytemuck::cast_slice(data)));
        }
        for (name, (shape, data)) in &self.u32s {
            if tensors
                .insert(name, ("U32", shape, bytemuck::cast_slice(data)))
                .is_some()
            {
                bail!("checkpoint tensor {name:?} is given twice (f32 and u32)");
            }
        }
        let json = |s: &str| serde_json::to_string(s).map_err(anyhow::Error::from);
        let mut header = String::from("{\"__metadata__\":{");
        for (i, (k, v)) in self.metadata.iter().enumerate() {
            let comma = if i > 0 { "," } else { "" };
            header.push_str(&format!("{comma}{}:{}", json(k)?, json(v)?));
        }
        header.push('}');
        let mut offset = 0usize;
        for (name, (dtype, shape, bytes)) in &tensors {
            let elements = shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
            if elements.and_then(|n| n.checked_mul(4)) != Some(bytes.len()) {
                bail!(
                    "checkpoint tensor {name:?}: shape {shape:?} does not hold {} values",
                    bytes.len() / 4
                );
            }
            let end = offset + bytes.len();
            header.push_str(&format!(
                ",{}:{{\"dtype\":\"{dtype}\",\"shape\":{},\"data_offsets\":[{offset},{end}]}}",
                json(name)?,
                serde_json::to_string(shape)?
            ));
            offset = end;
        }
        header.push('}');
        while header.len() % 8 != 0 {
            header.push(' ');
        }
        let mut out = Vec::with_capacity(8 + header.len() + offset);
        out.extend_from_slice(&(header.len() as u64).to_le_bytes());
        out.extend_from_slice(header.as_bytes());
        for (_, _, bytes) in tensors.values() {
            out.extend_from_slice(bytes);
        }
        Ok(out)
    }

    /// Reads a checkpoint: a regular file of at most [`CHECKPOINT_LIMIT`] bytes; a truncated,
    /// corrupt or edited file (bad header, unknown types, non-finite values) gives one clear
    /// error.
    pub fn load(path: &Path) -> Result<Checkpoint> {
        let bytes = read_bounded(path, "checkpoint", CHECKPOINT_LIMIT)?;
        let mut out = Checkpoint::from_bytes(&bytes)
            .map_err(|e| anyhow::anyhow!("{} is not a valid checkpoint: {e}", path.display()))?;
        out.path = path.display().to_string();
        Ok(out)
    }

    /// The same checkpoint, named `path` in messages (one received from another rank).
    pub fn with_path(mut self, path: &Path) -> Checkpoint {
        self.path = path.display().to_string();
        self
    }

    /// [`Checkpoint::load`] on bytes in memory (errors do not name a file).
    pub fn from_bytes(bytes: &[u8]) -> Result<Checkpoint> {
        let st = SafeTensors::deserialize(bytes).map_err(|e| anyhow::anyhow!("{e}"))?;
        let (_, header) = SafeTensors::read_metadata(bytes).map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut out = Checkpoint {
            metadata: header
                .metadata()
                .clone()
                .unwrap_or_default()
                .into_iter()
                .collect(),
            ..Default::default()
        };
        for (name, view) in st.tensors() {
            let shape = view.shape().to_vec();
            let words = view
                .data()
                .chunks_exact(4)
                .map(|c| [c[0], c[1], c[2], c[3]]);
            match view.dtype() {
                Dtype::F32 => {
                    let v: Vec<f32> = words.map(f32::from_le_bytes).collect();
                    if let Some(i) = v.iter().position(|x| !x.is_finite()) {
                        bail!("tensor {name:?} holds a non-finite value ({}) at {i}", v[i]);
                    }
                    out.f32s.insert(name, (shape, v));
                }
                Dtype::U32 => {
                    let v = words.map(u32::from_le_bytes).collect();
                    out.u32s.insert(name, (shape, v));
                }
                other => bail!("tensor {name:?} has unsupported type {other:?}"),
            }
        }
        let format = out.metadata.get("format").map(String::as_str);
        if !format.is_some_and(|f| [FORMAT, LM_FORMAT].contains(&f)) {
            bail!("it is not a cht checkpoint (format {format:?})");
        }
        Ok(out)
    }

    /// The first float tensor holding a NaN or infinity, with the offending value: a diverged
    /// model must not overwrite the last good checkpoint.
    pub fn first_non_finite(&self) -> Option<(&str, f32)> {
        self.f32s.iter().find_map(|(name, (_, v))| {
            v.iter()
                .find(|x| !x.is_finite())
                .map(|&x| (name.as_str(), x))
        })
    }

    /// Where it was read from (empty for one built in memory).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Errors unless the checkpoint was written by the runner that owns `format`.
    pub fn expect_format(&self, format: &str) -> Result<()> {
        let found = self.meta("format")?;
        if found != format {
            let what = |f: &str| {
                if f == LM_FORMAT {
                    "a language-model (`cht lm train`)"
                } else {
                    "an MLP (`cht train`)"
                }
            };
            bail!(
                "{} is {} checkpoint, but this command reads {} checkpoints",
                self.path,
                what(found),
                what(format)
            );
        }
        Ok(())
    }
}

/// Format tag of MLP checkpoints (`cht train`).
pub const FORMAT: &str = "cht-mlp-1";

/// Format tag of language-model checkpoints (`cht lm train`).
pub const LM_FORMAT: &str = "cht-lm-1";

/// The largest checkpoint file read (64 GiB): well above LLaMA-1B's values and AdamW moments.
pub const CHECKPOINT_LIMIT: u64 = 64 << 30;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_corruption() {
        let dir = std::env::temp_dir().join(format!("cht-ckpt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.safetensors");
        let mut c = Checkpoint::default();
        c.put_f32("w", &[2, 2], vec![1.0, -2.0, 3.5, f32::MIN_POSITIVE]);
        c.put_u32("p", &[3], vec![0, 7, u32::MAX]);
        c.metadata.insert("format".into(), FORMAT.into());
        c.metadata.insert("epoch".into(), "3".into());
        c.save(&path).unwrap();
        let back = Checkpoint::load(&path).unwrap();
        assert_eq!(back.f32("w").unwrap(), &[1.0, -2.0, 3.5, f32::MIN_POSITIVE]);
        assert_eq!(back.u32("p").unwrap(), &[0, 7, u32::MAX]);
        assert_eq!(back.meta("epoch").unwrap(), "3");
        assert!(back.f32("missing").is_err());
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
        assert!(
            format!("{:#}", Checkpoint::load(&path).unwrap_err())
                .contains("not a valid checkpoint")
        );
        std::fs::write(&path, b"garbage").unwrap();
        assert!(Checkpoint::load(&path).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn sample(keys: impl Iterator<Item = usize>) -> Checkpoint {
        let mut c = Checkpoint::default();
        for k in keys {
            c.metadata
                .insert(format!("key{k}"), format!("value \"{k}\""));
            c.put_f32(&format!("t{k}"), &[k % 3 + 1], vec![k as f32; k % 3 + 1]);
        }
        c.metadata.insert("format".into(), FORMAT.into());
        c.put_u32("p", &[2], vec![1, 2]);
        c
    }

    #[test]
    fn identical_checkpoints_have_identical_bytes() {
        // Built in two orders; the safetensors crate's own writer orders metadata by a fresh
        // HashMap each time, so its bytes differed between two saves of the same checkpoint.
        let a = sample(0..40).to_bytes().unwrap();
        let b = sample((0..40).rev()).to_bytes().unwrap();
        assert_eq!(a, b);
        let back = Checkpoint::from_bytes(&a).unwrap();
        assert_eq!(back.meta("key7").unwrap(), "value \"7\"");
        assert_eq!(back.f32("t5").unwrap(), &[5.0; 3]);
        assert_eq!(back.u32("p").unwrap(), &[1, 2]);
        assert_eq!(back.to_bytes().unwrap(), a);
    }

    #[test]
    fn non_finite_values_are_refused_on_load_and_found_before_saving() {
        let mut c = sample(0..2);
        assert_eq!(c.first_non_finite(), None);
        c.put_f32("w", &[3], vec![1.0, f32::NAN, 2.0]);
        assert_eq!(c.first_non_finite().map(|(n, _)| n), Some("w"));
        let err = Checkpoint::from_bytes(&c.to_bytes().unwrap()).unwrap_err();
        assert!(err.to_string().contains("non-finite"), "{err}");
        let mut twice = sample(0..1);
        twice.put_f32("p", &[1], vec![0.0]);
        assert!(twice.to_bytes().is_err());
    }
}
