//! A small pickle virtual machine: enough of protocols 0–5 to read what
//! `torch.save` and MMEngine/MMDetection checkpoints hold, without Python.
//!
//! Nothing is ever imported or called. A global (`GLOBAL`/`STACK_GLOBAL`)
//! stays a name; calling it (`REDUCE`, `NEWOBJ`) makes an opaque
//! [`Value::Object`] that records the arguments and whatever `BUILD`,
//! `SETITEMS` or `APPENDS` later feed into it, so numpy scalars, MMEngine's
//! `HistoryBuffer` or a `Counter` in a checkpoint's `meta` load without error.
//! A few constructors that only rebuild plain data are understood:
//! `collections.OrderedDict` (and `defaultdict`) become [`Value::Dict`] in
//! order, `set`/`frozenset` become sets, `_codecs.encode(s, 'latin1')` (how
//! protocol 2 pickles `bytes`) becomes [`Value::Bytes`].
//!
//! Values live in an arena while the machine runs, because pickles share and
//! mutate objects through the memo (a dict is memoised empty, then filled).
//! The result is unfolded into an owned tree with a depth and size budget, so
//! cycles or exponential sharing in a hostile file are errors, not hangs.
//! Every read is checked: garbage gives a [`PickleError`] naming the byte
//! offset and opcode, never a panic.

use std::collections::HashMap;
use std::fmt;

use super::TensorData;
use machine::Machine;

mod calls;
mod machine;
mod opcodes;

pub use opcodes::opcode_name;

/// A Python value read from a pickle.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    /// An integer that does not fit in `i64`: little-endian two's complement bytes.
    BigInt(Vec<u8>),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    List(Vec<Value>),
    Tuple(Vec<Value>),
    /// A dict (or `OrderedDict`) in insertion order.
    Dict(Vec<(Value, Value)>),
    Set(Vec<Value>),
    FrozenSet(Vec<Value>),
    /// A class or function named by the pickle and not called.
    Global {
        module: String,
        name: String,
    },
    /// An object the pickle built by calling `module.name(*args)`; `state` is
    /// what `BUILD` passed to `__setstate__`; `items`/`elements` are what
    /// `SETITEMS`/`APPENDS` added (dict and list subclasses).
    Object {
        module: String,
        name: String,
        args: Vec<Value>,
        state: Option<Box<Value>>,
        items: Vec<(Value, Value)>,
        elements: Vec<Value>,
    },
    /// A persistent id (`BINPERSID`) the caller did not resolve.
    Persistent(Box<Value>),
    /// A tensor: never made by the pickle machine itself, only by the `.pth`
    /// reader when it resolves `torch._utils._rebuild_tensor_v2`.
    Tensor(TensorData),
}

impl Value {
    /// The value of `key` in a dict with string keys.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Dict(items) => items
                .iter()
                .find(|(k, _)| k.as_str() == Some(key))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Bool(b) => Some(i64::from(*b)),
            _ => None,
        }
    }

    /// A short name of the value's kind, for error messages.
    pub fn kind(&self) -> String {
        match self {
            Value::None => "None".into(),
            Value::Bool(_) => "bool".into(),
            Value::Int(_) | Value::BigInt(_) => "int".into(),
            Value::Float(_) => "float".into(),
            Value::Str(_) => "str".into(),
            Value::Bytes(_) => "bytes".into(),
            Value::List(_) => "list".into(),
            Value::Tuple(_) => "tuple".into(),
            Value::Dict(_) => "dict".into(),
            Value::Set(_) => "set".into(),
            Value::FrozenSet(_) => "frozenset".into(),
            Value::Global { module, name } => format!("global {module}.{name}"),
            Value::Object { module, name, .. } => format!("{module}.{name} object"),
            Value::Persistent(_) => "persistent id".into(),
            Value::Tensor(_) => "tensor".into(),
        }
    }
}

/// A malformed or unsupported pickle.
#[derive(Debug, Clone, PartialEq)]
pub struct PickleError {
    /// Byte offset of the opcode in the pickle stream.
    pub offset: usize,
    /// The opcode byte, if the error is about one.
    pub opcode: Option<u8>,
    pub message: String,
}

impl fmt::Display for PickleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.opcode {
            Some(op) => write!(
                f,
                "pickle byte {}, opcode {} ({:#04x}): {}",
                self.offset,
                opcode_name(op),
                op,
                self.message
            ),
            None => write!(f, "pickle byte {}: {}", self.offset, self.message),
        }
    }
}

impl std::error::Error for PickleError {}

/// Reads one pickle from `data` (everything up to its `STOP`).
pub fn load(data: &[u8]) -> Result<Value, PickleError> {
    load_at(data, 0).map(|(value, _)| value)
}

/// Reads one pickle starting at `start`; returns it and the offset after `STOP`
/// (the legacy `.pth` format concatenates several pickles).
pub fn load_at(data: &[u8], start: usize) -> Result<(Value, usize), PickleError> {
    let mut vm = Machine {
        data,
        pos: start,
        op_pos: start,
        op: None,
        arena: Vec::new(),
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
        copies: data.len().saturating_mul(16).max(1 << 22),
    };
    let root = vm.run()?;
    let mut budget = (data.len().saturating_mul(4)).max(1 << 20);
    let value = vm.unfold(root, 0, &mut budget)?;
    Ok((value, vm.pos))
}

/// Python dict semantics: a repeated key keeps its first position and takes
/// the last value. Only string and integer keys are compared (the keys of
/// every checkpoint dict); others are kept as written.
fn dedup(pairs: Vec<(Value, Value)>) -> Vec<(Value, Value)> {
    let mut out: Vec<(Value, Value)> = Vec::with_capacity(pairs.len());
    let mut index: HashMap<KeyRef, usize> = HashMap::new();
    for (k, v) in pairs {
        let key = match &k {
            Value::Str(s) => Some(KeyRef::Str(s.clone())),
            Value::Int(i) => Some(KeyRef::Int(*i)),
            _ => None,
        };
        match key {
            Some(key) => match index.get(&key) {
                Some(&at) => out[at].1 = v,
                None => {
                    index.insert(key, out.len());
                    out.push((k, v));
                }
            },
            None => out.push((k, v)),
        }
    }
    out
}

#[derive(Hash, PartialEq, Eq)]
enum KeyRef {
    Str(String),
    Int(i64),
}
