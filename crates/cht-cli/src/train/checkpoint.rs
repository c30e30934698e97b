//! Checkpoints: named f32/u32 tensors plus string metadata in one safetensors file, written
//! atomically (temporary file + rename), read back with validation.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use anyhow::{Context, Result, bail};
use cht_dst::Topology;
use cht_gpu::Device;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};

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

    /// Writes the checkpoint to `path` atomically: a crash leaves either the old or the new file.
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut views: Vec<(String, TensorView<'_>)> = Vec::new();
        for (name, (shape, data)) in &self.f32s {
            views.push((
                name.clone(),
                TensorView::new(Dtype::F32, shape.clone(), bytemuck_f32(data))?,
            ));
        }
        for (name, (shape, data)) in &self.u32s {
            views.push((
                name.clone(),
                TensorView::new(Dtype::U32, shape.clone(), bytemuck_u32(data))?,
            ));
        }
        let meta: HashMap<String, String> = self.metadata.clone().into_iter().collect();
        let bytes = safetensors::serialize(views, &Some(meta))?;
        let tmp = path.with_extension("safetensors.tmp");
        std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, path)
            .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
        Ok(())
    }

    /// Reads a checkpoint; a truncated or corrupt file gives one clear error.
    pub fn load(path: &Path) -> Result<Checkpoint> {
        let bytes = std::fs::read(path)
            .with_context(|| format!("reading checkpoint {}", path.display()))?;
        let st = SafeTensors::deserialize(&bytes)
            .map_err(|e| anyhow::anyhow!("{} is not a valid checkpoint ({e:?})", path.display()))?;
        let (_, header) = SafeTensors::read_metadata(&bytes)
            .map_err(|e| anyhow::anyhow!("{} is not a valid checkpoint ({e:?})", path.display()))?;
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
            let data = view.data();
            match view.dtype() {
                Dtype::F32 => {
                    let v = data
                        .chunks_exact(4)
                        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                        .collect();
                    out.f32s.insert(name, (shape, v));
                }
                Dtype::U32 => {
                    let v = data
                        .chunks_exact(4)
                        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                        .collect();
                    out.u32s.insert(name, (shape, v));
                }
                other => bail!(
                    "{}: tensor {name:?} has unsupported type {other:?}",
                    path.display()
                ),
            }
        }
        let format = out.metadata.get("format").map(String::as_str);
        if !format.is_some_and(|f| [FORMAT, LM_FORMAT].contains(&f)) {
            bail!(
                "{} is not a cht checkpoint (format {:?})",
                path.display(),
                format
            );
        }
        out.path = path.display().to_string();
        Ok(out)
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

fn bytemuck_f32(v: &[f32]) -> &[u8] {
    bytemuck::cast_slice(v)
}

fn bytemuck_u32(v: &[u32]) -> &[u8] {
    bytemuck::cast_slice(v)
}

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
    }
}
