//! safetensors files: an 8-byte little-endian header length, a JSON header
//! `{name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {..}}`
//! and the raw little-endian tensor bytes (offsets relative to the end of the
//! header). See <https://github.com/huggingface/safetensors#format>.

use std::io::Write;
use std::path::Path;

use indexmap::IndexMap;
use serde_json::{json, Map, Value as Json};

use super::tensor::{numel, DType, TensorData};
use super::writer::write_atomically;
use super::{CheckpointError, ErrorKind, Result};

/// The largest header the reference implementation accepts (100 MB).
const MAX_HEADER: u64 = 100_000_000;

/// Reads every tensor of a safetensors file, in header order.
pub fn read(path: &Path) -> Result<IndexMap<String, TensorData>> {
    let bytes = std::fs::read(path).map_err(|e| CheckpointError::io(path, "cannot read", &e))?;
    parse(&bytes).map_err(|m| CheckpointError::format(path, format!("safetensors: {m}")))
}

/// Parses safetensors bytes.
pub fn parse(bytes: &[u8]) -> Result<IndexMap<String, TensorData>, String> {
    let Some(len) = bytes.get(..8) else {
        return Err(format!(
            "the file has {} bytes, fewer than the 8-byte header length",
            bytes.len()
        ));
    };
    let header_len = u64::from_le_bytes(len.try_into().unwrap_or_default());
    if header_len > MAX_HEADER || header_len > (bytes.len() - 8) as u64 {
        return Err(format!(
            "header length {header_len} exceeds the file (truncated?)"
        ));
    }
    let data = &bytes[8 + header_len as usize..];
    let header: Map<String, Json> = serde_json::from_slice(&bytes[8..8 + header_len as usize])
        .map_err(|e| format!("header is not a JSON object: {e}"))?;
    let mut out = IndexMap::with_capacity(header.len());
    for (name, info) in header {
        if name == "__metadata__" {
            continue;
        }
        let tensor = tensor(&info, data).map_err(|m| format!("tensor `{name}`: {m}"))?;
        out.insert(name, tensor);
    }
    Ok(out)
}

fn tensor(info: &Json, data: &[u8]) -> Result<TensorData, String> {
    let dtype_name = info
        .get("dtype")
        .and_then(Json::as_str)
        .ok_or("no `dtype`")?;
    let dtype = DType::from_safetensors_name(dtype_name)
        .ok_or_else(|| format!("dtype `{dtype_name}` is not supported"))?;
    let shape: Vec<i64> = info
        .get("shape")
        .and_then(Json::as_array)
        .and_then(|dims| {
            dims.iter()
                .map(|d| d.as_u64().and_then(|d| i64::try_from(d).ok()))
                .collect()
        })
        .ok_or("`shape` is not a list of sizes")?;
    let offsets: Vec<u64> = info
        .get("data_offsets")
        .and_then(Json::as_array)
        .and_then(|o| o.iter().map(Json::as_u64).collect())
        .filter(|o: &Vec<u64>| o.len() == 2)
        .ok_or("`data_offsets` is not [begin, end]")?;
    let (begin, end) = (offsets[0], offsets[1]);
    if begin > end || end > data.len() as u64 {
        return Err(format!(
            "data_offsets [{begin}, {end}] run outside the {} data bytes (truncated?)",
            data.len()
        ));
    }
    let expected = numel(&shape)
        .and_then(|n| n.checked_mul(dtype.size()))
        .ok_or("shape overflows")?;
    if (end - begin) as usize != expected {
        return Err(format!(
            "{dtype} shape {shape:?} needs {expected} bytes but data_offsets span {}",
            end - begin
        ));
    }
    Ok(TensorData {
        dtype,
        shape,
        data: data[begin as usize..end as usize].to_vec(),
    })
}

/// Writes `tensors` (in order) with optional string `metadata`, atomically.
pub fn write(
    path: &Path,
    tensors: &IndexMap<String, TensorData>,
    metadata: Option<&IndexMap<String, String>>,
) -> Result<()> {
    let mut header = Map::new();
    if let Some(metadata) = metadata {
        let metadata: Map<String, Json> = metadata
            .iter()
            .map(|(k, v)| (k.clone(), Json::String(v.clone())))
            .collect();
        header.insert("__metadata__".into(), Json::Object(metadata));
    }
    let mut offset = 0usize;
    for (name, t) in tensors {
        if name == "__metadata__" {
            return Err(CheckpointError::new(
                path,
                ErrorKind::Unsupported,
                "a tensor cannot be named `__metadata__` in safetensors",
            ));
        }
        header.insert(name.clone(), json!({"dtype": t.dtype.safetensors_name(), "shape": t.shape, "data_offsets": [offset, offset + t.data.len()]}));
        offset += t.data.len();
    }
    let mut header = serde_json::to_vec(&Json::Object(header))
        .map_err(|e| CheckpointError::new(path, ErrorKind::Format, e.to_string()))?;
    // Pad with spaces so the data starts 8-byte aligned, as the reference writer does.
    while header.len() % 8 != 0 {
        header.push(b' ');
    }
    write_atomically(path, |file| {
        file.write_all(&(header.len() as u64).to_le_bytes())?;
        file.write_all(&header)?;
        tensors.values().try_for_each(|t| file.write_all(&t.data))
    })
}
