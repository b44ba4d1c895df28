//! Writes `.pth` files in torch's zip format, as `torch.save` does, so that
//! `torch.load(path, weights_only=True)` and MMEngine's `load_checkpoint`
//! read them; and the atomic-write helper both writers use.
//!
//! Layout (torch 2.11): `archive/data.pkl` (pickle protocol 2),
//! `archive/.format_version` = `1`, `archive/.storage_alignment` = `64`,
//! `archive/byteorder` = `little`, one stored record `archive/data/<i>` per
//! tensor with its data 64-byte aligned, `archive/version` = `3`, and
//! `archive/.data/serialization_id`.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use zip::write::FileOptions;
use zip::CompressionMethod;

use super::pickle::Value;
use super::tensor::TensorData;
use super::{CheckpointError, ErrorKind, Result};

/// Writes `state_dict` to `path` in torch's zip format.
///
/// Without `meta` the file is a bare state dict (an `OrderedDict`, as
/// `torch.save(model.state_dict())` writes); with it, an MMEngine-style
/// `{'meta': meta, 'state_dict': ...}`. `meta` may hold `None`, bools, ints,
/// floats, strings, bytes, lists, tuples, dicts, sets and tensors; other
/// values (opaque objects) are an error, since `weights_only` loading would
/// reject them. The file appears complete or not at all (temporary file in
/// the same folder, fsync, rename).
pub fn save_pth(
    path: &Path,
    state_dict: &IndexMap<String, TensorData>,
    meta: Option<&Value>,
) -> Result<()> {
    match meta {
        Some(meta) => save_checkpoint(path, state_dict, &[("meta", meta)]),
        None => write_pickled(path, state_dict, None),
    }
}

/// Writes an MMEngine training checkpoint: a dict with `sections` (e.g.
/// `meta`, `message_hub`, `optimizer`, `param_schedulers`) around the
/// `state_dict`, in the order given (`state_dict` after the first section,
/// as MMEngine's `save_checkpoint` orders them). Same value rules and the
/// same atomic write as [`save_pth`].
pub fn save_checkpoint(
    path: &Path,
    state_dict: &IndexMap<String, TensorData>,
    sections: &[(&str, &Value)],
) -> Result<()> {
    write_pickled(path, state_dict, Some(sections))
}

fn write_pickled(
    path: &Path,
    state_dict: &IndexMap<String, TensorData>,
    sections: Option<&[(&str, &Value)]>,
) -> Result<()> {
    let mut pickler = Pickler {
        out: Vec::new(),
        storages: Vec::new(),
    };
    pickler.out.extend_from_slice(&[0x80, 2]);
    match sections {
        Some(sections) => {
            pickler.out.extend_from_slice(b"}(");
            for (i, (name, value)) in sections.iter().enumerate() {
                pickler.str(name);
                pickler.value(value, 0).map_err(|m| {
                    CheckpointError::new(path, ErrorKind::Unsupported, format!("cannot write {name}: {m}"))
                })?;
                if i == 0 {
                    pickler.str("state_dict");
                    pickler.state_dict(state_dict);
                }
            }
            if sections.is_empty() {
                pickler.str("state_dict");
                pickler.state_dict(state_dict);
            }
            pickler.out.push(b'u');
        }
        None => pickler.state_dict(state_dict),
    }
    pickler.out.push(b'.');
    let Pickler { out: pkl, storages } = pickler;
    write_atomically(path, |file| {
        write_archive(file, &pkl, &storages, &serialization_id(&pkl))
    })
}

fn write_archive(
    file: &mut BufWriter<File>,
    pkl: &[u8],
    storages: &[&TensorData],
    id: &str,
) -> io::Result<()> {
    let mut zip = zip::ZipWriter::new(file);
    let options = |len: usize| {
        FileOptions::default()
            .compression_method(CompressionMethod::Stored)
            .large_file(len >= u32::MAX as usize)
    };
    let record = |zip: &mut zip::ZipWriter<_>, name: &str, data: &[u8]| -> io::Result<()> {
        zip.start_file_aligned(format!("archive/{name}"), options(data.len()), 64)?;
        zip.write_all(data)
    };
    record(&mut zip, "data.pkl", pkl)?;
    record(&mut zip, ".format_version", b"1")?;
    record(&mut zip, ".storage_alignment", b"64")?;
    record(&mut zip, "byteorder", b"little")?;
    for (i, tensor) in storages.iter().enumerate() {
        record(&mut zip, &format!("data/{i}"), &tensor.data)?;
    }
    record(&mut zip, "version", b"3\n")?;
    record(&mut zip, ".data/serialization_id", id.as_bytes())?;
    zip.finish()?;
    Ok(())
}

/// A 40-digit id like torch's, different per file and per write.
fn serialization_id(pkl: &[u8]) -> String {
    use std::hash::{BuildHasher, Hasher};
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mut a = std::collections::hash_map::RandomState::new().build_hasher();
    a.write(pkl);
    a.write_u128(nanos);
    let mut b = std::collections::hash_map::RandomState::new().build_hasher();
    b.write_u64(a.finish());
    b.write_u32(std::process::id());
    format!("{:020}{:020}", a.finish(), b.finish())
}

/// Runs `write` on a temporary file next to `path`, fsyncs it and renames it
/// over `path`, so a crash never leaves a truncated file at `path`.
pub(crate) fn write_atomically(
    path: &Path,
    write: impl FnOnce(&mut BufWriter<File>) -> io::Result<()>,
) -> Result<()> {
    let temp = temp_path(path);
    let result = (|| {
        let mut file = BufWriter::new(File::create(&temp)?);
        write(&mut file)?;
        file.flush()?;
        let file = file.into_inner().map_err(io::IntoInnerError::into_error)?;
        file.sync_all()?;
        drop(file);
        pause_before_rename(path);
        std::fs::rename(&temp, path)?;
        // Make the rename itself durable (best effort: not every platform can open a folder).
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if let Ok(dir) = File::open(dir) {
                let _ = dir.sync_all();
            }
        }
        remove_abandoned_temps(path);
        Ok(())
    })();
    result.map_err(|e: io::Error| {
        let _ = std::fs::remove_file(&temp);
        CheckpointError::io(path, "cannot write", &e)
    })
}

/// The variable of [`pause_before_rename`].
const PAUSE_IN_SAVE_VAR: &str = "DETC_TEST_PAUSE_IN_SAVE";

/// A test aid (fault injection), not a setting: with
/// `DETC_TEST_PAUSE_IN_SAVE=<file name>:<millis>` in the environment, the
/// atomic write of a file of that name sleeps that long after its temporary
/// file is written and fsynced and before the rename, so that a test can
/// kill the process exactly there (tests/it/kill_save.rs). Read once per
/// process; unset, malformed or naming another file, it does nothing.
fn pause_before_rename(path: &Path) {
    static PAUSE: std::sync::OnceLock<Option<(String, u64)>> = std::sync::OnceLock::new();
    let pause = PAUSE.get_or_init(|| {
        let value = std::env::var(PAUSE_IN_SAVE_VAR).ok()?;
        let (name, millis) = value.rsplit_once(':')?;
        Some((name.to_string(), millis.parse().ok()?))
    });
    if let Some((name, millis)) = pause {
        if path.file_name().is_some_and(|n| n == name.as_str()) {
            std::thread::sleep(std::time::Duration::from_millis(*millis));
        }
    }
}

/// `.<name>.tmp<pid>` beside `path`: hidden, never named like a checkpoint,
/// and distinct per process.
fn temp_path(path: &Path) -> PathBuf {
    path.with_file_name(format!("{}{}", temp_prefix(path), std::process::id()))
}

fn temp_prefix(path: &Path) -> String {
    let name = path
        .file_name()
        .map_or_else(|| "checkpoint".into(), |n| n.to_string_lossy().into_owned());
    format!(".{name}.tmp")
}

/// Deletes the temporary files of `path` that dead processes left behind
/// (`.<name>.tmp<pid>`): a writer killed between creating its temporary
/// file and the rename. Called once `path` has been replaced. The temporary
/// file of a process that may still run (another rank writing the same
/// file) is kept, so its rename still succeeds. Best effort: a file that
/// cannot be listed or removed stays, and the write still succeeds.
pub fn remove_abandoned_temps(path: &Path) {
    let prefix = temp_prefix(path);
    let ours = std::process::id().to_string();
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix(&prefix)) else {
            continue;
        };
        if !pid.is_empty()
            && pid.bytes().all(|b| b.is_ascii_digit())
            && pid != ours
            && !may_be_running(pid)
        {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Whether process `pid` may still run: false only when `/proc` shows it
/// gone or a zombie; true where there is no `/proc` to ask.
fn may_be_running(pid: &str) -> bool {
    if !Path::new("/proc/self").exists() {
        return true;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // `pid (comm) S ...`: the state letter follows the last `)`.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next())
            .is_none_or(|state| !matches!(state, 'Z' | 'X')),
        Err(_) => false,
    }
}

/// Pickle protocol 2, in the shapes torch's own pickler produces.
struct Pickler<'t> {
    out: Vec<u8>,
    /// Tensors in storage-key order.
    storages: Vec<&'t TensorData>,
}

impl<'t> Pickler<'t> {
    fn global(&mut self, module: &str, name: &str) {
        self.out.push(b'c');
        self.out
            .extend_from_slice(format!("{module}\n{name}\n").as_bytes());
    }

    fn str(&mut self, s: &str) {
        self.out.push(b'X');
        self.out.extend_from_slice(&(s.len() as u32).to_le_bytes());
        self.out.extend_from_slice(s.as_bytes());
    }

    fn int(&mut self, v: i64) {
        if (0..256).contains(&v) {
            self.out.extend_from_slice(&[b'K', v as u8]);
        } else if (0..65536).contains(&v) {
            self.out.push(b'M');
            self.out.extend_from_slice(&(v as u16).to_le_bytes());
        } else if let Ok(v) = i32::try_from(v) {
            self.out.push(b'J');
            self.out.extend_from_slice(&v.to_le_bytes());
        } else {
            let bytes = v.to_le_bytes();
            // The shortest two's complement form.
            let mut n = 8;
            while n > 1
                && ((bytes[n - 1] == 0 && bytes[n - 2] & 0x80 == 0)
                    || (bytes[n - 1] == 0xff && bytes[n - 2] & 0x80 != 0))
            {
                n -= 1;
            }
            self.out.extend_from_slice(&[0x8a, n as u8]);
            self.out.extend_from_slice(&bytes[..n]);
        }
    }

    fn ints(&mut self, values: &[i64]) {
        self.tuple(values.len(), |p, i| p.int(values[i]));
    }

    fn tuple(&mut self, len: usize, mut item: impl FnMut(&mut Self, usize)) {
        match len {
            0 => self.out.push(b')'),
            1..=3 => {
                (0..len).for_each(|i| item(self, i));
                self.out.push(0x84 + len as u8);
            }
            _ => {
                self.out.push(b'(');
                (0..len).for_each(|i| item(self, i));
                self.out.push(b't');
            }
        }
    }

    fn ordered_dict_start(&mut self) {
        self.global("collections", "OrderedDict");
        self.out.extend_from_slice(b")R");
    }

    fn state_dict(&mut self, state_dict: &'t IndexMap<String, TensorData>) {
        self.ordered_dict_start();
        // Python's pickler batches SETITEMS by 1000.
        for chunk in state_dict.iter().collect::<Vec<_>>().chunks(1000) {
            self.out.push(b'(');
            for (name, tensor) in chunk {
                self.str(name);
                self.tensor(tensor);
            }
            self.out.push(b'u');
        }
    }

    /// `torch._utils._rebuild_tensor_v2(storage, 0, size, stride, False, OrderedDict())`.
    fn tensor(&mut self, tensor: &'t TensorData) {
        let key = self.storages.len();
        self.storages.push(tensor);
        self.global("torch._utils", "_rebuild_tensor_v2");
        self.out.extend_from_slice(b"((");
        self.str("storage");
        self.global("torch", tensor.dtype.storage_name());
        self.str(&key.to_string());
        self.str("cpu");
        self.int(tensor.numel() as i64);
        self.out.extend_from_slice(b"tQ");
        self.int(0);
        self.ints(&tensor.shape);
        let mut stride = vec![1i64; tensor.shape.len()];
        for d in (0..tensor.shape.len().saturating_sub(1)).rev() {
            stride[d] = stride[d + 1] * tensor.shape[d + 1].max(1);
        }
        self.ints(&stride);
        self.out.push(0x89);
        self.ordered_dict_start();
        self.out.extend_from_slice(b"tR");
    }

    fn value(&mut self, value: &'t Value, depth: usize) -> Result<(), String> {
        // As deep as the reader accepts, and no deeper than the stack allows.
        if depth > 200 {
            return Err("values nest deeper than 200 levels".into());
        }
        let depth = depth + 1;
        match value {
            Value::None => self.out.push(b'N'),
            Value::Bool(b) => self.out.push(if *b { 0x88 } else { 0x89 }),
            Value::Int(i) => self.int(*i),
            Value::BigInt(bytes) => {
                if let Ok(n) = u8::try_from(bytes.len()) {
                    self.out.extend_from_slice(&[0x8a, n]);
                } else {
                    self.out.push(0x8b);
                    self.out
                        .extend_from_slice(&(bytes.len() as u32).to_le_bytes());
                }
                self.out.extend_from_slice(bytes);
            }
            Value::Float(f) => {
                self.out.push(b'G');
                self.out.extend_from_slice(&f.to_be_bytes());
            }
            Value::Str(s) => self.str(s),
            Value::Bytes(bytes) => {
                // Protocol 2 spells bytes as `_codecs.encode(latin1_text, 'latin1')`.
                self.global("_codecs", "encode");
                self.str(&bytes.iter().map(|&b| char::from(b)).collect::<String>());
                self.str("latin1");
                self.out.extend_from_slice(&[0x86, b'R']);
            }
            Value::List(items) => {
                self.out.push(b']');
                if !items.is_empty() {
                    self.out.push(b'(');
                    items.iter().try_for_each(|v| self.value(v, depth))?;
                    self.out.push(b'e');
                }
            }
            Value::Tuple(items) => {
                let mut result = Ok(());
                self.tuple(items.len(), |p, i| {
                    if result.is_ok() {
                        result = p.value(&items[i], depth);
                    }
                });
                result?;
            }
            Value::Dict(items) => {
                self.out.push(b'}');
                if !items.is_empty() {
                    self.out.push(b'(');
                    for (k, v) in items {
                        self.value(k, depth)?;
                        self.value(v, depth)?;
                    }
                    self.out.push(b'u');
                }
            }
            Value::Set(items) | Value::FrozenSet(items) => {
                let name = if matches!(value, Value::Set(_)) {
                    "set"
                } else {
                    "frozenset"
                };
                self.global("builtins", name);
                self.out.push(b']');
                if !items.is_empty() {
                    self.out.push(b'(');
                    items.iter().try_for_each(|v| self.value(v, depth))?;
                    self.out.push(b'e');
                }
                self.out.extend_from_slice(&[0x85, b'R']);
            }
            Value::Tensor(t) => self.tensor(t),
            Value::Global { .. } | Value::Object { .. } | Value::Persistent(_) => {
                return Err(format!(
                    "a {} cannot be written (only plain data and tensors)",
                    value.kind()
                ))
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A save killed before its rename leaves `.<name>.tmp<pid>`; the next
    /// successful save of that name deletes it, and keeps the temporary
    /// files of running processes and of other names.
    #[test]
    #[cfg(target_os = "linux")] // the liveness of a pid comes from /proc
    fn a_save_deletes_the_temps_a_killed_save_left() {
        let dir = tempfile::tempdir().unwrap();
        let write =
            |name: &str| std::fs::write(dir.path().join(name), b"PK\x03\x04partial").unwrap();
        // pid 1 runs; 4194305 is above Linux's largest pid (2^22).
        let kept = [
            ".iter_4.pth.tmp",
            ".iter_4.pth.tmp1",
            ".iter_5.pth.tmp4194305",
            ".iter_4.pth.tmpx1",
            "iter_3.pth",
        ];
        for name in kept
            .iter()
            .chain(&[".iter_4.pth.tmp4194305", ".iter_4.pth.tmp4194306"])
        {
            write(name);
        }
        let target = dir.path().join("iter_4.pth");
        let state_dict = IndexMap::new();
        save_pth(&target, &state_dict, None).unwrap();
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        let mut want: Vec<String> = kept.iter().map(|s| s.to_string()).collect();
        want.push("iter_4.pth".into());
        want.sort();
        assert_eq!(names, want);
        assert!(super::super::load(&target).unwrap().state_dict.is_empty());
    }
}
