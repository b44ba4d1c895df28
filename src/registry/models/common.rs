//! Small value types shared by the config structs of every role.
//!
//! MMDetection fields that take "a dict or a list of dicts", "an int or a
//! pair", "a string or a list of strings" get untagged enums here whose two
//! shapes never overlap (object vs array, number vs array, string vs array),
//! so the `anyOf` they generate has at most one matching branch.

use std::borrow::Cow;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// One item or a list of items: `init_cfg: {…}` or `init_cfg: [{…}, {…}]`,
/// `bbox_head: {…}` (shared by every stage) or one dict per stage.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(untagged)]
#[schemars(inline)]
pub enum OneOrMany<T> {
    /// A single item.
    One(T),
    /// A list of items.
    Many(Vec<T>),
}

// A list is read as `Many` first: an item type that accepts any JSON value
// (the `type`-dispatched refs) would otherwise swallow the whole list as
// `One`. A list that is not a list of items may still be one item (a pair
// such as `scales: [1333, 800]`).
impl<'de, T: serde::de::DeserializeOwned> Deserialize<'de> for OneOrMany<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let value = serde_json::Value::deserialize(deserializer)?;
        if value.is_array() {
            match serde_json::from_value(value.clone()) {
                Ok(items) => return Ok(OneOrMany::Many(items)),
                Err(many) => return serde_json::from_value(value).map(OneOrMany::One).map_err(|_| D::Error::custom(many)),
            }
        }
        serde_json::from_value(value).map(OneOrMany::One).map_err(D::Error::custom)
    }
}

impl<T> OneOrMany<T> {
    /// The items as a slice-like list (one item becomes a list of one).
    pub fn as_vec(&self) -> Vec<&T> {
        match self {
            OneOrMany::One(x) => vec![x],
            OneOrMany::Many(xs) => xs.iter().collect(),
        }
    }
}

/// An integer or an `(a, b)` pair, like mmcv's `_pair` arguments
/// (`output_size: 7` or `output_size: [7, 7]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
#[schemars(inline)]
pub enum IntOrPair {
    /// The same value for both dimensions.
    Int(u32),
    /// `(first, second)`; for sizes MMCV reads `(h, w)` unless the field says otherwise.
    Pair((u32, u32)),
}

/// A float or an `(a, b)` pair.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
#[schemars(inline)]
pub enum FloatOrPair {
    /// The same value for both dimensions.
    Float(f64),
    /// `(first, second)`.
    Pair((f64, f64)),
}

/// A float or a list of floats (`iou_thrs: 0.5` or `iou_thrs: [0.5, 0.75]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
#[schemars(inline)]
pub enum FloatOrList {
    /// One value.
    Float(f64),
    /// Several values.
    List(Vec<f64>),
}

/// A string or a list of strings (`layer: Conv2d` or `layer: [Conv2d, Linear]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
#[schemars(inline)]
pub enum StrOrList {
    /// One string.
    One(String),
    /// Several strings.
    List(Vec<String>),
}

/// Any JSON object, unchecked: for pass-through dicts whose keys are free
/// (e.g. `paramwise_cfg.custom_keys`, `backend_args.path_mapping`).
///
/// Its schema is a bare `{"type": "object"}` because the validator's JSON
/// Schema subset has no schema-valued `additionalProperties`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AnyObject(pub serde_json::Map<String, serde_json::Value>);

impl JsonSchema for AnyObject {
    fn schema_name() -> Cow<'static, str> {
        "AnyObject".into()
    }
    fn inline_schema() -> bool {
        true
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "type": "object" })
    }
}

/// The value `null` and nothing else: for keys MMDetection accepts but
/// requires to be unset (it asserts or raises on any other value), such as
/// `DIIHead.init_cfg` or a dataset's removed `file_client_args`, and for keys
/// detc does not build yet, such as a detector-level `init_cfg`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Null;

impl Serialize for Null {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_unit()
    }
}

impl<'de> Deserialize<'de> for Null {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <()>::deserialize(d).map(|()| Null)
    }
}

impl JsonSchema for Null {
    fn schema_name() -> Cow<'static, str> {
        "Null".into()
    }
    fn inline_schema() -> bool {
        true
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "type": "null" })
    }
}

/// How a loss reduces its per-element values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Reduction {
    /// Keep per-element losses.
    None,
    /// Average (the MMDetection default).
    Mean,
    /// Sum.
    Sum,
}

/// File backend arguments (`backend_args`), passed to MMEngine's file I/O.
/// `null` means local files, the only ones detc reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct BackendArgs {
    /// File backend name: `local` or `disk` (detc reads local files; MMEngine's
    /// `petrel`, `http`, `lmdb` backends are not supported).
    #[serde(default)]
    #[schemars(extend("enum" = [null, "local", "disk"]))]
    pub backend: Option<String>,
    /// Must be null: prefix rewrites belong to remote backends (MMEngine's
    /// local backend takes none).
    #[serde(default)]
    #[schemars(extend("type" = "null"))]
    pub path_mapping: Option<AnyObject>,
}

/// A colour: a name (`red`, `random`, …) or an `(r, g, b)` triple.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
#[schemars(inline)]
pub enum Color {
    /// A colour name understood by MMEngine (matplotlib names, `random`) or a palette name.
    Name(String),
    /// Red, green, blue in 0..=255.
    Rgb([u8; 3]),
    /// One colour per class.
    List(Vec<[u8; 3]>),
}

// ---------------------------------------------------------------------------
// serde default helpers. Const generics keep one helper per value type
// instead of one function per default value.

/// `true`, for `#[serde(default = "yes")]`.
pub fn yes() -> bool {
    true
}

/// A `u32` constant default: `#[serde(default = "uint::<256>")]`.
pub fn uint<const N: u32>() -> u32 {
    N
}

/// An `i64` constant default: `#[serde(default = "int::<-1>")]`.
pub fn int<const N: i64>() -> i64 {
    N
}

/// An optional `u32` constant default.
pub fn some_uint<const N: u32>() -> Option<u32> {
    Some(N)
}

