//! PyTorch checkpoints without Python: read `.pth` files written by
//! `torch.save` (torchvision ImageNet weights, MMDetection/MMEngine
//! checkpoints) and safetensors files, and write `.pth` files that
//! `torch.load(path, weights_only=True)` and MMEngine's `load_checkpoint` read.
//!
//! ```no_run
//! use detc::checkpoint;
//! let ckpt = checkpoint::load("queryinst_r50_fpn_1x_coco.pth".as_ref())?;
//! for (name, tensor) in &ckpt.state_dict {
//!     println!("{name}: {:?} {:?}", tensor.dtype, tensor.shape);
//! }
//! checkpoint::save_pth("copy.pth".as_ref(), &ckpt.state_dict, ckpt.other.get("meta"))?;
//! # Ok::<(), checkpoint::CheckpointError>(())
//! ```
//!
//! - [`load`] reads a file: a zip (torch ≥ 1.6 format), the legacy pickle
//!   format, or safetensors (by the `.safetensors` extension or its header).
//!   The state dict is found as MMEngine's `_load_checkpoint_to_model` finds it
//!   (the top-level dict, or its `state_dict`, else its `model`) and a leading
//!   `module.` (DataParallel) is stripped from each name.
//! - [`save_pth`] writes a state dict, with an optional MMEngine-style `meta`,
//!   atomically (temporary file `.<name>.tmp<pid>`, fsync, rename); a
//!   successful write also deletes the temporary files of the same name
//!   that a killed writer left ([`remove_abandoned_temps`]).
//! - [`compare`] matches a loaded state dict with a model's names and
//!   shapes: missing and unexpected keys (MMEngine's warning) and shape
//!   mismatches (errors in detc).
//! - [`pickle`] is the underlying pickle reader; [`Value`] is what it returns.
//!   Unknown Python classes become opaque [`Value::Object`]s, so arbitrary
//!   `meta`/`message_hub` content loads without error.

mod keys;
mod legacy;
pub mod pickle;
pub mod pth;
pub mod safetensors;
mod tensor;
mod view;
mod writer;

use std::fmt;
use std::path::{Path, PathBuf};

use indexmap::IndexMap;

pub use keys::{compare, KeyReport, ShapeMismatch};
pub use pickle::Value;
pub use tensor::{DType, TensorData};
pub use writer::{remove_abandoned_temps, save_checkpoint, save_pth};

/// A loaded checkpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    /// Parameter and buffer names (a leading `module.` stripped) to tensors, in file order.
    pub state_dict: IndexMap<String, TensorData>,
    /// Everything else in the file: the top-level value with the state dict
    /// entry removed (`meta`, `optimizer`, `message_hub`, …), or
    /// [`Value::None`] when the file was a bare state dict. Tensors elsewhere
    /// in the file (optimizer state) appear as [`Value::Tensor`].
    pub other: Value,
}

/// What went wrong with which file.
#[derive(Debug)]
pub struct CheckpointError {
    pub path: PathBuf,
    pub kind: ErrorKind,
    pub message: String,
}

/// The broad cause of a [`CheckpointError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The file could not be opened, read or written.
    Io,
    /// The file is not a checkpoint, or is truncated or corrupt.
    Format,
    /// A valid file using something this reader does not support.
    Unsupported,
}

impl CheckpointError {
    pub(crate) fn new(path: &Path, kind: ErrorKind, message: impl Into<String>) -> Self {
        CheckpointError {
            path: path.to_path_buf(),
            kind,
            message: message.into(),
        }
    }

    pub(crate) fn format(path: &Path, message: impl Into<String>) -> Self {
        Self::new(path, ErrorKind::Format, message)
    }

    pub(crate) fn io(path: &Path, what: &str, err: &std::io::Error) -> Self {
        Self::new(path, ErrorKind::Io, format!("{what}: {err}"))
    }
}

impl fmt::Display for CheckpointError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.message)
    }
}

impl std::error::Error for CheckpointError {}

pub type Result<T, E = CheckpointError> = std::result::Result<T, E>;

/// Reads a `.pth` (zip or legacy) or safetensors file and finds its state dict.
pub fn load(path: &Path) -> Result<Checkpoint> {
    let value = load_value(path)?;
    split_state_dict(path, value)
}

/// Reads a checkpoint file into one [`Value`] tree with tensors resolved,
/// without looking for a state dict (safetensors: a dict of tensors).
pub fn load_value(path: &Path) -> Result<Value> {
    let mut head = [0u8; 9];
    let n = read_head(path, &mut head)?;
    let head = &head[..n];
    let is_safetensors_ext = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("safetensors"));
    if head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06") {
        pth::read_zip(path)
    } else if is_safetensors_ext || (n == 9 && head[8] == b'{') {
        let tensors = safetensors::read(path)?;
        Ok(Value::Dict(
            tensors
                .into_iter()
                .map(|(k, t)| (Value::Str(k), Value::Tensor(t)))
                .collect(),
        ))
    } else if head.first() == Some(&0x80) {
        legacy::read_legacy(path)
    } else if n == 0 {
        Err(CheckpointError::format(path, "the file is empty"))
    } else {
        Err(CheckpointError::format(
            path,
            format!("not a PyTorch checkpoint (zip or pickle) or a safetensors file: it starts with bytes {head:02x?}"),
        ))
    }
}

fn read_head(path: &Path, buf: &mut [u8]) -> Result<usize> {
    use std::io::Read;
    let mut file =
        std::fs::File::open(path).map_err(|e| CheckpointError::io(path, "cannot open", &e))?;
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(CheckpointError::io(path, "cannot read", &e)),
        }
    }
    Ok(n)
}

/// The state dict of a loaded file, found as torch and MMEngine find it.
fn split_state_dict(path: &Path, value: Value) -> Result<Checkpoint> {
    let Value::Dict(top) = value else {
        return Err(CheckpointError::format(
            path,
            format!(
                "the checkpoint holds a {}, not a dict of tensors",
                value.kind()
            ),
        ));
    };
    // A bare state dict: every value is a tensor.
    if top
        .iter()
        .all(|(k, v)| matches!((k, v), (Value::Str(_), Value::Tensor(_))))
    {
        return Ok(Checkpoint {
            state_dict: tensors_of(path, top)?,
            other: Value::None,
        });
    }
    for key in ["state_dict", "model"] {
        let found = top
            .iter()
            .position(|(k, v)| k.as_str() == Some(key) && matches!(v, Value::Dict(_)));
        if let Some(at) = found {
            let mut top = top;
            let (_, inner) = top.remove(at);
            let Value::Dict(inner) = inner else {
                unreachable!("checked above")
            };
            return Ok(Checkpoint {
                state_dict: tensors_of(path, inner)?,
                other: Value::Dict(top),
            });
        }
    }
    let keys: Vec<String> = top
        .iter()
        .take(12)
        .map(|(k, _)| k.as_str().map_or_else(|| k.kind(), |s| format!("`{s}`")))
        .collect();
    Err(CheckpointError::format(
        path,
        format!("no state dict found: the top-level dict is not all tensors and has no `state_dict` or `model` (keys: {})", keys.join(", ")),
    ))
}

/// Tensors of a state dict with MMEngine's default `revise_keys`
/// (`^module\.` → ``) applied; non-tensor entries (`_extra_state` objects)
/// are skipped.
fn tensors_of(path: &Path, items: Vec<(Value, Value)>) -> Result<IndexMap<String, TensorData>> {
    let mut out = IndexMap::with_capacity(items.len());
    for (key, value) in items {
        let Value::Str(name) = key else {
            return Err(CheckpointError::format(
                path,
                format!("a state-dict key is a {}, not a string", key.kind()),
            ));
        };
        if let Value::Tensor(tensor) = value {
            let name = name
                .strip_prefix("module.")
                .map(str::to_string)
                .unwrap_or(name);
            out.insert(name, tensor);
        }
    }
    Ok(out)
}
