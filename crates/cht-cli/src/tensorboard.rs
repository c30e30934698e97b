//! TensorBoard event files (`events.out.tfevents.*`): scalars that `tensorboard --logdir runs/`
//! plots, written without TensorFlow.
//!
//! The format is documented by TensorFlow: a file of TFRecord records — `u64` length (little
//! endian), the masked CRC-32C of those 8 bytes, the payload, the masked CRC-32C of the payload —
//! each payload an `Event` protobuf message (`tensorflow/core/util/event.proto`: `wall_time` 1,
//! `step` 2, `file_version` 3, `summary` 5), a `Summary` holding repeated `Value`s (`tag` 1,
//! `simple_value` 2). The first record carries `file_version = "brain.Event:2"`. The messages are
//! declared here with `prost`'s derives (no `.proto` build step).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use prost::Message;

/// `tensorflow.Event`, the fields cht writes.
#[derive(Clone, PartialEq, prost::Message)]
struct Event {
    #[prost(double, tag = "1")]
    wall_time: f64,
    #[prost(int64, tag = "2")]
    step: i64,
    #[prost(oneof = "What", tags = "3, 5")]
    what: Option<What>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
enum What {
    #[prost(string, tag = "3")]
    FileVersion(String),
    #[prost(message, tag = "5")]
    Summary(Summary),
}

/// `tensorflow.Summary`.
#[derive(Clone, PartialEq, prost::Message)]
struct Summary {
    #[prost(message, repeated, tag = "1")]
    value: Vec<Value>,
}

/// `tensorflow.Summary.Value` with a scalar (`simple_value`, field 2 of its `value` oneof).
#[derive(Clone, PartialEq, prost::Message)]
struct Value {
    #[prost(string, tag = "1")]
    tag: String,
    #[prost(float, tag = "2")]
    simple_value: f32,
}

/// Appends scalars to one event file of a run folder.
#[derive(Debug)]
pub(crate) struct EventWriter {
    path: PathBuf,
    file: std::io::BufWriter<std::fs::File>,
}

impl EventWriter {
    /// A new event file in `dir` (each process start makes its own; TensorBoard reads them all).
    pub(crate) fn create(dir: &Path) -> Result<EventWriter> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let path = dir.join(format!(
            "events.out.tfevents.{}.cht.{}",
            now.as_secs(),
            std::process::id()
        ));
        let file = std::fs::OpenOptions::new()
            .create_new(true)
            .write(true)
            .open(&path)
            .with_context(|| format!("creating {}", path.display()))?;
        let mut w = EventWriter {
            path,
            file: std::io::BufWriter::new(file),
        };
        w.write(Event {
            wall_time: now.as_secs_f64(),
            step: 0,
            what: Some(What::FileVersion("brain.Event:2".into())),
        })?;
        Ok(w)
    }

    /// One event at `step` with every `(tag, value)` scalar; non-finite values are skipped.
    pub(crate) fn scalars(&mut self, step: u64, values: &[(String, f64)]) -> Result<()> {
        let value = values
            .iter()
            .filter(|(_, v)| v.is_finite())
            .map(|(tag, v)| Value {
                tag: tag.clone(),
                simple_value: *v as f32,
            })
            .collect();
        let wall_time = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        self.write(Event {
            wall_time,
            step: i64::try_from(step).unwrap_or(i64::MAX),
            what: Some(What::Summary(Summary { value })),
        })
    }

    /// Writes buffered events to the file (after each round, so a killed run keeps them).
    pub(crate) fn flush(&mut self) -> Result<()> {
        self.file
            .flush()
            .with_context(|| format!("writing {}", self.path.display()))
    }

    fn write(&mut self, event: Event) -> Result<()> {
        let record = record(&event.encode_to_vec());
        self.file
            .write_all(&record)
            .with_context(|| format!("writing {}", self.path.display()))
    }
}

/// One TFRecord: length, its masked CRC, the payload, its masked CRC.
fn record(payload: &[u8]) -> Vec<u8> {
    let len = (payload.len() as u64).to_le_bytes();
    let mut out = Vec::with_capacity(payload.len() + 16);
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc(&len).to_le_bytes());
    out.extend_from_slice(payload);
    out.extend_from_slice(&masked_crc(payload).to_le_bytes());
    out
}

/// TFRecord's masked CRC-32C: rotated right by 15 bits plus a constant.
fn masked_crc(bytes: &[u8]) -> u32 {
    let crc = crc32c::crc32c(bytes);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads the records back (framing and CRCs checked) and decodes the events.
    fn read(path: &Path) -> Vec<Event> {
        let bytes = std::fs::read(path).unwrap();
        let mut at = 0;
        let mut out = Vec::new();
        while at < bytes.len() {
            let len_bytes = &bytes[at..at + 8];
            let len = u64::from_le_bytes(len_bytes.try_into().unwrap()) as usize;
            let crc = u32::from_le_bytes(bytes[at + 8..at + 12].try_into().unwrap());
            assert_eq!(crc, masked_crc(len_bytes));
            let payload = &bytes[at + 12..at + 12 + len];
            let crc = u32::from_le_bytes(bytes[at + 12 + len..at + 16 + len].try_into().unwrap());
            assert_eq!(crc, masked_crc(payload));
            out.push(Event::decode(payload).unwrap());
            at += 16 + len;
        }
        out
    }

    #[test]
    fn events_round_trip_with_valid_framing() {
        let dir = std::env::temp_dir().join(format!("cht-tb-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut w = EventWriter::create(&dir).unwrap();
        w.scalars(7, &[("train/loss".into(), 0.5), ("x".into(), f64::NAN)])
            .unwrap();
        w.flush().unwrap();
        let events = read(&w.path);
        assert_eq!(events.len(), 2);
        assert_eq!(
            events[0].what,
            Some(What::FileVersion("brain.Event:2".into()))
        );
        assert_eq!(events[1].step, 7);
        let Some(What::Summary(s)) = &events[1].what else {
            panic!("a summary")
        };
        assert_eq!(s.value.len(), 1, "the NaN is skipped");
        assert_eq!(
            (s.value[0].tag.as_str(), s.value[0].simple_value),
            ("train/loss", 0.5)
        );
        // The CRC-32C check value of "123456789" (RFC 3720) through the crate.
        assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
