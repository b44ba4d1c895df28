//! The legacy (pre-1.6, non-zip) `torch.save` format: pickles of the magic
//! number, the protocol version and system info, then the object, then the
//! list of storage keys, then each storage as an 8-byte little-endian
//! element count and its bytes.

use std::collections::HashMap;
use std::path::Path;

use super::pickle::{self, Value};
use super::pth::{storage_refs, Source, Storages};
use super::tensor::DType;
use super::{CheckpointError, ErrorKind, Result};

/// The legacy format's magic number (`0x1950a86a20f9469cfc6c`), as LONG1 bytes.
const LEGACY_MAGIC: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];
/// Reads a legacy (non-zip) `.pth` into a value tree with tensors resolved.
pub fn read_legacy(path: &Path) -> Result<Value> {
    let bytes = std::fs::read(path).map_err(|e| CheckpointError::io(path, "cannot read", &e))?;
    let fail = |what: &str, e: pickle::PickleError| {
        CheckpointError::format(path, format!("legacy .pth format, {what}: {e}"))
    };
    let (magic, pos) = pickle::load_at(&bytes, 0).map_err(|e| fail("magic number", e))?;
    if magic != Value::BigInt(LEGACY_MAGIC.to_vec()) {
        return Err(CheckpointError::format(
            path,
            "a pickle, but not a torch.save checkpoint (wrong magic number)",
        ));
    }
    let (version, pos) = pickle::load_at(&bytes, pos).map_err(|e| fail("protocol version", e))?;
    if version != Value::Int(1001) {
        return Err(CheckpointError::new(
            path,
            ErrorKind::Unsupported,
            format!("legacy .pth protocol version {version:?} (expected 1001)"),
        ));
    }
    let (sys_info, pos) = pickle::load_at(&bytes, pos).map_err(|e| fail("system info", e))?;
    let big_endian = matches!(sys_info.get("little_endian"), Some(Value::Bool(false)));
    let (value, pos) = pickle::load_at(&bytes, pos).map_err(|e| fail("object", e))?;
    let (keys, pos) = pickle::load_at(&bytes, pos).map_err(|e| fail("storage keys", e))?;
    let Value::List(keys) = keys else {
        return Err(CheckpointError::format(
            path,
            "legacy .pth format: storage keys are not a list",
        ));
    };
    let mut refs = HashMap::new();
    storage_refs(&value, &mut refs, 0);
    let offsets = legacy_offsets(path, &bytes, pos, &keys, &refs)?;
    let uses = refs.into_iter().map(|(k, (_, n))| (k, n)).collect();
    let mut storages = Storages {
        path,
        big_endian,
        source: Source::Legacy {
            bytes: &bytes,
            offsets,
        },
        cache: HashMap::new(),
        uses,
    };
    storages.resolve(value, 0)
}

/// Legacy storages follow the pickles in key order, each an 8-byte
/// little-endian element count and its bytes.
fn legacy_offsets(
    path: &Path,
    bytes: &[u8],
    mut pos: usize,
    keys: &[Value],
    refs: &HashMap<String, (DType, usize)>,
) -> Result<HashMap<String, (usize, usize)>> {
    let mut offsets = HashMap::new();
    for key in keys {
        let key = key
            .as_str()
            .map_or_else(|| key.as_int().unwrap_or(-1).to_string(), str::to_string);
        let Some((dtype, _)) = refs.get(&key) else {
            return Err(CheckpointError::format(
                path,
                format!("legacy .pth format: storage `{key}` has no type"),
            ));
        };
        let past_end = || {
            CheckpointError::format(path, format!("legacy .pth format: storage `{key}` runs past the end of the file (truncated?)"))
        };
        let data_start = pos
            .checked_add(8)
            .filter(|&e| e <= bytes.len())
            .ok_or_else(past_end)?;
        let mut count = [0u8; 8];
        count.copy_from_slice(&bytes[pos..data_start]);
        let len = usize::try_from(u64::from_le_bytes(count))
            .ok()
            .and_then(|n| n.checked_mul(dtype.size()));
        let end = len
            .and_then(|l| data_start.checked_add(l))
            .filter(|&e| e <= bytes.len())
            .ok_or_else(past_end)?;
        offsets.insert(key, (data_start, end));
        pos = end;
    }
    Ok(offsets)
}
