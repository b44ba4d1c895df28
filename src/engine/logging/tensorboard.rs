//! `TensorboardVisBackend`: the logged scalars and drawn images as a TensorBoard event file,
//! `events.out.tfevents.<secs>.<host>.<pid>.0`, the name PyTorch's
//! `SummaryWriter` gives it, so `tensorboard --logdir` finds it.
//!
//! An event file is a TFRecord stream: per record the length (u64 LE), its
//! masked CRC-32C, the bytes, their masked CRC-32C. Each record is an
//! `Event` protobuf; the first carries `file_version`, the others one
//! `Summary` of `simple_value` scalars, as `SummaryWriter.add_scalar` writes,
//! or of a PNG image, as `SummaryWriter.add_image` does.
//! The few protobuf fields are encoded here rather than through a protobuf
//! crate. Records are flushed as written, so a live `tensorboard` sees them.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use super::{Tag, TagValue};

/// The folder of the event files when the config's visualizer has a
/// `TensorboardVisBackend` (see [`backend_dir`]).
pub fn event_dir(config: &serde_json::Value, run_vis_dir: &Path) -> Option<PathBuf> {
    super::backend_dir(config, "TensorboardVisBackend", run_vis_dir).map(|(dir, _)| dir)
}

/// An open event file.
pub struct EventWriter {
    file: File,
    path: PathBuf,
}

impl EventWriter {
    /// Creates `dir` if needed and a new event file in it.
    pub fn create(dir: &Path) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let now = wall_time();
        let name = format!(
            "events.out.tfevents.{:010}.{}.{}.0",
            now as u64,
            hostname(),
            std::process::id()
        );
        let path = dir.join(name);
        let mut writer = EventWriter {
            file: File::create(&path)?,
            path,
        };
        let mut event = event_header(now, 0);
        field_bytes(&mut event, 3, b"brain.Event:2");
        writer.write_record(&event)?;
        Ok(writer)
    }

    /// The event file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// One scalar per entry of `tag` at `step` (MMEngine's
    /// `TensorboardVisBackend.add_scalars`: `add_scalar(key, value, step)`).
    pub fn add_scalars(&mut self, tag: &Tag, step: u64) -> io::Result<()> {
        // MMEngine asserts `step` is not a key: it is the step, not a scalar.
        for (name, value) in tag.iter().filter(|(name, _)| name.as_str() != "step") {
            let value = match value {
                TagValue::Float(x) => *x as f32,
                TagValue::Int(i) => *i as f32,
            };
            let mut summary_value = Vec::new();
            field_bytes(&mut summary_value, 1, name.as_bytes());
            // simple_value: field 2, fixed32.
            summary_value.push(2 << 3 | 5);
            summary_value.extend_from_slice(&value.to_le_bytes());
            self.write_summary(&summary_value, step)?;
        }
        self.file.flush()
    }

    /// `SummaryWriter.add_image(tag, image, step, dataformats='HWC')`, what
    /// MMEngine's `TensorboardVisBackend.add_image` calls: a `Summary.Image`
    /// (height, width, colorspace 3 = RGB, the PNG file of an RGB image of
    /// `(height, width)`).
    pub fn add_image(
        &mut self,
        tag: &str,
        png: &[u8],
        (height, width): (usize, usize),
        step: u64,
    ) -> io::Result<()> {
        let mut encoded = Vec::new();
        field_varint(&mut encoded, 1, height as u64);
        field_varint(&mut encoded, 2, width as u64);
        field_varint(&mut encoded, 3, 3);
        field_bytes(&mut encoded, 4, png);
        let mut summary_value = Vec::new();
        field_bytes(&mut summary_value, 1, tag.as_bytes());
        field_bytes(&mut summary_value, 4, &encoded);
        self.write_summary(&summary_value, step)?;
        self.file.flush()
    }

    /// `SummaryWriter.add_text(tag, text)`, what MMEngine's
    /// `TensorboardVisBackend.add_config` calls with the config's Python
    /// text: a one-element `DT_STRING` tensor for the `text` plugin, at step 0.
    pub fn add_text(&mut self, tag: &str, text: &str) -> io::Result<()> {
        // SummaryMetadata { plugin_data: PluginData { plugin_name: "text" } }
        let mut plugin = Vec::new();
        field_bytes(&mut plugin, 1, b"text");
        let mut metadata = Vec::new();
        field_bytes(&mut metadata, 1, &plugin);
        // TensorProto { dtype: DT_STRING (7), tensor_shape: { dim: [{ size: 1 }] }, string_val: [text] }
        let mut dim = Vec::new();
        field_varint(&mut dim, 1, 1);
        let mut shape = Vec::new();
        field_bytes(&mut shape, 2, &dim);
        let mut tensor = Vec::new();
        field_varint(&mut tensor, 1, 7);
        field_bytes(&mut tensor, 2, &shape);
        field_bytes(&mut tensor, 8, text.as_bytes());
        let mut summary_value = Vec::new();
        field_bytes(&mut summary_value, 1, tag.as_bytes());
        field_bytes(&mut summary_value, 9, &metadata);
        field_bytes(&mut summary_value, 8, &tensor);
        self.write_summary(&summary_value, 0)?;
        self.file.flush()
    }

    /// An event at `step` whose `Summary` holds one `Summary.Value`.
    fn write_summary(&mut self, summary_value: &[u8], step: u64) -> io::Result<()> {
        let mut summary = Vec::new();
        field_bytes(&mut summary, 1, summary_value);
        let mut event = event_header(wall_time(), step as i64);
        field_bytes(&mut event, 5, &summary);
        self.write_record(&event)
    }

    fn write_record(&mut self, data: &[u8]) -> io::Result<()> {
        let len = (data.len() as u64).to_le_bytes();
        let mut record = Vec::with_capacity(data.len() + 16);
        record.extend_from_slice(&len);
        record.extend_from_slice(&masked_crc32c(&len).to_le_bytes());
        record.extend_from_slice(data);
        record.extend_from_slice(&masked_crc32c(data).to_le_bytes());
        self.file.write_all(&record)
    }
}

/// `Event.wall_time` (field 1, double) and `Event.step` (field 2, int64).
fn event_header(wall_time: f64, step: i64) -> Vec<u8> {
    let mut event = vec![1 << 3 | 1];
    event.extend_from_slice(&wall_time.to_le_bytes());
    if step != 0 {
        field_varint(&mut event, 2, step as u64);
    }
    event
}

/// A varint field (wire type 0).
fn field_varint(out: &mut Vec<u8>, field: u32, value: u64) {
    varint(out, u64::from(field << 3));
    varint(out, value);
}

/// A length-delimited field (wire type 2).
fn field_bytes(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    varint(out, u64::from(field << 3 | 2));
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn wall_time() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer outlives the call and its length is passed.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    match std::str::from_utf8(&buf[..end]) {
        Ok(name) if ok && !name.is_empty() => name.to_owned(),
        _ => "localhost".into(),
    }
}

/// TFRecord's checksum: CRC-32C (Castagnoli), rotated and offset so that a
/// CRC over data holding CRCs stays strong.
fn masked_crc32c(data: &[u8]) -> u32 {
    let crc = crc32c(data);
    (crc.rotate_right(15)).wrapping_add(0xa282_ead8)
}

fn crc32c(data: &[u8]) -> u32 {
    const POLY: u32 = 0x82f6_3b78; // reflected Castagnoli polynomial
    let mut crc = !0u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ POLY
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_matches_the_standard_check_value() {
        // RFC 3720 B.4 / the CRC catalogue's check value for "123456789".
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
        assert_eq!(crc32c(&[0u8; 32]), 0x8a91_36aa);
    }

    #[test]
    fn varints_encode_like_protobuf() {
        let enc = |v| {
            let mut out = vec![];
            varint(&mut out, v);
            out
        };
        assert_eq!(enc(1), [1]);
        assert_eq!(enc(300), [0xac, 0x02]);
    }
}
