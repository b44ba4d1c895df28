//! `torch.save` files in the zip format (torch ≥ 1.6), and the rebuilding of
//! tensors from storages that the legacy format (`legacy.rs`) shares.
//!
//! `<archive>/data.pkl` is a pickle whose tensors are
//! `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)`
//! and whose storages are persistent ids
//! `('storage', torch.FloatStorage, key, location, numel)` naming the record
//! `<archive>/data/<key>`; `<archive>/byteorder` says `little` or `big`.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;
use std::rc::Rc;

use super::pickle::{self, Value};
use super::tensor::{numel, DType, TensorData};
use super::view::{strided_copy, view_range};
use super::{CheckpointError, ErrorKind, Result};

/// Reads a zip-format `.pth` into a value tree with tensors resolved.
pub fn read_zip(path: &Path) -> Result<Value> {
    let file = File::open(path).map_err(|e| CheckpointError::io(path, "cannot open", &e))?;
    let mut zip = zip::ZipArchive::new(BufReader::new(file)).map_err(|e| {
        CheckpointError::format(
            path,
            format!("not a readable zip archive (truncated or corrupt?): {e}"),
        )
    })?;
    let pkl = zip
        .file_names()
        .filter(|n| n.ends_with("/data.pkl") && n.matches('/').count() == 1)
        .min_by_key(|n| n.len())
        .map(str::to_string)
        .ok_or_else(|| {
            CheckpointError::format(
                path,
                "the zip has no `<archive>/data.pkl`: not a torch.save checkpoint",
            )
        })?;
    let prefix = pkl.trim_end_matches("data.pkl").to_string();
    let data = read_entry(path, &mut zip, &pkl)?;
    let has_byteorder = zip.file_names().any(|n| n == format!("{prefix}byteorder"));
    let big_endian = match has_byteorder {
        true => read_entry(path, &mut zip, &format!("{prefix}byteorder"))?.trim_ascii() == b"big",
        false => false,
    };
    let value =
        pickle::load(&data).map_err(|e| CheckpointError::format(path, format!("{pkl}: {e}")))?;
    let mut refs = HashMap::new();
    storage_refs(&value, &mut refs, 0);
    let uses = refs.into_iter().map(|(k, (_, n))| (k, n)).collect();
    let mut storages = Storages {
        path,
        big_endian,
        source: Source::Zip {
            zip: &mut zip,
            prefix,
        },
        cache: HashMap::new(),
        uses,
    };
    storages.resolve(value, 0)
}

/// The dtype of every storage key named by a persistent id under `value`,
/// and how many times it is named (tensors sharing it).
pub(super) fn storage_refs(value: &Value, out: &mut HashMap<String, (DType, usize)>, depth: usize) {
    if depth > MAX_DEPTH {
        return;
    }
    let mut visit = |v: &Value| storage_refs(v, out, depth + 1);
    match value {
        Value::List(v) | Value::Tuple(v) | Value::Set(v) | Value::FrozenSet(v) => {
            v.iter().for_each(visit)
        }
        Value::Dict(kv) => kv.iter().for_each(|(k, v)| {
            visit(k);
            visit(v);
        }),
        Value::Object {
            args,
            state,
            items,
            elements,
            ..
        } => {
            args.iter()
                .chain(elements)
                .chain(state.as_deref())
                .for_each(&mut visit);
            items.iter().for_each(|(k, v)| {
                visit(k);
                visit(v);
            });
        }
        Value::Persistent(pid) => {
            if let Value::Tuple(items) = pid.as_ref() {
                if let (Some("storage"), Some(Value::Global { name, .. }), Some(key)) = (
                    items.first().and_then(Value::as_str),
                    items.get(1),
                    items.get(2),
                ) {
                    let key = key
                        .as_str()
                        .map_or_else(|| key.as_int().unwrap_or(-1).to_string(), str::to_string);
                    if let Some(dtype) = DType::from_storage_name(name) {
                        out.entry(key).or_insert((dtype, 0)).1 += 1;
                    }
                }
            }
        }
        _ => {}
    }
}

/// Where storage bytes come from.
pub(super) enum Source<'a> {
    Zip {
        zip: &'a mut zip::ZipArchive<BufReader<File>>,
        prefix: String,
    },
    /// The whole file and each storage's byte range in it.
    Legacy {
        bytes: &'a [u8],
        offsets: HashMap<String, (usize, usize)>,
    },
}

/// Storage records read so far, by key; shared by tensors viewing one storage.
pub(super) struct Storages<'a> {
    pub(super) path: &'a Path,
    pub(super) big_endian: bool,
    pub(super) source: Source<'a>,
    pub(super) cache: HashMap<String, Rc<Vec<u8>>>,
    /// Tensors yet to read each storage: the last one takes it out of the
    /// cache (and its bytes without a copy when it views all of them).
    pub(super) uses: HashMap<String, usize>,
}

const MAX_DEPTH: usize = 256;

impl Storages<'_> {
    fn err(&self, message: impl Into<String>) -> CheckpointError {
        CheckpointError::format(self.path, message)
    }

    /// Rebuilds tensors bottom-up: torch's rebuild calls become [`Value::Tensor`].
    pub(super) fn resolve(&mut self, value: Value, depth: usize) -> Result<Value> {
        if depth > MAX_DEPTH {
            return Err(self.err("values nest too deeply"));
        }
        let all = |s: &mut Self, v: Vec<Value>| {
            v.into_iter()
                .map(|x| s.resolve(x, depth + 1))
                .collect::<Result<Vec<_>>>()
        };
        let pairs = |s: &mut Self, v: Vec<(Value, Value)>| {
            v.into_iter()
                .map(|(k, x)| Ok((s.resolve(k, depth + 1)?, s.resolve(x, depth + 1)?)))
                .collect::<Result<Vec<_>>>()
        };
        Ok(match value {
            Value::List(v) => Value::List(all(self, v)?),
            Value::Tuple(v) => Value::Tuple(all(self, v)?),
            Value::Set(v) => Value::Set(all(self, v)?),
            Value::FrozenSet(v) => Value::FrozenSet(all(self, v)?),
            Value::Dict(v) => Value::Dict(pairs(self, v)?),
            Value::Object {
                module,
                name,
                args,
                state,
                items,
                elements,
            } => {
                let args = all(self, args)?;
                match self.call(&module, &name, args)? {
                    Ok(tensor) => tensor,
                    Err(args) => Value::Object {
                        module,
                        name,
                        args,
                        state: match state {
                            Some(s) => Some(Box::new(self.resolve(*s, depth + 1)?)),
                            None => None,
                        },
                        items: pairs(self, items)?,
                        elements: all(self, elements)?,
                    },
                }
            }
            Value::Persistent(pid) => self.persistent(*pid)?,
            other => other,
        })
    }

    /// A torch rebuild function applied to resolved `args`: `Ok(Ok(tensor))`,
    /// or `Ok(Err(args))` back when the call is not one of torch's.
    fn call(
        &mut self,
        module: &str,
        name: &str,
        args: Vec<Value>,
    ) -> Result<Result<Value, Vec<Value>>> {
        match (module, name) {
            ("torch._utils", "_rebuild_tensor_v2" | "_rebuild_tensor" | "_rebuild_tensor_v3") => {
                self.rebuild_tensor(name, &args).map(Ok)
            }
            // nn.Parameter: (tensor, requires_grad, backward_hooks[, state])
            ("torch._utils", "_rebuild_parameter" | "_rebuild_parameter_with_state") => {
                match args.into_iter().next() {
                    Some(t @ Value::Tensor(_)) => Ok(Ok(t)),
                    _ => Err(self.err(format!(
                        "torch._utils.{name} of something that is not a tensor"
                    ))),
                }
            }
            // Tensor subclasses: (func, type, args, state) → func(*args).
            ("torch._tensor", "_rebuild_from_type_v2" | "_rebuild_from_type") => {
                let mut it = args.into_iter();
                match (it.next(), it.next(), it.next()) {
                    (Some(Value::Global { module, name }), _, Some(Value::Tuple(inner))) => {
                        match self.call(&module, &name, inner)? {
                            Ok(t) => Ok(Ok(t)),
                            Err(_) => Err(self.err(format!(
                                "tensor subclass rebuilt by unsupported {module}.{name}"
                            ))),
                        }
                    }
                    _ => Err(self.err(format!("malformed torch._tensor.{name} arguments"))),
                }
            }
            ("torch._utils", n)
                if n.starts_with("_rebuild_") && n != "_rebuild_device_tensor_from_numpy" =>
            {
                Err(CheckpointError::new(
                    self.path,
                    ErrorKind::Unsupported,
                    format!(
                        "torch._utils.{n} (quantized, sparse or meta tensors) is not supported"
                    ),
                ))
            }
            _ => Ok(Err(args)),
        }
    }

    /// `_rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])`.
    fn rebuild_tensor(&mut self, name: &str, args: &[Value]) -> Result<Value> {
        let (
            Some(Value::Object {
                module,
                name: kind,
                args: sargs,
                ..
            }),
            Some(offset),
            Some(size),
            Some(stride),
        ) = (
            args.first(),
            args.get(1).and_then(Value::as_int),
            args.get(2),
            args.get(3),
        )
        else {
            return Err(self.err(format!("malformed torch._utils.{name} arguments")));
        };
        if module != "detc.storage" {
            return Err(self.err(format!(
                "torch._utils.{name} of a {module}.{kind}, not a storage"
            )));
        }
        let (Some(Value::Str(key)), Some(Value::Str(dtype))) = (sargs.first(), sargs.get(1)) else {
            return Err(self.err("internal: malformed storage reference"));
        };
        let dtype = DType::ALL
            .into_iter()
            .find(|d| d.torch_name() == dtype)
            .unwrap_or(DType::U8);
        let size = ints(size)
            .ok_or_else(|| self.err(format!("tensor size is not a tuple of ints: {size:?}")))?;
        let stride = ints(stride)
            .ok_or_else(|| self.err(format!("tensor stride is not a tuple of ints: {stride:?}")))?;
        let storage = self.storage(key, dtype)?;
        if let Some(n) = self.uses.get_mut(key.as_str()) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.cache.remove(key.as_str());
            }
        }
        let len = storage.len();
        let data = match view_range(len, dtype.size(), offset, &size, &stride) {
            Ok(Some((0, end))) if end == len => {
                Rc::try_unwrap(storage).unwrap_or_else(|shared| shared.as_ref().clone())
            }
            Ok(Some((start, end))) => storage[start..end].to_vec(),
            // Only stride-0 (expanded) views grow when materialised: bound them
            // so that a small file cannot demand gigabytes.
            Ok(None) if numel(&size).unwrap_or(0) * dtype.size() > len.saturating_mul(64).max(1 << 26) => {
                return Err(CheckpointError::new(
                    self.path,
                    ErrorKind::Unsupported,
                    format!("tensor in storage `{key}` is an expanded view of shape {size:?} too large to materialise"),
                ))
            }
            Ok(None) => strided_copy(&storage, dtype.size(), offset, &size, &stride),
            Err(m) => {
                return Err(self.err(format!(
                    "tensor in storage `{key}` ({dtype}, {len} bytes): {m}"
                )))
            }
        };
        Ok(Value::Tensor(TensorData {
            dtype,
            shape: size,
            data,
        }))
    }

    /// `('storage', torch.XStorage, key, location, numel[, view])` becomes a
    /// marker object (`detc.storage(key, dtype)`) that [`Self::rebuild_tensor`] reads.
    fn persistent(&mut self, pid: Value) -> Result<Value> {
        let Value::Tuple(items) = &pid else {
            return Ok(Value::Persistent(Box::new(pid)));
        };
        if items.first().and_then(Value::as_str) != Some("storage") {
            return Ok(Value::Persistent(Box::new(pid)));
        }
        let (
            Some(Value::Global {
                name: storage_type, ..
            }),
            Some(key),
        ) = (items.get(1), items.get(2))
        else {
            return Err(self.err(format!("malformed storage id {pid:?}")));
        };
        let dtype = DType::from_storage_name(storage_type).ok_or_else(|| {
            CheckpointError::new(
                self.path,
                ErrorKind::Unsupported,
                format!("storage type torch.{storage_type} is not supported"),
            )
        })?;
        let key = match key {
            Value::Str(s) => s.clone(),
            Value::Int(i) => i.to_string(),
            other => return Err(self.err(format!("storage key is a {}", other.kind()))),
        };
        if items.get(5).is_some_and(|v| *v != Value::None) {
            return Err(CheckpointError::new(
                self.path,
                ErrorKind::Unsupported,
                "legacy storage views are not supported",
            ));
        }
        Ok(Value::Object {
            module: "detc.storage".into(),
            name: storage_type.clone(),
            args: vec![Value::Str(key), Value::Str(dtype.torch_name().into())],
            state: None,
            items: Vec::new(),
            elements: Vec::new(),
        })
    }

    /// The bytes of storage `key` (little-endian), read once.
    fn storage(&mut self, key: &str, dtype: DType) -> Result<Rc<Vec<u8>>> {
        if let Some(bytes) = self.cache.get(key) {
            return Ok(bytes.clone());
        }
        let mut bytes = match &mut self.source {
            Source::Zip { zip, prefix } => {
                read_entry(self.path, zip, &format!("{prefix}data/{key}"))?
            }
            Source::Legacy { bytes, offsets } => match offsets.get(key) {
                Some(&(start, end)) => bytes[start..end].to_vec(),
                None => {
                    return Err(self.err(format!(
                        "legacy .pth format: storage `{key}` is not in the key list"
                    )))
                }
            },
        };
        if self.big_endian && dtype.size() > 1 {
            bytes
                .chunks_exact_mut(dtype.size())
                .for_each(<[u8]>::reverse);
        }
        let bytes = Rc::new(bytes);
        self.cache.insert(key.to_string(), bytes.clone());
        Ok(bytes)
    }
}

fn ints(value: &Value) -> Option<Vec<i64>> {
    match value {
        Value::Tuple(v) | Value::List(v) => v.iter().map(Value::as_int).collect(),
        Value::Object {
            module, name, args, ..
        } if module == "torch" && name == "Size" => args.first().and_then(ints),
        _ => None,
    }
}

fn read_entry(
    path: &Path,
    zip: &mut zip::ZipArchive<BufReader<File>>,
    name: &str,
) -> Result<Vec<u8>> {
    let mut entry = zip
        .by_name(name)
        .map_err(|e| CheckpointError::format(path, format!("record `{name}`: {e}")))?;
    // The declared size may be corrupt: reserve at most what a record can hold.
    let mut out = Vec::with_capacity(usize::try_from(entry.size()).unwrap_or(0).min(1 << 28));
    entry.read_to_end(&mut out).map_err(|e| {
        CheckpointError::format(
            path,
            format!("record `{name}` cannot be read (truncated or corrupt?): {e}"),
        )
    })?;
    Ok(out)
}
